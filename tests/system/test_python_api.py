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


def test_sequences_of_different_lengths_as_lists(tmp_path, monkeypatch):
    """A list of sequences of different lengths is padded as the tools pad text blocks: training, evaluating
    and classifying through the API equal the tools on the same sequences written as blocks."""
    import kerash

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 2, size=int(rng.integers(2, 9))).astype(float) for _ in range(60)]
    labels = [int(s.sum()) % 2 for s in seqs]
    (tmp_path / "m.model").write_text("1 1 1\ninput\ngru 6\ndense 2 softmax\n")
    (tmp_path / "x.txt").write_text("\n".join("".join(f"{v:g}\n" for v in s) for s in seqs))
    (tmp_path / "y.txt").write_text("".join(f"{v}\n" for v in labels))
    kerash.init("m.model", "api", seed=1, dtype="float64")
    run(["model-init", "m.model", "-o", "tool", "--seed", "1", "--dtype", "float64"], cwd=tmp_path)
    kerash.train("api", seqs, labels, epochs=2, batch_size=10, seed=3, workers=1)
    run(["train", "tool", "-x", "x.txt", "-y", "y.txt", "--epochs", "2", "--batch-size", "10", "--seed", "3",
         "--workers", "1"], cwd=tmp_path)
    for key in ("layer_01/W.npy", "layer_01/bh.npy", "layer_02/W.npy"):
        assert (tmp_path / "api" / key).read_bytes() == (tmp_path / "tool" / key).read_bytes()
    classes = kerash.classify("api", seqs)
    assert classes.tolist() == [int(c) for c in run(["predict", "tool", "x.txt", "--classes"],
                                                    cwd=tmp_path).stdout.split()]
