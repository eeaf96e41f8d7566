"""train as a user runs it: the trace on standard output, options checked before anything changes, data and
label forms, XOR, forked workers (equivalence, clean-up, a worker that dies) and the progress bar."""

import json
import os
import pty
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, children, parse, run, savetxt, tool_env
from helpers import assert_weights, copy_model, make_model, processes_column, weights

HEADER = "epoch\tsamples\tloss\taccuracy\tval_loss\tval_accuracy\tseconds"
MLP = "/uniform -0.6 0.6,uniform -0.2 0.2/\n6 1 1\ninput\ndense 8 tanh\ndense 3 softmax\n"
CNN = "/he,zero/\n5 4 2\ninput\nconvolution relu 3 1 1 3 3\nmax_pooling - 2 0 2 2\nflatten -\ndense 3 softmax\n"
LINEAR = "3 1 1\ninput\ndense 2 identity\nloss mse\n"


def assert_same_weights(a, b, atol):
    assert_weights(weights(a), weights(b), atol)


def trace(stdout):
    lines = stdout.decode().splitlines()
    assert lines[0] == HEADER
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(r) == 7 for r in rows), lines
    return rows


def classification_data(tmp_path, n, width=6, classes=3, seed=0, name=""):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width))
    labels = (x[:, :classes].argmax(axis=1) + (rng.random(n) < 0.1)) % classes
    savetxt(tmp_path / f"x{name}.txt", x)
    savetxt(tmp_path / f"y{name}.txt", labels.reshape(-1, 1))
    return x, labels


def mlp_probs(folder, x):
    w = weights(folder)
    h = np.tanh(x @ w["layer_01/W"] + w["layer_01/b"])
    z = h @ w["layer_02/W"] + w["layer_02/b"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- the trace


def test_trace_has_a_header_and_one_line_per_epoch(tmp_path):
    folder = make_model(tmp_path, MLP)
    classification_data(tmp_path, 60)
    x_val, y_val = classification_data(tmp_path, 20, seed=1, name="v")
    proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--val-data", "xv.txt", "--val-labels", "yv.txt",
                "--epochs", "3", "--batch-size", "16", "--lr", "0.5", "--seed", "4"], cwd=tmp_path)
    rows = trace(proc.stdout)
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert all(r[1] == "60" for r in rows)
    assert all(float(r[6]) >= 0 for r in rows)
    # no progress bar (nor anything else) when standard error is not a terminal
    assert proc.stderr == b""
    # the last validation figures are those of the final weights
    p = mlp_probs(folder, x_val)
    assert float(rows[-1][4]) == pytest.approx(np.mean(-np.log(p[np.arange(20), y_val])), rel=1e-5)
    assert float(rows[-1][5]) == pytest.approx(np.mean(p.argmax(axis=1) == y_val), abs=1e-4)
    losses = [float(r[2]) for r in rows]
    assert losses[-1] < losses[0]


def test_loss_and_accuracy_columns_with_a_validation_split(tmp_path):
    # With --lr 0 the weights stay put, so the columns are plain averages over the data:
    # the training and validation parts together make up the whole set, whichever samples are held out.
    folder = make_model(tmp_path, MLP)
    x, labels = classification_data(tmp_path, 40)
    proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--validation-split", "0.25", "--epochs", "2",
                "--batch-size", "7", "--lr", "0", "--seed", "3"], cwd=tmp_path)
    rows = trace(proc.stdout)
    assert len(rows) == 2
    n_val = 10
    p = mlp_probs(folder, x)
    losses = -np.log(p[np.arange(40), labels])
    correct = np.sum(p.argmax(axis=1) == labels)
    for r in rows:
        assert int(r[1]) == 40 - n_val
        total = (40 - n_val) * float(r[2]) + n_val * float(r[4])
        assert total == pytest.approx(losses.sum(), rel=1e-5)
        assert (40 - n_val) * float(r[3]) + n_val * float(r[5]) == pytest.approx(correct, abs=1e-2)
    assert float(rows[0][4]) != pytest.approx(losses.mean(), rel=1e-9)  # a real split, not all data


def test_validation_options_are_checked(tmp_path):
    make_model(tmp_path, MLP)
    classification_data(tmp_path, 10)
    proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--val-data", "x.txt"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "--val-labels")
    proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--val-data", "x.txt", "--val-labels", "y.txt",
                "--validation-split", "0.2"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "--validation-split")


