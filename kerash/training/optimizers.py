"""Optimisers: one step from mean gradients, with state kept as ordinary arrays.

The update rules are PyTorch's (torch.optim), so their figures can be
compared one to one:

* sgd       p −= lr·g
* momentum  v = μv + g;            p −= lr·v
* nesterov  v = μv + g;            p −= lr·(g + μv)
* adam      m = β1·m + (1−β1)·g;   v = β2·v + (1−β2)·g²;  p −= lr·m̂/(√v̂ + ε)
            with m̂ = m/(1−β1ᵗ), v̂ = v/(1−β2ᵗ)
* rmsprop   s = ρ·s + (1−ρ)·g²;    p −= lr·g/(√s + ε)

Weight decay (L2, DyNet's Rumelhart decay) adds decay·W to the gradient of
weights W, not of biases.  State arrays are keyed 'layer_NN/W.velocity' and
saved in the model directory under optimizer/, so `model-update` in a bash loop and
`train` runs continue each other exactly.
"""

import math

import numpy as np

from ..errors import UsageError

DEFAULTS = {
    "sgd": {"lr": 0.01},
    "momentum": {"lr": 0.01, "momentum": 0.9},
    "nesterov": {"lr": 0.01, "momentum": 0.9},
    "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
    "rmsprop": {"lr": 0.001, "rho": 0.9, "eps": 1e-8},
}
# Hyper-parameters must lie in (low, high) — or equal low for those in CLOSED; NaN and ∞ never do.
RANGES = {
    "lr": (0.0, math.inf, "a finite number ≥ 0"),
    "momentum": (0.0, 1.0, "in [0, 1)"),
    "beta1": (0.0, 1.0, "in [0, 1)"),
    "beta2": (0.0, 1.0, "in [0, 1)"),
    "rho": (0.0, 1.0, "in [0, 1)"),
    "eps": (0.0, math.inf, "a finite number > 0"),
}
CLOSED = ("lr", "momentum", "beta1", "beta2", "rho")
SLOTS = {"sgd": (), "momentum": ("velocity",), "nesterov": ("velocity",), "adam": ("m", "v"), "rmsprop": ("s",)}


def flat_state(optimizer, net):
    """The optimiser's saved state, per parameter ('layer_01/W.m'), laid out as the network's flat arena ('all.m')."""
    flat = {}
    for slot in SLOTS[optimizer.name]:
        parts = {k[: -len(slot) - 1]: v for k, v in optimizer.state.items() if k.endswith("." + slot)}
        joined = net.join_flat(parts) if parts else None
        if joined is not None:
            flat[f"all.{slot}"] = joined
    return flat


def per_parameter_state(optimizer, net):
    """{'optimizer/layer_01/W.m': view} of a flat-arena state, as the model directory keeps it."""
    extra = {}
    for key, flat in optimizer.state.items():
        slot = key.rsplit(".", 1)[1]
        for name, view in net.split_flat(flat).items():
            extra[f"optimizer/{name}.{slot}"] = view
    return extra


