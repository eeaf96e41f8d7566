"""Losses: per-sample values and their gradients, some fused with the output activation."""

import numpy as np

from .registry import checked_params, format_value, like, lookup


class Loss:
    """A loss: per-sample values (N,) and their gradient dL_i/dŷ_i (N, K).

    The batch loss is the mean of the per-sample losses.  A loss may be fused
    with the output activations it pairs with (softmax for cross-entropy,
    sigmoid for binary cross-entropy): then it works from the pre-activation z
    for numerical stability.
    """

    def __init__(self, name, value, grad, params=(), doc="", fused=None, check=None):
        self.name = name
        self.value = value
        self.grad = grad
        self.params = tuple(params)
        self.doc = doc
        # {activation name: (value(z, ŷ, y), grad(z, ŷ, y), grad when every target row sums to 1 or None)}
        self.fused = fused or {}
        self.check = check

    def bind(self, given=()):
        """This loss with its parameters; impossible ones are refused here, before any use."""
        return BoundLoss(self, checked_params("loss", self.name, self.params, given, self.check))


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
        return " ".join([self.name, *map(format_value, self.values)])


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


def _loss(name, params=(), doc="", fused=None, check=None):
    def register(pair):
        LOSSES[name] = Loss(name, pair[0], pair[1], params, doc, fused, check)
        return pair

    return register


def get_loss(name):
    return lookup(LOSSES, "loss", name)


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


_loss("huber", params=[("delta", 1.0)], doc="½e² if |e| ≤ δ else δ(|e|−½δ), mean over units",
      check=lambda delta: None if delta > 0 else f"delta must be > 0 (as torch's HuberLoss), not {format_value(delta)}")(
    (_huber, _huber_grad)
)


def _signed_targets(y):
    """Margin losses take targets ±1; 0/1 labels are mapped to −1/+1."""
    return np.where(y == 0, like(y, -1), y)


def _huber_modified(yhat, y, boundary):
    # Beyond z = −boundary the square goes on as its tangent: with boundary 1, −4z (Zhang's modified Huber).
    z = _signed_targets(y) * yhat
    linear = (1 + boundary) ** 2 - 2 * (1 + boundary) * (z + boundary)
    return _mean_units(np.where(z >= -boundary, np.square(np.maximum(0, 1 - z)), linear))


def _huber_modified_grad(yhat, y, boundary):
    t = _signed_targets(y)
    z = t * yhat
    return np.where(z >= -boundary, -2 * t * np.maximum(0, 1 - z), -2 * (1 + boundary) * t) / _units(y)


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


_loss("huber_modified", params=[("boundary", 1.0)],
      doc="targets t=±1, z=tŷ: (max(0,1−z))² if z ≥ −b, else its tangent there (−4z for b = 1), mean over units",
      check=lambda b: None if b > 0 else f"the boundary must be > 0, not {format_value(b)}")(
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


