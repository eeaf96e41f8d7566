"""Forked children in-process: how they exit, their wait status in words, waits with a time limit, and
reaping only one's own children (evolve's parallel evaluations leave the caller's other children alone)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from kerash.processes import describe_status, end_child, fork_child, wait_any, wait_child


def _exited(code):
    """A child that has exited with `code` and is not reaped yet (a subprocess of this test)."""
    child = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # it has ended; it is still there to reap
    return child


def test_a_child_exits_0_when_its_task_returns_1_when_it_raises_and_statuses_read_as_words():
    def fail():
        raise RuntimeError("no")

    assert describe_status(wait_child(fork_child(lambda: None))) == "exited with status 0"
    assert describe_status(wait_child(fork_child(fail))) == "exited with status 1"
    assert describe_status(wait_child(fork_child(lambda: os.kill(os.getpid(), signal.SIGKILL)))) == "killed by SIGKILL"
    assert describe_status(wait_child(fork_child(lambda: os._exit(3)))) == "exited with status 3"


def test_the_child_runs_none_of_the_parents_finally_blocks_or_output_buffers(tmp_path, capfd):
    marks = tmp_path / "marks"
    sys.stdout.write("buffered before the fork")  # not flushed: the child must not write it again
    try:
        pid = fork_child(lambda: None)
    finally:
        with open(marks, "a") as f:
            f.write(f"{os.getpid()}\n")
    assert wait_child(pid) == 0
    sys.stdout.flush()
    assert marks.read_text() == f"{os.getpid()}\n"
    assert capfd.readouterr().out.count("buffered before the fork") == 1


def test_a_wait_with_a_time_limit_returns_none_then_end_child_kills_and_reaps():
    pid = fork_child(lambda: time.sleep(30))
    start = time.monotonic()
    assert wait_child(pid, 0.2) is None
    assert wait_any([pid], 0) is None
    assert 0.2 <= time.monotonic() - start < 5
    end_child(pid, grace=0.1)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    end_child(pid)  # no longer a child: nothing to do, no error


def test_end_child_lets_a_child_that_ends_in_its_grace_time_end_by_itself(tmp_path):
    done = tmp_path / "done"
    pid = fork_child(lambda: (time.sleep(0.2), done.write_text("yes")))
    end_child(pid, grace=10)
    assert done.read_text() == "yes"


def test_wait_any_reaps_only_the_given_children():
    other = _exited(7)
    mine = fork_child(lambda: time.sleep(0.1))
    assert wait_any([mine]) == (mine, 0)
    assert other.wait(timeout=10) == 7  # still there for its owner, with its own status
    with pytest.raises(ChildProcessError):
        wait_child(mine)


def test_parallel_evaluations_in_evolve_reap_only_their_own_workers():
    from kerash import evolve as evolution
    from kerash import model as modelmod
    from kerash.training.batches import split

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]])).astype(np.float32)
    cfg = evolution.EvolveConfig(workers=2, epochs_per_eval=1, batch_size=8)
    train_idx, val_idx = split(len(x), cfg.validation_split, cfg.seed)
    text = modelmod.normalised_text(modelmod.parse_model("/he,zero/\n3 1 1\ninput\ndense 4 tanh\ndense 1 identity\n", "t"))
    jobs = []
    for i in range(3):
        genome = evolution.Genome(f"g1-{i}", "g0-0", "test", text)
        genome.params = modelmod.init_params(genome.spec, i, np.float32)
        jobs.append((genome, i))
    other = _exited(7)  # ended before the workers: a wait for any child would reap it first
    done = evolution.evaluate_all(jobs, x, y, train_idx, val_idx, cfg)
    assert [g.epochs for g in done] == [1, 1, 1] and all(np.isfinite(g.val_loss) for g in done)
    assert other.wait(timeout=10) == 7


def test_predict_and_evaluate_give_the_same_bits_with_any_number_of_processes():
    """Issue 21: the forward pass over fixed chunks, taken by 1, 2 or 3 processes: the same outputs, classes and
    loss sum (each chunk's rows as one process computes them)."""
    from kerash import model
    from kerash.network import Objective
    from kerash.processes import limit_blas_threads

    spec = model.parse_model("30 1 1\ninput\ndense 64 tanh\ndense 5 softmax\n")
    net = model.build_network(spec, np.float32)
    net.set_params(model.init_params(spec, 1, np.float32))
    objective = Objective(spec.loss, net)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2500, 30)).astype(np.float32)
    y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 2500)]
    with limit_blas_threads(1):
        alone = net.predict(x, batch_size=256)
        loss, correct, classes = net.evaluate(objective, x, y, batch_size=256)
        for processes in (2, 3):
            np.testing.assert_array_equal(net.predict(x, batch_size=256, processes=processes), alone)
            got = net.evaluate(objective, x, y, batch_size=256, processes=processes)
            assert got[0] == loss and got[1] == correct
            np.testing.assert_array_equal(got[2], classes)
    # and they are the network's outputs: the same forward pass in plain numpy
    p = net.get_params()
    z = np.tanh(x @ p["layer_01"]["W"] + p["layer_01"]["b"]) @ p["layer_02"]["W"] + p["layer_02"]["b"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(alone, e / e.sum(axis=1, keepdims=True), rtol=1e-4, atol=1e-6)
    assert correct == int((alone.argmax(axis=1) == y.argmax(axis=1)).sum())
