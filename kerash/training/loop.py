"""The training loop: epochs of shuffled batches, with resume, stop criteria and interrupts.

Everything a later run needs to continue exactly is in the model directory:
weights, optimiser state, epochs and steps done, the position inside an
interrupted epoch and its partial sums, the seed of the shuffles, and the
skip estimates.  Saves go through ModelDir.save, which is atomic.
"""

import hashlib
import math
import os
import signal
import time
from dataclasses import dataclass, field

import numpy as np

from .. import model as modelmod
from ..files import fs
from ..errors import DataError, TrainingError, UsageError, close_matches
from ..files.labels import WordLabels
from ..model import normalization
from ..network import Objective, targets_are_classes
from . import batches
from .engines.step import StepSettings
from .engines import default_workers, make_engine
from ..processes import limit_blas_threads, mpi_size, prewarm_blas, tune_allocator, usable_cores
from .engines.step import EngineFailure, Interrupted
from .optimizers import HYPER_PARAMETERS, continued, flat_state, per_parameter_state
from .schedule import BatchGrowth, Schedule
from .trace import TRACE_COLUMNS, TRACE_FILE, append_lines, append_stats, layer_statistics

CHECKPOINTS = "checkpoints"
SAVE_EVERY = 2.0  # seconds between saves of a run that is going well


@dataclass
class FitResult:
    status: str  # done, nothing, target, patience, interrupted, nan
    message: str = ""
    signal: int = 0
    records: list = field(default_factory=list)


class _Signals:
    """SIGINT/SIGTERM set a flag; the loop stops at the end of the current step."""

    def __init__(self):
        self.received = 0

    def __enter__(self):
        self.previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.received:
            return
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


DEFAULT_NAMES = ("data", "labels", "validation data", "validation labels")


def fit(model_path, x, y, cfg, val=None, report=None, progress=None, warn=None, names=DEFAULT_NAMES):
    """Train the model in `model_path` on samples x with targets y; see TrainConfig.

    `names` (data, labels, validation data, validation labels) name the inputs in messages.
    """
    md = modelmod.ModelDir(model_path)
    if uses_mpi(cfg):
        from .engines.mpi import rank_from_environment

        if rank_from_environment() != 0:
            # Rank 0 alone writes the model; the other ranks compute and stay silent.
            return _Fit(md, x, y, cfg, val, None, None, None, names, leader=False).run()
    with md.lock(blocking=False):
        return _Fit(md, x, y, cfg, val, report, progress, warn, names).run()


def uses_mpi(cfg):
    """Whether training runs as MPI ranks (--engine mpi, or started by mpiexec with several ranks)."""
    return cfg.engine == "mpi" or (cfg.engine is None and mpi_size() > 1)


