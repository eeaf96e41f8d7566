"""Activations: each with its exact derivative, in terms of the input x and the output y = f(x)."""

import math

import numpy as np

from ..errors import UsageError
from .registry import resolve_params, lookup, like, format_value


class Activation:
    """An activation: f(x, *p), its derivative d(x, y, *p), and the backward product.

    `vjp(x, y, g, *p)` returns dL/dx given g = dL/dy; element-wise functions
    multiply by the derivative, softmax needs its whole Jacobian.
    """

    def __init__(self, name, f, d, params=(), aliases=(), doc="", vjp=None, domain=None):
        self.name = name
        self.f = f
        self.d = d
        self.params = tuple(params)
        self.aliases = tuple(aliases)
        self.doc = doc
        self._vjp = vjp
        self.domain = domain  # None: every real x; else where f and its derivative are finite, as 'x > 0'

    def vjp(self, x, y, g, *p):
        if self._vjp is not None:
            return self._vjp(x, y, g, *p)
        out = self.d(x, y, *p)
        out *= g
        return out

    def bind(self, given=()):
        """This activation with its parameters fixed, from strings or numbers."""
        return BoundActivation(self, resolve_params("activation", self.name, self.params, given))


class BoundActivation:
    """An activation with fixed parameters, as a layer uses it.

    forward(x), derivative(x, y) and backward(x, y, g) (dL/dx from dL/dy = g,
    x the pre-activation, y the output); without parameters they are the
    registry's functions themselves, saving a call on every batch.
    """

    def __init__(self, activation, values):
        self.activation = activation
        self.name = activation.name
        self.values = values
        if values:
            self.forward = lambda x: activation.f(x, *values)
            self.derivative = lambda x, y: activation.d(x, y, *values)
            self.backward = lambda x, y, g: activation.vjp(x, y, g, *values)
        else:
            self.forward, self.derivative, self.backward = activation.f, activation.d, activation.vjp

    def text(self):
        """The activation as a model file writes it: its name and every parameter."""
        return " ".join([self.name, *map(format_value, self.values)])


ACTIVATIONS = {}
_ACTIVATION_NAMES = {}


def _activation(name, params=(), aliases=(), doc="", vjp=None, domain=None):
    def register(pair):
        f, d = pair
        act = Activation(name, f, d, params, aliases, doc, vjp, domain)
        ACTIVATIONS[name] = act
        for key in (name, *aliases):
            _ACTIVATION_NAMES[key] = act
        return pair

    return register


def get_activation(name):
    """The Activation registered as `name` or one of its aliases."""
    try:
        return lookup(_ACTIVATION_NAMES, "activation", name)
    except UsageError as e:  # one of the user's own needs its functions file
        raise UsageError(f"{e}; an activation of your own: model-init --functions FILE") from None


def find_activation(name):
    """The Activation known as `name`, or None."""
    return _ACTIVATION_NAMES.get(name)


def add_activation(act):
    """Register an activation made at run time (a user's, from a functions file) under its name."""
    ACTIVATIONS[act.name] = act
    _ACTIVATION_NAMES[act.name] = act


def activation_names():
    """Every name an activation is known by (aliases included)."""
    return list(_ACTIVATION_NAMES)


def _identity_f(x):
    return x


def _identity_d(x, y):
    return np.ones_like(x)


_activation("identity", aliases=("linear",), doc="x", vjp=lambda x, y, g: g)((_identity_f, _identity_d))
_activation("binarystep", aliases=("binary_step",), doc="1 if x ≥ 0 else 0 (derivative 0)")(
    (lambda x: (x >= 0).astype(x.dtype), lambda x, y: np.zeros_like(x))
)


def _sigmoid(x):
    y = np.negative(x)
    np.exp(y, out=y)
    y += 1
    return np.reciprocal(y, out=y)


def _sigmoid_d(x, y):
    d = 1 - y
    d *= y
    return d


_activation("sigmoid", doc="1/(1+e^-x)")((_sigmoid, _sigmoid_d))


def _tanh_d(x, y):
    d = np.square(y)
    np.subtract(1, d, out=d)
    return d


_activation("tanh", doc="tanh x")((np.tanh, _tanh_d))
_activation("arctan", doc="arctan x")((np.arctan, lambda x, y: 1 / (1 + np.square(x))))
_activation("arcsinh", doc="arsinh x")((np.arcsinh, lambda x, y: 1 / np.sqrt(1 + np.square(x))))
_activation("elliotsig", doc="x/(1+|x|)")(
    (lambda x: x / (1 + np.abs(x)), lambda x, y: 1 / np.square(1 + np.abs(x)))
)
_activation("isru", params=[("alpha", 1.0)], doc="x/√(1+αx²)")(
    (
        lambda x, a: x / np.sqrt(1 + a * np.square(x)),
        lambda x, y, a: (1 / np.sqrt(1 + a * np.square(x))) ** 3,
    )
)
_activation("isrlu", params=[("alpha", 1.0)], doc="x if x ≥ 0 else x/√(1+αx²)")(
    (
        lambda x, a: np.where(x >= 0, x, x / np.sqrt(1 + a * np.square(x))),
        lambda x, y, a: np.where(x >= 0, like(x, 1), (1 / np.sqrt(1 + a * np.square(x))) ** 3),
    )
)


def _relu_vjp(x, y, g):
    return g * (x > 0)


_activation("relu", doc="max(0, x)", vjp=_relu_vjp)(
    (lambda x: np.maximum(x, 0), lambda x, y: (x > 0).astype(x.dtype))
)

