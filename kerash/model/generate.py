"""Generating a sequence token by token from a trained model (kerash sample).

The model reads token ids (an embedding, then lstm or gru layers) and gives
a distribution over the next token at every step (a softmax over the
vocabulary).  The prime text is read in one pass; then each token drawn is
fed back one step at a time, the recurrent states carried along
(Network.forward_states), so a token costs one step, not the whole prefix.
"""

import numpy as np

from ..errors import UsageError


def next_token(probabilities, rng, temperature=1.0, top_k=None):
    """A token id drawn from one step's probabilities: sharpened or flattened by the temperature (probabilities
    to the power 1/T, as logits divided by T), kept to the top k when asked; <unk> (id 0) is never drawn."""
    p = np.asarray(probabilities, dtype=np.float64).copy()
    p[0] = 0.0
    p = np.maximum(p, 0)
    if temperature != 1.0:
        with np.errstate(divide="ignore"):
            logits = np.log(p) / temperature
        logits -= logits[np.isfinite(logits)].max()
        p = np.exp(logits)
    if top_k is not None and top_k < np.count_nonzero(p):
        cut = np.sort(p)[-top_k]
        p[p < cut] = 0.0
    total = p.sum()
    if not np.isfinite(total) or total <= 0:
        return int(np.argmax(probabilities[1:]) + 1)
    return int(rng.choice(len(p), p=p / total))


def check(net, vocabulary=None, temperature=1.0, top_k=None):
    """Refuse what generation cannot do, before anything is written."""
    if not net.whole or not net.timed[-1]:
        raise UsageError("kerash sample needs a model that reads token ids and answers at every step "
                         "(e.g. embedding, lstm … sequences, dense V softmax)")
    stateless = [layer.kind for layer in net.layers if getattr(layer, "sequence_layer", False)
                 and not getattr(layer, "stateful", False)]
    if stateless:  # a tdnn reads steps around each one: a step at a time, it would see zeros there
        raise UsageError(f"kerash sample generates a step at a time, carrying lstm and gru states; a {stateless[0]} "
                         "layer reads the steps around each step, which a step at a time cannot give it")
    if vocabulary is not None and net.output_width != vocabulary:
        raise UsageError(f"the model answers with {net.output_width} values a step, but its vocabulary has "
                         f"{vocabulary} tokens")
    if not (0.01 <= temperature <= 100):  # beyond: all the weight on one token, or none on any
        raise UsageError(f"--temperature must be between 0.01 and 100, not {temperature}")
    if top_k is not None and top_k < 1:
        raise UsageError(f"--top-k must be ≥ 1, not {top_k}")


def generate(net, prime, length, temperature=1.0, top_k=None, seed=None):
    """Yield `length` token ids drawn one after another, after the ids `prime` (at least one)."""
    check(net, None, temperature, top_k)
    rng = np.random.default_rng(seed)
    out, states = net.forward_states(np.asarray(prime, dtype=net.dtype).reshape(1, -1, 1))
    for _ in range(length):
        token = next_token(out.reshape(out.shape[0], out.shape[1], -1)[0, -1], rng, temperature, top_k)
        yield token
        out, states = net.forward_states(np.array([[[token]]], dtype=net.dtype), states)
