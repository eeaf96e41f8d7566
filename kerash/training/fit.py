"""train's entry point: a run set up from the model directory and the data, then its epochs.

The set-up (Run) reads the model and what it was trained with, prepares the
data (model.data.prepare), and continues the optimiser, the batch sizes, the
learning-rate schedule, the seed and the skip estimates from the model's
state; the parts asked are frozen; the engine is made when the epochs start.  The
epochs run in epoch.Epochs, the decisions at each epoch's end are the
callbacks of callbacks.py, and state.Saver writes the run into the model
directory.
"""

import hashlib
import os

import numpy as np

from .. import model as modelmod
from ..errors import DataError, UsageError, close_matches
from ..files.labels import WordLabels
from ..model import imputation, normalization
from ..model.data import prepare, unpadded
from ..network import Objective, targets_are_classes
from ..processes import limit_blas_threads, mpi_size, prewarm_blas, tune_allocator, usable_cores
from . import batches, bptt
from .callbacks import callbacks
from .engines import default_workers, make_engine
from .engines.step import shard_count
from .engines.step import StepSettings
from .epoch import Epochs, FitResult
from .optimizers import HYPER_PARAMETERS, continued, flat_state
from .schedule import BatchGrowth, Schedule
from .state import Saver

MAX_WORKERS_PER_CORE = 4
DEFAULT_NAMES = ("data", "labels", "validation data", "validation labels")


def fit(model_path, x, y, cfg, val=None, report=None, progress=None, warn=None, names=DEFAULT_NAMES, note=None):
    """Train the model in `model_path` on samples x with targets y; see TrainConfig.

    `names` (data, labels, validation data, validation labels) name the inputs in messages.
    """
    md = modelmod.ModelDir(model_path)
    if uses_mpi(cfg):
        from .engines.mpi import rank_from_environment

        if rank_from_environment() != 0:
            # Rank 0 alone writes the model; the other ranks compute and stay silent.
            return Run(md, x, y, cfg, val, None, None, None, names, leader=False).run()
    with md.lock(blocking=False):
        return Run(md, x, y, cfg, val, report, progress, warn, names, note=note).run()


def uses_mpi(cfg):
    """Whether training runs as MPI ranks (--engine mpi, or started by mpiexec with several ranks)."""
    return cfg.engine == "mpi" or (cfg.engine is None and mpi_size() > 1)


