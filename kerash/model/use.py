"""Using a model directory on data: outputs, classes, loss, accuracy, confusion and a per-class report."""

import os
import re
from typing import NamedTuple, Optional

import numpy as np

from ..errors import DataError, UsageError
from ..network import Objective, targets_are_classes
from ..processes import idle_cores, limit_blas_threads
from . import imputation, normalization
from .classes import read_classes
from .data import prepare
from .directory import DTYPES, ModelDir


class Loaded(NamedTuple):
    """What a tool needs to feed a model, read from one version: network, state, class names, input statistics."""

    md: ModelDir
    net: object
    state: dict
    classes: Optional[list]
    stats: Optional[dict]
    fill: Optional[np.ndarray] = None  # values for missing inputs (train --impute)
    workers: Optional[int] = None  # processes for large inputs (predict --workers), or None: processes_for decides

    def inputs(self, x, where, first_row=0):
        """Raw samples as the network reads them (data.prepare), normalised when the model says so."""
        x, _ = prepare(self.md.spec, x, names=(where,), first_row=first_row, fill=self.fill)
        return normalization.normalized(x, self.stats, self.md.spec, self.net.dtype)

    def data(self, x, y, names):
        """Raw samples and their labels as the network reads them (data.prepare: class names mapped through
        classes.txt); the samples normalised when the model says so, the targets float64."""
        x, y = prepare(self.md.spec, x, y, self.classes, names=names, model_path=self.md.path, fill=self.fill)
        return normalization.normalized(x, self.stats, self.md.spec, self.net.dtype), y

    def objective(self):
        """A fresh objective of the model's loss on its network (adapt it to the targets it meets)."""
        return Objective(self.md.spec.loss, self.net)


def load(path, dtype=None, workers=None):
    """The model directory `path` as a Loaded; dtype a name ('float64') or None for the stored one; workers the
    processes for large inputs (None: processes_for decides)."""
    if dtype is not None and dtype not in DTYPES:
        raise UsageError(f"--dtype must be float32 or float64, not {dtype!r}")
    check_workers(workers)
    md = ModelDir(path)
    with md.pinned() as version:
        net, state = md.network(DTYPES.get(dtype), version)
        return Loaded(md, net, state, read_classes(md, version), normalization.read(md, version),
                      imputation.read(md, version), workers)


def load_network(path, dtype=None):
    """(network, state) of the model directory `path`; dtype a name ('float64') or None for the stored one."""
    if dtype is not None and dtype not in DTYPES:
        raise UsageError(f"--dtype must be float32 or float64, not {dtype!r}")
    return ModelDir(path).network(DTYPES.get(dtype))


def predict(path, x, dtype=None, name="input"):
    """Outputs and predicted classes of the model for samples x.

    (N, K) and (N,) for samples; (N, T, K) and (N, T) for sequences (N, T, I).
    """
    return predict_loaded(load(path, dtype), x, name)


# Below this many multiply-adds one process predicts alone: forking costs a few milliseconds.
PARALLEL_WORK = 50_000_000


MAX_WORKERS = 64  # predict/evaluate --workers: more processes than chunks of a large input help nobody


def check_workers(workers):
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be between 1 and {MAX_WORKERS}, got {workers}")


def processes_for(net, samples, workers=None):
    """Processes for a forward pass over `samples`: `workers` when given, else this one, and one per idle core
    when the work pays.

    Each uses one BLAS thread and the chunks are fixed, so the outputs do not depend on the number.
    """
    if workers is not None:
        return workers
    if net.macs_per_sample() * samples < PARALLEL_WORK:
        return 1
    return 1 + idle_cores()


BLOCK_VALUES = 1 << 23  # input values predicted at a time from a stream (64 MiB as float64)


