"""Missing input values (nan) filled with one value per feature, fitted on the training part: it travels
with the model, as the normalisation does.

`train --impute mean|median|most-frequent` computes, for each input feature
(a column of rows data, a pixel, an input of a sequence step), the mean,
the median or the most frequent of its values on the training part that are
not missing — scikit-learn's SimpleImputer — and stores them in the version
folder as MODEL/imputation/values.npy.  Every tool that feeds the model
fills the missing values of its inputs with them before anything else
(before the normalisation).  A feature with no value at all on the training
part is filled with 0.
"""

import os

import numpy as np

from ..errors import ModelError, UsageError

FOLDER = "imputation"
METHODS = ("mean", "median", "most-frequent")


def feature_count(spec):
    return int(np.prod(spec.input_shape))


def fit(x, spec, idx, method):
    """The fill value of every feature over the rows idx of prepared inputs x (missing values left out)."""
    if method not in METHODS:
        raise UsageError(f"--impute must be {', '.join(METHODS[:-1])} or {METHODS[-1]}, not {method!r}")
    rows = np.asarray(x[idx], dtype=np.float64).reshape(-1, feature_count(spec))
    values = np.zeros(rows.shape[1])
    for k in range(rows.shape[1]):
        column = rows[:, k]
        column = column[~np.isnan(column)]
        if not len(column):
            continue
        if method == "mean":
            values[k] = column.mean()
        elif method == "median":
            values[k] = np.median(column)
        else:  # the most frequent value; the smallest of those tied, as scikit-learn
            found, counts = np.unique(column, return_counts=True)
            values[k] = found[np.argmax(counts)]
    return values


def fill(x, values, spec):
    """Prepared inputs with their missing values filled (a copy when any is missing)."""
    if values is None:
        return x
    rows = np.asarray(x).reshape(-1, feature_count(spec)) if np.asarray(x).size else None
    if rows is None or not np.isnan(rows).any():
        return x
    x = np.array(x, copy=True)
    rows = x.reshape(-1, feature_count(spec))
    missing = np.isnan(rows)
    if spec.whole_sequences:  # a step of nan alone is the padding after a shorter sequence, not missing values
        missing &= ~missing.all(axis=1, keepdims=True)
    rows[missing] = np.broadcast_to(values.astype(rows.dtype), rows.shape)[missing]
    return x


def arrays(values):
    return {f"{FOLDER}/values": values} if values is not None else {}


def read(md, version):
    """The fill values stored in the version folder, or None."""
    found = md.load_extra(FOLDER, version)
    if not found:
        return None
    where = os.path.join(md.path, FOLDER, "values.npy")
    values = found.get("values")
    if values is None:
        raise ModelError(f"{where} is missing")
    if values.shape != (feature_count(md.spec),) or not np.all(np.isfinite(values)):
        raise ModelError(f"{where} must hold {feature_count(md.spec)} finite values, one per input feature")
    return values.astype(np.float64)
