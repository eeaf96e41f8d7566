"""The one registry of mathematical functions: activations, losses, initialisers.

Tools (`matrix-apply`, `matrix-create`) and layers look names up here; no
other module defines these functions.  Every activation has its exact
derivative, written in terms of the input x and the output y = f(x) so that a
layer can reuse the output it already computed.
"""

import math

import numpy as np

from .errors import UsageError, close_matches

# ---------------------------------------------------------------- parameters


def resolve_params(kind, name, declared, given):
    """Turn ['0.2', 'beta=2'] into a tuple of floats for the declared (name, default) pairs."""
    values = {}
    positional = 0
    for item in given or ():
        item = str(item).strip()
        if "=" in item:
            key, _, raw = item.partition("=")
            key = key.strip()
            if key not in dict(declared):
                names = ", ".join(p for p, _ in declared) or "none"
                raise UsageError(f"{kind} {name} has no parameter {key!r} (parameters: {names})")
        else:
            if positional >= len(declared):
                raise UsageError(
                    f"{kind} {name} takes {len(declared)} parameter(s), got {len(given)}"
                )
            key, raw = declared[positional][0], item
            positional += 1
        try:
            # float() also takes other scripts' digits and '1_000': written back, they would read differently
            if not raw.isascii() or "_" in raw:
                raise ValueError
            values[key] = float(raw)
        except ValueError:
            raise UsageError(f"parameter {key} of {kind} {name} must be a number, not {raw!r}") from None
    missing = [p for p, d in declared if d is None and p not in values]
    if missing:
        raise UsageError(f"{kind} {name} needs parameter(s) {', '.join(missing)}")
    return tuple(values.get(p, d) for p, d in declared)


def _lookup(table, kind, name):
    try:
        return table[name]
    except KeyError:
        raise UsageError(f"unknown {kind} {name!r}{close_matches(name, table)}") from None


def _like(x, value):
    """An array shaped and typed like x (python floats would promote float32 to float64)."""
    return np.asarray(value, dtype=x.dtype)


# ---------------------------------------------------------------- activations


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
        return " ".join([self.name, *map(_fmt, self.values)])


def _fmt(v):
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


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
    return _lookup(_ACTIVATION_NAMES, "activation", name)


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
        lambda x, y, a: np.where(x >= 0, _like(x, 1), (1 / np.sqrt(1 + a * np.square(x))) ** 3),
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
    lambda x, y, a: np.where(x >= 0, _like(x, 1), _like(x, a)),
)
_activation("leaky_relu", params=[("alpha", 0.01)], aliases=("relu_leaky",), doc="x if x ≥ 0 else αx")(_leaky)
_activation(
    "prelu", params=[("alpha", 0.25)], aliases=("relu_parametric",), doc="x if x ≥ 0 else αx"
)(_leaky)
_activation("elu", params=[("alpha", 1.0)], doc="x if x ≥ 0 else α(eˣ−1)")(
    (
        lambda x, a: np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0))),
        lambda x, y, a: np.where(x >= 0, _like(x, 1), a * np.exp(np.minimum(x, 0))),
    )
)
_SELU_LAMBDA = 1.0507009873554804934193349852946
_SELU_ALPHA = 1.6732632423543772848170429916717
_activation("selu", doc="λ·(x if x ≥ 0 else α(eˣ−1)), λ≈1.0507, α≈1.6733")(
    (
        lambda x: _SELU_LAMBDA * np.where(x >= 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0))),
        lambda x, y: _SELU_LAMBDA
        * np.where(x >= 0, _like(x, 1), _SELU_ALPHA * np.exp(np.minimum(x, 0))),
    )
)


def _srelu(x, tl, al, tr, ar):
    return np.where(x <= tl, tl + al * (x - tl), np.where(x >= tr, tr + ar * (x - tr), x))


def _srelu_d(x, y, tl, al, tr, ar):
    return np.where(x <= tl, _like(x, al), np.where(x >= tr, _like(x, ar), _like(x, 1)))


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
    safe = np.where(small, _like(x, 1), x)
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
        params = ", ".join(f"{p}={_fmt(d)}" for p, d in act.params)
        doc = f"{act.doc}, for {act.domain}" if act.domain else act.doc
        rows.append((act.name, ", ".join(act.aliases), params, doc))
    return rows


# ---------------------------------------------------------------- losses


class Loss:
    """A loss: per-sample values (N,) and their gradient dL_i/dŷ_i (N, K).

    The batch loss is the mean of the per-sample losses.  A loss may be fused
    with the output activations it pairs with (softmax for cross-entropy,
    sigmoid for binary cross-entropy): then it works from the pre-activation z
    for numerical stability.
    """

    def __init__(self, name, value, grad, params=(), doc="", fused=None):
        self.name = name
        self.value = value
        self.grad = grad
        self.params = tuple(params)
        self.doc = doc
        # {activation name: (value(z, ŷ, y), grad(z, ŷ, y), grad when every target row sums to 1 or None)}
        self.fused = fused or {}

    def bind(self, given=()):
        return BoundLoss(self, resolve_params("loss", self.name, self.params, given))


