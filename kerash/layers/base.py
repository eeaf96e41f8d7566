"""The registry of layer kinds, and what every kind provides.

A layer object is a configuration (units, activation, window, …) and the two
passes; it holds no weights and no caches, so one object serves every node
and every time step that uses it:

* ``forward(p, *xs) -> (y, ctx)``: p maps parameter names to arrays; ctx is
  the per-call context that backward needs (the forward cache);
* ``backward(p, g, ctx, dy, need_dx, accumulate) -> (dx, …)``: one gradient
  per input (None where need_dx is False); parameter gradients are written
  into the arrays of g, or added to them when `accumulate` is True (a layer
  that runs at several time steps sums its gradients over them); g is None
  for a frozen layer, whose parameter gradients are not computed.

Each kind also owns its line-format syntax (``parse``/``text``), its output
shape and its parameter shapes, so a new kind is one class in one place.
Shapes are per sample: (C, H, W) for images, (F,) for vectors; batches add N.
"""

import math

import numpy as np

from ..errors import ModelError, close_matches

KINDS = {}


def register(cls):
    """Class decorator: make a layer kind known by its `kind` name."""
    KINDS[cls.kind] = cls
    return cls


def get_kind(name):
    """The layer class registered as `name`."""
    try:
        return KINDS[name]
    except KeyError:
        raise ModelError(f"unknown layer {name!r}{close_matches(name, KINDS)}") from None


def size_of(shape):
    return math.prod(int(d) for d in shape)  # exact: a description may give sizes that overflow int64


class Layer:
    """A layer kind; subclasses override what they need."""

    kind = "layer"
    keras_name = "Layer"
    arity = 1  # inputs per call
    layout = "first"  # how batches of images come: "first" (N, C, H, W) or "cnhw" (C, N, H, W) (see network)
    activation = None
    syntax = ""  # the line-format arguments after the kind name, for messages
    stochastic = False  # True: forward takes the call's Noise (training) or None (see dropout)

    @classmethod
    def parse(cls, args):
        """The layer written `KIND ARGS…` in a line-format model; raises ModelError without a location."""
        raise ModelError(f"{cls.kind} cannot be written in the line format")

    def text(self):
        """The layer as a line-format model writes it; parse(text().split()[1:]) gives it back."""
        return self.kind

    def output_shape(self, shapes):
        """The per-sample output shape for per-sample input shapes (one per input)."""
        return shapes[0]

    def check(self, shapes):
        """Raise ModelError when the inputs cannot feed this layer."""

    def param_shapes(self, shapes):
        """{name: shape} of the parameters, in the order they are initialised."""
        return {}

    def fans(self, shapes):
        """(fan-in, fan-out) for the initialisers."""
        return 0, 0

    def macs(self, shapes):
        """Multiply-adds of the forward pass per sample, or their equivalent in time (to judge whether a batch is worth splitting)."""
        return 0

    def forward(self, p, *xs):
        raise NotImplementedError

    def backward(self, p, g, ctx, dy, need_dx=True, accumulate=False):
        raise NotImplementedError

    def describe(self):
        """A short text for summaries and graph pictures (activation, window…)."""
        return self.activation.text() if self.activation is not None else ""


# ---------------------------------------------------------------- argument parsing


def int_args(tokens, names, what, minimum=1):
    """Integers for the named positions of a line; PAD may be 0."""
    if len(tokens) < len(names):
        raise ModelError(f"{what} needs {' '.join(names)}, found {' '.join(tokens) or 'nothing'}")
    values = []
    for name, tok in zip(names, tokens):
        if not (tok.isascii() and tok.lstrip("-").isdigit()):
            raise ModelError(f"{what}: {name} must be an integer, not {tok!r}")
        v = int(tok)
        low = 0 if name == "PAD" else minimum
        if v < low:
            raise ModelError(f"{what}: {name} must be ≥ {low}, not {v}")
        values.append(v)
    return values


# ---------------------------------------------------------------- gradient stores


def store_product(g, name, a, b, accumulate):
    """g[name] = a·b, or g[name] += a·b when accumulating (the array of g is kept: a flat arena)."""
    target = g[name]
    if accumulate:
        target += (a @ b).reshape(target.shape)
    elif target.ndim == 2:
        np.matmul(a, b, out=target)
    else:
        np.matmul(a, b, out=target.reshape(a.shape[0], b.shape[1]))


_ONES = {}


def store_column_sums(g, name, dz, accumulate):
    """g[name] = the column sums of dz (rows: samples or pixels), or += them."""
    # A product with a vector of ones: BLAS sums a tall, narrow matrix 20× faster
    # than np.add.reduce along axis 0 (and has no Python wrapper on small ones).
    n = dz.shape[0]
    ones = _ONES.get((n, dz.dtype))
    if ones is None:
        if len(_ONES) > 32:  # a few sizes per run (batch, last batch, pixels per layer)
            _ONES.clear()
        ones = _ONES[(n, dz.dtype)] = np.ones(n, dtype=dz.dtype)
    if accumulate:
        g[name] += ones @ dz
    else:
        np.matmul(ones, dz, out=g[name])