def test_a_negative_seed_or_a_closed_output_change_nothing(regression_data):
    folder, _, _ = regression_data
    model = make_model(folder, LINEAR, name="m")
    before = (model / "layer_01" / "W.npy").read_bytes()
    proc = run(["train", "m", "-x", "x.npy", "-y", "y.npy", "--seed", "-1"], cwd=folder, check=False)
    assert proc.returncode == 2 and "--seed must be in [0" in proc.stderr.decode()
    proc = run("train m -x x.npy -y y.npy --epochs 1 >&-", cwd=folder, check=False)
    assert proc.returncode == 2 and "standard output is closed" in proc.stderr.decode()
    assert (model / "layer_01" / "W.npy").read_bytes() == before
    assert json.loads((model / "state.json").read_text())["epochs"] == 0


# ---------------------------------------------------------------- data and label forms


def test_class_indices_and_one_hot_rows_train_the_same(tmp_path):
    a = make_model(tmp_path, MLP, "a")
    b = copy_model(a, "b")
    _, labels = classification_data(tmp_path, 30)
    savetxt(tmp_path / "onehot.txt", np.eye(3)[labels])
    common = ["--epochs", "2", "--batch-size", "8", "--lr", "0.3", "--seed", "2"]
    out_a = run(["train", "a", "-x", "x.txt", "-y", "y.txt", *common], cwd=tmp_path).stdout
    out_b = run(["train", "b", "-x", "x.txt", "-y", "onehot.txt", *common], cwd=tmp_path).stdout
    assert_same_weights(a, b, atol=0)
    assert [r[2:4] for r in trace(out_a)] == [r[2:4] for r in trace(out_b)]
    assert not np.array_equal(weights(a)["layer_01/W"], weights(make_model(tmp_path, MLP, "c"))["layer_01/W"])


def test_regression_with_real_targets(tmp_path):
    folder = make_model(tmp_path, "3 1 1\ninput\ndense 1 identity\n", seed=3)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(64, 3))
    a = np.array([[1.5], [0.5], [-1.0]])
    c = np.array([0.25])
    savetxt(tmp_path / "x.txt", x)
    savetxt(tmp_path / "y.txt", x @ a + c)
    proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "60", "--batch-size", "8", "--lr", "0.1"], cwd=tmp_path)
    rows = trace(proc.stdout)
    assert rows[0][3] == ""  # no accuracy for real targets: an empty field
    assert float(rows[-1][2]) < 1e-6 < float(rows[0][2])
    w = weights(folder)
    np.testing.assert_allclose(w["layer_01/W"], a, atol=1e-3)
    np.testing.assert_allclose(w["layer_01/b"], c, atol=1e-3)


def test_multi_output_regression_has_no_accuracy(tmp_path):
    make_model(tmp_path, "3 1 1\ninput\ndense 2 identity\n", seed=3)
    rng = np.random.default_rng(8)
    x = rng.normal(size=(40, 3))
    savetxt(tmp_path / "x.txt", x)
    savetxt(tmp_path / "y.txt", x[:, :2] * 3 - 1)
    proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "2", "--validation-split", "0.25"], cwd=tmp_path)
    for row in trace(proc.stdout):
        assert row[3] == "" and row[5] == ""
    out = run(["evaluate", "m", "-x", "x.txt", "-y", "y.txt", "--confusion"], cwd=tmp_path).stdout.decode()
    assert "accuracy" not in out and "no confusion matrix" in out
    # regression metrics instead, against numpy (scikit-learn's definitions; R² averaged over the outputs)
    values = dict(line.split("\t") for line in out.splitlines() if not line.startswith("#"))
    w = weights(tmp_path / "m")
    y = x[:, :2] * 3 - 1
    error = x @ w["layer_01/W"] + w["layer_01/b"] - y
    r2 = np.mean(1 - (error**2).sum(axis=0) / ((y - y.mean(axis=0)) ** 2).sum(axis=0))
    expected = {"mse": np.mean(error**2), "rmse": np.sqrt(np.mean(error**2)), "mae": np.mean(np.abs(error)), "r2": r2}
    for name, value in expected.items():
        assert float(values[name]) == pytest.approx(value, rel=1e-5), name
    try:
        from sklearn.metrics import r2_score
    except ImportError:
        return
    assert float(values["r2"]) == pytest.approx(r2_score(y, x @ w["layer_01/W"] + w["layer_01/b"]), rel=1e-5)


