"""The MPI engine: data parallelism over ranks, on one machine or many (mpi4py).

`mpiexec -n K train MODEL …` starts K ranks.  Every rank holds the weights
and computes its part of the logical shards of each batch (with `--workers
W`, W forked processes inside the rank take them as they become free, as in
the fork engine); an in-place Allgatherv brings every shard's gradient row,
figures and per-sample losses to every rank, which adds the rows up in shard
order and applies the same update.  So K ranks of W workers give the bits of
K × W processes on one machine, and of one process (the rows cost K times
the bytes of one Allreduce: see the README's multi-host section).  Rank 0
alone writes the model directory, trace and checkpoints, and prints.

mpi4py is an optional extra (`pip install 'kerash[mpi]'`, with MPICH as a
wheel); nothing else in kerash imports it.
"""

import os

import numpy as np

from ...errors import UsageError
from ..batches import shard_bounds
from .fork import ForkEngine


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


class MpiEngine(ForkEngine):
    kind = "mpi"

    def __init__(self, net, objective, x, y, optimizer, mask, workers=1, stall=None, warn=None, settings=None):
        from mpi4py import MPI

        self.comm, self.rank, self.size = world()
        self.segments = _shared_segments()
        self.in_place, self.add = MPI.IN_PLACE, MPI.SUM
        self.leader = self.rank == 0
        self.agreed_stop = 0  # how many ranks had a stop request (a signal) at the last step
        super().__init__(net, objective, x, y, optimizer, mask, workers, group=self._group, exchange=self._exchange,
                         stall=stall, warn=warn, settings=settings)

    def _group(self, count):
        """(first, stop): this rank's shards out of the `count` shards of a batch."""
        return shard_bounds(0, count, self.size)[self.rank]

    def _exchange(self, rows, results, losses, n, bounds):
        """Every rank's shard rows, figures and per-sample losses to every rank, in place; and the stop requests."""
        parts = shard_bounds(0, len(bounds), self.size)
        counts = [b - a for a, b in parts]
        width = rows.shape[1]
        flat = rows[: len(bounds)].reshape(-1)
        self.comm.Allgatherv(self.in_place, [flat, ([c * width for c in counts], [a * width for a, _ in parts])])
        figures = results[: len(bounds)].reshape(-1)
        self.comm.Allgatherv(self.in_place, [figures, ([c * 2 for c in counts], [a * 2 for a, _ in parts])])
        spans = [(bounds[a][0], bounds[b - 1][1]) if b > a else (0, 0) for a, b in parts]
        self.comm.Allgatherv(self.in_place, [losses[:n], ([e - s for s, e in spans], [s for s, _ in spans])])
        stop = np.array([1 if self.interrupted() else 0], dtype=np.int64)
        self.comm.Allreduce(self.in_place, stop, op=self.add)
        self.agreed_stop = int(stop[0])

    def close(self):
        """Stop the workers, and remove the names of MPICH's shared-memory segments of this job.

        MPICH removes them once every local rank has mapped them, unless the job
        ends early (a failed or killed rank): then /dev/shm keeps 2 MB for each.
        The mappings stay valid for the ranks still running; a SIGKILL of mpiexec
        itself leaves them (see the README's multi-host section).
        """
        super().close()
        for path in self.segments:
            try:
                os.unlink(path)
            except OSError:
                pass


def _shared_segments():
    """The /dev/shm/mpich_shm_* files this process maps (MPI's intra-node channel), from /proc/self/maps."""
    found = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split(maxsplit=5)[-1].strip()
                if path.startswith("/dev/shm/mpich_shm_"):
                    found.add(path.removesuffix(" (deleted)"))
    except OSError:
        pass
    return sorted(p for p in found if not p.endswith("(deleted)"))