class BoundLoss:
    def __init__(self, loss, values):
        self.loss = loss
        self.name = loss.name
        self.values = values

    def value(self, yhat, y):
        return self.loss.value(yhat, y, *self.values)

    def grad(self, yhat, y):
        return self.loss.grad(yhat, y, *self.values)

    def fuses_with(self, activation_name):
        return activation_name in self.loss.fused

    def fusion(self, activation_name):
        """This loss worked out from the pre-activation z of the output activation, or None."""
        found = self.loss.fused.get(activation_name)
        return None if found is None else FusedLoss(found, self.values)

    def text(self):
        """The loss as a model file writes it: its name and every parameter."""
        return " ".join([self.name, *map(_fmt, self.values)])


class FusedLoss:
    """A loss together with its output activation: values and gradients from the pre-activation z."""

    def __init__(self, functions, values):
        self._value, self._grad, self._grad_unit_rows = functions
        self.values = values

    def value(self, z, yhat, y):
        return self._value(z, yhat, y, *self.values)

    def grad(self, z, yhat, y, unit_rows=False):
        """∂loss/∂z; unit_rows says every target row sums to 1 (one-hot), which may simplify it."""
        if unit_rows and self._grad_unit_rows is not None:
            return self._grad_unit_rows(z, yhat, y, *self.values)
        return self._grad(z, yhat, y, *self.values)


LOSSES = {}


def _loss(name, params=(), doc="", fused=None):
    def register(pair):
        LOSSES[name] = Loss(name, pair[0], pair[1], params, doc, fused)
        return pair

    return register


def get_loss(name):
    return _lookup(LOSSES, "loss", name)


def _units(y):
    return y.shape[-1] if y.ndim > 1 else 1


def _mean_units(a):
    return a.reshape(a.shape[0], -1).mean(axis=1)


def _eps(a):
    return 1e-7 if a.dtype == np.float32 else 1e-12


def _mse_grad(yhat, y):
    g = yhat - y
    g *= 2 / _units(y)
    return g


_loss("mse", doc="mean over units of (ŷ−y)²")((lambda yhat, y: _mean_units(np.square(yhat - y)), _mse_grad))
_loss("mae", doc="mean over units of |ŷ−y|")(
    (lambda yhat, y: _mean_units(np.abs(yhat - y)), lambda yhat, y: np.sign(yhat - y) / _units(y))
)


def _mape_scale(y):
    return 100 / np.maximum(np.abs(y), 1e-7)


_loss("mape", doc="100 · mean over units of |ŷ−y| / max(|y|, 1e-7)")(
    (
        lambda yhat, y: _mean_units(np.abs(yhat - y) * _mape_scale(y)),
        lambda yhat, y: np.sign(yhat - y) * _mape_scale(y) / _units(y),
    )
)


def _huber(yhat, y, delta):
    e = np.abs(yhat - y)
    return _mean_units(np.where(e <= delta, 0.5 * np.square(e), delta * (e - 0.5 * delta)))


def _huber_grad(yhat, y, delta):
    e = yhat - y
    return np.clip(e, -delta, delta) / _units(y)


_loss("huber", params=[("delta", 1.0)], doc="½e² if |e| ≤ δ else δ(|e|−½δ), mean over units")(
    (_huber, _huber_grad)
)


def _signed_targets(y):
    """Margin losses take targets ±1; 0/1 labels are mapped to −1/+1."""
    return np.where(y == 0, _like(y, -1), y)


def _huber_modified(yhat, y):
    z = _signed_targets(y) * yhat
    return _mean_units(np.where(z >= -1, np.square(np.maximum(0, 1 - z)), -4 * z))


def _huber_modified_grad(yhat, y):
    t = _signed_targets(y)
    z = t * yhat
    return np.where(z >= -1, -2 * t * np.maximum(0, 1 - z), -4 * t) / _units(y)


def _bce(yhat, y):
    e = _eps(yhat)
    p = np.clip(yhat, e, 1 - e)
    return -_mean_units(y * np.log(p) + (1 - y) * np.log(1 - p))


def _bce_grad(yhat, y):
    e = _eps(yhat)
    p = np.clip(yhat, e, 1 - e)
    inside = (yhat > e) & (yhat < 1 - e)
    return inside * (p - y) / (p * (1 - p)) / _units(y)


def _bce_from_z(z, yhat, y):
    # −[y log σ(z) + (1−y) log(1−σ(z))] = max(z,0) − zy + log(1+e^−|z|)
    return _mean_units(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))


def _bce_grad_from_z(z, yhat, y):
    return (yhat - y) / _units(y)