def test_cnn_trains_the_same_from_rows_and_from_nchw_npy(tmp_path):
    a = make_model(tmp_path, CNN, "a", seed=2)
    b = copy_model(a, "b")
    rng = np.random.default_rng(6)
    x = rng.normal(size=(24, 2, 4, 5))
    labels = rng.integers(0, 3, 24)
    np.save(tmp_path / "x.npy", x)
    savetxt(tmp_path / "rows.txt", x.reshape(24, -1))
    savetxt(tmp_path / "y.txt", labels.reshape(-1, 1))
    common = ["-y", "y.txt", "--epochs", "2", "--batch-size", "5", "--lr", "0.2", "--seed", "1"]
    run(["train", "a", "-x", "x.npy", *common], cwd=tmp_path)
    run(["train", "b", "-x", "rows.txt", *common], cwd=tmp_path)
    assert_same_weights(a, b, atol=1e-14)
    fresh = weights(make_model(tmp_path, CNN, "fresh", seed=2))
    assert not np.array_equal(fresh["layer_01/W"], weights(a)["layer_01/W"])


def test_kerash_xor_model_learns_xor(tmp_path):
    run(["model-init", str(ROOT / "models" / "xor.model"), "-o", "xor", "--seed", "1", "--dtype", "float64"], cwd=tmp_path)
    (tmp_path / "x.txt").write_text("0 0\n0 1\n1 0\n1 1\n")
    (tmp_path / "y.txt").write_text("0\n1\n1\n0\n")
    proc = run(["train", "xor", "-x", "x.txt", "-y", "y.txt", "--epochs", "2000", "--batch-size", "4", "--lr", "3"], cwd=tmp_path)
    rows = trace(proc.stdout)
    assert len(rows) == 2000 and rows[-1][3] == "1.0000"
    out = parse(run(["predict", "xor", "x.txt"], cwd=tmp_path).stdout)[:, 0]
    np.testing.assert_array_equal(np.round(out), [0, 1, 1, 0])
    assert np.all(np.abs(out - [0, 1, 1, 0]) < 0.1)
    classes = parse(run(["predict", "xor", "x.txt", "--classes"], cwd=tmp_path).stdout)[:, 0]
    np.testing.assert_array_equal(classes, [0, 1, 1, 0])


# ---------------------------------------------------------------- workers


@pytest.mark.parametrize("text", [MLP, CNN], ids=["mlp", "cnn"])
def test_one_and_three_workers_agree(tmp_path, text):
    work = tmp_path / "work"
    work.mkdir()
    env = tool_env(KERASH_WORKDIR=work, KERASH_ENGINE_ADAPT=0)  # every worker computes at every step
    one = make_model(tmp_path, text, "one", seed=3)
    three = copy_model(one, "three")
    rng = np.random.default_rng(8)
    width = 6 if text is MLP else 40
    savetxt(tmp_path / "x.txt", rng.normal(size=(50, width)))
    savetxt(tmp_path / "y.txt", rng.integers(0, 3, size=(50, 1)))
    # batches of 14 and a last one of 8: shards of 5+5+4 and 3+3+2 samples (--shards 3: the rule gives these
    # small models one shard, which would leave the workers nothing to compute)
    common = ["-x", "x.txt", "-y", "y.txt", "--epochs", "2", "--batch-size", "14", "--lr", "0.3", "--seed", "7",
              "--shards", "3"]
    out1 = run(["train", "one", "--workers", "1", *common], cwd=tmp_path, env=env).stdout
    out3 = run(["train", "three", "--workers", "3", *common], cwd=tmp_path, env=env).stdout
    assert processes_column(three) == [3.0, 3.0]
    assert_same_weights(one, three, atol=0)  # the same shards, added in the same order: the same bits
    for r1, r3 in zip(trace(out1), trace(out3)):
        assert float(r1[2]) == pytest.approx(float(r3[2]), rel=1e-5)
        assert r1[3] == r3[3]
    assert os.listdir(work) == []


