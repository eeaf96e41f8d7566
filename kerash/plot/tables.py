"""The tables that pictures are drawn from, read with numpy alone.

trace.tsv (one line per epoch, written by train and restore), stats.tsv
(per-layer statistics per epoch), evolve.tsv (one line per genome), the
layer folders of a model or of a gradient folder.
Columns are found by their header names, so files written before a column
was added still read.
"""

import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError, KerashError, UsageError

TRACE_FILE = "trace.tsv"
STATS_FILE = "stats.tsv"
EVOLVE_FILE = "evolve.tsv"


def _read_table(path, required, text_columns=()):
    """(header, {column: float array or list of str}) of a tab-separated file with a header line.

    Empty fields and 'nan' are NaN; `text_columns` are kept as strings.
    """
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    lines = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not lines:
        raise DataError(f"{path} is empty")
    header = lines[0][1].split("\t")
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}:{lines[0][0]}: no column {', '.join(missing)} in the header")
    columns = {c: [] for c in header}
    for n, line in lines[1:]:
        fields = line.split("\t")
        if len(fields) > len(header):
            raise DataError(f"{path}:{n}: {len(fields)} fields but the header has {len(header)}")
        fields += [""] * (len(header) - len(fields))
        for name, value in zip(header, fields):
            if name in text_columns:
                columns[name].append(value)
                continue
            try:
                columns[name].append(float(value) if value.strip() else math.nan)
            except ValueError:
                if name in required:
                    raise DataError(f"{path}:{n}: {name} {value!r} is not a number") from None
                columns[name].append(math.nan)
    return header, {c: (v if c in text_columns else np.array(v, dtype=float)) for c, v in columns.items()}


@dataclass
class Marker:
    kind: str  # 'restore' or 'resume'
    epoch: float  # where on the epoch axis
    index: int = None  # the trace line whose metrics mark the point (restores)
    label: str = ""


@dataclass
class Trace:
    """A model's training history: one entry per trace line, in file order."""

    name: str
    path: str
    epoch: np.ndarray
    values: dict
    events: list
    loss_name: str = "loss"
    pieces: list = field(default_factory=list)  # (line indices, kept) in drawing order
    markers: list = field(default_factory=list)

    def column(self, name):
        return self.values.get(name, np.full(len(self.epoch), math.nan))

    def has(self, name):
        return bool(np.any(np.isfinite(self.column(name))))


def _loss_name(model_dir):
    """The loss named in MODEL/model ('cross_entropy'), or 'loss' when it does not say."""
    try:
        with open(os.path.join(model_dir, "model")) as f:
            found = re.search(r"^\s*loss\s+(\S+)", f.read(), flags=re.M)
    except OSError:
        return "loss"
    return found.group(1) if found else "loss"


def read_trace(source, name=None):
    """The Trace of a model directory (its trace.tsv) or of a trace file.

    Both formats are read: the first ('nan' where there is no value) and the
    one with an 'event' column (empty fields where there is no value; 'start'
    on the first line of a run, 'restore:NAME' on a line written by restore).
    """
    is_dir = os.path.isdir(source)
    path = os.path.join(source, TRACE_FILE) if is_dir else source
    until = None  # a version or checkpoint folder: its model's trace, up to the epoch it holds
    if is_dir and not os.path.exists(path):
        root, epochs = _frozen_model(source)
        if root is None:
            raise DataError(f"{source} has no {TRACE_FILE}: train it first")
        path, until = os.path.join(root, TRACE_FILE), epochs
        if not os.path.exists(path):
            raise DataError(f"{root} has no {TRACE_FILE}: train it first")
    header, columns = _read_table(path, ("epoch", "loss"), text_columns=("event",))
    if until is not None:
        at = [i for i, e in enumerate(columns["epoch"]) if e == until]
        if at:
            columns = {k: v[: at[-1] + 1] for k, v in columns.items()}
    events = columns.pop("event", None) or [""] * len(columns["epoch"])
    trace = Trace(
        name or os.path.basename(os.path.normpath(source if is_dir else os.path.dirname(os.path.abspath(path)))),
        path,
        columns.pop("epoch"),
        columns,
        [e.strip() for e in events],
        _loss_name(source if is_dir else os.path.dirname(os.path.abspath(path))),
    )
    if not len(trace.epoch):
        raise DataError(f"{path} has no epoch lines yet")
    trace.pieces, trace.markers = _history(trace.epoch, trace.events)
    return trace


