"""One training step as two tools: `backprop` (partial gradient sums) and `model-update` (merge and step).

Gradient folders have the model directory's layout, `layer_NN/W.npy` and
`b.npy`, plus `stats.json` with loss_sum, samples and correct.  They hold
*sums* over samples, so the folders of several processes merge by addition.
"""

import json
import os

import numpy as np

from .. import model as modelmod
from ..files import fs
from ..errors import DataError, UsageError
from ..layers import Noise
from ..network import targets_are_classes
from .engines.step import apply_update
from .optimizers import continued, flat_state, per_parameter_state

STATS_FILE = "stats.json"


def backprop(model_path, x, y, out_dir, dtype=None, chunk=4096, names=("inputs", "labels"), ids=None, seed=None,
             epoch=None):
    """Write the gradient sums of the per-sample losses over (x, y) to the folder out_dir, and their stats
    (see gradient_sums); returns the stats."""
    arrays, stats = gradient_sums(model_path, x, y, dtype, chunk, names, ids, seed, epoch)
    _write_grads(out_dir, arrays, stats)
    return stats


def gradient_sums(model_path, x, y, dtype=None, chunk=4096, names=("inputs", "labels"), ids=None, seed=None,
                  epoch=None):
    """({'layer_NN/W': gradient sum, …}, {'loss_sum', 'samples', 'correct'}) of the per-sample losses over (x, y).

    x is raw data: the model's input statistics, if it has them, are applied;
    y may name classes (see model.classes).  `correct` is None for targets
    that are values.

    Dropout masks, as train draws them, depend on the seed, the epoch and each sample's
    row in the data (`ids`, default 0…N−1); seed and epoch default to the model's
    training seed and its next epoch.
    """
    model = modelmod.load(model_path, dtype)
    net, state = model.net, model.state
    if seed is None:
        seed = int(state.get("seed", state.get("init_seed") or 0))
    if epoch is None:
        epoch = int(state.get("epochs", 0)) + 1
    ids = np.arange(len(x)) if ids is None else np.asarray(ids)
    x, y = model.data(x, y, names)
    y = y.astype(net.dtype)
    objective = model.objective()
    objective.adapt_to_targets(y)
    sums = None
    loss_sum, correct = 0.0, 0
    for start in range(0, x.shape[0], chunk):
        xb = np.asarray(x[start : start + chunk], dtype=net.dtype)
        noise = Noise(seed, epoch, ids[start : start + chunk]) if any(net.noisy) else None
        losses, c = net.gradient(objective, xb, y[start : start + chunk], 1.0, None, noise)
        loss_sum += float(losses.sum())
        correct += c
        grads = [g for _, _, g in net.grad_items()]
        if sums is None:
            sums = [g.copy() for g in grads]
        else:
            for total, g in zip(sums, grads):
                total += g
    # correct: None for targets that are values, as evaluate and train's empty accuracy column say
    stats = {"loss_sum": loss_sum, "samples": int(x.shape[0]),
             "correct": int(correct) if targets_are_classes(y) else None}
    arrays = {f"{key}/{name}": g for (key, name, _), g in zip(net.param_items(), sums or [])}
    return arrays, stats


def _write_grads(out_dir, arrays, stats):
    out_dir = os.fspath(out_dir).rstrip("/") or "/"
    if os.path.lexists(out_dir):
        if not os.path.isdir(out_dir) or (os.listdir(out_dir) and not os.path.exists(os.path.join(out_dir, STATS_FILE))):
            raise UsageError(f"{out_dir} exists and is not a gradient folder; refusing to replace it")

    def fill(tmp):
        os.makedirs(tmp)
        modelmod.write_tree(tmp, arrays)
        with fs.atomic_file(os.path.join(tmp, STATS_FILE)) as f:
            f.write((json.dumps(stats) + "\n").encode())

    fs.atomic_folder(out_dir, fill)


