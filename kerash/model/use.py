"""Using a model directory on data: outputs, classes, loss, accuracy and confusion."""

import numpy as np

from ..errors import UsageError
from ..network import targets_are_classes
from .data import prepare_inputs, prepare_targets
from .directory import DTYPES, ModelDir


def load_network(path, dtype=None):
    """(network, state) of the model directory `path`; dtype a name ('float64') or None for the stored one."""
    if dtype is not None and dtype not in DTYPES:
        raise UsageError(f"--dtype must be float32 or float64, not {dtype!r}")
    return ModelDir(path).network(DTYPES.get(dtype))


def predict(path, x, dtype=None, name="input"):
    """Outputs and predicted classes of the model for samples x.

    (N, K) and (N,) for samples; (N, T, K) and (N, T) for sequences (N, T, I).
    """
    md = ModelDir(path)
    net, _ = md.network(DTYPES.get(dtype) if dtype else None)
    rows = np.asarray(x).ndim <= 2
    out = net.predict(prepare_inputs(x, md.spec, name))
    if md.spec.sequence and rows:
        out = out[:, 0]  # rows given to a model without recurrence: one step each
    return out, net.classes(out)


def evaluate(path, x, y, dtype=None, names=("data", "labels")):
    """{'loss', 'accuracy', 'samples', 'correct', 'confusion' (or None)} of the model on (x, y).

    For sequences, the loss is the mean over sequences of their mean over scored
    steps, and accuracy and confusion count every scored step.
    """
    md = ModelDir(path)
    net, _ = md.network(DTYPES.get(dtype) if dtype else None)
    x = prepare_inputs(x, md.spec, names[0])
    y = prepare_targets(y, md.spec, x, names[1])
    net.adapt_to_targets(y)
    loss_sum, correct, predicted = net.evaluate(x, y.astype(net.dtype))
    n = x.shape[0]
    scored = n * net.scored_steps(x, y)
    width = md.spec.output_width
    classification = targets_are_classes(y)
    confusion = None
    if classification and n:
        k = max(width, 2)
        rows = y.reshape(-1, width)
        truth = rows.argmax(axis=1) if width > 1 else (rows[:, 0] > 0.5).astype(np.int64)
        confusion = np.zeros((k, k), dtype=np.int64)
        np.add.at(confusion, (truth, predicted.reshape(-1)), 1)
    return {
        "loss": loss_sum / n if n else float("nan"),
        "accuracy": correct / scored if classification and n else float("nan"),
        "samples": n,
        "correct": correct if classification else None,
        "confusion": confusion,
    }
