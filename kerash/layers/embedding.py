"""Token inputs: an embedding, a row of weights per token of a vocabulary.

DyNet's word input — a one-hot input layer of V units whose weights are
summed only where the input is active — is the same function: a token id
picks its row of W (V, D), and the gradient touches only the rows of the ids
that came.  The inputs are ids 0..V−1, one per sample or per step (as
`kerash text encode` writes them), never normalised.
"""

import numpy as np

from ..errors import DataError, ModelError
from .base import Layer, int_args, register, size_of


@register
class Embedding(Layer):
    """Y = W[id]: token ids (one value per sample or step) to rows of W (V, D)."""

    kind = "embedding"
    keras_name = "Embedding"
    syntax = "VOCABULARY DIM"
    mdl_width = True  # written (NAME, DIM, <embedding, VOCABULARY>) in MDL

    def __init__(self, vocabulary, dim):
        self.vocabulary, self.units = vocabulary, dim

    @classmethod
    def parse(cls, args):
        if len(args) != 2:
            raise ModelError("embedding takes VOCABULARY DIM: the number of token ids and the width of a token's "
                             f"row, e.g. 'embedding 50 16'; found {' '.join(args) or 'nothing'}")
        vocabulary, dim = int_args(args, ["VOCABULARY", "DIM"], "embedding")
        return cls(vocabulary, dim)

    @classmethod
    def parse_width(cls, width, params):
        """MDL: (NAME, DIM, <embedding, VOCABULARY>)."""
        if len(params) != 1:
            raise ModelError("write an embedding (NAME, DIM, <embedding, VOCABULARY>), e.g. (e, 16, <embedding, 50>)")
        return cls.parse([params[0], str(width)])

    def text(self):
        return f"embedding {self.vocabulary} {self.units}"

    def mdl_params(self):
        return [str(self.vocabulary)]

    def describe(self):
        return f"{self.vocabulary} tokens"

    def check(self, shapes):
        if size_of(shapes[0]) != 1:
            raise ModelError(f"embedding reads one token id per sample or step, not {size_of(shapes[0])} values")

    def output_shape(self, shapes):
        return (self.units,)

    def param_shapes(self, shapes):
        return {"W": (self.vocabulary, self.units)}

    def fans(self, shapes):
        return 1, self.units

    def macs(self, shapes):
        return self.units

    def forward(self, p, x):
        values = np.asarray(x).reshape(-1)
        ids = values.astype(np.int64)
        if np.any(ids != values) or np.any(ids < 0) or np.any(ids >= self.vocabulary):
            bad = values[(ids != values) | (ids < 0) | (ids >= self.vocabulary)][0]
            raise DataError(f"embedding: token id {bad:g} is not one of 0..{self.vocabulary - 1} (an embedding reads "
                            "raw token ids, as kerash text encode writes them: not normalised)")
        return p["W"][ids], ids

    def backward(self, p, g, ctx, dy, need_dx=True, accumulate=False):
        ids = ctx
        if g is not None:
            target = g["W"]
            if not accumulate:
                target.fill(0)
            # Sums per token over the rows that used it: only those rows of the gradient change.
            order = np.argsort(ids, kind="stable")
            used, starts = np.unique(ids[order], return_index=True)
            target[used] += np.add.reduceat(dy.reshape(len(ids), -1)[order], starts, axis=0)
        return (None,)
