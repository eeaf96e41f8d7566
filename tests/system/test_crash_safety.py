"""Crash safety, as a battery (`pytest -m battery`, about a minute): SIGKILLs of the coordinator and of a
worker at random moments, full model folders, file systems and work folders, torn reads of a model under
concurrent saves, SIGTERM while a worker is stopped, and non-finite training.  Each case repeats its
attack, counts what went wrong and asserts that nothing did.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import ROOT, all_gone, assert_one_line_error, children, run, tool_env
from helpers import fingerprint, processes_column, weights

pytestmark = pytest.mark.battery

# Small and float64: start-up dominates, an epoch of 40 steps takes a few milliseconds, and a
# checkpoint every epoch makes saves frequent, so kills land in the middle of them.
MODEL = "16 1 1\ninput\ndense 24 tanh\ndense 4 softmax\n"
SAMPLES, BATCH = 320, 8
PER_EPOCH = SAMPLES // BATCH
# Workers that compute: the rule makes a batch of this model one logical shard, which leaves them idle (and
# KERASH_ENGINE_ADAPT=0 in setup_model's environment wakes every worker at every step).
SHARDS = ["--shards", "4"]


def setup_model(tmp_path):
    (tmp_path / "m.model").write_text(MODEL)
    run(["model-init", "m.model", "-o", "m", "--seed", "1", "--dtype", "float64"], cwd=tmp_path)
    shutil.copytree(tmp_path / "m", tmp_path / "initial", symlinks=True)
    rng = np.random.default_rng(3)
    np.save(tmp_path / "x.npy", rng.normal(size=(SAMPLES, 16)))
    np.savetxt(tmp_path / "y.txt", rng.integers(0, 4, size=(SAMPLES, 1)), fmt="%d")
    work = tmp_path / "work"
    work.mkdir()
    # cold: the workers are the launcher's own children
    return tmp_path / "m", tool_env(KERASH_WORKDIR=work, KERASH_WARM=0, KERASH_ENGINE_ADAPT=0), work


def train_args(folder, *extra):
    return ["train", str(folder), "-x", "x.npy", "-y", "y.txt", "--batch-size", str(BATCH), "--lr", "0.05",
            "--optimizer", "momentum", "--seed", "5", "--quiet",  # quiet: no warning of 3 workers on 2 cores
            "--lr-schedule", "exponential:0.9", *extra]  # a rate that changes must reach every worker


def problems_of(folder, per_epoch=PER_EPOCH):
    """What is wrong with a model directory after an attack ([] when it is a complete, loadable step)."""
    from kerash.errors import KerashError
    from kerash.model import ModelDir

    try:
        params, state = ModelDir(folder).load()
    except KerashError as e:
        return [f"unloadable: {e}"]
    found = []
    if state["steps"] != state["epochs"] * per_epoch + state.get("batch", 0):
        found.append(f"state of no completed step: {state}")
    if not all(np.all(np.isfinite(a)) for group in params.values() for a in group.values()):
        found.append("non-finite weights")
    return found


def kill_group(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for_workers(proc, count=2, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        found = children(proc.pid)
        if len(found) == count:
            return found
        time.sleep(0.01)
    return None


# ---------------------------------------------------------------- random SIGKILLs


def resume_differences(tmp_path, folder, env, *extra):
    """Going on to the next epoch's end gives, bit for bit, what an uninterrupted run gives: what differs."""
    done = json.loads((folder / "state.json").read_text())["epochs"]
    run(train_args(folder, "--until-epoch", str(done + 1), "--workers", "3", *extra), cwd=tmp_path, env=env)
    run(train_args(tmp_path / "initial", "--epochs", str(done + 1), "--workers", "3", *extra), cwd=tmp_path, env=env)
    got, expected = weights(folder), weights(tmp_path / "initial")
    return [f"resumed {key} differs" for key in got if not np.array_equal(got[key], expected[key])]


