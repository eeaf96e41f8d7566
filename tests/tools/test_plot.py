"""kerash plot: real pictures (PNG decoded with Pillow, SVG parsed as XML), curves in a terminal, errors.

matplotlib costs about a second a process, so each test draws its pictures
from one shell script.
"""

import ast
import fcntl
import math
import os
import pty
import re
import struct
import subprocess
import termios
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, assert_one_line_error, parse, run, savetxt, tool_env
from helpers import make_model, weights
from kerash.plot import tables

SVG = "{http://www.w3.org/2000/svg}"
HEADER = "epoch\tsamples\tloss\taccuracy\tval_loss\tval_accuracy\tseconds\tlr"

# The first trace format: 'nan' for no value; a restore shows as epochs going back (6 → 4).
OLD_TRACE = HEADER + "\n" + "".join(
    f"{e}\t10\t{loss}\t{acc}\tnan\tnan\t0.01\t0.1\n"
    for e, loss, acc in [(1, 0.9, 0.5), (2, 0.7, 0.6), (3, 0.5, 0.7), (4, 0.6, 0.6), (5, 0.65, 0.6), (6, 0.7, 0.55), (4, 0.45, 0.75), (5, 0.4, 0.8)]
)
# The format with an event column and empty fields: a resume at 4, a restore to epoch 3, then training on.
NEW_TRACE = HEADER + "\tevent\n" + "".join(
    f"{e}\t10\t{loss}\t{acc}\t{loss + 0.05}\t\t0.01\t0.1\t{event}\n"
    for e, loss, acc, event in [
        (1, 0.9, 0.5, "start"), (2, 0.7, 0.6, ""), (3, 0.5, 0.7, ""), (4, 0.6, 0.6, "start"), (5, 0.65, 0.6, ""),
        (6, 0.7, 0.55, ""), (3, 0.5, 0.7, "restore:epoch-0003"), (4, 0.45, 0.75, "start"), (5, 0.4, 0.8, ""),
    ]
)


def png(path):
    """(width, height, {colour: share of the pixels}) of a PNG file."""
    image = Image.open(path)
    image.load()
    rgb = np.asarray(image.convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(rgb, axis=0, return_counts=True)
    return image.size, {tuple(int(v) for v in c): n / len(rgb) for c, n in zip(colours, counts)}, np.asarray(image.convert("RGB"))


def svg_root(path):
    root = ET.parse(path).getroot()
    assert root.tag == SVG + "svg"
    return root


def svg_texts(root):
    return ["".join(t.itertext()) for t in root.iter(SVG + "text")]


def test_traces_of_both_formats_give_the_same_history(tmp_path):
    for name, text in (("old", OLD_TRACE), ("new", NEW_TRACE)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "trace.tsv").write_text(text)
    old, new = tables.read_trace(str(tmp_path / "old")), tables.read_trace(str(tmp_path / "new"))
    assert np.isnan(old.column("val_loss")).all() and np.isnan(new.column("val_accuracy")).all()
    np.testing.assert_allclose(new.column("val_loss"), new.column("loss") + 0.05)
    for trace in (old, new):
        kept = [trace.epoch[i].tolist() for i, k in trace.pieces if k]
        faded = [trace.epoch[i].tolist() for i, k in trace.pieces if not k]
        # the current model's history is epochs 1-3, then 4-5 of the run after the restore
        assert kept == [[1, 2, 3], [3, 4, 5]], kept
        assert faded == [[3, 4, 5, 6]], faded
    assert [(m.kind, m.epoch) for m in old.markers] == [("restore", 3)]
    # a start after epoch 1 is a resume, shown between epochs 3 and 4; a start right after a restore is not
    assert [(m.kind, m.epoch, m.label) for m in new.markers] == [("resume", 3.5, "resume"), ("restore", 3, "epoch-0003")]


def test_curves_confusion_and_sizes_from_the_command_line(tmp_path):
    run("kerash dataset circle -o c --samples 300 --seed 4 --val-fraction 0.3", cwd=tmp_path)
    make_model(tmp_path, "2 1 1\ninput\ndense 8 tanh\ndense 2 softmax\n", dtype="float32")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "trace.tsv").write_text(OLD_TRACE)
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "trace.tsv").write_text(NEW_TRACE)
    # classes named in the labels (sorted: inside is class 0, outside class 1)
    script = """set -e
    for f in labels val-labels; do sed -e 's/^0$/inside/' -e 's/^1$/outside/' c/$f.txt > c/$f-named.txt; done
    train m -x c/data.npy -y c/labels-named.txt --val-data c/val-data.npy --val-labels c/val-labels-named.txt --epochs 12 --lr 0.05 --optimizer adam > /dev/null
    kerash plot curves m old -o curves.png --width 640 --height 480
    kerash plot curves old new -o restores.svg
    kerash plot confusion m -x c/val-data.npy -y c/val-labels-named.txt -o confusion.svg --width 500 --height 400
    predict m c/val-data.npy
    """
    predicted = parse(run(script, cwd=tmp_path).stdout).argmax(axis=1)
    (width, height), shares, _ = png(tmp_path / "curves.png")
    assert (width, height) == (640, 480)
    assert shares[(255, 255, 255)] > 0.5 and len(shares) > 20  # a white page with lines and text on it

    root = svg_root(tmp_path / "restores.svg")
    assert root.get("width") == "800px" and root.get("height") == "600px"
    texts = svg_texts(root)
    assert "epoch-0003" in texts and "resume" in texts and "restore" in texts
    assert "abandoned by a restore (faded)" in texts
    assert "epoch" in texts and any(t.startswith("loss") for t in texts) and "accuracy (%)" in texts
    faded = [e for e in root.iter() if "stroke-opacity: 0.35" in (e.get("style") or "")]
    assert len(faded) >= 4  # the abandoned epochs 4-6 of each model, loss and accuracy

    # the cells hold the confusion matrix, counted here from predict's classes
    truth = np.loadtxt(tmp_path / "c" / "val-labels.txt").astype(int)
    expected = np.zeros((2, 2), dtype=int)
    np.add.at(expected, (truth, predicted), 1)
    root = svg_root(tmp_path / "confusion.svg")
    assert root.get("width") == "500px" and root.get("height") == "400px"
    cells = {e.get("id"): "".join(e.itertext()).strip() for e in root.iter(SVG + "g") if (e.get("id") or "").startswith("count-")}
    assert cells == {f"count-{i}-{j}": str(expected[i, j]) for i in range(2) for j in range(2)}
    texts = svg_texts(root)
    assert "inside" in texts and "outside" in texts
    assert "true class" in texts and "predicted class" in texts


