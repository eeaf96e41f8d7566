"""Schedules, growing batches, dropout, frozen layers and gradient clipping through `train`,
against hand-written formulas and loops."""

import json
import math

import numpy as np
import pytest
from conftest import make_model, parse, run

LINEAR = "3 1 1\ninput\ndense 2 identity\nloss mse\n"


def trace(folder):
    lines = (folder / "trace.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def weights(folder):
    return {f"{p.parent.name}/{p.stem}": np.load(p) for p in sorted(folder.glob("layer_*/*.npy"))}


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 3))
    y = x @ rng.normal(size=(3, 2)) + rng.normal(0, 0.1, size=(40, 2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path, x, y


# ---------------------------------------------------------------- schedules


def torch_rates(kind, base, epochs, warmup=0):
    """PyTorch's closed forms (StepLR, ExponentialLR, CosineAnnealingLR), after a linear warm-up."""
    rates = []
    for e in range(1, epochs + 1):
        if e <= warmup:
            rates.append(base * e / warmup)
            continue
        last = e - 1 - warmup
        rates.append({"step": base * 0.5 ** (last // 3), "exponential": base * 0.8**last,
                      "cosine": 0.001 + (base - 0.001) * (1 + math.cos(math.pi * last / 6)) / 2}[kind])
    return rates


@pytest.mark.parametrize("kind,spec,warmup", [("step", "step:3:0.5", 0), ("exponential", "exponential:0.8", 2),
                                              ("cosine", "cosine:6:0.001", 0)])
def test_schedules_follow_pytorchs_formulas_and_resume_exactly(data, kind, spec, warmup):
    folder, _, _ = data
    make_model(folder, LINEAR, name="whole")
    run(["cp", "-r", "whole", "halves"], cwd=folder)
    common = ["-x", "x.npy", "-y", "y.npy", "-b", "8", "--lr", "0.1", "--lr-schedule", spec, "--warmup", str(warmup)]
    run(["train", "whole", *common, "--epochs", "10"], cwd=folder)
    run(["train", "halves", *common, "--epochs", "5"], cwd=folder)
    run(["train", "halves", "-x", "x.npy", "-y", "y.npy", "--epochs", "5"], cwd=folder)  # the schedule continues by itself
    rates = [float(r["lr"]) for r in trace(folder / "whole")]
    np.testing.assert_allclose(rates, torch_rates(kind, 0.1, 10, warmup), rtol=1e-5)  # the trace prints 6 digits
    assert [r["lr"] for r in trace(folder / "halves")] == [r["lr"] for r in trace(folder / "whole")]
    for key, value in weights(folder / "whole").items():
        np.testing.assert_allclose(weights(folder / "halves")[key], value, rtol=0, atol=1e-12)


def test_plateau_reduces_like_reduce_lr_on_plateau(data):
    folder, _, _ = data
    make_model(folder, LINEAR, name="m")
    run(["cp", "-r", "m", "again"], cwd=folder)
    # A rate too large to improve after the first epochs: the loss stalls and the rate is cut.
    common = ["-x", "x.npy", "-y", "y.npy", "-b", "40", "--optimizer", "adam", "--lr", "0.5", "--lr-schedule", "plateau:1:0.5"]
    run(["train", "m", *common, "--epochs", "12"], cwd=folder)
    rows = trace(folder / "m")
    losses, rates = [float(r["loss"]) for r in rows], [float(r["lr"]) for r in rows]
    # ReduceLROnPlateau(mode='min', factor=0.5, patience=1, threshold=1e-4 rel) on the training loss
    lr, best, bad, expected = 0.5, math.inf, 0, []
    for loss in losses:
        expected.append(lr)
        if loss < best * (1 - 1e-4):
            best, bad = loss, 0
        else:
            bad += 1
        if bad > 1:
            lr, bad = lr * 0.5, 0
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    assert min(rates) < 0.5
    run(["train", "again", *common, "--epochs", "7"], cwd=folder)
    run(["train", "again", *common, "--epochs", "5"], cwd=folder)
    assert [r["lr"] for r in trace(folder / "again")] == [r["lr"] for r in rows]


def test_bad_schedules_are_usage_errors(data):
    folder, _, _ = data
    make_model(folder, LINEAR, name="m")
    for bad in ("cosine", "step:0:0.5", "plateau:2", "exponential:nan", "linear:3"):
        proc = run(["train", "m", "-x", "x.npy", "-y", "y.npy", "--lr-schedule", bad], cwd=folder, check=False)
        assert proc.returncode == 2 and proc.stderr.decode().startswith("train: error: "), (bad, proc.stderr)


# ---------------------------------------------------------------- growing batches


def test_growing_batches_equal_a_hand_written_loop(data):
    from kerash.training.batches import epoch_batches, split

    folder, x, y = data
    model = make_model(folder, LINEAR, name="m")
    w, b = np.load(model / "layer_01" / "W.npy"), np.load(model / "layer_01" / "b.npy")
    out = run(["train", "m", "-x", "x.npy", "-y", "y.npy", "--epochs", "4", "--batch-growth", "6:5:14", "--lr", "0.05",
               "--seed", "9", "--workers", "1"], cwd=folder).stdout
    # the same sample order (train's own shuffles), plain numpy SGD on the mean squared error
    train_idx, _ = split(40, 0.0, 9)
    steps = 0
    for epoch in range(1, 5):
        for idx in epoch_batches(train_idx, min(6 + 5 * (epoch - 1), 14), 9, epoch):
            err = x[idx] @ w + b - y[idx]
            grad = 2 * err / 2 / len(idx)  # mse is a mean over the 2 outputs
            w, b = w - 0.05 * x[idx].T @ grad, b - 0.05 * grad.sum(axis=0)
            steps += 1
    np.testing.assert_allclose(np.load(model / "layer_01" / "W.npy"), w, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.load(model / "layer_01" / "b.npy"), b, rtol=0, atol=1e-12)
    assert [r["batch_size"] for r in trace(model)] == ["6", "11", "14", "14"]
    assert json.loads((model / "state.json").read_text())["steps"] == steps == 7 + 4 + 3 + 3
    assert len(out.decode().splitlines()) == 5


# ---------------------------------------------------------------- dropout


def test_dropout_masks_have_the_rate_and_inverted_scaling():
    from kerash.layers import Dropout, Noise

    layer = Dropout(0.3)
    x = np.ones((500, 40))
    y, _ = layer.forward({}, x, Noise(7, 2, np.arange(500)), 4, 0)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 4 * math.sqrt(0.21 / x.size)
    assert np.allclose(y[kept], 1 / 0.7) and abs(y.mean() - 1) < 0.02
    # a sample's mask depends on its id, not on the batch it is in
    part, _ = layer.forward({}, x[:10], Noise(7, 2, np.arange(200, 210)), 4, 0)
    np.testing.assert_array_equal(part, y[200:210])
    other, _ = layer.forward({}, x, Noise(7, 3, np.arange(500)), 4, 0)
    assert not np.array_equal(other, y)  # a new epoch, new masks
    assert layer.forward({}, x, None)[0] is x  # outside training: the identity


def test_dropout_trains_reproducibly_and_is_off_in_predict(data):
    folder, x, _ = data
    text = "3 1 1\ninput\ndense 16 tanh\ndropout 0.5\ndense 2 identity\nloss mse\n"
    for name in ("a", "b", "c"):
        make_model(folder, text, name=name)
    common = ["-x", "x.npy", "-y", "y.npy", "--epochs", "3", "-b", "8", "--lr", "0.05", "--seed", "4"]
    run(["train", "a", *common, "--workers", "1"], cwd=folder)
    run(["train", "b", *common, "--workers", "1"], cwd=folder)
    run(["train", "c", *common, "--workers", "3"], cwd=folder)
    wa, wb, wc = weights(folder / "a"), weights(folder / "b"), weights(folder / "c")
    for key in wa:
        np.testing.assert_array_equal(wa[key], wb[key])
        np.testing.assert_allclose(wc[key], wa[key], rtol=0, atol=1e-9)
    out = parse(run(["predict", "a", "x.npy"], cwd=folder).stdout)
    h = np.tanh(x @ wa["layer_01/W"] + wa["layer_01/b"])
    np.testing.assert_allclose(out, h @ wa["layer_03/W"] + wa["layer_03/b"], rtol=1e-10)  # no dropout, no scaling
    summary = run(["kerash", "summary", "a"], cwd=folder).stdout.decode()
    assert "layer_02 (Dropout)" in summary and "rate 0.5" in summary


# ---------------------------------------------------------------- frozen layers


def test_frozen_layers_stay_bit_identical(data):
    folder, _, _ = data
    text = "3 1 1\ninput\ndense 8 tanh\ndense 6 tanh\ndense 2 identity\nloss mse\n"
    model = make_model(folder, text, name="m")
    before = weights(model)
    run(["train", "m", "-x", "x.npy", "-y", "y.npy", "--epochs", "3", "-b", "8", "--optimizer", "adam",
         "--freeze", "layer_01,2", "--workers", "2"], cwd=folder)
    after = weights(model)
    for key in ("layer_01/W", "layer_01/b", "layer_02/W", "layer_02/b"):
        assert after[key].tobytes() == before[key].tobytes(), key
    assert not np.array_equal(after["layer_03/W"], before["layer_03/W"])
    summary = run(["kerash", "summary", "m"], cwd=folder).stdout.decode()
    assert f"Trainable params: {6 * 2 + 2}" in summary
    assert f"Non-trainable params: {3 * 8 + 8 + 8 * 6 + 6:,} (frozen: layer_01, layer_02)" in summary
    for bad, message in (("layer_09", "no layer 'layer_09'"), ("3-1", "runs backwards")):
        proc = run(["train", "m", "-x", "x.npy", "-y", "y.npy", "--freeze", bad], cwd=folder, check=False)
        assert proc.returncode == 2 and message in proc.stderr.decode(), proc.stderr


# ---------------------------------------------------------------- clipping


@pytest.mark.parametrize("workers", [1, 2])
def test_clipping_scales_the_merged_gradient_to_the_norm(data, workers):
    folder, x, y = data
    model = make_model(folder, LINEAR, name="m")
    w, b = np.load(model / "layer_01" / "W.npy"), np.load(model / "layer_01" / "b.npy")
    run(["train", "m", "-x", "x.npy", "-y", "y.npy", "--epochs", "1", "-b", "40", "--lr", "0.1", "--clip-norm", "0.05",
         "--workers", str(workers)], cwd=folder)
    err = x @ w + b - y
    gw, gb = x.T @ err / 40, err.sum(axis=0) / 40  # mean over samples of the mse gradient (÷2 outputs ×2)
    norm = math.sqrt(np.sum(gw**2) + np.sum(gb**2))
    assert norm > 0.05  # the clip is active
    coef = 0.05 / (norm + 1e-6)
    np.testing.assert_allclose(np.load(model / "layer_01" / "W.npy"), w - 0.1 * coef * gw, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.load(model / "layer_01" / "b.npy"), b - 0.1 * coef * gb, rtol=0, atol=1e-12)


def test_layer_statistics_each_epoch(data):
    folder, _, _ = data
    model = make_model(folder, LINEAR, name="m")
    before = np.load(model / "layer_01" / "W.npy")
    run(["train", "m", "-x", "x.npy", "-y", "y.npy", "--epochs", "2", "-b", "40", "--lr", "0.1", "--stats"], cwd=folder)
    lines = (model / "stats.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    assert [(r["epoch"], r["layer"], r["param"]) for r in rows] == [("1", "layer_01", "W"), ("1", "layer_01", "b"),
                                                                   ("2", "layer_01", "W"), ("2", "layer_01", "b")]
    w = np.load(model / "layer_01" / "W.npy")
    assert float(rows[2]["w_rms"]) == pytest.approx(np.sqrt(np.mean(w**2)), rel=1e-5)
    assert float(rows[2]["w_max"]) == pytest.approx(w.max(), rel=1e-5)
    # one step an epoch (a batch of all 40): epoch 1 moved the weights by lr × that step's gradient
    assert float(rows[0]["update_ratio"]) == pytest.approx(0.1 * float(rows[0]["g_rms"]) / np.sqrt(np.mean(before**2)), rel=1e-5)


def test_a_negative_seed_or_a_closed_output_change_nothing(data):
    folder, _, _ = data
    model = make_model(folder, LINEAR, name="m")
    before = (model / "layer_01" / "W.npy").read_bytes()
    proc = run(["train", "m", "-x", "x.npy", "-y", "y.npy", "--seed", "-1"], cwd=folder, check=False)
    assert proc.returncode == 2 and "--seed must be in [0" in proc.stderr.decode()
    proc = run("train m -x x.npy -y y.npy --epochs 1 >&-", cwd=folder, check=False)
    assert proc.returncode == 2 and "standard output is closed" in proc.stderr.decode()
    assert (model / "layer_01" / "W.npy").read_bytes() == before
    assert json.loads((model / "state.json").read_text())["epochs"] == 0