def test_sigkill_of_the_coordinator_at_random_moments(tmp_path):
    folder, env, work = setup_model(tmp_path)
    rng = random.Random()
    runs, failures = 8, []
    for attempt in range(runs):
        proc = subprocess.Popen(train_args(folder, "--epochs", "100000", "--workers", "3", "--checkpoint-every", "1"),
                                cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            workers = wait_for_workers(proc) or []
            time.sleep(rng.uniform(0.0, 0.5))
            proc.kill()
            proc.wait()
        finally:
            kill_group(proc)
        if proc.returncode != -signal.SIGKILL:
            failures.append(f"run {attempt}: exited {proc.returncode}: {proc.stderr.read().decode()}")
        if not all_gone(workers):
            failures.append(f"run {attempt}: workers {workers} outlived the coordinator")
        failures += [f"run {attempt}: {p}" for p in problems_of(folder)]
    failures += resume_differences(tmp_path, folder, env)
    if os.listdir(work):
        failures.append(f"left in KERASH_WORKDIR: {os.listdir(work)}")
    if [n for n in os.listdir(folder / ".versions") if n.startswith("tmp-")]:
        failures.append(f"left in .versions: {os.listdir(folder / '.versions')}")
    assert failures == [], f"{len(failures)} failures in {runs} kills:\n" + "\n".join(failures)


def test_sigkill_of_a_worker_at_random_moments(tmp_path):
    folder, env, work = setup_model(tmp_path)
    rng = random.Random()
    runs, failures = 5, []
    for attempt in range(runs):  # killed while it computes a shard, or between two
        proc = subprocess.Popen(train_args(folder, "--epochs", "100000", "--workers", "3", *SHARDS), cwd=tmp_path,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            workers = wait_for_workers(proc)
            if workers is None:
                failures.append(f"run {attempt}: no workers: {proc.stderr.read().decode()}")
                continue
            time.sleep(rng.uniform(0.0, 0.5))
            victim = rng.choice(workers)
            os.kill(victim, signal.SIGKILL)
            err = proc.communicate(timeout=30)[1].decode()
        finally:
            kill_group(proc)
        lines = err.strip().splitlines()
        if proc.returncode != 1 or len(lines) != 1 or "SIGKILL" not in err or f"pid {victim}" not in err:
            failures.append(f"run {attempt}: exited {proc.returncode}: {err}")
        if not all_gone(workers):
            failures.append(f"run {attempt}: workers {workers} outlived the run")
        if os.listdir(work):
            failures.append(f"run {attempt}: left in KERASH_WORKDIR: {os.listdir(work)}")
        failures += [f"run {attempt}: {p}" for p in problems_of(folder)]
    failures += resume_differences(tmp_path, folder, env, *SHARDS)
    if set(processes_column(folder)) != {3.0}:
        failures.append(f"not every process computed: {processes_column(folder)}")
    assert failures == [], f"{len(failures)} failures in {runs} kills:\n" + "\n".join(failures)


# ---------------------------------------------------------------- full disks


def test_a_full_model_folder_changes_nothing(tmp_path):
    """Every write of a save fails at some file (a file-size limit, which needs no privilege)."""
    (tmp_path / "wide.model").write_text("4 1 1\ninput\ndense 8 tanh\ndense 3000 softmax\n")  # W2: 8×3000 float64
    run(["model-init", "wide.model", "-o", "m", "--seed", "1", "--dtype", "float64"], cwd=tmp_path)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(16, 4)))
    np.savetxt(tmp_path / "y.txt", rng.integers(0, 3000, size=(16, 1)), fmt="%d")
    run(["backprop", "m", "-x", "x.npy", "-y", "y.txt", "-o", "g"], cwd=tmp_path)
    run(["train", "m", "-x", "x.npy", "-y", "y.txt", "--epochs", "1"], cwd=tmp_path)
    before = fingerprint(tmp_path / "m")
    failures = []
    # 1 kB: the first file of a save fails; 100 kB: layer_01 is written, then layer_02/W.npy (192 kB) fails
    for limit in (1, 100):
        for command in ("train m -x x.npy -y y.txt --epochs 1", "model-update m g --lr 0.1",
                        "model-init wide.model -o m --force --dtype float64"):
            proc = run(f"ulimit -f {limit}; {command}", cwd=tmp_path, check=False)
            lines = proc.stderr.decode().strip().splitlines()
            if proc.returncode != 1 or len(lines) != 1 or ": error: " not in lines[0] or "Traceback" in lines[0]:
                failures.append(f"{limit} kB, {command}: exited {proc.returncode}: {proc.stderr.decode()}")
            if fingerprint(tmp_path / "m") != before:
                failures.append(f"{limit} kB, {command}: the model changed")
            if [n for n in os.listdir(tmp_path / "m" / ".versions") if n.startswith("tmp-")]:
                failures.append(f"{limit} kB, {command}: left {os.listdir(tmp_path / 'm' / '.versions')}")
    if sorted(os.listdir(tmp_path)) != ["g", "m", "wide.model", "x.npy", "y.txt"]:
        failures.append(f"left beside the model: {sorted(os.listdir(tmp_path))}")
    assert failures == [], "\n".join(failures)
    run(["train", "m", "-x", "x.npy", "-y", "y.txt", "--epochs", "1"], cwd=tmp_path)  # and then it trains on


