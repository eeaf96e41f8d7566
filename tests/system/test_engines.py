"""The engines through `train`: forked workers and MPI ranks give the same weights as one
process, resume exactly, stop on signals whatever a worker does, and a dead rank ends the job."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import BIN, ROOT, children, run, tool_env
from helpers import assert_weights, make_model, processes_column, weights

MODEL = "12 1 1\ninput\ndense 16 tanh\ndense 8 relu\ndense 3 softmax\n"
COMMON = ["-x", "x.npy", "-y", "y.txt", "-b", "20", "--optimizer", "adam", "--lr", "0.01", "--seed", "3"]
MPIEXEC = str(BIN / "mpiexec")


def _mapped_files():
    paths = set()
    for maps in os.listdir("/proc"):
        if maps.isdigit():
            try:
                with open(f"/proc/{maps}/maps") as f:
                    paths.update(line.split(maxsplit=5)[-1].strip() for line in f if "/dev/shm/" in line)
            except OSError:
                pass
    return paths


def mpich_segments():
    return {n for n in os.listdir("/dev/shm") if n.startswith("mpich_shm_")} if os.path.isdir("/dev/shm") else set()


@pytest.fixture(autouse=True)
def no_mpich_litter():
    """MPICH leaves its 2 MB /dev/shm segment behind when a job ends by a failing or killed rank:
    remove those this test left, once no process maps them (a job of another test may still run)."""
    def segments():
        return {n for n in os.listdir("/dev/shm") if n.startswith("mpich_shm_")} if os.path.isdir("/dev/shm") else set()

    before = segments()
    yield
    new = segments() - before
    if new:
        mapped = _mapped_files()
        for name in new:
            path = f"/dev/shm/{name}"
            try:
                if path not in mapped and os.stat(path).st_uid == os.getuid():
                    os.unlink(path)
            except FileNotFoundError:
                pass


@pytest.fixture
def task(tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", rng.normal(size=(150, 12)))
    np.savetxt(tmp_path / "y.txt", rng.integers(0, 3, size=150), fmt="%d")
    make_model(tmp_path, MODEL, name="m0", seed=2)
    return tmp_path


def copy(folder, name):
    run(["cp", "-r", "m0", name], cwd=folder)
    return folder / name


def mpi(folder, ranks, *args, check=True, env=None):
    return run([MPIEXEC, "-n", str(ranks), "train", *args], cwd=folder, check=check, timeout=120, env=env)


def test_mpi_ranks_equal_forked_workers(task):
    for name in ("w2", "w3", "w4", "r2", "r3", "r2w2"):
        copy(task, name)
    every = tool_env(KERASH_ENGINE_ADAPT=0)  # every worker computes at every step
    for name, workers in (("w2", 2), ("w3", 3), ("w4", 4)):
        run(["train", name, *COMMON, "--epochs", "2", "--workers", str(workers), "--shards", "5"], cwd=task, env=every)
        assert processes_column(task / name) == [float(workers)] * 2
    out = mpi(task, 2, "r2", *COMMON, "--epochs", "2", "--shards", "5").stdout.decode().splitlines()
    assert out[0].startswith("epoch\t") and len(out) == 3  # rank 0 alone prints
    mpi(task, 3, "r3", *COMMON, "--epochs", "2", "--shards", "5")
    mpi(task, 2, "r2w2", *COMMON, "--epochs", "2", "--workers", "2", "--shards", "5", env=every)
    assert processes_column(task / "r2w2") == [2.0] * 2  # rank 0's 3 shards of 5: it and its worker
    # the same logical shards, added in the same order: the same bits, however many ranks and workers
    for ranks, forked in (("r2", "w2"), ("r3", "w3"), ("r2w2", "w4")):
        assert_weights(weights(task / ranks), weights(task / forked), 0)
    assert (task / "r2" / "trace.tsv").read_text().count("\n") == 3  # written once, by rank 0
    assert not np.allclose(weights(task / "r2")["layer_01/W"], weights(task / "m0")["layer_01/W"])


# Settings that change during a run, each with what makes it change; every process must
# follow them (issue 19: workers kept the base rate, so schedules reached one slice only).
CHANGING = {
    "step schedule": ["--optimizer", "sgd", "--lr", "0.05", "--lr-schedule", "step:1:0.5"],
    "warmup, adam": ["--optimizer", "adam", "--lr", "0.01", "--warmup", "2", "--lr-schedule", "exponential:0.8"],
    "nesterov momentum, cosine": ["--optimizer", "nesterov", "--momentum", "0.7", "--lr", "0.05",
                                  "--lr-schedule", "cosine:3"],
    "rmsprop, weight decay, plateau": ["--optimizer", "rmsprop", "--lr", "0.01", "--weight-decay", "0.01",
                                       "--lr-schedule", "plateau:0:0.5", "--validation-split", "0.2"],
    "growing batches": ["--optimizer", "momentum", "--lr", "0.05", "--batch-growth", "7:16:50",
                        "--lr-schedule", "step:1:0.3"],
    "frozen layer": ["--optimizer", "momentum", "--lr", "0.05", "--freeze", "layer_02", "--lr-schedule", "step:1:0.3"],
    "clipping": ["--optimizer", "sgd", "--lr", "0.5", "--clip-norm", "0.05", "--lr-schedule", "exponential:0.5"],
}


@pytest.mark.parametrize("case", CHANGING)
def test_settings_that_change_during_a_run_reach_every_worker(task, case):
    batch = [] if "--batch-growth" in CHANGING[case] else ["-b", "10"]
    args = ["-x", "x.npy", "-y", "y.txt", *batch, "--seed", "3", "--epochs", "3", "--shards", "3", *CHANGING[case]]
    found = {}
    for workers in (1, 2, 3):
        folder = copy(task, f"w{workers}")
        run(["train", folder.name, *args, "--workers", str(workers), "--quiet"], cwd=task,
            env=tool_env(KERASH_ENGINE_ADAPT=0))  # every worker computes at every step
        found[workers] = weights(folder)
        if workers > 1:  # every epoch's steps computed by several processes (a mean: a last step may be one sample)
            assert all(p > 1 for p in processes_column(folder)), processes_column(folder)
    assert_weights(found[2], found[1], 0)
    assert_weights(found[3], found[1], 0)


def test_a_schedule_with_workers_equals_its_rates_given_epoch_by_epoch_bit_for_bit(task):
    # four shards (the rule gives this small model's batch one, which leaves the worker nothing to compute)
    common = ["-x", "x.npy", "-y", "y.txt", "-b", "10", "--seed", "3", "--optimizer", "momentum", "--workers", "2",
              "--shards", "4"]
    every = tool_env(KERASH_ENGINE_ADAPT=0)  # the worker computes at every step
    scheduled, staged = copy(task, "scheduled"), copy(task, "staged")
    run(["train", "scheduled", *common, "--lr", "0.04", "--lr-schedule", "step:1:0.5", "--epochs", "3"], cwd=task,
        env=every)
    for epoch, lr in ((1, "0.04"), (2, "0.02"), (3, "0.01")):
        run(["train", "staged", *common, "--lr", lr, "--lr-schedule", "constant", "--until-epoch", str(epoch)],
            cwd=task, env=every)
    assert processes_column(scheduled) == processes_column(staged) == [2.0] * 3
    got, expected = weights(scheduled), weights(staged)
    for key in expected:
        assert np.array_equal(got[key], expected[key]), key


def test_mpi_resume_until_epoch_and_checkpoints(task):
    whole, halves = copy(task, "whole"), copy(task, "halves")
    args = [*COMMON, "--shards", "4"]  # two shards for each rank (the rule's one would leave rank 1 idle)
    mpi(task, 2, "whole", *args, "--epochs", "3")
    mpi(task, 2, "halves", *args, "--epochs", "1", "--checkpoint-every", "1")
    mpi(task, 2, "halves", *args, "--until-epoch", "3")
    nothing = mpi(task, 2, "halves", *args, "--until-epoch", "3")
    assert nothing.stdout == b"" and nothing.stderr.decode().count("nothing to do") == 1
    for key, value in weights(whole).items():
        np.testing.assert_array_equal(weights(halves)[key], value, err_msg=key)
    assert sorted(p.name for p in (halves / "checkpoints").iterdir()) == ["epoch-0001"]
    assert json.loads((halves / "state.json").read_text())["epochs"] == 3


def test_mpi_bad_data_is_one_line_and_a_failed_rank_ends_the_job(task):
    proc = mpi(task, 2, "m0", "-x", "missing.npy", "-y", "y.txt", check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode().splitlines() == ["train: error: cannot read missing.npy: No such file or directory"]
    # One rank killed while training: mpiexec ends the job within seconds, never hangs.
    copy(task, "killed")
    np.save(task / "big.npy", np.random.default_rng(4).normal(size=(3000, 12)))
    np.savetxt(task / "ybig.txt", np.zeros(3000), fmt="%d")
    proc = subprocess.Popen([MPIEXEC, "-n", "2", "train", "killed", "-x", "big.npy", "-y", "ybig.txt", "--epochs", "500",
                             "-b", "10"], cwd=task, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().startswith(b"epoch")
        assert proc.stdout.readline().startswith(b"1\t")
        ranks = [pid for proxy in children(proc.pid) for pid in children(proxy)]
        assert len(ranks) == 2, ranks
        os.kill(ranks[1], signal.SIGKILL)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    state = json.loads((task / "killed" / "state.json").read_text())  # the last save, whole and consistent
    assert state["steps"] == state["epochs"] * 300 + state.get("batch", 0)
    run(["predict", "killed", "x.npy"], cwd=task)


def test_sigterm_through_mpiexec_saves_and_continues(task):
    copy(task, "stopped")
    np.save(task / "big.npy", np.random.default_rng(4).normal(size=(3000, 12)))
    np.savetxt(task / "ybig.txt", np.zeros(3000), fmt="%d")
    args = ["train", "stopped", "-x", "big.npy", "-y", "ybig.txt", "-b", "10", "--seed", "1"]
    proc = subprocess.Popen([MPIEXEC, "-n", "2", *args, "--epochs", "500"], cwd=task, env=tool_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().startswith(b"epoch")
        assert proc.stdout.readline().startswith(b"1\t")
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: interrupted by SIGTERM; saved stopped at epoch"), lines
    state = json.loads((task / "stopped" / "state.json").read_text())
    epochs, batch = state["epochs"], state["batch"]
    assert epochs >= 1 and state["steps"] == epochs * 300 + batch
    more = mpi(task, 2, *args[1:], "--until-epoch", str(epochs + 2)).stdout.decode().splitlines()
    assert [line.split("\t")[0] for line in more[1:]] == [str(epochs + 1), str(epochs + 2)]


def _cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_a_worker_stopped_with_a_shard_is_reported_and_sigterm_still_stops_training(wide_task):
    """A worker stopped while it computes a shard: the coordinator computes that shard again, says so
    after --stall seconds, and SIGTERM still ends the run promptly and cleanly."""
    work = wide_task / "work"
    make_model(wide_task, WIDE, "stalled", seed=3)
    np.save(wide_task / "big.npy", np.random.default_rng(4).normal(size=(3000, 40)))
    np.savetxt(wide_task / "ybig.txt", np.zeros(3000), fmt="%d")
    err_path = wide_task / "err.txt"
    with open(err_path, "wb") as err_file:
        proc = subprocess.Popen(["train", "stalled", "-x", "big.npy", "-y", "ybig.txt", "--epochs", "500", "-b", "500",
                                 "--workers", "2", "--stall", "0.5"], cwd=wide_task,
                                # cold: its workers are its children; every worker woken at every step
                                env=tool_env(KERASH_WORKDIR=work, KERASH_WARM=0, KERASH_ENGINE_ADAPT=0),
                                stdout=subprocess.PIPE, stderr=err_file)
    try:
        assert proc.stdout.readline().startswith(b"epoch")
        assert proc.stdout.readline().startswith(b"1\t")
        (worker,) = children(proc.pid)
        reported = False
        for _ in range(300):  # stop it while it computes (its CPU time grows): it is woken when it pays, or tried
            before = _cpu_ticks(worker)
            time.sleep(0.02)
            if _cpu_ticks(worker) == before:
                continue
            os.kill(worker, signal.SIGSTOP)
            time.sleep(1.5)
            if b"has made no progress" in err_path.read_bytes():
                reported = True
                break
            os.kill(worker, signal.SIGCONT)
        assert reported, err_path.read_bytes()
        steps = proc.stdout.readline()  # epochs go on without it
        assert steps[:1].isdigit(), steps
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        proc.communicate(timeout=20)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = err_path.read_text().splitlines()
    assert proc.returncode == 143 and took < 5, (took, lines)
    assert f"train: warning: worker 1 (pid {worker}, stopped) has made no progress for 0 s;" in lines[0] or \
        f"train: warning: worker 1 (pid {worker}, stopped) has made no progress for 1 s;" in lines[0], lines
    assert lines[-1].startswith("train: interrupted by SIGTERM; saved stalled at epoch")
    assert not os.path.exists(f"/proc/{worker}") or open(f"/proc/{worker}/stat").read().split()[2] == "Z"
    assert os.listdir(work) == []
    state = json.loads((wide_task / "stalled" / "state.json").read_text())
    assert state["steps"] == state["epochs"] * 6 + state["batch"]
    run(["predict", "stalled", "x.npy"], cwd=wide_task)


def test_shards_follow_the_work_and_default_workers_the_shards():
    from kerash import model
    from kerash.training.engines import default_workers
    from kerash.training.engines.step import shard_count

    def net(text):
        built = model.build_network(model.parse_model(text))
        built.use_arena()
        return built

    wide = net("784 1 1\ninput\ndense 256 relu\ndense 256 relu\ndense 10 softmax\n")
    tiny = net("2 1 1\ninput\ndense 4 tanh\ndense 1 sigmoid\n")
    digits_cnn = net((ROOT / "models" / "digits-cnn.model").read_text())
    # more work per batch, more shards (while one process pays at most ~10% for them: bench/shard_cost.py), a count
    # two processes share evenly (no 3); never more than the samples, MAX_SHARDS, or --shards
    assert [shard_count(wide, n) for n in (32, 64, 128, 256, 512, 1024, 4096)] == [1, 1, 1, 2, 4, 6, 8]
    assert [shard_count(digits_cnn, n) for n in (32, 64, 128, 256, 512)] == [1, 1, 2, 2, 6]
    assert shard_count(tiny, 1000) == 1 and shard_count(tiny, 3, shards=5) == 3 and shard_count(wide, 512, shards=2) == 2
    assert default_workers(wide, 256, cores=2) == 2
    assert default_workers(wide, 1024, cores=64) == 6  # one process per shard at most
    assert default_workers(wide, 256, cores=1) == 1
    assert default_workers(wide, 128, cores=2) == 1  # one shard: one process
    assert default_workers(tiny, 4, cores=2) == 1
    assert default_workers(digits_cnn, 32, cores=2) == 1 and default_workers(digits_cnn, 128, cores=2) == 2
    assert wide.macs_per_sample() == 784 * 256 + 256 * 256 + 256 * 10
    # Pooling has no multiply-adds but takes time: 40 per input value count.
    pooled = net("8 8 4\ninput\nmax_pooling - 2 0 2 2\nflatten -\ndense 10 softmax\n")
    assert pooled.macs_per_sample() == 40 * 4 * 8 * 8 + 4 * 4 * 4 * 10


WIDE = "40 1 1\ninput\ndense 200 tanh\ndropout 0.2\ndense 120 relu\ndense 4 softmax\n"


@pytest.fixture
def wide_task(tmp_path):
    rng = np.random.default_rng(5)
    np.save(tmp_path / "x.npy", rng.normal(size=(600, 40)))
    np.savetxt(tmp_path / "y.txt", rng.integers(0, 4, size=600), fmt="%d")
    return tmp_path


def test_train_verbose_says_how_many_processes_and_why(wide_task):
    """Issue 21, item 6: -v says how the default was chosen, and at each epoch how many processes computed a
    step and why (the chooser's timings and the machine's load)."""
    make_model(wide_task, WIDE, "v", seed=3)
    args = ["-x", "x.npy", "-y", "y.txt", "-b", "96", "--epochs", "2", "--quiet"]
    err = run(["train", "v", *args, "--workers", "2", "--shards", "2", "-v"], cwd=wide_task,
              env=tool_env(KERASH_WARM=0)).stderr.decode()
    assert "2 process(es) (--workers); a batch of 96 is 2 shard(s)" in err, err
    epochs = [line for line in err.splitlines() if line.startswith("train: epoch ")]
    assert [line.split(":")[1] for line in epochs] == [" epoch 1", " epoch 2"], err
    # 7 steps an epoch: the chooser's first try may not be judged yet (it waits 0.15 s for the workers)
    assert all("processes a step; lately " in line and ("µs a sample" in line or "no timings yet" in line)
               and "core" in line for line in epochs), err
    err = run(["train", "v", *args, "-v"], cwd=wide_task, env=tool_env(KERASH_WARM=0)).stderr.decode()
    assert "a batch of 96 is 1 shard(s) (from the model and the batch size)" in err, err
    assert "1 process(es)" in err and "train: epoch" not in err, err


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_same_bits_whatever_the_processes(wide_task, dtype):
    """Issue 21: fixed logical shards, summed in order; 1, 2 or 3 processes, with dropout, clipping and
    momentum, give bit-identical weights."""
    # six shards (the rule gives this small model's batch one: a process gains nothing from splitting it)
    args = ["-x", "x.npy", "-y", "y.txt", "-b", "96", "--seed", "2", "--epochs", "3", "--optimizer", "momentum",
            "--lr", "0.05", "--clip-norm", "1", "--quiet", "--shards", "6"]
    found = {}
    for workers in (1, 2, 3):
        folder = make_model(wide_task, WIDE, f"w{workers}", seed=3, dtype=dtype)
        run(["train", folder.name, *args, "--workers", str(workers)], cwd=wide_task,
            env=tool_env(KERASH_WARM=0, KERASH_ENGINE_ADAPT=0))  # every worker computes at every step
        found[workers] = weights(folder)
        assert processes_column(folder) == [float(workers)] * 3
    assert all(a.dtype == np.dtype(dtype) for a in found[1].values())
    assert_weights(found[2], found[1], 0)
    assert_weights(found[3], found[1], 0)


def test_a_worker_stopped_mid_run_is_passed_by_and_changes_no_bit(wide_task):
    """Issue 21: the other processes take the shards of a process the scheduler (here SIGSTOP) puts aside;
    training goes on, and ends with the bits of one process."""
    args = ["-x", "x.npy", "-y", "y.txt", "-b", "96", "--seed", "2", "--optimizer", "adam", "--lr", "0.01",
            "--shards", "4"]
    alone = make_model(wide_task, WIDE, "alone", seed=3)
    run(["train", "alone", *args, "--epochs", "60", "--workers", "1", "--quiet"], cwd=wide_task)
    stopped = make_model(wide_task, WIDE, "stopped", seed=3)
    proc = subprocess.Popen(["train", "stopped", *args, "--epochs", "60", "--workers", "2"], cwd=wide_task,
                            env=tool_env(KERASH_WARM=0, KERASH_ENGINE_ADAPT=0), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().startswith(b"epoch")
        assert proc.stdout.readline().startswith(b"1\t")
        (worker,) = children(proc.pid)
        os.kill(worker, signal.SIGSTOP)
        seen = [proc.stdout.readline() for _ in range(3)]  # epochs go on while it is stopped
        os.kill(worker, signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert all(line[:1].isdigit() for line in seen), seen
    assert_weights(weights(stopped), weights(alone), 0)


def test_a_worker_stopped_before_the_first_step_is_not_waited_for(wide_task):
    """Issue 21: a worker stopped while it warms up (before the first step) delays the start by READY_SECONDS
    at most; the coordinator computes every shard meanwhile.  Continued in the middle of the run, the worker
    finishes its warm-up (which writes no shared memory: it zeroed the gradient rows once, and a late one
    changed the weights) and takes shards.  The bits are one process's."""
    from kerash.training.engines.fork import READY_SECONDS

    args = ["-x", "x.npy", "-y", "y.txt", "-b", "96", "--seed", "2", "--optimizer", "adam", "--lr", "0.01",
            "--shards", "4", "--epochs", "250", "--quiet"]
    make_model(wide_task, WIDE, "alone", seed=3)
    run(["train", "alone", *args, "--workers", "1"], cwd=wide_task)
    make_model(wide_task, WIDE, "stopped", seed=3)
    proc = subprocess.Popen(["train", "stopped", *args, "--workers", "2"], cwd=wide_task,
                            env=tool_env(KERASH_WARM=0, KERASH_ENGINE_ADAPT=0), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    worker = None
    try:
        deadline = time.monotonic() + 30
        while worker is None and time.monotonic() < deadline and proc.poll() is None:
            found = children(proc.pid)
            worker = found[0] if found else None
        assert worker is not None, "no worker was forked"
        os.kill(worker, signal.SIGSTOP)
        time.sleep(READY_SECONDS + 0.5)  # the coordinator stopped waiting and trains alone
        assert proc.poll() is None, "the run ended before the worker came back: nothing is tested"
        os.kill(worker, signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    finally:
        if worker is not None:
            try:
                os.kill(worker, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert_weights(weights(wide_task / "stopped"), weights(wide_task / "alone"), 0)


def test_a_job_that_kerash_ends_leaves_no_mpich_segment(task):
    """Issue 19: MPICH's 2 MB /dev/shm/mpich_shm_* stayed after every job ended by a failing rank.  When a rank
    ends the job itself (here: one of its forked workers dies, an error), it removes the job's segments first.
    (A SIGKILL of a rank or of mpiexec cannot be cleaned up after: the README says how to remove them.)"""
    before = mpich_segments()
    copy(task, "failing")
    np.save(task / "big.npy", np.random.default_rng(4).normal(size=(3000, 12)))
    np.savetxt(task / "ybig.txt", np.zeros(3000), fmt="%d")
    proc = subprocess.Popen([MPIEXEC, "-n", "2", "train", "failing", "-x", "big.npy", "-y", "ybig.txt", "--epochs",
                             "500", "-b", "10", "--workers", "2"], cwd=task, env=tool_env(KERASH_WARM=0),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().startswith(b"epoch")
        ranks = [pid for proxy in children(proc.pid) for pid in children(proxy)]
        workers = [pid for rank in ranks for pid in children(rank)]
        assert len(ranks) == 2 and len(workers) == 2, (ranks, workers)
        os.kill(workers[-1], signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0 and b"killed by SIGKILL" in err, err
    assert mpich_segments() - before == set()

