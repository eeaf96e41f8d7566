"""The MPI engine: data parallelism over ranks, on one machine or many (mpi4py).

`mpiexec -n K train MODEL …` starts K ranks.  Every rank holds the weights
and computes the partial gradient sums of its shards of each batch (with
`--workers W`, W forked processes inside the rank: K × W shards in all);
one in-place Allreduce per step adds them — the flat gradient buffer, with
the step's per-sample losses, loss sum, correct count and any stop request
packed after it — and every rank applies the same update.  Rank 0 alone
writes the model directory, trace and checkpoints, and prints.

mpi4py is an optional extra (`pip install 'kerash[mpi]'`, with MPICH as a
wheel); nothing else in kerash imports it.
"""

import os

import numpy as np

from ...errors import UsageError
from ..batches import shard_bounds
from .step import StepResult

_EXTRA = 3  # loss sum, correct count, stop request


def world():
    """(communicator, rank, size) of this MPI job."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise UsageError("the mpi engine needs mpi4py: pip install 'kerash[mpi]'") from None
    comm = MPI.COMM_WORLD
    return comm, comm.Get_rank(), comm.Get_size()


def rank_from_environment():
    """This process's rank as mpiexec announced it (0 when not under MPI), without importing MPI."""
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MPI_LOCALRANKID"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


class MpiEngine:
    kind = "mpi"

    def __init__(self, net, objective, x, y, optimizer, mask, workers=1, stall=None, warn=None, settings=None):
        from mpi4py import MPI

        from .local import LocalEngine

        self.comm, self.rank, self.size = world()
        self.sum = MPI.SUM
        self.in_place = MPI.IN_PLACE
        self.net, self.y = net, y
        self.optimizer, self.mask = optimizer, mask
        self.workers = workers
        self.shards = self.size * workers
        self.leader = self.rank == 0
        self.agreed_stop = 0  # how many ranks had a stop request (a signal) at the last step
        self.interrupted = lambda: False
        if net.arena.params is None:
            net.use_arena()
        size = net.arena.size
        self.inner = None
        if workers > 1:
            from .fork import ForkEngine

            self.inner = ForkEngine(net, objective, x, y, optimizer, mask, workers, bounds=self._local_bounds,
                                    reduce=self._reduce, stall=stall, warn=warn, settings=settings)
            self.buffer = np.empty(size + len(x) + _EXTRA, dtype=net.dtype)
        else:
            # The gradient arena is the front of the buffer that one Allreduce sends.
            self.buffer = np.zeros(size + len(x) + _EXTRA, dtype=net.dtype)
            net.use_arena(params_buffer=net.arena.params, grads_buffer=self.buffer[:size])
            # One process's shard and update, as in one process; the Allreduce goes between.
            self.local = LocalEngine(net, objective, x, y, optimizer, mask, settings)

    @property
    def epoch(self):
        return (self.inner or self.local).epoch

    @epoch.setter
    def epoch(self, value):
        (self.inner or self.local).epoch = value

    def _local_bounds(self, n):
        """This rank's shards of a batch of n, out of the size × workers shards of the whole batch."""
        every = shard_bounds(0, n, self.shards)
        return every[self.rank * self.workers : (self.rank + 1) * self.workers]

    def _allreduce(self, n, losses, loss_sum, correct):
        """Add gradients (the buffer's front), per-sample losses and figures over the ranks, in place."""
        size = self.net.arena.size
        extra = self.buffer[size : size + n + _EXTRA]
        extra[:n] = 0
        for start, stop in self._local_bounds(n):
            extra[start:stop] = losses[start:stop]
        extra[n:] = (loss_sum, correct, 1 if self.interrupted() else 0)
        self.comm.Allreduce(self.in_place, self.buffer[: size + n + _EXTRA], op=self.sum)
        self.agreed_stop = int(extra[n + 2])
        return extra[:n].astype(np.float64), float(extra[n]), int(round(float(extra[n + 1])))

    def _reduce(self, total, figures, losses):
        """ForkEngine's hook: the rank's summed gradient and figures, added over the ranks in place."""
        size = total.size
        self.buffer[:size] = total
        all_losses, loss_sum, correct = self._allreduce(len(losses), losses, figures[0], figures[1])
        total[...] = self.buffer[:size]
        losses[...] = all_losses
        figures[:] = (loss_sum, correct)

    def gradient(self, idx, scale, keep=None):
        if self.inner is not None:
            return self.inner.gradient(idx, scale)
        n = len(idx)
        losses, correct = np.zeros(n), 0
        for start, stop in self._local_bounds(n):
            if stop > start:
                losses[start:stop], correct, _ = self.local.gradient(idx[start:stop], scale)
            else:
                self.net.arena.grads.fill(0)
        losses, _, correct = self._allreduce(n, losses, float(losses.sum()), correct)
        return losses, correct, self.net.arena.grads

    def apply(self, grads, capture=None):
        (self.inner or self.local).apply(grads, capture)

    def step(self, idx, scale, keep=None, capture=None):
        if self.inner is not None:
            self.inner.interrupted = self.interrupted
            return self.inner.step(idx, scale, capture=capture)
        losses, correct, grads = self.gradient(idx, scale)
        finite = bool(np.isfinite(losses.sum()))
        if finite:
            self.local.apply(grads, capture)
        return StepResult(losses, correct, finite)

    def close(self):
        if self.inner is not None:
            self.inner.close()
