"""Initialisers of weights: named, with parameters."""

import math

import numpy as np

from .registry import checked_params, format_value, lookup


class Initializer:
    """Draws a tensor: init(rng, shape, fan_in, fan_out, *params), always in float64."""

    def __init__(self, name, draw, params=(), doc="", check=None):
        self.name = name
        self.draw = draw
        self.params = tuple(params)
        self.doc = doc
        self.check = check

    def bind(self, given=()):
        """The drawing function for these parameters; impossible ones are refused here, before any draw."""
        values = checked_params("initialiser", self.name, self.params, given, self.check)
        return lambda rng, shape, fan_in, fan_out: self.draw(rng, shape, fan_in, fan_out, *values)


INITIALIZERS = {}


def _initializer(name, params=(), doc="", check=None):
    def register(draw):
        INITIALIZERS[name] = Initializer(name, draw, params, doc, check)
        return draw

    return register


def _ordered(a, b):
    if a > b:
        return f"the range {format_value(a)} {format_value(b)} is empty (a must be ≤ b)"
    if not math.isfinite(b - a):
        return f"the range {format_value(a)} {format_value(b)} is wider than a float can hold"
    return None


def _spread(mu, sigma):
    return None if sigma >= 0 else f"the standard deviation must be ≥ 0, not {format_value(sigma)}"


def get_initializer(name):
    return lookup(INITIALIZERS, "initialiser", name)


@_initializer("xavier", doc="U(±√(6/(in+out)))")
def _xavier(rng, shape, fan_in, fan_out):
    limit = math.sqrt(6 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


INITIALIZERS["glorot"] = INITIALIZERS["xavier"]  # Glorot and Bengio's name for it (Keras's glorot_uniform)


@_initializer("he", doc="U(±√(6/in))")
def _he(rng, shape, fan_in, fan_out):
    limit = math.sqrt(6 / fan_in)
    return rng.uniform(-limit, limit, size=shape)


@_initializer("lecun", doc="U(±√(3/in))")
def _lecun(rng, shape, fan_in, fan_out):
    limit = math.sqrt(3 / fan_in)
    return rng.uniform(-limit, limit, size=shape)


@_initializer("uniform", params=[("a", None), ("b", None)], doc="U(a, b)", check=_ordered)
def _uniform(rng, shape, fan_in, fan_out, a, b):
    return rng.uniform(a, b, size=shape)


@_initializer("normal", params=[("mu", None), ("sigma", None)], doc="N(μ, σ²)", check=_spread)
def _normal(rng, shape, fan_in, fan_out, mu, sigma):
    return rng.normal(mu, sigma, size=shape)


@_initializer("zero", doc="0")
def _zero(rng, shape, fan_in, fan_out):
    return np.zeros(shape)


@_initializer("const_flat", params=[("a", None)], doc="a")
def _const_flat(rng, shape, fan_in, fan_out, a):
    return np.full(shape, a, dtype=np.float64)


@_initializer("const_uneven", params=[("a", None), ("b", None)], doc="N(a, b²)", check=_spread)
def _const_uneven(rng, shape, fan_in, fan_out, a, b):
    return rng.normal(a, b, size=shape)
