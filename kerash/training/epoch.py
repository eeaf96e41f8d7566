"""The epoch loop: shuffled batches through the engine, with skipping, interrupts and non-finite stops.

A step that fails half-way (a worker lost, a signal in the middle of an
update) or leaves non-finite weights is rebuilt from a backup by replaying
the batches applied since, so what is saved is always a completed, finite
step.  At each epoch's end the loop builds the epoch's record and hands it
to the callbacks (see callbacks.py), which decide about stopping and saving.
"""

import math
import signal
import time
from dataclasses import dataclass, field

import numpy as np

from . import batches
from .engines.step import EngineFailure, Interrupted
from .state import Backup, EpochSums


@dataclass
class FitResult:
    status: str  # done, nothing, target, patience, interrupted, nan
    message: str = ""
    signal: int = 0
    records: list = field(default_factory=list)


class _Signals:
    """SIGINT, SIGTERM and SIGHUP set a flag; the loop stops at the end of the current step.

    A signal the caller ignores (nohup's SIGHUP) stays ignored.
    """

    def __init__(self):
        self.received = 0

    def __enter__(self):
        self.previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) != signal.SIG_IGN:
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


class Epochs:
    """The epochs of a run (see fit.Run) on its engine, saved by `saver`, with the epoch-end `callbacks` in order."""

    def __init__(self, run, engine, saver, callbacks, params):
        self.run, self.engine, self.saver, self.callbacks = run, engine, saver, callbacks
        self.params = params  # [the flat arena of weights]: one update, one copy for a backup
        self.steps = int(run.state.get("steps", 0))
        self.signals = None
        for cb in callbacks:
            cb.loop = self
        # The gradient of each epoch's last step, for a callback that asks for it (--stats).
        self.captured = next((cb.captured for cb in callbacks if cb.captured is not None), None)

    def run_epochs(self, done, end, position, partial):
        """Epochs done+1 … end, the first from batch `position` with the sums `partial`; a FitResult."""
        with _Signals() as signals:
            self.engine.interrupted = lambda: bool(signals.received)
            self.signals = signals
            return self._epochs(done, end, position, partial)

    def _stopped_by(self):
        """The signal that stops training now: this process's, or (MPI) one that every rank agreed on."""
        if self.engine.kind == "mpi":
            return (self.signals.received or signal.SIGTERM) if self.engine.agreed_stop else 0
        return self.signals.received

    def _epochs(self, done, end, position, partial):
        run, cfg, opt, params = self.run, self.run.cfg, self.run.optimizer, self.params
        backup = Backup(params)
        # In one process, losses of a fused loss are computed once an epoch for all its batches.
        defer = self.engine.kind == "local" and run.skip is None and run.objective.can_defer
        records = []
        captured = self.captured
        for epoch in range(done + 1, end + 1):
            t0 = time.monotonic() - float(partial.get("seconds", 0.0))
            epoch_batches = batches.epoch_batches(run.train_idx, run.batch_size_at(epoch), run.seed, epoch,
                                                  ordered=run.carry is not None)
            self.engine.epoch = epoch
            for cb in self.callbacks:
                cb.epoch_begin(epoch, len(epoch_batches))
            sums = EpochSums(run.objective, partial)
            keep = sums.kept if defer else None
            if run.skip is not None and position == 0:
                run.skip[run.skip < cfg.skip_below] += run.skip_growth
            for b in range(position, len(epoch_batches)):
                idx = epoch_batches[b]
                if run.skip is not None:
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
                            self._replay(backup, backup.batches)
                        self.saver.save(epoch - 1, b, sums.partial(time.monotonic() - t0), self.steps)
                        if isinstance(e, EngineFailure):
                            raise
                        return self._interrupted(self.signals.received, epoch, b, len(epoch_batches), records)
                    losses, c = result.losses, result.correct
                    if not result.finite:
                        if keep:
                            keep.pop()  # the non-finite batch is not part of the epoch's sums
                        return self._stop_nan(epoch, b, backup, records, sums.partial(time.monotonic() - t0))
                    if losses is not None:
                        batch_loss = float(losses.sum())
                    backup.record(epoch, idx, opt.lr)
                    self.steps += 1
                    sums.learned += len(idx)
                    if losses is None:
                        sums.seen += len(idx)
                    else:
                        sums.loss_sum += batch_loss
                        sums.correct += c
                        if run.skip is None:
                            sums.seen += len(idx)
                        else:
                            run.skip[idx] = losses
                if run.progress:
                    run.progress(epoch, b + 1, len(epoch_batches))
                if self._stopped_by():
                    if not np.all(np.isfinite(params[0])):
                        return self._stop_nan(epoch, b + 1, backup, records, {},
                                              f"the weights became non-finite at epoch {epoch}, batch {b + 1}")
                    self.saver.save(epoch - 1, b + 1, sums.partial(time.monotonic() - t0), self.steps)
                    return self._interrupted(self._stopped_by(), epoch, b + 1, len(epoch_batches), records)
            if not np.all(np.isfinite(params[0])):
                # The epoch's last step overflowed the weights: that step is undone, not saved.
                return self._stop_nan(epoch + 1, 0, backup, records, {},
                                      f"the weights became non-finite at the last step of epoch {epoch}")
            sums.settle()
            position, partial = 0, {}
            record = self._record(epoch, sums, t0, first=epoch == done + 1)
            stop = self._epoch_end(epoch, end, record, records)
            if stop:
                return stop
        message = next((m for m in (cb.train_end(end) for cb in self.callbacks) if m is not None), "")
        return FitResult("done", message, 0, records)

    def _record(self, epoch, sums, t0, first):
        """The epoch's line of the trace: its figures on the training part, and on the validation data if any."""
        run = self.run
        net, opt = run.net, run.optimizer
        n_train = len(run.train_idx)
        record = {
            "epoch": epoch,
            "samples": sums.learned,
            "loss": sums.loss_sum / n_train if run.skip is not None else sums.loss_sum / max(sums.seen, 1),
            "accuracy": sums.correct / max(sums.learned * run.scored, 1) if run.classification else math.nan,
            "val_loss": math.nan,
            "val_accuracy": math.nan,
            "lr": opt.lr,
            "batch_size": run.batch_size_at(epoch),
            "event": run.event if first else "",
        }
        if run.skip is not None:
            record["accuracy"] = self._skip_accuracy() if run.classification else math.nan
        if run.vx is not None:
            vloss, vcorrect, _ = net.evaluate(run.objective, run.vx, run.vy)
            record["val_loss"] = vloss / len(run.vx)
            record["val_accuracy"] = (vcorrect / (len(run.vx) * run.objective.scored_steps(run.vx, run.vy))
                                      if run.classification else math.nan)
        record["seconds"] = time.monotonic() - t0
        per_step = getattr(self.engine, "processes_per_step", None)
        record["processes"] = per_step() if per_step else 1
        explain = getattr(self.engine, "explain", None)
        if explain:  # train -v: why that many processes
            run.note(f"epoch {epoch}: {record['processes']:.2f} processes a step; {explain()}")
        return record

    def _epoch_end(self, epoch, end, record, records):
        """The callbacks' turn at the end of an epoch; the FitResult that stops the run, or None."""
        run, callbacks = self.run, self.callbacks
        for cb in callbacks:
            cb.epoch_end(epoch, record)
        run.state["last"] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
        records.append(record)
        self.saver.pending.append(record)
        stop = next((s for s in (cb.stop(epoch, record) for cb in callbacks) if s is not None), None)
        if stop is None:
            stopped = self._stopped_by()
            if stopped:
                name = signal.Signals(stopped).name
                stop = FitResult("interrupted", f"interrupted by {name}; saved {run.md.path} at epoch {epoch}", stopped)
        # Saving costs fsyncs: on a fast model, save every few seconds and whenever it matters.
        if stop or epoch == end or any([cb.save_now(epoch) for cb in callbacks]):
            self.saver.save(epoch, 0, {}, self.steps)
            for cb in callbacks:
                cb.saved(epoch)
        run.report(record)
        if stop:
            for cb in callbacks:
                cb.stopping(stop)
            stop.records = records
        return stop

    def _interrupted(self, signum, epoch, b, total, records):
        name = signal.Signals(signum).name
        return FitResult(
            "interrupted",
            f"interrupted by {name}; saved {self.run.md.path} at epoch {epoch - 1} + {b}/{total} batches (run train again to continue)",
            signum,
            records,
        )

    def _replay(self, backup, replayed):
        """Back to the backup, then the steps of `replayed` [(epoch, idx, lr)] again: the state after them, exactly."""
        opt = self.run.optimizer
        backup.restore(self.params, opt)
        current = self.engine.epoch, opt.hyper["lr"]
        for epoch, idx, lr in replayed:
            self.engine.epoch, opt.hyper["lr"] = epoch, lr
            _, _, grads = self.engine.gradient(idx, 1.0 / len(idx))
            self.engine.apply(grads)
        self.engine.epoch, opt.hyper["lr"] = current

    def _filter_learned(self, idx):
        """DyNet's skipping: drop samples whose estimated loss is under the bar, forward the rest.

        Returns (indices to learn, the summed losses of the skipped samples, how many had a forward pass).
        """
        run = self.run
        bar = run.cfg.skip_below
        est = run.skip[idx]
        active = idx[est >= bar]
        skipped_loss = float(est[est < bar].sum())
        if len(active) == 0:
            return active, skipped_loss, 0
        losses, _ = run.net.losses(run.objective, run.x[active], run.y[active])
        run.skip[active] = losses
        keep = losses >= bar
        skipped_loss += float(losses[~keep].sum())
        return active[keep], skipped_loss, len(active)

    def _skip_accuracy(self):
        run = self.run
        _, correct, _ = run.net.evaluate(run.objective, run.x[run.train_idx], run.y[run.train_idx])
        return correct / (len(run.train_idx) * run.scored)

    def _stop_nan(self, epoch, b, backup, records, partial, what=None):
        """The loss of batch b is not finite: save the last step whose weights are finite, and stop."""
        what = what or f"the loss became non-finite at epoch {epoch}, batch {b + 1}"
        params, save = self.params, self.saver.save
        if all(np.all(np.isfinite(p)) for p in params):
            # Finite weights whose loss overflowed: they are the last finite step.
            if backup.taken:
                save(epoch - 1, b, partial, self.steps)
            kept = f"the model is left at its last finite step (step {self.steps})"
        elif backup.taken:
            # The last step made the weights non-finite: rebuild the state before it by
            # replaying the steps since the backup.  That position is in this epoch, or at
            # the end of the previous one; its partial sums are lost.
            self._replay(backup, backup.batches[:-1])
            self.steps -= 1
            if b > 0:
                save(epoch - 1, b - 1, {}, self.steps)
            else:
                last = len(batches.batch_bounds(len(self.run.train_idx), self.run.batch_size_at(epoch - 1))) - 1
                save(epoch - 2, last, {}, self.steps)
            kept = f"the model is left at its last finite step (step {self.steps})"
        else:
            kept = "the model is left unchanged"
        return FitResult("nan", f"{what}; {kept}", 0, records)
