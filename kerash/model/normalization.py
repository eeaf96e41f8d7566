"""Input normalisation that travels with the model, as Keras's Normalization layer.

`train --normalize` fits each input feature's mean and standard deviation on
the training part of the data and stores them in the model's version folder
as MODEL/normalization/mean.npy and std.npy (float64 vectors, one value per
feature).  Every tool that feeds the model then computes (x − mean) / std
itself, so raw data goes in everywhere.

A feature is one value of a sample as a row of the data file: a column of
rows data, a pixel of an image (C×H×W values, as scikit-learn's
StandardScaler on the rows), and for sequences N×T×I one of the I inputs
of a step, over all steps of all sequences.  The deviation is the
population one (ddof 0).  A feature that is constant on the training data
(deviation 0, or below 1e-12 of its mean: rounding) gets std 1, so it
becomes x − mean rather than a division by zero (scikit-learn's choice).
`train --normalize-minmax` stores, in the same two files, the centre and
half-range of each feature instead: the same (x − mean) / std then maps the
training part to [−1, 1] (DyNet's renormalisation).
"""

import os

import numpy as np

from ..errors import ModelError

FOLDER = "normalization"
CHUNK = 1 << 18  # values per block while fitting: memory stays small whatever the data


def feature_count(spec):
    return int(np.prod(spec.input_shape))


def _rows(x, spec):
    """x (prepared inputs, C-contiguous) as a (rows, features) view."""
    return x.reshape(-1, feature_count(spec))


def _fit_rows(x, spec):
    """Rows of x to fit on: the padding after shorter sequences (steps all nan) left out."""
    rows = _rows(x, spec)
    if spec.whole_sequences:
        rows = rows[~np.isnan(rows).all(axis=1)]
    return rows


def fit(x, spec, idx):
    """{'mean', 'std'} (float64 vectors) of the prepared inputs x over the samples idx."""
    per_sample = int(np.prod(x.shape[1:])) or 1
    step = max(1, CHUNK // per_sample)
    width = feature_count(spec)
    count, total = 0, np.zeros(width)
    for start in range(0, len(idx), step):
        block = _fit_rows(x[idx[start : start + step]], spec)
        total += block.sum(axis=0, dtype=np.float64)
        count += block.shape[0]
    mean = total / max(count, 1)
    squares = np.zeros(width)
    for start in range(0, len(idx), step):
        block = _fit_rows(x[idx[start : start + step]], spec).astype(np.float64) - mean
        squares += np.einsum("ij,ij->j", block, block)
    std = np.sqrt(squares / max(count, 1))
    std[(std == 0) | (std <= 1e-12 * np.abs(mean))] = 1.0
    return {"mean": mean, "std": std}


def fit_minmax(x, spec, idx):
    """{'mean', 'std'} that bring each feature of the prepared inputs x over the samples idx to [-1, 1]: the
    centre (min + max) / 2 and the half-range (max − min) / 2 (DyNet's renormalisation); a constant feature
    gets 1, as in fit."""
    per_sample = int(np.prod(x.shape[1:])) or 1
    step = max(1, CHUNK // per_sample)
    width = feature_count(spec)
    low, high = np.full(width, np.inf), np.full(width, -np.inf)
    for start in range(0, len(idx), step):
        block = _fit_rows(x[idx[start : start + step]], spec)
        np.minimum(low, block.min(axis=0), out=low)
        np.maximum(high, block.max(axis=0), out=high)
    centre = (low + high) / 2
    half = (high - low) / 2
    half[(half == 0) | (half <= 1e-12 * np.abs(centre))] = 1.0
    return {"mean": centre, "std": half}


def apply(x, stats, spec):
    """(x − mean) / std in place over prepared inputs x (a C-contiguous float array); returns x."""
    rows = _rows(x, spec)
    np.subtract(rows, stats["mean"], out=rows)
    np.divide(rows, stats["std"], out=rows)
    return x


def normalized(x, stats, spec, dtype):
    """Prepared inputs in `dtype`, normalised when the model has statistics (a copy then)."""
    if stats is None:
        return x
    return apply(np.array(x, dtype=dtype, order="C"), stats, spec)


def arrays(stats):
    """The statistics as extra arrays of a save ('normalization/mean', …)."""
    return {f"{FOLDER}/{key}": value for key, value in stats.items()} if stats else {}


def read(md, version):
    """The statistics stored in the version folder `version` of the model directory `md`, or None."""
    found = md.load_extra(FOLDER, version)
    if not found:
        return None
    where = os.path.join(md.path, FOLDER)
    width = feature_count(md.spec)
    for key in ("mean", "std"):
        value = found.get(key)
        if value is None:
            raise ModelError(f"{where}/{key}.npy is missing")
        if value.shape != (width,):
            raise ModelError(f"{where}/{key}.npy has shape {value.shape} but the model reads {width} features")
        if not np.all(np.isfinite(value)):
            raise ModelError(f"{where}/{key}.npy holds non-finite values")
    if np.any(found["std"] <= 0):
        raise ModelError(f"{where}/std.npy holds deviations ≤ 0")
    return {"mean": found["mean"].astype(np.float64), "std": found["std"].astype(np.float64)}
