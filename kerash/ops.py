"""Tensor operations behind the matrix and tensor tools, with shape checks.

Layout: a sample is (C, H, W), a batch (N, C, H, W), kernels (F, C, KH, KW).
Convolution is cross-correlation with symmetric zero padding, as PyTorch's
conv2d; max-pooling pads with −∞, as PyTorch's max_pool2d.  Both are
vectorised: sliding windows and one matrix product, loops only over kernel
offsets, never over pixels.
"""

import numpy as np

from .errors import ShapeError, UsageError


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


def _as_samples(t, name="input"):
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
    batch = _as_samples(t)
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
        return t.reshape(t.shape[0], -1)
    return t.reshape(1, -1)


def conv_output_size(size, kernel, stride, pad):
    return (size + 2 * pad - kernel) // stride + 1


def _check_window(kind, h, w, kh, kw, stride, pad):
    if stride < 1:
        raise UsageError(f"{kind} stride must be ≥ 1, got {stride}")
    if pad < 0:
        raise UsageError(f"{kind} padding must be ≥ 0, got {pad}")
    if kh > h + 2 * pad or kw > w + 2 * pad:
        raise ShapeError(
            f"{kind} window {kh}×{kw} is larger than the padded input {h + 2 * pad}×{w + 2 * pad}"
        )


# Internally convolution and pooling work on (C, N, H, W): one channel of the
# whole batch is contiguous, so a patch matrix (C·KH·KW, N·OH·OW) is built from
# KH·KW block copies, a convolution is one product W (F, C·KH·KW) · patches
# whose result (F, N·OH·OW) is the next layer's input as it stands, and kernels
# and their gradients keep their (F, C, KH, KW) order.  Files and tools stay
# (N, C, H, W).


def pad_spatial(x, pad, fill=0.0):
    """x (C, N, H, W) with `pad` rows and columns of `fill` around each image."""
    if not pad:
        return x
    # Borders then the interior, by slices: np.pad does the same with 0.2 ms of Python per call.
    c, n, h, w = x.shape
    out = np.empty((c, n, h + 2 * pad, w + 2 * pad), dtype=x.dtype)
    out[:, :, :pad] = fill
    out[:, :, pad + h :] = fill
    out[:, :, pad : pad + h, :pad] = fill
    out[:, :, pad : pad + h, pad + w :] = fill
    out[:, :, pad : pad + h, pad : pad + w] = x
    return out


def _offset_view(x, i, j, stride, oh, ow):
    """x[:, :, i + stride·r, j + stride·q] for every output position (r, q): a strided view."""
    return x[:, :, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride]


# Below this output width, a patch matrix is gathered through a cached index in
# one take() (about 2 ns a value), rather than by KH·KW block copies whose
# loops over image rows of a few values cost 20 ns a row.  The index costs 8
# bytes a value and is kept: at most GATHER_MAX_VALUES a shape, and the cache
# is emptied beyond GATHER_CACHE_BYTES.
GATHER_BELOW_WIDTH = 5
GATHER_MAX_VALUES = 1 << 20
GATHER_CACHE_BYTES = 64 << 20
_patch_indices = {}


def _offset_patches(xp, kh, kw, stride, oh, ow):
    """Patches of a padded xp (C,N,HP,WP) by KH·KW block copies: (C, KH, KW, N, OH, OW)."""
    patches = np.empty(xp.shape[:1] + (kh, kw) + xp.shape[1:2] + (oh, ow), dtype=xp.dtype)
    for i in range(kh):
        for j in range(kw):
            patches[:, i, j] = _offset_view(xp, i, j, stride, oh, ow)
    return patches


def _gathered(shape, kh, kw, oh, ow):
    """Whether patches of a batch `shape` (C,N,H,W) are gathered through a cached index."""
    return ow < GATHER_BELOW_WIDTH and shape[0] * shape[1] * kh * kw * oh * ow <= GATHER_MAX_VALUES


def _patch_index(shape, kh, kw, stride, pad):
    """Positions in the flattened padded input of every patch value, in im2col's order (cached by shape; read-only)."""
    key = (shape, kh, kw, stride, pad)
    index = _patch_indices.get(key)
    if index is None:
        c, n, h, w = shape
        hp, wp = h + 2 * pad, w + 2 * pad
        oh, ow = (hp - kh) // stride + 1, (wp - kw) // stride + 1
        positions = np.arange(c * n * hp * wp, dtype=np.intp).reshape(c, n, hp, wp)
        index = _offset_patches(positions, kh, kw, stride, oh, ow).reshape(-1)
        index.flags.writeable = False
        if sum(i.nbytes for i in _patch_indices.values()) + index.nbytes > GATHER_CACHE_BYTES:
            _patch_indices.clear()
        _patch_indices[key] = index
    return index


