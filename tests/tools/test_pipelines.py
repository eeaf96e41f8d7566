"""Training and inference built from the tools: bin/pipeline-train against train, the batch
order of `kerash batches` against a numpy SGD, bin/forward-pipeline against predict and
numpy, and tensor-rows."""

import json
import os
import subprocess

import numpy as np
import pytest

from conftest import BIN, ROOT, assert_one_line_error, parse, run, savetxt, tool_env, warm_and_cold
from helpers import copy_model, make_model, softmax, weights

MLP = "/uniform -0.6 0.6,uniform -0.2 0.2/\n5 1 1\ninput\ndense 6 tanh\ndense 3 softmax\n"
LINEAR = "/uniform -0.5 0.5,uniform -0.5 0.5/\n4 1 1\ninput\ndense 3 softmax\n"
DEEP = "/he,uniform -0.3 0.3/\n5 1 1\ninput\ndense 7 leaky_relu 0.2\ndense 6 elu 0.5\ndense 3 softmax\n"
CNN = "/he,zero/\n5 4 2\ninput\nconvolution relu 3 1 1 3 3\nmax_pooling - 2 0 2 2\nflatten -\ndense 3 softmax\n"


# ---------------------------------------------------------------- helpers


def env(**extra):
    """The tools and the bin/ scripts on PATH."""
    e = tool_env(**extra)
    e["PATH"] = f"{BIN}{os.pathsep}{ROOT / 'bin'}{os.pathsep}{e['PATH']}"
    return e


def classification(folder, n, width, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width))
    labels = rng.integers(0, classes, n)
    savetxt(folder / "x.txt", x)
    savetxt(folder / "y.txt", labels.reshape(-1, 1))
    return x, labels


def batch_lines(*options, input=None, cwd=None):
    """`kerash batches` output: per line, a list of shards, each an array of indices."""
    out = run(["kerash", "batches", *map(str, options)], input=input, cwd=cwd).stdout.decode()
    assert out.endswith("\n")
    return [[np.array(s.split(), dtype=int) for s in line.split("\t")] for line in out.splitlines()]


# ---------------------------------------------------------------- bin/pipeline-train


@warm_and_cold
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_pipeline_train_equals_train(tmp_path, workers):
    work = tmp_path / "work"
    work.mkdir()
    # The work folder of a pipeline that was killed goes; that of a running one stays.
    dead = subprocess.Popen(["true"])
    dead.wait()
    (work / f"kerash-pipeline-{dead.pid}-x1").mkdir()
    (work / f"kerash-pipeline-{os.getpid()}-x2").mkdir()
    # 18 samples in batches of 8: the last batch has 2, so with 3 workers one shard is empty
    classification(tmp_path, 18, 5, seed=workers)
    # float32 weights trained with --dtype float64 (as train does: the model becomes float64)
    piped = make_model(tmp_path, MLP, "piped", seed=4, dtype="float32")
    trained = copy_model(piped, "trained")
    fresh = weights(piped)
    proc = run(["pipeline-train", "piped", "--data", "x.txt", "--labels", "y.txt", "--epochs", "2", "--batch-size", "8",
                "--lr", "0.4", "--workers", str(workers), "--seed", "9", "--dtype", "float64"],
               cwd=tmp_path, env=env(KERASH_WORKDIR=work))
    reference = run(["train", "trained", "-x", "x.txt", "-y", "y.txt", "--seed", "9", "--batch-size", "8", "--lr",
                     "0.4", "--epochs", "2", "--dtype", "float64"], cwd=tmp_path)
    # train's epoch lines: the same header, samples, loss (to rounding) and accuracy; only the seconds differ
    piped_lines = [line.split("\t") for line in proc.stdout.decode().splitlines()]
    train_lines = [line.split("\t") for line in reference.stdout.decode().splitlines()]
    assert piped_lines[0] == train_lines[0] and len(piped_lines) == len(train_lines) == 3, proc.stdout
    for piped_line, train_line in zip(piped_lines[1:], train_lines[1:]):
        assert piped_line[:2] == train_line[:2] and piped_line[3:6] == train_line[3:6], (piped_line, train_line)
        assert float(piped_line[2]) == pytest.approx(float(train_line[2]), rel=1e-5)
    got, expected = weights(piped), weights(trained)
    assert got.keys() == expected.keys() == fresh.keys()
    for key in got:
        assert got[key].dtype == expected[key].dtype == np.float64
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=1e-9, err_msg=str(key))
    assert max(np.abs(got[k] - fresh[k]).max() for k in got) > 1e-2  # it did train
    states = [json.loads((folder / "state.json").read_text()) for folder in (piped, trained)]
    for key in ("epochs", "steps", "seed", "dtype", "optimizer", "batch", "partial"):
        assert states[0][key] == states[1][key], key
    assert states[0]["epochs"] == 2
    assert os.listdir(work) == [f"kerash-pipeline-{os.getpid()}-x2"]


