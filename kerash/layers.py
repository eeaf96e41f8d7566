"""Layers: forward and backward passes, vectorised over the batch.

Each layer caches in `forward` what `backward` needs.  `backward(dY)` stores
the parameter gradients in `self.grads` (same keys as `self.params`) and
returns dX, unless `need_dx` is False (the first layer skips that product).
Shapes are per batch: a batch of images is (N, C, H, W), of vectors (N, F).
"""

import numpy as np

from . import ops


def _store(grads, name, a, b, shape=None):
    """grads[name] = a·b, written into the existing array when there is one (a flat arena)."""
    target = grads.get(name)
    if target is None:
        product = a @ b
        grads[name] = product if shape is None else product.reshape(shape)
    elif shape is None:
        np.matmul(a, b, out=target)
    else:
        np.matmul(a, b, out=target.reshape(a.shape[0], b.shape[1]))


_ONES = {}


def _store_sum(grads, name, dz):
    """grads[name] = the column sums of dz (rows: samples or pixels)."""
    # A product with a vector of ones: BLAS sums a tall, narrow matrix 20× faster
    # than np.add.reduce along axis 0 (and has no Python wrapper on small ones).
    n = dz.shape[0]
    ones = _ONES.get((n, dz.dtype))
    if ones is None:
        if len(_ONES) > 32:  # a few sizes per run (batch, last batch, pixels per layer)
            _ONES.clear()
        ones = _ONES[(n, dz.dtype)] = np.ones(n, dtype=dz.dtype)
    target = grads.get(name)
    grads[name] = np.matmul(ones, dz, out=target)


class Layer:
    """A layer without parameters; subclasses override what they need."""

    kind = "layer"
    activation = None
    channels_last = False  # True: works on (N, H, W, C) batches (see Network)

    def __init__(self):
        self.params = {}
        self.grads = {}

    def output_shape(self, input_shape):
        return input_shape

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy, need_dx=True):
        raise NotImplementedError


class Dense(Layer):
    """Y = f(X·W + b) with W (in, out), b (out,); inputs with more axes are flattened per sample."""

    kind = "dense"

    def __init__(self, units, activation, input_shape):
        super().__init__()
        self.units = units
        self.activation = activation
        self.fan_in = int(np.prod(input_shape))
        self.fan_out = units
        self.param_shapes = {"W": (self.fan_in, units), "b": (units,)}

    def output_shape(self, input_shape):
        return (self.units,)

    def forward(self, x):
        self.x_shape = x.shape
        self.x = x.reshape(x.shape[0], -1)
        z = self.x @ self.params["W"]
        z += self.params["b"]
        self.z = z
        self.a = self.activation.forward(z)
        return self.a

    def backward(self, dy, need_dx=True):
        return self.backward_z(self.activation.backward(self.z, self.a, dy), need_dx)

    def backward_z(self, dz, need_dx=True):
        """Backward from the gradient of the pre-activation z (used by fused losses)."""
        _store(self.grads, "W", self.x.T, dz)
        _store_sum(self.grads, "b", dz)
        if need_dx:
            return (dz @ self.params["W"].T).reshape(self.x_shape)
        return None


class ChannelsLast(Layer):
    """A layer computed channels-last, (N, H, W, C), where a patch or a window row is contiguous.

    forward(X) and backward(dY) take and return (N, C, H, W) like every
    layer; forward_last and backward_last work on (N, H, W, C), so that the
    Network transposes only at the edges of a run of such layers.
    """

    channels_last = True

    def forward(self, x):
        return self.forward_last(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)

    def backward(self, dy, need_dx=True):
        dx = self.backward_last(dy.transpose(0, 2, 3, 1), need_dx)
        return None if dx is None else dx.transpose(0, 3, 1, 2)


class Convolution(ChannelsLast):
    """Y = f(conv(X, W) + b) with W (F, C, KH, KW), b (F,); X (N, C, H, W) → Y (N, F, OH, OW).

    The activation is applied per pixel over the F filters (softmax runs
    across filters).
    """

    kind = "convolution"

    def __init__(self, filters, kh, kw, stride, pad, activation, input_shape):
        super().__init__()
        c, h, w = input_shape
        self.filters, self.kh, self.kw, self.stride, self.pad = filters, kh, kw, stride, pad
        self.activation = activation
        self.fan_in = c * kh * kw
        self.fan_out = filters * kh * kw
        self.param_shapes = {"W": (filters, c, kh, kw), "b": (filters,)}

    def output_shape(self, input_shape):
        c, h, w = input_shape
        return (
            self.filters,
            ops.conv_output_size(h, self.kh, self.stride, self.pad),
            ops.conv_output_size(w, self.kw, self.stride, self.pad),
        )

    def forward_last(self, x):
        self.x_shape = x.shape
        self.cols, self.oh, self.ow = ops.im2col(x, self.kh, self.kw, self.stride, self.pad)
        self.wmat = ops.kernel_matrix(self.params["W"])
        z = self.cols @ self.wmat.T  # (N·OH·OW, F): one row per pixel
        z += self.params["b"]
        self.z = z
        self.a = self.activation.forward(z)
        return self.a.reshape(x.shape[0], self.oh, self.ow, self.filters)

    def backward_last(self, dy, need_dx=True):
        return self.backward_z(self.activation.backward(self.z, self.a, dy.reshape(-1, self.filters)), need_dx)

    def backward_z(self, dz, need_dx=True):
        """Backward from the gradient of the pre-activation rows (N·OH·OW, F); dX is (N, H, W, C)."""
        dw = ops.kernel_grad(dz.T @ self.cols, self.params["W"].shape)
        if self.grads.get("W") is None:
            self.grads["W"] = np.ascontiguousarray(dw)
        else:
            np.copyto(self.grads["W"], dw)
        _store_sum(self.grads, "b", dz)
        if not need_dx:
            return None
        return ops.col2im(dz @ self.wmat, self.x_shape, self.kh, self.kw, self.stride, self.pad, self.oh, self.ow)


class MaxPooling(ChannelsLast):
    """Max over KH×KW windows of each channel; X (N, C, H, W) → (N, C, OH, OW)."""

    kind = "max_pooling"

    def __init__(self, kh, kw, stride, pad):
        super().__init__()
        self.kh, self.kw, self.stride, self.pad = kh, kw, stride, pad

    def output_shape(self, input_shape):
        c, h, w = input_shape
        return (
            c,
            ops.conv_output_size(h, self.kh, self.stride, self.pad),
            ops.conv_output_size(w, self.kw, self.stride, self.pad),
        )

    def forward_last(self, x):
        self.out, self.x_padded = ops.maxpool_forward(x, self.kh, self.kw, self.stride, self.pad)
        return self.out

    def backward_last(self, dy, need_dx=True):
        if not need_dx:
            return None
        return ops.maxpool_backward(dy, self.out, self.x_padded, self.kh, self.kw, self.stride, self.pad)


class Flatten(Layer):
    """(N, C, H, W) → (N, C·H·W), in the public (C, H, W) order."""

    kind = "flatten"

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x):
        self.x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, need_dx=True):
        return dy.reshape(self.x_shape) if need_dx else None
