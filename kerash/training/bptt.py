"""Training over long streams: truncated back-propagation through time (train --bptt K).

The training sequences are read as one stream (one after another), cut into
B streams of equal length (B = --batch-size; what is left over is dropped),
and each stream into windows of K steps: batch w holds window w of every
stream, in order, never shuffled.  Each window starts from the recurrent
states its stream had at the end of the previous window (zeros for the
first window of an epoch), taken as constants: gradients flow back K steps
at most.  A save in the middle of an epoch keeps the states the next window
starts from (MODEL/bptt/), so that train goes on exactly where it stopped.  The states live in memory shared with the forked workers, a row
per stream: the shards of a batch hold different streams, so whoever
computes them, the same bits come out.
"""

import numpy as np

from ..errors import UsageError
from ..processes import shared_zeros


def stream_windows(x, y, streams, k):
    """(x, y) of windows (W·B, K, …): sample w·B + b is window w of stream b; the last window padded with nan."""
    if y.ndim != 3:
        raise UsageError("--bptt trains on a target at every step (the next token): give a block of labels as long "
                         "as the data, not one per sequence")
    valid = ~np.isnan(x.reshape(x.shape[0], x.shape[1], -1)).all(axis=2)
    xs, ys = x[valid], y[valid]  # every sequence's steps, one after another
    length = len(xs) // streams
    if length < 1:
        raise UsageError(f"--bptt: {len(xs)} steps cannot make {streams} streams (--batch-size): give a smaller "
                         "batch size")
    k = min(k, length)  # a window longer than a stream is the whole stream
    count = -(-length // k)

    def cut(a):
        a = a[: streams * length].reshape(streams, length, *a.shape[1:])
        padded = np.full((streams, count * k) + a.shape[2:], np.nan, dtype=a.dtype)
        padded[:, :length] = a
        windows = padded.reshape(streams, count, k, *a.shape[2:]).swapaxes(0, 1)
        return np.ascontiguousarray(windows.reshape(count * streams, k, *a.shape[2:]))

    return cut(xs), cut(ys)


class Carry:
    """The recurrent states of every stream, carried from one window to the next (see the module's docstring).

    Window w reads the states that window w − 1 left in slot w mod RING and
    writes its own in slot w + 1 mod RING: a shard that the fork engine
    computed twice (a slow worker's, done again by another process) writes
    the same bytes again, and no write can reach states a step still reads
    unless it comes RING − 1 steps late.
    """

    RING = 64

    def __init__(self, net, streams, windows):
        self.streams = streams
        self.slots = max(2, min(self.RING, windows + 1))
        # Bumped by the fork engine before it updates the weights: a late worker still computing a shard that
        # another process finished (its result discarded) must not write states made with changing weights.
        self.sealed = shared_zeros((1,), np.int64)
        self.opened = 0
        self.states = {}
        for i, layer in enumerate(net.layers):
            if getattr(layer, "stateful", False):
                parts = 2 if layer.kind == "lstm" else 1
                self.states[i] = tuple(shared_zeros((self.slots, streams, layer.units), net.dtype)
                                       for _ in range(parts))

    def initial(self, node, ids):
        """The states the windows `ids` start from: their streams' last, zeros for an epoch's first window."""
        ids = np.asarray(ids)
        rows, windows = ids % self.streams, ids // self.streams
        if node == min(self.states):  # a shard's pass begins: the step it belongs to
            self.opened = int(self.sealed[0])
        found = []
        for state in self.states[node]:
            value = state[windows % self.slots, rows]
            value[windows == 0] = 0
            found.append(value)
        return tuple(found)

    def seal(self):
        """The step's shards are in: a shard still computing now is late, and writes nothing."""
        self.sealed[0] += 1

    def keep(self, node, ids, final):
        if int(self.sealed[0]) != self.opened:  # computed by a late worker while the step ended: dropped
            return
        ids = np.asarray(ids)
        rows, windows = ids % self.streams, ids // self.streams
        for state, value in zip(self.states[node], final):
            state[(windows + 1) % self.slots, rows] = value

    def arrays(self, window):
        """The states window `window` starts from, as extra arrays of a save in the middle of an epoch."""
        return {f"bptt/node{node}-{k}": np.array(state[window % self.slots])
                for node, parts in self.states.items() for k, state in enumerate(parts)}

    def restore(self, window, found):
        """Put saved states (arrays()) back where window `window` reads them: a resumed epoch goes on exactly."""
        for node, parts in self.states.items():
            for k, state in enumerate(parts):
                value = found.get(f"node{node}-{k}")
                if value is not None and value.shape == state.shape[1:]:
                    state[window % self.slots] = value
