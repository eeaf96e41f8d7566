"""Model directories stay whole, through the real tools: model-init --force replaces a model only with a
complete one and nothing else, `kerash snapshot` pins a version for a shell pipeline, weight and state files
are checked before they are read, and model-update waits for a model in use (and says so)."""

import fcntl
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import assert_one_line_error, parse, run, savetxt, tool_env
from helpers import fingerprint, make_model

MLP = "/uniform -0.5 0.5,uniform -0.5 0.5/\n3 1 1\ninput\ndense 4 tanh\ndense 2 softmax\n"


@pytest.fixture
def trained(tmp_path):
    """A float64 model 'm' trained for 3 epochs, its data, and a gradient folder 'g'."""
    folder = make_model(tmp_path, MLP)
    rng = np.random.default_rng(7)
    savetxt(tmp_path / "x.txt", rng.normal(size=(12, 3)))
    savetxt(tmp_path / "y.txt", rng.integers(0, 2, size=(12, 1)))
    run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "3", "--batch-size", "4", "--lr", "0.3"], cwd=tmp_path)
    run(["backprop", "m", "-x", "x.txt", "-y", "y.txt", "-o", "g"], cwd=tmp_path)
    return folder


def epochs(folder):
    return json.loads((folder / "state.json").read_text())["epochs"]


def leftovers(folder):
    return sorted(n for n in os.listdir(folder) if ".tmp-" in n or ".old-" in n)


# ---------------------------------------------------------------- model-init --force


def test_init_force_replaces_a_model_only_with_a_complete_one(trained):
    tmp_path = trained.parent
    before = fingerprint(trained)
    # a description that fails, a disk that fills up while the new directory is written
    (tmp_path / "bad.model").write_text("/uniform 1 0,zero/\n3 1 1\ninput\ndense 4 tanh\n")
    proc = run(["model-init", "bad.model", "-o", "m", "--force"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "bad.model:1:", "uniform")
    (tmp_path / "wide.model").write_text("3 1 1\ninput\ndense 4000 tanh\ndense 2 softmax\n")  # 96 kB of weights
    proc = run("ulimit -f 40; model-init wide.model -o m --force", cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "model-init: error:", "m")
    # while the model is in use (a train holds its lock), nothing replaces it
    with open(trained / ".lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = run(["model-init", "m.model", "-o", "m", "--force"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "m", "in use")
    assert fingerprint(trained) == before and epochs(trained) == 3
    assert leftovers(tmp_path) == []

    # A path holding a newline and a backslash: the description written from it reads back.
    odd = "a\nb\\c.model"
    (tmp_path / odd).write_text(MLP)
    run(["model-init", odd, "-o", "m", "--force", "--seed", "2"], cwd=tmp_path)
    assert epochs(trained) == 0
    first = (trained / "model").read_text().splitlines()[0]
    assert first == "# normalised by kerash from a\\nb\\\\c.model"
    assert parse(run(["predict", "m", "x.txt"], cwd=tmp_path).stdout).shape == (12, 2)
    run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "1"], cwd=tmp_path)
    assert leftovers(tmp_path) == []


def test_init_force_refuses_what_is_not_a_model_directory(tmp_path):
    (tmp_path / "m.model").write_text(MLP)
    (tmp_path / "notes.txt").write_text("precious\n")
    os.symlink("notes.txt", tmp_path / "link")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep").write_text("mine")
    for target, kind in (("notes.txt", "a file"), ("link", "a symbolic link"), ("folder", "not a model directory")):
        proc = run(["model-init", "m.model", "-o", target, "--force"], cwd=tmp_path, check=False)
        assert_one_line_error(proc, 2, target, kind, "refusing")
    assert (tmp_path / "notes.txt").read_text() == "precious\n" and os.path.islink(tmp_path / "link")
    assert (tmp_path / "folder" / "keep").read_text() == "mine"
    # an empty folder is replaced with --force only
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run(["model-init", "m.model", "-o", "empty"], cwd=tmp_path, check=False), 2, "empty", "--force")
    run(["model-init", "m.model", "-o", "empty", "--force"], cwd=tmp_path)
    assert (tmp_path / "empty" / "layer_01" / "W.npy").is_file()
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- kerash snapshot


