"""The fork engine: the logical shards of each batch, taken by forked processes as they become free.

A batch is split into the shards that `shard_count` fixes from the model and
the batch size alone.  This process (the coordinator) and the workers, forked
once per run, take shards from a shared counter until none is left, each
writing its shard's gradient into that shard's own row; the coordinator then
adds the rows up in shard order and applies the update, as the local engine
does.  Who computed which shard, and how many processes took part, cannot
change a bit of the result.

A process that the scheduler puts aside simply takes fewer shards.  The
coordinator wakes as many workers as pay: it times its steps with each number
and keeps the fastest, trying another now and then (ProcessChooser).  Waiting
processes poll briefly only while no other job wants the cores this run's
processes use (LoadProbe); otherwise they block.  Before the first step every
process computes a few throw-away gradients (_warm_up): a forked process's
first ones are slow.

Everything the processes share lives in anonymous shared memory, made
before the workers are forked: the weights (one flat arena, updated in
place by the coordinator), one gradient row per logical shard, the batch's
indices, per-sample losses and shard figures, and the control words.  The
run folder under $KERASH_WORKDIR holds only what a failing worker has to
say (worker-K-error.txt); it is removed at the end, and by the next run
when a killed coordinator left it.
"""

import ctypes
import os
import shutil
import signal
import time
from contextlib import nullcontext

import numpy as np

from ...files.workdir import remove_stale, scratch_dir
from ...layers import Noise
from ...processes import (describe_status, end_child, fork_child, limit_blas_threads, prewarm_blas, running_tasks,
                          shared_zeros, usable_cores, wait_child)
from ..batches import shard_bounds
from .local import LocalEngine
from .step import EngineFailure, Interrupted, StepResult, add_in_order, shard_count

RUN_PREFIX = "kerash-train"
QUIT = 1  # control[_PHASE] when the workers are to exit
# control.npy (int64): phase, batch length, epoch, shards of the batch, next shard to take, end of
# this process group's shards (MPI: a rank's part), whether waiting processes may poll, the step's
# number (a late worker's figures of an earlier step are not counted); the scale's bits
_PHASE, _N, _EPOCH, _TOTAL, _NEXT, _STOP, _SPIN, _STEP, _SCALE = range(9)
_FIELDS = 9
WARM_UP_CALLS = 20  # at most, the gradients a forked worker computes and throws away before its first shard
WARM_UP_SECONDS = 0.5  # and for at most this long (then one call more)
READY_SECONDS = 5.0  # the longest the coordinator waits for the workers' warm-up
SPIN_SECONDS = 0.002  # poll this long before blocking, when a core is idle (a blocked wake-up costs 0.1 ms)


