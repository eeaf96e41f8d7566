"""Data brought into the shapes a model reads: samples, sequences and targets."""

import numpy as np

from ..errors import DataError
from ..ops import shape_str
from . import imputation
from .classes import class_targets


def prepare(spec, x, y=None, classes=None, dtype=None, names=("data", "labels"), model_path=None, first_row=0,
            fill=None, finite=True):
    """Samples, and their labels, as the network of `spec` reads them: (x, y), y None without labels.

    The one sequence every tool follows: the samples shaped to the model's
    input (prepare_inputs); labels that name classes mapped to class indices
    through `classes`, the model's class names (class_targets, whose messages
    name `model_path`); samples then labels checked finite; the labels shaped
    to the model's outputs (prepare_targets).  With `dtype`, both come back
    C-contiguous in it (copied only when they are not); without, the targets
    are float64 and the samples as given.  `names` (samples, labels) name
    the inputs in messages, as does `first_row` the row number of the first
    sample (a block of a longer input).  `fill`: the model's values for
    missing inputs (imputation.py), put in before the samples are checked;
    `finite` False leaves that check to the caller.  Prepared samples pass
    through again unchanged.
    """
    x = prepare_inputs(x, spec, names[0])
    if y is not None:
        y = class_targets(y, classes, x.shape[0], model_path)
    x = imputation.fill(x, fill, spec)  # the model's values for missing inputs (train --impute)
    padded = padding_of(x, names[0]) if spec.sequence else None  # sequences of different lengths
    if padded is not None and not spec.whole_sequences:
        raise DataError(f"sequences of different lengths need a model whose recurrence is an lstm or gru layer; a "
                        f"recurrent merge reads every sequence to the longest one's length ({names[0]})")
    if finite:  # (not when train fits those values first)
        check_finite(x if padded is None else x[~padded], names[0], first_row)
    if y is not None:
        y = np.asarray(y)
        step_targets = padded is not None and y.ndim >= 2 and y.shape[:2] == padded.shape
        check_finite(y[~padded] if step_targets else y, names[1], first_row)
        y = prepare_targets(y, spec, x, names[1])
    if dtype is not None:
        x = np.ascontiguousarray(x, dtype=dtype)
        y = None if y is None else np.ascontiguousarray(y, dtype=dtype)
    return x, y


def prepare_inputs(x, spec, where="data"):
    """Samples as the network reads them.

    Line format: (N, C, H, W) from rows of flattened samples or an (N, C, H, W)
    tensor.  MDL: sequences (N, T, I); rows (N, I) are T = 1 when nothing is
    recurrent.
    """
    x = np.asarray(x)
    if spec.sequence:
        return _sequences(x, spec, where)
    d, h, w = spec.input_shape
    need = d * h * w
    if x.ndim == 4:
        if x.shape[1:] != (d, h, w):
            raise DataError(
                f"data samples are {shape_str(x.shape[1:])} but the model input is {d}×{h}×{w} (C×H×W) ({where})"
            )
        return x
    if x.ndim == 3 and x.shape == (d, h, w):
        return x[None]
    if x.ndim == 3 and d == 1 and x.shape[1:] == (h, w):
        return x[:, None]
    if x.ndim <= 1:
        x = x.reshape(1, -1)
    if x.ndim == 2:
        if x.shape[1] != need:
            raise DataError(
                f"data rows have {x.shape[1]} values but the model input {w}×{h}×{d} needs {need} ({where})"
            )
        return x.reshape(x.shape[0], d, h, w)
    raise DataError(f"data of shape {shape_str(x.shape)} does not fit the model input {d}×{h}×{w} ({where})")


CHECK_CHUNK = 1 << 16  # values looked at a time when a non-finite one is searched for


