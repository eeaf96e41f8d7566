"""PNG and SVG pictures, drawn with matplotlib (the optional extra: pip install 'kerash[plot]').

Every picture stays readable in grey: series differ by marker and line
style as well as by colour, and colours come from Okabe and Ito's palette,
which colour-blind readers tell apart.
"""

import io
import math
import os
import re
import stat
import tempfile

import numpy as np

from .. import model as modelmod
from ..errors import DataError, KerashError, UsageError
from ..files.labels import read_labels
from ..files.tensorio import atomic_file, read_tensor, source_name
from . import tables

FORMATS = ("png", "svg")
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
FADED = 0.35  # opacity of history a restore abandoned
GRID = 300  # points per axis where `boundary` asks the model for its class


class MissingExtra(KerashError):
    """matplotlib, an optional dependency, is not installed."""


def _config_dir():
    """A folder of our own for matplotlib's font cache: never $HOME, and kept so the cache is built once."""
    path = os.path.join(tempfile.gettempdir(), f"kerash-matplotlib-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022:
            return path
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="kerash-matplotlib-")  # someone else's folder has that name


def _figure_class():
    os.environ.setdefault("MPLCONFIGDIR", _config_dir())
    try:
        import matplotlib
    except ImportError:
        raise MissingExtra("pictures need matplotlib: pip install 'kerash[plot]'") from None
    matplotlib.use("Agg")
    matplotlib.rcParams.update(
        {
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.fontsize": 8,
            "svg.hashsalt": "kerash",  # the same picture gives the same SVG file
            "svg.fonttype": "none",  # text stays text: smaller files, searchable
        }
    )
    from matplotlib.figure import Figure

    return Figure


def output_format(path):
    """'png' or 'svg' from the extension of `path`."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in FORMATS:
        raise UsageError(f"-o {path}: the file name must end in .png or .svg")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"-o {path}: folder {folder} does not exist")
    return ext


def check_size(width, height, dpi):
    """Refuse sizes matplotlib would choke on (or that fill the disk) before any drawing."""
    if not (16 <= width <= 20000 and 16 <= height <= 20000):
        raise UsageError(f"--width and --height must be 16 to 20000 pixels, not {width}×{height}")
    if not 10 <= dpi <= 2000:
        raise UsageError(f"--dpi must be 10 to 2000, not {dpi}")


def save(fig, path, width, height, dpi):
    """Write `fig` as PNG (width × height pixels) or SVG (declared width × height px), atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fmt = output_format(path)
    check_size(width, height, dpi)
    FigureCanvasAgg(fig)
    fig.set_size_inches(width / dpi, height / dpi)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, metadata={"Date": None} if fmt == "svg" else None)
    data = buf.getvalue()
    if fmt == "svg":
        # matplotlib declares the size in points (72 an inch); in pixels the SVG shows at the PNG's size
        # and scale, its viewBox keeping the drawing's own units.
        data = re.sub(
            rb'(<svg[^>]*?)width="[^"]*" height="[^"]*"',
            lambda m: m.group(1) + f'width="{width}px" height="{height}px"'.encode(),
            data,
            count=1,
        )
    with atomic_file(path) as f:
        f.write(data)


def _integer_ticks(ax, nbins="auto"):
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=nbins, integer=True))


def _log_if_wide(ax, values, label):
    """A logarithmic y axis when positive values span more than a factor 20; returns the axis label."""
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 20:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 0.02 rather than 2×10⁻²
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
        return f"{label} (log scale)"
    return label


def _short(path):
    """A data file named in a title: its last two path components."""
    return os.path.join(*os.path.normpath(source_name(path)).split(os.sep)[-2:])


def _names(paths):
    """Short names for legends: the model folders' names, or the paths when two names are the same."""
    short = [os.path.basename(os.path.normpath(p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p)))) for p in paths]
    return short if len(set(short)) == len(short) else list(paths)


# ---------------------------------------------------------------- curves