def in_small_filesystem(script, size, cwd):
    """Run a bash script in a private mount namespace where ./small is a tmpfs of `size` bytes."""
    if not shutil.which("unshare"):
        pytest.skip("no unshare(1): cannot mount a small file system without privileges")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces are not available here: {probe.stderr.decode().strip()}")
    (cwd / "small").mkdir(exist_ok=True)
    full = f"set -u; mount -t tmpfs -o size={size} kerash-test small || exit 99\n{script}"
    proc = run(["unshare", "-rm", "bash", "-c", full], cwd=cwd, check=False)
    if proc.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs in a user namespace: {proc.stderr.decode().strip()}")
    return proc


def test_a_model_folder_on_a_full_file_system_changes_nothing(tmp_path):
    """As above with a real 'No space left on device', when user namespaces allow a private tmpfs."""
    (tmp_path / "wide.model").write_text("4 1 1\ninput\ndense 8 tanh\ndense 3000 softmax\n")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(16, 4)))
    np.savetxt(tmp_path / "y.txt", rng.integers(0, 3000, size=(16, 1)), fmt="%d")
    script = """
        model-init wide.model -o small/m --seed 1 --dtype float64 || exit 98
        cp -a small/m before
        head -c $(( $(stat -f -c '%a*%S' small) - 150000 )) /dev/zero > small/filler 2>/dev/null
        for command in "train small/m -x x.npy -y y.txt --epochs 1" "model-init wide.model -o small/m --force --dtype float64"; do
            $command 2> err; echo "exit $?"; cat err
        done
        diff -r before small/m > /dev/null && echo unchanged
        echo versions: $(ls -A small/m/.versions)
        echo beside: $(ls -A small)
    """
    proc = in_small_filesystem(script, 600_000, tmp_path)
    out = proc.stdout.decode().splitlines()
    assert proc.returncode == 0, proc.stderr.decode()
    assert out.count("exit 1") == 2, out
    errors = [line for line in out if ": error: " in line]
    assert len(errors) == 2 and all("small/m" in e for e in errors), out
    assert out[-3:] == ["unchanged", "versions: 00000001", "beside: filler m"], out


def test_workers_need_no_room_in_the_work_folder(tmp_path):
    """KERASH_WORKDIR on a file system far too small for the weights: the workers share anonymous memory, not
    files there, so training runs and leaves nothing.
    (Issue 19 had a full work folder fail with a message that named the run folder.)"""
    (tmp_path / "wide.model").write_text("64 1 1\ninput\ndense 512 tanh\ndense 10 softmax\n")  # 300 kB of weights
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(64, 64)))
    np.savetxt(tmp_path / "y.txt", rng.integers(0, 10, size=(64, 1)), fmt="%d")
    run(["model-init", "wide.model", "-o", "m", "--seed", "1", "--dtype", "float64"], cwd=tmp_path)
    script = """
        KERASH_WORKDIR=small KERASH_ENGINE_ADAPT=0 train m -x x.npy -y y.txt --epochs 1 --batch-size 64 --workers 2 \
            --shards 4 > /dev/null 2> err
        echo "exit $?"; cat err; ls -A small
    """
    proc = in_small_filesystem(script, 100_000, tmp_path)
    out = proc.stdout.decode().splitlines()
    assert out == ["exit 0"], out
    assert processes_column(tmp_path / "m") == [2.0]  # the worker computed (the rule's one shard would idle it)


# ---------------------------------------------------------------- torn reads


TORN = "/const_flat 0,zero/\n2 1 1\ninput\ndense 3 identity\n"


