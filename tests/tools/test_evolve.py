"""evolve as a user runs it: the log on standard output, the best network as a model
directory, elitism, reproducibility whatever --workers is, the mutations, and whether
it finds better networks; mutate and inherit in process for the inherited weights."""

import fcntl
import json
import math
import os
import re
import shutil

import numpy as np
import pytest

from conftest import assert_one_line_error, parse, run
from helpers import weights

HEADER = "generation\tgenome\tparent\tmutation\tlayers\tparameters\tval_loss\tval_accuracy\tseconds"
KINDS = ("add", "remove", "resize", "activation", "filters")
CONV = "/he,zero/\n6 6 1\ninput\nconvolution relu 4 1 1 3 3\nmax_pooling - 2 0 2 2\nflatten -\ndense 2 softmax\n"
CONV_LAYERS = "convolution relu 4 1 1 3 3, max_pooling - 2 0 2 2, flatten -, dense 2 softmax"


# ---------------------------------------------------------------- helpers


def savetxt(path, a):
    np.savetxt(path, a, fmt="%.17g")
    return path


def log(stdout):
    """The evolve log as a list of dicts (numbers converted), after checking the header and widths."""
    lines = (stdout.decode() if isinstance(stdout, bytes) else stdout).splitlines()
    assert lines[0] == HEADER
    rows = []
    for line in lines[1:]:
        f = line.split("\t")
        assert len(f) == 9, line
        rows.append({
            "generation": int(f[0]), "genome": f[1], "parent": f[2], "mutation": f[3], "layers": f[4],
            "parameters": int(f[5]), "val_loss": float(f[6]), "val_accuracy": float(f[7]), "seconds": float(f[8]),
        })
    return rows