def curves(models):
    """Loss and accuracy per epoch of each model, training (solid) and validation (dashed)."""
    fig = _figure_class()(layout="constrained")
    from matplotlib.lines import Line2D

    traces = [tables.read_trace(p, n) for p, n in zip(models, _names(models))]
    panels = [("loss", "val_loss", 1.0)]
    if any(t.has("accuracy") or t.has("val_accuracy") for t in traces):
        panels.append(("accuracy", "val_accuracy", 100.0))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    extra = {}
    for k, t in enumerate(traces):
        color, marker = PALETTE[k % len(PALETTE)], MARKERS[k % len(MARKERS)]
        step = max(1, len(t.epoch) // 12)
        for ax, (train_col, val_col, scale) in zip(axes, panels):
            for column, style, split, face in ((train_col, "-", "training", color), (val_col, "--", "validation", "white")):
                y = t.column(column) * scale
                if not np.any(np.isfinite(y)):
                    continue
                label = f"{t.name} {split}" if len(traces) > 1 else split
                for indices, kept in t.pieces:
                    ax.plot(
                        t.epoch[indices], y[indices], linestyle=style, color=color, marker=marker,
                        markevery=(k % step, step), markerfacecolor=face, markersize=5,
                        alpha=1.0 if kept else FADED, label=label if kept else None,
                    )
                    label = None if kept else label
                    if not kept:
                        extra["abandoned by a restore (faded)"] = Line2D([], [], color="grey", alpha=FADED)
            for m in t.markers:
                style = "-." if m.kind == "restore" else ":"
                ax.axvline(m.epoch, color=color, linestyle=style, linewidth=1, alpha=0.8)
                extra[m.kind] = Line2D([], [], color="grey", linestyle=style)
                if m.index is not None:
                    value = t.column(train_col)[m.index] * scale
                    if np.isfinite(value):
                        ax.plot(m.epoch, value, marker="*", markersize=11, color=color, markeredgecolor="black")
                        extra[m.kind] = Line2D([], [], color="grey", linestyle=style, marker="*", markeredgecolor="black")
                if ax is axes[0]:
                    ax.annotate(
                        m.label, xy=(m.epoch, 1), xycoords=("data", "axes fraction"), xytext=(-2, -3),
                        textcoords="offset points", rotation=90, fontsize=7, ha="right", va="top", color=color,
                    )
    losses = {t.loss_name for t in traces}
    loss_label = f"loss ({losses.pop()})" if len(losses) == 1 and "loss" not in losses else "loss"
    axes[0].set_ylabel(_log_if_wide(axes[0], np.concatenate([t.column(c) for t in traces for c in ("loss", "val_loss")]), loss_label + ", per sample"))
    axes[0].set_title("Loss per epoch")
    if len(axes) > 1:
        axes[1].set_ylabel("accuracy (%)")
        axes[1].set_title("Accuracy per epoch")
    axes[-1].set_xlabel("epoch")
    _integer_ticks(axes[-1])
    handles, labels = axes[0].get_legend_handles_labels()
    handles += list(extra.values())
    labels += list(extra)
    axes[0].legend(handles, labels, loc="upper right", ncols=2 if len(labels) > 6 else 1)
    names = [t.name for t in traces]
    what = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}" if len(names) <= 3 else f"{len(names)} models"
    fig.suptitle(f"Training curves of {what}", fontweight="bold")
    return fig


# ---------------------------------------------------------------- confusion


def _samples(model, data, labels, held_out=None, table=(None, None, None)):
    """(samples, labels) as the picture reads them; with `held_out` (a model), only the rows its training held out
    (--validation-of); `table`: the label column, the columns kept and dropped of a table (files/columns.py)."""
    from ..model import categories

    if categories.uses_table(model, *table):
        x, y, _ = categories.read_data(model, data, *table)
        if table[0] is None:
            y = read_labels(labels, modelmod.labels_are_names(model))
    elif modelmod.reads_sequences(modelmod.ModelDir(model).spec):  # as train reads them
        x, y = modelmod.read_sequence_data(modelmod.ModelDir(model).spec, data, labels, modelmod.labels_are_names(model))
    else:
        x, y = read_tensor(data), read_labels(labels, modelmod.labels_are_names(model))
    return (x, y) if held_out is None else modelmod.held_out(held_out, x, y, source_name(labels or data))


