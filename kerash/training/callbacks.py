"""The decisions at the end of each epoch, as small callbacks (as Keras's), one job each.

The epoch loop (epoch.Epochs) calls the hooks of every callback in the order
`callbacks()` gives them:

  epoch_begin(epoch, batches)  before the epoch's first step
  epoch_end(epoch, record)     every callback keeps its state (best, plateau, statistics)
  stop(epoch, record)          the first FitResult stops the run (target loss, then patience;
                               then the loop's own check for a signal)
  save_now(epoch)              any True saves the model at this epoch's end (so do a stop and the last epoch)
  saved(epoch)                 after that save: the snapshots (best, then the checkpoint)
  stopping(stop)               amends the stop before it is returned (restore-best)
  train_end(end)               the message of a run that ran to its end, or None (restore-best)
"""

import os
import time

import numpy as np

from .. import model as modelmod
from ..errors import UsageError
from ..model.directory import CHECKPOINTS
from .epoch import FitResult
from .state import snapshot
from .trace import layer_statistics, unit_statistics

SAVE_EVERY = 2.0  # seconds between saves of a run that is going well


class Callback:
    """Every hook, doing nothing; a callback overrides those of its job."""

    captured = None  # a buffer the engine fills with the gradient of each epoch's last step (Stats)
    loop = None  # the epoch loop, set when it starts: its steps

    def epoch_begin(self, epoch, batches):
        pass

    def epoch_end(self, epoch, record):
        pass

    def stop(self, epoch, record):
        return None

    def save_now(self, epoch):
        return False

    def saved(self, epoch):
        pass

    def stopping(self, stop):
        pass

    def train_end(self, end):
        return None


class TargetLoss(Callback):
    """--target-loss: stop when the training loss goes below it."""

    def __init__(self, target):
        self.target = target

    def stop(self, epoch, record):
        if record["loss"] < self.target:
            return FitResult("target", f"training loss {record['loss']:.6g} < target {self.target:g} at epoch {epoch}")
        return None


class Patience(Callback):
    """The best validation loss and the epochs since it (state.json: best, stale), whenever there is validation data.

    --patience N stops after N epochs without improvement; --restore-best keeps
    the best weights (in memory, and as MODEL/checkpoints/best for later runs)
    and puts them back when the run stops on patience or ends past them.
    """

    def __init__(self, run, saver, params):
        self.run, self.saver, self.params = run, saver, params
        self.patience, self.restore_best = run.cfg.patience, run.cfg.restore_best
        self.best = run.state.get("best") or {}
        self.stale = int(run.state.get("stale", 0))
        self.best_params = None  # the best weights, once this run has found them
        self.improved = False

    def epoch_end(self, epoch, record):
        self.improved = False
        validated = self.run.vx is not None
        if validated and (not self.best or record["val_loss"] < self.best["val_loss"]):
            self.best = {"val_loss": record["val_loss"], "epoch": epoch}
            self.stale = 0
            self.improved = True
            if self.restore_best:
                self.best_params = [p.copy() for p in self.params]
        elif validated:
            self.stale += 1
        self.run.state["best"], self.run.state["stale"] = self.best, self.stale

    def stop(self, epoch, record):
        if self.patience is not None and self.stale >= self.patience:
            return FitResult("patience", f"no validation improvement for {self.stale} epochs; stopped at epoch {epoch}")
        return None

    def _snapshot_best(self):
        return self.improved and self.restore_best

    def save_now(self, epoch):
        return bool(self._snapshot_best())

    def saved(self, epoch):
        if self._snapshot_best() and self.run.leader:
            snapshot(self.run.md, "best")

    def stopping(self, stop):
        if stop.status == "patience" and self.restore_best:
            stop.message += self._restore()

    def train_end(self, end):
        if self.restore_best and self.best and self.best.get("epoch") != end:
            return self._restore().lstrip("; ")
        return None

    def _restore(self):
        """Put back the best weights and save them; the words that say so, or '' when there are none."""
        run, best_params = self.run, self.best_params
        if best_params is None:
            # The best epoch belongs to an earlier run: its weights are in the snapshot.
            snap = os.path.join(run.md.path, CHECKPOINTS, "best")
            if not os.path.isdir(snap):
                return ""
            best_params = [run.net.arena.join_flat(modelmod.flatten_params(run.md.load(run.dtype, version=snap)[0]))]
        for dst, src in zip(self.params, best_params):
            np.copyto(dst, src)
        self.saver.save(int(run.state.get("epochs", 0)), 0, {}, self.loop.steps)
        return f"; restored the best weights (epoch {self.best['epoch']}, val_loss {self.best['val_loss']:.6g})"