@warm_and_cold
def test_pipeline_train_stops_when_a_worker_fails(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    _, labels = classification(tmp_path, 12, 5)
    savetxt(tmp_path / "wide.txt", np.eye(4)[labels % 4])  # 4 columns for a 3-output model
    folder = make_model(tmp_path, MLP)
    before = weights(folder)
    proc = run(["pipeline-train", "m", "--data", "x.txt", "--labels", "wide.txt", "--epochs", "1", "--batch-size", "6",
                "--lr", "0.1", "--workers", "2"], cwd=tmp_path, env=env(KERASH_WORKDIR=work), check=False)
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert "pipeline-train: error:" in err and "backprop: error:" in err
    assert "Traceback" not in err
    assert os.listdir(work) == []
    after = weights(folder)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # data that cannot be read stops it too, before any step
    proc = run(["pipeline-train", "m", "--data", "missing.txt", "--labels", "y.txt", "--epochs", "1", "--batch-size", "6",
                "--lr", "0.1"], cwd=tmp_path, env=env(KERASH_WORKDIR=work), check=False)
    assert proc.returncode != 0 and "missing.txt" in proc.stderr.decode()
    assert os.listdir(work) == []


def test_the_work_folder_is_created_when_missing_or_refused_alike_by_train_and_pipeline_train(tmp_path):
    """Issue 19: pipeline-train failed in mktemp when KERASH_WORKDIR named a folder not made yet."""
    classification(tmp_path, 12, 5)
    make_model(tmp_path, MLP, "piped")
    make_model(tmp_path, MLP, "trained")
    args = ["--data", "x.txt", "--labels", "y.txt", "--epochs", "1", "--batch-size", "6", "--lr", "0.1", "--workers", "2"]
    for tool, model, work in (("pipeline-train", "piped", "not/yet"), ("train", "trained", "nor/this")):
        run([tool, model, *args], cwd=tmp_path, env=env(KERASH_WORKDIR=tmp_path / work))
        assert (tmp_path / work).is_dir() and os.listdir(tmp_path / work) == []
    (tmp_path / "file").write_text("")
    messages = []
    for tool, model in (("pipeline-train", "piped"), ("train", "trained")):
        proc = run([tool, model, *args], cwd=tmp_path, env=env(KERASH_WORKDIR=tmp_path / "file" / "sub"), check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 2 and err.count("\n") == 1, err
        messages.append(err.split(": error: ", 1)[1])
    assert messages[0] == messages[1] == f"KERASH_WORKDIR={tmp_path / 'file' / 'sub'} cannot be created: Not a directory\n"


def test_pipeline_train_of_values_prints_no_accuracy(tmp_path):
    """Targets that are values: backprop's stats say correct null, and the epoch line leaves accuracy empty,
    as train's does; the loss is train's."""
    rng = np.random.default_rng(3)
    savetxt(tmp_path / "x.txt", rng.normal(size=(10, 3)))
    savetxt(tmp_path / "y.txt", rng.normal(size=(10, 1)))
    piped = make_model(tmp_path, "3 1 1\ninput\ndense 4 tanh\ndense 1 identity\n", "piped", dtype="float64")
    copy_model(piped, "trained")
    args = ["--epochs", "1", "--batch-size", "4", "--lr", "0.1", "--seed", "2"]
    out = run(["pipeline-train", "piped", "--data", "x.txt", "--labels", "y.txt", *args], cwd=tmp_path, env=env())
    ref = run(["train", "trained", "-x", "x.txt", "-y", "y.txt", *args], cwd=tmp_path)
    piped_line, train_line = (p.stdout.decode().splitlines()[1].split("\t") for p in (out, ref))
    assert piped_line[3] == train_line[3] == ""
    assert float(piped_line[2]) == pytest.approx(float(train_line[2]), rel=1e-6)
    run(["backprop", "trained", "-x", "x.txt", "-y", "y.txt", "-o", "g"], cwd=tmp_path)
    assert json.loads((tmp_path / "g" / "stats.json").read_text())["correct"] is None


def test_pipeline_train_help_and_usage(tmp_path):
    proc = run(["pipeline-train", "--help"], env=env())
    assert proc.stderr == b""
    assert "pipeline-train MODEL --data X --labels Y" in proc.stdout.decode()
    version = run(["train", "--version"], env=env()).stdout.decode().split()[-1]
    for tool in ("pipeline-train", "forward-pipeline"):
        proc = run([tool, "--version"], env=env())
        assert proc.stdout.decode() == f"{tool} (kerash) {version}\n" and proc.stderr == b""
    proc = run(["pipeline-train", "m", "--data", "x.txt"], cwd=tmp_path, env=env(), check=False)
    assert proc.returncode == 2
    assert "pipeline-train: error: missing" in proc.stderr.decode()
    proc = run(["pipeline-train", "m", "--bogus", "1"], cwd=tmp_path, env=env(), check=False)
    assert proc.returncode == 2 and "--bogus" in proc.stderr.decode()


# ---------------------------------------------------------------- kerash batches


@pytest.mark.parametrize("split", [0.0, 0.2])
def test_batches_are_those_train_uses(tmp_path, split):
    """Train a float64 softmax regression with sgd; a numpy loop over the printed batches gives the same weights."""
    n, batch, lr, seed = 30, 7, 0.5, 3
    x, labels = classification(tmp_path, n, 4, seed=11)
    folder = make_model(tmp_path, LINEAR, seed=2)
    w = weights(folder)
    W, b = w["layer_01/W"].copy(), w["layer_01/b"].copy()
    proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--optimizer", "sgd", "--lr", str(lr), "--batch-size", str(batch),
                "--seed", str(seed), "--epochs", "2", "--validation-split", str(split)], cwd=tmp_path)
    onehot = np.eye(3)[labels]
    n_val = round(n * split)
    used = previous = None
    for epoch in (1, 2):
        lines = batch_lines("--samples", n, "--batch-size", batch, "--seed", seed, "--epoch", epoch,
                            "--validation-split", split)
        order = np.concatenate([line[0] for line in lines])
        # every training sample once per epoch, in batches of 7 but the last
        assert len(order) == len(set(order)) == n - n_val
        assert [len(line[0]) for line in lines[:-1]] == [batch] * (len(lines) - 1) and 1 <= len(lines[-1][0]) <= batch
        if previous is not None:
            assert set(order) == used
            assert not np.array_equal(order, previous)  # each epoch has its own shuffle
        used, previous = set(order), order
        for line in lines:
            idx = line[0]
            g = (softmax(x[idx] @ W + b) - onehot[idx]) / len(idx)
            W = W - lr * x[idx].T @ g
            b = b - lr * g.sum(axis=0).reshape(b.shape)
    got = weights(folder)
    np.testing.assert_allclose(got["layer_01/W"], W, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["layer_01/b"], b, rtol=0, atol=1e-12)
    last = proc.stdout.decode().splitlines()[-1].split("\t")
    if split:
        # the samples left out are exactly those train validates on
        val = np.array(sorted(set(range(n)) - used))
        assert len(val) == n_val
        p = softmax(x[val] @ W + b)
        assert float(last[4]) == pytest.approx(np.mean(-np.log(p[np.arange(n_val), labels[val]])), rel=1e-5)
    else:
        assert last[4] == ""  # no validation: an empty field