def im2col(x, kh, kw, stride, pad):
    """Patches of x (C,N,H,W) as columns (C·KH·KW, N·OH·OW), rows in (C, KH, KW) order; and OH, OW."""
    xp = pad_spatial(x, pad)
    c, n, hp, wp = xp.shape
    oh, ow = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    if _gathered(x.shape, kh, kw, oh, ow):
        cols = np.ravel(xp).take(_patch_index(x.shape, kh, kw, stride, pad))
    else:
        cols = _offset_patches(xp, kh, kw, stride, oh, ow)
    return cols.reshape(c * kh * kw, n * oh * ow), oh, ow


def col2im(dcols, x_shape, kh, kw, stride, pad, oh, ow):
    """Adjoint of im2col: add patch gradients (C·KH·KW, N·OH·OW) back to (C,N,H,W)."""
    c, n, h, w = x_shape
    if _gathered(x_shape, kh, kw, oh, ow) and dcols.size < 100_000:
        # im2col's index backwards: one pass adds every value, in im2col's order but in float64
        # (bincount's own precision; its conversions cost more than they save on larger batches).
        hp, wp = h + 2 * pad, w + 2 * pad
        sums = np.bincount(_patch_index(x_shape, kh, kw, stride, pad), weights=np.ravel(dcols), minlength=c * n * hp * wp)
        dx = sums.astype(dcols.dtype, copy=False).reshape(c, n, hp, wp)
        return dx[:, :, pad:-pad, pad:-pad] if pad else dx
    if oh * ow < c * n:
        return _col2im_small_images(dcols, x_shape, kh, kw, stride, pad, oh, ow)
    d = dcols.reshape(c, kh, kw, n, oh, ow)
    dx = np.zeros((c, n, h + 2 * pad, w + 2 * pad), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            _offset_view(dx, i, j, stride, oh, ow)[...] += d[:, i, j]
    if pad:
        dx = dx[:, :, pad:-pad, pad:-pad]
    return dx


def _col2im_small_images(dcols, x_shape, kh, kw, stride, pad, oh, ow):
    """col2im for small images: pixels outermost, so each offset's add runs over C·N contiguous values.

    The same additions in the same order as col2im (the same bits); numpy's
    inner loops over an image row of 4 values cost more than the arithmetic.
    """
    c, n, h, w = x_shape
    d = np.ascontiguousarray(dcols.reshape(c, kh, kw, n, oh, ow).transpose(1, 2, 4, 5, 0, 3))  # (KH,KW,OH,OW,C,N)
    dx = np.zeros((h + 2 * pad, w + 2 * pad, c, n), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride] += d[i, j]
    if pad:
        dx = dx[pad:-pad, pad:-pad]
    return np.ascontiguousarray(dx.transpose(2, 3, 0, 1))


def kernel_matrix(w):
    """Kernels (F, C, KH, KW) as rows (F, C·KH·KW), matching im2col's patch rows: a view."""
    return w.reshape(w.shape[0], -1)


def _as_kernels(k, channels):
    k = np.asarray(k)
    if k.ndim == 2:
        k = k[None, None]
    elif k.ndim == 3:
        k = k[None]
    if k.ndim != 4:
        raise ShapeError(f"kernels must be (F,C,KH,KW), got {shape_str(k.shape)}")
    if k.shape[1] != channels:
        raise ShapeError(
            f"kernels {shape_str(k.shape)} have {k.shape[1]} channel(s) but the input has {channels}"
        )
    return k


def conv2d(x, kernels, stride=1, pad=0, bias=None):
    """Cross-correlate a sample (C,H,W) or batch (N,C,H,W) with kernels (F,C,KH,KW)."""
    batch = _as_samples(x)
    single = np.asarray(x).ndim < 4
    k = _as_kernels(kernels, batch.shape[1])
    f, _, kh, kw = k.shape
    _check_window("convolution", batch.shape[2], batch.shape[3], kh, kw, stride, pad)
    cols, oh, ow = im2col(batch.transpose(1, 0, 2, 3), kh, kw, stride, pad)
    out = kernel_matrix(k) @ cols
    if bias is not None:
        b = np.asarray(bias).reshape(-1)
        if b.size != f:
            raise ShapeError(f"bias has {b.size} values but there are {f} filters")
        out += b[:, None]
    out = np.ascontiguousarray(out.reshape(f, batch.shape[0], oh, ow).transpose(1, 0, 2, 3))
    if np.asarray(x).ndim == 2 and f == 1:
        return out[0, 0]  # a matrix convolved with one 2-D kernel stays a matrix
    return out[0] if single else out


def check_pooling(h, w, kh, kw, stride, pad):
    _check_window("max-pooling", h, w, kh, kw, stride, pad)
    if 2 * pad > min(kh, kw):
        raise UsageError(f"max-pooling padding {pad} must be at most half the window {kh}×{kw}")


def _pool_windows(xp, shape, kh, kw, stride, pad, oh, ow):
    """The values under each window offset, as contiguous rows: (C, KH·KW, N·OH·OW).

    Pooling then compares whole rows; numpy's loops over strided image rows
    of a few values cost more than the comparisons.
    """
    c, n = xp.shape[:2]
    if _gathered(shape, kh, kw, oh, ow):
        rows = np.ravel(xp).take(_patch_index(shape, kh, kw, stride, pad))
    else:
        rows = _offset_patches(xp, kh, kw, stride, oh, ow)
    return rows.reshape(c, kh * kw, n * oh * ow)


def maxpool_forward(x, kh, kw, stride, pad):
    """Max over windows of x (C,N,H,W): (output (C,N,OH,OW), the winner mask (C, KH·KW, N·OH·OW)).

    The winner of a window is the first offset (row by row) holding the
    maximum, PyTorch's tie rule; NaN wins its window, as in PyTorch.
    """
    check_pooling(x.shape[2], x.shape[3], kh, kw, stride, pad)
    xp = pad_spatial(x, pad, fill=-np.inf)
    oh, ow = (xp.shape[2] - kh) // stride + 1, (xp.shape[3] - kw) // stride + 1
    rows = _pool_windows(xp, x.shape, kh, kw, stride, pad, oh, ow)
    out = rows.max(axis=1)  # NaN propagates
    won = rows == out[:, None]
    nan = np.isnan(out)
    if nan.any():
        won |= np.isnan(rows) & nan[:, None]
    # Only the first winner of each window: a later one loses to any earlier.
    seen = won[:, 0].copy()
    for k in range(1, kh * kw):
        np.greater(won[:, k], seen, out=won[:, k])
        seen |= won[:, k]
    return out.reshape(x.shape[0], x.shape[1], oh, ow), won


def maxpool_backward(dout, won, x_shape, kh, kw, stride, pad):
    """Route each output gradient (C,N,OH,OW) to the input position that won its window."""
    oh, ow = dout.shape[2:]
    c, n, h, w = x_shape
    hp, wp = h + 2 * pad, w + 2 * pad
    rows = np.multiply(won, dout.reshape(c, 1, -1), dtype=dout.dtype)  # (C, KH·KW, N·OH·OW): im2col's layout
    if stride < kh or stride < kw:  # windows overlap: their gradients add up, as patches' do
        return col2im(rows.reshape(c * kh * kw, -1), x_shape, kh, kw, stride, pad, oh, ow)
    # Each input position is in one window at most: written, not added.
    if _gathered(x_shape, kh, kw, oh, ow):
        dx = np.zeros(c * n * hp * wp, dtype=dout.dtype)
        dx[_patch_index(x_shape, kh, kw, stride, pad)] = np.ravel(rows)
        dx = dx.reshape(c, n, hp, wp)
    else:
        covered = stride == kh == kw and (oh * kh, ow * kw) == (hp, wp)  # every input position in a window
        dx = (np.empty if covered else np.zeros)((c, n, hp, wp), dtype=dout.dtype)
        rows = rows.reshape(c, kh * kw, n, oh, ow)
        for k in range(kh * kw):
            _offset_view(dx, *divmod(k, kw), stride, oh, ow)[...] = rows[:, k]
    if pad:
        dx = dx[:, :, pad:-pad, pad:-pad]
    return dx


def maxpool(x, size, stride=None, pad=0):
    """Max-pool a sample (C,H,W) or batch (N,C,H,W) with a size×size window."""
    if size < 1:
        raise UsageError(f"--size must be ≥ 1, got {size}")
    batch = _as_samples(x)
    out, _ = maxpool_forward(batch.transpose(1, 0, 2, 3), size, size, size if stride is None else stride, pad)
    out = out.transpose(1, 0, 2, 3)
    return np.ascontiguousarray(out.reshape(out.shape[4 - np.asarray(x).ndim :]))


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