def test_boundary_shows_each_class_region_where_the_model_puts_it(tmp_path):
    # A linear model set by hand: class 0 for x < 1/3, class 1 up to 2/3, class 2 beyond, whatever y.
    model = make_model(tmp_path, "2 1 1\ninput\ndense 3 softmax\n")
    np.save(model / "layer_01" / "W.npy", np.array([[0.0, 30.0, 60.0], [0.0, 0.0, 0.0]]))
    np.save(model / "layer_01" / "b.npy", np.array([0.0, -10.0, -30.0]))
    points = np.vstack([[0, 0], [1, 1], np.random.default_rng(3).uniform(0.05, 0.95, size=(28, 2))])
    labels = np.minimum((points[:, 0] * 3).astype(int), 2)
    labels[[2, 3, 4]] = (labels[[2, 3, 4]] + 1) % 3  # three points the model gets wrong
    savetxt(tmp_path / "x.txt", points)
    savetxt(tmp_path / "y.txt", labels.reshape(-1, 1))
    run("kerash plot boundary m -x x.txt -y y.txt -o regions.png --width 700 --height 500", cwd=tmp_path)
    (width, height), shares, pixels = png(tmp_path / "regions.png")
    assert (width, height) == (700, 500)
    regions = [c for c, share in shares.items() if share > 0.02 and c != (255, 255, 255)]
    assert len(regions) == 3, sorted(shares.items(), key=lambda kv: -kv[1])[:6]
    # left to right, the regions cover the x range of the data plus 8% margins in the model's thirds
    columns = [np.nonzero(np.all(pixels == c, axis=2))[1] for c in regions]
    regions = [c for _, c in sorted(zip([col.mean() for col in columns], regions))]
    area = np.array([shares[c] for c in regions])
    np.testing.assert_allclose(area / area.sum(), np.array([0.08 + 1 / 3, 1 / 3, 1 / 3 + 0.08]) / 1.16, atol=0.02)
    # the same figure in-process (matplotlib is already loaded): its title and legend count the points
    from kerash.plot import figures

    fig = figures.boundary(str(model), str(tmp_path / "x.txt"), str(tmp_path / "y.txt"))
    assert fig.get_suptitle().endswith("30 points, 3 misclassified (10.0%)")
    legend = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {f"class {c} ({np.sum(labels == c)})" for c in range(3)} | {"misclassified (3)"} <= legend


