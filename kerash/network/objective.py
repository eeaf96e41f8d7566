"""The objective: the loss a network's output is trained on, and how its outputs are scored.

It is held by whoever holds the targets — the training loop and its
engines, evaluate, backprop, evolve — and given to the graph's passes
(Network.gradient, losses, evaluate), rather than kept by the graph: what
it learns from a data set's targets (adapt_to_targets) belongs to that use
of the network, not to the network, and the graph stays a function of its
weights alone.

Its methods see only the output: the output layer's values (N, K), the
forward context of the output layer (for a loss fused with its activation)
and the targets (N, K); for sequences, one step at a time.
"""

import numpy as np

MARGIN_LOSSES = ("hinge", "huber_modified")


def as_rows(a):
    """a (N, …) as N rows; unlike reshape(N, -1), also for N = 0."""
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:], dtype=np.int64)))


def targets_are_classes(y):
    """Whether targets (N, K) or (N, T, K) are classes, so that accuracy means something.

    One column: labels 0/1 or −1/+1.  Several: rows of non-negative values
    summing to 1 (one-hot or soft labels).  Anything else is regression.
    """
    y = np.asarray(y)
    if y.size == 0:
        return False
    y = y.reshape(-1, y.shape[-1])
    y = y[~np.isnan(y[:, 0])]  # no target at the padding after a shorter sequence
    if y.shape[1] == 1:
        values = set(np.unique(y).tolist())
        return values <= {0.0, 1.0} or values <= {-1.0, 1.0}
    return bool(np.all(y >= 0) and np.allclose(y.sum(axis=1), 1.0))


class Objective:
    """A loss on the output of a network, with the accuracy that goes with it."""

    def __init__(self, loss, net):
        """loss: a bound loss (ModelSpec.loss); net: the network scored — its output layer and time axis are read."""
        self.loss = loss
        self.output = out = net.layers[-1]
        self.sequence = net.sequence
        # Losses fuse with a dense output layer, whose pre-activation rows are the samples.
        self.fusion = loss.fusion(out.activation.name) if out.kind == "dense" else None
        self.fused = self.fusion is not None
        # Single-output classification: outputs above the threshold mean class 1.
        self.threshold = 0.0 if loss.name in MARGIN_LOSSES else 0.5
        self.unit_rows = False  # every target row sums to 1 (see adapt_to_targets)

    @property
    def can_defer(self):
        """Whether Network.gradient(keep=…) may put off computing the losses (see _Fit)."""
        return self.fused and not self.sequence

    def adapt_to_targets(self, y):
        """Learn what the targets (N, K) or (N, T, K) of a data set allow.

        Single-output classification with ±1 targets splits outputs at 0
        rather than 0.5; one-hot targets simplify the fused gradient.
        """
        y = y.reshape(-1, y.shape[-1]) if y.ndim == 3 else y
        y = y[~np.isnan(y[:, 0])] if y.size else y  # padding
        if y.shape[1] == 1 and y.size and float(y.min()) < 0:
            self.threshold = 0.0
        self.unit_rows = bool(y.size) and bool(np.all(np.add.reduce(y, axis=1) == 1))

    def scored_steps(self, x, y):
        """How many outputs of each sample are scored: T for targets at every step (their mean over sequences of
        different lengths), else 1."""
        if not (self.sequence and y.ndim == 3):
            return 1
        if not len(y):
            return x.shape[1]
        return float(np.count_nonzero(~np.isnan(y[:, :, 0]))) / len(y)

    # ------------------------------------------------------------ one output (N, K)

    def values(self, ctx, out, y):
        """Per-sample losses (N,) of outputs out (N, K) against y (N, K); ctx: the output layer's forward context."""
        if self.fused:
            z, a = self.output.pre_activation(ctx)
            return self.fusion.value(z, a, y)
        return self.loss.value(out, y)

    def output_gradient(self, ctx, out, y):
        """∂(Σ losses), a new array: at the output layer's pre-activation when fused, else at its outputs."""
        if self.fused:
            z, a = self.output.pre_activation(ctx)
            return self.fusion.grad(z, a, y, self.unit_rows)
        return self.loss.grad(out, y)

    def deferred(self, ctx, out, y):
        """What kept_metrics needs of a batch scored later: (pre-activation when fused, outputs, targets)."""
        return (self.output.pre_activation(ctx)[0] if self.fused else None), out, y

    def kept_metrics(self, kept):
        """(per-sample losses, correct count) of the batches kept by Network.gradient(keep=…)."""
        if not kept:
            return np.zeros(0), 0
        out = np.concatenate([o for _, o, _ in kept])
        y = np.concatenate([t for _, _, t in kept])
        if self.fused:
            losses = self.fusion.value(np.concatenate([z for z, _, _ in kept]), out, y)
        else:
            losses = self.loss.value(out, y)
        return losses, self.correct(out, y)

    # ------------------------------------------------------------ accuracy

    def correct(self, out, y):
        """How many samples (or scored steps) are classified right (argmax, or the threshold for one output)."""
        if y.ndim == 3:
            if out.ndim == 3:
                out = out.reshape(-1, out.shape[-1])
            y = y.reshape(-1, y.shape[-1])
            scored = ~np.isnan(y[:, 0])  # the padding after a shorter sequence is not scored
            if not scored.all():
                out, y = out[scored], y[scored]
        elif out.ndim == 3:
            out = out[:, -1]
        out = as_rows(out)
        if out.shape[1] > 1:
            return int(np.count_nonzero(out.argmax(axis=1) == y.argmax(axis=1)))
        return int(np.count_nonzero((out[:, 0] > self.threshold) == (y[:, 0] > 0.5)))

    def classes(self, out):
        """Predicted classes: (N,) for outputs (N, K), (N, T) for sequences (N, T, K)."""
        if out.ndim == 3 and self.sequence:
            n, steps, k = out.shape
            return self.classes(out.reshape(n * steps, k)).reshape(n, steps)
        out = as_rows(out)
        if out.shape[1] > 1:
            return out.argmax(axis=1)
        return (out[:, 0] > self.threshold).astype(np.int64)
