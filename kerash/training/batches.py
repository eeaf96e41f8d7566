"""The order of samples: validation split and per-epoch shuffles, pure functions of the seed.

`train`, `kerash batches` and bin/pipeline-train all use these, so the same
seed gives the same batches in every tool, and resuming at epoch E needs no
saved random state beyond the seed.
"""

import numpy as np

from ..errors import UsageError


def split(n, fraction, seed):
    """(train indices, validation indices): a fixed random `fraction` of n samples held out."""
    if not 0 <= fraction < 1:
        raise UsageError(f"--validation-split must be in [0, 1), got {fraction}")
    n_val = int(round(n * fraction))
    if fraction > 0 and n_val == 0:
        n_val = 1
    if n_val >= n:
        raise UsageError(f"a validation split of {fraction} leaves no training samples out of {n}")
    if n_val == 0:
        return np.arange(n), np.arange(0)
    perm = np.random.default_rng([seed, 0]).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def epoch_order(n, seed, epoch):
    """The shuffled order of n training positions in epoch `epoch` (1-based)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_bounds(n, batch_size):
    """[(start, stop)] covering n positions in batches of batch_size (the last may be smaller)."""
    if batch_size < 1:
        raise UsageError(f"--batch-size must be ≥ 1, got {batch_size}")
    return [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


def shard_bounds(start, stop, parts):
    """Split [start, stop) into `parts` contiguous shards whose sizes differ by at most one."""
    n = stop - start
    base, extra = divmod(n, parts)
    bounds = []
    s = start
    for k in range(parts):
        e = s + base + (1 if k < extra else 0)
        bounds.append((s, e))
        s = e
    return bounds


def epoch_batches(train_idx, batch_size, seed, epoch, ordered=False):
    """The sample indices of each batch of `epoch`, as a list of arrays; `ordered`: not shuffled (--bptt)."""
    order = train_idx if ordered else train_idx[epoch_order(len(train_idx), seed, epoch)]
    return [order[s:e] for s, e in batch_bounds(len(order), batch_size)]
