"""A run's state: what a save writes into the model directory, and what an epoch resumes or rebuilds from.

Everything a later run needs to continue exactly is in the model directory:
weights, optimiser state, epochs and steps done, the position inside an
interrupted epoch and its partial sums, the seed of the shuffles, the skip
estimates, the input statistics and class names.  Saves go through
ModelDir.save, which is atomic; the trace and the statistics of the epochs a
save holds are appended after it, so they never run ahead of the model.
"""

import os
import time

import numpy as np

from .. import model as modelmod
from ..errors import TrainingError
from ..files import fs
from ..model import imputation, normalization
from ..model.directory import CHECKPOINTS, VALIDATION_ROWS
from .optimizers import per_parameter_state
from .trace import TRACE_COLUMNS, TRACE_FILE, append_lines, append_stats, append_units


class Saver:
    """Saves a run (see fit.Run) into its model directory, with the epoch records and statistics not yet written."""

    def __init__(self, run):
        self.run = run
        self.pending = []  # epoch records not yet in trace.tsv
        self.pending_stats = []  # and stats.tsv
        self.pending_units = []  # and units.tsv
        self.last_save = time.monotonic()
        self.rows_written = False  # validation-rows.txt: written by a run's first save, then kept

    def save(self, epochs, batch, partial, steps):
        """The model after `steps` steps: `epochs` complete, then `batch` batches of the next with sums `partial`."""
        run = self.run
        if not np.all(np.isfinite(run.net.arena.params)):
            raise TrainingError("refusing to save non-finite weights as a completed step; the model is left as it was")
        if not run.leader:
            self.pending, self.pending_stats, self.pending_units = [], [], []
            return
        state = run.state
        state.update(
            epochs=epochs,
            batch=batch,
            partial=partial or {},
            partial_samples_total=len(run.train_idx),
            steps=steps,
            seed=run.seed,
            dtype=np.dtype(run.dtype).name,
            optimizer=run.optimizer.describe(),
            schedule={"spec": run.schedule.text, "warmup": run.schedule.warmup, "base_lr": run.base_lr,
                      "plateau": run.plateau},
            trained_on=run.record,
        )
        if run.growth:
            state["batch_growth"] = run.growth.text
            state.pop("batch_size", None)
        else:
            state["batch_size"] = run.batch_size
            state.pop("batch_growth", None)
        extra = per_parameter_state(run.optimizer, run.net.arena)
        if run.skip is not None:
            extra["training/skip_estimate"] = run.skip
        extra.update(normalization.arrays(run.normalization))
        extra.update(imputation.arrays(run.fill))
        if run.carry is not None and batch:  # train --bptt stopped inside an epoch: the streams' states
            extra.update(run.carry.arrays(batch))
        files = {modelmod.CLASSES_FILE: modelmod.classes_text(run.classes)} if run.classes else {}
        if not self.rows_written:
            files[VALIDATION_ROWS] = validation_rows_text(run)
            self.rows_written = True
        run.md.save(run.net.get_params(), state, extra, files)
        self.last_save = time.monotonic()
        self._trace()
        append_stats(run.md.path, self.pending_stats)
        append_units(run.md.path, self.pending_units)
        self.pending_stats, self.pending_units = [], []

    def _trace(self):
        """Append the epochs now saved to MODEL/trace.tsv, so the trace never runs ahead of the model."""
        if self.pending:
            append_lines(os.path.join(self.run.md.path, TRACE_FILE), TRACE_COLUMNS, self.pending)
        self.pending = []


def validation_rows_text(run):
    """MODEL/validation-rows.txt: the 0-based rows of the data held out by --validation-split, one per line,
    under a comment that says how many samples the data had (evaluate --validation-of checks it)."""
    n = len(run.x)
    held = np.setdiff1d(np.arange(n), run.train_idx) if run.vx is not None and len(run.train_idx) < n else []
    if not len(held):
        return f"# samples {n}: no rows held out (no --validation-split)\n"
    return f"# samples {n}: rows held out by --validation-split, 0-based (tensor-rows takes them)\n" + \
        "".join(f"{i}\n" for i in held)


def snapshot(md, name):
    """Copy the current version into MODEL/checkpoints/NAME (replacing an older one)."""
    root = os.path.join(md.path, CHECKPOINTS)
    os.makedirs(root, exist_ok=True)
    fs.atomic_folder(os.path.join(root, name), lambda tmp: modelmod.copy_tree(md.version_dir(), tmp))


class EpochSums:
    """Running sums of an epoch (loss, correct, samples learned and seen), resumable from `partial`."""

    def __init__(self, objective, partial):
        self.objective = objective
        self.loss_sum = float(partial.get("loss_sum", 0.0))
        self.correct = int(partial.get("correct", 0))
        self.learned = int(partial.get("learned", 0))
        self.seen = int(partial.get("seen", 0))
        self.kept = []  # batch outputs whose losses are not computed yet

    def settle(self):
        if self.kept:
            losses, correct = self.objective.kept_metrics(self.kept)
            self.loss_sum += float(losses.sum())
            self.correct += correct
            self.kept.clear()

    def partial(self, seconds):
        """The sums as state.json keeps them for an interrupted epoch."""
        self.settle()
        return {"loss_sum": self.loss_sum, "correct": self.correct, "learned": self.learned,
                "seen": self.seen, "seconds": seconds}


class Backup:
    """A recent state (weights, optimiser state) and the batches applied since.

    Any later step can be rebuilt exactly by replaying those batches, so the
    weights are copied only every EVERY steps instead of at each one.
    """

    EVERY = 16

    def __init__(self, params):
        self.params = [np.empty_like(p) for p in params]
        self.state = {}
        self.t = None
        self.batches = []

    @property
    def taken(self):
        return self.t is not None

    def due(self):
        return self.t is None or len(self.batches) >= self.EVERY

    def take(self, params, optimizer):
        for dst, src in zip(self.params, params):
            np.copyto(dst, src)
        self.state = {k: v.copy() for k, v in optimizer.state.items()}
        self.t = optimizer.t
        self.batches = []

    def record(self, epoch, idx, lr):
        """A step of `epoch` was applied with the samples idx at the rate lr."""
        self.batches.append((epoch, idx, lr))

    def restore(self, params, optimizer):
        """Back to the state of the backup (into the same arrays: they may be shared with workers)."""
        for dst, src in zip(params, self.params):
            np.copyto(dst, src)
        for key, value in self.state.items():
            if key in optimizer.state and optimizer.state[key].shape == value.shape:
                np.copyto(optimizer.state[key], value)
            else:
                optimizer.state[key] = value.copy()
        optimizer.t = self.t