@pytest.mark.parametrize("n,batch,shards", [(23, 8, 3), (10, 4, 3), (17, 17, 4), (9, 2, 5)])
def test_shards_split_each_batch_contiguously(n, batch, shards):
    whole = batch_lines("--samples", n, "--batch-size", batch, "--seed", 6, "--epoch", 2)
    split = batch_lines("--samples", n, "--batch-size", batch, "--seed", 6, "--epoch", 2, "--shards", shards)
    assert len(split) == len(whole)
    for one, parts in zip(whole, split):
        assert len(parts) == shards
        np.testing.assert_array_equal(np.concatenate(parts), one[0])
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1, sizes


def test_data_option_counts_the_samples_of_a_file(tmp_path):
    rng = np.random.default_rng(5)
    n = 13
    expected = batch_lines("--samples", n, "--batch-size", 4, "--seed", 1)
    savetxt(tmp_path / "rows.txt", rng.normal(size=(n, 3)))
    np.save(tmp_path / "images.npy", rng.normal(size=(n, 2, 3, 3)))
    (tmp_path / "shaped.txt").write_text(f"# shape: {n} 2 3\n" + "1 2 3\n" * (2 * n))
    for data in ("rows.txt", "images.npy", "shaped.txt"):
        assert_same_lines(batch_lines("--data", data, "--batch-size", 4, "--seed", 1, cwd=tmp_path), expected)
    piped = batch_lines("--data", "-", "--batch-size", 4, "--seed", 1, input=(tmp_path / "rows.txt").read_bytes())
    assert_same_lines(piped, expected)
    other = batch_lines("--samples", n + 1, "--batch-size", 4, "--seed", 1)
    assert sum(len(line[0]) for line in other) == n + 1
    proc = run(["kerash", "batches", "--batch-size", "4"], check=False)
    assert_one_line_error(proc, 2, "--samples", "--data")


