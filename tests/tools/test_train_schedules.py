"""Learning-rate schedules (step, exponential, cosine, warm-up, plateau) and growing batches through `train`,
against PyTorch's formulas and a hand-written loop; a run in two parts follows the schedule of one."""

import json
import math

import numpy as np
import pytest

from conftest import run
from helpers import make_model, weights

LINEAR = "3 1 1\ninput\ndense 2 identity\nloss mse\n"


def trace(folder):
    lines = (folder / "trace.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


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
def test_schedules_follow_pytorchs_formulas_and_resume_exactly(regression_data, kind, spec, warmup):
    folder, _, _ = regression_data
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


def test_plateau_reduces_like_reduce_lr_on_plateau(regression_data):
    folder, _, _ = regression_data
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


def test_bad_schedules_are_usage_errors(regression_data):
    folder, _, _ = regression_data
    make_model(folder, LINEAR, name="m")
    for bad in ("cosine", "step:0:0.5", "plateau:2", "exponential:nan", "linear:3"):
        proc = run(["train", "m", "-x", "x.npy", "-y", "y.npy", "--lr-schedule", bad], cwd=folder, check=False)
        assert proc.returncode == 2 and proc.stderr.decode().startswith("train: error: "), (bad, proc.stderr)


# ---------------------------------------------------------------- growing batches


def test_growing_batches_equal_a_hand_written_loop(regression_data):
    from kerash.training.batches import epoch_batches, split

    folder, x, y = regression_data
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