def _frozen_model(path):
    """(model directory, epochs) of a version folder MODEL/.versions/N or a checkpoint, else (None, None)."""
    from ..model import ModelDir  # here: the terminal's curves need no more than numpy

    try:
        md = ModelDir(path)
        if not md.frozen:
            return None, None
        return md.frozen, int(md.read_state().get("epochs", 0))
    except (KerashError, OSError, ValueError):
        return None, None


def _history(epoch, events):
    """Split a trace into runs of consecutive epochs and find its restores and resumes.

    A restore line, or (first format) a line whose epoch is not after the one
    before, starts a new branch from the restored epoch.  Parts of earlier
    branches past the point a later branch went back to are not in the
    current model's history: they come back with kept=False.
    """
    branches, markers = [[0]], []
    for i in range(len(epoch)):
        event = events[i]
        restore = event.startswith("restore")
        if i and (restore or epoch[i] <= epoch[i - 1]):
            # the line the run went back to: the restore line itself, or the last line of the epoch before
            before = [j for j in range(i) if epoch[j] == epoch[i] - 1]
            branches.append([i] if restore or not before else [before[-1], i])
            if not restore:
                markers.append(Marker("restore", epoch[i] - 1, before[-1] if before else None, "restore"))
        elif i:
            branches[-1].append(i)
        if restore:
            markers.append(Marker("restore", epoch[i], i, event.partition(":")[2] or "restore"))
        elif event == "start" and epoch[i] > 1 and not (i and events[i - 1].startswith("restore")):
            markers.append(Marker("resume", epoch[i] - 0.5, None, "resume"))
    pieces, limit = [], math.inf
    for branch in reversed(branches):
        kept = [i for i in branch if epoch[i] <= limit]
        left = [i for i in branch if epoch[i] >= limit]
        if len(left) > 1:
            pieces.append((left, False))
        if kept:
            pieces.append((kept, True))
        limit = min(limit, epoch[branch[0]])
    return pieces[::-1], markers


def read_stats(model_dir):
    """{(layer, param): {column: array over epochs}} from MODEL/stats.tsv, or None when there is none."""
    path = os.path.join(model_dir, STATS_FILE)
    if not os.path.exists(path):
        return None
    _, columns = _read_table(path, ("epoch", "layer", "param"), text_columns=("layer", "param"))
    series = {}
    for i, key in enumerate(zip(columns["layer"], columns["param"])):
        series.setdefault(key, []).append(i)
    numeric = [c for c in columns if c not in ("layer", "param")]
    return {key: {c: columns[c][np.array(rows)] for c in numeric} for key, rows in sorted(series.items())}


def read_evolution(source):
    """{column: array or list} of an evolution log: EVOLVE_DIR/evolve.tsv, or the table evolve printed."""
    path = os.path.join(source, EVOLVE_FILE) if os.path.isdir(source) else source
    if os.path.isdir(source) and not os.path.exists(path):
        raise DataError(f"{source} has no {EVOLVE_FILE}: is it a folder written by evolve -o?")
    _, columns = _read_table(path, ("generation", "val_loss"), text_columns=("genome", "parent", "mutation", "layers"))
    if not len(columns["generation"]):
        raise DataError(f"{path} has no genomes")
    return path, columns


def _param_order(name):
    return ({"W": 0, "b": 1}.get(name, 2), name)


def read_layers(model):
    """[(layer, param, array)] of a model's current version in layer order, W before b, by the model's checked reader."""
    from .. import model as modelmod

    params, _ = modelmod.ModelDir(model).load()
    return [(layer, name, params[layer][name]) for layer in params for name in sorted(params[layer], key=_param_order)]


def read_gradients(folder, model):
    """[(layer, param, mean gradient per sample)] of a gradient folder written by backprop for `model` (checked)."""
    from .. import model as modelmod
    from ..training.steps import read_grads

    arrays, stats = read_grads(folder, modelmod.param_shapes(modelmod.ModelDir(model).spec))
    samples = int(stats["samples"]) or 1
    return [(*key.split("/"), array / samples) for key, array in arrays.items()]


def true_classes(y, name):
    """Class indices (N,) of labels: a column of indices or one-hot rows."""
    y = np.asarray(y, dtype=float)
    y = y.reshape(len(y), -1) if y.ndim != 1 else y.reshape(-1, 1)
    if y.shape[1] > 1:
        return y.argmax(axis=1)
    column = y[:, 0]
    if not np.all((column == np.floor(column)) & (column >= 0)):
        raise UsageError(f"the labels are not class indices ({name})")
    return column.astype(np.int64)
