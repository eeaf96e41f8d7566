"""What every engine shares: the settings and result of a step, the update, clipping, and its failures."""

import math
from dataclasses import dataclass

import numpy as np

from ...errors import TrainingError
from ..batches import shard_bounds
from ..optimizers import SLOTS

# The logical shards of a batch (see shard_count): a gradient call costs about NODE_COST
# multiply-adds of fixed work per node and time step and PARAM_COST per parameter (writing each
# parameter's gradient, and the weight-gradient products' poor speed over few samples), measured
# with bench/shard_cost.py: a call's fixed cost over its cost per sample is 18 samples for a
# 784-256-256-10 MLP (rule: 17), 19 for 784-1024-1024-10 (15), 53 for the digits MLP (50), 13 for
# the digits CNN (9), 49 for an LSTM of 50 steps (95).
NODE_COST = 150_000
PARAM_COST = 15
SHARD_OVERHEAD = 0.10  # what computing all the shards in one process may cost over one whole-batch call
MAX_SHARDS = 8
# Counts that two processes share evenly: three shards keep one of two processes busy 2/3 of a step
# (and seven, 4/7: a 784-256-256-10 MLP at batch 256 ran 1.25× one process).
SHARD_COUNTS = (1, 2, 4, 6, 8)


@dataclass(frozen=True)  # forked workers hold a copy: a change would reach this process only
class StepSettings:
    seed: int = 0  # of dropout masks
    clip: float = None  # largest global gradient norm (torch.nn.utils.clip_grad_norm_), or None
    ranges: list = None  # [(start, stop)] of the flat arena that is trained, or None for all
    shards: int = None  # logical shards of a batch (--shards), or None for shard_count's rule
    carry: object = None  # train --bptt: the recurrent states carried between windows (training/bptt.py)
    batch: int = None  # the first epoch's batch size (forked workers warm up on a shard of it), or None


@dataclass
class StepResult:
    losses: object  # per-sample losses (N,), or None when deferred (see Network.gradient's keep)
    correct: object  # samples (or scored steps) classified right, or None when deferred
    finite: bool  # False: the loss was not finite and the weights were left unchanged


def shard_count(net, n, steps=1, shards=None):
    """How many logical shards a batch of n samples is split into: fixed by the model and n alone.

    Every engine computes each shard's gradient the same way, whoever
    computes it, and adds the shards up in order: the number of processes
    cannot change a bit.  The rule keeps the shards' fixed costs within
    SHARD_OVERHEAD of one whole-batch call, so one process computing all the
    shards loses little, and takes the largest of SHARD_COUNTS within that;
    `shards` (--shards) overrides it.
    """
    if shards is not None:
        return max(1, min(int(shards), n))
    fixed = NODE_COST * len(net.nodes) * steps + PARAM_COST * net.arena.size
    whole = fixed + net.macs_per_sample() * n * steps
    most = max(1, min(MAX_SHARDS, n, int(1 + SHARD_OVERHEAD * whole / fixed)))
    return max(c for c in SHARD_COUNTS if c <= most)


def shards_of(net, n, steps=1, shards=None):
    """[(start, stop)] of the logical shards of a batch of n."""
    return shard_bounds(0, n, shard_count(net, n, steps, shards))


def add_in_order(total, parts):
    """total = parts[0] + parts[1] + …, left to right, element by element (the same bits in any slice)."""
    if len(parts) == 1:
        np.copyto(total, parts[0])
        return total
    np.add(parts[0], parts[1], out=total)  # the same bits as a copy and an addition, in one pass
    for part in parts[2:]:
        total += part
    return total


def gatherer(x):
    """A function picking samples of x (N, …) by index: take() on rows is 3× faster than x[idx]."""
    rows = x.reshape(x.shape[0], -1)
    shape = x.shape[1:]
    return lambda idx: rows.take(idx, axis=0).reshape((len(idx),) + shape)


def apply_update(optimizer, params, grads, mask, ranges=None):
    """One optimiser step on a flat arena: the update every engine applies.

    `ranges` [(start, stop)] limits it to parts of the arena (the trainable
    parts, or a process's slice of them); the optimiser's state ('all.m', …)
    covers the whole arena and is updated over the same parts.
    """
    if ranges is None:
        optimizer.step([("all", params, grads, mask)])
        return
    whole = optimizer.state
    for slot in SLOTS[optimizer.name]:  # created whole, so that parts are views of it
        whole.setdefault(f"all.{slot}", np.zeros_like(params))
    parts, items = {}, []
    for k, (start, stop) in enumerate(ranges):
        for key, array in whole.items():
            parts[f"part{k}.{key.split('.', 1)[1]}"] = array[start:stop]
        items.append((f"part{k}", params[start:stop], grads[start:stop], None if mask is None else mask[start:stop]))
    layer = optimizer.layer  # per-layer rates and momenta: sliced alike
    optimizer.state = parts
    optimizer.layer = {f"part{k}.{key.split('.', 1)[1]}": array[start:stop]
                       for k, (start, stop) in enumerate(ranges) for key, array in layer.items()}
    try:
        optimizer.step(items)
    finally:
        optimizer.state, optimizer.layer = whole, layer


def intersect(ranges, start, stop):
    """The parts of `ranges` (None: everything) inside [start, stop)."""
    found = []
    for a, b in ranges if ranges is not None else [(start, stop)]:
        a, b = max(a, start), min(b, stop)
        if b > a:
            found.append((a, b))
    return found


def squared_norm(grads, parts):
    """Σ g² over parts, in their order (so that any process computing the same parts gets the same bits)."""
    total = 0.0
    for start, stop in parts:
        piece = grads[start:stop]
        total += float(np.dot(piece, piece))
    return total


def clip_coefficient(squared, clip):
    """torch.nn.utils.clip_grad_norm_'s factor: clip / (‖g‖ + 1e-6), at most 1."""
    if clip is None:
        return 1.0
    coef = clip / (math.sqrt(squared) + 1e-6)
    return coef if coef < 1.0 else 1.0


class EngineFailure(TrainingError):
    """A worker died or failed.  `intact`: the weights are those of the last completed step."""

    def __init__(self, message, intact=True):
        super().__init__(message)
        self.intact = intact


class Interrupted(Exception):
    """A signal arrived while waiting for the workers; `intact` as for EngineFailure."""

    def __init__(self, intact):
        super().__init__("interrupted")
        self.intact = intact