def assert_same_lines(a, b):
    assert len(a) == len(b)
    for la, lb in zip(a, b):
        assert len(la) == len(lb)
        for sa, sb in zip(la, lb):
            np.testing.assert_array_equal(sa, sb)


# ---------------------------------------------------------------- bin/forward-pipeline


def deep_forward(x, w):
    """DEEP's forward pass in numpy: leaky_relu 0.2, elu 0.5, softmax."""
    z = x @ w["layer_01/W"] + w["layer_01/b"]
    a = np.where(z > 0, z, 0.2 * z)
    z = a @ w["layer_02/W"] + w["layer_02/b"]
    a = np.where(z > 0, z, 0.5 * np.expm1(np.minimum(z, 0)))
    return softmax(a @ w["layer_03/W"] + w["layer_03/b"])


@warm_and_cold
def test_forward_pipeline_equals_predict(tmp_path):
    folder = make_model(tmp_path, DEEP, seed=6)
    classification(tmp_path, 40, 5, seed=2)
    run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "3", "--batch-size", "8", "--lr", "0.2"], cwd=tmp_path)
    x = np.random.default_rng(9).normal(scale=2.0, size=(25, 5))
    savetxt(tmp_path / "in.txt", x)
    np.save(tmp_path / "in.npy", x)
    predicted = parse(run(["predict", "m", "in.txt"], cwd=tmp_path).stdout)
    expected = deep_forward(x, weights(folder))
    np.testing.assert_allclose(predicted, expected, rtol=0, atol=1e-9)
    z = x @ weights(folder)["layer_01/W"]
    assert (z < 0).any() and (z > 0).any()  # both sides of leaky_relu are exercised
    for args, stdin in ((["m", "in.txt"], None), (["m"], "in.npy"), (["m", "-"], "in.txt")):
        proc = run(["forward-pipeline", *args], input=(tmp_path / stdin).read_bytes() if stdin else None,
                   cwd=tmp_path, env=env())
        got = parse(proc.stdout)
        assert got.shape == (25, 3), args
        np.testing.assert_allclose(got, predicted, rtol=0, atol=1e-6, err_msg=str(args))