class RateSchedule(Callback):
    """The learning rate of each epoch (--lr-schedule, --warmup), and the plateau schedule's state (run.plateau)."""

    def __init__(self, run):
        self.run = run

    def epoch_begin(self, epoch, batches):
        run = self.run
        run.optimizer.hyper["lr"] = run.schedule.rate(run.base_lr, epoch, run.plateau)

    def epoch_end(self, epoch, record):
        run = self.run
        run.plateau = run.schedule.after_epoch(epoch, record["val_loss" if run.vx is not None else "loss"],
                                               run.optimizer.lr, run.plateau)


class Stats(Callback):
    """--stats: each layer's weights, last gradient and update of the epoch, for MODEL/stats.tsv (written by the saver)."""

    def __init__(self, run, saver, params):
        self.arena, self.saver, self.params = run.net.arena, saver, params
        self.captured = np.empty_like(params[0])
        self.start, self.batches = None, 0

    def epoch_begin(self, epoch, batches):
        self.start = self.params[0].copy()
        self.batches = batches

    def epoch_end(self, epoch, record):
        if self.batches:
            self.saver.pending_stats += layer_statistics(epoch, self.arena, self.captured, self.start)


class UnitTrace(Callback):
    """--trace-unit NODE:INDEX,…: each unit's activation over the training part after every epoch, for
    MODEL/units.tsv (written by the saver with the epoch)."""

    def __init__(self, run, saver, text):
        self.run, self.saver = run, saver
        self.units, self.nodes = [], []
        net = run.net
        for item in text.split(","):
            name, index = item.strip().rsplit(":", 1)
            node = net.node_index(name)  # an unknown node is refused before the first step
            width = int(np.prod(net.nodes[node].shape))
            if int(index) >= width:
                raise UsageError(f"--trace-unit {item.strip()}: node {name} has {width} values per sample "
                                 f"(indices 0..{width - 1})")
            self.units.append((net.nodes[node].name, int(index)))
            self.nodes.append(node)

    def epoch_end(self, epoch, record):
        run = self.run
        x = run.x if len(run.train_idx) == len(run.x) else run.x[run.train_idx]
        values = run.net.node_values(x, self.nodes)
        rows = [v.reshape(-1, int(np.prod(run.net.nodes[i].shape))) for v, i in zip(values, self.nodes)]
        self.saver.pending_units += unit_statistics(epoch, rows, self.units)


class Checkpoints(Callback):
    """--checkpoint-every N: save, and keep MODEL/checkpoints/epoch-NNNN, every N epochs."""

    def __init__(self, every, md, leader):
        self.every, self.md, self.leader = every, md, leader

    def save_now(self, epoch):
        return epoch % self.every == 0

    def saved(self, epoch):
        if epoch % self.every == 0 and self.leader:
            snapshot(self.md, f"epoch-{epoch:04d}")


class SaveWhenDue(Callback):
    """Saving costs fsyncs: on a fast model, save every SAVE_EVERY seconds (and whenever another callback asks)."""

    def __init__(self, saver):
        self.saver = saver

    def save_now(self, epoch):
        return time.monotonic() - self.saver.last_save >= SAVE_EVERY


def callbacks(run, saver, params):
    """The epoch-end callbacks of a run (see fit.Run), in the order they are called."""
    cfg = run.cfg
    found = [TargetLoss(cfg.target_loss)] if cfg.target_loss is not None else []
    found += [Patience(run, saver, params), RateSchedule(run)]
    if cfg.stats:
        found.append(Stats(run, saver, params))
    if cfg.trace_unit:
        found.append(UnitTrace(run, saver, cfg.trace_unit))
    if cfg.checkpoint_every:
        found.append(Checkpoints(cfg.checkpoint_every, run.md, run.leader))
    found.append(SaveWhenDue(saver))
    return found