def read_grads(folder, shapes):
    """(arrays {'layer_NN/W': array}, stats) of one gradient folder, checked against the model's shapes."""
    stats_path = os.path.join(folder, STATS_FILE)
    if not os.path.isdir(folder):
        raise DataError(f"{folder} is not a gradient folder (make one with backprop)")
    stats = modelmod.read_json_checked(stats_path, DataError, hint=f" ({folder} is not a gradient folder; make one with backprop)")
    for key in ("loss_sum", "samples", "correct"):
        value = stats.get(key, 0)
        if key == "correct" and value is None:  # targets that are values
            continue
        if type(value) not in (int, float) or (key != "loss_sum" and (value != int(value) or value < 0)):
            raise DataError(f"{stats_path}: {key} must be a number{'' if key == 'loss_sum' else ' ≥ 0'}")
    if "samples" not in stats:
        raise DataError(f"{stats_path}: no samples count")
    arrays = modelmod.read_tree(folder, shapes, DataError, hint=" (is this a gradient of the same model?)")
    return arrays, stats


def update(model_path, grad_dirs, optimizer=None, lr=None, weight_decay=None, dtype=None, wait=True, on_wait=None,
           epoch_done=None, seed=None, **hyper):
    """Add the partial sums of grad_dirs, divide by their total samples, and take one optimiser step.

    With `dtype` the step is taken in that type and the model kept in it (as
    train --dtype).  `epoch_done` records that this step ends that epoch, and
    `seed` the seed of the shuffles, so that train continues after them.
    While another process holds the model, wait (telling on_wait) or, without
    `wait`, raise a UsageError.  Returns the merged stats (loss_sum, samples, correct).
    """
    if not grad_dirs:
        raise UsageError("give at least one gradient folder")
    if dtype is not None and dtype not in modelmod.DTYPES:
        raise UsageError(f"--dtype must be float32 or float64, not {dtype!r}")
    if epoch_done is not None and epoch_done < 0:
        raise UsageError(f"--epoch-done must be ≥ 0, got {epoch_done}")
    md = modelmod.ModelDir(model_path)
    with md.lock(blocking=wait, on_wait=on_wait):
        params, state = md.load(modelmod.DTYPES.get(dtype))
        shapes = modelmod.param_shapes(md.spec)
        total = None
        merged = {"loss_sum": 0.0, "samples": 0, "correct": 0}
        for folder in grad_dirs:
            arrays, stats = read_grads(folder, shapes)
            merged["loss_sum"] += float(stats.get("loss_sum", 0.0))
            merged["samples"] += int(stats["samples"])
            if stats.get("correct", 0) is None or merged["correct"] is None:
                merged["correct"] = None
            else:
                merged["correct"] += int(stats.get("correct", 0))
            if total is None:
                total = {k: np.array(v, dtype=np.float64) for k, v in arrays.items()}
            else:
                for k, v in arrays.items():
                    total[k] += v
        if merged["samples"] == 0:
            raise DataError("the gradient folders hold 0 samples in total")
        recorded = state.get("optimizer")
        opt = continued(optimizer, recorded, **hyper, lr=lr, weight_decay=weight_decay)
        opt.restore(recorded, md.load_extra("optimizer"))
        # The step train takes: one update of the flat arena, with the optimiser's state laid out alike.
        net = modelmod.build_network(md.spec, modelmod.DTYPES[dtype] if dtype else md.dtype(state))
        net.set_params(params)
        net.use_arena()
        arena = net.arena
        opt.state = flat_state(opt, arena)
        grads = arena.join_flat(total, np.float64) * (1.0 / merged["samples"])  # merged in float64, then cast
        apply_update(opt, arena.params, grads.astype(net.dtype, copy=False), arena.decay_mask() if opt.weight_decay else None)
        if not np.all(np.isfinite(arena.params)):
            raise DataError("the step produced non-finite weights; the model is left unchanged (lower --lr?)")
        params = net.get_params()
        state["steps"] = int(state.get("steps", 0)) + 1
        state["samples"] = int(state.get("samples", 0)) + merged["samples"]
        state["optimizer"] = opt.describe()
        if dtype is not None:
            state["dtype"] = dtype
        if epoch_done is not None:
            # The position train keeps for an interrupted epoch: none, at an epoch's end.
            state.update(epochs=epoch_done, batch=0, partial={})
        if seed is not None:
            state["seed"] = seed
        extra = per_parameter_state(opt, arena)
        extra.update({f"training/{k}": v for k, v in md.load_extra("training").items()})
        md.save(params, state, extra)
    return merged
