"""Engines: one training step — the gradient of a batch and the optimiser's update — however computed.

Every engine has the same small interface, so the loop, evolve and the
pipeline tools share one training step:

* ``step(idx, scale, keep=None, capture=None) -> StepResult``: the gradient
  of the samples `idx` (scale × the sum of their loss gradients) and, when
  the batch's loss is finite, one optimiser update of the weights (a
  non-finite batch leaves them unchanged); `capture` receives the gradient
  applied (for statistics);
* ``gradient(idx, scale) -> (losses, correct, flat gradient)`` and
  ``apply(grads)``: the two halves of a step, computed as step computes them
  (used to replay steps exactly);
* ``close()``: stop whatever the engine started.

The loop sets ``engine.epoch`` before each epoch (dropout masks depend on
it); `StepSettings` holds what is fixed for a run: the seed of the masks,
gradient clipping, and the trainable part of the weights (frozen layers).
What may change between steps — the optimiser's rate and other
hyper-parameters — is read from the optimiser at each step (the fork engine
hands it to its workers with every update).

`local` computes in this process (BLAS may use threads); `fork` splits each
batch between forked processes that share the weights (see fork.py); `mpi`
splits it between MPI ranks, on one machine or several (see mpi.py).
`make_engine` picks one from the command line and the machine.
"""

import math
import os
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..layers import Noise
from .optimizers import SLOTS

ENGINES = ("local", "fork", "mpi")
# Below this many multiply-adds per batch, splitting a batch costs more than it saves.
SPLIT_WORK = 4_000_000
MAX_DEFAULT_WORKERS = 8


@dataclass(frozen=True)  # forked workers hold a copy: a change would reach this process only
class StepSettings:
    seed: int = 0  # of dropout masks
    clip: float = None  # largest global gradient norm (torch.nn.utils.clip_grad_norm_), or None
    ranges: list = None  # [(start, stop)] of the flat arena that is trained, or None for all


@dataclass
class StepResult:
    losses: object  # per-sample losses (N,), or None when deferred (see Network.gradient's keep)
    correct: object  # samples (or scored steps) classified right, or None when deferred
    finite: bool  # False: the loss was not finite and the weights were left unchanged


def limit_blas_threads(threads):
    """Limit BLAS to `threads` threads in this process (until it exits)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


def prewarm_blas(dtype):
    # OpenBLAS limited to one thread runs float32 GEMMs at a third of their
    # speed until the process has done one product with a wide output.
    a = np.ones((128, 256), dtype=dtype)
    b = np.ones((256, 784), dtype=dtype)
    a @ b


def tune_allocator():
    """Keep freed memory for reuse instead of returning it to the system at every step (glibc only).

    A training step allocates and frees arrays of a few MB; glibc maps each
    afresh and the kernel zeroes its pages on first touch, which cost a CNN
    step a third of its time.  The settings are inherited by forked workers.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest: arrays up to 32 MB come from the reused heap
    mallopt(m_trim_threshold, 1 << 30)


def gatherer(x):
    """A function picking samples of x (N, …) by index: take() on rows is 3× faster than x[idx]."""
    rows = x.reshape(x.shape[0], -1)
    shape = x.shape[1:]
    return lambda idx: rows.take(idx, axis=0).reshape((len(idx),) + shape)