def _gone(pid, seconds=5.0):
    """The process has exited and been reaped (a zombie still counts as there)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.02)
    return False


def test_a_worker_that_dies_stops_training(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    # cold: the workers are the launcher's own children; every worker computes at every step
    env = tool_env(KERASH_WORKDIR=work, KERASH_WARM=0, KERASH_ENGINE_ADAPT=0)
    folder = make_model(tmp_path, (ROOT / "models" / "digits-mlp.model").read_text(), seed=4)
    initial = copy_model(folder, "initial")
    rng = np.random.default_rng(9)
    x = rng.random((1500, 64))
    np.save(tmp_path / "x.npy", x)
    savetxt(tmp_path / "y.txt", rng.integers(0, 10, size=(1500, 1)))
    # four shards in every run (the rule gives a batch of 32 one: the workers would compute nothing)
    common = ["-x", "x.npy", "-y", "y.txt", "--batch-size", "32", "--lr", "0.1", "--seed", "5", "--shards", "4"]
    # --workers 3: the coordinator computes a shard, two forked workers the others
    proc = subprocess.Popen(["train", "m", "--workers", "3", "--epochs", "2000", *common], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().decode().rstrip("\n") == HEADER
        assert proc.stdout.readline().startswith(b"1\t")  # a first epoch is done
        workers = children(proc.pid)
        assert len(workers) == 2, workers
        os.kill(workers[1], signal.SIGKILL)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: error: ") and "worker" in lines[0], err
    assert len(rest.decode().splitlines()) < 1999
    for pid in workers:
        assert _gone(pid), f"worker {pid} is still there"
    assert os.listdir(work) == []
    # the model is whole: it loads, keeps its shapes and holds the weights of the last completed step
    out = parse(run(["predict", "m", "-"], input="0.5 " * 64 + "\n", cwd=tmp_path).stdout)
    assert out.shape == (1, 10) and np.all(np.isfinite(out))
    w, w0 = weights(folder), weights(initial)
    assert {k: v.shape for k, v in w.items()} == {k: v.shape for k, v in w0.items()}
    state = json.loads((folder / "state.json").read_text())
    assert state["epochs"] >= 1 and state["steps"] >= 47
    assert processes_column(folder)[0] == 3.0  # the first epoch: the three processes computed every step
    # Finishing the interrupted epoch gives what an uninterrupted run gives: no completed step was lost.
    target = str(int(state["epochs"]) + 1)
    run(["train", "m", "--workers", "2", "--until-epoch", target, *common], cwd=tmp_path, env=env)
    run(["train", "initial", "--workers", "1", "--epochs", target, *common], cwd=tmp_path, env=env)
    assert processes_column(folder)[-1] == 2.0
    assert_same_weights(folder, initial, atol=0)


# ---------------------------------------------------------------- the progress bar


def test_progress_bar_only_on_a_terminal(tmp_path):
    make_model(tmp_path, MLP)
    classification_data(tmp_path, 40)
    args = ["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "2", "--batch-size", "4", "--lr", "0.1"]
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(args, cwd=tmp_path, env=tool_env(), stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            shown += chunk
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert b"\r" in shown and b"epoch" in shown  # a live bar on the terminal
    rows = trace(out)
    assert len(rows) == 2 and b"\r" not in out  # standard output stays clean
    piped = run(args + ["--epochs", "1"], cwd=tmp_path)
    assert piped.stderr == b""


def test_trace_unit_records_a_units_activation_each_epoch(tmp_path):
    """Issue 25: train --trace-unit NODE:INDEX writes MODEL/units.tsv, DyNet's unit trace: the last epoch's line
    is the statistics of that unit over the training data with the weights the model saved."""
    make_model(tmp_path, "3 1 1\ninput\ndense 4 tanh\ndense 2 softmax\n", seed=3, dtype="float64")
    rng = np.random.default_rng(5)
    x = rng.normal(size=(24, 3))
    savetxt(tmp_path / "x.txt", x)
    savetxt(tmp_path / "y.txt", rng.integers(0, 2, size=(24, 1)))
    run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "3", "--batch-size", "8", "--seed", "1",
         "--trace-unit", "layer_01:2, layer_02:1"], cwd=tmp_path)
    lines = [line.split("\t") for line in (tmp_path / "m" / "units.tsv").read_text().splitlines()]
    assert lines[0] == ["epoch", "node", "index", "mean", "std", "min", "max"]
    assert [row[:3] for row in lines[1:]] == [[str(e), n, i] for e in (1, 2, 3) for n, i in (("layer_01", "2"), ("layer_02", "1"))]
    w = weights(tmp_path / "m")
    hidden = np.tanh(x @ w["layer_01/W"] + w["layer_01/b"])
    z = hidden @ w["layer_02/W"] + w["layer_02/b"]
    out = np.exp(z - z.max(axis=1, keepdims=True))
    out /= out.sum(axis=1, keepdims=True)
    for row, unit in zip(lines[-2:], (hidden[:, 2], out[:, 1])):
        np.testing.assert_allclose([float(v) for v in row[3:]], [unit.mean(), unit.std(), unit.min(), unit.max()],
                                   rtol=1e-5)
    for bad, words in (("layer_01", "NODE:INDEX"), ("layer_01:4", "indices 0..3"), ("nowhere:0", "no node 'nowhere'")):
        proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "1", "--trace-unit", bad], cwd=tmp_path,
                   check=False)
        assert_one_line_error(proc, 2, words)
