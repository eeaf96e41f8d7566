"""Interrupting a real `train` with forked workers: SIGINT and SIGTERM save and exit
130/143, SIGKILL leaves a loadable model at a completed step; no worker or work folder outlives
the run, and training on afterwards gives the weights of an uninterrupted run."""

import json
import math
import os
import random
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import all_gone, children, run, tool_env
from helpers import assert_weights, weights

# Slow enough to be caught in the middle of an epoch: hundreds of small float64 steps.
BIG = "784 1 1\ninput\ndense 256 relu\ndense 256 relu\ndense 10 softmax\n"
BATCH = 8


def setup(tmp_path, n):
    (tmp_path / "big.model").write_text(BIG)
    run(["model-init", "big.model", "-o", "m", "--seed", "1", "--dtype", "float64"], cwd=tmp_path)
    shutil.copytree(tmp_path / "m", tmp_path / "initial", symlinks=True)
    rng = np.random.default_rng(n)
    np.save(tmp_path / "x.npy", rng.random((n, 784)))
    np.savetxt(tmp_path / "y.txt", rng.integers(0, 10, size=(n, 1)), fmt="%d")
    work = tmp_path / "work"
    work.mkdir()
    # cold: the workers are the launcher's own children (test_warm interrupts warm runs)
    return tmp_path / "m", tmp_path / "initial", tool_env(KERASH_WORKDIR=work, KERASH_WARM=0), work


def common(extra=()):
    return ["-x", "x.npy", "-y", "y.txt", "--batch-size", str(BATCH), "--lr", "0.01", "--optimizer", "momentum",
            "--seed", "5", "--workers", "3", *extra]  # this process and two forked workers


def wait_for_workers(proc, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        found = children(proc.pid)
        if len(found) == 2:
            return found
        time.sleep(0.01)
    pytest.fail("train --workers 3 did not fork its two workers")


def run_folders(work):
    return [name for name in os.listdir(work) if name.startswith("kerash-train-")]


def assert_loadable(folder, n):
    """predict loads the model; its state describes a completed step."""
    out = run(["predict", str(folder), "-"], input=" ".join(["0.5"] * 784) + "\n").stdout.decode()
    values = np.array(out.split(), dtype=float)
    assert values.shape == (10,) and np.all(np.isfinite(values))
    assert values.sum() == pytest.approx(1.0)
    state = json.loads((folder / "state.json").read_text())
    per_epoch = math.ceil(n / BATCH)
    assert 0 <= state.get("batch", 0) <= per_epoch
    assert state["steps"] == state["epochs"] * per_epoch + state.get("batch", 0), state
    assert all(np.all(np.isfinite(v)) for v in weights(folder).values())
    return state


def assert_same_weights(a, b, atol=0):
    assert_weights(weights(a), weights(b), atol)


# Issue 19: SIGTERM to the process group made 2 runs of 3 exit 1 ("worker 1 exited with status 1"), and a
# SIGHUP left the run folder behind.
@pytest.mark.parametrize("sig, code, group", [(signal.SIGINT, 130, True), (signal.SIGTERM, 143, False),
                                              (signal.SIGTERM, 143, True), (signal.SIGHUP, 129, True)],
                         ids=["SIGINT to the group", "SIGTERM", "SIGTERM to the group", "SIGHUP to the group"])
def test_a_signal_saves_says_where_and_exits(tmp_path, sig, code, group):
    n = 2000
    folder, initial, env, work = setup(tmp_path, n)
    delay = random.uniform(0.0, 0.3)
    proc = subprocess.Popen(["train", str(folder), "--epochs", "1000", *common()], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout.readline().startswith(b"epoch\t")
        assert proc.stdout.readline().startswith(b"1\t")  # a first epoch is done: the run is well under way
        workers = children(proc.pid)
        assert len(workers) == 2, workers
        time.sleep(delay)
        if group:
            os.killpg(proc.pid, sig)  # as Ctrl-C, a closed terminal or kill -- -PGID do: the whole process group
        else:
            os.kill(proc.pid, sig)  # as kill does: the coordinator only
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = err.decode()
    assert proc.returncode == code, (delay, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(folder) in lines[0] and "saved" in lines[0], err
    assert all_gone(workers), f"workers {workers} outlived train"
    assert run_folders(work) == []
    state = assert_loadable(folder, n)
    # saved where it stopped: every epoch reported is in the model and its trace, and no more
    reported = 1 + len(rest.decode().splitlines())
    assert state["epochs"] == reported, (state, reported)
    assert len((folder / "trace.tsv").read_text().splitlines()) == 1 + reported

    # Training on to the next epoch end gives what an uninterrupted run gives.
    until = str(state["epochs"] + 1)
    run(["train", str(folder), "--until-epoch", until, *common()], cwd=tmp_path, env=env)
    run(["train", str(initial), "--epochs", until, *common()], cwd=tmp_path, env=env)
    assert_same_weights(folder, initial)
    assert run_folders(work) == []


def test_sigkill_at_random_moments_leaves_a_loadable_model(tmp_path):
    n = 600
    folder, initial, env, work = setup(tmp_path, n)
    # A checkpoint every epoch saves often, so that some kills land in the middle of a save.
    extra = ["--checkpoint-every", "1"]
    epochs = 0
    for attempt in range(3):
        delay = random.uniform(0.0, 1.0)
        proc = subprocess.Popen(["train", str(folder), "--epochs", "1000", *common(extra)], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            wait_for_workers(proc)
            time.sleep(delay)
            workers = children(proc.pid)
            proc.kill()
            proc.wait()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
        assert all_gone(workers), f"attempt {attempt}: workers {workers} outlived the coordinator"
        # The killed run's folder may stay behind (nobody was left to remove it); the next run removes it.
        assert len(run_folders(work)) <= 1, f"attempt {attempt}: {run_folders(work)}"
        state = assert_loadable(folder, n)
        assert state["epochs"] >= epochs  # never goes back
        epochs = state["epochs"]
        listed = run(["kerash", "checkpoints", str(folder)]).stdout.decode().splitlines()
        assert listed[0].startswith("name\t")

    until = str(epochs + 1)
    run(["train", str(folder), "--until-epoch", until, *common(extra)], cwd=tmp_path, env=env)
    run(["train", str(initial), "--epochs", until, *common()], cwd=tmp_path, env=env)
    assert_same_weights(folder, initial)
    assert run_folders(work) == []


def test_sigquit_to_the_group_leaves_no_run_folder(tmp_path):
    """Issue 19: SIGQUIT (Ctrl-\\) during train --workers left kerash-train-* behind; the coordinator dies of it,
    its workers end with it and remove the run folder, and the model stays at a completed step."""
    n = 2000
    folder, _, env, work = setup(tmp_path, n)
    proc = subprocess.Popen(["train", str(folder), "--epochs", "1000", *common()], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout.readline().startswith(b"epoch\t")
        workers = wait_for_workers(proc)
        os.killpg(proc.pid, signal.SIGQUIT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGQUIT
    deadline = time.monotonic() + 10
    while (run_folders(work) or not all_gone(workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run_folders(work) == [] and all_gone(workers)
    assert_loadable(folder, n)
