"""model-init --functions: activations of one's own, by expressions (issue 25, item 5), through the tools."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import assert_one_line_error, parse, run, savetxt, tool_env
from helpers import weights

MODSIG = """# DyNet's modified sigmoid: it never quite stops learning
modsig(x)  = sigmoid(x) + 0.01 * x
modsig'(x) = sigmoid(x) * (1 - sigmoid(x)) + 0.01
softsq(x)  = log(1 + exp(x))^2 / 2     # y = softplus²/2
softsq'(x) = log(1 + exp(x)) * sigmoid(x)
"""


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def loss(folder, model):
    """evaluate's loss line."""
    line = run(["evaluate", model, "-x", "x.txt", "-y", "y.txt"], cwd=folder).stdout.decode().splitlines()[0]
    assert line.startswith("loss\t")
    return float(line.split("\t")[1])


@pytest.fixture
def functions(tmp_path):
    (tmp_path / "f.txt").write_text(MODSIG)
    rng = np.random.default_rng(1)
    savetxt(tmp_path / "x.txt", rng.normal(size=(12, 3)))
    savetxt(tmp_path / "y.txt", rng.normal(size=(12, 2)))
    return tmp_path


def test_a_model_with_its_own_activations_predicts_and_trains_in_both_formats(functions):
    tmp = functions
    (tmp / "m.model").write_text("3 1 1\ninput\ndense 4 modsig\ndense 2 softsq\n")
    (tmp / "g.mdl").write_text("(input, 3)\n(h, 4, <modsig>)\n(out, 2, <softsq>, <mse>)\n")
    x = np.loadtxt(tmp / "x.txt")
    for name, description in (("m", "m.model"), ("g", "g.mdl")):
        run(["model-init", description, "-o", name, "--seed", "3", "--dtype", "float64", "--functions", "f.txt"],
            cwd=tmp)
        assert (tmp / name / "functions.txt").read_text() == MODSIG
        w = weights(tmp / name)
        (k1, k2) = sorted({key.split("/")[0] for key in w})
        hidden = sigmoid(x @ w[f"{k1}/W"] + w[f"{k1}/b"]) + 0.01 * (x @ w[f"{k1}/W"] + w[f"{k1}/b"])
        z = hidden @ w[f"{k2}/W"] + w[f"{k2}/b"]
        expected = np.log1p(np.exp(z)) ** 2 / 2
        # every tool reads the model's functions.txt: here a separate predict process
        np.testing.assert_allclose(parse(run(["predict", name, "x.txt"], cwd=tmp).stdout), expected, rtol=1e-10)
        before = loss(tmp, name)
        run(["train", name, "-x", "x.txt", "-y", "y.txt", "--epochs", "30", "--lr", "0.05", "--batch-size", "4"],
            cwd=tmp)
        assert loss(tmp, name) < before, name


def test_backprop_through_an_own_activation_equals_finite_differences(functions):
    """Through the Python API, in a process of its own: a definition stays in the process that reads it."""
    script = """if 1:
        import numpy as np
        import kerash

        kerash.init("m.model", "m", seed=5, dtype="float64", functions="f.txt")
        x, y = np.loadtxt("x.txt"), np.loadtxt("y.txt")
        grads, stats = kerash.backprop("m", x, y)
        path = "m/layer_01/W.npy"
        w = np.load(path)
        for i, j in ((0, 0), (2, 3)):
            losses = []
            for sign in (1, -1):
                moved = w.copy()
                moved[i, j] += sign * 1e-6
                np.save(path, moved)
                losses.append(kerash.evaluate("m", x, y)["loss"] * len(x))
            np.save(path, w)
            numeric, exact = (losses[0] - losses[1]) / 2e-6, grads["layer_01/W"][i, j]
            assert abs(numeric - exact) <= 1e-5 * abs(exact) + 1e-8, (i, j, numeric, exact)
    """
    tmp = functions
    (tmp / "m.model").write_text("3 1 1\ninput\ndense 4 modsig\ndense 2 softsq\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp, env=tool_env(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]


def test_wrong_or_unknown_functions_are_refused_and_nothing_is_made(functions):
    tmp = functions
    (tmp / "m.model").write_text("3 1 1\ninput\ndense 4 modsig\ndense 2 identity\n")
    proc = run(["model-init", "m.model", "-o", "m"], cwd=tmp, check=False)
    assert_one_line_error(proc, 1, "unknown activation 'modsig'", "--functions")
    for text, words in (
        ("modsig(x) = sigmoid(x) + 0.01 * x\nmodsig'(x) = sigmoid(x) * (1 - sigmoid(x))\n",
         ["f.txt:1", "not the derivative of modsig", "central differences"]),
        ("modsig(x) = __import__(x)\nmodsig'(x) = 1\n", ["f.txt:1", "unknown"]),
        ("modsig(x) = sigmoid(x) + 0.01 * x\n", ["needs its derivative"]),
        ("modsig(x) = x +\nmodsig'(x) = 1\n", ["f.txt:1", "found the end"]),
        ("sigmoid(x) = x\nsigmoid'(x) = 1\n", ["sigmoid is already an activation"]),
    ):
        (tmp / "f.txt").write_text(text)
        proc = run(["model-init", "m.model", "-o", "m", "--functions", "f.txt"], cwd=tmp, check=False)
        assert proc.returncode != 0 and not (tmp / "m").exists(), text
        assert_one_line_error(proc, proc.returncode, *words)