def test_a_version_or_checkpoint_folder_is_a_model_for_forward_pipeline_and_evaluate(tmp_path):
    """Issue 19: forward-pipeline refused a snapshot folder and evaluate a checkpoint folder."""
    make_model(tmp_path, DEEP, seed=6)
    classification(tmp_path, 40, 5, seed=2)
    run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "2", "--batch-size", "8", "--lr", "0.2",
         "--checkpoint-every", "1"], cwd=tmp_path)
    version = run(["kerash", "snapshot", "m"], cwd=tmp_path).stdout.decode().strip()
    expected = parse(run(["predict", "m", "x.txt"], cwd=tmp_path).stdout)
    for folder in (version, "m/checkpoints/epoch-0002"):
        got = parse(run(["forward-pipeline", folder, "x.txt"], cwd=tmp_path, env=env()).stdout)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=folder)
        assert run(["evaluate", folder, "-x", "x.txt", "-y", "y.txt"], cwd=tmp_path).stdout == \
            run(["evaluate", "m", "-x", "x.txt", "-y", "y.txt"], cwd=tmp_path).stdout
    older = parse(run(["predict", "m/checkpoints/epoch-0001", "x.txt"], cwd=tmp_path).stdout)
    assert not np.allclose(older, expected)  # the checkpoint's own weights, not the model's current ones


@warm_and_cold
def test_forward_pipeline_show_prints_a_pipe_of_matrix_tools(tmp_path):
    make_model(tmp_path, DEEP, seed=6)
    savetxt(tmp_path / "in.txt", np.random.default_rng(3).normal(size=(6, 5)))
    proc = run(["forward-pipeline", "--show", "m"], cwd=tmp_path, env=env())
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 1
    stages = [s.split() for s in lines[0].split(" | ")]
    assert [s[0] for s in stages] == ["matrix-mul", "matrix-add", "matrix-apply"] * 3
    for k in range(3):
        assert stages[3 * k][1:] == ["-", f"m/layer_{k + 1:02d}/W.npy"]
        assert stages[3 * k + 1][1:] == ["-", f"m/layer_{k + 1:02d}/b.npy"]
    assert stages[2][1:] == ["leaky_relu", "-p", "0.2"]
    assert stages[5][1:] == ["elu", "-p", "0.5"]
    assert stages[8][1:] == ["softmax"]
    # the printed pipe runs as it is, and gives predict's output
    shown = parse(run(f"< in.txt {lines[0]}", cwd=tmp_path, env=env()).stdout)
    np.testing.assert_allclose(shown, parse(run(["predict", "m", "in.txt"], cwd=tmp_path).stdout), rtol=0, atol=1e-6)


@warm_and_cold
def test_forward_pipeline_refuses_what_no_tool_computes(tmp_path):
    """maxpool draws square windows: a 3×2 pooling has no stage (predict computes it)."""
    make_model(tmp_path, CNN.replace("max_pooling - 2 0 2 2", "max_pooling - 1 0 3 2"))
    savetxt(tmp_path / "in.txt", np.zeros((2, 40)))
    for args in (["m", "in.txt"], ["--show", "m"]):
        proc = run(["forward-pipeline", *args], cwd=tmp_path, env=env(), check=False)
        assert_one_line_error(proc, 1, "forward-pipeline: error:", "max_pooling 3×2", "predict")
        assert proc.stdout == b""
    proc = run(["forward-pipeline", "nowhere", "in.txt"], cwd=tmp_path, env=env(), check=False)
    assert_one_line_error(proc, 1, "nowhere")
    make_model(tmp_path, DEEP, "dense")
    proc = run(["forward-pipeline", "dense", "missing.txt"], cwd=tmp_path, env=env(), check=False)
    assert_one_line_error(proc, 1, "forward-pipeline: error:", "missing.txt")
    proc = run(["forward-pipeline", "--help"], env=env())
    assert "forward-pipeline" in proc.stdout.decode() and proc.stderr == b""


# ---------------------------------------------------------------- tensor-rows


