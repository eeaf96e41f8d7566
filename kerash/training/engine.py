"""Gradient engines: one batch in, per-sample losses and gradients out.

`LocalEngine` computes in this process.  `WorkerPool` is KeraSH's design on
real processes: the coordinator forks N workers once per run; each batch is
split into N contiguous shards; each worker computes the partial gradient
sums of its shard and leaves them in its own folder under KERASH_WORKDIR as
memory-mapped .npy files (zero-copy on tmpfs); the coordinator adds them up
in worker order.  The weights themselves live in shared memory-mapped files
that the coordinator updates in place.  Pipes carry only two numbers each way.
"""

import ctypes
import json
import os
import select
import shutil
import signal
import struct

import numpy as np

from ..errors import TrainingError
from ..workdir import scratch_dir, workdir
from .batches import shard_bounds

_CMD = struct.Struct("qqd")  # shard start, stop (stop < 0: quit), gradient scale
_RESULT = struct.Struct("qdq")  # status, loss sum, correct
RUN_PREFIX = "kerash-train"


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


def _gatherer(x):
    """A function picking samples of x (N, C, H, W) by index: take() on rows is 3× faster than x[idx]."""
    rows = x.reshape(x.shape[0], -1)
    shape = x.shape[1:]
    return lambda idx: rows.take(idx, axis=0).reshape((len(idx),) + shape)


class LocalEngine:
    """Gradients computed in this process, into the network's flat gradient arena."""

    workers = 1

    def __init__(self, net, x, y):
        self.net, self.y = net, y
        self.gather = _gatherer(x)
        net.use_arena()

    def start(self, idx, scale, keep=None):
        """Begin the gradient of the samples `idx`: scale × the sum of their loss gradients.

        With a `keep` list, the losses are computed later (see Network.gradient).
        """
        self.args = (idx, scale, keep)

    def finish(self):
        """(per-sample losses or None, correct or None, flat gradient) of the batch begun by start()."""
        idx, scale, keep = self.args
        losses, correct = self.net.gradient(self.gather(idx), self.y.take(idx, axis=0), scale, keep)
        return losses, correct, self.net.flat_grads

    def gradient(self, idx, scale, keep=None):
        self.start(idx, scale, keep)
        return self.finish()

    def close(self):
        pass