class Optimizer:
    """An optimiser with its hyper-parameters; `state` maps 'layer_NN/W.slot' to arrays."""

    def __init__(self, name="sgd", weight_decay=None, **hyper):
        if name not in DEFAULTS:
            from ..errors import close_matches

            raise UsageError(f"unknown optimizer {name!r}{close_matches(name, DEFAULTS)}; choose {', '.join(DEFAULTS)}")
        self.name = name
        self.hyper = dict(DEFAULTS[name])
        for key, value in hyper.items():
            if value is None:
                continue
            if key not in self.hyper:
                raise UsageError(f"--{key} does not apply to the {name} optimizer")
            value = float(value)
            low, high, what = RANGES[key]
            if not (low < value < high or (key in CLOSED and value == low)):
                raise UsageError(f"--{key} must be {what}, not {value:g}")
            self.hyper[key] = value
        weight_decay = 0.0 if weight_decay is None else float(weight_decay)
        if not 0 <= weight_decay < math.inf:
            raise UsageError(f"--weight-decay must be a finite number ≥ 0, not {weight_decay:g}")
        self.weight_decay = weight_decay
        self.t = 0
        self.state = {}
        self._scratch = {}

    @property
    def lr(self):
        return self.hyper["lr"]

    def describe(self):
        """What state.json records about the optimiser."""
        return {"name": self.name, **self.hyper, "weight_decay": self.weight_decay, "t": self.t}

    def restore(self, recorded, arrays):
        """Continue from a previous run: step count and state arrays, when they belong to this optimiser."""
        if recorded and recorded.get("name") == self.name:
            self.t = int(recorded.get("t", 0))
            self.state = {k: v for k, v in arrays.items() if k.rsplit(".", 1)[-1] in SLOTS[self.name]}

    def _slot(self, key, slot, like):
        full = f"{key}.{slot}"
        buf = self.state.get(full)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
            buf = self.state[full] = np.zeros_like(like)
        return buf

    def _temp(self, like):
        """A scratch array shaped like `like`, kept between steps: no allocation on the hot path."""
        buf = self._scratch.get((like.shape, like.dtype))
        if buf is None:
            if len(self._scratch) > 8:
                self._scratch.clear()
            buf = self._scratch[(like.shape, like.dtype)] = np.empty_like(like)
        return buf

    def step(self, items):
        """Apply one update in place.

        items: [(key, param, mean gradient, decay)], key 'layer_NN/W' (or any
        name for a flat arena), decay 1 where weight decay applies, None where
        it does not, or a 0/1 mask over a flat arena.  The gradient arrays are
        used as scratch space and overwritten.
        """
        self.t += 1
        rule = getattr(self, "_" + self.name)
        for key, p, g, decay in items:
            if self.weight_decay and decay is not None:
                decayed = np.multiply(p, self.weight_decay * decay if np.isscalar(decay) else self.weight_decay,
                                      out=self._temp(p))
                if not np.isscalar(decay):
                    decayed *= decay
                g += decayed
            rule(key, p, g)

    def _sgd(self, key, p, g):
        g *= self.hyper["lr"]
        p -= g

    def _momentum(self, key, p, g):
        v = self._slot(key, "velocity", p)
        v *= self.hyper["momentum"]
        v += g
        np.multiply(v, self.hyper["lr"], out=g)
        p -= g

    def _nesterov(self, key, p, g):
        h = self.hyper
        v = self._slot(key, "velocity", p)
        v *= h["momentum"]
        v += g
        g += np.multiply(v, h["momentum"], out=self._temp(p))
        g *= h["lr"]
        p -= g

    def _adam(self, key, p, g):
        h = self.hyper
        m = self._slot(key, "m", p)
        v = self._slot(key, "v", p)
        # Whole-buffer operations in place, with one scratch array: the same arithmetic
        # as the textbook expressions, without a temporary array per operation.
        temp = self._temp(p)
        m *= h["beta1"]
        m += np.multiply(g, 1 - h["beta1"], out=temp)
        v *= h["beta2"]
        np.square(g, out=g)
        g *= 1 - h["beta2"]
        v += g
        denom = np.multiply(v, 1 / (1 - h["beta2"] ** self.t), out=temp)
        np.sqrt(denom, out=denom)
        denom += h["eps"]
        step = np.multiply(m, h["lr"] / (1 - h["beta1"] ** self.t), out=g)
        step /= denom
        p -= step

    def _rmsprop(self, key, p, g):
        h = self.hyper
        s = self._slot(key, "s", p)
        temp = self._temp(p)
        s *= h["rho"]
        np.square(g, out=temp)
        temp *= 1 - h["rho"]
        s += temp
        denom = np.sqrt(s, out=temp)
        denom += h["eps"]
        g *= h["lr"]
        g /= denom
        p -= g