def confusion(model, data, labels, held_out=None, table=(None, None, None)):
    """A heat-map of the confusion matrix of `model` on (data, labels), counts in the cells."""
    x, y = _samples(model, data, labels, held_out, table)
    result = modelmod.evaluate(model, x, y, names=(source_name(data), source_name(labels)))
    matrix = result["confusion"]
    if matrix is None:
        raise DataError(f"the labels are values, not classes: there is no confusion matrix; `kerash plot regression` "
                        f"draws predicted against true values ({source_name(labels)})")
    k = len(matrix)
    names = modelmod.class_names(model, k)
    fig = _figure_class()(layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    ax.grid(False)
    size = max(5, min(10, 110 / k))
    top = matrix.max() or 1
    for i in range(k):
        for j in range(k):
            count = matrix[i, j]
            ax.text(
                j, i, str(count), ha="center", va="center", fontsize=size,
                color="white" if count > top / 2 else ("black" if count else "0.6"),
                fontweight="bold" if count and i != j else "normal",  # the mistakes stand out
                gid=f"count-{i}-{j}",  # the SVG's <g id="count-TRUE-PREDICTED"> holds the cell's number
            )
    long_names = max(len(n) for n in names) > 3
    ax.set_xticks(range(k), names, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, label="samples", shrink=0.8)
    n, correct = result["samples"], result["correct"]
    fig.suptitle(
        f"Confusion matrix of {_names([model])[0]} on {_short(data)}\n"
        f"{correct} of {n} correct ({100 * correct / max(n, 1):.1f}%)",
        fontweight="bold",
    )
    return fig


# ---------------------------------------------------------------- regression

MAX_PANELS = 6  # outputs drawn side by side; more are named in the title


def regression(model, data, labels, held_out=None, table=(None, None, None)):
    """Predicted against true values, one panel per output (up to MAX_PANELS), with the identity line."""
    from ..model.use import regression_scores
    from ..network import targets_are_classes

    x, y = _samples(model, data, labels, held_out, table)
    names = (source_name(data), source_name(labels))
    loaded = modelmod.load(model)
    _, targets = loaded.data(x, y, names)
    if not len(targets):
        raise DataError(f"no samples to draw ({names[0]})")
    if targets_are_classes(targets):
        raise DataError(f"the labels are classes, not values: `kerash plot confusion` draws them ({names[1]})")
    outputs, _ = modelmod.predict_loaded(loaded, x, names[0])  # the one forward pass
    scores = regression_scores(outputs, targets)
    if outputs.ndim == 3 and targets.ndim == 2:  # a sequence's target is for its last step
        outputs = outputs[:, -1]
    width = targets.shape[-1]
    outputs, targets = outputs.reshape(-1, width), targets.reshape(-1, width)
    shown = min(width, MAX_PANELS)
    fig = _figure_class()(layout="constrained")
    axes = fig.subplots(1, shown, squeeze=False)[0]
    for k, ax in enumerate(axes):
        truth, guess = targets[:, k], outputs[:, k]
        ax.scatter(truth, guess, s=12, color=PALETTE[0], alpha=0.6, linewidths=0, gid=f"points-{k}")
        low = float(min(truth.min(), guess.min()))
        high = float(max(truth.max(), guess.max()))
        pad = (high - low) * 0.05 or 1.0
        ax.plot([low - pad, high + pad], [low - pad, high + pad], color=PALETTE[1], linestyle="--", linewidth=1,
                label="predicted = true", gid=f"identity-{k}")
        ax.set_xlim(low - pad, high + pad)
        ax.set_ylim(low - pad, high + pad)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("true value" if width == 1 else f"true value, output {k}")
        ax.set_ylabel("predicted value" if width == 1 else f"predicted, output {k}")
        if k == 0:
            ax.legend(loc="upper left", fontsize="small")
    more = f"; outputs {shown}–{width - 1} not drawn" if width > shown else ""
    fig.suptitle(
        f"Predicted against true values: {_names([model])[0]} on {_short(data)}\n"
        f"{len(targets)} samples, R² {scores['r2']:.4f}, RMSE {scores['rmse']:.4g}, MAE {scores['mae']:.4g}{more}",
        fontweight="bold",
    )
    return fig


# ---------------------------------------------------------------- activations

MAX_ROWS = 400  # samples drawn (evenly spaced, after grouping by class): a row of pixels each at most


def activations(model, data, labels, node):
    """A node's values as an image: a row per sample (grouped by true class when labels are given), a column per
    unit (its values flattened, C, H, W order), with the range of each unit's values in the title."""
    x = read_tensor(data)
    if not len(x):
        raise DataError(f"no samples to draw ({source_name(data)})")
    loaded = modelmod.load(model)
    values = next(modelmod.node_blocks(loaded, [x], [node], source_name(data)))
    rows = values.reshape(len(values), -1) if values.ndim > 1 else values.reshape(-1, 1)
    order, bounds = np.arange(len(rows)), []
    if labels is not None:
        y = read_labels(labels, modelmod.labels_are_names(model))
        y = modelmod.class_targets(y, loaded.classes, len(x), model)
        if len(y) != len(x):
            raise UsageError(f"{len(x)} samples but {len(y)} labels ({source_name(labels)})")
        truth = tables.true_classes(y, source_name(labels))
        order = np.argsort(truth, kind="stable")
        bounds = [(int(k), int(np.searchsorted(truth[order], k)), int(np.searchsorted(truth[order], k, "right")))
                  for k in np.unique(truth)]
    keep = np.unique(np.linspace(0, len(order) - 1, min(len(order), MAX_ROWS)).round().astype(int))
    image = rows[order][keep]
    fig = _figure_class()(layout="constrained")
    ax = fig.add_subplot()
    low, high = float(np.min(rows)), float(np.max(rows))
    symmetric = low < 0 < high
    edge = max(abs(low), abs(high)) or 1.0
    shown = ax.imshow(image, aspect="auto", interpolation="nearest", cmap="RdBu_r" if symmetric else "viridis",
                      vmin=-edge if symmetric else low, vmax=edge if symmetric else high)
    ax.grid(False)
    ax.set_xlabel(f"unit of {node} ({rows.shape[1]} values a sample)")
    ax.set_ylabel("sample" + (" (grouped by true class)" if bounds else ""))
    if bounds:
        names = modelmod.class_names(model, max(k for k, _, _ in bounds) + 1)
        positions = np.searchsorted(keep, [(a + b - 1) / 2 for _, a, b in bounds])
        ax.set_yticks(positions, [names[k] for k, _, _ in bounds])
        for _, _, stop in bounds[:-1]:
            ax.axhline(np.searchsorted(keep, stop) - 0.5, color="black", linewidth=1)
    fig.colorbar(shown, ax=ax, label="value", shrink=0.8)
    dead = int(np.sum(np.ptp(rows, axis=0) == 0)) if len(rows) > 1 else 0
    fig.suptitle(f"Activations of {node} in {_names([model])[0]} on {_short(data)}\n"
                 f"{len(rows)} samples{f' ({len(keep)} drawn)' if len(keep) < len(rows) else ''}, "
                 f"values {low:.3g} to {high:.3g}, {dead} of {rows.shape[1]} units constant",
                 fontweight="bold")
    return fig


# ---------------------------------------------------------------- boundary


def _tint(color, amount=0.72):
    """`color` mixed with white."""
    from matplotlib.colors import to_rgb

    return tuple(c + (1 - c) * amount for c in to_rgb(color))


def boundary(model, data, labels, held_out=None, table=(None, None, None)):
    """The model's class over the data's bounding box, with the points coloured by true class."""
    fig = _figure_class()(layout="constrained")
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    x, y = _samples(model, data, labels, held_out, table)
    if not x.size:
        raise UsageError(f"no samples to draw ({source_name(data)})")
    y = modelmod.class_targets(y, modelmod.load(model).classes, len(x), model)  # class names through classes.txt
    x = x.reshape(len(x), -1)
    if x.shape[1] != 2:
        raise UsageError(f"boundary draws 2-D inputs, but the samples have {x.shape[1]} values ({source_name(data)})")
    if len(y) != len(x):
        raise UsageError(f"{len(x)} samples but {len(y)} labels ({source_name(labels)})")
    truth = tables.true_classes(y, source_name(labels))
    _, predicted = modelmod.predict(model, x, name=source_name(data))
    low, high = x.min(axis=0), x.max(axis=0)
    margin = np.where(high > low, high - low, 1.0) * 0.08
    low, high = low - margin, high + margin
    gx, gy = np.linspace(low[0], high[0], GRID), np.linspace(low[1], high[1], GRID)
    grid = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
    outputs, regions = modelmod.predict(model, grid, name="the grid")
    regions = regions.reshape(GRID, GRID)
    k = max(2, outputs.shape[1], int(truth.max()) + 1, int(predicted.max()) + 1)
    names = modelmod.class_names(model, k) if outputs.shape[1] > 1 else [str(c) for c in range(k)]
    colors = [PALETTE[c % len(PALETTE)] for c in range(k)]
    ax = fig.add_subplot()
    ax.grid(False)
    spans = high - low
    square = max(spans) / min(spans) < 3  # same units on both axes unless the inputs' scales differ a lot
    ax.imshow(
        regions, origin="lower", extent=(low[0], high[0], low[1], high[1]), interpolation="nearest",
        cmap=ListedColormap([_tint(c) for c in colors]), vmin=-0.5, vmax=k - 0.5, aspect="equal" if square else "auto",
    )
    if np.unique(regions).size > 1:
        ax.contour(gx, gy, regions, levels=np.arange(k - 1) + 0.5, colors="black", linewidths=1)
    handles = []
    size = 18 if len(x) <= 1000 else 8
    for c in range(k):
        mine = truth == c
        handles.append(Patch(facecolor=_tint(colors[c]), edgecolor=colors[c], label=f"predicted {names[c]}"))
        if mine.any():
            handles.append(ax.scatter(
                x[mine, 0], x[mine, 1], s=size, color=colors[c], marker=MARKERS[c % len(MARKERS)],
                edgecolors="white", linewidths=0.4, label=f"class {names[c]} ({mine.sum()})",
            ))
    wrong = truth != predicted
    handles.append(ax.scatter(x[wrong, 0], x[wrong, 1], s=3 * size, color="black", marker="x", linewidths=1.4, label=f"misclassified ({wrong.sum()})"))
    handles.append(ax.plot([], [], color="black", linewidth=1, label="decision boundary")[0])
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_xlabel("input 1 (first column of the data)")
    ax.set_ylabel("input 2 (second column)")
    fig.legend(handles=handles, loc="outside right center")
    fig.suptitle(
        f"Decision regions of {_names([model])[0]}, and the points of {_short(data)}\n"
        f"{len(x)} points, {wrong.sum()} misclassified ({100 * wrong.mean():.1f}%)",
        fontweight="bold",
    )
    return fig


# ---------------------------------------------------------------- weights


def weights_size(model, grads=None):
    """A default (width, height) in pixels that gives each layer's histograms room."""
    found = tables.read_layers(model)
    rows, columns = len({layer for layer, _, _ in found}), len({name for _, name, _ in found}) * (2 if grads else 1)
    height = 60 + 200 * rows + (280 if os.path.exists(os.path.join(model, tables.STATS_FILE)) else 0)
    return max(800, 280 * columns), max(600, height)


def _histogram(ax, values, title, color, hatch=None):
    from matplotlib.ticker import MaxNLocator

    values = np.asarray(values, dtype=float).ravel()
    ax.hist(values, bins=int(np.clip(2 * math.sqrt(values.size), 8, 50)), color=color, alpha=0.75, hatch=hatch, edgecolor="white" if hatch is None else "black", linewidth=0.3)
    rms = math.sqrt(float(np.mean(np.square(values))))
    ax.set_title(f"{title}\nrms {rms:.3g}, mean {values.mean():.3g}\nrange {values.min():.3g} … {values.max():.3g}", fontsize=7.5)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))


