"""Bad input to the model tools: one line on standard error, and the model directory
byte-for-byte as it was (every file hashed, following symlinks)."""

import os
import shutil

import numpy as np
import pytest

from conftest import assert_one_line_error, run
from helpers import fingerprint

MODEL = "5 1 1\ninput\ndense 4 tanh\ndense 3 softmax\n"
OTHER = "5 1 1\ninput\ndense 6 tanh\ndense 3 softmax\n"


def savetxt(path, a):
    np.savetxt(path, np.asarray(a, dtype=float).reshape(len(a), -1), fmt="%.17g")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A float64 model 'm' (trained one step, so it has optimiser state and two versions), another model and data."""
    folder = tmp_path_factory.mktemp("template")
    (folder / "m.model").write_text(MODEL)
    (folder / "other.model").write_text(OTHER)
    run(["model-init", "m.model", "-o", "m", "--seed", "1", "--dtype", "float64"], cwd=folder)
    run(["model-init", "other.model", "-o", "other", "--seed", "1", "--dtype", "float64"], cwd=folder)
    rng = np.random.default_rng(0)
    savetxt(folder / "x.txt", rng.normal(size=(10, 5)))
    savetxt(folder / "y.txt", rng.integers(0, 3, size=10))
    run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "1", "--batch-size", "10", "--lr", "0.1"], cwd=folder)
    run(["backprop", "m", "-x", "x.txt", "-y", "y.txt", "-o", "good"], cwd=folder)
    run(["backprop", "other", "-x", "x.txt", "-y", "y.txt", "-o", "foreign"], cwd=folder)
    return folder


@pytest.fixture
def setup(template, tmp_path):
    """A private copy of the template (model directories keep their relative links)."""
    work = tmp_path / "w"
    shutil.copytree(template, work, symlinks=True)
    return work


def fails_unchanged(cwd, args, code, *fragments, folder="m", stdin=None):
    """Run a tool that must fail; the model directory must not change."""
    before = fingerprint(cwd / folder)
    assert before
    proc = run(args, cwd=cwd, check=False, input=stdin)
    assert_one_line_error(proc, code, *fragments)
    assert proc.stdout == b""
    assert fingerprint(cwd / folder) == before
    return proc


# ---------------------------------------------------------------- bad data


@pytest.mark.parametrize(
    "tool",
    [
        ["train", "m", "-x", "x.txt", "-y", "bad.txt", "--epochs", "1"],
        ["backprop", "m", "-x", "x.txt", "-y", "bad.txt", "-o", "g"],
        ["evaluate", "m", "-x", "x.txt", "-y", "bad.txt"],
    ],
    ids=["train", "backprop", "evaluate"],
)
def test_label_and_data_count_mismatch(setup, tool):
    savetxt(setup / "bad.txt", np.zeros(9))
    fails_unchanged(setup, tool, 1, "10", "9", "label")
    assert not (setup / "g").exists()


@pytest.mark.parametrize(
    "tool",
    [
        ["train", "m", "-x", "bad.txt", "-y", "y.txt", "--epochs", "1"],
        ["backprop", "m", "-x", "bad.txt", "-y", "y.txt", "-o", "g"],
        ["evaluate", "m", "-x", "bad.txt", "-y", "y.txt"],
        ["predict", "m", "bad.txt"],
        ["train", "m", "-x", "x.txt", "-y", "y.txt", "--val-data", "bad.txt", "--val-labels", "y.txt"],
    ],
    ids=["train", "backprop", "evaluate", "predict", "val-data"],
)
def test_wrong_data_width(setup, tool):
    savetxt(setup / "bad.txt", np.zeros((10, 4)))
    fails_unchanged(setup, tool, 1, "4 values", "5")


def test_wrong_nchw_sample_shape(setup):
    np.save(setup / "bad.npy", np.zeros((10, 1, 2, 3)))
    fails_unchanged(setup, ["train", "m", "-x", "bad.npy", "-y", "y.txt"], 1, "1×2×3")


@pytest.mark.parametrize(
    "tool",
    [
        ["train", "m", "-x", "x.txt", "-y", "bad.txt", "--epochs", "1"],
        ["backprop", "m", "-x", "x.txt", "-y", "bad.txt", "-o", "g"],
        ["evaluate", "m", "-x", "x.txt", "-y", "bad.txt"],
    ],
    ids=["train", "backprop", "evaluate"],
)
def test_wrong_label_width(setup, tool):
    savetxt(setup / "bad.txt", np.zeros((10, 2)))
    fails_unchanged(setup, tool, 1, "2 columns", "3")


@pytest.mark.parametrize("bad", [3, -1, 1.5])
@pytest.mark.parametrize(
    "tool",
    [
        ["train", "m", "-x", "x.txt", "-y", "bad.txt", "--epochs", "1"],
        ["backprop", "m", "-x", "x.txt", "-y", "bad.txt", "-o", "g"],
    ],
    ids=["train", "backprop"],
)
def test_class_index_out_of_range(setup, tool, bad):
    labels = np.zeros(10)
    labels[6] = bad
    savetxt(setup / "bad.txt", labels)
    fails_unchanged(setup, tool, 1, "class indices 0..2", f"found {bad:g}")


def test_classes_numbered_from_one_get_a_hint(setup):
    """Issue 24: labels 1..K are refused with a hint, not bare."""
    savetxt(setup / "bad.txt", np.arange(10) % 3 + 1)
    fails_unchanged(setup, ["train", "m", "-x", "x.txt", "-y", "bad.txt", "--epochs", "1"], 1, "found 3",
                    "numbered 1..K: subtract one")


@pytest.mark.parametrize(
    "tool, value, where",
    [
        (["train", "m", "-x", "bad.txt", "-y", "y.txt"], np.nan, "bad.txt"),
        (["predict", "m", "bad.txt"], np.nan, "bad.txt"),
        (["predict", "m", "bad.txt", "--classes"], -np.inf, "bad.txt"),
        (["evaluate", "m", "-x", "bad.txt", "-y", "y.txt"], np.inf, "bad.txt"),
        (["backprop", "m", "-x", "bad.txt", "-y", "y.txt", "-o", "g"], np.nan, "bad.txt"),
        (["evaluate", "m", "-x", "x.txt", "-y", "bad.txt"], np.inf, "bad.txt"),
    ],
    ids=["train", "predict", "predict-classes", "evaluate", "backprop", "evaluate-labels"],
)
def test_non_finite_data_is_an_error_naming_file_and_row(setup, tool, value, where):
    labels = "-y" in tool and tool[tool.index("-y") + 1] == "bad.txt"
    bad = np.loadtxt(setup / ("y.txt" if labels else "x.txt")).reshape(10, -1)
    bad[3, -1] = value
    savetxt(setup / "bad.txt", bad)
    proc = fails_unchanged(setup, tool, 1, f"non-finite value {value} in row 4, value {bad.shape[1]}", f"({where})")
    assert proc.stdout == b""
    assert not (setup / "g").exists()


def test_the_non_finite_check_needs_no_copy_of_the_data():
    import tracemalloc

    from kerash.errors import DataError
    from kerash.model import check_finite

    x = np.ones((20000, 100))  # 16 MB
    tracemalloc.start()
    check_finite(x, "x")
    x[17345, 42] = np.nan
    with pytest.raises(DataError, match=r"non-finite value nan in row 17346, value 43: .* \(x\)$"):
        check_finite(x, "x")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_a_diverging_update_changes_nothing(setup):
    # Gradients of 1e300 and a step of 1e10 overflow float64 weights.
    shutil.copytree(setup / "good", setup / "huge")
    for path in (setup / "huge").glob("layer_*/*.npy"):
        np.save(path, np.load(path) * 1e300 + 1e300)
    fails_unchanged(setup, ["model-update", "m", "huge", "--lr", "1e10"], 1, "non-finite")
    fails_unchanged(setup, ["model-update", "m", "good", "--lr", "inf"], 2, "--lr must be a finite number")


# ---------------------------------------------------------------- bad model descriptions in a model directory


PREDICT = ["predict", "m", "x.txt"]
TRAIN = ["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "1"]
BACKPROP = ["backprop", "m", "-x", "x.txt", "-y", "y.txt", "-o", "g"]
UPDATE = ["model-update", "m", "good"]
EVALUATE = ["evaluate", "m", "-x", "x.txt", "-y", "y.txt"]


@pytest.mark.parametrize(
    "line,replacement,fragments,tool",
    [
        ("dense 4 tanh", "dense 4 tahn", ["unknown activation 'tahn'", "'tanh'"], TRAIN),
        ("dense 4 tanh", "dnse 4 tanh", ["unknown layer 'dnse'", "'dense'"], UPDATE),
        ("loss cross_entropy", "loss cross_entropi", ["unknown loss 'cross_entropi'"], TRAIN),
        ("loss cross_entropy", "loss mse 2", ["loss mse"], PREDICT),
        ("dense 4 tanh", "dense 4", ["dense needs"], BACKPROP),
        ("dense 3 softmax", "dense three softmax", ["'three'"], TRAIN),
        ("5 1 1", "5 1", ["input size"], EVALUATE),
    ],
    ids=["activation", "layer", "loss", "loss parameter", "missing activation", "bad integer", "bad size line"],
)
def test_bad_description_in_a_model_directory(setup, line, replacement, fragments, tool):
    path = setup / "m" / "model"
    text = path.read_text()
    lines = text.splitlines()
    assert line in lines
    number = lines.index(line) + 1
    path.write_text(text.replace(line + "\n", replacement + "\n"))
    fails_unchanged(setup, tool, 1, f"m/model:{number}:", *fragments)
    assert not (setup / "g").exists()


# ---------------------------------------------------------------- unreadable model directories


ALL_TOOLS = [PREDICT, TRAIN, BACKPROP, UPDATE, EVALUATE]
TOOL_IDS = [t[0] for t in ALL_TOOLS]


@pytest.mark.parametrize("tool", ALL_TOOLS, ids=TOOL_IDS)
def test_missing_model_directory(setup, tool):
    shutil.rmtree(setup / "m")
    proc = run(tool, cwd=setup, check=False)
    assert_one_line_error(proc, 1, "m", "does not exist")
    assert not (setup / "m").exists() and not (setup / "g").exists()


@pytest.mark.parametrize("tool", ALL_TOOLS, ids=TOOL_IDS)
def test_directory_without_a_model_file(setup, tool):
    shutil.rmtree(setup / "m")
    (setup / "m").mkdir()
    (setup / "m" / "notes.txt").write_text("not a model\n")
    fails_unchanged(setup, tool, 1, "m", "model")


@pytest.mark.parametrize(
    "damage,tool",
    [
        ("shape", PREDICT), ("shape", TRAIN), ("shape", UPDATE),
        ("truncated", BACKPROP), ("truncated", TRAIN), ("truncated", EVALUATE),
        ("missing", UPDATE), ("missing", PREDICT),
        ("garbage", TRAIN), ("garbage", BACKPROP),
    ],
    ids=lambda v: v if isinstance(v, str) else v[0],
)
def test_damaged_weight_file(setup, damage, tool):
    w = setup / "m" / "layer_02" / "W.npy"
    if damage == "shape":
        np.save(w, np.zeros((3, 4)))
        fragments = ["layer_02/W.npy", "3×4", "4×3"]
    elif damage == "truncated":
        data = w.read_bytes()
        w.write_bytes(data[: len(data) - 20])
        fragments = ["W.npy"]
    elif damage == "missing":
        os.unlink(os.path.realpath(w))
        fragments = ["layer_02/W.npy", "missing"]
    else:
        w.write_bytes(b"\x93NUMPY garbage")
        fragments = ["W.npy"]
    fails_unchanged(setup, tool, 1, *fragments)
    assert not (setup / "g").exists()


# ---------------------------------------------------------------- gradient folders


def test_update_with_gradients_of_another_model(setup):
    fails_unchanged(setup, ["model-update", "m", "foreign", "--lr", "0.1"], 1, "foreign/layer_01/W.npy", "5×6", "5×4")
    # a foreign folder after a good one: still nothing is applied
    fails_unchanged(setup, ["model-update", "m", "good", "foreign", "--lr", "0.1"], 1, "foreign")
    (setup / "empty").mkdir()
    fails_unchanged(setup, ["model-update", "m", "good", "empty"], 1, "empty", "not a gradient folder")
    fails_unchanged(setup, ["model-update", "m", "good", "nowhere"], 1, "nowhere")


def test_backprop_with_the_gradient_folder_of_another_model(setup):
    # backprop replaces a gradient folder, whichever model made it; it never writes into a model directory
    run(["backprop", "m", "-x", "x.txt", "-y", "y.txt", "-o", "foreign"], cwd=setup)
    assert np.load(setup / "foreign" / "layer_01" / "W.npy").shape == (5, 4)
    before_other = fingerprint(setup / "other")
    fails_unchanged(setup, ["backprop", "m", "-x", "x.txt", "-y", "y.txt", "-o", "other"], 2, "other", "not a gradient folder")
    assert fingerprint(setup / "other") == before_other
    fails_unchanged(setup, ["backprop", "m", "-x", "x.txt", "-y", "y.txt", "-o", "m"], 2, "not a gradient folder")


def test_failed_runs_on_a_fresh_model_add_nothing(setup):
    # 'other' comes straight from model-init: no train or model-update has ever locked it
    savetxt(setup / "bad.txt", np.zeros(9))
    fails_unchanged(setup, ["train", "other", "-x", "x.txt", "-y", "bad.txt"], 1, "label", folder="other")
    fails_unchanged(setup, ["model-update", "other", "good"], 1, "good/layer_01/W.npy", folder="other")


def test_a_version_locked_by_anyone_who_can_read_it_times_out_naming_the_holder(setup):
    """Issue 19: any reader could flock(LOCK_EX) the current version and block predict, evaluate and
    kerash snapshot silently, for ever."""
    import subprocess
    import sys
    import time

    version = os.path.realpath(setup / "m" / "current")
    locker = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY);"
                               " fcntl.flock(fd, fcntl.LOCK_EX); print(flush=True); time.sleep(60)", version],
                              stdout=subprocess.PIPE)
    try:
        locker.stdout.readline()
        for args in (["predict", "m", "x.txt"], ["evaluate", "m", "-x", "x.txt", "-y", "y.txt"],
                     ["kerash", "snapshot", "m", "--", "true"]):
            start = time.monotonic()
            proc = fails_unchanged(setup, ["timeout", "30", *args], 1, "is locked by another process",
                                   f"pid {locker.pid})")
            assert time.monotonic() - start < 15, proc
    finally:
        locker.kill()
        locker.wait()
    run(["predict", "m", "x.txt"], cwd=setup)  # the lock gone, it reads again


def test_an_unreadable_versions_folder_is_not_called_missing(setup, monkeypatch):
    """Issue 19: an unreadable .versions was reported as 'current is missing'.  As root nothing is
    unreadable, so the refusal is simulated where the version is looked up."""
    from kerash.errors import ModelError
    from kerash.model import ModelDir

    md = ModelDir(str(setup / "m"))
    real_stat = os.stat

    def refusing(path, *args, **kwargs):
        if ".versions" in str(path):
            raise PermissionError(13, "Permission denied")
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", refusing)
    with pytest.raises(ModelError, match=r"cannot read the current version of .*m: Permission denied"):
        md.version_dir()
    monkeypatch.setattr(os, "stat", real_stat)
    os.unlink(os.path.realpath(setup / "m" / "current") + "/state.json")
    shutil.rmtree(os.path.realpath(setup / "m" / "current"))
    with pytest.raises(ModelError, match=r"current points to .*which is missing"):
        md.version_dir()
