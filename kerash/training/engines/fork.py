"""The fork engine: KeraSH's workers on real processes, sharing memory.

Each batch is split into K contiguous shards.  Shard 0 is computed by this
process (the coordinator), shards 1…K−1 by workers forked once per run.
Everything they share lives in memory-mapped files in a run folder under
$KERASH_WORKDIR (RAM on a tmpfs), each reserved in full when created:

    weights.npy                the weights: one flat arena, updated in place
    worker-K/gradients.npy     process K's gradient sums of its shard, already scaled
    gradient-sum.npy           the shards added up (each process fills its slice)
    optimizer-SLOT.npy         the optimiser's state (momentum, Adam's moments)
    optimizer-settings.npy     its step count, weight decay and hyper-parameters, as the
                               coordinator has them at each update (schedules change the rate)
    batch_indices.npy, sample_losses.npy, control.npy, results.npy

A step has two phases.  In the first, every process computes its shard's
gradient.  In the second, every process adds the K shards up over its own
slice of the parameters (in shard order, so the sum does not depend on who
computes it) and applies the optimiser to that slice.  No process waits
while another merges, and start and finish are semaphore handoffs, polled
briefly before blocking: no pipe, no select.
"""

import ctypes
import os
import shutil
import signal
import time

import numpy as np

from ...errors import TrainingError
from ...files.workdir import scratch_dir
from ...layers import Noise
from ...processes import (describe_status, end_child, fork_child, limit_blas_threads, mpi_size, prewarm_blas,
                          usable_cores, wait_child)
from ..batches import shard_bounds
from ..optimizers import SLOTS
from .step import (EngineFailure, Interrupted, StepResult, apply_update, clip_coefficient, gatherer, intersect,
                   squared_norm)

RUN_PREFIX = "kerash-train"
# Phases of a step, each ended by every process arriving: the gradient of each shard; the
# shards added up over each process's slice, with its share of the gradient's squared norm
# (only to clip); the update of each slice (or nothing, after a non-finite loss); the end.
GRADIENT, ADD_UP, APPLY, SKIP, QUIT = 1, 2, 3, 4, 5
# control.npy (int64): phase, batch length, epoch, flags; then two float64s stored as their bits
_PHASE, _N, _EPOCH, _FLAGS, _SCALE, _COEF = range(6)
_SUMMED, _CAPTURE = 1, 2  # flags: the sum is already made (MPI), copy the applied gradient out
SPIN_SECONDS = 0.002  # poll this long before blocking (see ForkEngine.spin)


def shared_array(path, dtype, shape):
    """A new .npy file mapped in memory, its whole size reserved now (a full tmpfs fails here, not later)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb+") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
        )
        offset = f.tell()
        try:
            os.posix_fallocate(f.fileno(), 0, offset + max(count, 1) * dtype.itemsize)
        except OSError as e:
            raise TrainingError(f"{e.strerror or e} ({_work_folder_named()})") from None
    # A plain array over the mapping (which it keeps alive): np.memmap's Python-level
    # __getitem__ and __array_finalize__ cost a CNN step 0.2 ms of small calls.
    return np.asarray(np.memmap(path, dtype=dtype, mode="r+", offset=offset, shape=tuple(shape)))


def _work_folder_named():
    """The work folder as a message names it: KERASH_WORKDIR=… when the user chose it."""
    from ...files.workdir import workdir

    chosen = os.environ.get("KERASH_WORKDIR")
    return f"KERASH_WORKDIR={chosen}" if chosen else f"the work folder {workdir()}; set KERASH_WORKDIR to choose another"


def remove_stale_runs(root=None):
    """Remove run folders left by coordinators that were killed (their pid is gone)."""
    from ...files.workdir import workdir

    root = root or workdir()
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


def _process_state(pid):
    """'stopped', 'running', … from /proc, for messages about a worker that makes no progress."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "unknown"
    return {"T": "stopped", "t": "stopped by a debugger", "R": "running", "S": "sleeping", "D": "waiting for the disk",
            "Z": "dead"}.get(state, state)