def _describe_status(status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    return f"exited with status {os.WEXITSTATUS(status)}"


def remove_stale_runs():
    """Remove run folders left by coordinators that were killed (their pid is gone)."""
    root = workdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        if not name.startswith(RUN_PREFIX + "-"):
            continue
        pid = name[len(RUN_PREFIX) + 1 :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            except OSError:
                pass


class WorkerPool:
    """N forked workers sharing the weights; see the module docstring."""

    def __init__(self, net, x, y, workers):
        self.net, self.x, self.y = net, x, y
        self.workers = workers
        self.pids = []
        self.cmd_fds = []
        self.result_fds = []
        remove_stale_runs()
        self.run_dir = scratch_dir(RUN_PREFIX)
        try:
            # The weights live in one shared file: updates by the coordinator reach every worker.
            net.use_arena()
            size = net.flat_params.size
            shared = self._memmap("weights.npy", net.dtype, (size,))
            net.use_arena(params_buffer=shared, grads_buffer=net.flat_grads)
            with open(os.path.join(self.run_dir, "layout.json"), "w") as f:
                json.dump([[key, name, start, size, list(shape)] for key, name, start, size, shape in net.layout], f)
            n = len(x)
            self.idx_buf = self._memmap("batch_indices.npy", np.int64, (max(n, 1),))
            self.loss_buf = self._memmap("sample_losses.npy", np.float64, (max(n, 1),))
            # Each worker's gradient sums, laid out as layout.json says, in its own folder.
            self.worker_grads = [self._memmap(f"worker-{k}/gradients.npy", net.dtype, (size,)) for k in range(workers)]
            for k in range(workers):
                self._fork(k)
        except BaseException:
            self.close()
            raise

    def _memmap(self, rel, dtype, shape):
        path = os.path.join(self.run_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

    def _fork(self, k):
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        coordinator = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(cmd_w)
                os.close(res_r)
                for fd in self.cmd_fds + self.result_fds:
                    os.close(fd)
                self._worker(k, coordinator, cmd_r, res_w)
                code = 0
            except BaseException:
                pass
            finally:
                os._exit(code)
        os.close(cmd_r)
        os.close(res_w)
        self.pids.append(pid)
        self.cmd_fds.append(cmd_w)
        self.result_fds.append(res_r)

    # ------------------------------------------------------------ worker side

    def _worker(self, k, coordinator, cmd_fd, res_fd):
        run_dir = self.run_dir
        # Ctrl-C reaches the whole process group: only the coordinator acts on it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)

        def orphaned(signum, frame):
            shutil.rmtree(run_dir, ignore_errors=True)
            os._exit(1)

        signal.signal(signal.SIGTERM, orphaned)
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() != coordinator:
            orphaned(None, None)
        limit_blas_threads(1)
        prewarm_blas(self.net.dtype)
        gather = _gatherer(self.x)
        # The layers write their gradients straight into this worker's file.
        self.net.use_arena(params_buffer=self.net.flat_params, grads_buffer=self.worker_grads[k])
        while True:
            msg = _read_exact(cmd_fd, _CMD.size)
            if msg is None:
                # The coordinator is gone without a word: clean up as for its death signal.
                orphaned(None, None)
            start, stop, scale = _CMD.unpack(msg)
            if stop < 0:
                return
            try:
                idx = self.idx_buf[start:stop]
                # Scaled by 1/batch size here, so the coordinator only has to add the shards up.
                losses, correct = self.net.gradient(gather(idx), self.y.take(idx, axis=0), scale)
                self.loss_buf[start:stop] = losses
                result = _RESULT.pack(0, float(losses.sum()), correct)
            except Exception as e:
                with open(os.path.join(run_dir, f"worker-{k}", "error.txt"), "w") as f:
                    f.write(f"{type(e).__name__}: {e}")
                result = _RESULT.pack(1, 0.0, 0)
            os.write(res_fd, result)

    # ------------------------------------------------------------ coordinator side

    def start(self, idx, scale, keep=None):
        """Send each worker its shard of `idx` (`keep` is ignored: workers return their losses).

        The coordinator is free until finish(): the loop takes its backup meanwhile.
        """
        n = len(idx)
        self.idx_buf[:n] = idx
        shards = shard_bounds(0, n, self.workers)
        active = [k for k, (s, e) in enumerate(shards) if e > s]
        for k in active:
            try:
                os.write(self.cmd_fds[k], _CMD.pack(*shards[k], scale))
            except BrokenPipeError:
                # The worker died while waiting for work: its command pipe has no reader.
                raise TrainingError(self._death_message(k)) from None
        self.pending = (n, active)

    def gradient(self, idx, scale, keep=None):
        self.start(idx, scale, keep)
        return self.finish()

    def finish(self):
        """Wait for the workers and add their scaled partial sums up: as LocalEngine.finish."""
        n, active = self.pending
        correct = 0
        pending = {self.result_fds[k]: k for k in active}
        failures = []
        while pending:
            ready, _, _ = select.select(list(pending), [], [])
            for fd in ready:
                k = pending.pop(fd)
                msg = _read_exact(fd, _RESULT.size)
                if msg is None:
                    raise TrainingError(self._death_message(k))
                status, _, c = _RESULT.unpack(msg)
                if status:
                    failures.append(k)
                correct += c
        if failures:
            k = failures[0]
            try:
                with open(os.path.join(self.run_dir, f"worker-{k}", "error.txt")) as f:
                    reason = f.read()
            except OSError:
                reason = "unknown error"
            raise TrainingError(f"worker {k} failed: {reason}")
        total = self.net.flat_grads
        if len(active) == 1:
            np.copyto(total, self.worker_grads[active[0]])
        else:
            np.add(self.worker_grads[active[0]], self.worker_grads[active[1]], out=total)
            for k in active[2:]:
                total += self.worker_grads[k]
        return self.loss_buf[:n].copy(), correct, total

    def _death_message(self, k):
        pid = self.pids[k]
        try:
            _, status = os.waitpid(pid, 0)
            how = _describe_status(status)
        except ChildProcessError:
            how = "vanished"
        self.pids[k] = None
        return f"worker {k} (pid {pid}) {how}; training stopped"

    def close(self):
        """Stop the workers and remove the run folder, whatever state they are in."""
        for fd in self.cmd_fds:
            try:
                os.write(fd, _CMD.pack(0, -1, 0.0))
            except OSError:
                pass
        for fd in self.cmd_fds + self.result_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.cmd_fds, self.result_fds = [], []
        for pid in self.pids:
            if pid is None:
                continue
            if not _wait_for(pid, 2.0):
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except OSError:
                    pass
        self.pids = []
        shutil.rmtree(self.run_dir, ignore_errors=True)


def _wait_for(pid, seconds):
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)


def _read_exact(fd, size):
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
