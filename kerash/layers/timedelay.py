"""Time-delay layers (Waibel and Haffner's TDNN): each step reads its input at a set of offsets, weights shared
across time.

`tdnn UNITS ACTIVATION OFFSETS`: y_t = f(Σ_k x_{t+o_k}·W_k + b), the offsets a
comma-separated list or a range (`-2..2`, `-3,0,3`); an input outside the
sequence (before its first step or after its last, whatever its length) is
zero.  With consecutive offsets it is a 1-D convolution over time with zero
padding — torch's conv1d with W_k = weight[:, :, k]ᵀ — and Kaldi's TDNN
layers are its descendants.  W is (K·I, UNITS), the rows of offset k
together; the steps are gathered side by side and multiplied once.
"""

import numpy as np

from .. import functions
from ..errors import ModelError
from .base import Layer, int_args, register, size_of


MAX_OFFSETS, MAX_OFFSET = 1024, 100_000  # a window of the steps around each step, not a whole recording


def parse_offsets(text):
    """[offsets] of '-2..2' or '-3,0,3'."""
    try:
        if ".." in text:
            low, high = (int(v) for v in text.split(".."))
            if high - low >= MAX_OFFSETS:
                raise ModelError(f"tdnn: at most {MAX_OFFSETS} offsets, not {text!r}")
            found = list(range(low, high + 1))
        else:
            found = [int(v) for v in text.split(",")]
    except ValueError:
        found = []
    if not found or len(set(found)) != len(found):
        raise ModelError(f"tdnn: OFFSETS are distinct whole numbers, as '-2..2' or '-3,0,3', not {text!r}")
    if len(found) > MAX_OFFSETS or max(abs(o) for o in found) > MAX_OFFSET:
        raise ModelError(f"tdnn: at most {MAX_OFFSETS} offsets, each within ±{MAX_OFFSET} steps, not {text!r}")
    return found


@register
class TimeDelay(Layer):
    """A time-delay layer over whole sequences (see the module docstring)."""

    kind = "tdnn"
    keras_name = "TDNN"
    syntax = "UNITS ACTIVATION OFFSETS"
    sequence_layer = True  # reads (N, T, I): every step's output from the steps around it
    stateful = False  # nothing carries from one window to the next
    every = True
    mdl_width = True  # (NAME, UNITS, <tdnn, OFFSETS…>, <ACTIVATION>) in MDL

    def __init__(self, units, activation, offsets):
        self.units, self.activation, self.offsets = units, activation, list(offsets)

    @classmethod
    def parse(cls, args):
        if len(args) < 3:
            raise ModelError("tdnn takes UNITS ACTIVATION OFFSETS, e.g. 'tdnn 16 tanh -2..2' (the steps t−2 to t+2) "
                             "or 'tdnn 8 relu -3,0,3'")
        (units,) = int_args(args[:1], ["UNITS"], "tdnn")
        return cls(units, functions.get_activation(args[1]).bind(args[3:]), parse_offsets(args[2]))

    @classmethod
    def parse_width(cls, width, params, activation=None):
        """MDL: (NAME, UNITS, <tdnn, -2, -1, 0, 1, 2>, <tanh>) — or <tdnn, -2..2>; no activation: identity."""
        if not params:
            raise ModelError("write a time-delay node (NAME, UNITS, <tdnn, OFFSETS…>, <ACTIVATION>), e.g. "
                             "(t, 16, <tdnn, -2..2>, <tanh>)")
        offsets = parse_offsets(",".join(params)) if len(params) > 1 else parse_offsets(params[0])
        return cls(width, activation or functions.get_activation("identity").bind(), offsets)

    def text(self):
        return f"tdnn {self.units} {self.activation.text().split()[0]} {','.join(map(str, self.offsets))}" + \
            "".join(f" {p}" for p in self.activation.text().split()[1:])

    def mdl_params(self):
        return [str(o) for o in self.offsets]

    def describe(self):
        return f"{self.activation.text()}, steps {','.join(f't{o:+d}' if o else 't' for o in self.offsets)}"

    def output_shape(self, shapes):
        return (self.units,)

    def param_shapes(self, shapes):
        return {"W": (len(self.offsets) * size_of(shapes[0]), self.units), "b": (self.units,)}

    def fans(self, shapes):
        return len(self.offsets) * size_of(shapes[0]), self.units

    def macs(self, shapes):
        return len(self.offsets) * size_of(shapes[0]) * self.units

    def _gathered(self, x, inside):
        """(N, T, K·I): for each step, its input at every offset side by side; zeros outside the sequence (before
        its first step, or after its own last: `inside` (N, T), None when every sequence fills T)."""
        n, steps, i = x.shape
        if inside is not None:  # the padding after a shorter sequence holds what the layers before made of zeros
            x = x * inside[:, :, None]
        out = np.zeros((n, steps, len(self.offsets), i), dtype=x.dtype)
        for k, o in enumerate(self.offsets):
            lo, hi = max(0, -o), min(steps, steps - o)
            if lo < hi:
                out[:, lo:hi, k] = x[:, lo + o:hi + o]
        return out.reshape(n, steps, len(self.offsets) * i)

    def forward(self, p, x, lengths=None, initial=None):
        n, steps = x.shape[:2]
        x = x.reshape(n, steps, -1)
        inside = None if lengths is None else (np.arange(steps)[None, :] < lengths[:, None]).astype(x.dtype)
        rows = self._gathered(x, inside).reshape(n * steps, -1)
        z = rows @ p["W"]
        z += p["b"]
        a = self.activation.forward(z)
        return a.reshape(n, steps, self.units), (rows, x.shape, z, a, inside)

    def backward(self, p, g, ctx, dy, need_dx=True, accumulate=False):
        rows, shape, z, a, inside = ctx
        n, steps, i = shape
        dz = self.activation.backward(z, a, dy.reshape(n * steps, self.units))
        if g is not None:
            if accumulate:
                g["W"] += rows.T @ dz
                g["b"] += dz.sum(axis=0)
            else:
                np.matmul(rows.T, dz, out=g["W"])
                g["b"][...] = dz.sum(axis=0)
        if not need_dx:
            return (None,)
        dg = (dz @ p["W"].T).reshape(n, steps, len(self.offsets), i)
        dx = np.zeros(shape, dtype=dz.dtype)
        for k, o in enumerate(self.offsets):
            lo, hi = max(0, -o), min(steps, steps - o)
            if lo < hi:
                dx[:, lo + o:hi + o] += dg[:, lo:hi, k]
        if inside is not None:
            dx *= inside[:, :, None]
        return (dx,)