# Leaky and parametric ReLU are one function with different default slopes.
_leaky = (
    lambda x, a: np.where(x >= 0, x, a * x),
    lambda x, y, a: np.where(x >= 0, like(x, 1), like(x, a)),
)
_activation("leaky_relu", params=[("alpha", 0.01)], aliases=("relu_leaky",), doc="x if x ≥ 0 else αx")(_leaky)
_activation(
    "prelu", params=[("alpha", 0.25)], aliases=("relu_parametric",), doc="x if x ≥ 0 else αx"
)(_leaky)
_activation("elu", params=[("alpha", 1.0)], doc="x if x ≥ 0 else α(eˣ−1)")(
    (
        lambda x, a: np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0))),
        lambda x, y, a: np.where(x >= 0, like(x, 1), a * np.exp(np.minimum(x, 0))),
    )
)
_SELU_LAMBDA = 1.0507009873554804934193349852946
_SELU_ALPHA = 1.6732632423543772848170429916717
_activation("selu", doc="λ·(x if x ≥ 0 else α(eˣ−1)), λ≈1.0507, α≈1.6733")(
    (
        lambda x: _SELU_LAMBDA * np.where(x >= 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0))),
        lambda x, y: _SELU_LAMBDA
        * np.where(x >= 0, like(x, 1), _SELU_ALPHA * np.exp(np.minimum(x, 0))),
    )
)


def _srelu(x, tl, al, tr, ar):
    return np.where(x <= tl, tl + al * (x - tl), np.where(x >= tr, tr + ar * (x - tr), x))


def _srelu_d(x, y, tl, al, tr, ar):
    return np.where(x <= tl, like(x, al), np.where(x >= tr, like(x, ar), like(x, 1)))


_activation(
    "srelu",
    params=[("tl", -1.0), ("al", 0.01), ("tr", 1.0), ("ar", 0.01)],
    doc="tl+al(x−tl) if x ≤ tl; x between; tr+ar(x−tr) if x ≥ tr",
)((_srelu, _srelu_d))
_activation("softplus", doc="ln(1+eˣ)")((lambda x: np.logaddexp(0, x), lambda x, y: _sigmoid(x)))
_activation("bentidentity", doc="(√(x²+1)−1)/2 + x")(
    (
        lambda x: (np.sqrt(np.square(x) + 1) - 1) / 2 + x,
        lambda x, y: x / (2 * np.sqrt(np.square(x) + 1)) + 1,
    )
)
_activation("sinusoid", doc="sin x")((np.sin, lambda x, y: np.cos(x)))


def _sinc(x):
    return np.sinc(x / np.pi)


def _sinc_d(x, y):
    # cos(x)/x − sin(x)/x² cancels badly near 0; use its series there.
    small = np.abs(x) < 1e-2
    safe = np.where(small, like(x, 1), x)
    exact = (np.cos(safe) - np.sin(safe) / safe) / safe
    x2 = np.square(x)
    series = x * (-1 / 3 + x2 * (1 / 30 - x2 / 840))
    return np.where(small, series, exact)


_activation("sinc", doc="sin(x)/x, 1 at 0")((_sinc, _sinc_d))
_activation("gaussian", doc="e^(−x²)")(
    (lambda x: np.exp(-np.square(x)), lambda x, y: -2 * x * y)
)


def _swish_d(x, y, b):
    s = _sigmoid(b * x)
    return s + b * x * s * (1 - s)


_activation("swish", params=[("beta", 1.0)], doc="x·σ(βx)")((lambda x, b: x * _sigmoid(b * x), _swish_d))

_erf_object = np.frompyfunc(math.erf, 1, 1)


def _erf(x):
    # numpy has no erf; math.erf is exact to double precision.
    return _erf_object(x).astype(x.dtype)


def _gelu(x):
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def _gelu_d(x, y):
    cdf = 0.5 * (1 + _erf(x / math.sqrt(2)))
    pdf = np.exp(-0.5 * np.square(x)) / math.sqrt(2 * math.pi)
    return cdf + x * pdf


_activation("gelu", doc="x·Φ(x), exact (erf-based)")((_gelu, _gelu_d))


def _softmax(x):
    # Row-wise over the last axis, shifted by the row maximum for stability.
    y = x - x.max(axis=-1, keepdims=True)
    np.exp(y, out=y)
    y /= y.sum(axis=-1, keepdims=True)
    return y


def _softmax_vjp(x, y, g):
    dx = g - (g * y).sum(axis=-1, keepdims=True)
    dx *= y
    return dx


_activation(
    "softmax",
    doc="row-wise e^x/Σe^x; --derivative gives the Jacobian diagonal s(1−s)",
    vjp=_softmax_vjp,
)((_softmax, _sigmoid_d))


# Element-wise functions for data (a z-score as a pipe, a log transform), with
# exact derivatives; evolve does not pick them as hidden activations.
_activation("sqrt", doc="√x", domain="x > 0")((np.sqrt, lambda x, y: 0.5 / y))
_activation("reciprocal", doc="1/x", domain="x ≠ 0")((lambda x: 1 / x, lambda x, y: -np.square(y)))
_activation("abs", doc="|x| (derivative sign x, 0 at 0)")((np.abs, lambda x, y: np.sign(x)))
_activation("log", aliases=("ln",), doc="ln x", domain="x > 0")((np.log, lambda x, y: 1 / x))
_activation("exp", doc="eˣ")((np.exp, lambda x, y: y.copy()))
_activation("square", doc="x²")((np.square, lambda x, y: 2 * x))


def activation_table():
    """Rows (name, aliases, parameters, formula) for `matrix-apply --list`."""
    rows = []
    for act in ACTIVATIONS.values():
        params = ", ".join(f"{p}={format_value(d)}" for p, d in act.params)
        doc = f"{act.doc}, for {act.domain}" if act.domain else act.doc
        rows.append((act.name, ", ".join(act.aliases), params, doc))
    return rows


