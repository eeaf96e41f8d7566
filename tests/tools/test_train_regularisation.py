"""Dropout, frozen layers and gradient clipping through `train`, against hand-written formulas and loops, and
the per-layer statistics that show what each step did (--stats)."""

import math

import numpy as np
import pytest

from conftest import parse, run, tool_env
from helpers import make_model, processes_column, weights

# Runs with workers give --shards (the rule makes these small models' batches one logical shard, which leaves the
# workers nothing to compute) and KERASH_ENGINE_ADAPT=0 (every worker computes at every step).

LINEAR = "3 1 1\ninput\ndense 2 identity\nloss mse\n"


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


def test_dropout_trains_reproducibly_and_is_off_in_predict(regression_data):
    folder, x, _ = regression_data
    text = "3 1 1\ninput\ndense 16 tanh\ndropout 0.5\ndense 2 identity\nloss mse\n"
    for name in ("a", "b", "c"):
        make_model(folder, text, name=name)
    common = ["-x", "x.npy", "-y", "y.npy", "--epochs", "3", "-b", "8", "--lr", "0.05", "--seed", "4", "--shards", "4"]
    run(["train", "a", *common, "--workers", "1"], cwd=folder)
    run(["train", "b", *common, "--workers", "1"], cwd=folder)
    run(["train", "c", *common, "--workers", "3"], cwd=folder, env=tool_env(KERASH_ENGINE_ADAPT=0))
    assert processes_column(folder / "c") == [3.0] * 3  # each process draws the masks of its shards' samples
    wa, wb, wc = weights(folder / "a"), weights(folder / "b"), weights(folder / "c")
    for key in wa:
        np.testing.assert_array_equal(wa[key], wb[key])
        np.testing.assert_array_equal(wc[key], wa[key])
    out = parse(run(["predict", "a", "x.npy"], cwd=folder).stdout)
    h = np.tanh(x @ wa["layer_01/W"] + wa["layer_01/b"])
    np.testing.assert_allclose(out, h @ wa["layer_03/W"] + wa["layer_03/b"], rtol=1e-10)  # no dropout, no scaling
    summary = run(["kerash", "summary", "a"], cwd=folder).stdout.decode()
    assert "layer_02 (Dropout)" in summary and "rate 0.5" in summary


# ---------------------------------------------------------------- frozen layers


def test_frozen_layers_stay_bit_identical(regression_data):
    folder, _, _ = regression_data
    text = "3 1 1\ninput\ndense 8 tanh\ndense 6 tanh\ndense 2 identity\nloss mse\n"
    model = make_model(folder, text, name="m")
    before = weights(model)
    run(["train", "m", "-x", "x.npy", "-y", "y.npy", "--epochs", "3", "-b", "8", "--optimizer", "adam",
         "--freeze", "layer_01,2", "--workers", "2", "--shards", "4"], cwd=folder, env=tool_env(KERASH_ENGINE_ADAPT=0))
    assert processes_column(model) == [2.0] * 3
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
def test_clipping_scales_the_merged_gradient_to_the_norm(regression_data, workers):
    folder, x, y = regression_data
    model = make_model(folder, LINEAR, name="m")
    w, b = np.load(model / "layer_01" / "W.npy"), np.load(model / "layer_01" / "b.npy")
    run(["train", "m", "-x", "x.npy", "-y", "y.npy", "--epochs", "1", "-b", "40", "--lr", "0.1", "--clip-norm", "0.05",
         "--workers", str(workers), "--shards", "4"], cwd=folder, env=tool_env(KERASH_ENGINE_ADAPT=0))
    assert processes_column(model) == [float(workers)]  # the norm is that of the four shards' gradients summed
    err = x @ w + b - y
    gw, gb = x.T @ err / 40, err.sum(axis=0) / 40  # mean over samples of the mse gradient (÷2 outputs ×2)
    norm = math.sqrt(np.sum(gw**2) + np.sum(gb**2))
    assert norm > 0.05  # the clip is active
    coef = 0.05 / (norm + 1e-6)
    np.testing.assert_allclose(np.load(model / "layer_01" / "W.npy"), w - 0.1 * coef * gw, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.load(model / "layer_01" / "b.npy"), b - 0.1 * coef * gb, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- per-layer statistics


def test_layer_statistics_each_epoch(regression_data):
    folder, _, _ = regression_data
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
