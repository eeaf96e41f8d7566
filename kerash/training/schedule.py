"""Learning-rate schedules and growing batches: the settings in force at each epoch.

Both are pure functions of the model's epoch number (plateau also of a small
state saved with the model), so a resumed run continues them exactly.  The
formulas are PyTorch's, with its `last_epoch` = epoch − 1 − warmup:

* constant                    the base rate
* step:EVERY:FACTOR           base · FACTOR^⌊last_epoch / EVERY⌋          (StepLR)
* exponential:GAMMA           base · GAMMA^last_epoch                    (ExponentialLR)
* cosine:EPOCHS[:MIN_LR]      MIN + (base − MIN)(1 + cos(π·last_epoch/EPOCHS))/2  (CosineAnnealingLR)
* plateau:PATIENCE:FACTOR     the rate times FACTOR once the watched loss has not improved
                              (by a relative 1e-4) for more than PATIENCE epochs  (ReduceLROnPlateau)

`--warmup N` rises linearly to the base rate over the first N epochs (rate ·
e/N at epoch e), then the schedule starts.  DyNet's growing batches:
`START:STEP:MAX` is a batch of min(START + STEP·(e − 1), MAX) samples at
epoch e.
"""

import math

from ..errors import UsageError

KINDS = ("constant", "step", "exponential", "cosine", "plateau")
PLATEAU_THRESHOLD = 1e-4  # ReduceLROnPlateau's default relative threshold
PLATEAU_EPS = 1e-8  # and its smallest change of the rate


def _number(text, what, kind=float, low=None, high=None, closed=False):
    try:
        value = kind(text)
    except ValueError:
        raise UsageError(f"{what} must be {'an integer' if kind is int else 'a number'}, not {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise UsageError(f"{what} must be finite, not {text}")
    if low is not None and (value < low or (value == low and not closed)):
        raise UsageError(f"{what} must be {'≥' if closed else '>'} {low:g}, not {text}")
    if high is not None and value > high:
        raise UsageError(f"{what} must be ≤ {high:g}, not {text}")
    return value


class Schedule:
    """A learning-rate schedule read from its text, e.g. 'step:10:0.5'."""

    def __init__(self, text="constant", warmup=0):
        self.text = text or "constant"
        kind, *args = self.text.split(":")
        if kind not in KINDS:
            from ..errors import close_matches

            raise UsageError(f"unknown --lr-schedule {kind!r}{close_matches(kind, KINDS)}; "
                             "choose constant, step:EVERY:FACTOR, exponential:GAMMA, cosine:EPOCHS[:MIN_LR] "
                             "or plateau:PATIENCE:FACTOR")
        wanted = {"constant": (0, 0), "step": (2, 2), "exponential": (1, 1), "cosine": (1, 2), "plateau": (2, 2)}[kind]
        if not wanted[0] <= len(args) <= wanted[1]:
            raise UsageError(f"--lr-schedule {self.text}: {kind} takes "
                             + {"constant": "nothing", "step": "EVERY:FACTOR", "exponential": "GAMMA",
                                "cosine": "EPOCHS[:MIN_LR]", "plateau": "PATIENCE:FACTOR"}[kind])
        self.kind = kind
        what = f"--lr-schedule {self.text}:"
        if kind == "step":
            self.every = _number(args[0], f"{what} EVERY", int, low=1, closed=True)
            self.factor = _number(args[1], f"{what} FACTOR", low=0)
        elif kind == "exponential":
            self.gamma = _number(args[0], f"{what} GAMMA", low=0)
        elif kind == "cosine":
            self.epochs = _number(args[0], f"{what} EPOCHS", int, low=1, closed=True)
            self.min_lr = _number(args[1], f"{what} MIN_LR", low=0, closed=True) if len(args) > 1 else 0.0
        elif kind == "plateau":
            self.patience = _number(args[0], f"{what} PATIENCE", int, low=0, closed=True)
            self.factor = _number(args[1], f"{what} FACTOR", low=0, high=1)
        self.warmup = _number(str(warmup), "--warmup", int, low=0, closed=True)

    def rate(self, base, epoch, state):
        """The rate in force during `epoch` (1-based); state: the plateau's saved state."""
        if epoch <= self.warmup:
            return base * epoch / self.warmup
        last = epoch - 1 - self.warmup
        if self.kind == "step":
            return base * self.factor ** (last // self.every)
        if self.kind == "exponential":
            return base * self.gamma ** last
        if self.kind == "cosine":
            return self.min_lr + (base - self.min_lr) * (1 + math.cos(math.pi * last / self.epochs)) / 2
        if self.kind == "plateau":
            return state.get("lr", base)
        return base

    def after_epoch(self, epoch, metric, lr, state):
        """The plateau's state after an epoch whose watched loss was `metric` at rate `lr`."""
        if self.kind != "plateau" or epoch <= self.warmup or not math.isfinite(metric):
            return state
        best, bad = state.get("best", math.inf), state.get("bad", 0)
        if metric < best * (1 - PLATEAU_THRESHOLD):
            best, bad = metric, 0
        else:
            bad += 1
        if bad > self.patience:
            reduced = lr * self.factor
            if lr - reduced > PLATEAU_EPS:
                lr = reduced
            bad = 0
        return {"best": best, "bad": bad, "lr": lr}


class BatchGrowth:
    """DyNet's weight-updating period: START:STEP:MAX samples per step, growing by STEP each epoch."""

    def __init__(self, text):
        parts = text.split(":")
        if len(parts) != 3:
            raise UsageError(f"--batch-growth takes START:STEP:MAX, e.g. 16:16:256, not {text!r}")
        self.text = text
        self.start = _number(parts[0], "--batch-growth START", int, low=1, closed=True)
        self.step = _number(parts[1], "--batch-growth STEP", int, low=0, closed=True)
        self.max = _number(parts[2], "--batch-growth MAX", int, low=self.start, closed=True)

    def size(self, epoch):
        return min(self.start + self.step * (epoch - 1), self.max)
