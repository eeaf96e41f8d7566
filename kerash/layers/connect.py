"""DyNet's connectivity: a dense layer in which only listed connections exist, some sharing one weight.

`connect UNITS ACTIVATION CONNECTIONS`: CONNECTIONS lists `I:J` (input I
feeds unit J, both counted from 0) and `b:J` (unit J has a bias), separated
by commas; `I:J=G` puts the connection in tied group G (a name or number):
every connection of a group is one weight — a time-delay network's shared
weights, or any symmetry.  The weights are still a full W (inputs, UNITS)
and b, ordinary .npy files: the connections that do not exist are zero and
stay zero (their gradient is zero), and the connections of a group start
equal and get the group's summed gradient, so every optimiser keeps them
equal.
"""

import numpy as np

from .. import functions
from ..errors import ModelError
from .base import Layer, int_args, register, size_of


def parse_connections(text, units):
    """[(input or 'b', unit, group or None)] of 'I>J[=G],…'."""
    found = []
    for item in text.split(","):
        conn, _, group = item.partition("=")
        source, arrow, target = conn.partition(":")
        ok = arrow and target.isdigit() and (source == "b" or source.isdigit())
        if not ok or int(target) >= units or (group == "" and "=" in item):
            raise ModelError(f"connect: {item!r} is not a connection I:J, b:J or I:J=GROUP with J below {units}")
        found.append(("b" if source == "b" else int(source), int(target), group or None))
    if len({(s, t) for s, t, _ in found}) != len(found):
        raise ModelError("connect: a connection is listed twice")
    return found


@register
class Connect(Layer):
    """A masked dense layer with tied weights (see the module docstring)."""

    kind = "connect"
    keras_name = "Connect"
    syntax = "UNITS ACTIVATION CONNECTIONS"
    mdl_width = True  # (NAME, UNITS, <connect, CONNECTIONS>, <ACTIVATION>) in MDL

    def __init__(self, units, activation, connections):
        self.units, self.activation, self.connections = units, activation, connections

    @classmethod
    def parse(cls, args):
        if len(args) < 3:
            raise ModelError("connect takes UNITS ACTIVATION CONNECTIONS, e.g. 'connect 2 sigmoid 0:0,1:0,b:0,0:1,1:1,b:1'")
        (units,) = int_args(args[:1], ["UNITS"], "connect")
        return cls(units, functions.get_activation(args[1]).bind(args[3:]), parse_connections(args[2], units))

    @classmethod
    def parse_width(cls, width, params, activation=None):
        if not params:
            raise ModelError("write a connection node (NAME, UNITS, <connect, I:J …>, <ACTIVATION>), e.g. "
                             "(h, 2, <connect, 0:0 1:0 b:0>, <sigmoid>)")
        return cls(width, activation or functions.get_activation("identity").bind(),
                   parse_connections(",".join(params), width))

    def _list(self):
        return ",".join(f"{s}:{t}" + (f"={g}" if g is not None else "") for s, t, g in self.connections)

    def text(self):
        act = self.activation.text().split()
        return " ".join([f"connect {self.units} {act[0]} {self._list()}", *act[1:]])

    def mdl_params(self):
        return self._list().split(",")

    def describe(self):
        return f"{self.activation.text()}, {len(self.connections)} connections, {self.real_weights()} weights"

    def real_weights(self):
        """Weights that train: a group counts once."""
        return len({g if g is not None else (s, t) for s, t, g in self.connections})

    def check(self, shapes):
        width = size_of(shapes[0])
        bad = [s for s, _, _ in self.connections if s != "b" and s >= width]
        if bad:
            raise ModelError(f"connect: input {bad[0]} does not exist (the layer reads {width} values)")

    def output_shape(self, shapes):
        return (self.units,)

    def param_shapes(self, shapes):
        return {"W": (size_of(shapes[0]), self.units), "b": (self.units,)}

    def fans(self, shapes):
        counts = np.bincount([t for s, t, _ in self.connections if s != "b"], minlength=self.units)
        return max(1, int(counts.max(initial=1))), self.units

    def macs(self, shapes):
        return len(self.connections)

    def _masks(self, shapes):
        key = tuple(shapes)
        cached = getattr(self, "_cache", None)
        if cached is None or cached[0] != key:
            mw = np.zeros(shapes, dtype=bool)
            mb = np.zeros(self.units, dtype=bool)
            groups = {}
            for s, t, g in self.connections:
                if s == "b":
                    mb[t] = True
                else:
                    mw[s, t] = True
                if g is not None:
                    groups.setdefault(g, []).append((s, t))
            cached = self._cache = (key, mw, mb, list(groups.values()))
        return cached[1:]

    def constrain(self, p):
        """Fresh weights made to fit: absent connections 0, each group's the mean of its drawn values."""
        mw, mb, groups = self._masks(p["W"].shape)
        p["W"][~mw] = 0
        p["b"][~mb] = 0
        for members in groups:
            value = np.mean([p["b"][t] if s == "b" else p["W"][s, t] for s, t in members])
            for s, t in members:
                if s == "b":
                    p["b"][t] = value
                else:
                    p["W"][s, t] = value

    def forward(self, p, x):
        mw, mb, _ = self._masks(p["W"].shape)
        flat = x.reshape(x.shape[0], -1)
        w = np.where(mw, p["W"], 0).astype(flat.dtype, copy=False)
        z = flat @ w
        z += np.where(mb, p["b"], 0)
        a = self.activation.forward(z)
        return a, (flat, x.shape, z, a, w)

    def backward(self, p, g, ctx, dy, need_dx=True, accumulate=False):
        flat, shape, z, a, w = ctx
        dz = self.activation.backward(z, a, dy)
        if g is not None:
            mw, mb, groups = self._masks(p["W"].shape)
            gw = np.where(mw, flat.T @ dz, 0)
            gb = np.where(mb, dz.sum(axis=0), 0)
            for members in groups:  # a group is one weight: each member gets the group's gradient
                total = sum(gb[t] if s == "b" else gw[s, t] for s, t in members)
                for s, t in members:
                    if s == "b":
                        gb[t] = total
                    else:
                        gw[s, t] = total
            if accumulate:
                g["W"] += gw
                g["b"] += gb
            else:
                g["W"][...] = gw
                g["b"][...] = gb
        return ((dz @ w.T).reshape(shape) if need_dx else None,)
