"""Dropout: while training, each value is kept with probability 1 − RATE and scaled by 1/(1 − RATE).

Inverted scaling leaves predictions untouched: outside training the layer is
the identity.  A sample's mask depends only on the seed, the epoch, the node,
the time step and the sample's index in the data — never on the batch or the
shard it lands in — so forked workers and MPI ranks drop exactly what one
process drops.  The masks come from a counter-based hash of those numbers
(SplitMix64's finaliser), vectorised over the batch.
"""

import numpy as np

from ..errors import ModelError
from .base import Layer, register

_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(z):
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic), in place."""
    z += _GOLDEN
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return z


def uniforms(key, ids, width):
    """(len(ids), width) numbers in [0, 1), a function of (key, sample id, unit) only."""
    with np.errstate(over="ignore"):
        z = np.asarray(ids, dtype=np.uint64)[:, None] * np.uint64(width) + np.arange(width, dtype=np.uint64)
        z ^= np.uint64(key)
        _mix(z)
        z ^= np.uint64(key) * _MIX1
        _mix(z)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def stream_key(seed, epoch, node, step):
    """One 64-bit key per (seed, epoch, node, time step)."""
    with np.errstate(over="ignore"):
        z = np.array([seed % 2**64], dtype=np.uint64)
        for part in (epoch, node, step):
            _mix(z)
            z ^= np.uint64(part % 2**64)
        return int(_mix(z)[0])


class Noise:
    """What a training call's random masks depend on: seed, epoch and the batch's sample ids."""

    carry = None  # train --bptt: the recurrent states carried between windows (kerash.training.bptt)

    def __init__(self, seed, epoch, ids, carry=None):
        self.seed, self.epoch, self.ids = seed, epoch, np.asarray(ids)
        self.carry = carry

    def rows(self, steps):
        """The ids of a batch whose T steps are folded into rows (sample-major): id·T + t."""
        return Noise(self.seed, self.epoch, (self.ids[:, None] * steps + np.arange(steps)).reshape(-1))


@register
class Dropout(Layer):
    """Y = X ⊙ mask / (1 − RATE) while training (mask ~ Bernoulli(1 − RATE)), Y = X otherwise."""

    kind = "dropout"
    keras_name = "Dropout"
    syntax = "RATE"
    stochastic = True  # the network passes it the call's Noise
    keeps_width = True  # MDL writes it as a node without width: (drop, <dropout, 0.3>)

    def __init__(self, rate):
        if not 0 <= rate < 1:
            raise ModelError(f"dropout RATE must be in [0, 1), not {rate:g}")
        self.rate = rate

    @classmethod
    def parse(cls, args):
        if len(args) != 1:
            raise ModelError("dropout takes one RATE in [0, 1), e.g. 'dropout 0.3'")
        try:
            rate = float(args[0])
        except ValueError:
            raise ModelError(f"dropout RATE must be a number in [0, 1), not {args[0]!r}") from None
        if not args[0].isascii():
            raise ModelError(f"dropout RATE must be a number in [0, 1), not {args[0]!r}")
        return cls(rate)

    def text(self):
        return f"dropout {self.rate:g}" if float(f"{self.rate:g}") == self.rate else f"dropout {self.rate!r}"

    def describe(self):
        return f"rate {self.rate:g}"

    def forward(self, p, x, noise=None, node=0, step=0):
        if noise is None or self.rate == 0:
            return x, None
        flat = x.reshape(x.shape[0], -1)
        keep = uniforms(stream_key(noise.seed, noise.epoch, node, step), noise.ids, flat.shape[1]) >= self.rate
        scale = keep.astype(x.dtype)
        scale *= 1 / (1 - self.rate)
        scale = scale.reshape(x.shape)
        return x * scale, scale

    def backward(self, p, g, ctx, dy, need_dx=True, accumulate=False):
        if not need_dx:
            return (None,)
        return (dy if ctx is None else dy * ctx,)
