"""Processes: BLAS threads, the cores this process may use, MPI ranks, the allocator."""

import os

import numpy as np

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