def test_pipelines_never_mix_two_versions(tmp_path):
    """Readers of W.npy and b.npy under `kerash snapshot` while model-update saves as fast as it can.

    Every step subtracts 1 from each weight and 1000 from each bias (a hand-made
    gradient folder, lr 1), so a read of version k gives x·W + b = -(2k + 1000k)
    per column for x = (1, 1): a W of one version and a b of another show.
    """
    (tmp_path / "t.model").write_text(TORN)
    run(["model-init", "t.model", "-o", "m", "--dtype", "float64"], cwd=tmp_path)
    grads = tmp_path / "g"
    for name, shape, value in (("W", (2, 3), 1.0), ("b", (3,), 1000.0)):
        (grads / "layer_01").mkdir(parents=True, exist_ok=True)
        np.save(grads / "layer_01" / f"{name}.npy", np.full(shape, value))
    (grads / "stats.json").write_text('{"loss_sum": 0, "samples": 1, "correct": 0}\n')
    (tmp_path / "ones.txt").write_text("1 1\n")
    env = tool_env()
    env["PATH"] = f"{ROOT / 'bin'}{os.pathsep}{env['PATH']}"
    writer = subprocess.Popen(["bash", "-c", "while :; do model-update m g --lr 1 || exit; done"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    # The README's pipe, slowed down so that saves happen between its two reads; and bin/forward-pipeline.
    readme = ('kerash snapshot m -- sh -c \'readlink m/current; matrix-mul ones.txt "$1"/layer_01/W.npy > "$2"; sleep 0.3;'
              ' matrix-add "$2" "$1"/layer_01/b.npy; readlink m/current\' _ {} "$(mktemp)"')
    readers = [readme, "forward-pipeline m ones.txt"]
    outcomes, failures, overlapped = [], [], 0
    deadline = time.monotonic() + 30.0  # on a quiet machine, the 6 reads take about 4 s
    try:
        for _ in range(3):
            for reader in readers:
                proc = run(reader, cwd=tmp_path, env=env, check=False)
                lines = proc.stdout.decode().split("\n")
                if reader == readme and len(lines) >= 3:
                    overlapped += lines[0] != lines[-2]
                    lines = lines[1:-2]
                values = [float(v) for line in lines for v in line.split()]
                if proc.returncode != 0 or len(values) != 3 or len(set(values)) != 1:
                    failures.append(f"{reader}: exited {proc.returncode}: {proc.stdout!r} {proc.stderr!r}")
                    continue
                total = -values[0]  # 2 kW + 1000 kb
                k_b, k_w = divmod(total, 1000)
                outcomes.append((k_w / 2, k_b))
            if time.monotonic() > deadline:
                break
    finally:
        kill_group(writer)
    assert writer.returncode == -signal.SIGKILL, writer.stderr.read().decode()
    mixed = [o for o in outcomes if o[0] != o[1]]
    assert failures == [] and mixed == [], f"{len(failures)} failed and {len(mixed)} mixed of {len(outcomes)} reads: {failures} {mixed}"
    assert len(outcomes) >= 4 and len({o[1] for o in outcomes}) >= 2  # it read while versions came and went
    assert overlapped >= 1  # a save happened between the two reads of the README's pipe


# ---------------------------------------------------------------- signals while a worker is stopped


def test_sigterm_with_a_stopped_worker_exits_promptly(tmp_path):
    folder, env, work = setup_model(tmp_path)
    # workers that compute: the stopped one may hold a shard that the coordinator must take over
    proc = subprocess.Popen(train_args(folder, "--epochs", "100000", "--workers", "3", *SHARDS), cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    workers = []
    try:
        workers = wait_for_workers(proc)
        assert workers, proc.stderr.read().decode()
        time.sleep(0.3)
        os.kill(workers[0], signal.SIGSTOP)
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGTERM)
        start = time.monotonic()
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - start
    finally:
        for pid in workers or []:
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        kill_group(proc)
    assert code == 143 and took < 5, (code, took)
    assert all_gone(workers)
    assert problems_of(folder) == []
    assert os.listdir(work) == []


# ---------------------------------------------------------------- non-finite training


@pytest.mark.parametrize("lr", ["inf", "nan", "1e300"])
def test_non_finite_learning_rates_are_refused(tmp_path, lr):
    folder, env, _ = setup_model(tmp_path)
    before = fingerprint(folder)
    # one step an epoch: the step that makes the weights non-finite is the epoch's end
    proc = run(train_args(folder, "--epochs", "3", "--batch-size", str(SAMPLES)) + ["--lr", lr], cwd=tmp_path,
               env=env, check=False)
    if lr == "1e300":  # finite: the steps that keep the weights finite are taken, and saved
        assert proc.returncode in (0, 1), proc.stderr.decode()
        assert problems_of(folder, per_epoch=1) == []
    else:
        assert_one_line_error(proc, 2, "--lr")
        assert fingerprint(folder) == before


def test_a_model_holding_nan_is_refused_naming_the_layer(tmp_path):
    folder, env, _ = setup_model(tmp_path)
    w = np.load(folder / "layer_02" / "W.npy")
    w[1, 2] = np.nan
    np.save(folder / "layer_02" / "W.npy", w)
    before = fingerprint(folder)
    proc = run(train_args(folder, "--epochs", "1"), cwd=tmp_path, env=env, check=False)
    assert_one_line_error(proc, 1, "layer_02")
    assert fingerprint(folder) == before