class _Fit:
    def __init__(self, md, x, y, cfg, val, report, progress, warn, names, leader=True):
        self.md, self.cfg = md, cfg
        self.leader = leader
        self.report = report or (lambda record: None)
        self.progress = progress
        self.warn = warn or (lambda message: None)
        if cfg.dtype is not None and cfg.dtype not in modelmod.DTYPES:
            raise UsageError(f"--dtype must be float32 or float64, not {cfg.dtype!r}")
        with md.pinned() as version:
            self.net, state = md.network(modelmod.DTYPES.get(cfg.dtype), version)
            self.classes = modelmod.read_classes(md, version)
            self.normalization = normalization.read(md, version)
        for key, name, p in self.net.param_items():
            if not np.all(np.isfinite(p)):
                raise DataError(f"{os.path.join(md.path, key, name)}.npy holds non-finite weights; restore a checkpoint "
                                "(kerash checkpoints) or model-init the model again")
        self.state = state
        dtype = self.dtype = self.net.dtype
        spec = md.spec
        x = modelmod.prepare_inputs(x, spec, names[0])
        fresh = not state.get("steps") and not state.get("epochs")
        if val is not None:
            vx = modelmod.prepare_inputs(val[0], spec, names[2])
        self.new_classes = self.classes is None and fresh and any(isinstance(labels, WordLabels)
                                                                   for labels in (y, val and val[1]))
        if self.new_classes:
            # A fresh model trained on named classes: sorted names become class indices (classes.txt).
            found = [(y, x.shape[0])] if isinstance(y, WordLabels) else []
            if val is not None and isinstance(val[1], WordLabels):
                found.append((val[1], vx.shape[0]))
            self.classes = modelmod.new_classes(spec, found)
        y = modelmod.class_targets(y, self.classes, x.shape[0], md.path)
        modelmod.check_finite(x, names[0])
        modelmod.check_finite(y, names[1])
        y = modelmod.prepare_targets(y, spec, x, names[1])
        self.x = np.ascontiguousarray(x, dtype=dtype)
        self.y = np.ascontiguousarray(y, dtype=dtype)
        n = self.x.shape[0]
        if n == 0:
            raise DataError("no training samples")
        self._batching(state)
        cfg.check("workers", "threads", "seed")
        self.seed = _choose_seed(cfg.seed, state, warn=self.warn)
        if val is not None:
            vy = modelmod.class_targets(val[1], self.classes, vx.shape[0], md.path)
            modelmod.check_finite(vx, names[2])
            modelmod.check_finite(vy, names[3])
            vy = modelmod.prepare_targets(vy, spec, vx, names[3])
            self.train_idx = np.arange(n)
            self.vx = np.ascontiguousarray(vx, dtype=dtype)
            self.vy = np.ascontiguousarray(vy, dtype=dtype)
        else:
            self.train_idx, val_idx = batches.split(n, cfg.validation_split, self.seed)
            self.vx = self.x[val_idx] if len(val_idx) else None
            self.vy = self.y[val_idx] if len(val_idx) else None
        self._normalize(fresh, x)
        self.classification = targets_are_classes(self.y)
        self.objective = Objective(spec.loss, self.net)
        self.scored = self.objective.scored_steps(self.x, self.y)  # scored outputs per sample, for accuracy
        self.objective.adapt_to_targets(self.y)
        self.optimizer = _make_optimizer(cfg, state)
        self.optimizer.restore(state.get("optimizer"), md.load_extra("optimizer"))
        self._schedule(state)
        frozen = _frozen_keys(cfg.freeze, md.spec) if cfg.freeze else []
        self.net.freeze(frozen)
        self.state["frozen"] = frozen
        cfg.check("clip_norm")
        self.record = self._data_record(val is not None)
        if cfg.patience is not None and self.vx is None:
            raise UsageError("--patience needs validation data (--validation-split or --val-data)")
        if cfg.restore_best and self.vx is None:
            raise UsageError("--restore-best needs validation data (--validation-split or --val-data)")
        self.pending = []  # epoch records not yet in trace.tsv
        self.pending_stats = []  # and stats.tsv
        self.last_save = time.monotonic()
        self.skip = None
        if cfg.skip_below is not None:
            growth = cfg.skip_growth if cfg.skip_growth is not None else cfg.skip_below / 10
            if cfg.skip_below <= 0 or growth <= 0:
                raise UsageError("--skip-below and --skip-growth must be > 0")
            self.skip_growth = growth
            saved = md.load_extra("training").get("skip_estimate")
            self.skip = saved.astype(np.float64) if saved is not None and saved.shape == (n,) else np.full(n, np.inf)

    # ------------------------------------------------------------ settings

    def _normalize(self, fresh, given):
        """The inputs' statistics: the model's, else fitted on the training part when asked; applied in place."""
        self.fitted = False
        if self.normalization is None and self.cfg.normalize:
            if not fresh:
                raise UsageError(f"--normalize: {self.md.path} was trained on raw inputs; statistics are fitted before "
                                 "the first step (model-init a fresh model to train with them)")
            self.normalization = normalization.fit(self.x, self.md.spec, self.train_idx)
            self.fitted = True
        if self.normalization is not None:
            if np.may_share_memory(self.x, given):
                self.x = self.x.copy()  # the caller's array stays raw
            normalization.apply(self.x, self.normalization, self.md.spec)
            if self.vx is not None:
                self.vx = normalization.apply(np.ascontiguousarray(self.vx), self.normalization, self.md.spec)

    def _batching(self, state):
        """Batch size per epoch: --batch-growth, --batch-size, else what the model was trained with."""
        cfg = self.cfg
        text = cfg.batch_growth if cfg.batch_size is None else None
        if text is None and cfg.batch_size is None:
            text = state.get("batch_growth")
        if cfg.batch_size is not None and cfg.batch_growth is not None:
            raise UsageError("give either --batch-size or --batch-growth, not both")
        if text:
            self.growth = BatchGrowth(text)
            self.batch_size = None
        else:
            self.growth = None
            self.batch_size = cfg.batch_size or int(state.get("batch_size", 32))
            if self.batch_size < 1:
                raise UsageError(f"--batch-size must be ≥ 1, got {self.batch_size}")

    def batch_size_at(self, epoch):
        return self.growth.size(epoch) if self.growth else self.batch_size

    def _schedule(self, state):
        """The learning-rate schedule, its base rate, and the plateau's state, continued from the model's."""
        cfg, saved = self.cfg, state.get("schedule") or {}
        text = cfg.lr_schedule if cfg.lr_schedule is not None else saved.get("spec", "constant")
        warmup = cfg.warmup if cfg.warmup is not None else (saved.get("warmup", 0) if cfg.lr_schedule is None else 0)
        self.schedule = Schedule(text, warmup)
        self.base_lr = cfg.lr if cfg.lr is not None else saved.get("base_lr", self.optimizer.lr)
        same = saved.get("spec") == self.schedule.text and saved.get("warmup", 0) == self.schedule.warmup
        self.plateau = dict(saved.get("plateau") or {}) if same else {}

    def _data_record(self, separate_validation):
        """What this run trains on, to tell whether an interrupted epoch may continue on it."""

        def digest(a):
            h = hashlib.blake2b(digest_size=16)
            h.update(str((a.shape, a.dtype.str)).encode())
            h.update(np.ascontiguousarray(a))
            return h.hexdigest()

        return {
            "data": digest(self.x), "labels": digest(self.y),
            "validation": digest(self.vx) + digest(self.vy) if separate_validation else self.cfg.validation_split,
            "seed": self.seed,
            "batches": self.growth.text if self.growth else self.batch_size,
        }

    # ------------------------------------------------------------ plan

    def _epochs_to_run(self):
        done = int(self.state.get("epochs", 0))
        if self.cfg.until_epoch is not None:
            return done, self.cfg.until_epoch
        self.cfg.check("epochs")
        epochs = 10 if self.cfg.epochs is None else self.cfg.epochs
        return done, done + epochs

    def run(self):
        done, end = self._epochs_to_run()
        if end <= done:
            kept = [what for what, new in (("class names", self.new_classes), ("input statistics", self.fitted)) if new]
            if kept and self.leader:
                # --epochs 0 on a fresh model: what the data say about its inputs and classes, without a step.
                self.net.use_arena()
                self._flatten_optimizer_state()
                self._save(done, 0, {}, int(self.state.get("steps", 0)))
                return FitResult("nothing", f"stored the {' and '.join(kept)} of {self.md.path} ({done} epochs)")
            return FitResult("nothing", f"{self.md.path} already has {done} epochs")
        position = int(self.state.get("batch", 0))
        partial = self.state.get("partial") or {}
        before = self.state.get("trained_on")
        changed = [what for what in ("data", "labels", "validation", "seed", "batches")
                   if before and before.get(what) != self.record[what]]
        if position and changed and not self.cfg.restart_epoch:
            names = {"data": "the data", "labels": "the labels", "validation": "the validation data or split",
                     "seed": "the seed", "batches": "the batch size"}
            raise DataError(f"epoch {done + 1} of {self.md.path} was interrupted, and {' and '.join(names[c] for c in changed)} "
                            f"differ from what it was trained on; continue with the same, or give --restart-epoch "
                            f"to start epoch {done + 1} afresh")
        if position and (changed or self.state.get("partial_samples_total") != len(self.train_idx)):
            if not self.cfg.restart_epoch:
                self.warn("the data changed since the interrupted epoch; restarting that epoch")
            position, partial = 0, {}
        self.event = "start:new-data" if changed else "start"
        cfg = self.cfg
        workers = cfg.workers
        if workers is None:
            workers = 1 if uses_mpi(cfg) else default_workers(self.net, self.batch_size_at(done + 1),
                                                               steps=self.x.shape[1] if self.net.sequence else 1)
        if workers * (cfg.threads or 1) > 2 * usable_cores():  # far more than the machine can run at once
            self.warn(f"{workers} worker(s) × {cfg.threads or 1} thread(s) on {usable_cores()} core(s): "
                      "they will take turns, slower than fewer")
        limit_blas_threads(cfg.threads or 1)
        tune_allocator()
        prewarm_blas(self.dtype)
        self.net.use_arena()
        self._flatten_optimizer_state()
        mask = self.net.arena.decay_mask() if self.optimizer.weight_decay else None
        engine = None
        try:
            frozen = self.state["frozen"]
            settings = StepSettings(self.seed, cfg.clip_norm, self.net.arena.trainable_ranges(frozen) if frozen else None)
            engine = self.engine = make_engine(cfg.engine, self.net, self.objective, self.x, self.y, self.optimizer, mask,
                                               workers, cfg.stall, self.warn, settings)
            with _Signals() as signals:
                engine.interrupted = lambda: bool(signals.received)
                return self._epochs(done, end, position, partial, signals, mask)
        finally:
            if engine is not None:
                engine.close()

    # ------------------------------------------------------------ loop

    def _stopped_by(self, signals):
        """The signal that stops training now: this process's, or (MPI) one that every rank agreed on."""
        if self.engine.kind == "mpi":
            return (signals.received or signal.SIGTERM) if self.engine.agreed_stop else 0
        return signals.received

    def _epochs(self, done, end, position, partial, signals, mask):
        cfg = self.cfg
        net, opt = self.net, self.optimizer
        # The engine put every weight in one flat arena: one update, one copy for a backup.
        params = [net.arena.params]
        backup = _Backup(params)
        # In one process, losses of a fused loss are computed once an epoch for all its batches.
        defer = self.engine.kind == "local" and self.skip is None and self.objective.can_defer
        best = self.state.get("best") or {}
        stale = int(self.state.get("stale", 0))
        best_params = None
        records = []
        steps = int(self.state.get("steps", 0))
        captured = np.empty_like(params[0]) if cfg.stats else None
        for epoch in range(done + 1, end + 1):
            t0 = time.monotonic() - float(partial.get("seconds", 0.0))
            epoch_batches = batches.epoch_batches(self.train_idx, self.batch_size_at(epoch), self.seed, epoch)
            self.engine.epoch = epoch
            opt.hyper["lr"] = self.schedule.rate(self.base_lr, epoch, self.plateau)
            start_weights = params[0].copy() if cfg.stats else None
            sums = _EpochSums(self.objective, partial)
            keep = sums.kept if defer else None
            if self.skip is not None and position == 0:
                self.skip[self.skip < cfg.skip_below] += self.skip_growth
            for b in range(position, len(epoch_batches)):
                idx = epoch_batches[b]
                if self.skip is not None:
                    idx, skipped_loss, fwd_seen = self._filter_learned(idx)
                    sums.seen += fwd_seen
                    sums.loss_sum += skipped_loss
                if len(idx):
                    if backup.due():
                        backup.take(params, opt)
                    capture = captured if b == len(epoch_batches) - 1 else None
                    try:
                        result = self.engine.step(idx, 1.0 / len(idx), keep, capture)
                    except (EngineFailure, Interrupted) as e:
                        # Keep what the completed steps achieved (rebuilt by replay if a
                        # process stopped half-way through the update), then report.
                        if not e.intact:
                            self._replay(backup, params, backup.batches)
                        self._save(epoch - 1, b, sums.partial(time.monotonic() - t0), steps)
                        if isinstance(e, EngineFailure):
                            raise
                        return self._interrupted(signals.received, epoch, b, len(epoch_batches), records)
                    losses, c = result.losses, result.correct
                    if not result.finite:
                        if keep:
                            keep.pop()  # the non-finite batch is not part of the epoch's sums
                        return self._stop_nan(epoch, b, backup, params, steps, records, sums.partial(time.monotonic() - t0))
                    if losses is not None:
                        batch_loss = float(losses.sum())
                    backup.record(epoch, idx, opt.lr)
                    steps += 1
                    sums.learned += len(idx)
                    if losses is None:
                        sums.seen += len(idx)
                    else:
                        sums.loss_sum += batch_loss
                        sums.correct += c
                        if self.skip is None:
                            sums.seen += len(idx)
                        else:
                            self.skip[idx] = losses
                if self.progress:
                    self.progress(epoch, b + 1, len(epoch_batches))
                if self._stopped_by(signals):
                    if not np.all(np.isfinite(params[0])):
                        return self._stop_nan(epoch, b + 1, backup, params, steps, records, {},
                                              f"the weights became non-finite at epoch {epoch}, batch {b + 1}")
                    self._save(epoch - 1, b + 1, sums.partial(time.monotonic() - t0), steps)
                    return self._interrupted(self._stopped_by(signals), epoch, b + 1, len(epoch_batches), records)
            if not np.all(np.isfinite(params[0])):
                # The epoch's last step overflowed the weights: that step is undone, not saved.
                return self._stop_nan(epoch + 1, 0, backup, params, steps, records, {},
                                      f"the weights became non-finite at the last step of epoch {epoch}")
            sums.settle()
            loss_sum, correct, learned, seen = sums.loss_sum, sums.correct, sums.learned, sums.seen
            position, partial = 0, {}
            n_train = len(self.train_idx)
            record = {
                "epoch": epoch,
                "samples": learned,
                "loss": loss_sum / n_train if self.skip is not None else loss_sum / max(seen, 1),
                "accuracy": correct / max(learned * self.scored, 1) if self.classification else math.nan,
                "val_loss": math.nan,
                "val_accuracy": math.nan,
                "lr": opt.lr,
                "batch_size": self.batch_size_at(epoch),
                "event": self.event if epoch == done + 1 else "",
            }
            if self.skip is not None:
                record["accuracy"] = self._skip_accuracy() if self.classification else math.nan
            if self.vx is not None:
                vloss, vcorrect, _ = net.evaluate(self.objective, self.vx, self.vy)
                record["val_loss"] = vloss / len(self.vx)
                record["val_accuracy"] = vcorrect / (len(self.vx) * self.objective.scored_steps(self.vx, self.vy)) if self.classification else math.nan
            record["seconds"] = time.monotonic() - t0
            improved = False
            if self.vx is not None and (not best or record["val_loss"] < best["val_loss"]):
                best = {"val_loss": record["val_loss"], "epoch": epoch}
                stale = 0
                improved = True
                if cfg.restore_best:
                    best_params = [p.copy() for p in params]
            elif self.vx is not None:
                stale += 1
            self.state["best"], self.state["stale"] = best, stale
            self.plateau = self.schedule.after_epoch(epoch, record["val_loss" if self.vx is not None else "loss"],
                                                     opt.lr, self.plateau)
            if cfg.stats and len(epoch_batches) > position:
                self.pending_stats += layer_statistics(epoch, net.arena, captured, start_weights)
            self.state["last"] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
            records.append(record)
            self.pending.append(record)
            stop = None
            if cfg.target_loss is not None and record["loss"] < cfg.target_loss:
                stop = FitResult("target", f"training loss {record['loss']:.6g} < target {cfg.target_loss:g} at epoch {epoch}")
            elif cfg.patience is not None and stale >= cfg.patience:
                stop = FitResult("patience", f"no validation improvement for {stale} epochs; stopped at epoch {epoch}")
            elif self._stopped_by(signals):
                stopped = self._stopped_by(signals)
                name = signal.Signals(stopped).name
                stop = FitResult("interrupted", f"interrupted by {name}; saved {self.md.path} at epoch {epoch}", stopped)
            checkpoint = bool(cfg.checkpoint_every) and epoch % cfg.checkpoint_every == 0
            snapshot_best = improved and cfg.restore_best
            # Saving costs fsyncs: on a fast model, save every few seconds and whenever it matters.
            if stop or epoch == end or checkpoint or snapshot_best or time.monotonic() - self.last_save >= SAVE_EVERY:
                self._save(epoch, 0, {}, steps)
            if snapshot_best and self.leader:
                self._snapshot("best")
            if checkpoint and self.leader:
                self._snapshot(f"epoch-{epoch:04d}")
            self.report(record)
            if stop:
                if stop.status == "patience" and cfg.restore_best:
                    stop.message += self._restore_best(best, best_params, params, steps)
                stop.records = records
                return stop
        if cfg.restore_best and best and best.get("epoch") != end:
            return FitResult("done", self._restore_best(best, best_params, params, steps).lstrip("; "), 0, records)
        return FitResult("done", "", 0, records)

    def _interrupted(self, signum, epoch, b, total, records):
        name = signal.Signals(signum).name
        return FitResult(
            "interrupted",
            f"interrupted by {name}; saved {self.md.path} at epoch {epoch - 1} + {b}/{total} batches (run train again to continue)",
            signum,
            records,
        )

    def _replay(self, backup, params, replayed):
        """Back to the backup, then the steps of `replayed` [(epoch, idx, lr)] again: the state after them, exactly."""
        backup.restore(params, self.optimizer)
        current = self.engine.epoch, self.optimizer.hyper["lr"]
        for epoch, idx, lr in replayed:
            self.engine.epoch, self.optimizer.hyper["lr"] = epoch, lr
            _, _, grads = self.engine.gradient(idx, 1.0 / len(idx))
            self.engine.apply(grads)
        self.engine.epoch, self.optimizer.hyper["lr"] = current

    def _filter_learned(self, idx):
        """DyNet's skipping: drop samples whose estimated loss is under the bar, forward the rest.

        Returns (indices to learn, the summed losses of the skipped samples, how many had a forward pass).
        """
        cfg = self.cfg
        est = self.skip[idx]
        active = idx[est >= cfg.skip_below]
        skipped_loss = float(est[est < cfg.skip_below].sum())
        if len(active) == 0:
            return active, skipped_loss, 0
        losses, _ = self.net.losses(self.objective, self.x[active], self.y[active])
        self.skip[active] = losses
        keep = losses >= cfg.skip_below
        skipped_loss += float(losses[~keep].sum())
        return active[keep], skipped_loss, len(active)

    def _skip_accuracy(self):
        _, correct, _ = self.net.evaluate(self.objective, self.x[self.train_idx], self.y[self.train_idx])
        return correct / (len(self.train_idx) * self.scored)

    def _restore_best(self, best, best_params, params, steps):
        if best_params is None:
            # The best epoch belongs to an earlier run: its weights are in the snapshot.
            snap = os.path.join(self.md.path, CHECKPOINTS, "best")
            if not os.path.isdir(snap):
                return ""
            best_params = [self.net.arena.join_flat(modelmod.flatten_params(self.md.load(self.dtype, version=snap)[0]))]
        for dst, src in zip(params, best_params):
            np.copyto(dst, src)
        self._save(int(self.state.get("epochs", 0)), 0, {}, steps)
        return f"; restored the best weights (epoch {best['epoch']}, val_loss {best['val_loss']:.6g})"

    def _stop_nan(self, epoch, b, backup, params, steps, records, partial, what=None):
        """The loss of batch b is not finite: save the last step whose weights are finite, and stop."""
        what = what or f"the loss became non-finite at epoch {epoch}, batch {b + 1}"
        if all(np.all(np.isfinite(p)) for p in params):
            # Finite weights whose loss overflowed: they are the last finite step.
            if backup.taken:
                self._save(epoch - 1, b, partial, steps)
            kept = f"the model is left at its last finite step (step {steps})"
        elif backup.taken:
            # The last step made the weights non-finite: rebuild the state before it by
            # replaying the steps since the backup.  That position is in this epoch, or at
            # the end of the previous one; its partial sums are lost.
            self._replay(backup, params, backup.batches[:-1])
            steps -= 1
            if b > 0:
                self._save(epoch - 1, b - 1, {}, steps)
            else:
                last = len(batches.batch_bounds(len(self.train_idx), self.batch_size_at(epoch - 1))) - 1
                self._save(epoch - 2, last, {}, steps)
            kept = f"the model is left at its last finite step (step {steps})"
        else:
            kept = "the model is left unchanged"
        return FitResult("nan", f"{what}; {kept}", 0, records)

    # ------------------------------------------------------------ persistence

    def _save(self, epochs, batch, partial, steps):
        if not np.all(np.isfinite(self.net.arena.params)):
            raise TrainingError("refusing to save non-finite weights as a completed step; the model is left as it was")
        if not self.leader:
            self.pending = []
            return
        state = self.state
        state.update(
            epochs=epochs,
            batch=batch,
            partial=partial or {},
            partial_samples_total=len(self.train_idx),
            steps=steps,
            seed=self.seed,
            dtype=np.dtype(self.dtype).name,
            optimizer=self.optimizer.describe(),
            schedule={"spec": self.schedule.text, "warmup": self.schedule.warmup, "base_lr": self.base_lr,
                      "plateau": self.plateau},
            trained_on=self.record,
        )
        if self.growth:
            state["batch_growth"] = self.growth.text
            state.pop("batch_size", None)
        else:
            state["batch_size"] = self.batch_size
            state.pop("batch_growth", None)
        extra = per_parameter_state(self.optimizer, self.net.arena)
        if self.skip is not None:
            extra["training/skip_estimate"] = self.skip
        extra.update(normalization.arrays(self.normalization))
        files = {modelmod.CLASSES_FILE: modelmod.classes_text(self.classes)} if self.classes else None
        self.md.save(self.net.get_params(), state, extra, files)
        self.last_save = time.monotonic()
        self._trace()
        append_stats(self.md.path, self.pending_stats)
        self.pending_stats = []

    def _flatten_optimizer_state(self):
        """Saved optimiser state is per parameter ('layer_01/W.m'); training uses the flat arena."""
        self.optimizer.state = flat_state(self.optimizer, self.net.arena)

    def _trace(self):
        """Append the epochs now saved to MODEL/trace.tsv, so the trace never runs ahead of the model."""
        if self.pending:
            append_lines(os.path.join(self.md.path, TRACE_FILE), TRACE_COLUMNS, self.pending)
        self.pending = []

    def _snapshot(self, name):
        snapshot(self.md, name)