def weights(model, grads=None):
    """Histograms of each layer's parameters (and of a gradient folder's), and per-layer statistics over epochs."""
    params = tables.read_layers(model)
    gradients = {(layer, name): a for layer, name, a in tables.read_gradients(grads, model)} if grads else {}
    stats = tables.read_stats(model)
    layers = list(dict.fromkeys(layer for layer, _, _ in params))
    kinds = list(dict.fromkeys(name for _, name, _ in params))
    fig = _figure_class()(layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[len(layers), 1.7]) if stats else (fig, None)
    columns = [(name, False) for name in kinds] + ([(name, True) for name in kinds] if gradients else [])
    axes = top.subplots(len(layers), len(columns), squeeze=False)
    values = {(layer, name): a for layer, name, a in params}
    for r, layer in enumerate(layers):
        for c, (name, is_grad) in enumerate(columns):
            ax = axes[r, c]
            array = (gradients if is_grad else values).get((layer, name))
            if array is None:
                ax.set_axis_off()
                continue
            shape = "×".join(map(str, array.shape))
            what = "gradient of " if is_grad else ""
            _histogram(ax, array, f"{layer}: {what}{name} ({shape})", PALETTE[1] if is_grad else PALETTE[0], "///" if is_grad else None)
            if c == 0:
                ax.set_ylabel("count")
            if r == len(layers) - 1:
                ax.set_xlabel("gradient per sample" if is_grad else "value")
    heading = f"Parameters of {_names([model])[0]}"
    if grads:
        heading += f", and the gradients in {os.path.basename(os.path.normpath(grads))} (hatched)"
    top.suptitle(heading, fontweight="bold")
    if stats:
        _stats_panels(bottom, stats)
    return fig


