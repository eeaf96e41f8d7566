"""Checkpoints: MODEL/checkpoints/NAME/ are complete copies of a version (hard links, no extra space)."""

import os

from .. import model as modelmod
from ..errors import UsageError, close_matches
from ..model.directory import CHECKPOINTS
from .trace import TRACE_COLUMNS, TRACE_FILE, append_lines


def list_checkpoints(model_path):
    """Rows (name, epoch, loss, accuracy, val_loss, val_accuracy) sorted by name."""
    md = modelmod.ModelDir(model_path)
    root = os.path.join(md.path, CHECKPOINTS)
    rows = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        state_path = os.path.join(root, name, modelmod.STATE_FILE)
        if ".tmp-" in name or ".old-" in name or not os.path.isfile(state_path):
            continue
        state = modelmod.read_json_checked(state_path)
        last = state.get("last") if isinstance(state.get("last"), dict) else {}

        def show(key):
            value = last.get(key)
            return "nan" if value is None else f"{value:.6g}"

        rows.append((name, state.get("epochs", 0), show("loss"), show("accuracy"), show("val_loss"), show("val_accuracy")))
    return rows


def restore_checkpoint(model_path, name):
    md = modelmod.ModelDir(model_path)
    folder = os.path.join(md.path, CHECKPOINTS, name)
    if name in ("", ".", "..") or "/" in name or not os.path.isfile(os.path.join(folder, modelmod.STATE_FILE)):
        names = [row[0] for row in list_checkpoints(model_path)]
        hint = close_matches(name, names) or (f"; there are: {', '.join(names)}" if names else "; there are none")
        raise UsageError(f"{md.path} has no checkpoint {name!r}{hint}")
    with md.lock(blocking=False):
        _, state = md.load(version=folder)  # refuse a damaged checkpoint before switching to it
        md.adopt(folder)
        # The history goes on from the checkpoint: a trace line says so, with its figures.
        last = state.get("last") if isinstance(state.get("last"), dict) else {}
        record = {key: last.get(key) for key in TRACE_COLUMNS}
        record.update(epoch=int(state.get("epochs", 0)), event=f"restore:{name}", seconds=None,
                      samples=last.get("samples", 0), lr=(state.get("optimizer") or {}).get("lr"),
                      batch_size=state.get("batch_size"))
        append_lines(os.path.join(md.path, TRACE_FILE), TRACE_COLUMNS, [record])