def _process_state(pid):
    """'stopped', 'running', … from /proc, for messages about a worker that makes no progress."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "unknown"
    return {"T": "stopped", "t": "stopped by a debugger", "R": "running", "S": "sleeping", "D": "waiting for the disk",
            "Z": "dead"}.get(state, state)


class LoadProbe:
    """Whether the machine has a core idle beside this run's processes: /proc/stat's count of running tasks.

    Read at most every INTERVAL seconds, and judged on the last few readings,
    since one reading may catch a passing process.  This run's own workers
    running at the time of a reading are not counted as others (before,
    they were: two processes computing on a quiet 2-core machine read as a
    busy one, which stopped the polling and the chooser's tries).
    """

    INTERVAL = 0.1
    READINGS = 5

    def __init__(self, cores, workers=lambda: ()):
        self.cores = cores
        self.workers = workers  # the pids of this run's workers
        self.readings = []
        self.last = 0.0
        self.others = 0  # other tasks running, the median of the last readings

    def idle_core(self, ours):
        """True when fewer than `cores` tasks would run with `ours` of this run's processes computing."""
        now = time.monotonic()
        if now - self.last >= self.INTERVAL:
            self.last = now
            running = running_tasks()
            if running is None:
                self.others = self.cores  # no /proc: never poll
                return False
            workers = sum(1 for pid in self.workers() if pid is not None and _process_state(pid) == "running")
            others = running - 1 - workers  # all but this process and its running workers
            self.readings = (self.readings + [max(others, 0)])[-self.READINGS :]
            self.others = sorted(self.readings)[len(self.readings) // 2]
        return self.others + ours < self.cores


class ProcessChooser:
    """How many workers to wake for a step: the number whose steps took least time per sample, lately.

    Each number is first tried for TRY steps, after WARM steps and
    WARM_SECONDS not counted (after a fork, both sides fault in the pages they
    first write, and the scheduler may keep new processes on one core);
    a try's figure is the median of its steps, so that one step caught by
    the scheduler does not decide.  The steps of the number chosen keep its
    figure current (a decaying average), so a choice that grows slower under
    a new load gives way by itself.  A change of the load probe's verdict
    that may favour another number (a busier machine: fewer; a quieter one:
    more) tries it soon.  Besides, another number is tried now and then
    (EXPLORE steps, doubling up to LONGEST while the tries change nothing):
    on a quiet machine each try of fewer processes costs four slow steps,
    13% of an epoch of 32 steps when it came every 48.  Any choice gives the
    same bits.
    """

    EXPLORE, LONGEST, TRY, WARM, DECAY, MARGIN = 200, 3200, 3, 4, 0.6, 0.08
    # and for WARM_SECONDS after the workers start: this VM's scheduler packs new processes onto one core
    # until they have run a while (its sched_vcpu_pack): two processes' first steps of a 784-256-256-10 MLP
    # at batch 512 took 9-10 ms for the first 60 ms, one process's time, then 4.7.
    WARM_SECONDS = 0.15

    def __init__(self, workers, clock=time.monotonic):
        self.workers = workers
        self.clock = clock
        self.warm_until = clock() + self.WARM_SECONDS
        self.fixed = os.environ.get("KERASH_ENGINE_ADAPT") == "0"
        self.cost = [None] * (workers + 1)  # seconds per sample, decaying average, by workers woken
        self.current = workers
        self.trying = self._try(workers, self.WARM, None)
        self.steps = 0
        self.interval = self.EXPLORE  # steps between tries
        self.next_try = self.EXPLORE
        self.idle = None  # the load probe's last verdict
        self.most = workers  # the most workers the last step's shards allowed

    @staticmethod
    def _try(woken, warm, before):
        """A try of `woken` workers: warm-up steps left, the counted steps' seconds per sample, the choice before."""
        return {"woken": woken, "warm": warm, "times": [], "before": before}

    def choose(self, shards, idle=True):
        """Workers to wake for a step of `shards` shards (the coordinator computes too).

        Without an idle core (`idle`, LoadProbe), more workers than the best so far are not tried: on a
        busy machine each try costs steps that wait for a core.  KERASH_ENGINE_ADAPT=0 wakes them all
        (for measurements and tests that need every worker to compute).
        """
        most = self.most = min(self.workers, shards - 1)
        if self.fixed:
            return most
        if idle != self.idle:
            # The machine's load changed: look again soon, when the change may favour another number (fewer
            # processes on a busier machine, more on a quieter one).
            if self.idle is not None and (self.current > 0 if not idle else self.current < most):
                self.interval = self.EXPLORE
                self.next_try = min(self.next_try, self.steps + self.TRY)
            self.idle = idle
        trying = self.trying
        if trying and trying["woken"] > most:  # fewer shards than workers (--workers > shards, an MPI rank's part)
            trying["woken"] = most
        if trying and trying["woken"] > self.current and self.cost[self.current] is not None and not idle:
            self.trying = trying = None
        return min(trying["woken"] if trying else self.current, most)

    def _blend(self, woken, per_sample):
        old = self.cost[woken]
        self.cost[woken] = per_sample if old is None else self.DECAY * old + (1 - self.DECAY) * per_sample

    def record(self, woken, seconds, samples):
        self.steps += 1
        per_sample = seconds / max(samples, 1)
        trying = self.trying
        if trying and trying["woken"] == woken:
            if trying["warm"] > 0 or (trying["before"] is None and self.clock() < self.warm_until):
                trying["warm"] -= 1  # a warm-up step: not counted
                return
            trying["times"].append(per_sample)
            if len(trying["times"]) < self.TRY:
                return
            self.trying = None
            times = sorted(trying["times"])
            self.cost[woken] = times[len(times) // 2]  # replaced: the old figure may be from another load
        elif not trying:
            self._blend(woken, per_sample)
        before = self.current
        self._choose_best()
        if not trying and self.current != before:
            # The choice's own steps grew slower than the other number's last figure, which may be old: try that
            # number again soon (not at once: a slowdown lasts a while) rather than keep a choice made on a
            # passing slowdown for thousands of steps.
            self.interval = self.EXPLORE
            self.next_try = min(self.next_try, self.steps + self.EXPLORE // 8)
        if trying and self.trying is None:  # a try just ended
            untried = [a for a in range(max(self.most, 0) + 1) if self.cost[a] is None]
            if untried:
                self.trying = self._try(untried[-1], 1, None)
            elif trying["before"] is not None:  # a try after the first ones: wait longer when it changed nothing
                self.interval = min(2 * self.interval, self.LONGEST) if self.current == trying["before"] else self.EXPLORE
            self.next_try = self.steps + self.interval
        if not self.trying and self.steps >= self.next_try and self.workers:
            other = (self.current + 1 + (self.steps // self.EXPLORE) % self.workers) % (self.workers + 1)
            self.trying = self._try(other, 1, self.current)
            self.next_try = self.steps + self.interval

    def _choose_best(self):
        best = None
        for a in range(self.workers + 1):  # more processes only when clearly faster: timings on a busy machine
            cost = self.cost[a]            # are noisy, and an extra process costs the others a share of a core
            if cost is not None and (best is None or cost < self.cost[best] * (1 - self.MARGIN)):
                best = a
        if best is not None:
            self.current = best


class ForkEngine(LocalEngine):
    """`workers` processes (this one included) taking the logical shards of each batch; see the module docstring.

    `group(count)` gives the shards (first, stop) of a batch of `count` shards
    that this process group computes (default: all; the MPI engine gives each
    rank its part), and `exchange(rows, results, losses, n, bounds)` brings in
    the other groups' before they are added up.

    A shard is written into a row assigned to it for the step.  A shard that
    its taker has not finished when the coordinator has nothing else to do
    (a process put aside by the scheduler, or stopped) is computed again by
    the coordinator into a buffer of its own; the taker's row is then held
    until it comes back, and its late figures are thrown away.
    """

    kind = "fork"
    # shard_state: offered, taken, done by its taker, done by the coordinator instead
    OFFERED, TAKEN, DONE, RETAKEN = 0, 1, 2, 3

    def __init__(self, net, objective, x, y, optimizer, mask, workers, group=None, exchange=None, stall=None,
                 warn=None, settings=None):
        super().__init__(net, objective, x, y, optimizer, mask, settings)
        self.workers = workers
        self.group = group or (lambda count: (0, count))
        self.exchange = exchange
        self.stall = stall
        self.warn = warn or (lambda message: None)
        self.pids = []
        self.interrupted = lambda: False
        self.cores = usable_cores()
        self.probe = LoadProbe(self.cores, lambda: self.pids)
        self.chooser = ProcessChooser(workers - 1)
        self.epoch_steps = self.epoch_processes = 0  # for processes_per_step
        self.shard_seconds = None  # a recent shard's time here: how long to wait before computing a shard again
        self.batch = None  # (length, shards) of the step of the last shard taken
        self.bounds_of = (None, None)
        self.retaken = {}  # shard → buffer, for shards computed again here this step
        self.late = {}  # worker → (the row it holds, since when), while it is late with a shard
        self.warned = set()
        self.rows_count = shard_count(net, max(len(x), 1), self.steps, self.settings.shards)
        self.run_dir = None
        if workers > 1:
            remove_stale(RUN_PREFIX)  # run folders of coordinators that were killed
            self.run_dir = scratch_dir(RUN_PREFIX)
        try:
            self._share(max(len(x), 1))
            if workers > 1:
                import multiprocessing

                ctx = multiprocessing.get_context("fork")
                self.lock = ctx.Lock()  # of the shard counter and states
                self.go = [ctx.Semaphore(0) for _ in range(workers)]  # coordinator → worker k
                self.done = ctx.Semaphore(0)  # a worker finished a shard
                for k in range(1, workers):
                    self._fork(k)
                self._warm_up()  # this process too writes pages it now shares with the workers
                self._await_ready()
                self.chooser.warm_until = self.chooser.clock() + self.chooser.WARM_SECONDS
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ shared memory

    def _array(self, dtype, shape):
        # Anonymous shared memory, which forked workers inherit: no room is needed in the work folder, and a
        # work folder on a disk costs nothing (writing the rows is as fast either way, measured).
        if self.run_dir is None:  # one process: plain memory
            return np.zeros(shape, dtype=dtype)
        return shared_zeros(shape, dtype)

    def _share(self, n):
        net = self.net
        size = net.arena.size
        if self.run_dir is not None:
            weights = self._array(net.dtype, (size,))
            weights[...] = net.arena.params
            net.use_arena(params_buffer=weights, grads_buffer=self.own_grads)
        # A row per shard, and one more per worker: a row that a late worker may still write is not reused.
        spare = self.workers - 1
        self.rows = self._array(net.dtype, (self.rows_count + spare, size))
        self.total = np.empty(size, dtype=net.dtype)
        self.idx = self._array(np.int64, (n,))
        self.losses = self._array(np.float64, (n,))
        self.results = self._array(np.float64, (self.rows_count, 2))  # loss sum, correct
        # per shard: state, taker, row; per row: held by a late worker
        self.shard_state = self._array(np.int64, (3, self.rows_count))
        self.held = self._array(np.int64, (self.rows_count + spare,))
        self.failed = self._array(np.int64, (self.workers,))
        self.control = self._array(np.int64, (_FIELDS,))

    def _real(self, field):
        return float(self.control[field:field + 1].view(np.float64)[0])

    def _set_real(self, field, value):
        self.control[field:field + 1].view(np.float64)[0] = value

    def _locked(self):
        return self.lock if self.workers > 1 else nullcontext()

    # ------------------------------------------------------------ taking shards

    def _take(self, k):
        """(shard, row, step) for process k, or None when every shard of the step is taken.

        A worker's shards may belong to a later step than the one it was woken for: the step's batch
        (its length, shards and epoch) is read with the shard.
        """
        control, state = self.control, self.shard_state
        with self._locked():
            s = int(control[_NEXT])
            if s >= control[_STOP]:
                return None
            control[_NEXT] = s + 1
            state[0, s], state[1, s] = self.TAKEN, k
            self.epoch = int(control[_EPOCH])  # dropout masks depend on it
            self.batch = (int(control[_N]), int(control[_TOTAL]))
            return s, int(state[2, s]), int(control[_STEP])

    def _compute(self, k, s, row, step, bounds):
        """Shard s into `row`; its figures count only if the step is still on and nobody computed it again."""
        start, stop = bounds[s]
        self.net.write_grads_to(row)
        losses, correct = self.shard_gradient(self.idx[start:stop], self._real(_SCALE))
        with self._locked():
            if self.control[_STEP] != step or self.shard_state[0, s] != self.TAKEN or self.shard_state[1, s] != k:
                return False
            self.losses[start:stop] = losses
            self.results[s] = (float(losses.sum()), correct)
            self.shard_state[0, s] = self.DONE
            return True

    def _bounds(self):
        """The shards of the batch of the last shard taken (cached: the same for every shard of a step)."""
        if self.batch != self.bounds_of[0]:
            self.bounds_of = (self.batch, shard_bounds(0, *self.batch))
        return self.bounds_of[1]

    # ------------------------------------------------------------ workers

    def _fork(self, k):
        coordinator = os.getpid()
        self.pids.append(fork_child(lambda: self._worker(k, coordinator)))

    def _worker(self, k, coordinator):
        run_dir = self.run_dir
        # Ctrl-C, a hang-up and Ctrl-\ reach the whole process group: only the coordinator acts on them
        # (if it dies of one, PR_SET_PDEATHSIG below ends the workers, which remove the run folder).
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_IGN)

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
        try:
            self._warm_up()
        except Exception:  # the shards will fail the same way, and say so
            pass
        self.done.release()  # ready
        go = self.go[k]
        while True:
            woken = False
            if self.control[_SPIN]:
                deadline = time.monotonic() + SPIN_SECONDS
                while not woken and time.monotonic() < deadline:
                    woken = go.acquire(False)
            while not woken:
                woken = go.acquire(timeout=1.0)
                if not woken and os.getppid() != coordinator:
                    orphaned()
            if self.control[_PHASE] == QUIT:
                return
            while True:
                taken = self._take(k)
                if taken is None:
                    break
                s, row, step = taken
                bounds = self._bounds()
                try:
                    counted = self._compute(k, s, self.rows[row], step, bounds)
                except Exception as e:
                    with open(os.path.join(run_dir, f"worker-{k}-error.txt"), "w") as f:
                        f.write(f"{type(e).__name__}: {e}")
                    self.failed[k] = 1
                    counted = False
                if not counted:
                    with self._locked():
                        self.held[row] = 0  # computed again by the coordinator: the row is free again
                self.done.release()

    def _warm_up(self):
        """Compute a shard's gradient a few times, thrown away, before taking shards.

        After the fork, the first write to each page a process inherited copies it: a forked worker's first
        gradients of a 784-256-256-10 MLP shard took 7–10 ms against 2.2 later, the first five or so of
        them, and the coordinator's first steps were slow as well.  Done here, by every process before the
        first step, they do not slow the first steps nor mislead the ProcessChooser (whose first try of two
        processes measured one process's speed, the worker not yet taking shards).  A worker writes no
        shared state here: it may be stopped and continued after the first steps (the coordinator waits
        READY_SECONDS at most), so it only reads the shared memory; its gradients go to a scratch buffer,
        with no carried states (--bptt) and the masks of epoch 0.
        """
        # Shared memory is mapped into each process at its first touch of each page (263 faults, about 1 ms,
        # for a row of a 784-256-256-10 MLP's gradient): touch it all now, reading (a write by a late worker
        # would land in rows that hold a step's gradients).
        page = 4096
        for array in (self.rows, self.net.arena.params, self.idx, self.losses):
            flat = array.reshape(-1)
            flat[:: max(1, page // flat.itemsize)].sum()
        batch = self.settings.batch
        if not batch or not len(self.y):
            return
        own = self.net.arena.grads
        n = min(len(self.y), -(-batch // shard_count(self.net, batch, self.steps, self.settings.shards)))
        scratch = np.empty_like(self.own_grads)
        self.net.write_grads_to(scratch)
        times, began = [], time.monotonic()
        for call in range(WARM_UP_CALLS):
            idx = (np.arange(n) + call * n) % len(self.y)
            noise = Noise(self.settings.seed, 0, idx) if any(self.net.noisy) else None
            started = time.perf_counter()
            self.net.gradient(self.objective, self.gather(idx), self.y.take(idx, axis=0), 1.0 / n, None, noise)
            times.append(time.perf_counter() - started)
            if len(times) >= 4 and max(times[-3:]) < 1.3 * min(times):  # steady: three calls near the fastest
                break
            if time.monotonic() - began > WARM_UP_SECONDS:  # a large model: a few of its steps' time at most
                break
        self.net.write_grads_to(own)

    def _await_ready(self):
        """Until every worker has warmed up (each says so once), so that the first steps time them warm; at most
        READY_SECONDS: a worker stopped meanwhile (SIGSTOP) takes shards when it comes back, like a late one (its
        word then only wakes a wait for shards once more, which looks again and waits on)."""
        ready, deadline = 0, time.monotonic() + READY_SECONDS
        while ready < self.workers - 1 and time.monotonic() < deadline:
            if self.done.acquire(timeout=0.25):
                ready += 1
            else:
                self._check_workers()

    # ------------------------------------------------------------ coordinator

    def _publish(self, idx, scale, total, first, stop):
        """The batch for every process, then its shards first..stop-1 offered, each with a free row."""
        n = len(idx)
        self.idx[:n] = idx
        self.control[_N], self.control[_EPOCH], self.control[_TOTAL] = n, self.epoch, total
        self._set_real(_SCALE, scale)
        with self._locked():
            # Shard s in row s, unless a late worker still holds that row: then a spare one.
            spare = [r for r in range(total, len(self.held)) if not self.held[r]]
            for k in range(first, stop):
                self.shard_state[2, k] = k if not self.held[k] else spare.pop()
            self.shard_state[0, first:stop] = self.OFFERED
            self.control[_STEP] += 1
            self.control[_NEXT], self.control[_STOP] = first, stop

    def _shards(self, idx, scale, helpers):
        """Compute this group's shards of the batch, `helpers` workers woken to take some."""
        n = len(idx)
        every = shard_count(self.net, n, self.steps, self.settings.shards)
        first, stop = self.group(every)
        self._publish(idx, scale, every, first, stop)
        bounds = shard_bounds(0, n, every)
        self.retaken = {}
        self.summed = 0  # shards added into self.total so far (see _sum_ready)
        for k in range(1, 1 + helpers):
            self.go[k].release()
        while True:
            taken = self._take(0)
            if taken is None:
                break
            s, row, step = taken
            started = time.perf_counter()
            self._compute(0, s, self.rows[row], step, bounds)
            self.shard_seconds = time.perf_counter() - started
            self._sum_ready(stop)
        if self.workers > 1:  # a worker woken for an earlier step may have taken a shard of this one
            self._await(first, stop, bounds)
        if self.workers > 1 and self.failed.any():
            k = int(np.argmax(self.failed))
            try:
                with open(os.path.join(self.run_dir, f"worker-{k}-error.txt")) as f:
                    reason = f.read()
            except OSError:
                reason = "unknown error"
            raise EngineFailure(f"worker {k} failed: {reason}", True)
        return bounds

    def _sum_ready(self, stop):
        """Add the shards that are done, from the first not added yet up to the first not done, into the total.

        The coordinator does this while it waits for the last shards: the same additions in the same order as
        add_in_order, only sooner.  (With an exchange the rows are added after it.)
        """
        if self.exchange is not None:
            return
        state, finished = self.shard_state, (self.DONE, self.RETAKEN)
        while self.summed < stop and state[0, self.summed] in finished:
            s = self.summed
            if s == 0:  # the first two in one pass: the same bits as a copy and an addition
                if stop > 1 and state[0, 1] not in finished:
                    return
                if stop > 1:
                    np.add(self._row(0), self._row(1), out=self.total)
                    self.summed = 2
                    continue
                np.copyto(self.total, self._row(0))
            else:
                self.total += self._row(s)
            self.summed += 1

    def _row(self, s):
        """Where shard s's gradient is this step: its row, or the buffer it was computed again into."""
        return self.retaken[s] if s in self.retaken else self.rows[self.shard_state[2, s]]

    def _await(self, first, stop, bounds):
        """Until every shard is done: by its taker, or computed again here once its taker is late."""
        state = self.shard_state
        spin = bool(self.control[_SPIN])
        late = max(0.002, 3 * (self.shard_seconds or 0.0))
        started = time.monotonic()
        while True:
            with self.lock:
                pending = [s for s in range(first, stop) if state[0, s] == self.TAKEN]
            if not pending:
                return
            self._sum_ready(stop)
            now = time.monotonic()
            if now - started >= late:
                for s in pending:
                    self._retake(s, bounds)
                continue
            if spin:  # a core is idle: poll for the wake-up instead of paying for one
                deadline = started + late
                while not self.done.acquire(False) and time.monotonic() < deadline:
                    pass
            elif not self.done.acquire(timeout=min(0.05, started + late - now)):
                self._check_workers()
                if self.interrupted():
                    raise Interrupted(True)

    def _retake(self, s, bounds):
        """Compute shard s here, its taker being late; the taker's row stays held until it comes back."""
        start, stop = bounds[s]
        buffer = self.retaken.get(s)
        if buffer is None:
            buffer = self.retaken[s] = np.empty_like(self.own_grads)
        self.net.write_grads_to(buffer)
        losses, correct = self.shard_gradient(self.idx[start:stop], self._real(_SCALE))
        with self.lock:
            if self.shard_state[0, s] != self.TAKEN:  # its taker finished meanwhile
                del self.retaken[s]
                return
            taker = int(self.shard_state[1, s])
            row = int(self.shard_state[2, s])
            self.held[row] = 1
            self.late.setdefault(taker, (row, time.monotonic()))
            self.losses[start:stop] = losses
            self.results[s] = (float(losses.sum()), correct)
            self.shard_state[0, s] = self.RETAKEN
        self._check_workers()

    def _report_late(self):
        """Say once which worker has been late with a shard for --stall seconds (the others compute its shards)."""
        now = time.monotonic()
        for k, (row, since) in list(self.late.items()):
            if not self.held[row]:
                del self.late[k]  # it came back
                self.warned.discard(k)
            elif self.stall is not None and now - since >= self.stall and k not in self.warned:
                self.warned.add(k)
                pid = self.pids[k - 1]
                self.warn(f"worker {k} (pid {pid}, {_process_state(pid)}) has made no progress for {now - since:.0f} s;"
                          " the others compute its shards")

    def _check_workers(self):
        for k, pid in enumerate(self.pids, 1):
            if pid is None:
                continue
            try:
                status = wait_child(pid, 0)
            except ChildProcessError:
                status = 0
            if status is not None:
                self.pids[k - 1] = None
                if self.interrupted():  # a signal to the whole group (kill -TERM -PGID): a stop, not a failure
                    raise Interrupted(True)
                raise EngineFailure(f"worker {k} (pid {pid}) {describe_status(status)}; training stopped", True)

    def _gathered(self, idx, scale, helpers):
        """(losses, correct, gradient) of a batch: every shard computed (here and elsewhere), added in order."""
        n = len(idx)
        bounds = self._shards(idx, scale, helpers)
        count = len(bounds)
        first, stop = self.group(count)
        rows = [self._row(s) if first <= s < stop else None for s in range(count)]
        if self.exchange is not None:
            # The exchange sends and receives rows in shard order: row s for shard s, unless a late
            # worker holds it (after a shard was computed again), then a copy of them all.
            moved = any(s in self.retaken or self.shard_state[2, s] != s for s in range(first, stop))
            shard_rows = self.rows[:count] if not moved else np.empty((count, self.total.size), self.total.dtype)
            for s in range(first, stop):
                if moved:
                    np.copyto(shard_rows[s], rows[s])
            self.exchange(shard_rows, self.results, self.losses, n, bounds)
            rows = list(shard_rows)
        losses = self.losses[:n].copy()
        correct = int(sum(int(c) for c in self.results[:count, 1]))
        if self.exchange is None:  # the first shards were added while the last ones were computed
            self._sum_ready(count)
            return losses, correct, self.total
        return losses, correct, add_in_order(self.total, rows)

    def gradient(self, idx, scale, keep=None):
        """The step's gradient computed by this process alone: the same numbers as step()'s."""
        return self._gathered(idx, scale, 0)

    def step(self, idx, scale, keep=None, capture=None):
        """One training step over the shards; keep is ignored (shards return their losses)."""
        shards = shard_count(self.net, len(idx), self.steps, self.settings.shards)
        first, stop = self.group(shards)
        helpers = 0
        if self.workers > 1:
            helpers = self.chooser.choose(stop - first, self.probe.idle_core(1))
            # Poll while every process of this step has a core that no other job wants (the waiting one's own
            # included): blocked, a woken worker was often put on the coordinator's core, each taking turns on
            # one core for a shard while the other stayed idle (measured: the first steps of two processes as
            # slow as one; wake-ups 2 ms late).
            self.control[_SPIN] = self.probe.idle_core(helpers)
            self._check_workers()
            if self.late:
                self._report_late()
        started = time.perf_counter()
        if helpers == 0 and self.exchange is None:
            # This process alone: the local engine's calls, the same shards added in the same order, without
            # the shared rows (5% of a step of a 784-256-256-10 MLP beside a busy process).
            losses, correct, grads = LocalEngine.gradient(self, idx, scale)
        else:
            losses, correct, grads = self._gathered(idx, scale, helpers)
        if self.workers > 1 and stop - first > 1:
            self.chooser.record(helpers, time.perf_counter() - started, len(idx))
        self.processes = 1 + helpers
        self.epoch_steps += 1
        self.epoch_processes += self.processes
        finite = bool(np.isfinite(losses.sum()))
        if self.settings.carry is not None:  # --bptt: late shards of this step write no states from here on
            self.settings.carry.seal()
        if finite:
            self.apply(grads, capture)
        return StepResult(losses, correct, finite)

    def explain(self):
        """Why the chooser wakes the workers it does, in words (train -v, at each epoch's end)."""
        if self.workers == 1:
            return "no forked workers"
        chooser = self.chooser
        if chooser.fixed:
            return "KERASH_ENGINE_ADAPT=0: every worker at every step"
        figures = ", ".join(f"{a + 1} process(es) {cost * 1e6:.1f} µs a sample" for a, cost in enumerate(chooser.cost)
                            if cost is not None)
        machine = "a core free for a worker" if chooser.idle else "no core free for a worker (other jobs run)"
        return f"lately {figures or 'no timings yet'}; {machine}; next try of another number in " \
               f"{max(chooser.next_try - chooser.steps, 0)} steps"

    def processes_per_step(self):
        """The mean number of processes that computed a step since the last call (for the trace)."""
        mean = self.epoch_processes / self.epoch_steps if self.epoch_steps else 1.0
        self.epoch_steps = self.epoch_processes = 0
        return mean

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
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
