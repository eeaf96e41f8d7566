"""Convolution and max-pooling, computed on batches laid out (C, N, H, W).

One channel of a whole batch is contiguous, so patches are block copies and a
convolution is one product whose result is the next layer's input as it
stands (see kernels.py).  Files, tools and shapes stay (C, H, W) per sample:
the network transposes only where a run of such layers begins or ends.
"""

import numpy as np

from .. import functions
from ..errors import ModelError
from . import kernels
from .base import Layer, int_args, register, store_column_sums

POOL_WORK_PER_VALUE = 40


def _window_shape(kind, shape, kh, kw, stride, pad, channels=None):
    if len(shape) != 3:
        raise ModelError(f"{kind} needs an image input (C,H,W), but its input is a vector of {shape[0]}")
    c, h, w = shape
    return (
        c if channels is None else channels,
        kernels.conv_output_size(h, kh, stride, pad),
        kernels.conv_output_size(w, kw, stride, pad),
    )


def _check_window(kind, shape, kh, kw, pad):
    if len(shape) != 3:
        raise ModelError(f"{kind} needs an image input (C,H,W), but its input is a vector of {shape[0]}")
    _, h, w = shape
    if kh > h + 2 * pad or kw > w + 2 * pad:
        raise ModelError(f"{kind} window {kw}×{kh} is larger than its padded input {w + 2 * pad}×{h + 2 * pad}")


@register
class Convolution(Layer):
    """Y = f(conv(X, W) + b) with W (F, C, KH, KW), b (F,); (C, N, H, W) → (F, N, OH, OW).

    The activation is applied per pixel over the F filters (softmax runs
    across filters).
    """

    kind = "convolution"
    keras_name = "Convolution"
    layout = "cnhw"
    syntax = "ACTIVATION FILTERS STRIDE PAD KW KH [PARAM…]"

    def __init__(self, filters, kh, kw, stride, pad, activation):
        self.filters, self.kh, self.kw, self.stride, self.pad = filters, kh, kw, stride, pad
        self.activation = activation

    @classmethod
    def parse(cls, args):
        if not args:
            raise ModelError("convolution needs ACTIVATION FILTERS STRIDE PAD KW KH")
        filters, stride, pad, kw, kh = int_args(
            args[1:6], ["FILTERS", "STRIDE", "PAD", "KW", "KH"], "convolution ACTIVATION"
        )
        # Activation parameters come last, after the window: 'convolution elu 4 1 1 3 3 0.5'.
        return cls(filters, kh, kw, stride, pad, functions.get_activation(args[0]).bind(args[6:]))

    def text(self):
        name, _, params = self.activation.text().partition(" ")
        window = f"{self.filters} {self.stride} {self.pad} {self.kw} {self.kh}"
        return " ".join(filter(None, ["convolution", name, window, params]))

    def check(self, shapes):
        _check_window(self.kind, shapes[0], self.kh, self.kw, self.pad)

    def output_shape(self, shapes):
        return _window_shape(self.kind, shapes[0], self.kh, self.kw, self.stride, self.pad, self.filters)

    def param_shapes(self, shapes):
        return {"W": (self.filters, shapes[0][0], self.kh, self.kw), "b": (self.filters,)}

    def fans(self, shapes):
        return shapes[0][0] * self.kh * self.kw, self.filters * self.kh * self.kw

    def describe(self):
        return f"{self.activation.text()}, {self.kw}×{self.kh}/{self.stride}"

    def macs(self, shapes):
        _, oh, ow = self.output_shape(shapes)
        return shapes[0][0] * self.kh * self.kw * self.filters * oh * ow

    def forward(self, p, x):
        cols, oh, ow = kernels.im2col(x, self.kh, self.kw, self.stride, self.pad)
        wmat = kernels.kernel_matrix(p["W"])
        z = wmat @ cols  # (F, N·OH·OW): one column per pixel
        z += p["b"][:, None]
        # Activations run along the last axis (softmax across filters): on the transposed view.
        a = self.activation.forward(z.T).T
        return a.reshape(self.filters, x.shape[1], oh, ow), (x.shape, cols, wmat, oh, ow, z, a)

    @staticmethod
    def pre_activation(ctx):
        """(z, f(z)) of a forward call, as rows of pixels (N·OH·OW, F)."""
        return ctx[5].T, ctx[6].T

    def backward(self, p, g, ctx, dy, need_dx=True, accumulate=False):
        x_shape, cols, wmat, oh, ow, z, a = ctx
        dz = self.activation.backward(z.T, a.T, dy.reshape(self.filters, -1).T).T  # (F, N·OH·OW)
        if g is not None:
            dw = (dz @ cols.T).reshape(p["W"].shape)
            if accumulate:
                g["W"] += dw
            else:
                np.copyto(g["W"], dw)
            store_column_sums(g, "b", dz.T, accumulate)
        if not need_dx:
            return (None,)
        return (kernels.col2im(wmat.T @ dz, x_shape, self.kh, self.kw, self.stride, self.pad, oh, ow),)


@register
class MaxPooling(Layer):
    """Max over KH×KW windows of each channel; (C, N, H, W) → (C, N, OH, OW)."""

    kind = "max_pooling"
    keras_name = "MaxPooling"
    layout = "cnhw"
    syntax = "- STRIDE PAD KW KH"

    def __init__(self, kh, kw, stride, pad):
        self.kh, self.kw, self.stride, self.pad = kh, kw, stride, pad

    @classmethod
    def parse(cls, args):
        if not args or args[0] != "-":
            raise ModelError("expected 'max_pooling - STRIDE PAD KW KH' (the '-' stands for no activation)")
        stride, pad, kw, kh = int_args(args[1:], ["STRIDE", "PAD", "KW", "KH"], "max_pooling -")
        if len(args) > 5:
            raise ModelError("max_pooling takes only - STRIDE PAD KW KH")
        return cls(kh, kw, stride, pad)

    def text(self):
        return f"max_pooling - {self.stride} {self.pad} {self.kw} {self.kh}"

    def check(self, shapes):
        _check_window(self.kind, shapes[0], self.kh, self.kw, self.pad)
        if 2 * self.pad > min(self.kw, self.kh):
            raise ModelError(f"max_pooling padding {self.pad} must be at most half the window")

    def output_shape(self, shapes):
        return _window_shape(self.kind, shapes[0], self.kh, self.kw, self.stride, self.pad)

    def describe(self):
        return f"{self.kw}×{self.kh}/{self.stride}"

    def macs(self, shapes):
        # No multiply-adds, but gathering and comparing windows takes as long as 40
        # or more of them per input value (on the digits CNN, pooling took 10–20 ns
        # a value; the MLP's small dense layers about 0.1 ns a multiply-add).
        return POOL_WORK_PER_VALUE * shapes[0][0] * shapes[0][1] * shapes[0][2]

    def forward(self, p, x):
        out, won = kernels.maxpool_forward(x, self.kh, self.kw, self.stride, self.pad)
        return out, (won, x.shape)

    def backward(self, p, g, ctx, dy, need_dx=True, accumulate=False):
        if not need_dx:
            return (None,)
        won, x_shape = ctx
        return (kernels.maxpool_backward(dy, won, x_shape, self.kh, self.kw, self.stride, self.pad),)
