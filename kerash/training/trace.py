"""What training leaves to read: the epoch table (stdout and MODEL/trace.tsv), MODEL/stats.tsv and MODEL/units.tsv.

trace.tsv has one line per epoch: the columns train prints, then the
learning rate and batch size in force, and an `event`: `start` on the first
epoch of each run (`start:new-data` when the data differ from the run
before), `restore:NAME` on a line written by `kerash restore` (its epoch and
figures are those of the checkpoint).  A value that does not exist (no
validation, no accuracy for real targets) is an empty field.

stats.tsv (train --stats) has one line per epoch and parameter: RMS, mean,
min and max of the weights and of the gradient of the epoch's last step,
and the epoch's update-to-weight ratio RMS(w_end − w_start) / RMS(w_start)
— DyNet's display tables, for spotting dead or exploding layers.

units.tsv (train --trace-unit NODE:INDEX) has one line per epoch and unit:
the mean, deviation, min and max of its activation over the training part
after the epoch — DyNet's unit trace.
"""

import math
import os

import numpy as np

from ..files import fs

COLUMNS = ("epoch", "samples", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")
# processes: the mean number of processes that computed a step of the epoch (the fork engine's choice)
TRACE_COLUMNS = COLUMNS + ("lr", "batch_size", "event", "processes")
TRACE_FILE = "trace.tsv"
STATS_FILE = "stats.tsv"
STATS_COLUMNS = ("epoch", "layer", "param", "w_rms", "w_mean", "w_min", "w_max",
                 "g_rms", "g_mean", "g_min", "g_max", "update_ratio")


def format_record(record, columns=COLUMNS):
    """One tab-separated line of a record; values that do not exist are empty fields."""
    out = []
    for col in columns:
        v = record.get(col)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append("")
        elif col in ("epoch", "samples", "batch_size", "index"):
            out.append(str(int(v)))
        elif col in ("event", "node"):
            out.append(str(v))
        elif col == "seconds":
            out.append(f"{v:.3f}")
        elif col == "processes":
            out.append(f"{v:.2f}")
        elif col.endswith("accuracy"):
            out.append(f"{v:.4f}")
        else:
            out.append(f"{v:.6g}")
    return "\t".join(out)


def append_lines(path, columns, records):
    """Append records to a table, writing its header first; an older header's table is widened first.

    A table whose columns are a prefix of `columns` (written by an earlier kerash) gets the new
    columns as empty fields, rewritten atomically; nothing already recorded is lost.
    """
    header = "\t".join(columns)
    lines = [format_record(r, columns) + "\n" for r in records]
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline().rstrip("\n")
            rest = f.read()
    except FileNotFoundError:
        first, rest = None, ""
    if first is None:
        lines.insert(0, header + "\n")
    elif first != header:
        old = first.split("\t")
        if tuple(old) == tuple(columns[: len(old)]):
            pad = "\t" * (len(columns) - len(old))
            rows = [row + pad + "\n" for row in rest.splitlines() if row]
            with fs.atomic_file(path) as f:
                f.write("".join([header + "\n", *rows, *lines]).encode())
            return
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(lines))


def layer_statistics(epoch, arena, grads, before):
    """stats.tsv records of an epoch: per parameter of the arena, weights, the last step's gradient, update ratio."""
    records = []
    for key, name, start, size, shape in arena.layout:
        w = arena.params[start : start + size].astype(np.float64)
        g = grads[start : start + size].astype(np.float64)
        moved = w - before[start : start + size]
        rms_before = math.sqrt(float(np.mean(np.square(before[start : start + size]))))
        records.append({
            "epoch": epoch, "layer": key, "param": name,
            "w_rms": math.sqrt(float(np.mean(np.square(w)))), "w_mean": float(w.mean()),
            "w_min": float(w.min()), "w_max": float(w.max()),
            "g_rms": math.sqrt(float(np.mean(np.square(g)))), "g_mean": float(g.mean()),
            "g_min": float(g.min()), "g_max": float(g.max()),
            "update_ratio": math.sqrt(float(np.mean(np.square(moved)))) / rms_before if rms_before else math.nan,
        })
    return records


UNITS_FILE = "units.tsv"
UNITS_COLUMNS = ("epoch", "node", "index", "mean", "std", "min", "max")


def unit_statistics(epoch, values, units):
    """units.tsv records of an epoch: for each unit (node name, index), the statistics of its activation over
    the rows of its node's values (`values`, in the same order: one row per sample, or per sample and step)."""
    records = []
    for (name, index), rows in zip(units, values):
        unit = rows[:, index].astype(np.float64)
        records.append({"epoch": epoch, "node": name, "index": index, "mean": float(unit.mean()),
                        "std": float(unit.std()), "min": float(unit.min()), "max": float(unit.max())})
    return records


def append_units(model_path, records):
    """Append records to MODEL/units.tsv (train --trace-unit), with its header when new."""
    if records:
        append_lines(os.path.join(model_path, UNITS_FILE), UNITS_COLUMNS, records)


def format_stats(record):
    cells = []
    for col in STATS_COLUMNS:
        v = record[col]
        if col == "epoch":
            cells.append(str(v))
        elif col in ("layer", "param"):
            cells.append(v)
        else:
            cells.append("" if math.isnan(v) else f"{v:.6g}")
    return "\t".join(cells)


def append_stats(model_path, records):
    if not records:
        return
    path = os.path.join(model_path, STATS_FILE)
    new = not os.path.exists(path)
    with open(path, "a", encoding="utf-8") as f:
        if new:
            f.write("\t".join(STATS_COLUMNS) + "\n")
        f.write("".join(format_stats(r) + "\n" for r in records))
