"""Data sets that ship with kerash.

digits: the 8×8 handwritten digits (1797 samples, 10 classes), UCI "Optical
Recognition of Handwritten Digits" (E. Alpaydin, C. Kaynak, 1998; CC BY 4.0),
as bundled in scikit-learn.  Pixels 0..16 are scaled to [0, 1].

circle: the two-class problem of the mini-framework report (seed 003):
points uniform in [0, 1]², class 0 inside the circle of radius 1/√(2π)
centred at (½, ½), class 1 outside.

Sequences (N, T, I) for recurrent models, seeded:

echo: random bits; the target at step t is the input bit of step t − delay
(0 before the first), a class at every step: only memory solves it.
parity: random bits; the target at step t is the parity of the bits so far.
adding: T steps of (value uniform in [0, 1], marker); two steps are marked,
one in each half; the target, scored at the last step, is the sum of the two
marked values (Hochreiter & Schmidhuber 1997; Le et al. 2015).  Predicting
the mean, 1, gives a mean squared error of 1/6.
"""

import gzip
import math
import os

import numpy as np

from ..errors import UsageError

NAMES = ("digits", "circle", "echo", "parity", "adding")
SEQUENCES = ("echo", "parity", "adding")


def digits():
    """(data (1797, 64) in [0, 1], labels (1797,) class indices)."""
    from ..files.tensorio import parse_tensor

    path = os.path.join(os.path.dirname(__file__), "data", "digits.csv.gz")
    with gzip.open(path, "rb") as f:
        table = parse_tensor(f.read(), path)
    return table[:, :64] / 16.0, table[:, 64]


def circle(samples=1000, seed=0):
    """(points (samples, 2), labels (samples,)): 1 outside the circle of area ½ centred in the unit square."""
    if samples < 1:
        raise UsageError(f"--samples must be ≥ 1, got {samples}")
    points = np.random.default_rng(seed).uniform(0.0, 1.0, size=(samples, 2))
    outside = np.sum(np.square(points - 0.5), axis=1) > 1 / (2 * math.pi)
    return points, outside.astype(np.float64)


def _bits(samples, steps, seed):
    if samples < 1 or steps < 1:
        raise UsageError(f"--samples and --steps must be ≥ 1, got {samples} and {steps}")
    return np.random.default_rng(seed).integers(0, 2, size=(samples, steps)).astype(np.float64)


def echo(samples=1000, steps=20, delay=5, seed=0):
    """(bits (N, T, 1), classes (N, T)): the bit of `delay` steps before, 0 before the first."""
    if not 0 <= delay < steps:
        raise UsageError(f"--delay must be in [0, steps), got {delay} for {steps} steps")
    bits = _bits(samples, steps, seed)
    target = np.zeros_like(bits)
    target[:, delay:] = bits[:, : steps - delay]
    return bits[:, :, None], target


def parity(samples=1000, steps=20, seed=0):
    """(bits (N, T, 1), classes (N, T)): the parity of the bits up to each step."""
    bits = _bits(samples, steps, seed)
    return bits[:, :, None], np.cumsum(bits, axis=1) % 2


def adding(samples=1000, steps=50, seed=0):
    """(steps (N, T, 2) of (value, marker), targets (N, 1)): the sum of the two marked values."""
    if samples < 1 or steps < 2:
        raise UsageError(f"--samples must be ≥ 1 and --steps ≥ 2, got {samples} and {steps}")
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, size=(samples, steps))
    half = steps // 2
    first = rng.integers(0, half, size=samples)
    second = rng.integers(half, steps, size=samples)
    rows = np.arange(samples)
    markers = np.zeros((samples, steps))
    markers[rows, first] = markers[rows, second] = 1.0
    target = values[rows, first] + values[rows, second]
    return np.stack([values, markers], axis=2), target[:, None]


def load(name, samples=None, seed=0, steps=None, delay=5):
    """(data, labels) of a shipped or generated data set; steps and delay for sequences."""
    if name in ("digits", "circle") and steps is not None:
        raise UsageError(f"--steps applies to sequence data sets ({', '.join(SEQUENCES)}), not {name}")
    if name == "digits":
        return digits()
    if name == "circle":
        return circle(samples or 1000, seed)
    if name == "echo":
        return echo(samples or 1000, steps or 20, delay, seed)
    if name == "parity":
        return parity(samples or 1000, steps or 20, seed)
    if name == "adding":
        return adding(samples or 1000, steps or 50, seed)
    from ..errors import close_matches

    raise UsageError(f"unknown data set {name!r}{close_matches(name, NAMES)}; choose {', '.join(NAMES)}")