class Run:
    """One run of train: the model, the data as the network reads them, and everything the run continues."""

    def __init__(self, md, x, y, cfg, val, report, progress, warn, names, leader=True, note=None):
        self.md, self.cfg = md, cfg
        self.leader = leader
        self.report = report or (lambda record: None)
        self.progress = progress
        self.warn = warn or (lambda message: None)
        self.note = note or (lambda message: None)  # train -v: how the run is set up, and why
        if cfg.dtype is not None and cfg.dtype not in modelmod.DTYPES:
            raise UsageError(f"--dtype must be float32 or float64, not {cfg.dtype!r}")
        with md.pinned() as version:
            self.net, state = md.network(modelmod.DTYPES.get(cfg.dtype), version)
            self.classes = modelmod.read_classes(md, version)
            self.normalization = normalization.read(md, version)
            self.fill = imputation.read(md, version)
        for key, name, p in self.net.param_items():
            if not np.all(np.isfinite(p)):
                raise DataError(f"{os.path.join(md.path, key, name)}.npy holds non-finite weights; restore a checkpoint "
                                "(kerash checkpoints) or model-init the model again")
        self.state = state
        dtype = self.dtype = self.net.dtype
        spec = md.spec
        # Shaped first: the sample counts tell which class names the labels use (prepare shapes them again, unchanged).
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
        cfg.check("impute")
        fitting = cfg.impute is not None and self.fill is None  # fitted on the training part, once it is known
        if fitting and not fresh:
            raise UsageError(f"--impute: {md.path} was trained without it; the values are fitted before the first "
                             "step (model-init a fresh model to train with them)")
        self.x, self.y = prepare(spec, x, y, self.classes, dtype, names[:2], md.path, fill=self.fill,
                                 finite=not fitting)
        n = self.x.shape[0]
        if n == 0:
            raise DataError("no training samples")
        cfg.check("batch_size")  # before it is read: 0 is no "model's last" (it meant 32)
        self._batching(state)
        cfg.check("workers", "shards", "threads", "seed", "stall", "target_loss", "checkpoint_every", "skip_below",
                  "skip_growth", "trace_unit", "layer_lr", "layer_momentum", "bptt")
        self.seed = _choose_seed(cfg.seed, state, warn=self.warn)
        self.carry = None
        if cfg.bptt is not None:
            self._windows(val)
            n = len(self.x)
        if val is not None:
            self.train_idx = np.arange(n)
            self.vx, self.vy = prepare(spec, vx, val[1], self.classes, dtype, names[2:], md.path, fill=self.fill,
                                       finite=not fitting)
        else:
            self.train_idx, val_idx = batches.split(n, cfg.validation_split, self.seed)
        if fitting:
            self.fill = imputation.fit(self.x, spec, self.train_idx, cfg.impute)
            self.x = imputation.fill(self.x, self.fill, spec)
            modelmod.check_finite(unpadded(self.x, spec), names[0])  # the padding of shorter sequences stays nan
            if val is not None:
                self.vx = imputation.fill(self.vx, self.fill, spec)
                modelmod.check_finite(unpadded(self.vx, spec), names[2])
        if val is None:
            self.vx = self.x[val_idx] if len(val_idx) else None
            self.vy = self.y[val_idx] if len(val_idx) else None
        self.imputed = fitting
        self._normalize(fresh, x)
        if fresh and self.normalization is None:
            self._warn_unscaled()
        stepped = [n.name for n in spec.nodes if getattr(getattr(n.layer, "activation", None), "name", "") == "binarystep"]
        if stepped:  # its derivative is 0 everywhere: no gradient passes it
            self.warn(f"{', '.join(stepped)}: binarystep's derivative is zero, so gradient training cannot change the "
                      "weights before it (nor its own); use sigmoid or tanh to train, binarystep to run")
        self.classification = targets_are_classes(self.y)
        self.objective = Objective(spec.loss, self.net)
        self.scored = self.objective.scored_steps(self.x, self.y)  # scored outputs per sample, for accuracy
        self.objective.adapt_to_targets(self.y)
        self.optimizer = _make_optimizer(cfg, state)
        self.optimizer.restore(state.get("optimizer"), md.load_extra("optimizer"))
        self.layer_settings = _layer_settings(cfg, state, spec, self.optimizer)
        self.state.update(self.layer_settings)
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
        self.saver = Saver(self)
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
        option = "--normalize-minmax" if self.cfg.normalize_minmax else "--normalize"
        if self.cfg.normalize and self.cfg.normalize_minmax:
            raise UsageError("give --normalize (mean and deviation) or --normalize-minmax ([-1, 1]), not both")
        if self.normalization is None and (self.cfg.normalize or self.cfg.normalize_minmax):
            if not fresh:
                raise UsageError(f"{option}: {self.md.path} was trained on raw inputs; statistics are fitted before "
                                 "the first step (model-init a fresh model to train with them)")
            fitter = normalization.fit_minmax if self.cfg.normalize_minmax else normalization.fit
            self.normalization = fitter(self.x, self.md.spec, self.train_idx)
            self.fitted = True
        if self.normalization is not None:
            if np.may_share_memory(self.x, given):
                self.x = self.x.copy()  # the caller's array stays raw
            normalization.apply(self.x, self.normalization, self.md.spec)
            if self.vx is not None:
                self.vx = normalization.apply(np.ascontiguousarray(self.vx), self.normalization, self.md.spec)

    UNSCALED_SPAN, UNSCALED_RATIO = 100.0, 1000.0  # a feature this large, or spans this far apart: unscaled
    SCALE_ROWS = 10_000  # rows looked at

    def _warn_unscaled(self):
        """Say once when the inputs are far from one scale and nothing normalises them: a classifier on raw
        inputs of very different ranges may stay at the majority class, with no other sign why."""
        rows = self.x[self.train_idx[: self.SCALE_ROWS]]
        rows = rows.reshape(len(rows), -1) if rows.ndim > 1 else rows.reshape(-1, 1)
        if not len(rows) or rows.shape[1] > 100_000:
            return
        low, high = rows.min(axis=0).astype(np.float64), rows.max(axis=0).astype(np.float64)
        span = np.maximum(np.abs(low), np.abs(high))
        width = high - low
        varying = width > 0
        wide = int(np.argmax(span))
        if span[wide] > self.UNSCALED_SPAN or (varying.sum() > 1 and width[varying].max() >
                                              self.UNSCALED_RATIO * width[varying].min()):
            narrow = int(np.flatnonzero(varying)[np.argmin(width[varying])]) if varying.any() else wide
            self.warn(f"the inputs are not on one scale (feature {wide + 1} reaches {span[wide]:.4g}, feature "
                      f"{narrow + 1} spans {width[narrow]:.3g}); --normalize (or --normalize-minmax) brings them "
                      "to one, kept with the model")

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

    def _windows(self, val):
        """train --bptt K: the data as windows of B streams, the states carried from window to window."""
        cfg = self.cfg
        if not self.net.whole:
            raise UsageError("--bptt carries the states of lstm and gru layers: the model has none")
        if self.growth is not None:
            raise UsageError("--bptt reads --batch-size streams side by side: a growing batch size cannot")
        if val is None and cfg.validation_split:
            raise UsageError("--bptt reads the training data as one stream: give validation data (--val-data), "
                             "not --validation-split")
        if uses_mpi(cfg):
            raise UsageError("--bptt runs in one machine's processes (--workers), not over MPI")
        if cfg.skip_below is not None:  # a skipped window would not pass its states on
            raise UsageError("--bptt reads every window in order, carrying states: it cannot skip samples "
                             "(--skip-below)")
        self.x, self.y = bptt.stream_windows(self.x, self.y, self.batch_size, cfg.bptt)
        self.carry = bptt.Carry(self.net, self.batch_size, len(self.x) // self.batch_size)
        self.note(f"--bptt {cfg.bptt}: {self.batch_size} streams of {len(self.x) // self.batch_size} windows")

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
            kept = [what for what, new in (("class names", self.new_classes), ("input statistics", self.fitted),
                                           ("values for missing inputs", self.imputed)) if new]
            if kept and self.leader:
                # --epochs 0 on a fresh model: what the data say about its inputs and classes, without a step.
                self.net.use_arena()
                self._flatten_optimizer_state()
                self.saver.save(done, 0, {}, int(self.state.get("steps", 0)))
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
        if position and self.carry is not None:  # --bptt: the states the next window starts from
            self.carry.restore(position, self.md.load_extra("bptt"))
        self.event = "start:new-data" if changed else "start"
        cfg = self.cfg
        workers = cfg.workers
        batch, steps = self.batch_size_at(done + 1), self.x.shape[1] if self.net.sequence else 1
        shards = shard_count(self.net, batch, steps, cfg.shards)
        if workers is None:
            workers = 1 if uses_mpi(cfg) else default_workers(self.net, batch, steps=steps, shards=cfg.shards)
            self.note(f"{workers} process(es): {usable_cores()} core(s) here, and a batch of {batch} is {shards} "
                      f"shard(s) ({'--shards' if cfg.shards else 'from the model and the batch size'}); at most one "
                      "process per core and per shard")
        else:
            self.note(f"{workers} process(es) (--workers); a batch of {batch} is {shards} shard(s)")
        if workers > 1:
            self.note("the fork engine wakes as many workers as pay at each step, timing its steps with each number "
                      "(trace.tsv's processes column); the result is the same whatever it chooses")
        most = MAX_WORKERS_PER_CORE * usable_cores()
        if workers > most:  # thousands of processes help nobody: each waits for a core
            self.warn(f"--workers {workers}: at most {MAX_WORKERS_PER_CORE} per core; using {most} on "
                      f"{usable_cores()} core(s)")
            workers = most
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
            settings = StepSettings(self.seed, cfg.clip_norm, self.net.arena.trainable_ranges(frozen) if frozen else None,
                                    cfg.shards, self.carry, batch)
            engine = make_engine(cfg.engine, self.net, self.objective, self.x, self.y, self.optimizer, mask,
                                 workers, cfg.stall, self.warn, settings)
            # The engine put every weight in one flat arena: one update, one copy for a backup.
            params = [self.net.arena.params]
            epochs = Epochs(self, engine, self.saver, callbacks(self, self.saver, params), params)
            return epochs.run_epochs(done, end, position, partial)
        finally:
            if engine is not None:
                engine.close()

    def _flatten_optimizer_state(self):
        """Saved optimiser state is per parameter ('layer_01/W.m'); training uses the flat arena."""
        self.optimizer.state = flat_state(self.optimizer, self.net.arena)
        self.optimizer.layer = {}
        for name, text in self.layer_settings.items():  # per-layer rates and momenta, as flat vectors
            if text is None:
                continue
            default = 1.0 if name == "layer_lr" else self.optimizer.hyper["momentum"]
            values = np.full(self.net.arena.params.shape, default, dtype=self.net.arena.params.dtype)
            given = _layer_values(text, self.md.spec, "--" + name.replace("_", "-"))
            for key, _, start, size, _ in self.net.arena.layout:
                if key in given:
                    values[start : start + size] = given[key] / self.base_lr if name == "layer_lr" else given[key]
            self.optimizer.layer["all.lr" if name == "layer_lr" else "all.momentum"] = values


def _layer_settings(cfg, state, spec, optimizer):
    """{'layer_lr': text or None, 'layer_momentum': …}: given now, else as the model recorded them; checked."""
    found = {}
    for name in ("layer_lr", "layer_momentum"):
        text = getattr(cfg, name)
        if text is None:
            text = state.get(name)
        elif text == "none":
            text = None
        if text is not None:
            option = "--" + name.replace("_", "-")
            if name == "layer_momentum" and "momentum" not in optimizer.hyper:
                raise UsageError(f"{option} applies to the momentum and nesterov optimizers, not {optimizer.name}")
            for value in _layer_values(text, spec, option).values():
                limit = optimizer.ranges["lr" if name == "layer_lr" else "momentum"]
                limit.check(option.lstrip("-"), value)
        found[name] = text
    return found


def _layer_values(text, spec, option):
    """{parameter folder: value} of 'layer_01=0.01,h=0.5' (folders or MDL node names)."""
    keys = {n.key for n in spec.nodes if n.key}
    names = {n.name: n.key for n in spec.nodes if n.key}
    found = {}
    for item in text.split(","):
        node, _, raw = item.strip().partition("=")
        key = node if node in keys else names.get(node)
        if key is None:
            raise UsageError(f"{option}: {node!r} is not a layer with parameters (these are: "
                             f"{', '.join(sorted(names))})")
        try:
            found[key] = float(raw)
        except ValueError:
            raise UsageError(f"{option}: {raw!r} is not a number") from None
    return found


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
