"""model-init, predict, backprop, model-update, evaluate, summary and dataset as a user runs them,
checked against independent numpy computations."""

import json
import math

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, parse, run, savetxt
from helpers import copy_model, make_model, softmax, weights

MLP = "/uniform -0.8 0.8,uniform -0.3 0.3/\n5 1 1\ninput\ndense 7 tanh\ndense 4 sigmoid\ndense 3 softmax\n"
# The benchmark's digits MLP (issue 3): 64-128-64-10, sigmoid, softmax + cross-entropy.
BENCH_MLP = "64 1 1\ninput\ndense 128 sigmoid\ndense 64 sigmoid\ndense 10 softmax\n"
CNN = (
    "/he,uniform -0.2 0.2/\n# a small image model\n6 5 2\ninput\nconvolution relu 3 1 1 3 3\n"
    "max_pooling - 2 0 2 2\nconvolution tanh 4 1 0 2 2\nflatten -\ndense 3 softmax\n"
)


# ---------------------------------------------------------------- helpers


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def mlp_forward(x, w):
    """The MLP above, by hand (w as weights() gives it): returns every layer's output."""
    w1, b1, w2, b2, w3, b3 = (w[f"layer_{k:02d}/{n}"] for k in (1, 2, 3) for n in ("W", "b"))
    a1 = np.tanh(x @ w1 + b1)
    a2 = sigmoid(a1 @ w2 + b2)
    return a1, a2, softmax(a2 @ w3 + b3)


def mlp_grad_sums(x, y, w):
    """Gradient sums of Σ −y·log softmax over the samples, by hand, keyed as weights() is."""
    w2, w3 = w["layer_02/W"], w["layer_03/W"]
    a1, a2, p = mlp_forward(x, w)
    dz3 = p - y
    dz2 = (dz3 @ w3.T) * a2 * (1 - a2)
    dz1 = (dz2 @ w2.T) * (1 - a1**2)
    grads = {
        "layer_03/W": a2.T @ dz3, "layer_03/b": dz3.sum(axis=0),
        "layer_02/W": a1.T @ dz2, "layer_02/b": dz2.sum(axis=0),
        "layer_01/W": x.T @ dz1, "layer_01/b": dz1.sum(axis=0),
    }
    loss_sum = float(-np.sum(y * np.log(p)))
    correct = int(np.sum(p.argmax(axis=1) == y.argmax(axis=1)))
    return grads, loss_sum, correct


