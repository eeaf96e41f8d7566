"""The local engine: the logical shards of each batch computed in this process (BLAS may use threads).

A batch of one shard is one gradient call, written straight into the
network's gradient buffer.  A batch of several shards is one call per shard
in shard order, each added to the step's gradient as it comes: the same
additions, in the same order, as the fork and MPI engines make, so every
engine gives the same bits.
"""

import math

import numpy as np

from ...layers import Noise
from .step import StepResult, StepSettings, apply_update, clip_coefficient, gatherer, intersect, shards_of, squared_norm


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
        self.steps = x.shape[1] if net.sequence and x.ndim > 1 else 1  # time steps of a sequence
        self.epoch = 1
        self.processes = 1  # that computed the last step (see ForkEngine)
        if net.arena.params is None:
            net.use_arena()
        self.own_grads = net.arena.grads
        self.sum = None  # the step's gradient when a batch has several shards (made when first needed)

    def shards(self, n):
        """[(start, stop)] of the logical shards of a batch of n."""
        return shards_of(self.net, n, self.steps, self.settings.shards)

    def noise(self, idx):
        """The masks' randomness for samples idx (None when the network has no stochastic layer)."""
        carry = self.settings.carry
        return Noise(self.settings.seed, self.epoch, idx, carry) if any(self.net.noisy) or carry else None

    def shard_gradient(self, idx, scale, keep=None):
        """(losses, correct) of the samples idx, their gradient written to the network's current buffer."""
        gathered, targets = self.gather(idx), self.y.take(idx, axis=0)
        return self.net.gradient(self.objective, gathered, targets, scale, keep, self.noise(idx))

    def gradient(self, idx, scale, keep=None):
        """(losses, correct, gradient) of a batch: its shards' gradients added in shard order.

        `keep` defers the losses (see Network.gradient) for a batch of one shard only.
        """
        bounds = self.shards(len(idx))
        self.net.write_grads_to(self.own_grads)
        if len(bounds) == 1:
            losses, correct = self.shard_gradient(idx, scale, keep)
            return losses, correct, self.own_grads
        if self.sum is None:
            self.sum = np.empty_like(self.own_grads)
        losses, correct = np.empty(len(idx)), 0
        for k, (start, stop) in enumerate(bounds):
            # the first shard straight into the sum: the same bits as a copy, without one
            self.net.write_grads_to(self.sum if k == 0 else self.own_grads)
            losses[start:stop], c = self.shard_gradient(idx[start:stop], scale)
            correct += c
            if k > 0:
                self.sum += self.own_grads
        self.net.write_grads_to(self.own_grads)
        return losses, correct, self.sum

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
