"""Processes: forked children (fork, wait, reap, describe), BLAS threads, the cores this process may use, MPI ranks,
the allocator."""

import os
import signal
import time

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


# ---------------------------------------------------------------- children


def fork_child(task):
    """Run task() in a forked child; the child's pid.  Raises OSError when the system cannot fork.

    The child exits 0 when task returns and 1 when it raises, by os._exit: it runs
    none of the parent's atexit handlers or enclosing finally blocks, and flushes
    none of the buffered output it inherited (nothing is written twice).
    """
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            task()
            code = 0
        finally:
            os._exit(code)  # also when task raised: the exception goes no further
    return pid


def describe_status(status):
    """A wait status in words: 'killed by SIGKILL', 'exited with status 1'."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    return f"exited with status {os.WEXITSTATUS(status)}"


def wait_child(pid, timeout=None):
    """Reap child `pid`: its wait status, or None if it still runs after `timeout` seconds (None: no limit).

    Raises ChildProcessError when pid is not (or no longer) a child of this process.
    """
    if timeout is None:
        return os.waitpid(pid, 0)[1]
    found = wait_any([pid], timeout)
    return None if found is None else found[1]


def wait_any(pids, timeout=None):
    """Reap the first of `pids` to end: (pid, wait status), or None after `timeout` seconds (None: no limit).

    Only these children are reaped: any other child of this process (a
    subprocess of the caller's) is left to whoever waits for it.  Raises
    ChildProcessError when one of pids is not (or no longer) a child.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.001
    while True:
        for pid in pids:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return done, status
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            pause = min(pause, left)
        time.sleep(pause)
        pause = min(2 * pause, 0.01)


def end_child(pid, grace=0.0):
    """Make sure child `pid` has ended and is reaped: `grace` seconds to end by itself, then SIGKILL.

    A pid that is no longer a child (already reaped) is left alone.
    """
    try:
        if grace and wait_child(pid, grace) is not None:
            return
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


def die_with_parent(parent, sig=signal.SIGKILL):
    """In a forked child: be sent `sig` when the process that forked it (pid `parent`) ends (Linux)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it ended before the call
        os._exit(1)


def shared_zeros(shape, dtype):
    """An array of zeros in memory that forked children share with this process (anonymous, MAP_SHARED)."""
    import mmap

    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffer = mmap.mmap(-1, max(size, 1), flags=mmap.MAP_SHARED)
    return np.frombuffer(buffer, dtype=dtype, count=int(np.prod(shape, dtype=np.int64))).reshape(shape)


def running_tasks():
    """How many tasks the kernel is running now, this process included (/proc/stat), or None where it does not say."""
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"procs_running"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def idle_cores():
    """Cores of this process's affinity that no other task is running on now, at least 0."""
    running = running_tasks()
    return 0 if running is None else max(0, usable_cores() - running)


def map_chunks(count, fill, processes):
    """fill(i) for every i < count, by up to `processes` processes (this one and forked children) that take
    the next i as they become free.  fill writes its results into memory made by shared_zeros; which
    process computes which chunk changes nothing (each uses one BLAS thread: the caller limits its own).
    After a child's failure the chunks are computed again here, where the error shows as it is.
    """
    import multiprocessing

    processes = max(1, min(processes, count))
    if processes == 1:
        for i in range(count):
            fill(i)
        return
    ctx = multiprocessing.get_context("fork")
    lock = ctx.Lock()
    counter = shared_zeros((2,), np.int64)  # next chunk, failures

    def take():
        with lock:
            i = int(counter[0])
            counter[0] = i + 1
        return i if i < count else None

    parent = os.getpid()

    def work():
        die_with_parent(parent)
        limit_blas_threads(1)
        while (i := take()) is not None:
            try:
                fill(i)
            except BaseException:
                with lock:
                    counter[1] += 1
                raise

    pids = [fork_child(work) for _ in range(processes - 1)]
    try:
        while (i := take()) is not None:
            fill(i)
        statuses = [wait_child(pid) for pid in pids]
        pids = []
    finally:
        for pid in pids:
            end_child(pid)
    if counter[1] or any(statuses):
        # A child failed (or died): every chunk again here, where an error shows as it is.
        for i in range(count):
            fill(i)