def conv_forward(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.empty((n, f, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,fchw->nf", patch, w) + b
    return out


def pool_forward(x, k, stride):
    n, c, h, w = x.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = x[:, :, i * stride : i * stride + k, j * stride : j * stride + k].max(axis=(2, 3))
    return out


def cnn_forward(x, w):
    """The CNN above, by hand, on samples (N, 2, 5, 6)."""
    a = np.maximum(conv_forward(x, w["layer_01/W"], w["layer_01/b"], 1, 1), 0)
    a = pool_forward(a, 2, 2)
    a = np.tanh(conv_forward(a, w["layer_03/W"], w["layer_03/b"], 1, 0))
    flat = a.reshape(len(a), -1)
    return softmax(flat @ w["layer_05/W"] + w["layer_05/b"])


def data(rng, n, width=5, classes=3):
    x = rng.normal(0, 1, size=(n, width))
    labels = rng.integers(0, classes, n)
    return x, labels, np.eye(classes)[labels]


# ---------------------------------------------------------------- model-init


def test_init_writes_one_folder_per_layer_with_parameters(tmp_path):
    folder = make_model(tmp_path, CNN, dtype="float32")
    assert (folder / "model").is_file()
    assert json.loads((folder / "state.json").read_text())["dtype"] == "float32"
    layers = sorted(p.name for p in folder.iterdir() if p.name.startswith("layer_"))
    assert layers == ["layer_01", "layer_03", "layer_05"]  # input 00, pooling 02 and flatten 04 have none
    w = weights(folder)
    assert list(w) == [f"{layer}/{name}" for layer in layers for name in ("W", "b")]
    assert w["layer_01/W"].shape == (3, 2, 3, 3) and w["layer_01/b"].shape == (3,)
    assert w["layer_03/W"].shape == (4, 3, 2, 2) and w["layer_03/b"].shape == (4,)
    # conv 1 keeps 5×6 (pad 1), pooling gives 2×3, conv 2 gives 1×2 with 4 filters
    assert w["layer_05/W"].shape == (4 * 1 * 2, 3) and w["layer_05/b"].shape == (3,)
    assert all(a.dtype == np.float32 for a in w.values())


def test_dense_weights_are_in_by_out_and_work_with_matrix_mul(tmp_path, rng):
    folder = make_model(tmp_path, MLP, dtype="float32")
    w1 = np.load(folder / "layer_01" / "W.npy")
    assert w1.shape == (5, 7)
    x = rng.normal(size=(4, 5))
    savetxt(tmp_path / "x.txt", x)
    out = parse(run(["matrix-mul", "x.txt", "m/layer_01/W.npy"], cwd=tmp_path).stdout)
    np.testing.assert_allclose(out, x @ w1.astype(np.float64), rtol=1e-12)
    out = parse(run("matrix-mul - m/layer_02/W.npy < m/layer_01/b.npy", cwd=tmp_path).stdout)
    np.testing.assert_allclose(out[0], np.load(folder / "layer_01" / "b.npy") @ np.load(folder / "layer_02" / "W.npy"), rtol=1e-6)


def test_same_seed_gives_bit_identical_weights(tmp_path):
    a = make_model(tmp_path, CNN, "a", seed=7, dtype="float32")
    b = make_model(tmp_path, CNN, "b", seed=7, dtype="float32")
    c = make_model(tmp_path, CNN, "c", seed=8, dtype="float32")
    for key in ("layer_01", "layer_03", "layer_05"):
        assert (a / key / "W.npy").read_bytes() == (b / key / "W.npy").read_bytes()
        assert (a / key / "b.npy").read_bytes() == (b / key / "b.npy").read_bytes()
        assert not np.array_equal(np.load(a / key / "W.npy"), np.load(c / key / "W.npy"))


def test_xavier_bounds(tmp_path):
    folder = make_model(tmp_path, BENCH_MLP, dtype="float32")
    for key, (n_in, n_out) in {"layer_01": (64, 128), "layer_02": (128, 64), "layer_03": (64, 10)}.items():
        w = np.load(folder / key / "W.npy")
        assert w.shape == (n_in, n_out)
        limit = math.sqrt(6 / (n_in + n_out))
        assert np.abs(w).max() <= limit
        assert np.abs(w).max() > 0.9 * limit and abs(w.mean()) < 0.1 * limit
        assert np.all(np.load(folder / key / "b.npy") == 0)


def test_dtype_float64_stores_float64(tmp_path):
    folder = make_model(tmp_path, MLP, dtype="float64")
    assert all(a.dtype == np.float64 for a in weights(folder).values())


def test_init_refuses_to_overwrite_without_force(tmp_path):
    folder = make_model(tmp_path, MLP, seed=1)
    before = weights(folder)
    proc = run(["model-init", "m.model", "-o", "m", "--seed", "2"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "m", "--force")
    for key, w in weights(folder).items():
        np.testing.assert_array_equal(w, before[key])
    run(["model-init", "m.model", "-o", "m", "--seed", "2", "--force"], cwd=tmp_path)
    assert not np.array_equal(weights(folder)["layer_01/W"], before["layer_01/W"])
    # a folder that is not a model directory is never replaced
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("precious")
    proc = run(["model-init", "m.model", "-o", "notes", "--force"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "precious"


# ---------------------------------------------------------------- predict


def test_predict_mlp_matches_numpy(tmp_path, rng):
    folder = make_model(tmp_path, MLP)
    x, _, _ = data(rng, 9)
    savetxt(tmp_path / "x.txt", x)
    np.save(tmp_path / "x.npy", x)
    _, _, expected = mlp_forward(x, weights(folder))
    out = parse(run(["predict", "m", "x.txt"], cwd=tmp_path).stdout)
    assert out.shape == (9, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    for args, stdin in ((["predict", "m", "-"], "x.txt"), (["predict", "m"], "x.npy")):
        proc = run(args, cwd=tmp_path, input=(tmp_path / stdin).read_bytes() if stdin else None)
        np.testing.assert_allclose(parse(proc.stdout), expected, rtol=1e-12)
    classes = parse(run(["predict", "m", "x.txt", "--classes"], cwd=tmp_path).stdout)
    assert classes.shape == (9, 1)
    np.testing.assert_array_equal(classes[:, 0], expected.argmax(axis=1))


def test_predict_float32_model(tmp_path, rng):
    folder = make_model(tmp_path, MLP, dtype="float32")
    x, _, _ = data(rng, 4)
    savetxt(tmp_path / "x.txt", x)
    w = {k: a.astype(np.float64) for k, a in weights(folder).items()}
    np.testing.assert_allclose(parse(run(["predict", "m", "x.txt"], cwd=tmp_path).stdout), mlp_forward(x, w)[2], rtol=1e-5)


def test_predict_single_output_classes_threshold(tmp_path, rng):
    folder = make_model(tmp_path, "3 1 1\ninput\ndense 4 tanh\ndense 1 sigmoid\n", seed=4)
    x = rng.normal(0, 3, size=(20, 3))
    savetxt(tmp_path / "x.txt", x)
    w = weights(folder)
    p = sigmoid(np.tanh(x @ w["layer_01/W"] + w["layer_01/b"]) @ w["layer_02/W"] + w["layer_02/b"])
    np.testing.assert_allclose(parse(run(["predict", "m", "x.txt"], cwd=tmp_path).stdout), p, rtol=1e-12)
    classes = parse(run(["predict", "m", "x.txt", "--classes"], cwd=tmp_path).stdout)[:, 0]
    np.testing.assert_array_equal(classes, (p[:, 0] > 0.5).astype(float))


def test_predict_cnn_from_rows_and_from_nchw(tmp_path, rng):
    folder = make_model(tmp_path, CNN)
    x = rng.normal(size=(5, 2, 5, 6))
    expected = cnn_forward(x, weights(folder))
    savetxt(tmp_path / "rows.txt", x.reshape(5, -1))
    np.save(tmp_path / "x.npy", x)
    for name in ("rows.txt", "x.npy"):
        out = parse(run(["predict", "m", name], cwd=tmp_path).stdout)
        np.testing.assert_allclose(out, expected, rtol=1e-11)


def test_predict_node_writes_hidden_values(tmp_path, rng):
    """Issue 25: --node writes any node's values, checked against the hand-written forward pass: a dense layer's,
    convolution and pooling images (N, C, H, W), several side by side, and an unknown name refused."""
    folder = make_model(tmp_path, MLP)
    x, _, _ = data(rng, 6)
    savetxt(tmp_path / "x.txt", x)
    a1, a2, out = mlp_forward(x, weights(folder))
    hidden = parse(run(["predict", "m", "x.txt", "--node", "layer_01"], cwd=tmp_path).stdout)
    np.testing.assert_allclose(hidden, a1, rtol=1e-12)
    both = parse(run(["predict", "m", "x.txt", "--node", "layer_02", "--node", "layer_03"], cwd=tmp_path).stdout)
    np.testing.assert_allclose(both, np.hstack([a2, out]), rtol=1e-12)
    np.testing.assert_array_equal(parse(run(["predict", "m", "-", "--node", "input"], cwd=tmp_path,
                                            input=(tmp_path / "x.txt").read_bytes()).stdout), x)
    proc = run(["predict", "m", "x.txt", "--node", "layer_9"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "no node 'layer_9'", "layer_01")
    proc = run(["predict", "m", "x.txt", "--node", "layer_01", "--classes"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "--node")

    cnn = make_model(tmp_path, CNN, "c")
    xc = rng.normal(size=(4, 2, 5, 6))
    np.save(tmp_path / "xc.npy", xc)
    w = weights(cnn)
    conv1 = np.maximum(conv_forward(xc, w["layer_01/W"], w["layer_01/b"], 1, 1), 0)
    pooled = pool_forward(conv1, 2, 2)
    conv2 = np.tanh(conv_forward(pooled, w["layer_03/W"], w["layer_03/b"], 1, 0))
    for node, expected in (("layer_01", conv1), ("layer_02", pooled), ("layer_03", conv2)):
        run(["predict", "c", "xc.npy", "--node", node, "-o", f"{node}.npy"], cwd=tmp_path)
        got = np.load(tmp_path / f"{node}.npy")
        assert got.shape == expected.shape, node
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12, err_msg=node)
    side = parse(run(["predict", "c", "xc.npy", "--node", "layer_02", "--node", "layer_04"], cwd=tmp_path).stdout)
    np.testing.assert_allclose(side, np.hstack([pooled.reshape(4, -1), conv2.reshape(4, -1)]), rtol=1e-10, atol=1e-12)


def test_predict_streams_a_pipe_block_by_block(tmp_path, rng):
    """Samples from a pipe are predicted a block at a time: the first outputs come while the input is still open
    (memory holds a block, not the input), and the bytes equal those of the same rows from a file."""
    import select
    import subprocess
    import threading

    from conftest import tool_env

    width = 4096  # the smallest block, 2048 samples, is then 16 MB of text
    folder = make_model(tmp_path, f"{width} 1 1\ninput\ndense 2 softmax\n")
    x = rng.integers(0, 2, size=(2100, width)).astype(float)
    text = "".join(" ".join(map(str, map(int, r))) + "\n" for r in x.tolist()).encode()
    proc = subprocess.Popen(["predict", "m"], cwd=tmp_path, env=tool_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    written = threading.Event()

    def feed():  # a thread: predict's output fills a pipe we have to read meanwhile
        proc.stdin.write(text)
        proc.stdin.flush()
        written.wait(60)
        proc.stdin.write(b"1 " * (width - 1) + b"nan\n")  # the message counts rows from the input's start
        proc.stdin.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "no output before the input ended"
        first = proc.stdout.readline()
        written.set()
        rest = proc.stdout.read()
        err = proc.stderr.read().decode()
        feeder.join(60)
    finally:
        written.set()
        proc.kill()
        proc.wait()
    assert proc.returncode == 1 and "non-finite value nan in row 2101, value 4096: data must be finite numbers" in err \
        and err.strip().endswith("(<stdin>)") and err.count("\n") == 1, err
    w = weights(folder)
    expected = softmax(x @ w["layer_01/W"] + w["layer_01/b"])
    out = parse(first + rest)
    assert out.shape == (2048, 2)  # the first block; the second held the bad row
    np.testing.assert_allclose(out, expected[:2048], rtol=1e-12)
    (tmp_path / "x.txt").write_bytes(text)
    from_file = run(["predict", "m", "x.txt"], cwd=tmp_path).stdout
    assert from_file[: len(first + rest)] == first + rest
    np.testing.assert_allclose(parse(from_file), expected, rtol=1e-12)


# ---------------------------------------------------------------- backprop and model-update


def test_predict_and_evaluate_give_the_same_bits_with_any_workers(tmp_path, rng):
    """Issue 21: a large input's chunks of 1024 samples are taken by --workers processes as they become free;
    the outputs, classes and scores are the same bits whatever the number (float32: BLAS rounding per chunk)."""
    make_model(tmp_path, BENCH_MLP, seed=4, dtype="float32")
    x = rng.normal(size=(5000, 64)).astype(np.float32)  # five chunks
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "y.txt", rng.integers(0, 10, 5000), fmt="%d")
    outputs, scores = {}, {}
    for workers in ("1", "2", "3"):
        outputs[workers] = run(["predict", "m", "x.npy", "--workers", workers, "--format", "npy"],
                               cwd=tmp_path).stdout
        scores[workers] = run(["evaluate", "m", "-x", "x.npy", "-y", "y.txt", "--workers", workers, "--confusion"],
                              cwd=tmp_path).stdout
    assert outputs["2"] == outputs["1"] and outputs["3"] == outputs["1"]
    assert scores["2"] == scores["1"] and scores["3"] == scores["1"]
    assert b"accuracy" in scores["1"]
    for tool in (["predict", "m", "x.npy"], ["evaluate", "m", "-x", "x.npy", "-y", "y.txt"]):
        proc = run([*tool, "--workers", "0"], cwd=tmp_path, check=False)
        assert_one_line_error(proc, 2, "--workers must be between 1 and 64, got 0")
    proc = run(["predict", "m", "x.npy", "--node", "layer_01", "--workers", "2"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "--node values are computed in this process")


def test_backprop_writes_gradient_sums(tmp_path, rng):
    folder = make_model(tmp_path, MLP)
    x, labels, onehot = data(rng, 11)
    savetxt(tmp_path / "x.txt", x)
    savetxt(tmp_path / "y.txt", labels.reshape(-1, 1))
    run(["backprop", "m", "--inputs", "x.txt", "--labels", "y.txt", "-o", "g"], cwd=tmp_path)
    grads, loss_sum, correct = mlp_grad_sums(x, onehot, weights(folder))
    for key, g in grads.items():
        np.testing.assert_allclose(np.load(tmp_path / "g" / f"{key}.npy"), g, rtol=1e-10, atol=1e-13)
    stats = json.loads((tmp_path / "g" / "stats.json").read_text())
    assert stats["samples"] == 11
    assert stats["correct"] == correct
    assert stats["loss_sum"] == pytest.approx(loss_sum, rel=1e-12)
    # labels as one-hot rows from standard input give the same folder
    savetxt(tmp_path / "y1.txt", onehot)
    run("backprop m -x x.txt -y - -o g1 < y1.txt", cwd=tmp_path)
    for key in grads:
        np.testing.assert_array_equal(np.load(tmp_path / "g1" / f"{key}.npy"), np.load(tmp_path / "g" / f"{key}.npy"))


def test_backprop_of_a_cnn_sums_over_samples(tmp_path, rng):
    # Per-sample gradients add up: the folder of all samples is the sum of one folder per sample.
    make_model(tmp_path, CNN)
    x = rng.normal(size=(3, 60))
    labels = np.array([[0], [2], [1]])
    savetxt(tmp_path / "x.txt", x)
    savetxt(tmp_path / "y.txt", labels)
    run(["backprop", "m", "-x", "x.txt", "-y", "y.txt", "-o", "all"], cwd=tmp_path)
    total = {}
    for i, rows in enumerate((slice(0, 1), slice(1, 3))):
        savetxt(tmp_path / f"x{i}.txt", x[rows])
        savetxt(tmp_path / f"y{i}.txt", labels[rows])
        run(["backprop", "m", "-x", f"x{i}.txt", "-y", f"y{i}.txt", "-o", f"g{i}"], cwd=tmp_path)
        for key in ("layer_01", "layer_03", "layer_05"):
            total[key] = total.get(key, 0) + np.load(tmp_path / f"g{i}" / key / "W.npy")
    for key, summed in total.items():
        np.testing.assert_allclose(np.load(tmp_path / "all" / key / "W.npy"), summed, rtol=1e-10, atol=1e-13)
    assert np.any(total["layer_01"] != 0)


def test_update_merges_folders_and_takes_one_sgd_step(tmp_path, rng):
    folder = make_model(tmp_path, MLP)
    before = weights(folder)
    x, labels, onehot = data(rng, 10)
    savetxt(tmp_path / "a.txt", x[:3])
    savetxt(tmp_path / "ya.txt", labels[:3].reshape(-1, 1))
    savetxt(tmp_path / "b.txt", x[3:])
    savetxt(tmp_path / "yb.txt", labels[3:].reshape(-1, 1))
    run(["backprop", "m", "-x", "a.txt", "-y", "ya.txt", "-o", "g1"], cwd=tmp_path)
    run(["backprop", "m", "-x", "b.txt", "-y", "yb.txt", "-o", "g2"], cwd=tmp_path)
    g1, g2 = weights(tmp_path / "g1"), weights(tmp_path / "g2")  # gradient folders are laid out as models are
    assert g1.keys() == g2.keys() == before.keys()
    run(["model-update", "m", "g1", "g2", "--lr", "0.3"], cwd=tmp_path)
    after = weights(folder)
    for key in before:
        expected = before[key] - 0.3 * (g1[key] + g2[key]) / 10
        np.testing.assert_allclose(after[key], expected, rtol=1e-14, atol=1e-16)
    # the step is the mean gradient of all ten samples, computed by hand
    grads, _, _ = mlp_grad_sums(x, onehot, before)
    for key in before:
        np.testing.assert_allclose(after[key], before[key] - 0.3 * grads[key] / 10, rtol=1e-11, atol=1e-14)
    state = json.loads((folder / "state.json").read_text())
    assert state["steps"] == 1 and state["samples"] == 10


def test_halves_and_whole_batch_give_the_same_step(tmp_path, rng):
    fresh = weights(copy_model(make_model(tmp_path, CNN, "halves", seed=3), "whole"))
    x = rng.normal(size=(8, 60))
    labels = rng.integers(0, 3, size=(8, 1))
    for name, rows in (("all", slice(0, 8)), ("h1", slice(0, 5)), ("h2", slice(5, 8))):
        savetxt(tmp_path / f"{name}.txt", x[rows])
        savetxt(tmp_path / f"y{name}.txt", labels[rows])
    run(["backprop", "halves", "-x", "h1.txt", "-y", "yh1.txt", "-o", "g1"], cwd=tmp_path)
    run(["backprop", "halves", "-x", "h2.txt", "-y", "yh2.txt", "-o", "g2"], cwd=tmp_path)
    run(["model-update", "halves", "g1", "g2", "--lr", "0.5"], cwd=tmp_path)
    run(["backprop", "whole", "-x", "all.txt", "-y", "yall.txt", "-o", "g"], cwd=tmp_path)
    run(["model-update", "whole", "g", "--lr", "0.5"], cwd=tmp_path)
    a, b = weights(tmp_path / "halves"), weights(tmp_path / "whole")
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-14)
    assert all(not np.array_equal(fresh[key], a[key]) for key in a if key.endswith("/W"))  # every layer moved


def test_backprop_and_update_equal_one_train_step(tmp_path, rng):
    copy_model(make_model(tmp_path, CNN, "tools", seed=5), "trained")
    x = rng.normal(size=(12, 60))
    labels = rng.integers(0, 3, size=(12, 1))
    savetxt(tmp_path / "x.txt", x)
    savetxt(tmp_path / "y.txt", labels)
    run(["backprop", "tools", "-x", "x.txt", "-y", "y.txt", "-o", "g"], cwd=tmp_path)
    run(["model-update", "tools", "g", "--lr", "0.2"], cwd=tmp_path)
    out = run(["train", "trained", "-x", "x.txt", "-y", "y.txt", "--batch-size", "12", "--epochs", "1", "--lr", "0.2"], cwd=tmp_path)
    assert len(out.stdout.decode().splitlines()) == 2
    a, b = weights(tmp_path / "tools"), weights(tmp_path / "trained")
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-12)
    stats = json.loads((tmp_path / "g" / "stats.json").read_text())
    # train's epoch loss is the mean per-sample loss before the step, as in backprop's stats
    fields = out.stdout.decode().splitlines()[1].split("\t")
    assert float(fields[2]) == pytest.approx(stats["loss_sum"] / 12, rel=1e-5)
    assert float(fields[3]) == pytest.approx(stats["correct"] / 12, abs=1e-4)


# ---------------------------------------------------------------- evaluate and summary


def read_evaluate(text):
    values, matrix = {}, []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) == 2:
            values[parts[0]] = float(parts[1])
        else:
            matrix.append([int(v) for v in line.split()])
    return values, np.array(matrix)


def test_evaluate_loss_accuracy_and_confusion(tmp_path, rng):
    folder = make_model(tmp_path, MLP, seed=9)
    x, labels, onehot = data(rng, 40)
    savetxt(tmp_path / "x.txt", x)
    savetxt(tmp_path / "y.txt", labels.reshape(-1, 1))
    out = run(["evaluate", "m", "--data", "x.txt", "--labels", "y.txt", "--confusion"], cwd=tmp_path).stdout.decode()
    values, matrix = read_evaluate(out)
    _, _, p = mlp_forward(x, weights(folder))
    predicted = p.argmax(axis=1)
    assert values["loss"] == pytest.approx(np.mean(-np.log(p[np.arange(40), labels])), rel=1e-5)
    assert values["accuracy"] == pytest.approx(np.mean(predicted == labels), abs=1e-4)
    assert values["samples"] == 40
    expected = np.zeros((3, 3), dtype=int)
    for t, q in zip(labels, predicted):
        expected[t, q] += 1  # rows: true class, columns: predicted
    np.testing.assert_array_equal(matrix, expected)
    assert len(set(predicted)) > 1, "a degenerate model would not test the layout"


def test_evaluate_regression_loss(tmp_path, rng):
    folder = make_model(tmp_path, "3 1 1\ninput\ndense 2 identity\n", seed=2)
    x = rng.normal(size=(15, 3))
    y = rng.normal(size=(15, 2))
    savetxt(tmp_path / "x.txt", x)
    savetxt(tmp_path / "y.txt", y)
    values, _ = read_evaluate(run(["evaluate", "m", "-x", "x.txt", "-y", "y.txt"], cwd=tmp_path).stdout.decode())
    w, b = weights(folder)["layer_01/W"], weights(folder)["layer_01/b"]
    assert values["loss"] == pytest.approx(np.mean(np.mean((x @ w + b - y) ** 2, axis=1)), rel=1e-5)


def summary_rows(text):
    return [line for line in text.splitlines() if line.startswith(" layer_") or line.startswith(" input")]


def test_summary_of_the_benchmark_mlp(tmp_path):
    (tmp_path / "bench-mlp.model").write_text(BENCH_MLP)
    out = run(["kerash", "summary", "bench-mlp.model"], cwd=tmp_path).stdout.decode()
    assert 'Model: "bench-mlp"' in out
    counts = [64 * 128 + 128, 128 * 64 + 64, 64 * 10 + 10]
    assert sum(counts) == 17226
    assert "Total params: 17,226" in out
    rows = summary_rows(out)
    assert len(rows) == 4
    for row, shape, count in zip(rows[1:], ["(None, 128)", "(None, 64)", "(None, 10)"], counts):
        assert shape in row and f"{count:,}" in row, row
    assert "Dense" in rows[1]


def test_summary_of_digits_cnn_directory(tmp_path):
    run(["model-init", str(ROOT / "models" / "digits-cnn.model"), "-o", "cnn", "--seed", "1"], cwd=tmp_path)
    out = run(["kerash", "summary", "cnn"], cwd=tmp_path).stdout.decode()
    rows = summary_rows(out)
    expected = [
        ("(None, 16, 8, 8)", 16 * 1 * 9 + 16),
        ("(None, 16, 4, 4)", 0),
        ("(None, 32, 4, 4)", 32 * 16 * 9 + 32),
        ("(None, 32, 2, 2)", 0),
        ("(None, 128)", 0),
        ("(None, 64)", 128 * 64 + 64),
        ("(None, 10)", 64 * 10 + 10),
    ]
    assert len(rows) == 1 + len(expected)
    for row, (shape, count) in zip(rows[1:], expected):
        assert shape in row and f" {count:,} " in row + " ", row
    assert f"Total params: {sum(c for _, c in expected):,}" in out


# ---------------------------------------------------------------- the shipped data set


def test_dataset_digits(tmp_path):
    run(["kerash", "dataset", "digits", "-o", "digits"], cwd=tmp_path)
    x = np.load(tmp_path / "digits" / "data.npy")
    y = np.loadtxt(tmp_path / "digits" / "labels.txt")
    assert x.shape == (1797, 64) and y.shape == (1797,)
    assert x.min() == 0 and x.max() == 1
    assert np.all(x * 16 == np.round(x * 16))  # pixels were 0..16
    assert set(np.unique(y)) == set(range(10))
    assert np.all(np.bincount(y.astype(int)) > 150)


def test_kerash_models_lists_every_shipped_model_with_a_description():
    listing = dict(line.split("\t") for line in run(["kerash", "models"]).stdout.decode().splitlines())
    shipped = sorted(p.name for p in (ROOT / "models").iterdir() if p.suffix in (".model", ".mdl"))
    assert sorted(listing) == shipped
    assert all(len(text) > 20 for text in listing.values()), listing
    # the seeds' files have no comment: their nodes are listed, counted apart from kerash
    text = (ROOT / "models" / "neuromorph-lstm.mdl").read_text()
    assert listing["neuromorph-lstm.mdl"].startswith(f"NeuroMorph's example (seed 000), unchanged: {text.count('(')} nodes")