def usable_cores():
    """The cores this process may run on (its CPU affinity), not the machine's load."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def mpi_size():
    """The number of ranks when started by mpiexec (from the launcher's environment), else 1."""
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def default_workers(net, batch_size, cores=None, steps=1):
    """Workers for a batch: every core when a batch is worth splitting, else one process."""
    cores = cores or usable_cores()
    work = net.macs_per_sample() * batch_size * steps
    return min(cores, MAX_DEFAULT_WORKERS) if cores > 1 and work >= SPLIT_WORK else 1


def apply_update(optimizer, params, grads, mask, ranges=None):
    """One optimiser step on a flat arena: the update every engine applies.

    `ranges` [(start, stop)] limits it to parts of the arena (the trainable
    parts, or a process's slice of them); the optimiser's state ('all.m', …)
    covers the whole arena and is updated over the same parts.
    """
    if ranges is None:
        optimizer.step([("all", params, grads, mask)])
        return
    whole = optimizer.state
    for slot in SLOTS[optimizer.name]:  # created whole, so that parts are views of it
        whole.setdefault(f"all.{slot}", np.zeros_like(params))
    parts, items = {}, []
    for k, (start, stop) in enumerate(ranges):
        for key, array in whole.items():
            parts[f"part{k}.{key.split('.', 1)[1]}"] = array[start:stop]
        items.append((f"part{k}", params[start:stop], grads[start:stop], None if mask is None else mask[start:stop]))
    optimizer.state = parts
    try:
        optimizer.step(items)
    finally:
        optimizer.state = whole


def intersect(ranges, start, stop):
    """The parts of `ranges` (None: everything) inside [start, stop)."""
    found = []
    for a, b in ranges if ranges is not None else [(start, stop)]:
        a, b = max(a, start), min(b, stop)
        if b > a:
            found.append((a, b))
    return found


def squared_norm(grads, parts):
    """Σ g² over parts, in their order (so that any process computing the same parts gets the same bits)."""
    total = 0.0
    for start, stop in parts:
        piece = grads[start:stop]
        total += float(np.dot(piece, piece))
    return total


def clip_coefficient(squared, clip):
    """torch.nn.utils.clip_grad_norm_'s factor: clip / (‖g‖ + 1e-6), at most 1."""
    if clip is None:
        return 1.0
    coef = clip / (math.sqrt(squared) + 1e-6)
    return coef if coef < 1.0 else 1.0


class LocalEngine:
    """Gradients and updates in this process, on the network's flat arenas."""

    kind = "local"
    leader = True  # writes the model (every engine but MPI's other ranks)
    agreed_stop = 0  # a stop request agreed with other processes (MPI)

    def __init__(self, net, x, y, optimizer, mask, settings=None):
        self.net, self.y = net, y
        self.optimizer, self.mask = optimizer, mask
        self.settings = settings or StepSettings()
        self.gather = gatherer(x)
        self.shards = 1
        self.epoch = 1
        if getattr(net, "flat_params", None) is None:
            net.use_arena()

    def noise(self, idx):
        """The masks' randomness for samples idx (None when the network has no stochastic layer)."""
        return Noise(self.settings.seed, self.epoch, idx) if any(self.net.noisy) else None

    def gradient(self, idx, scale, keep=None):
        gathered, targets = self.gather(idx), self.y.take(idx, axis=0)
        losses, correct = self.net.gradient(gathered, targets, scale, keep, self.noise(idx))
        return losses, correct, self.net.flat_grads

    def apply(self, grads, capture=None):
        """Clip the step's gradient (when asked) and update the trainable weights with it."""
        settings = self.settings
        if settings.clip is not None:
            parts = intersect(settings.ranges, 0, grads.size)
            coef = clip_coefficient(squared_norm(grads, parts), settings.clip)
            if coef < 1.0:
                grads *= coef
        if capture is not None:
            np.copyto(capture, grads)
        apply_update(self.optimizer, self.net.flat_params, grads, self.mask, settings.ranges)

    def step(self, idx, scale, keep=None, capture=None):
        losses, correct, grads = self.gradient(idx, scale, keep)
        finite = math.isfinite(float(keep[-1][1].sum() if losses is None else losses.sum()))
        if finite:
            self.apply(grads, capture)
        return StepResult(losses, correct, finite)

    def close(self):
        pass


def make_engine(kind, net, x, y, optimizer, mask, workers=1, stall=None, warn=None, settings=None):
    """The engine `kind` (local, fork, mpi; None: mpi under mpiexec, else fork for workers > 1)."""
    if kind is None:
        kind = "mpi" if mpi_size() > 1 else ("fork" if workers > 1 else "local")
    if kind not in ENGINES:
        from ..errors import close_matches

        raise UsageError(f"unknown --engine {kind!r}{close_matches(kind, ENGINES)}; choose {', '.join(ENGINES)}")
    if workers < 1:
        raise UsageError(f"--workers must be ≥ 1, got {workers}")
    if kind == "local":
        if workers > 1:
            raise UsageError("--engine local computes in one process; --workers needs --engine fork or mpi")
        return LocalEngine(net, x, y, optimizer, mask, settings)
    if kind == "fork":
        from .fork import ForkEngine

        return ForkEngine(net, x, y, optimizer, mask, workers, stall=stall, warn=warn, settings=settings)
    from .mpi import MpiEngine

    return MpiEngine(net, x, y, optimizer, mask, workers, stall=stall, warn=warn, settings=settings)
