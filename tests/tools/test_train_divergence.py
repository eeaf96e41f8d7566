"""A step that makes the weights non-finite is undone exactly, even long after the last backup."""

import json

from conftest import run


def _state(folder):
    return json.loads((folder / "state.json").read_text())


def test_weights_that_overflow_are_rebuilt_at_the_last_finite_step(tmp_path):
    # Adam moves the bias by lr each step towards an unreachable target: after 17 steps of
    # 1e307 it holds 1.7e308, and the 18th overflows float64.  The loss (mae) stays finite
    # until then, so the run stops one batch later with non-finite weights, 17 steps after
    # its start: more than the loop's backup interval, so the last step is rebuilt by replay.
    (tmp_path / "m.model").write_text("1 1 1\ninput\ndense 1 identity\nloss mae\n")
    (tmp_path / "x.txt").write_text("0\n")
    (tmp_path / "y.txt").write_text("1.79e308\n")
    common = ["-x", "x.txt", "-y", "y.txt", "--batch-size", "1", "--optimizer", "adam", "--lr", "1e307"]
    for name in ("a", "b"):
        run(["model-init", "m.model", "-o", name, "--seed", "1", "--dtype", "float64"], cwd=tmp_path)
    proc = run(["train", "a", "--epochs", "100", *common], cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "step 17" in proc.stderr.decode()
    state = _state(tmp_path / "a")
    assert (state["steps"], state["epochs"], state["batch"]) == (17, 17, 0)
    bias = float(run(["matrix-transpose", "a/layer_01/b.npy"], cwd=tmp_path).stdout)
    assert abs(bias - 1.7e308) < 1e-6 * 1.7e308  # 17 steps of about 1e307
    # The same 17 steps in a fresh run give the very same weights and optimiser state.
    run(["train", "b", "--epochs", "17", *common], cwd=tmp_path)
    for f in ("layer_01/W.npy", "layer_01/b.npy", "optimizer/layer_01/b.m.npy", "optimizer/layer_01/b.v.npy"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert _state(tmp_path / "a")["optimizer"]["t"] == _state(tmp_path / "b")["optimizer"]["t"] == 17


def _tiny_model(tmp_path):
    """A fresh 2-3-1 model m with two samples x.txt, y.txt; the bytes of its first weights."""
    (tmp_path / "m.model").write_text("2 1 1\ninput\ndense 3 tanh\ndense 1 sigmoid\n")
    (tmp_path / "x.txt").write_text("0 1\n1 0\n")
    (tmp_path / "y.txt").write_text("1\n0\n")
    run(["model-init", "m.model", "-o", "m", "--seed", "1"], cwd=tmp_path)
    return (tmp_path / "m" / "layer_01" / "W.npy").read_bytes()


def test_non_finite_settings_are_refused_and_nothing_changes(tmp_path):
    before = _tiny_model(tmp_path)
    for option, value in (("--lr", "inf"), ("--lr", "nan"), ("--lr", "-1"), ("--momentum", "nan"), ("--weight-decay", "inf")):
        extra = ["--optimizer", "momentum"] if option == "--momentum" else []
        proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "1", option, value, *extra], cwd=tmp_path, check=False)
        assert proc.returncode == 2 and proc.stderr.decode().startswith(f"train: error: {option} must be"), proc.stderr
    assert (tmp_path / "m" / "layer_01" / "W.npy").read_bytes() == before
    assert _state(tmp_path / "m")["epochs"] == 0


def test_a_step_that_overflows_the_weights_is_never_saved(tmp_path):
    # One step per epoch with lr 1e300 turns float32 weights to ±inf at once: the epoch's only
    # step is undone and the model stays at step 0, finite.
    before = _tiny_model(tmp_path)
    proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "1", "-b", "2", "--lr", "1e300"], cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "the weights became non-finite at the last step of epoch 1" in proc.stderr.decode()
    state = _state(tmp_path / "m")
    assert (state["epochs"], state["steps"]) == (0, 0)
    assert (tmp_path / "m" / "layer_01" / "W.npy").read_bytes() == before
    # A model holding a non-finite weight is refused, naming the file.
    import numpy as np

    w = np.load(tmp_path / "m" / "layer_02" / "W.npy")
    w[1, 0] = np.nan
    target = (tmp_path / "m" / "layer_02" / "W.npy").resolve()
    np.save(target, w)
    proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "1"], cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode() == "train: error: m/layer_02/W.npy holds non-finite weights; restore a checkpoint (kerash checkpoints) or model-init the model again\n"
    assert _state(tmp_path / "m")["epochs"] == 0