def _ce(yhat, y):
    return -(y * np.log(np.maximum(yhat, _eps(yhat)))).reshape(y.shape[0], -1).sum(axis=1)


def _ce_grad(yhat, y):
    return -y / np.maximum(yhat, _eps(yhat))


def _ce_from_z(z, yhat, y):
    # ln softmax(z)_k = z_k − m − ln S with m = max z and S = Σ e^(z−m) = 1/max softmax(z):
    # exact and stable, and it reuses the softmax the layer already computed.
    log_norm = z.max(axis=-1)
    log_norm -= np.log(yhat.max(axis=-1))
    log_norm *= y.sum(axis=-1)
    log_norm -= (y * z).sum(axis=-1)
    return log_norm


def _ce_grad_from_z(z, yhat, y):
    # d/dz of −Σ y log softmax(z) = softmax(z)·Σy − y
    total = y.sum(axis=-1, keepdims=True)
    g = yhat * total
    g -= y
    return g


def _ce_grad_unit_rows(z, yhat, y):
    return yhat - y  # softmax(z) − y when Σy = 1


_loss("huber_modified", doc="targets t=±1, z=tŷ: (max(0,1−z))² if z ≥ −1 else −4z, mean over units")(
    (_huber_modified, _huber_modified_grad)
)
_loss(
    "binary_cross_entropy",
    doc="−mean over units of y ln ŷ + (1−y) ln(1−ŷ); fused with a sigmoid output",
    fused={"sigmoid": (_bce_from_z, _bce_grad_from_z, None)},
)((_bce, _bce_grad))
_loss(
    "cross_entropy",
    doc="−Σ y ln ŷ over units; fused with a softmax output",
    fused={"softmax": (_ce_from_z, _ce_grad_from_z, _ce_grad_unit_rows)},
)((_ce, _ce_grad))


# McClelland's "new error" (DyNet's v_l): the cross-entropy of outputs read as probabilities,
# p = ŷ for sigmoid outputs in (0, 1), p = (1 + ŷ)/2 for tanh outputs in (−1, 1), targets alike.
# Its gradient at the pre-activation is ŷ − y: it does not vanish where the output saturates,
# unlike the squared error's (ŷ − y)·f'(z).  tanh z = 2σ(2z) − 1, so both are one formula in σ.


def _mcclelland(yhat, y):
    # Outside a fused output (the activation unknown): ŷ and y read as in the sigmoid case.
    return _bce(yhat, y)


def _mcclelland_tanh_from_z(z, yhat, y):
    u, q = 2 * z, (1 + y) / 2
    return _mean_units(np.maximum(u, 0) - u * q + np.log1p(np.exp(-np.abs(u))))


_loss(
    "mcclelland",
    doc="McClelland's error: −mean over units of q ln p + (1−q) ln(1−p), p = ŷ (sigmoid) or (1+ŷ)/2 (tanh); "
        "∂/∂z = ŷ − y",
    fused={"sigmoid": (_bce_from_z, _bce_grad_from_z, None), "tanh": (_mcclelland_tanh_from_z, _bce_grad_from_z, None)},
)((_mcclelland, _bce_grad))
_loss("hinge", doc="targets t=±1: mean over units of max(0, 1−tŷ)")(
    (
        lambda yhat, y: _mean_units(np.maximum(0, 1 - _signed_targets(y) * yhat)),
        lambda yhat, y: -_signed_targets(y) * (_signed_targets(y) * yhat < 1) / _units(y),
    )
)


# ---------------------------------------------------------------- initialisers


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
        values = resolve_params("initialiser", self.name, self.params, given)
        for (key, _), value in zip(self.params, values):
            if not math.isfinite(value):
                raise UsageError(f"parameter {key} of initialiser {self.name} must be finite, not {value}")
        problem = self.check(*values) if self.check else None
        if problem:
            raise UsageError(f"initialiser {self.name}: {problem}")
        return lambda rng, shape, fan_in, fan_out: self.draw(rng, shape, fan_in, fan_out, *values)


INITIALIZERS = {}


def _initializer(name, params=(), doc="", check=None):
    def register(draw):
        INITIALIZERS[name] = Initializer(name, draw, params, doc, check)
        return draw

    return register


def _ordered(a, b):
    if a > b:
        return f"the range {_fmt(a)} {_fmt(b)} is empty (a must be ≤ b)"
    if not math.isfinite(b - a):
        return f"the range {_fmt(a)} {_fmt(b)} is wider than a float can hold"
    return None


def _spread(mu, sigma):
    return None if sigma >= 0 else f"the standard deviation must be ≥ 0, not {_fmt(sigma)}"


def get_initializer(name):
    return _lookup(INITIALIZERS, "initialiser", name)


@_initializer("xavier", doc="U(±√(6/(in+out)))")
def _xavier(rng, shape, fan_in, fan_out):
    limit = math.sqrt(6 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


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