def test_snapshot_runs_a_command_on_a_pinned_version(trained):
    tmp_path = trained.parent
    expected = run(["predict", "m", "x.txt"], cwd=tmp_path).stdout
    plain = run(["kerash", "snapshot", "m"], cwd=tmp_path).stdout.decode().strip()
    assert plain == os.path.join("m", os.readlink(trained / "current"))
    # {} is replaced where it is a whole argument: here the script's $1
    script = 'echo "$KERASH_SNAPSHOT"; predict "$1" x.txt; matrix-add "$KERASH_SNAPSHOT"/layer_01/b.npy "$1"/layer_01/b.npy'
    proc = subprocess.Popen(["kerash", "snapshot", "m", "--", "bash", "-c", script + "; read -r _; exit 3", "_", "{}"],
                            cwd=tmp_path, env=tool_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        folder = proc.stdout.readline().decode().strip()
        assert folder == plain
        for _ in range(2):  # saves that would remove the version if nothing pinned it
            run(["model-update", "m", "g", "--lr", "0.1"], cwd=tmp_path)
        assert (tmp_path / folder / "layer_01" / "W.npy").is_file()
        out, _ = proc.communicate(b"\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3  # the command's status
    lines = out.decode().splitlines()
    assert "\n".join(lines[:12]).encode() + b"\n" == expected  # the version it pinned, not the newer ones
    assert parse("\n".join(lines[12:])).ravel() == pytest.approx(2 * np.load(tmp_path / folder / "layer_01" / "b.npy"))
    # a version folder reads as a model; writing it is refused; unpinned, the next save removes it
    assert run(["predict", folder, "x.txt"], cwd=tmp_path).stdout == expected
    assert_one_line_error(run(["model-update", folder, "g"], cwd=tmp_path, check=False), 2, folder, "model-update m itself")
    run(["model-update", "m", "g", "--lr", "0.1"], cwd=tmp_path)
    assert not (tmp_path / folder).exists()
    assert len(os.listdir(trained / ".versions")) == 2  # the current one and the one before
    proc = run(["kerash", "snapshot", "m", "--", "no-such-command"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 127, "no-such-command")


@pytest.mark.parametrize("warm", ["cold", "warm"])
def test_snapshot_command_gets_the_default_sigpipe(trained, warm_server, warm):
    """Issue 19: COMMAND inherited Python's ignored SIGPIPE, so `yes | head -1` in it spun for ever."""
    env = tool_env(KERASH_WARM_DIR=warm_server) if warm == "warm" else tool_env(KERASH_WARM="0")
    proc = run(["kerash", "snapshot", "m", "--", "sh", "-c", "while :; do echo x; done | head -1"],
               cwd=trained.parent, env=env, timeout=20)
    assert proc.stdout == b"x\n"


# ---------------------------------------------------------------- model files checked before reading


@pytest.mark.parametrize("damage", ["fifo", "device", "sparse", "text", "nul", "trailing", "state"])
def test_hostile_weight_files_are_refused_before_reading(trained, damage):
    tmp_path = trained.parent
    w = os.path.realpath(trained / "layer_01" / "W.npy")
    secret = "sk-secret-first-line"
    os.unlink(w)
    where = "m/layer_01/W.npy"
    if damage == "state":  # as a non-finite training used to leave it
        np.save(w, np.zeros((3, 4)))
        state = os.path.realpath(trained / "state.json")
        with open(state) as f:
            content = json.load(f)
        os.unlink(state)
        with open(state, "w") as f:
            json.dump(dict(content, epochs=-2), f)
        where, fragment = "m/state.json", "epochs must be a whole number ≥ 0"
    elif damage == "fifo":
        os.mkfifo(w)  # no writer: reading it would wait for ever
        fragment = "not a regular file"
    elif damage == "device":
        os.symlink("/dev/zero", w)
        fragment = "not a regular file"
    elif damage == "sparse":
        with open(tmp_path / "sparse", "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (3, 4)})
            f.truncate(2 << 30)  # 2 GiB, almost all of it a hole
        os.symlink(tmp_path / "sparse", w)
        fragment = "bytes"
    elif damage == "text":
        with open(w, "w") as f:
            f.write(secret + "\n1 2 3 4\n" * 3)
        fragment = "not an npy file"
    elif damage == "nul":
        with open(w, "wb") as f:
            f.write(b"\0" * (10 << 20))
        fragment = "not an npy file"
    else:
        np.save(w, np.zeros((3, 4)))
        with open(w, "ab") as f:
            f.write(b"\0" * 100)
        fragment = "bytes"
    proc = run(["predict", "m", "x.txt"], cwd=tmp_path, check=False, timeout=20)
    assert_one_line_error(proc, 1, where, fragment)
    assert len(proc.stderr) < 300 and secret.encode() not in proc.stderr
    assert proc.stdout == b""


# ---------------------------------------------------------------- model-update waits, and says so


def test_update_says_it_waits_for_train_or_fails_at_once(trained):
    tmp_path = trained.parent
    savetxt(tmp_path / "big.txt", np.random.default_rng(1).normal(size=(3000, 3)))
    savetxt(tmp_path / "big-y.txt", np.random.default_rng(2).integers(0, 2, size=(3000, 1)))
    steps = json.loads((trained / "state.json").read_text())["steps"]
    train = subprocess.Popen(["train", "m", "-x", "big.txt", "-y", "big-y.txt", "--epochs", "100000", "--batch-size", "1"],
                             cwd=tmp_path, env=tool_env(KERASH_WARM=0),  # cold: the lock's holder is train.pid
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    waiting = None
    try:
        assert train.stdout.readline().startswith(b"epoch")  # the header comes with the first epoch: it holds the lock
        proc = run(["model-update", "m", "g", "--lr", "0.1", "--no-wait"], cwd=tmp_path, check=False)
        assert_one_line_error(proc, 2, "m", "another process", f"train, pid {train.pid}")
        with open(tmp_path / "err", "wb") as err:
            waiting = subprocess.Popen(["model-update", "m", "g", "--lr", "0.1"], cwd=tmp_path, env=tool_env(), stderr=err)
            deadline = time.monotonic() + 20
            while b"waiting" not in (tmp_path / "err").read_bytes() and time.monotonic() < deadline:
                time.sleep(0.05)
        message = (tmp_path / "err").read_text()
        assert message.startswith("model-update: waiting for m, in use by another process (train, pid") and "--no-wait" in message
        assert waiting.poll() is None
        train.send_signal(signal.SIGTERM)
        assert train.wait(timeout=30) == 143
        assert waiting.wait(timeout=30) == 0  # then it takes its step
    finally:
        for p in (train, waiting):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    state = json.loads((trained / "state.json").read_text())
    assert state["steps"] > steps + 1
    assert (tmp_path / "err").read_text().count("\n") == 1
