"""Data sets that ship with kerash.

digits: the 8×8 handwritten digits (1797 samples, 10 classes), UCI "Optical
Recognition of Handwritten Digits" (E. Alpaydin, C. Kaynak, 1998; CC BY 4.0),
as bundled in scikit-learn.  Pixels 0..16 are scaled to [0, 1].

circle: the two-class problem of the mini-framework report (seed 003):
points uniform in [0, 1]², class 0 inside the circle of radius 1/√(2π)
centred at (½, ½), class 1 outside.
"""

import gzip
import math
import os

import numpy as np

from .errors import UsageError

NAMES = ("digits", "circle")


def digits():
    """(data (1797, 64) in [0, 1], labels (1797,) class indices)."""
    from .tensorio import parse_tensor

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


def load(name, samples=None, seed=0):
    if name == "digits":
        return digits()
    if name == "circle":
        return circle(samples or 1000, seed)
    from .errors import close_matches

    raise UsageError(f"unknown data set {name!r}{close_matches(name, NAMES)}; choose {', '.join(NAMES)}")
