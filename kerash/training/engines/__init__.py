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
splits it between MPI ranks, on one machine or several (see mpi.py).  What
every engine shares is in step.py.
`make_engine` picks one from the command line and the machine.
"""

from ...errors import UsageError
from ...processes import mpi_size, usable_cores

ENGINES = ("local", "fork", "mpi")
# Below this many multiply-adds per batch, splitting a batch costs more than it saves.
SPLIT_WORK = 4_000_000
MAX_DEFAULT_WORKERS = 8


def default_workers(net, batch_size, cores=None, steps=1):
    """Workers for a batch: every core when a batch is worth splitting, else one process."""
    cores = cores or usable_cores()
    work = net.macs_per_sample() * batch_size * steps
    return min(cores, MAX_DEFAULT_WORKERS) if cores > 1 and work >= SPLIT_WORK else 1


def make_engine(kind, net, objective, x, y, optimizer, mask, workers=1, stall=None, warn=None, settings=None):
    """The engine `kind` (local, fork, mpi; None: mpi under mpiexec, else fork for workers > 1).

    `objective` is the caller's, already adapted to the targets y (see kerash.network.objective).
    """
    if kind is None:
        kind = "mpi" if mpi_size() > 1 else ("fork" if workers > 1 else "local")
    if kind not in ENGINES:
        from ...errors import close_matches

        raise UsageError(f"unknown --engine {kind!r}{close_matches(kind, ENGINES)}; choose {', '.join(ENGINES)}")
    if workers < 1:
        raise UsageError(f"--workers must be ≥ 1, got {workers}")
    if kind == "local":
        if workers > 1:
            raise UsageError("--engine local computes in one process; --workers needs --engine fork or mpi")
        from .local import LocalEngine

        return LocalEngine(net, objective, x, y, optimizer, mask, settings)
    if kind == "fork":
        from .fork import ForkEngine

        return ForkEngine(net, objective, x, y, optimizer, mask, workers, stall=stall, warn=warn, settings=settings)
    from .mpi import MpiEngine

    return MpiEngine(net, objective, x, y, optimizer, mask, workers, stall=stall, warn=warn, settings=settings)