def count_params(layers, shape):
    """Parameters of a 'layer, layer, …' list for samples of shape (C, H, W), counted from scratch."""
    c, h, w = shape
    total = 0
    for layer in layers.split(", "):
        t = layer.split()
        if t[0] == "dense":
            units = int(t[1])
            total += c * h * w * units + units
            c, h, w = units, 1, 1
        elif t[0] == "convolution":  # convolution ACT [P…] F STRIDE PAD KW KH
            f, s, p, kw, kh = map(int, t[-5:])
            total += f * c * kh * kw + f
            c, h, w = f, (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
        elif t[0] == "max_pooling":  # max_pooling - STRIDE PAD KW KH
            s, p, kw, kh = map(int, t[-4:])
            h, w = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
        else:
            assert t[0] == "flatten", layer
            c, h, w = c * h * w, 1, 1
    return total


def fitness(row):
    return (row["val_loss"], -row["val_accuracy"])


def best_row(rows):
    return min(rows, key=fitness)


def by_id(rows):
    return {r["genome"]: r for r in rows}


def model_layers(folder):
    """The layer lines of MODEL/model, joined as evolve's layers column (no comments, header, input, loss)."""
    out = []
    for line in open(os.path.join(folder, "model")).read().splitlines():
        t = line.split()
        if not t or t[0].startswith(("#", "/")) or t[0][0].isdigit() or t[0] in ("input", "loss"):
            continue
        out.append(" ".join(t))
    return ", ".join(out)


def cross_entropy(p, labels):
    return float(np.mean(-np.log(p[np.arange(len(labels)), labels])))


def evolve_run(folder, x, y, out, *options):
    proc = run(["evolve", "-x", x, "-y", y, "-o", out, *map(str, options)], cwd=folder)
    return proc, log(proc.stdout)


# ---------------------------------------------------------------- shared runs


@pytest.fixture(scope="module")
def circle(tmp_path_factory):
    """A moderate run on the circle problem (a few seconds), made once for all pytest-xdist workers."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this session only
    folder = base / "evolve-circle"
    with open(f"{folder}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "done").exists():
            folder.mkdir(exist_ok=True)
            run(["kerash", "dataset", "circle", "-o", "circle", "--seed", "1"], cwd=folder)
            options = ["--scratch", "--population", 8, "--generations", 8, "--epochs-per-eval", 10, "--lr", 0.01,
                       "--workers", 2, "--seed", 1]
            proc = run(["evolve", "-x", "circle/data.npy", "-y", "circle/labels.txt", "-o", "best", *map(str, options)],
                       cwd=folder)
            (folder / "stdout").write_bytes(proc.stdout)
            (folder / "stderr").write_bytes(proc.stderr)
            (folder / "done").touch()
    stdout = (folder / "stdout").read_bytes()
    x = np.load(folder / "circle" / "data.npy")
    labels = np.loadtxt(folder / "circle" / "labels.txt").astype(int)
    return {"folder": folder, "stdout": stdout, "stderr": (folder / "stderr").read_text(), "rows": log(stdout),
            "x": x, "labels": labels, "population": 8, "generations": 8, "epochs": 10, "seed": 1,
            "best": folder / "best"}


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory):
    """From a small convolutional model on 6×6 images: is the left half brighter than the right?"""
    folder = tmp_path_factory.mktemp("conv")
    rng = np.random.default_rng(4)
    x = rng.random((80, 1, 6, 6))
    labels = (x[:, 0, :, :3].mean(axis=(1, 2)) > x[:, 0, :, 3:].mean(axis=(1, 2))).astype(int)
    np.save(folder / "x.npy", x)
    savetxt(folder / "y.txt", labels.reshape(-1, 1))
    (folder / "conv.model").write_text(CONV)
    proc, rows = evolve_run(folder, "x.npy", "y.txt", "best", "--from", "conv.model", "--population", 6,
                            "--generations", 3, "--epochs-per-eval", 2, "--lr", 0.01, "--workers", 2, "--seed", 5)
    return {"folder": folder, "rows": rows, "x": x}


# ---------------------------------------------------------------- the log


def test_one_line_per_genome_with_its_columns(circle):
    rows, p, g = circle["rows"], circle["population"], circle["generations"]
    assert [r["generation"] for r in rows] == [0] + [k for k in range(1, g + 1) for _ in range(p - 1)]
    assert len({r["genome"] for r in rows}) == len(rows)
    assert (rows[0]["parent"], rows[0]["mutation"]) == ("-", "initial")
    known = by_id(rows)
    for r in rows:
        assert r["parameters"] == count_params(r["layers"], (1, 1, 2)), r
        assert math.isfinite(r["val_loss"]) and r["val_loss"] >= 0, r
        assert 0 <= r["val_accuracy"] <= 1 and r["seconds"] >= 0, r
        if r["generation"]:
            assert r["mutation"].split()[0] in KINDS, r
            assert known[r["parent"]]["generation"] < r["generation"], r
    # the same lines are kept with the best network
    assert (circle["best"] / "evolve.tsv").read_bytes() == circle["stdout"]
    assert circle["stderr"].startswith("evolve: ")


def test_mutations_change_the_layers_as_they_say(circle):
    rows = circle["rows"]
    known = by_id(rows)
    seen = set()
    for r in rows[1:]:
        kind = r["mutation"].split()[0]
        seen.add(kind)
        old, new = known[r["parent"]]["layers"].split(", "), r["layers"].split(", ")
        assert old[-1] == new[-1] == "dense 2 softmax", r
        if kind == "add":
            assert len(new) == len(old) + 1 and any(new[:i] + new[i + 1:] == old for i in range(len(new))), r
        elif kind == "remove":
            assert len(new) == len(old) - 1 and any(old[:i] + old[i + 1:] == new for i in range(len(old))), r
        else:
            changed = [(a, b) for a, b in zip(old, new) if a != b]
            assert len(new) == len(old) and len(changed) == 1, r
            a, b = (s.split() for s in changed[0])
            if kind == "resize":  # same activation, another width
                assert a[2:] == b[2:] and a[1] != b[1], r
            else:  # same width, another activation
                assert a[1] == b[1] and a[2] != b[2], r
    assert {"add", "remove", "resize", "activation"} <= seen


def test_scratch_starts_from_input_to_output(tmp_path):
    """Generation 0 from scratch is the input wired to the output, whatever form the labels take."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 5))
    classes = rng.integers(0, 3, 30)
    savetxt(tmp_path / "x.txt", x)
    savetxt(tmp_path / "indices.txt", classes.reshape(-1, 1))
    savetxt(tmp_path / "onehot.txt", np.eye(3)[classes])
    savetxt(tmp_path / "real.txt", x[:, :2] * 2 - 1)
    for labels, expected in (("indices.txt", "dense 3 softmax"), ("onehot.txt", "dense 3 softmax"),
                             ("real.txt", "dense 2 identity")):
        _, rows = evolve_run(tmp_path, "x.txt", labels, f"best-{labels}", "--population", 1, "--generations", 0,
                             "--epochs-per-eval", 1)
        assert len(rows) == 1
        assert rows[0]["layers"] == expected
        assert rows[0]["parameters"] == count_params(expected, (5, 1, 1))
        assert model_layers(tmp_path / f"best-{labels}") == expected


# ---------------------------------------------------------------- selection and the best network


def test_parents_are_the_best_and_the_best_survives(circle):
    rows, p = circle["rows"], circle["population"]
    population = [rows[0]]
    best_so_far = [fitness(rows[0])]
    for generation in range(1, circle["generations"] + 1):
        ranked = sorted(population, key=fitness)
        top = {r["genome"] for r in ranked[: math.ceil(p / 2)]}
        children = [r for r in rows if r["generation"] == generation]
        for child in children:
            assert child["parent"] in top, (generation, child, [r["genome"] for r in ranked])
        # elitism: the best of the last generation stays in the population unchanged
        population = [ranked[0]] + children
        best_so_far.append(min(fitness(r) for r in population))
    assert all(b <= a for a, b in zip(best_so_far, best_so_far[1:]))
    # so the network written is the best of every genome evaluated, not only of the last generation
    best = best_row(rows)
    state = json.loads((circle["best"] / "state.json").read_text())
    assert state["evolved"]["genome"] == best["genome"]
    assert f"best genome {best['genome']} " in circle["stderr"]
    # it kept the training of its ancestors: E epochs per generation along its line
    known, line, g = by_id(rows), 0, best
    while True:
        line += 1
        if g["parent"] == "-":
            break
        g = known[g["parent"]]
    assert state["epochs"] == circle["epochs"] * line


def test_best_dir_is_a_trained_model_with_the_reported_validation_figures(circle, tmp_path):
    best = best_row(circle["rows"])
    folder, x, labels = circle["folder"], circle["x"], circle["labels"]
    assert model_layers(circle["best"]) == best["layers"]
    probs = parse(run(["predict", "best", "circle/data.npy"], cwd=folder).stdout)
    assert probs.shape == (len(x), 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    # the fixed validation split of the seed
    from kerash.training.batches import split

    _, val = split(len(x), 0.2, circle["seed"])
    assert best["val_loss"] == pytest.approx(cross_entropy(probs[val], labels[val]), rel=1e-4)
    assert best["val_accuracy"] == pytest.approx(np.mean(probs[val].argmax(axis=1) == labels[val]), abs=1e-4)
    # an ordinary model directory: the other tools take it as it is
    summary = run(["kerash", "summary", "best"], cwd=folder).stdout.decode()
    assert f"Total params: {best['parameters']:,}" in summary
    # (on a copy: the other tests read this run's directory)
    shutil.copytree(circle["best"], tmp_path / "best-copy", symlinks=True)
    run(["train", "best-copy", "-x", folder / "circle" / "data.npy", "-y", folder / "circle" / "labels.txt",
         "--epochs", "1"], cwd=tmp_path)


def test_same_seed_same_result_whatever_the_workers(tmp_path):
    run(["kerash", "dataset", "circle", "-o", "circle", "--samples", "300", "--seed", "2"], cwd=tmp_path)
    logs = {}
    for workers in (1, 3):
        proc, _ = evolve_run(tmp_path, "circle/data.npy", "circle/labels.txt", f"best{workers}", "--population", 5,
                             "--generations", 3, "--epochs-per-eval", 3, "--lr", 0.01, "--workers", workers, "--seed", 7)
        logs[workers] = [line.rsplit("\t", 1)[0] for line in proc.stdout.decode().splitlines()]
    assert logs[1] == logs[3]
    assert len(logs[1]) == 1 + 1 + 3 * 4
    w1, w3 = weights(tmp_path / "best1"), weights(tmp_path / "best3")
    assert w1.keys() == w3.keys() and w1
    for key in w1:
        np.testing.assert_array_equal(w1[key], w3[key], err_msg=str(key))


# ---------------------------------------------------------------- convolutional models


def test_from_a_convolutional_model_also_mutates_filter_counts(conv_run):
    rows, folder = conv_run["rows"], conv_run["folder"]
    assert rows[0]["layers"] == CONV_LAYERS
    assert rows[0]["parameters"] == count_params(CONV_LAYERS, (1, 6, 6)) == 4 * 9 + 4 + 36 * 2 + 2
    known = by_id(rows)
    filters = [r for r in rows if r["mutation"].startswith("filters")]
    assert filters
    for r in filters:
        old, new = known[r["parent"]]["layers"].split(", ")[0].split(), r["layers"].split(", ")[0].split()
        assert old[0] == new[0] == "convolution" and old[1] == new[1] and old[3:] == new[3:] and old[2] != new[2], r
    for r in rows:
        assert r["parameters"] == count_params(r["layers"], (1, 6, 6)), r
    best = best_row(rows)
    assert model_layers(folder / "best") == best["layers"]
    probs = parse(run(["predict", "best", "x.npy"], cwd=folder).stdout)
    assert probs.shape == (80, 2)


# ---------------------------------------------------------------- evolve finds better networks


def test_on_digits_the_best_beats_the_initial_network(tmp_path):
    run(["kerash", "dataset", "digits", "-o", "digits"], cwd=tmp_path)
    _, rows = evolve_run(tmp_path, "digits/data.npy", "digits/labels.txt", "best", "--scratch", "--population", 6,
                         "--generations", 3, "--epochs-per-eval", 3, "--workers", 2, "--seed", 2)
    initial, best = rows[0], best_row(rows)
    assert initial["layers"] == "dense 10 softmax"
    assert best["val_accuracy"] > initial["val_accuracy"] + 0.02, (initial, best)
    assert best["val_loss"] < initial["val_loss"]
    assert len(best["layers"].split(", ")) > 1  # a hidden layer, not only more epochs of the initial network


def test_on_the_circle_it_finds_hidden_layers_and_a_low_error(circle):
    initial, best = circle["rows"][0], best_row(circle["rows"])
    assert initial["layers"] == "dense 2 softmax"
    assert len(best["layers"].split(", ")) > 1
    # no straight line separates the circle: the initial network stays near chance
    assert 1 - initial["val_accuracy"] > 0.3
    assert 1 - best["val_accuracy"] <= 0.03, best


# ---------------------------------------------------------------- inherited weights, in process


def _random_params(spec, rng):
    from kerash import model as modelmod

    return {key: {name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}
            for key, shapes in modelmod.param_shapes(spec).items()}


def _mutants(text, kind, count=4):
    """(seed, child text, what, mapping) of the first `count` mutations of this kind."""
    from kerash import evolve as evolution

    found = []
    for seed in range(500):
        rng = np.random.default_rng(seed)
        child, what, mapping = evolution.mutate(text, rng)
        if what.split()[0] == kind:
            found.append((rng, child, what, mapping))
            if len(found) == count:
                return found
    pytest.fail(f"no {kind} mutation in 500 seeds")


PARENT = "/he,zero/\n6 1 1\ninput\ndense 8 tanh\ndense 5 relu\ndense 3 softmax\n"


def _key(position):
    return f"layer_{position + 1:02d}"


def test_resize_keeps_the_overlapping_weights():
    from kerash import evolve as evolution
    from kerash import model as modelmod

    parent_spec = modelmod.parse_model(PARENT)
    parent = _random_params(parent_spec, np.random.default_rng(0))
    grew = shrank = 0
    for rng, text, what, mapping in _mutants(PARENT, "resize", count=8):
        at, old, new = map(int, re.match(r"resize layer (\d+) (\d+)→(\d+)", what).groups())
        at -= 1
        grew, shrank = grew + (new > old), shrank + (new < old)
        child = evolution.inherit(modelmod.parse_model(text), parent_spec, parent, mapping, rng)
        m = min(old, new)
        w, b = child[_key(at)]["W"], child[_key(at)]["b"]
        assert w.shape[-1] == new and b.size == new
        np.testing.assert_array_equal(w[:, :m], parent[_key(at)]["W"][:, :m])
        np.testing.assert_array_equal(b.reshape(-1)[:m], parent[_key(at)]["b"].reshape(-1)[:m])
        nxt = child[_key(at + 1)]["W"]
        assert nxt.shape[0] == new
        np.testing.assert_array_equal(nxt[:m], parent[_key(at + 1)]["W"][:m])
        np.testing.assert_array_equal(child[_key(at + 1)]["b"], parent[_key(at + 1)]["b"])
        for position in range(3):
            if position not in (at, at + 1):
                for name in ("W", "b"):
                    np.testing.assert_array_equal(child[_key(position)][name], parent[_key(position)][name])
    assert grew and shrank


def test_activation_change_keeps_every_weight_and_add_or_remove_keep_the_others():
    from kerash import evolve as evolution
    from kerash import model as modelmod

    parent_spec = modelmod.parse_model(PARENT)
    parent = _random_params(parent_spec, np.random.default_rng(1))
    for rng, text, what, mapping in _mutants(PARENT, "activation"):
        child = evolution.inherit(modelmod.parse_model(text), parent_spec, parent, mapping, rng)
        assert text != modelmod.normalised_text(parent_spec)
        for key in parent:
            for name in ("W", "b"):
                np.testing.assert_array_equal(child[key][name], parent[key][name])
    for kind in ("add", "remove"):
        for rng, text, what, mapping in _mutants(PARENT, kind):
            at = int(re.search(r"layer (\d+)", what).group(1)) - 1
            child = evolution.inherit(modelmod.parse_model(text), parent_spec, parent, mapping, rng)
            # the layers before the change are untouched, and so are those after it but one
            # (whose inputs changed: its block that still fits is kept)
            old_of = list(range(at)) + ([None] if kind == "add" else []) + list(range(at + (kind == "remove"), 3))
            for position, old in enumerate(old_of):
                if old is None:
                    continue
                cw, pw = child[_key(position)]["W"], parent[_key(old)]["W"]
                rows = min(cw.shape[0], pw.shape[0])
                assert cw.shape[1] == pw.shape[1]
                np.testing.assert_array_equal(cw[:rows], pw[:rows])
                np.testing.assert_array_equal(child[_key(position)]["b"], parent[_key(old)]["b"])
                if position < at:
                    assert cw.shape == pw.shape


# ---------------------------------------------------------------- errors


@pytest.fixture
def small(tmp_path):
    rng = np.random.default_rng(3)
    savetxt(tmp_path / "x.txt", rng.normal(size=(20, 3)))
    savetxt(tmp_path / "y.txt", rng.integers(0, 2, size=(20, 1)))
    (tmp_path / "m.model").write_text("3 1 1\ninput\ndense 2 softmax\n")
    return tmp_path


def _no_output(proc, folder):
    assert proc.stdout == b""
    assert not os.path.exists(folder / "best")


def test_from_and_scratch_together_is_bad_usage(small):
    proc = run(["evolve", "-x", "x.txt", "-y", "y.txt", "--from", "m.model", "--scratch", "-o", "best"], cwd=small, check=False)
    assert_one_line_error(proc, 2, "evolve: error:", "--from", "--scratch")
    _no_output(proc, small)


def test_bad_data_is_a_one_line_error_and_writes_nothing(small):
    (small / "bad.txt").write_text("1 2 3\n4 five 6\n")
    proc = run(["evolve", "-x", "bad.txt", "-y", "y.txt", "-o", "best"], cwd=small, check=False)
    assert_one_line_error(proc, 1, "evolve: error:", "bad.txt:2")
    _no_output(proc, small)
    savetxt(small / "short.txt", np.zeros((15, 1)))
    proc = run(["evolve", "-x", "x.txt", "-y", "short.txt", "-o", "best"], cwd=small, check=False)
    assert_one_line_error(proc, 1, "evolve: error:", "20", "15")
    _no_output(proc, small)
    # a starting model that does not fit the data
    (small / "wide.model").write_text("4 1 1\ninput\ndense 2 softmax\n")
    proc = run(["evolve", "-x", "x.txt", "-y", "y.txt", "--from", "wide.model", "-o", "best"], cwd=small, check=False)
    assert_one_line_error(proc, 1, "evolve: error:")
    _no_output(proc, small)


def test_an_existing_best_dir_is_refused_before_the_search(small):
    (small / "best").mkdir()
    (small / "best" / "keep").write_text("mine")
    proc = run(["evolve", "-x", "x.txt", "-y", "y.txt", "-o", "best", "--generations", "50"], cwd=small, check=False)
    assert_one_line_error(proc, 2, "evolve: error:", "best", "--force")
    assert proc.stdout == b""
    assert (small / "best" / "keep").read_text() == "mine"


def test_sigterm_writes_the_best_genome_so_far_and_leaves_no_work_folder(tmp_path):
    """Issue 19: evolve -w 2 stopped by SIGTERM exited 143 without the best genome and left kerash-evolve-*
    in the work folder; after a SIGKILL the next run did not sweep the stale one."""
    import signal
    import subprocess

    from conftest import tool_env

    run(["kerash", "dataset", "circle", "-o", "circle", "--samples", "300", "--seed", "2"], cwd=tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    env = tool_env(KERASH_WORKDIR=work, KERASH_WARM=0)  # cold: the workers are its children
    args = ["evolve", "-x", "circle/data.npy", "-y", "circle/labels.txt", "--scratch", "--population", "4",
            "--generations", "100000", "--epochs-per-eval", "3", "--workers", "2", "--seed", "3"]
    for sig, code in ((signal.SIGKILL, -9), (signal.SIGTERM, 143)):
        proc = subprocess.Popen([*args, "-o", f"best-{sig.name}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            for _ in range(4):  # the header, generation 0 and two children of generation 1
                assert proc.stdout.readline()
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == code, err
    # the SIGKILL left its folder; the SIGTERM run swept it and removed its own
    assert os.listdir(work) == []
    assert "interrupted by SIGTERM; the best genome so far" in err.decode() and "best-SIGTERM" in err.decode()
    assert not (tmp_path / "best-SIGKILL").exists()
    out = run(["predict", "best-SIGTERM", "circle/data.npy"], cwd=tmp_path).stdout.decode().splitlines()
    assert len(out) == 300