def block_rows(net):
    """Samples read and predicted at a time from a stream: a whole number of prediction chunks, so that the
    outputs are the same bits as from the whole input at once, and enough for two processes to share."""
    chunk = 1024  # Network.predict's batch_size
    per_sample = max(1, int(np.prod(net.input_shape)))
    return chunk * max(2, BLOCK_VALUES // (chunk * per_sample))


def predict_blocks(model, blocks, name="input"):
    """(outputs, predicted classes) of each block of samples, in order (see predict_loaded); rows in messages
    count from the first block."""
    first = 0
    for block in blocks:
        yield predict_loaded(model, block, name, first)
        first += len(block)


def node_blocks(model, blocks, names, name="input"):
    """The values of the nodes `names` for each block of samples (see Network.node_values): one node's as
    they are shaped, several flattened per sample (per step for sequences) and side by side, in that order."""
    indices = [model.net.node_index(n) for n in names]
    first = 0
    for block in blocks:
        rows = model.md.spec.sequence and np.asarray(block).ndim <= 2  # one step each, as predict_loaded
        inputs = model.inputs(block, name, first)
        first += len(block)
        with limit_blas_threads(1):
            values = model.net.node_values(inputs, indices)
        if rows:
            values = [v[:, 0] for v in values]
        if len(values) == 1:
            yield values[0]
            continue
        lead = values[0].shape[:2] if model.net.sequence and not rows else values[0].shape[:1]
        yield np.concatenate([v.reshape(lead + (-1,)) for v in values], axis=-1)


def predict_loaded(model, x, name="input", first_row=0):
    rows = np.asarray(x).ndim <= 2
    inputs = model.inputs(x, name, first_row)
    with limit_blas_threads(1):
        out = model.net.predict(inputs, processes=processes_for(model.net, len(inputs), model.workers))
    if model.md.spec.sequence and rows:
        out = out[:, 0]  # rows given to a model without recurrence: one step each
    return out, model.objective().classes(out)


def held_out_rows(path, samples):
    """The rows of the data that train --validation-split held out of the model at `path`
    (MODEL/validation-rows.txt), checked against the samples given."""
    from ..files import fs
    from ..errors import UsageError
    from .directory import VALIDATION_ROWS

    md = ModelDir(path)
    file = os.path.join(md.version_dir(), VALIDATION_ROWS)
    try:
        with open(file, encoding="utf-8") as f:
            first, *rest = f.read().splitlines() or [""]
    except OSError:
        raise UsageError(f"{path} records no held-out rows (train it with --validation-split)") from None
    match = re.match(r"# samples (\d+):", first)
    if not match:
        raise DataError(f"{fs.source_name(file)}:1: expected '# samples N: …'")
    trained = int(match.group(1))
    rows = [int(line) for line in rest if line.strip()]
    if not rows:
        raise UsageError(f"{path} held no rows out: it was trained without --validation-split")
    if trained != samples:
        raise UsageError(f"{path} held rows out of {trained} samples, but the data given has {samples}: give the "
                         "data it was trained on")
    return np.asarray(rows, dtype=np.int64)


def held_out(path, x, y, where="labels"):
    """(samples, labels) of the rows train --validation-split held out of the model at `path` (class names
    through WordLabels.take)."""
    from ..files.labels import WordLabels

    rows = held_out_rows(path, len(x))
    if isinstance(y, WordLabels):
        return x[rows], y.take(rows, len(x))
    if len(y) != len(x):
        raise DataError(f"{len(x)} data samples but {len(y)} labels ({where})")
    return x[rows], y[rows]


def evaluate(path, x, y, dtype=None, names=("data", "labels"), workers=None):
    """{'loss', 'accuracy', 'samples', 'correct', 'confusion' (or None), 'classes' (names or None), 'regression'
    (regression_scores, or None for classes)} of the model on (x, y).

    y may name classes (WordLabels).  For sequences, the loss is the mean over
    sequences of their mean over scored steps, and accuracy and confusion count
    every scored step.
    """
    model = load(path, dtype, workers)
    net, md = model.net, model.md
    x, y = model.data(x, y, names)
    objective = model.objective()
    objective.adapt_to_targets(y)
    classification = targets_are_classes(y)
    with limit_blas_threads(1):
        processes = processes_for(net, len(x), workers)
        loss_sum, correct, predicted = net.evaluate(objective, x, y.astype(net.dtype), processes=processes)
        outputs = None if classification else net.predict(x, processes=processes)
    n = x.shape[0]
    scored = n * objective.scored_steps(x, y)
    width = md.spec.output_width
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
        "classes": model.classes,
        "regression": None if classification or not n else regression_scores(outputs, y),
    }


def regression_scores(outputs, targets):
    """{'mse', 'rmse', 'mae', 'r2'} of outputs against targets that are values, as scikit-learn's metrics.

    Every output and every scored step counts alike (sequences scored at their
    last step compare that step's outputs).  R² is the mean over outputs of
    1 − SS_res/SS_tot; an output whose targets do not vary gives 1 when it
    is exact, else 0 (scikit-learn's r2_score, force_finite).
    """
    targets = np.asarray(targets, dtype=np.float64)
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 3 and targets.ndim == 2:  # a sequence's target is for its last step
        outputs = outputs[:, -1]
    width = targets.shape[-1]
    outputs, targets = outputs.reshape(-1, width), targets.reshape(-1, width)
    error = outputs - targets
    mse = float(np.mean(error**2))
    residual = np.sum(error**2, axis=0)
    total = np.sum((targets - targets.mean(axis=0)) ** 2, axis=0)
    exact = residual == 0
    r2 = np.where(total > 0, 1 - residual / np.where(total > 0, total, 1), np.where(exact, 1.0, 0.0))
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(np.mean(np.abs(error))), "r2": float(r2.mean())}


def class_report(confusion):
    """scikit-learn's classification_report from a confusion matrix (rows true, columns predicted).

    Rows for the classes that occur in the truth or the predictions (its
    default labels), each (class index, precision, recall, f1, support);
    then accuracy, and the macro and weighted averages over those rows.  A
    ratio with nothing to divide by (no sample predicted as a class) is 0,
    as scikit-learn's zero_division default gives (it also warns).
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    present = np.flatnonzero((support > 0) | (predicted > 0))

    def ratio(a, b):
        return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b > 0)

    precision = ratio(tp, predicted.astype(float))
    recall = ratio(tp, support.astype(float))
    f1 = ratio(2 * tp, (support + predicted).astype(float))  # 2PR/(P+R) = 2tp/(2tp + fp + fn)
    rows = [(int(k), precision[k], recall[k], f1[k], int(support[k])) for k in present]
    total = int(support.sum())
    weights = support[present] / max(total, 1)
    return {
        "rows": rows,
        "accuracy": tp.sum() / max(total, 1),
        "macro": (precision[present].mean(), recall[present].mean(), f1[present].mean(), total),
        "weighted": (float(weights @ precision[present]), float(weights @ recall[present]),
                     float(weights @ f1[present]), total),
    }
