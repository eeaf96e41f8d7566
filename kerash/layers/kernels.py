"""The kernels of convolution and pooling layers: im2col, col2im, conv2d, max pooling."""

import functools
import os

import numpy as np

from ..errors import DataError, ShapeError, UsageError
from ..ops import as_samples, shape_str

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


@functools.lru_cache(maxsize=1)
def _memory():
    """This machine's memory in bytes, or None (asked once: convolution checks it at every call)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def check_fits(what, shape, dtype):
    """Refuse, with the sizes, an array that this machine's memory cannot hold (a huge --pad, say)."""
    count = 1
    for d in shape:
        count *= int(d)
    size = count * np.dtype(dtype).itemsize
    memory = _memory()
    if memory is not None and size > memory:
        raise DataError(f"{what} would be {'×'.join(map(str, shape))} values ({size / 2**30:.3g} GiB), "
                        f"more than this machine's memory ({memory / 2**30:.3g} GiB)")


def pad_spatial(x, pad, fill=0.0):
    """x (C, N, H, W) with `pad` rows and columns of `fill` around each image."""
    if not pad:
        return x
    # Borders then the interior, by slices: np.pad does the same with 0.2 ms of Python per call.
    c, n, h, w = x.shape
    check_fits(f"with padding {pad}, the images", (n, c, h + 2 * pad, w + 2 * pad), x.dtype)
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
    check_fits("the patches of the images", (c * kh * kw, n * oh * ow), x.dtype)
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
    batch = as_samples(x)
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
    batch = as_samples(x)
    out, _ = maxpool_forward(batch.transpose(1, 0, 2, 3), size, size, size if stride is None else stride, pad)
    out = out.transpose(1, 0, 2, 3)
    return np.ascontiguousarray(out.reshape(out.shape[4 - np.asarray(x).ndim :]))
