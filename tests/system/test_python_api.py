"""The Python API (kerash.api, docs/python.md): every example of the page runs, and the functions equal
their tools."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, parse, run, savetxt, tool_env

PAGE = ROOT / "docs" / "python.md"


def test_every_example_of_docs_python_runs(tmp_path):
    """The page's python blocks, in order, in one fresh interpreter (they build on each other)."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    assert len(blocks) >= 4
    script = "\n".join(blocks)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=tool_env(), capture_output=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]


def test_the_functions_equal_their_tools(tmp_path):
    import kerash

    (tmp_path / "m.model").write_text("3 1 1\ninput\ndense 5 tanh\ndense 3 softmax\n")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 3))
    y = rng.integers(0, 3, size=40)
    savetxt(tmp_path / "x.txt", x)
    savetxt(tmp_path / "y.txt", y.reshape(-1, 1))
    run(["model-init", "m.model", "-o", "tool", "--seed", "7"], cwd=tmp_path)
    kerash.init(str(tmp_path / "m.model"), str(tmp_path / "api"), seed=7)
    settings = dict(epochs=3, lr=0.3, batch_size=8, seed=2)
    lines = run(["train", "tool", "-x", "x.txt", "-y", "y.txt", "--epochs", "3", "--lr", "0.3", "--batch-size", "8",
                 "--seed", "2"], cwd=tmp_path).stdout.decode().splitlines()[1:]
    records = kerash.train(str(tmp_path / "api"), np.loadtxt(tmp_path / "x.txt"), y, **settings)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for line, record in zip(lines, records):
        assert float(line.split("\t")[2]) == pytest.approx(record["loss"], rel=1e-5)
    for name in ("layer_01/W.npy", "layer_02/b.npy"):
        np.testing.assert_array_equal(np.load(tmp_path / "api" / name), np.load(tmp_path / "tool" / name))
    expected = parse(run(["predict", "tool", "x.txt"], cwd=tmp_path).stdout)
    np.testing.assert_allclose(kerash.predict(str(tmp_path / "api"), np.loadtxt(tmp_path / "x.txt")), expected,
                               rtol=1e-6)
    with pytest.raises(kerash.errors.UsageError, match="no setting"):
        kerash.train(str(tmp_path / "api"), x, y, epoch=3)
    with pytest.raises(kerash.errors.DataError):
        kerash.predict(str(tmp_path / "api"), np.ones((2, 4)))
    assert set(kerash.api.PUBLIC) == set(kerash._API)