def _stats_panels(sub, stats):
    """Weight RMS, gradient RMS and update/weight ratio over epochs, one line per layer and parameter."""
    panels = [("w_rms", "weight RMS"), ("g_rms", "gradient RMS"), ("update_ratio", "update / weight ratio")]
    axes = sub.subplots(1, len(panels), squeeze=False)[0]
    sub.suptitle(f"Per-layer statistics while training ({tables.STATS_FILE})", fontweight="bold")
    layers = list(dict.fromkeys(layer for layer, _ in stats))
    for ax, (column, title) in zip(axes, panels):
        everything = []
        for (layer, name), series in stats.items():
            if column not in series:
                continue
            k = layers.index(layer)
            ax.plot(
                series["epoch"], series[column], color=PALETTE[k % len(PALETTE)], marker=MARKERS[k % len(MARKERS)],
                markevery=max(1, len(series["epoch"]) // 8), markersize=4, linestyle="-" if name == "W" else "--",
                label=f"{layer} {name}",
            )
            everything.append(series[column])
        ax.set_ylabel(_log_if_wide(ax, np.concatenate(everything) if everything else np.array([]), title))
        ax.set_xlabel("epoch")
        ax.set_title(f"{title} per epoch")
        _integer_ticks(ax, nbins=4)  # three panels side by side: wider numbers would run into each other
    handles, labels = axes[0].get_legend_handles_labels()
    sub.legend(handles, labels, loc="outside right center", fontsize=7)


# ---------------------------------------------------------------- evolution


def evolution(source):
    """Best and mean validation loss (and accuracy) of the genomes of each generation."""
    path, table = tables.read_evolution(source)
    generation = table["generation"]
    gens = np.unique(generation)
    panels = [("val_loss", "validation loss", np.nanmin)]
    if np.any(np.isfinite(table.get("val_accuracy", np.array([np.nan])))):
        panels.append(("val_accuracy", "validation accuracy (%)", np.nanmax))
    fig = _figure_class()(layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    failed = 0
    for ax, (column, label, pick) in zip(axes, panels):
        scale = 100.0 if column == "val_accuracy" else 1.0
        v = np.where(np.isfinite(table[column]), table[column], np.nan) * scale
        if column == "val_loss":
            failed = int(np.sum(~np.isfinite(table[column])))
        per_gen = [v[generation == g] for g in gens]
        best = np.array([pick(p) if np.any(np.isfinite(p)) else np.nan for p in per_gen])
        mean = np.array([np.nanmean(p) if np.any(np.isfinite(p)) else np.nan for p in per_gen])
        kept = np.fmin.accumulate(best) if pick is np.nanmin else np.fmax.accumulate(best)
        ax.scatter(generation, v, s=14, color="0.55", marker=".", label="each genome", zorder=2)
        ax.plot(gens, mean, linestyle="--", marker="s", markerfacecolor="white", color=PALETTE[1], label="mean of the generation")
        ax.plot(gens, best, linestyle="-", marker="o", color=PALETTE[0], label="best of the generation")
        ax.step(gens, kept, where="post", linestyle=":", linewidth=2, color=PALETTE[2], label="best so far")
        ax.set_ylabel(_log_if_wide(ax, v, label) if column == "val_loss" else label)
        ax.set_title(f"{label[0].upper()}{label[1:]} per generation")
    axes[0].legend(loc="upper right")
    axes[-1].set_xlabel("generation")
    _integer_ticks(axes[-1])
    loss = table["val_loss"]
    best = int(np.nanargmin(np.where(np.isfinite(loss), loss, np.nan))) if np.any(np.isfinite(loss)) else None
    title = f"Evolution logged in {_short(path)}\n{len(generation)} genomes, {len(gens)} generations"
    if best is not None:
        title += f"; best {table['genome'][best]}, validation loss {loss[best]:.4g}"
    if failed:
        title += f"; {failed} diverged (not shown)"
    fig.suptitle(title, fontweight="bold")
    return fig


def draw(kind, sources, data=None, labels=None, grads=None, node=None, held_out=None, table=(None, None, None)):
    """The figure of `kind` (see kerash.plot.KINDS)."""
    _figure_class()  # first: without matplotlib, say what to install
    if kind == "curves":
        return curves(sources)
    if kind == "confusion":
        return confusion(sources[0], data, labels, held_out, table)
    if kind == "regression":
        return regression(sources[0], data, labels, held_out, table)
    if kind == "activations":
        return activations(sources[0], data, labels, node)
    if kind == "boundary":
        return boundary(sources[0], data, labels, held_out, table)
    if kind == "weights":
        return weights(sources[0], grads)
    return evolution(sources[0])


def default_size(kind, sources, grads=None):
    """(width, height) in pixels when the command line gives none."""
    return weights_size(sources[0], grads) if kind == "weights" else (800, 600)