class _EpochSums:
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
        self.settle()
        return {"loss_sum": self.loss_sum, "correct": self.correct, "learned": self.learned,
                "seen": self.seen, "seconds": seconds}


class _Backup:
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


def snapshot(md, name):
    """Copy the current version into MODEL/checkpoints/NAME (replacing an older one)."""
    root = os.path.join(md.path, CHECKPOINTS)
    os.makedirs(root, exist_ok=True)
    fs.atomic_folder(os.path.join(root, name), lambda tmp: modelmod.copy_tree(md.version_dir(), tmp))


def _frozen_keys(text, spec):
    """Parameter folders named by --freeze: 'layer_01,layer_03-layer_05', node names (MDL) or numbers '1-3'."""
    keys = [n.key for n in spec.nodes if n.key]
    names = {n.name: n.key for n in spec.nodes}
    position = {key: i for i, key in enumerate(keys)}

    def one(item):
        item = item.strip()
        key = names.get(item) or (f"layer_{int(item):02d}" if item.isascii() and item.isdigit() else item)
        if key in position:
            return key
        if key in names.values() or item in names:
            raise UsageError(f"--freeze: {item} has no parameters to freeze")
        raise UsageError(f"--freeze: no layer {item!r}{close_matches(item, keys + [n for n in names if names[n]])}; "
                         f"layers with parameters: {', '.join(keys)}")

    found = []
    for part in text.split(","):
        if not part.strip():
            continue
        first, sep, last = part.partition("-")
        if sep:
            a, b = position[one(first)], position[one(last)]
            if a > b:
                raise UsageError(f"--freeze: the range {part.strip()} runs backwards")
            found += keys[a : b + 1]
        else:
            found.append(one(part))
    return sorted(set(found), key=position.get)


def _choose_seed(seed, state, warn):
    recorded = state.get("seed")
    if seed is None:
        if recorded is not None:
            return int(recorded)
        if state.get("init_seed") is not None:
            return int(state["init_seed"])
        return int(np.random.SeedSequence().entropy % (2**63))
    if recorded is not None and int(recorded) != seed and int(state.get("epochs", 0)) > 0:
        warn(f"--seed {seed} differs from the seed {recorded} this model was trained with; "
             "the validation split and shuffles change")
    return seed


def _make_optimizer(cfg, state):
    return continued(cfg.optimizer, state.get("optimizer"), **{key: getattr(cfg, key) for key in HYPER_PARAMETERS})
