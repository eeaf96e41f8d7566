"""Merges (NeuroMorph's convergence nodes): two values in, one out.

additive u+v, multiplicative u⊙v and average (u+v)/2 need equal widths;
concatenate [u, v] joins the features of both, whatever their widths.
mix is the architecture search's mixing point (DARTS): s₀u + s₁v with
s = softmax(a), a two learnable logits (the node's parameter a.npy, trained
with the other weights); the stronger side is the one a derived graph keeps.
"""

import numpy as np

from ..errors import ModelError, close_matches
from .base import Layer, register

OPS = ("additive", "multiplicative", "average", "concatenate", "mix")


@register
class Merge(Layer):
    kind = "merge"
    arity = 2

    def __init__(self, op):
        if op not in OPS:
            raise ModelError(f"unknown merge {op!r}{close_matches(op, OPS)}; choose {', '.join(OPS)}")
        self.op = op
        self.keras_name = {"additive": "Add", "multiplicative": "Multiply", "average": "Average",
                           "concatenate": "Concatenate", "mix": "Mix"}[op]

    def param_shapes(self, shapes):
        return {"a": (2,)} if self.op == "mix" else {}

    def fans(self, shapes):
        return 2, 1

    def text(self):
        return self.op

    def describe(self):
        return self.op

    def check(self, shapes):
        u, v = shapes
        if len(u) != 1 or len(v) != 1:
            raise ModelError(f"a {self.op} merge takes vectors, not images of shape {u if len(u) != 1 else v}")
        if self.op != "concatenate" and u != v:
            raise ModelError(f"a {self.op} merge needs equal widths ({u[0]} ≠ {v[0]})")

    def output_shape(self, shapes):
        u, v = shapes
        return (self.merged_width(u[0], v[0]),)  # vectors (see check)

    def merged_width(self, u, v):
        """The width out of widths u and v in: u + v for concatenate, else u (check: equal widths).

        v may be None, not known yet: then only a concatenation's width is unknown (None).
        """
        if self.op == "concatenate":
            return None if v is None else u + v
        return u

    def forward(self, p, u, v):
        op = self.op
        if op == "mix":
            a = p["a"] - p["a"].max()
            s = np.exp(a)
            s /= s.sum()
            return u * s[0] + v * s[1], (u, v, s)
        if op == "additive":
            return u + v, None
        if op == "multiplicative":
            return u * v, (u, v)
        if op == "average":
            y = u + v
            y *= 0.5
            return y, None
        return np.concatenate((u, v), axis=1), u.shape[1]

    def backward(self, p, g, ctx, dy, need_dx=True, accumulate=False):
        op = self.op
        if op == "mix":
            u, v, s = ctx
            if g is not None:  # d/da of s₀u + s₁v through the softmax
                gs = np.array([np.vdot(dy, u), np.vdot(dy, v)])
                ga = (s * (gs - np.dot(s, gs))).astype(g["a"].dtype)
                if accumulate:
                    g["a"] += ga
                else:
                    g["a"][...] = ga
            return (dy * s[0], dy * s[1]) if need_dx else (None, None)
        if not need_dx:
            return None, None
        if op == "additive":
            return dy, dy  # the same array twice: the network copies before adding into one
        if op == "multiplicative":
            u, v = ctx
            return dy * v, dy * u
        if op == "average":
            half = dy * 0.5
            return half, half
        return dy[:, :ctx], dy[:, ctx:]
