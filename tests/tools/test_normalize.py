"""train --normalize: each input feature's mean and deviation, fitted on the training part only,
kept in the model directory and applied by every tool that feeds the model (checked against numpy)."""

import json
import os

import numpy as np
import pytest

from conftest import BIN, ROOT, assert_one_line_error, parse, run, savetxt, tool_env
from helpers import copy_model, make_model, softmax
from kerash.model import ModelDir, parse_model
from kerash.model import normalization
from kerash.training.batches import split

LINEAR = "/uniform -0.5 0.5,uniform -0.5 0.5/\n4 1 1\ninput\ndense 3 softmax\n"


def data(folder, n=30, seed=0):
    """Features of very different scales, one of them constant; three classes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)) * [1.0, 1000.0, 0.001, 0.0] + [5.0, -300.0, 0.0, 7.25]
    y = rng.integers(0, 3, n)
    savetxt(folder / "x.txt", x)
    savetxt(folder / "y.txt", y.reshape(-1, 1))
    return x, y


def stats_by_numpy(x):
    mean, std = x.mean(axis=0), x.std(axis=0)
    return mean, np.where(std == 0, 1.0, std)


def test_statistics_come_from_the_training_part_and_every_tool_applies_them(tmp_path):
    x, y = data(tmp_path)
    folder = make_model(tmp_path, LINEAR, seed=3)
    run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--normalize", "--validation-split", "0.3", "--seed", "5",
         "--epochs", "2", "--batch-size", "7", "--lr", "0.5"], cwd=tmp_path)
    train_idx, val_idx = split(len(x), 0.3, 5)
    assert len(val_idx) == 9
    mean, std = np.load(folder / "normalization" / "mean.npy"), np.load(folder / "normalization" / "std.npy")
    expected_mean, expected_std = stats_by_numpy(x[train_idx])
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(std, expected_std, rtol=1e-13)
    assert std[3] == 1.0  # the constant feature: std 1, so it becomes x − mean = 0
    assert not np.allclose(mean, x.mean(axis=0))  # the validation part is left out

    W, b = np.load(folder / "layer_01" / "W.npy"), np.load(folder / "layer_01" / "b.npy")
    z = (x - mean) / std
    expected = softmax(z @ W + b)
    np.testing.assert_allclose(parse(run(["predict", "m", "x.txt"], cwd=tmp_path).stdout), expected, rtol=0, atol=1e-12)
    out = dict(line.split("\t") for line in run(["evaluate", "m", "-x", "x.txt", "-y", "y.txt"], cwd=tmp_path)
               .stdout.decode().splitlines())
    loss = -np.mean(np.log(expected[np.arange(len(y)), y]))
    assert abs(float(out["loss"]) - loss) < 1e-6 * loss
    assert int(out["correct"]) == int((expected.argmax(axis=1) == y).sum())
    run(["backprop", "m", "-x", "x.txt", "-y", "y.txt", "-o", "g"], cwd=tmp_path)
    delta = expected - np.eye(3)[y]
    np.testing.assert_allclose(np.load(tmp_path / "g" / "layer_01" / "W.npy"), z.T @ delta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.load(tmp_path / "g" / "layer_01" / "b.npy"), delta.sum(axis=0), rtol=1e-10,
                               atol=1e-12)

    # training on keeps the statistics bit for bit, --normalize or not, and an update carries them too
    before = {name: (folder / "normalization" / name).read_bytes() for name in ("mean.npy", "std.npy")}
    run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "1"], cwd=tmp_path)
    run(["model-update", "m", "g", "--lr", "0.1"], cwd=tmp_path)
    assert {name: (folder / "normalization" / name).read_bytes() for name in before} == before
    # a model trained on raw inputs cannot start normalising later
    raw = make_model(tmp_path, LINEAR, "raw")
    run(["train", "raw", "-x", "x.txt", "-y", "y.txt", "--epochs", "1"], cwd=tmp_path)
    proc = run(["train", "raw", "-x", "x.txt", "-y", "y.txt", "--epochs", "1", "--normalize"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "--normalize", "raw inputs")
    assert not (raw / "normalization").exists()


def test_two_runs_equal_one_and_the_pipeline_scripts_apply_the_statistics(tmp_path):
    x, _ = data(tmp_path, n=16, seed=1)
    once = make_model(tmp_path, LINEAR, "once", seed=4)
    twice, piped = copy_model(once, "twice"), copy_model(once, "piped")
    common = ["-x", "x.txt", "-y", "y.txt", "--batch-size", "8", "--lr", "0.3", "--seed", "2", "--normalize"]
    run(["train", "once", *common, "--epochs", "2"], cwd=tmp_path)
    run(["train", "twice", *common, "--epochs", "1"], cwd=tmp_path)
    run(["train", "twice", *common, "--epochs", "1"], cwd=tmp_path)
    for name in ("layer_01/W.npy", "normalization/std.npy"):
        np.testing.assert_array_equal(np.load(once / name), np.load(twice / name))
    env = tool_env()
    env["PATH"] = f"{BIN}{os.pathsep}{ROOT / 'bin'}{os.pathsep}{env['PATH']}"
    run(["pipeline-train", "piped", "--data", "x.txt", "--labels", "y.txt", "--epochs", "2", "--batch-size", "8",
         "--lr", "0.3", "--workers", "2", "--seed", "2", "--normalize"], cwd=tmp_path, env=env)
    np.testing.assert_array_equal(np.load(piped / "normalization/mean.npy"), np.load(once / "normalization/mean.npy"))
    np.testing.assert_allclose(np.load(piped / "layer_01/W.npy"), np.load(once / "layer_01/W.npy"), rtol=0, atol=1e-9)
    shown = run(["forward-pipeline", "--show", "once"], cwd=tmp_path, env=env).stdout.decode()
    assert shown.startswith("matrix-sub - once/normalization/mean.npy | matrix-hadamard - <(matrix-apply reciprocal "
                            "once/normalization/std.npy) | matrix-mul - once/layer_01/W.npy")
    piped_out = parse(run(["forward-pipeline", "once", "x.txt"], cwd=tmp_path, env=env).stdout)
    np.testing.assert_allclose(piped_out, parse(run(["predict", "once", "x.txt"], cwd=tmp_path).stdout), atol=1e-12)


def test_sequences_are_normalised_per_input_over_every_step(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 5, 3)) * [1.0, 50.0, 0.1] + [0.0, 10.0, -4.0]
    np.save(tmp_path / "seq.npy", x)
    savetxt(tmp_path / "y.txt", rng.integers(0, 2, 12).reshape(-1, 1))
    (tmp_path / "s.mdl").write_text("(input, 3)\n{xh, h, concatenate}\n(h, 4, <tanh>)\n(output, 2, <softmax>, <cross_entropy>)\n")
    run(["model-init", "s.mdl", "-o", "s", "--seed", "1", "--dtype", "float64"], cwd=tmp_path)
    run(["train", "s", "-x", "seq.npy", "-y", "y.txt", "--normalize", "--validation-split", "0.25", "--epochs", "1"],
        cwd=tmp_path)
    state = json.loads((tmp_path / "s" / "state.json").read_text())
    train_idx, _ = split(12, 0.25, state["seed"])
    mean, std = stats_by_numpy(x[train_idx].reshape(-1, 3))
    np.testing.assert_allclose(np.load(tmp_path / "s/normalization/mean.npy"), mean, rtol=1e-13)
    np.testing.assert_allclose(np.load(tmp_path / "s/normalization/std.npy"), std, rtol=1e-13)


@pytest.mark.parametrize("shape", [(7, 2, 3, 4), (5, 1, 1, 6)])
def test_fit_on_images_is_per_pixel_in_blocks(shape):
    rng = np.random.default_rng(7)
    x = rng.normal(size=shape) * rng.uniform(0.1, 100, size=shape[1:]) + rng.normal(size=shape[1:]) * 50
    x[:, 0, 0, 0] = 3.0  # constant
    spec = parse_model(f"{shape[3]} {shape[2]} {shape[1]}\ninput\nflatten -\ndense 2 softmax\n", "m")
    idx = np.array([4, 0, 2, 3])
    saved, normalization.CHUNK = normalization.CHUNK, 5  # blocks of one sample: the sums go block by block
    try:
        stats = normalization.fit(x, spec, idx)
    finally:
        normalization.CHUNK = saved
    rows = x[idx].reshape(len(idx), -1)
    mean, std = stats_by_numpy(rows)
    np.testing.assert_allclose(stats["mean"], mean, rtol=1e-13)
    np.testing.assert_allclose(stats["std"], std, rtol=1e-13)
    assert stats["std"][0] == 1.0
    out = normalization.apply(x.copy(), stats, spec)
    np.testing.assert_allclose(out.reshape(shape[0], -1), (x.reshape(shape[0], -1) - mean) / std, rtol=1e-15, atol=1e-15)


def test_evolve_normalize_keeps_the_statistics_with_the_best_model(tmp_path):
    x, _ = data(tmp_path, n=40, seed=3)
    run(["evolve", "-x", "x.txt", "-y", "y.txt", "--population", "2", "--generations", "1", "--epochs-per-eval", "1",
         "--normalize", "--seed", "6", "-o", "best"], cwd=tmp_path)
    train_idx, _ = split(len(x), 0.2, 6)
    mean, std = stats_by_numpy(x[train_idx].astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(np.load(tmp_path / "best/normalization/mean.npy"), mean, rtol=1e-12)
    np.testing.assert_allclose(np.load(tmp_path / "best/normalization/std.npy"), std, rtol=1e-12)
    md = ModelDir(tmp_path / "best")
    with md.pinned() as version:
        assert normalization.read(md, version) is not None


def test_normalize_minmax_maps_the_training_part_to_minus_one_one(tmp_path):
    """Issue 25: DyNet's renormalisation, stored as the same two files (centre, half-range) that every tool applies."""
    x, y = data(tmp_path)
    folder = make_model(tmp_path, LINEAR, seed=3)
    run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--normalize-minmax", "--validation-split", "0.3", "--seed", "5",
         "--epochs", "1", "--batch-size", "7"], cwd=tmp_path)
    train_idx, _ = split(len(x), 0.3, 5)
    part = x[train_idx]
    centre, half = (part.max(axis=0) + part.min(axis=0)) / 2, (part.max(axis=0) - part.min(axis=0)) / 2
    half[half == 0] = 1.0  # the constant feature
    mean, std = np.load(folder / "normalization" / "mean.npy"), np.load(folder / "normalization" / "std.npy")
    np.testing.assert_allclose(mean, centre, rtol=1e-13)
    np.testing.assert_allclose(std, half, rtol=1e-13)
    scaled = (part - mean) / std
    assert scaled[:, :3].min(axis=0) == pytest.approx(-1) and scaled[:, :3].max(axis=0) == pytest.approx(1)
    W, b = np.load(folder / "layer_01" / "W.npy"), np.load(folder / "layer_01" / "b.npy")
    expected = softmax((x - mean) / std @ W + b)
    np.testing.assert_allclose(parse(run(["predict", "m", "x.txt"], cwd=tmp_path).stdout), expected, atol=1e-12)
    fresh = make_model(tmp_path, LINEAR, "both")
    proc = run(["train", "both", "-x", "x.txt", "-y", "y.txt", "--normalize", "--normalize-minmax"], cwd=tmp_path,
               check=False)
    assert_one_line_error(proc, 2, "not both")
    assert not (fresh / "normalization").exists()