def test_weights_with_gradients_and_statistics(tmp_path):
    model = make_model(tmp_path, "2 1 1\ninput\ndense 4 tanh\ndense 1 sigmoid\n")
    savetxt(tmp_path / "x.txt", np.array([[0, 0], [0, 1], [1, 0], [1, 1]]))
    savetxt(tmp_path / "y.txt", np.array([[0], [1], [1], [0]]))
    stats = ["epoch\tlayer\tparam\tw_rms\tw_mean\tw_min\tw_max\tg_rms\tg_mean\tg_min\tg_max\tupdate_ratio"]
    stats += [f"{e}\tlayer_0{k}\t{p}\t{0.1 * e}\t0\t-1\t1\t{0.01 / e}\t0\t-1\t1\t{1e-3 / e}" for e in (1, 2, 3) for k in (1, 2) for p in "Wb"]
    (model / "stats.tsv").write_text("\n".join(stats) + "\n")
    run("backprop m -x x.txt -y y.txt -o g && kerash plot weights m --grads g -o weights.svg", cwd=tmp_path)
    texts = svg_texts(svg_root(tmp_path / "weights.svg"))
    w = np.load(model / "layer_01" / "W.npy")
    assert "layer_01: W (2×4)" in texts and "layer_02: gradient of b (1)" in texts
    assert f"rms {math.sqrt(np.mean(w**2)):.3g}, mean {w.mean():.3g}" in texts, texts
    assert "Per-layer statistics while training (stats.tsv)" in texts
    assert {"layer_01 W", "layer_02 b"} <= set(texts)


