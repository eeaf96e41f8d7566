"""Tensor operations behind the matrix and tensor tools, with shape checks.

Layout: a sample is (C, H, W), a batch (N, C, H, W), kernels (F, C, KH, KW).
Convolution is cross-correlation with symmetric zero padding, as PyTorch's
conv2d; max-pooling pads with −∞, as PyTorch's max_pool2d.  Both are
vectorised: sliding windows and one matrix product, loops only over kernel
offsets, never over pixels.
"""

import numpy as np

from .errors import DataError, ShapeError, UsageError


def shape_str(shape):
    """(4, 2) -> '4×2'; () -> 'scalar'."""
    return "×".join(str(d) for d in shape) if len(shape) else "scalar"


def as_matrix(a):
    """Scalars and vectors become 1×n matrices; matrices stay as they are."""
    a = np.asarray(a)
    if a.ndim < 2:
        return a.reshape(1, -1)
    return a


# ---------------------------------------------------------------- matrices


def matmul(a, b):
    a, b = as_matrix(a), as_matrix(b)
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(
            f"matrix-mul multiplies matrices, got {a.ndim}-D {shape_str(a.shape)} and {b.ndim}-D {shape_str(b.shape)}"
        )
    if a.shape[1] != b.shape[0]:
        raise ShapeError(
            f"cannot multiply {shape_str(a.shape)} by {shape_str(b.shape)} "
            f"(inner dimensions {a.shape[1]} ≠ {b.shape[0]})"
        )
    return a @ b


_ELEMENTWISE = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply}


def elementwise(op, a, b):
    """a (op) b element by element; b may broadcast (a bias row added to every row)."""
    a, b = np.asarray(a), np.asarray(b)
    try:
        out_shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        out_shape = None
    if out_shape is None or out_shape != a.shape and out_shape != b.shape:
        raise ShapeError(
            f"cannot {op} {shape_str(a.shape)} and {shape_str(b.shape)} (shapes differ and do not broadcast)"
        )
    return _ELEMENTWISE[op](a, b)


def transpose(a):
    return as_matrix(a).T


def _check_axis(a, axis):
    if axis is not None and not -a.ndim <= axis < a.ndim:
        raise ShapeError(f"axis {axis} is out of range for a {a.ndim}-D tensor of shape {shape_str(a.shape)}")


def reduce(kind, a, axis=None):
    """Sum or mean of all values, or along one axis (kept as a dimension of size 1)."""
    a = as_matrix(a)
    _check_axis(a, axis)
    fn = np.sum if kind == "sum" else np.mean
    if axis is None:
        return fn(a)
    return fn(a, axis=axis, keepdims=True)


STATS = ("count", "nan", "mean", "std", "min", "max")


def column_stats(a):
    """{name: one value per column} for STATS: values and NaNs counted, then NaNs left out.

    A matrix has its columns, a vector one column, a batch (N, …) one column
    per feature of a sample.  std is the population standard deviation
    (÷N, as for a z-score); a column of NaNs only has NaN statistics.
    """
    a = np.asarray(a, dtype=np.float64)
    a = a.reshape(-1, 1) if a.ndim < 2 else a.reshape(a.shape[0], int(np.prod(a.shape[1:])))
    missing = np.isnan(a)
    count = a.shape[0] - missing.sum(axis=0)
    present = np.maximum(count, 1)
    zeroed = np.where(missing, 0.0, a)
    mean = zeroed.sum(axis=0) / present
    spread = np.where(missing, 0.0, a - mean)
    std = np.sqrt(np.einsum("ij,ij->j", spread, spread) / present)
    empty = count == 0
    lowest = np.where(missing, np.inf, a).min(axis=0, initial=np.inf)
    highest = np.where(missing, -np.inf, a).max(axis=0, initial=-np.inf)
    for values in (mean, std, lowest, highest):
        values[empty] = np.nan
    return {"count": count, "nan": missing.sum(axis=0), "mean": mean, "std": std, "min": lowest, "max": highest}


def create(rows, cols, fill=None, init=None, params=(), seed=None):
    """A rows×cols matrix: zeros, a constant, or drawn by an initialiser (fan in = rows, fan out = cols)."""
    if rows < 0 or cols < 0:
        raise UsageError(f"rows and columns must be ≥ 0, got {rows} and {cols}")
    if fill is not None and init is not None:
        raise UsageError("give either --fill or --init, not both")
    if init is None:
        if params:
            raise UsageError("--param needs --init")
        return np.full((rows, cols), 0.0 if fill is None else fill)
    from .functions import get_initializer

    draw = get_initializer(init).bind(params)
    return draw(np.random.default_rng(seed), (rows, cols), max(rows, 1), max(cols, 1))