def test_tensor_rows_picks_rows_in_the_given_order(tmp_path, rng):
    a = rng.normal(size=(9, 4))
    savetxt(tmp_path / "a.txt", a)
    np.save(tmp_path / "a.npy", a)
    cases = [
        ([3, 0, 8, 0], "a.txt", None),
        ([8], "a.npy", None),
        (list(rng.permutation(9)), "-", "a.txt"),
        (list(rng.integers(0, 9, 12)), None, "a.npy"),  # no operand: standard input
    ]
    for rows, operand, stdin in cases:
        args = [" ".join(map(str, rows))] + ([operand] if operand else [])
        proc = run(["tensor-rows", *args], input=(tmp_path / stdin).read_bytes() if stdin else None, cwd=tmp_path)
        np.testing.assert_array_equal(parse(proc.stdout), a[rows], err_msg=str(args))
    # commas work too, and npy output is exact
    run(["tensor-rows", "2,5,1", "a.txt", "-o", "out.npy"], cwd=tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), a[[2, 5, 1]])


def test_tensor_rows_picks_samples_of_a_batch(tmp_path, rng):
    x = rng.normal(size=(5, 2, 3, 4))
    np.save(tmp_path / "x.npy", x)
    run(["tensor-rows", "4 1", "x.npy", "--format", "npy", "-o", "out.npy"], cwd=tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), x[[4, 1]])
    text = run(["tensor-rows", "4 1", "x.npy"], cwd=tmp_path).stdout.decode()
    assert text.splitlines()[0].split() == ["#", "shape:", "2", "2", "3", "4"]
    np.testing.assert_array_equal(parse(text).reshape(2, 2, 3, 4), x[[4, 1]])


def test_tensor_rows_out_of_range_is_a_one_line_error(tmp_path):
    savetxt(tmp_path / "a.txt", np.arange(12.0).reshape(4, 3))
    for rows in ("4", "0 1 7", "100"):
        proc = run(["tensor-rows", rows, "a.txt", "-o", "out.txt"], cwd=tmp_path, check=False)
        assert_one_line_error(proc, 1, "tensor-rows: error:", "out of range")
        assert not (tmp_path / "out.txt").exists()
    proc = run(["tensor-rows", "4"], input=(tmp_path / "a.txt").read_bytes(), check=False)
    assert_one_line_error(proc, 1, "tensor-rows: error:", "out of range")
    assert proc.stdout == b""


def test_forward_pipeline_runs_convolution_pooling_and_flatten_as_predict(tmp_path):
    """Issue 25: conv, maxpool, tensor-reshape and tensor-flatten stages give predict's outputs; an MDL graph is
    refused with a pointer to predict --node."""
    make_model(tmp_path, CNN, seed=3, dtype="float64")
    rng = np.random.default_rng(5)
    savetxt(tmp_path / "x.txt", rng.normal(size=(6, 40)))  # rows of 2×4×5 images
    shown = run(["forward-pipeline", "--show", "m"], cwd=tmp_path, env=env()).stdout.decode()
    assert [s.split()[0] for s in shown.strip().split(" | ")] == [
        "tensor-reshape", "conv", "matrix-apply", "maxpool", "tensor-flatten", "matrix-mul", "matrix-add",
        "matrix-apply"]
    got = parse(run(["forward-pipeline", "m", "x.txt"], cwd=tmp_path, env=env()).stdout)
    np.testing.assert_allclose(got, parse(run(["predict", "m", "x.txt"], cwd=tmp_path).stdout), rtol=0, atol=1e-6)