def test_weights_reads_layers_with_the_checks_of_every_reader(tmp_path):
    """Issue 19: plot weights read layer files as any tensor (a FIFO hung it; another model's gradient was drawn)."""
    model = make_model(tmp_path, "2 1 1\ninput\ndense 4 tanh\ndense 1 sigmoid\n")
    make_model(tmp_path, "2 1 1\ninput\ndense 3 tanh\ndense 1 sigmoid\n", name="other")
    savetxt(tmp_path / "x.txt", np.array([[0, 0], [0, 1], [1, 0], [1, 1]]))
    savetxt(tmp_path / "y.txt", np.array([[0], [1], [1], [0]]))
    run("backprop other -x x.txt -y y.txt -o g", cwd=tmp_path)
    proc = run(["kerash", "plot", "weights", "m", "--grads", "g", "-o", "w.svg"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "g/layer_01/W.npy has shape 2×3 but 2×4 is expected")
    assert not (tmp_path / "w.svg").exists()
    target = os.path.realpath(model / "layer_01" / "W.npy")
    os.unlink(target)
    os.mkfifo(target)
    proc = run(["timeout", "20", "kerash", "plot", "weights", "m", "-o", "w.svg"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "layer_01/W.npy is not a regular file")


def test_evolution_per_generation(tmp_path):
    from kerash.plot import figures

    (tmp_path / "evolve.tsv").write_text(
        "generation\tgenome\tparent\tmutation\tlayers\tparameters\tval_loss\tval_accuracy\tseconds\n"
        "0\tg0-0\t-\tinitial\tdense 1 sigmoid\t3\t0.7\t0.5\t0.1\n"
        "1\tg1-1\tg0-0\tresize\tdense 8 tanh, dense 1 sigmoid\t33\tinf\tnan\t0.1\n"
        "1\tg1-2\tg0-0\tadd\tdense 8 tanh, dense 1 sigmoid\t33\t0.25\t1.0\t0.1\n"
    )
    fig = figures.evolution(str(tmp_path / "evolve.tsv"))
    title = fig.get_suptitle()
    assert "3 genomes, 2 generations" in title and "best g1-2, validation loss 0.25" in title and "1 diverged" in title
    loss_axis = fig.axes[0]
    best = [line for line in loss_axis.get_lines() if line.get_label() == "best of the generation"][0]
    np.testing.assert_allclose(best.get_ydata(), [0.7, 0.25])
    figures.save(fig, str(tmp_path / "evolution.png"), 640, 360, 150)
    (width, height), _, _ = png(tmp_path / "evolution.png")
    assert (width, height) == (640, 360)  # the same pixels at another dpi: larger text


def _braille_dots(lines):
    """(x, y) of every braille dot in the canvas lines of a panel (after the axis character)."""
    bits = ((0x01, 0, 0), (0x02, 0, 1), (0x04, 0, 2), (0x40, 0, 3), (0x08, 1, 0), (0x10, 1, 1), (0x20, 1, 2), (0x80, 1, 3))
    dots = []
    for row, line in enumerate(lines):
        canvas = re.split("[┤│]", line, maxsplit=1)[1]
        for col, char in enumerate(canvas):
            code = ord(char) - 0x2800
            dots += [(2 * col + dx, 4 * row + dy) for bit, dx, dy in bits if 0 <= code < 256 and code & bit]
    return dots


def test_curves_in_a_terminal_through_a_pseudo_terminal(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "trace.tsv").write_text(
        HEADER + "\tevent\n" + "".join(f"{e}\t10\t{1 - 0.1 * (e - 1)}\t{0.5 + 0.05 * e}\t\t\t0.01\t0.1\t\n" for e in range(1, 11))
    )
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    env = tool_env(TERM="xterm")
    env.pop("NO_COLOR", None)
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    proc = subprocess.Popen(["kerash", "plot", "curves", "m"], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the tool closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()
    text = out.decode()
    assert "\x1b[" in text  # coloured on a terminal
    lines = re.sub(r"\x1b\[[0-9;]*m", "", text).replace("\r\n", "\n").splitlines()
    assert max(len(line) for line in lines) <= 100
    start = lines.index("loss per epoch") + 1
    end = next(i for i in range(start, len(lines)) if "└" in lines[i])
    dots = _braille_dots(lines[start:end])
    assert lines[end + 1].split() == ["1", "10", "epoch"]
    # a loss falling in a straight line from 1 (top row) to 0.1 (bottom row)
    width, height = max(x for x, _ in dots), 4 * (end - start) - 1
    for x, y in dots:
        assert abs(y - height * x / width) <= 1.5, (x, y)
    assert {x for x, _ in dots} == set(range(width + 1))  # a solid line: a dot in every column
    assert lines[start].split("┤")[0].strip() == "1" and lines[end - 1].split("┤")[0].strip() == "0.1"
    assert "accuracy (%) per epoch" in lines


def test_plot_errors(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "trace.tsv").write_text(OLD_TRACE)
    # standard output a pipe, no -o
    assert_one_line_error(run(["kerash", "plot", "curves", "m"], cwd=tmp_path, check=False), 2, "give -o")
    assert_one_line_error(run(["kerash", "plot", "curves", "m", "-o", "c.jpg"], cwd=tmp_path, check=False), 2, ".png or .svg")
    assert_one_line_error(run(["kerash", "plot", "curve", "m", "-o", "c.png"], cwd=tmp_path, check=False), 2, "'curves'")
    assert_one_line_error(run(["kerash", "plot", "boundary", "m", "-o", "b.png"], cwd=tmp_path, check=False), 2, "--data X and --labels Y")
    # without matplotlib (hidden here by a package that fails to import): what to install
    (tmp_path / "hide" / "matplotlib").mkdir(parents=True)
    (tmp_path / "hide" / "matplotlib" / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    proc = run(["kerash", "plot", "curves", "m", "-o", "c.png"], cwd=tmp_path, check=False, env=tool_env(PYTHONPATH=tmp_path / "hide"))
    assert_one_line_error(proc, 1, "pip install 'kerash[plot]'")
    assert not list(tmp_path.glob("c.*"))


def test_only_the_figures_module_imports_matplotlib():
    importers = set()
    for path in (ROOT / "kerash").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] == "matplotlib" for n in names):
                importers.add(path.relative_to(ROOT).as_posix())
    assert importers == {"kerash/plot/figures.py"}


def test_regression_draws_predicted_against_true_and_confusion_of_values_explains_itself(tmp_path):
    """Issue 25: targets that are values get a picture of their own, with R² as scikit-learn computes it; the
    confusion matrix of values, and the regression picture of classes, say which to use (exit 1)."""
    folder = make_model(tmp_path, "3 1 1\ninput\ndense 2 identity\n", seed=5)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 3))
    y = x[:, :2] * 2 + 0.5
    savetxt(tmp_path / "x.txt", x)
    savetxt(tmp_path / "y.txt", y)
    savetxt(tmp_path / "classes.txt", rng.integers(0, 2, size=(30, 1)))
    script = """
        kerash plot regression m -x x.txt -y y.txt -o r.svg
        kerash plot confusion m -x x.txt -y y.txt -o c.svg 2> confusion.err; echo $? > confusion.status
        kerash plot regression m -x x.txt -y classes.txt -o c2.svg 2> classes.err; echo $? > classes.status
    """
    run(["bash", "-c", script], cwd=tmp_path)
    root = svg_root(tmp_path / "r.svg")
    groups = {g.get("id"): g for g in root.iter(SVG + "g") if g.get("id")}
    for k in (0, 1):
        assert len([e for e in groups[f"points-{k}"].iter() if e.tag in (SVG + "use", SVG + "path")]) >= 30
        assert f"identity-{k}" in groups
    w = weights(folder)
    out = x @ w["layer_01/W"] + w["layer_01/b"]
    r2 = np.mean(1 - ((out - y) ** 2).sum(axis=0) / ((y - y.mean(axis=0)) ** 2).sum(axis=0))
    title = " ".join(svg_texts(root))
    assert f"R² {r2:.4f}" in title and "30 samples" in title, title
    for name in ("confusion", "classes"):
        assert (tmp_path / f"{name}.status").read_text().strip() == "1"
        err = (tmp_path / f"{name}.err").read_text()
        assert err.count("\n") == 1 and err.startswith("kerash plot: error: the labels are "), err
    assert "kerash plot regression" in (tmp_path / "confusion.err").read_text()
    assert "kerash plot confusion" in (tmp_path / "classes.err").read_text()
    assert not (tmp_path / "c.svg").exists() and not (tmp_path / "c2.svg").exists()


