"""Optimisers: one step from mean gradients, with state kept as ordinary arrays.

One class per optimiser, registered by name in OPTIMIZERS: each owns its
hyper-parameters' defaults and ranges, its state slots and its update rule.
`Optimizer(name, lr=…, …)` makes the one of that name.  The update rules are
PyTorch's (torch.optim), so their figures can be compared one to one:

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


class Range:
    """Values in (low, high), or equal to low when `closed`; NaN and ∞ never are.  `what` says so in messages."""

    def __init__(self, low, high, closed, what):
        self.low, self.high, self.closed, self.what = low, high, closed, what

    def check(self, option, value):
        """`value` if it lies in the range, else a UsageError naming --option."""
        if not (self.low < value < self.high or (self.closed and value == self.low)):
            raise UsageError(f"--{option} must be {self.what}, not {value:g}")
        return value


RATE = Range(0.0, math.inf, True, "a finite number ≥ 0")
FRACTION = Range(0.0, 1.0, True, "in [0, 1)")
POSITIVE = Range(0.0, math.inf, False, "a finite number > 0")

OPTIMIZERS = {}  # name: class, in the order messages and --help list them
DEFAULT = "sgd"  # the optimiser of a model that has not recorded one


def register(cls):
    OPTIMIZERS[cls.name] = cls
    return cls


def optimizer_class(name):
    """The class registered as `name`, or a UsageError that lists the names."""
    if name not in OPTIMIZERS:
        from ..errors import close_matches

        raise UsageError(f"unknown optimizer {name!r}{close_matches(name, OPTIMIZERS)}; choose {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


def continued(name, recorded, **given):
    """The optimiser `name` (None: the recorded one, else sgd) for a run that continues a model.

    A hyper-parameter not given (None) takes its recorded value when the
    record (state.json's 'optimizer') is of the same optimiser, else its default.
    """
    recorded = recorded or {}
    name = name or recorded.get("name") or DEFAULT
    hyper = {}
    for key, value in given.items():
        if value is None and recorded.get("name") == name and key in recorded:
            value = recorded[key]
        if value is not None:
            hyper[key] = value
    return Optimizer(name, **hyper)


def flat_state(optimizer, net):
    """The optimiser's saved state, per parameter ('layer_01/W.m'), laid out as the network's flat arena ('all.m')."""
    flat = {}
    for slot in optimizer.slots:
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
    """An optimiser with its hyper-parameters; `state` maps 'layer_NN/W.slot' to arrays.

    Optimizer('adam', lr=0.01) is the registered class of that name; a
    subclass is also made directly: Adam(lr=0.01).
    """

    name = None
    defaults = {}  # hyper-parameter: default, in the order state.json records them
    ranges = {"lr": RATE}  # hyper-parameter: Range
    slots = ()  # the state arrays kept per parameter ('layer_NN/W.SLOT')
    weight_decay_range = RATE

    def __new__(cls, name=DEFAULT, weight_decay=None, **hyper):
        if cls is Optimizer:
            cls = optimizer_class(name)
        return super().__new__(cls)

    def __init__(self, name=None, weight_decay=None, **hyper):
        if name is not None and name != self.name:
            raise TypeError(f"{type(self).__name__} is the {self.name} optimizer, not {name}")
        self.hyper = dict(self.defaults)
        for key, value in hyper.items():
            if value is None:
                continue
            if key not in self.hyper:
                raise UsageError(f"--{key} does not apply to the {self.name} optimizer")
            self.hyper[key] = self.ranges[key].check(key, float(value))
        weight_decay = 0.0 if weight_decay is None else float(weight_decay)
        self.weight_decay = self.weight_decay_range.check("weight-decay", weight_decay)
        self.t = 0
        self.state = {}
        self.layer = {}  # 'all.lr', 'all.momentum': per-element factors and momenta over the flat arena (per layer)
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
            self.state = {k: v for k, v in arrays.items() if k.rsplit(".", 1)[-1] in self.slots}

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
        for key, p, g, decay in items:
            if self.weight_decay and decay is not None:
                decayed = np.multiply(p, self.weight_decay * decay if np.isscalar(decay) else self.weight_decay,
                                      out=self._temp(p))
                if not np.isscalar(decay):
                    decayed *= decay
                g += decayed
            self.update(key, p, g)

    def update(self, key, p, g):
        """The rule: change parameter p (key 'layer_NN/W') by its gradient g, both in place."""
        raise NotImplementedError

    def _descend(self, key, p, step):
        """p −= step, each element's step scaled by its layer's rate factor when layers have their own."""
        factor = self.layer.get(f"{key}.lr")
        if factor is not None:
            step *= factor
        p -= step

    def _momentum(self, key):
        """The momentum: the hyper-parameter, or per element when layers have their own."""
        own = self.layer.get(f"{key}.momentum")
        return self.hyper["momentum"] if own is None else own


@register
class SGD(Optimizer):
    name = "sgd"
    defaults = {"lr": 0.01}

    def update(self, key, p, g):
        g *= self.hyper["lr"]
        self._descend(key, p, g)


@register
class Momentum(Optimizer):
    name = "momentum"
    defaults = {"lr": 0.01, "momentum": 0.9}
    ranges = {**Optimizer.ranges, "momentum": FRACTION}
    slots = ("velocity",)

    def update(self, key, p, g):
        v = self._slot(key, "velocity", p)
        v *= self._momentum(key)
        v += g
        np.multiply(v, self.hyper["lr"], out=g)
        self._descend(key, p, g)


@register
class Nesterov(Momentum):
    name = "nesterov"

    def update(self, key, p, g):
        h = self.hyper
        v = self._slot(key, "velocity", p)
        momentum = self._momentum(key)
        v *= momentum
        v += g
        g += np.multiply(v, momentum, out=self._temp(p))
        g *= h["lr"]
        self._descend(key, p, g)


@register
class Adam(Optimizer):
    name = "adam"
    defaults = {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    ranges = {**Optimizer.ranges, "beta1": FRACTION, "beta2": FRACTION, "eps": POSITIVE}
    slots = ("m", "v")

    def update(self, key, p, g):
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
        self._descend(key, p, step)


@register
class RMSprop(Optimizer):
    name = "rmsprop"
    defaults = {"lr": 0.001, "rho": 0.9, "eps": 1e-8}
    ranges = {**Optimizer.ranges, "rho": FRACTION, "eps": POSITIVE}
    slots = ("s",)

    def update(self, key, p, g):
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
        self._descend(key, p, g)


# The hyper-parameters of all optimisers, first met first, then the weight decay that every one takes.
HYPER_PARAMETERS = (*dict.fromkeys(key for cls in OPTIMIZERS.values() for key in cls.defaults), "weight_decay")
SLOTS = {name: cls.slots for name, cls in OPTIMIZERS.items()}  # for the engines, which name an optimiser's slots by its name