def test_forward_pipeline_runs_an_mdl_graph_a_step_per_node(tmp_path):
    """Issue 25: an MDL graph's branches and merges (concatenate by paste, average, additive) as tool steps, one
    file per node, equal to predict; a recurrent graph is refused with a pointer to predict --node."""
    (tmp_path / "g.mdl").write_text(
        "(input, 3)\n[x,]\n(h1, 4, <tanh>)\n{c, x, concatenate}\n(h2, 5, <relu>)\n[s,]\n(h3, 5, <tanh>)\n"
        "{m, s, average}\n(h4, 5, <identity>)\n{r, s, additive}\n(out, 2, <softmax>, <cross_entropy>)\n")
    run(["model-init", "g.mdl", "-o", "g", "--seed", "1", "--dtype", "float64"], cwd=tmp_path)
    savetxt(tmp_path / "x.txt", np.random.default_rng(2).normal(size=(7, 3)))
    steps = run(["kerash", "graph", "g", "--steps"], cwd=tmp_path).stdout.decode().splitlines()
    assert any(line.startswith("paste -d ' '") for line in steps) and len(steps) == 10, steps
    got = parse(run(["forward-pipeline", "g", "x.txt"], cwd=tmp_path, env=env()).stdout)
    np.testing.assert_allclose(got, parse(run(["predict", "g", "x.txt"], cwd=tmp_path).stdout), rtol=1e-12)
    (tmp_path / "e.mdl").write_text("(input, 1)\n{xh, state, concatenate}\n(h, 3, <tanh>)\n[state,]\n"
                                    "(out, 2, <softmax>, <cross_entropy>)\n")
    run(["model-init", "e.mdl", "-o", "e", "--seed", "1"], cwd=tmp_path)
    proc = run(["forward-pipeline", "e", "x.txt"], cwd=tmp_path, env=env(), check=False)
    assert_one_line_error(proc, 1, "forward-pipeline: error:", "recurrent", "predict --node")


@pytest.mark.parametrize("description, labels", [
    (DEEP, "classes"),
    ("/uniform -0.5 0.5,uniform -0.5 0.5/\n5 1 1\ninput\ndense 4 tanh\ndense 2 sigmoid\n", "values"),
])
def test_backward_pipeline_equals_backprop_and_feeds_model_update(tmp_path, description, labels):
    """Issue 25: back-propagation as readable tool steps (softmax with cross-entropy, or mse) writes backprop's
    gradient folder to rounding; model-update takes the step from it."""
    make_model(tmp_path, description, seed=6, dtype="float64")
    x, classes = classification(tmp_path, 9, 5)
    if labels == "values":
        savetxt(tmp_path / "y.txt", np.random.default_rng(2).uniform(size=(9, 2)))
    shown = run(["backward-pipeline", "--show", "m", "x.txt", "y.txt", "--output", "G"], cwd=tmp_path,
                env=env()).stdout.decode()
    assert "matrix-transpose" in shown and "--derivative" in shown and not (tmp_path / "G").exists()
    run(["backward-pipeline", "m", "x.txt", "y.txt", "--output", "G"], cwd=tmp_path, env=env())
    run(["backprop", "m", "-x", "x.txt", "-y", "y.txt", "-o", "B"], cwd=tmp_path)
    piped, reference = weights(tmp_path / "G"), weights(tmp_path / "B")
    assert piped.keys() == reference.keys()
    for key in piped:
        np.testing.assert_allclose(piped[key], reference[key], rtol=1e-9, atol=1e-12, err_msg=key)
    stats, expected = (json.loads((tmp_path / f / "stats.json").read_text()) for f in ("G", "B"))
    assert stats["samples"] == expected["samples"] == 9 and stats["correct"] == expected["correct"]
    assert stats["loss_sum"] == pytest.approx(expected["loss_sum"], rel=1e-5)
    copy_model(tmp_path / "m", "m2")
    run(["model-update", "m", "G", "--lr", "0.1"], cwd=tmp_path)
    run(["model-update", "m2", "B", "--lr", "0.1"], cwd=tmp_path)
    for key, value in weights(tmp_path / "m").items():
        np.testing.assert_allclose(value, weights(tmp_path / "m2")[key], rtol=1e-9, atol=1e-12)
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_backward_pipeline_refuses_what_it_cannot_follow(tmp_path):
    make_model(tmp_path, CNN, seed=3)
    classification(tmp_path, 4, 40)
    proc = run(["backward-pipeline", "m", "x.txt", "y.txt", "--output", "G"], cwd=tmp_path, env=env(), check=False)
    assert proc.returncode == 1 and "not dense" in proc.stderr.decode() and not (tmp_path / "G").exists()
    proc = run(["backward-pipeline", "m", "x.txt"], cwd=tmp_path, env=env(), check=False)
    assert proc.returncode == 2 and "MODEL X Y --output GRADS" in proc.stderr.decode()