def test_activations_draws_a_nodes_values_grouped_by_class(tmp_path):
    """Issue 25: kerash plot activations, a row per sample and a column per unit, its title from the values that
    predict --node gives (checked against numpy); --node goes with activations only."""
    folder = make_model(tmp_path, "3 1 1\ninput\ndense 6 relu\ndense 2 softmax\n", seed=4)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 3))
    savetxt(tmp_path / "x.txt", x)
    savetxt(tmp_path / "y.txt", rng.integers(0, 2, size=(40, 1)))
    script = """
        kerash plot activations m -x x.txt -y y.txt --node layer_01 -o a.svg
        kerash plot activations m -x x.txt --node layer_01 -o b.png
        kerash plot activations m -x x.txt -o c.png 2> c.err; echo $? > c.status
        kerash plot confusion m -x x.txt -y y.txt --node layer_01 -o d.png 2> d.err; echo $? > d.status
    """
    run(["bash", "-c", script], cwd=tmp_path)
    w = weights(folder)
    hidden = np.maximum(x @ w["layer_01/W"] + w["layer_01/b"], 0)
    root = svg_root(tmp_path / "a.svg")
    assert list(root.iter(SVG + "image"))  # the values, drawn as an image
    title = " ".join(svg_texts(root))
    constant = int(np.sum(np.ptp(hidden, axis=0) == 0))
    assert f"40 samples, values {hidden.min():.3g} to {hidden.max():.3g}, {constant} of 6 units constant" in title
    size, _, _ = png(tmp_path / "b.png")
    assert size == (800, 600)
    for name, words in (("c", "needs --node"), ("d", "--node goes with activations only")):
        assert (tmp_path / f"{name}.status").read_text().strip() == "2"
        assert words in (tmp_path / f"{name}.err").read_text()


def test_a_checkpoint_or_version_folder_draws_as_its_model_did_then(tmp_path):
    """Issue 25: kerash plot takes a checkpoint (or version) folder as a model: its curves are the model's trace
    up to the checkpoint's epoch, its confusion matrix that of its own weights."""
    make_model(tmp_path, "2 1 1\ninput\ndense 4 tanh\ndense 2 softmax\n", seed=2)
    rng = np.random.default_rng(1)
    savetxt(tmp_path / "x.txt", rng.normal(size=(30, 2)))
    savetxt(tmp_path / "y.txt", rng.integers(0, 2, size=(30, 1)))
    run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "5", "--checkpoint-every", "3"], cwd=tmp_path)
    assert tables.read_trace(str(tmp_path / "m" / "checkpoints" / "epoch-0003")).epoch.tolist() == [1, 2, 3]
    script = ("kerash plot curves m/checkpoints/epoch-0003 -o c.svg && "
              "kerash plot confusion m/checkpoints/epoch-0003 -x x.txt -y y.txt -o k.svg")
    run(["bash", "-c", script], cwd=tmp_path)
    correct = dict(line.split("\t") for line in run(["evaluate", "m/checkpoints/epoch-0003", "-x", "x.txt", "-y",
                                                     "y.txt"], cwd=tmp_path).stdout.decode().splitlines())["correct"]
    assert f"{correct} of 30 correct" in " ".join(svg_texts(svg_root(tmp_path / "k.svg")))
    assert svg_root(tmp_path / "c.svg") is not None