def similar(eps, a, b):
    """True when a and b have the same shape and every |a−b| ≤ eps (equal infinities and NaNs count as equal)."""
    a, b = as_matrix(a), as_matrix(b)
    if a.shape != b.shape:
        return False
    with np.errstate(invalid="ignore"):
        close = (np.abs(a - b) <= eps) | (a == b) | (np.isnan(a) & np.isnan(b))
    return bool(np.all(close))


# ---------------------------------------------------------------- tensors


def as_samples(t, name="input"):
    """(N, C, H, W) view of a batch, a sample (C,H,W) or a matrix (H,W)."""
    t = np.asarray(t)
    if 2 <= t.ndim <= 4:
        return t.reshape((1,) * (4 - t.ndim) + t.shape)
    raise ShapeError(f"{name} must be a matrix (H,W), a sample (C,H,W) or a batch (N,C,H,W), got {shape_str(t.shape)}")


def tensor_slice(t, x, y, z, w, h, d, pad=0):
    """The w×h×d sub-tensor whose corner is (x, y, z) in the input padded by `pad`; zero outside."""
    if min(w, h, d) < 1:
        raise UsageError(f"slice sizes must be ≥ 1, got width {w}, height {h}, depth {d}")
    if pad < 0:
        raise UsageError(f"--pad must be ≥ 0, got {pad}")
    batch = as_samples(t)
    n, c, height, width = batch.shape
    out = np.zeros((n, d, h, w), dtype=batch.dtype)
    # source ranges in input coordinates (spatial ones shifted by the padding)
    xs, ys, zs = x - pad, y - pad, z
    src = [(zs, d, c), (ys, h, height), (xs, w, width)]
    lo = [max(s, 0) for s, _, _ in src]
    hi = [min(s + size, limit) for s, size, limit in src]
    if all(l < u for l, u in zip(lo, hi)):
        out[:, lo[0] - zs : hi[0] - zs, lo[1] - ys : hi[1] - ys, lo[2] - xs : hi[2] - xs] = batch[
            :, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]
        ]
    if np.asarray(t).ndim == 2 and d == 1:
        return out[0, 0]
    return out if np.asarray(t).ndim == 4 else out[0]


def flatten(t):
    """One row per sample: a batch (N,…) gives N rows, anything smaller one row."""
    t = np.asarray(t)
    if t.ndim == 4:
        return t.reshape(t.shape[0], int(np.prod(t.shape[1:])))  # not -1: that fails for 0 samples
    return t.reshape(1, -1)


def reshape(t, dims):
    """t with the shape `dims` (a list of whole numbers; one of them may be -1: what the others leave)."""
    t = np.asarray(t)
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        raise UsageError(f"a shape holds whole numbers ≥ 0 and at most one -1, not {' '.join(map(str, dims))}")
    known = int(np.prod([d for d in dims if d != -1], dtype=np.int64))
    if -1 in dims:
        if known == 0 or t.size % known:
            raise DataError(f"{t.size} values do not make a shape {' '.join(map(str, dims))}")
        dims = [t.size // known if d == -1 else d for d in dims]
    elif known != t.size:
        raise DataError(f"{t.size} values do not fill a shape {' '.join(map(str, dims))} ({known} values)")
    return t.reshape(dims)


# Internally convolution and pooling work on (C, N, H, W): one channel of the
# whole batch is contiguous, so a patch matrix (C·KH·KW, N·OH·OW) is built from
# KH·KW block copies, a convolution is one product W (F, C·KH·KW) · patches
# whose result (F, N·OH·OW) is the next layer's input as it stands, and kernels
# and their gradients keep their (F, C, KH, KW) order.  Files and tools stay
# (N, C, H, W).


def parse_indices(text):
    """'3 17 5' or '3,17,5' -> array of ints."""
    tokens = text.replace(",", " ").split()
    try:
        return np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError:
        bad = next(t for t in tokens if not t.lstrip("-").isdigit())
        raise UsageError(f"row numbers must be integers, not {bad!r}") from None


def take_rows(a, rows):
    """The rows (samples, along the first axis) of a at the given 0-based positions, in that order."""
    a = np.asarray(a)
    if a.ndim < 2:
        a = a.reshape(-1, 1) if a.ndim == 1 else a.reshape(1, 1)
    n = a.shape[0]
    bad = rows[(rows < 0) | (rows >= n)]
    if bad.size:
        raise ShapeError(f"row {bad[0]} is out of range: rows are numbered 0 to {n - 1}")
    return a[rows]
