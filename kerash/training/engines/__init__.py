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
gradient clipping, the trainable part of the weights (frozen layers) and
--shards.  What may change between steps — the optimiser's rate and other
hyper-parameters — is read from the optimiser at each step, by the one
process that applies updates.

Every engine splits a batch into the same logical shards (step.shard_count:
from the model and the batch size alone), computes each shard's gradient the
same way and adds them up in shard order, so the same command gives the same
bits whatever engine, number of processes or load: `local` computes them in
this process (BLAS may use threads); `fork` lets forked processes take them
as they become free (see fork.py); `mpi` gives each MPI rank its part, on one
machine or several (see mpi.py).  `make_engine` picks one from the command
line and the machine.
"""

from ...errors import UsageError
from ...processes import mpi_size, usable_cores
from .step import shard_count

ENGINES = ("local", "fork", "mpi")
MAX_DEFAULT_WORKERS = 8


def default_workers(net, batch_size, cores=None, steps=1, shards=None):
    """Processes for a batch: one per core, at most one per logical shard (a batch of one shard: one process).

    The fork engine then wakes only as many as pay on the machine as it is
    (see fork.ProcessChooser), and the result never depends on the number.
    """
    cores = cores or usable_cores()
    return max(1, min(cores, MAX_DEFAULT_WORKERS, shard_count(net, batch_size, steps, shards)))


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