class ForkEngine:
    """K processes sharing each batch; see the module docstring.

    `bounds(n)` gives the K shards of a batch of n (default: K contiguous
    equal parts); `reduce(total, figures, losses)` may combine the summed
    gradient and the step's figures with other machines (the MPI engine)
    before the update.
    """

    kind = "fork"
    leader = True  # writes the model (every engine but MPI's other ranks)
    agreed_stop = 0  # a stop request agreed with other processes (MPI)

    def __init__(self, net, objective, x, y, optimizer, mask, workers, bounds=None, reduce=None, stall=None, warn=None,
                 settings=None):
        from .step import StepSettings

        self.net, self.objective, self.x, self.y = net, objective, x, y
        self.optimizer, self.mask = optimizer, mask
        self.settings = settings or StepSettings()
        self.shards = workers
        self.bounds = bounds or (lambda n: shard_bounds(0, n, workers))
        self.reduce = reduce
        self.stall = stall
        self.warn = warn or (lambda message: None)
        self.pids = []
        self.gather = gatherer(x)
        self.interrupted = lambda: False
        self.epoch = 1
        # Waiting processes poll before they block (a wake-up from a blocked wait
        # costs 0.1 ms or more), unless polling would take a core from a process
        # that computes (MPI ranks are counted as if all were on this host).
        self.spin = SPIN_SECONDS if workers * mpi_size() <= usable_cores() else 0.0
        remove_stale_runs()
        self.run_dir = scratch_dir(RUN_PREFIX)
        try:
            self._share(max(len(x), 1))
            import multiprocessing

            ctx = multiprocessing.get_context("fork")
            self.go = [ctx.Semaphore(0) for _ in range(workers)]  # coordinator → worker k
            self.arrived = ctx.Semaphore(0)  # workers → coordinator
            for k in range(1, workers):
                self._fork(k)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ shared memory

    def _array(self, rel, dtype, shape):
        return shared_array(os.path.join(self.run_dir, rel), dtype, shape)

    def _share(self, n):
        net, opt, k = self.net, self.optimizer, self.shards
        size = net.arena.size
        weights = self._array("weights.npy", net.dtype, (size,))
        weights[...] = net.arena.params
        self.grads = [self._array(f"worker-{j}/gradients.npy", net.dtype, (size,)) for j in range(k)]
        net.use_arena(params_buffer=weights, grads_buffer=self.grads[0])
        self.total = self._array("gradient-sum.npy", net.dtype, (size,))
        self.captured = self._array("gradient-applied.npy", net.dtype, (size,))
        for slot in SLOTS[opt.name]:
            key = f"all.{slot}"
            shared = self._array(f"optimizer-{slot}.npy", net.dtype, (size,))
            current = opt.state.get(key)
            shared[...] = 0 if current is None or current.shape != (size,) else current
            opt.state[key] = shared
        self.idx = self._array("batch_indices.npy", np.int64, (n,))
        self.losses = self._array("sample_losses.npy", np.float64, (n,))
        self.control = self._array("control.npy", np.int64, (8,))
        self.results = self._array("results.npy", np.float64, (k, 4))  # loss sum, correct, failed, Σg² of a slice
        self.slices = shard_bounds(0, size, k)
        # What the loop may change between steps (the rate of a schedule or warm-up, and any
        # other hyper-parameter) reaches the workers here, at every update: they were forked
        # with the settings of the first step.
        self.hyper_keys = sorted(opt.hyper)
        self.opt_settings = self._array("optimizer-settings.npy", np.float64, (2 + len(self.hyper_keys),))

    def _publish_optimizer(self):
        opt = self.optimizer
        self.opt_settings[:] = [opt.t, opt.weight_decay, *(opt.hyper[key] for key in self.hyper_keys)]

    def _adopt_optimizer(self):
        opt, values = self.optimizer, self.opt_settings
        opt.t, opt.weight_decay = int(values[0]), float(values[1])
        for key, value in zip(self.hyper_keys, values[2:]):
            opt.hyper[key] = float(value)

    def _real(self, field):
        return float(self.control[field:field + 1].view(np.float64)[0])

    def _set_real(self, field, value):
        self.control[field:field + 1].view(np.float64)[0] = value

    # ------------------------------------------------------------ workers

    def _fork(self, k):
        coordinator = os.getpid()
        self.pids.append(fork_child(lambda: self._worker(k, coordinator)))

    def _worker(self, k, coordinator):
        run_dir = self.run_dir
        # Ctrl-C reaches the whole process group: only the coordinator acts on it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)

        def orphaned(signum=None, frame=None):
            shutil.rmtree(run_dir, ignore_errors=True)
            os._exit(1)

        signal.signal(signal.SIGTERM, orphaned)
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() != coordinator:
            orphaned()
        limit_blas_threads(1)
        prewarm_blas(self.net.dtype)
        # The layers write their gradients straight into this worker's file.
        self.net.use_arena(params_buffer=self.net.arena.params, grads_buffer=self.grads[k])
        go = self.go[k]
        while True:
            deadline = time.monotonic() + self.spin
            while not go.acquire(False):
                if time.monotonic() > deadline:
                    while not go.acquire(timeout=1.0):
                        if os.getppid() != coordinator:
                            orphaned()
                    break
            phase = int(self.control[_PHASE])
            if phase == QUIT:
                return
            self._phase(k, phase)
            self.arrived.release()

    def _phase(self, k, phase):
        """This process's part of a phase of the step (see GRADIENT…)."""
        if phase == GRADIENT:
            self._shard(k, int(self.control[_N]), self._real(_SCALE), int(self.control[_EPOCH]))
        elif phase == ADD_UP:
            start, stop = self.slices[k]
            self._add_up(start, stop)
            self.results[k, 3] = squared_norm(self.total, intersect(self.settings.ranges, start, stop))
        elif phase == APPLY:
            self._apply(k)

    def _shard(self, k, n, scale, epoch):
        """Gradient of shard k of the current batch into this process's gradient file."""
        start, stop = self.bounds(n)[k]
        try:
            if stop > start:
                idx = self.idx[start:stop]
                noise = Noise(self.settings.seed, epoch, idx) if any(self.net.noisy) else None
                targets = self.y.take(idx, axis=0)
                losses, correct = self.net.gradient(self.objective, self.gather(idx), targets, scale, None, noise)
                self.losses[start:stop] = losses
                self.results[k, :3] = (float(losses.sum()), correct, 0)
            else:
                self.grads[k].fill(0)
                self.results[k, :3] = (0.0, 0, 0)
        except Exception as e:
            os.makedirs(os.path.join(self.run_dir, f"worker-{k}"), exist_ok=True)
            with open(os.path.join(self.run_dir, f"worker-{k}", "error.txt"), "w") as f:
                f.write(f"{type(e).__name__}: {e}")
            self.results[k, :3] = (0.0, 0, 1)

    def _add_up(self, start, stop):
        """total[start:stop] = the shards' gradients added in shard order."""
        total, grads = self.total[start:stop], self.grads
        if len(grads) == 1:
            np.copyto(total, grads[0][start:stop])
            return
        np.add(grads[0][start:stop], grads[1][start:stop], out=total)
        for g in grads[2:]:
            total += g[start:stop]

    def _apply(self, k):
        """Slice k of the step's gradient: added up (unless already), clipped, copied out, applied."""
        start, stop = self.slices[k]
        if k:
            self._adopt_optimizer()
        flags = int(self.control[_FLAGS])
        if not flags & _SUMMED:
            self._add_up(start, stop)
        coef = self._real(_COEF)
        part = self.total[start:stop]
        if coef != 1.0:
            part *= coef
        if flags & _CAPTURE:
            self.captured[start:stop] = part
        apply_update(self.optimizer, self.net.arena.params, self.total, self.mask,
                     intersect(self.settings.ranges, start, stop))

    # ------------------------------------------------------------ coordinator

    def _run(self, phase, intact):
        """Every process does its part of `phase`, this one included; returns when all have."""
        self.control[_PHASE] = phase
        for go in self.go[1:]:
            go.release()
        self._phase(0, phase)
        for _ in range(self.shards - 1):
            self._wait(self.arrived, intact)

    def _wait(self, sem, intact):
        deadline = time.monotonic() + self.spin
        while not sem.acquire(False):
            if time.monotonic() > deadline:
                break
        else:
            return
        waited, warned = 0.0, False
        while not sem.acquire(timeout=0.05):
            waited += 0.05
            self._check_workers(intact)
            if self.interrupted():
                if intact or waited > 2.0:
                    raise Interrupted(intact)
            if self.stall and waited >= self.stall and not warned:
                warned = True
                for k, pid in enumerate(self.pids, 1):
                    if pid is not None:
                        self.warn(f"worker {k} (pid {pid}, {_process_state(pid)}) has made no progress for {waited:.0f} s")

    def _check_workers(self, intact):
        for k, pid in enumerate(self.pids, 1):
            if pid is None:
                continue
            try:
                status = wait_child(pid, 0)
            except ChildProcessError:
                status = 0
            if status is not None:
                self.pids[k - 1] = None
                raise EngineFailure(f"worker {k} (pid {pid}) {describe_status(status)}; training stopped", intact)

    def _failures(self):
        failed = [k for k in range(self.shards) if self.results[k, 2]]
        if not failed:
            return None
        k = failed[0]
        try:
            with open(os.path.join(self.run_dir, f"worker-{k}", "error.txt")) as f:
                reason = f.read()
        except OSError:
            reason = "unknown error"
        return f"worker {k} failed: {reason}" if k else f"the gradient failed: {reason}"

    def step(self, idx, scale, keep=None, capture=None):
        """One training step over the shards; keep is ignored (workers return their losses)."""
        n = len(idx)
        self.idx[:n] = idx
        self.control[_N], self.control[_EPOCH] = n, self.epoch
        self._set_real(_SCALE, scale)
        self._run(GRADIENT, intact=True)
        failure = self._failures()
        loss_sum = float(self.results[:, 0].sum())
        correct = int(self.results[:, 1].sum())
        flags = _CAPTURE if capture is not None else 0
        coef = 1.0
        if failure is None and self.reduce is not None:
            # Across machines: the sum of this machine's shards, then the sum over machines.
            self._add_up(0, self.total.size)
            figures = np.array([loss_sum, correct])
            self.reduce(self.total, figures, self.losses[:n])
            loss_sum, correct = float(figures[0]), int(figures[1])
            flags |= _SUMMED
            if self.settings.clip is not None:
                parts = [p for s, e in self.slices for p in intersect(self.settings.ranges, s, e)]
                coef = clip_coefficient(squared_norm(self.total, parts), self.settings.clip)
        finite = bool(np.isfinite(loss_sum))
        update = finite and failure is None
        if update and self.settings.clip is not None and not flags & _SUMMED:
            self._run(ADD_UP, intact=True)
            coef = clip_coefficient(float(np.sum(self.results[:, 3])), self.settings.clip)
            flags |= _SUMMED
        self.control[_FLAGS] = flags
        self._set_real(_COEF, coef)
        self._publish_optimizer()
        self._run(APPLY if update else SKIP, intact=not update)
        if failure:
            raise EngineFailure(failure, intact=True)
        if update and capture is not None:
            np.copyto(capture, self.captured)
        return StepResult(self.losses[:n].copy(), correct, finite)

    def gradient(self, idx, scale, keep=None):
        """The step's gradient computed here, shard by shard in shard order: the same numbers, no workers."""
        n = len(idx)
        losses, correct = np.empty(n), 0
        total = self.total
        for k, (start, stop) in enumerate(self.bounds(n)):
            if stop <= start:
                continue
            part = idx[start:stop]
            noise = Noise(self.settings.seed, self.epoch, part) if any(self.net.noisy) else None
            targets = self.y.take(part, axis=0)
            shard_losses, c = self.net.gradient(self.objective, self.gather(part), targets, scale, None, noise)
            losses[start:stop] = shard_losses
            correct += c
            if k == 0:
                np.copyto(total, self.net.arena.grads)
            else:
                total += self.net.arena.grads
        if self.reduce is not None:
            figures = np.array([float(losses.sum()), correct])
            self.reduce(total, figures, losses)
            correct = int(figures[1])
        return losses, correct, total

    def apply(self, grads, capture=None):
        """The update of step() for a gradient computed by gradient(), here, slice by slice: the same numbers."""
        settings = self.settings
        per_slice = [intersect(settings.ranges, start, stop) for start, stop in self.slices]
        coef = 1.0
        if settings.clip is not None:
            if self.reduce is not None:  # step() measured the summed gradient in one go
                squared = squared_norm(grads, [p for parts in per_slice for p in parts])
            else:  # each process measured its slice
                squared = float(np.sum([squared_norm(grads, parts) for parts in per_slice]))
            coef = clip_coefficient(squared, settings.clip)
        if coef != 1.0:
            for start, stop in self.slices:
                grads[start:stop] *= coef
        if capture is not None:
            np.copyto(capture, grads)
        apply_update(self.optimizer, self.net.arena.params, grads, self.mask, [p for parts in per_slice for p in parts])

    def close(self):
        """Stop the workers and remove the run folder, whatever state they are in."""
        pids = [p for p in self.pids if p is not None]
        if pids and hasattr(self, "control"):
            self.control[_PHASE] = QUIT
            for go in self.go[1:]:
                go.release()
        for pid in pids:
            end_child(pid, grace=1.0)
        self.pids = []
        shutil.rmtree(self.run_dir, ignore_errors=True)
