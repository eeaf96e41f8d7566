"""One training step as two tools: `backprop` (partial gradient sums) and `update` (merge and step).

Gradient folders have the model directory's layout, `layer_NN/W.npy` and
`b.npy`, plus `stats.json` with loss_sum, samples and correct.  They hold
*sums* over samples, so the folders of several processes merge by addition.
"""

import json
import os

import numpy as np

from .. import model as modelmod
from .. import tensorio
from ..errors import DataError, UsageError
from .optimizers import Optimizer, decay_of

STATS_FILE = "stats.json"


def backprop(model_path, x, y, out_dir, dtype=None, chunk=4096, names=("inputs", "labels")):
    """Write the gradient sums of the per-sample losses over (x, y) to the folder out_dir."""
    md = modelmod.ModelDir(model_path)
    net, _ = md.network(modelmod.DTYPES.get(dtype) if dtype else None)
    x = modelmod.prepare_inputs(x, md.spec, names[0])
    y = modelmod.prepare_targets(y, md.spec, x, names[1])
    y = y.astype(net.dtype)
    net.adapt_to_targets(y)
    sums = None
    loss_sum, correct = 0.0, 0
    for start in range(0, x.shape[0], chunk):
        xb = np.asarray(x[start : start + chunk], dtype=net.dtype)
        losses, c = net.gradient(xb, y[start : start + chunk], 1.0)
        loss_sum += float(losses.sum())
        correct += c
        grads = [g for _, _, g in net.grad_items()]
        if sums is None:
            sums = [g.copy() for g in grads]
        else:
            for total, g in zip(sums, grads):
                total += g
    stats = {"loss_sum": loss_sum, "samples": int(x.shape[0]), "correct": int(correct)}
    arrays = {f"{key}/{name}": g for (key, name, _), g in zip(net.param_items(), sums or [])}
    _write_grads(out_dir, arrays, stats)
    return stats


def _write_grads(out_dir, arrays, stats):
    out_dir = os.fspath(out_dir).rstrip("/") or "/"
    if os.path.lexists(out_dir):
        if not os.path.isdir(out_dir) or (os.listdir(out_dir) and not os.path.exists(os.path.join(out_dir, STATS_FILE))):
            raise UsageError(f"{out_dir} exists and is not a gradient folder; refusing to replace it")

    def fill(tmp):
        os.makedirs(tmp)
        modelmod.write_tree(tmp, arrays)
        with tensorio.atomic_file(os.path.join(tmp, STATS_FILE)) as f:
            f.write((json.dumps(stats) + "\n").encode())

    tensorio.atomic_folder(out_dir, fill)


def read_grads(folder, shapes):
    """(arrays {'layer_NN/W': array}, stats) of one gradient folder, checked against the model's shapes."""
    stats_path = os.path.join(folder, STATS_FILE)
    try:
        with open(stats_path) as f:
            stats = json.load(f)
        samples = int(stats["samples"])
    except FileNotFoundError:
        raise DataError(f"{folder} is not a gradient folder (no {STATS_FILE}; make one with backprop)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{stats_path} is unreadable: {e}") from None
    if samples < 0:
        raise DataError(f"{stats_path}: samples must be ≥ 0")
    arrays = modelmod.read_tree(folder, shapes, DataError, hint=" (is this a gradient of the same model?)")
    return arrays, stats


def update(model_path, grad_dirs, optimizer=None, lr=None, weight_decay=None, **hyper):
    """Add the partial sums of grad_dirs, divide by their total samples, and take one optimiser step.

    Returns the merged stats (loss_sum, samples, correct).
    """
    if not grad_dirs:
        raise UsageError("give at least one gradient folder")
    md = modelmod.ModelDir(model_path)
    with md.lock(blocking=True):
        params, state = md.load()
        shapes = modelmod.param_shapes(md.spec)
        total = None
        merged = {"loss_sum": 0.0, "samples": 0, "correct": 0}
        for folder in grad_dirs:
            arrays, stats = read_grads(folder, shapes)
            merged["loss_sum"] += float(stats.get("loss_sum", 0.0))
            merged["samples"] += int(stats["samples"])
            merged["correct"] += int(stats.get("correct", 0))
            if total is None:
                total = {k: np.array(v, dtype=np.float64) for k, v in arrays.items()}
            else:
                for k, v in arrays.items():
                    total[k] += v
        if merged["samples"] == 0:
            raise DataError("the gradient folders hold 0 samples in total")
        recorded = state.get("optimizer") or {}
        name = optimizer or recorded.get("name") or "sgd"
        settings = {}
        for key, value in dict(hyper, lr=lr, weight_decay=weight_decay).items():
            if value is None and recorded.get("name") == name and key in recorded:
                value = recorded[key]
            if value is not None:
                settings[key] = value
        opt = Optimizer(name, **settings)
        opt.restore(recorded, md.load_extra("optimizer"))
        scale = 1.0 / merged["samples"]
        items = []
        for key, group in params.items():
            for pname, p in group.items():
                g = (total[f"{key}/{pname}"] * scale).astype(p.dtype, copy=False)
                items.append((f"{key}/{pname}", p, g, decay_of(f"{key}/{pname}")))
        opt.step(items)
        for p in (item[1] for item in items):
            if not np.all(np.isfinite(p)):
                raise DataError("the step produced non-finite weights; the model is left unchanged (lower --lr?)")
        state["steps"] = int(state.get("steps", 0)) + 1
        state["samples"] = int(state.get("samples", 0)) + merged["samples"]
        state["optimizer"] = opt.describe()
        extra = {f"optimizer/{k}": v for k, v in opt.state.items()}
        extra.update({f"training/{k}": v for k, v in md.load_extra("training").items()})
        md.save(params, state, extra)
    return merged
