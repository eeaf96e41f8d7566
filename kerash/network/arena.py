"""The flat arena: every parameter of a network in one flat buffer, and every gradient in another.

An optimiser then updates all the weights with a few whole-buffer
operations, a backup is one copy, and processes share the buffers as files.
The layers read and write views of them (see Network.use_arena).
"""

import numpy as np


class Arena:
    """Each parameter's place in the flat buffers, and the buffers.

    layout: [(key 'layer_NN', name, start, size, shape)] in the network's
    order, names sorted within a node.  `params` is None until the network
    uses the arena for its weights; `grads` is set by the network from the start.
    """

    def __init__(self, shapes, dtype):
        """shapes: {'layer_NN': {name: shape}} in the network's order."""
        self.dtype = np.dtype(dtype)
        self.layout, self.size = [], 0
        for key, named in shapes.items():
            for name in sorted(named):
                size = int(np.prod(named[name]))
                self.layout.append((key, name, self.size, size, tuple(named[name])))
                self.size += size
        self.params = None
        self.grads = None

    def views(self, flat):
        """[(key, name, view)] of an arena-shaped flat array, in layout order."""
        return [(key, name, flat[start : start + size].reshape(shape)) for key, name, start, size, shape in self.layout]

    def split_flat(self, flat):
        """{'layer_NN/name': view} of an arena-shaped flat array."""
        return {f"{key}/{name}": view for key, name, view in self.views(flat)}

    def join_flat(self, arrays, dtype=None):
        """An arena-shaped flat array from {'layer_NN/name': array}, or None if one is missing."""
        flat = np.empty(self.size, dtype=dtype or self.dtype)
        for key, name, start, size, shape in self.layout:
            part = arrays.get(f"{key}/{name}")
            if part is None or part.shape != tuple(shape):
                return None
            flat[start : start + size] = part.reshape(-1)
        return flat

    def decay_mask(self):
        """1 over the weights W, 0 over the biases: weight decay applies to weights only."""
        mask = np.zeros(self.size, dtype=self.dtype)
        for key, name, start, size, shape in self.layout:
            if name == "W":
                mask[start : start + size] = 1
        return mask

    def trainable_ranges(self, frozen):
        """[(start, stop)] that training updates: all but the parameters of the nodes `frozen` ('layer_NN'), merged."""
        ranges = []
        for key, name, start, size, shape in self.layout:
            if key in frozen:
                continue
            if ranges and ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], start + size)
            else:
                ranges.append((start, start + size))
        return ranges