def check_finite(a, where, first_row=0):
    """Refuse NaN and ±∞ in data, naming the first row (1-based, a sample, after `first_row`) and value that holds one.

    The check costs no memory: a NaN or an infinity shows in the minimum or
    the maximum; only then are the rows searched, a block at a time.
    """
    a = np.asarray(a)
    if a.size == 0 or a.dtype.kind != "f" or (np.isfinite(a.min()) and np.isfinite(a.max())):
        return
    rows = a.reshape(a.shape[0] if a.ndim else 1, -1)
    step = max(1, CHECK_CHUNK // max(rows.shape[1], 1))
    for start in range(0, rows.shape[0], step):
        bad = ~np.isfinite(rows[start : start + step])
        if bad.any():
            r, c = (int(i) for i in np.argwhere(bad)[0])
            value = rows[start + r, c]
            hint = "; a missing value? train --impute mean|median|most-frequent fills them" if np.isnan(value) else ""
            raise DataError(f"non-finite value {value} in row {first_row + start + r + 1}, value {c + 1}: "
                            f"data must be finite numbers{hint} ({where})")


def unpadded(x, spec, where="data"):
    """The steps of sequences of different lengths without their padding (rows (M, I)); x itself otherwise."""
    padded = padding_of(x, where) if spec.whole_sequences else None
    return x if padded is None else x[~padded]


def padding_of(x, where="data"):
    """The padded steps (N, T) of sequences of different lengths — steps all nan after a sequence's last — or None.

    A step of nan inside a sequence is refused: padding only follows a sequence's steps.
    """
    if x.ndim != 3 or not x.size:
        return None
    nan = np.isnan(x).all(axis=2)
    if not nan.any():
        return None
    after = np.logical_and.accumulate(nan[:, ::-1], axis=1)[:, ::-1]  # the trailing run of each sequence
    inside = nan & ~after
    if inside.any():
        n, t = (int(i) for i in np.argwhere(inside)[0])
        raise DataError(f"sequence {n + 1}, step {t + 1}: a step of missing values inside a sequence; padding "
                        f"(nan steps) may only follow a sequence's steps ({where})")
    if after[:, 0].any():
        raise DataError(f"sequence {int(np.argmax(after[:, 0])) + 1} has no step ({where})")
    return after


def _sequences(x, spec, where):
    width = int(np.prod(spec.input_shape))
    if x.ndim <= 1:
        x = x.reshape(1, -1)
    if x.ndim == 2:
        if spec.recurrent or spec.whole_sequences:
            raise DataError(
                f"the model is recurrent: give sequences (N, T, {width}), e.g. a .npy file or text with a "
                f"'# shape: N T {width}' line, not rows of {shape_str(x.shape)} ({where})"
            )
        x = x[:, None, :]
    if x.ndim != 3:
        raise DataError(f"data of shape {shape_str(x.shape)} is not sequences (N, T, {width}) ({where})")
    if x.shape[2] != width:
        raise DataError(f"sequence steps have {x.shape[2]} values but the model input is {width} wide ({where})")
    if x.shape[1] < 1:
        raise DataError(f"sequences of 0 steps ({where})")
    return x


def _class_indices(values, width):
    """True when every value is a class index 0..width−1."""
    return bool(np.all((values == np.floor(values)) & (values >= 0) & (values < width)))


def _one_hot(classes, width, where):
    if not _class_indices(classes, width):
        bad = classes[~((classes == np.floor(classes)) & (classes >= 0) & (classes < width))].flat[0]
        hint = ""
        if _class_indices(classes - 1, width):  # 1..K, as people number classes
            hint = "; they look numbered 1..K: subtract one, e.g. awk '{print $1 - 1}' LABELS"
        raise DataError(
            f"a label column must hold class indices 0..{width - 1} for the model's {width} outputs, found {bad:g}"
            f"{hint} ({where})"
        )
    onehot = np.zeros(classes.shape + (width,))
    np.put_along_axis(onehot, classes.astype(np.int64)[..., None], 1.0, axis=-1)
    return onehot


def prepare_targets(y, spec, x, where="labels"):
    """Targets for prepared inputs x: (N, K) — or, for sequences, (N, T, K) scored at every step.

    Accepted: one-hot or real rows of K values, or one column of class indices
    (one-hot encoded); for sequences also (N, T, K), (N, T) class indices or
    targets of a one-output model, (N, K) or (N,) for the last step.
    """
    y = np.asarray(y, dtype=np.float64)
    n, width = x.shape[0], spec.output_width
    if spec.sequence:
        return _sequence_targets(y, n, x.shape[1], width, where)
    if y.ndim == 0:
        y = y.reshape(1, 1)
    elif y.ndim == 1:
        y = y.reshape(-1, 1) if n != 1 or y.size == 1 else y.reshape(1, -1)
    elif y.ndim > 2:
        y = y.reshape(y.shape[0], -1)
    if y.shape[0] != n:
        raise DataError(f"{n} data samples but {y.shape[0]} label rows ({where})")
    if y.shape[1] == width:
        return y
    if y.shape[1] == 1 and width > 1:
        return _one_hot(y[:, 0], width, where)
    raise DataError(
        f"labels have {y.shape[1]} columns but the model outputs {width} values; give one-hot rows of {width}, "
        f"one column of class indices, or {width} targets per row ({where})"
    )


def _sequence_targets(y, n, steps, width, where):
    if y.ndim == 0:
        y = y.reshape(1)
    if y.shape[0] != n:
        raise DataError(f"{n} data sequences but {y.shape[0]} label rows ({where})")
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim == 3:
        if y.shape[1] != steps:
            raise DataError(f"labels have {y.shape[1]} steps but the data has {steps} ({where})")
        if y.shape[2] == width:
            return y
        if y.shape[2] == 1 and width > 1:
            pad = np.isnan(y[..., 0])  # the steps after a shorter sequence's last: no target
            if not pad.any():
                return _one_hot(y[..., 0], width, where)
            y = _one_hot(np.where(pad, 0, y[..., 0]), width, where)
            y[pad] = np.nan
            return y
        raise DataError(f"labels have {y.shape[2]} values per step but the model outputs {width} ({where})")
    if y.ndim != 2:
        raise DataError(f"labels of shape {shape_str(y.shape)} fit no sequence model ({where})")
    columns = y.shape[1]
    one_hot_rows = bool(np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1))
    if columns == width and (columns != steps or one_hot_rows or width == 1 or not _class_indices(y, width)):
        return y  # the last step's targets
    if columns == steps and steps > 1:
        if width == 1:
            return y[:, :, None]  # one output, scored at every step
        return _one_hot(y, width, where)  # class indices at every step
    if columns == 1 and width > 1:
        return _one_hot(y[:, 0], width, where)  # a class index at the last step
    raise DataError(
        f"labels {shape_str(y.shape)} fit neither the last step ({n}×{width}) nor every step ({n}×{steps}×{width} "
        f"or class indices {n}×{steps}) ({where})"
    )


def reads_sequences(spec, lengths=None):
    """Whether data for the model is read as sequences — text blocks between blank lines, --lengths, a ragged
    .npz (files/sequences.py) — rather than as a tensor: models whose recurrence is their own, or --lengths."""
    return spec.sequence and (lengths is not None or spec.whole_sequences or spec.recurrent)


def read_sequence_data(spec, data, labels=None, names=False, lengths=None, dtype=None):
    """(samples (N, T, I), padded with nan where lengths differ; their labels, or None) for the model.

    `lengths`: a lengths file (--lengths); `names`: labels are read as class names (classes.labels_are_names).
    """
    from ..files import sequences

    x = sequences.read_sequences(data, dtype, sequences.read_lengths(lengths) if lengths else None,
                                 int(np.prod(spec.input_shape)))
    return x, (None if labels is None else sequences.read_sequence_labels(labels, x, names))
