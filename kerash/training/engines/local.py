"""The local engine: gradients and updates in this process (BLAS may use threads)."""

import math

import numpy as np

from ...layers import Noise
from .step import StepResult, StepSettings, apply_update, clip_coefficient, gatherer, intersect, squared_norm

class LocalEngine:
    """Gradients and updates in this process, on the network's flat arenas."""

    kind = "local"
    leader = True  # writes the model (every engine but MPI's other ranks)
    agreed_stop = 0  # a stop request agreed with other processes (MPI)

    def __init__(self, net, objective, x, y, optimizer, mask, settings=None):
        self.net, self.objective, self.y = net, objective, y
        self.optimizer, self.mask = optimizer, mask
        self.settings = settings or StepSettings()
        self.gather = gatherer(x)
        self.shards = 1
        self.epoch = 1
        if net.arena.params is None:
            net.use_arena()

    def noise(self, idx):
        """The masks' randomness for samples idx (None when the network has no stochastic layer)."""
        return Noise(self.settings.seed, self.epoch, idx) if any(self.net.noisy) else None

    def gradient(self, idx, scale, keep=None):
        gathered, targets = self.gather(idx), self.y.take(idx, axis=0)
        losses, correct = self.net.gradient(self.objective, gathered, targets, scale, keep, self.noise(idx))
        return losses, correct, self.net.arena.grads

    def apply(self, grads, capture=None):
        """Clip the step's gradient (when asked) and update the trainable weights with it."""
        settings = self.settings
        if settings.clip is not None:
            parts = intersect(settings.ranges, 0, grads.size)
            coef = clip_coefficient(squared_norm(grads, parts), settings.clip)
            if coef < 1.0:
                grads *= coef
        if capture is not None:
            np.copyto(capture, grads)
        apply_update(self.optimizer, self.net.arena.params, grads, self.mask, settings.ranges)

    def step(self, idx, scale, keep=None, capture=None):
        losses, correct, grads = self.gradient(idx, scale, keep)
        finite = math.isfinite(float(keep[-1][1].sum() if losses is None else losses.sum()))
        if finite:
            self.apply(grads, capture)
        return StepResult(losses, correct, finite)

    def close(self):
        pass
