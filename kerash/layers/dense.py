"""Dense layers: Y = f(X·W + b)."""

from .. import functions
from ..errors import ModelError
from .base import Layer, int_args, register, size_of, store_column_sums, store_product


@register
class Dense(Layer):
    """Y = f(X·W + b) with W (in, out), b (out,); inputs with more axes are flattened per sample."""

    kind = "dense"
    keras_name = "Dense"
    syntax = "UNITS ACTIVATION [PARAM…]"

    def __init__(self, units, activation):
        self.units = units
        self.activation = activation

    @classmethod
    def parse(cls, args):
        (units,) = int_args(args[:1], ["UNITS"], "dense")
        if len(args) < 2:
            raise ModelError("dense needs UNITS ACTIVATION [PARAM…], e.g. 'dense 10 sigmoid'")
        return cls(units, functions.get_activation(args[1]).bind(args[2:]))

    def text(self):
        return f"dense {self.units} {self.activation.text()}"

    def output_shape(self, shapes):
        return (self.units,)

    def param_shapes(self, shapes):
        return {"W": (size_of(shapes[0]), self.units), "b": (self.units,)}

    def fans(self, shapes):
        return size_of(shapes[0]), self.units

    def macs(self, shapes):
        return size_of(shapes[0]) * self.units

    def forward(self, p, x):
        flat = x.reshape(x.shape[0], -1)
        z = flat @ p["W"]
        z += p["b"]
        a = self.activation.forward(z)
        return a, (flat, x.shape, z, a)

    @staticmethod
    def pre_activation(ctx):
        """(z, f(z)) of a forward call: what a loss fused with the activation works from."""
        return ctx[2], ctx[3]

    def backward(self, p, g, ctx, dy, need_dx=True, accumulate=False):
        _, _, z, a = ctx
        return self.backward_z(p, g, ctx, self.activation.backward(z, a, dy), need_dx, accumulate)

    def backward_z(self, p, g, ctx, dz, need_dx=True, accumulate=False):
        """Backward from the gradient of the pre-activation z (used by fused losses)."""
        flat, shape = ctx[0], ctx[1]
        store_product(g, "W", flat.T, dz, accumulate)
        store_column_sums(g, "b", dz, accumulate)
        return ((dz @ p["W"].T).reshape(shape) if need_dx else None,)


@register
class Flatten(Layer):
    """(N, C, H, W) → (N, C·H·W), in the public (C, H, W) order."""

    kind = "flatten"
    keras_name = "Flatten"
    syntax = "-"

    @classmethod
    def parse(cls, args):
        if args not in ([], ["-"]):
            raise ModelError("flatten takes no arguments ('flatten -')")
        return cls()

    def text(self):
        return "flatten -"

    def output_shape(self, shapes):
        return (size_of(shapes[0]),)

    def forward(self, p, x):
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, p, g, ctx, dy, need_dx=True, accumulate=False):
        return (dy.reshape(ctx) if need_dx else None,)