def test_unscaled_inputs_get_one_warning_on_a_fresh_model(tmp_path):
    """Issue 24, item 7: raw features of very different scales, nothing normalising them: train says so once,
    and what to add; not with --normalize, not when the model already trained, not for inputs on one scale."""
    data(tmp_path)
    make_model(tmp_path, LINEAR, "raw")
    err = run(["train", "raw", "-x", "x.txt", "-y", "y.txt", "--epochs", "1"], cwd=tmp_path).stderr.decode()
    assert err.count("warning:") == 1 and "not on one scale" in err and "--normalize" in err, err
    assert run(["train", "raw", "-x", "x.txt", "-y", "y.txt", "--epochs", "1"], cwd=tmp_path).stderr == b""
    make_model(tmp_path, LINEAR, "scaled")
    assert run(["train", "scaled", "-x", "x.txt", "-y", "y.txt", "--epochs", "1", "--normalize"],
               cwd=tmp_path).stderr == b""
    savetxt(tmp_path / "small.txt", np.random.default_rng(1).uniform(-1, 1, size=(30, 4)))
    make_model(tmp_path, LINEAR, "plain")
    assert run(["train", "plain", "-x", "small.txt", "-y", "y.txt", "--epochs", "1"], cwd=tmp_path).stderr == b""
