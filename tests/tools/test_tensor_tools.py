"""tensor-slice, tensor-flatten, conv and maxpool through the executables (files, pipes, '-', text and npy),
against naive loops; the kernels themselves are checked in process in unit/test_kernels.py."""

import io

import numpy as np

from conftest import parse, run, warm_and_cold
from helpers import naive_conv, naive_maxpool, naive_slice


def load_npy(data):
    return np.load(io.BytesIO(data), allow_pickle=False)


@warm_and_cold
def test_conv_tool_files_pipe_and_bias(tmp_path):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 3, 6, 5))
    k = rng.normal(size=(4, 3, 3, 2))
    b = rng.normal(size=4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "k.npy", k)
    (tmp_path / "b.txt").write_text(" ".join(repr(float(v)) for v in b) + "\n")
    proc = run(["conv", "x.npy", "k.npy", "--stride", "2", "--pad", "1", "--bias", "b.txt", "--format", "npy"], cwd=tmp_path)
    np.testing.assert_allclose(load_npy(proc.stdout), naive_conv(x, k, 2, 1, b), rtol=1e-12, atol=1e-12)
    # a single sample from standard input, written as text with a shape header
    np.save(tmp_path / "s.npy", x[0])
    run("cat s.npy | matrix-scale 1 | conv - k.npy -o out.npy", cwd=tmp_path)
    out = np.load(tmp_path / "out.npy")
    np.testing.assert_allclose(out, naive_conv(x[:1], k, 1, 0)[0], rtol=1e-12, atol=1e-12)


@warm_and_cold
def test_conv_tool_matrix_with_text_kernel(tmp_path):
    img = np.arange(1.0, 17.0).reshape(4, 4)
    (tmp_path / "img.txt").write_text("".join(" ".join(str(int(v)) for v in row) + "\n" for row in img))
    (tmp_path / "k.txt").write_text("1 0\n0 -1\n")
    got = parse(run(["conv", "img.txt", "k.txt", "--pad", "1"], cwd=tmp_path).stdout)
    kernel = np.array([[1.0, 0.0], [0.0, -1.0]])
    np.testing.assert_array_equal(got, naive_conv(img[None, None], kernel[None, None], 1, 1)[0, 0])


@warm_and_cold
def test_maxpool_tool(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 7, 9))
    np.save(tmp_path / "x.npy", x)
    got = load_npy(run(["maxpool", "x.npy", "--size", "3", "--format", "npy"], cwd=tmp_path).stdout)
    np.testing.assert_array_equal(got, naive_maxpool(x[None], 3, 3, 3, 0)[0])
    got = load_npy(run("cat x.npy | maxpool - --size 3 --stride 2 --pad 1 --format npy", cwd=tmp_path).stdout)
    np.testing.assert_array_equal(got, naive_maxpool(x[None], 3, 3, 2, 1)[0])
    got = parse(run("matrix-create 4 6 --init uniform -p -1 -p 0 --seed 2 | tee m.txt | maxpool --size 2", cwd=tmp_path).stdout)
    m = parse((tmp_path / "m.txt").read_bytes())
    np.testing.assert_array_equal(got, naive_maxpool(m[None, None], 2, 2, 2, 0)[0, 0])


@warm_and_cold
def test_tensor_slice_tool(tmp_path):
    rng = np.random.default_rng(8)
    t = rng.normal(size=(3, 4, 5))
    np.save(tmp_path / "t.npy", t)
    cases = [(1, 1, 0, 3, 2, 2, 0), (0, 0, 2, 7, 6, 2, 1), (3, 4, 1, 2, 2, 1, 2)]
    for x, y, z, w, h, d, pad in cases:
        args = ["tensor-slice", *map(str, (x, y, z, w, h, d)), "t.npy", "--pad", str(pad), "--format", "npy"]
        got = load_npy(run(args, cwd=tmp_path).stdout)
        np.testing.assert_array_equal(got, naive_slice(t[None], x, y, z, w, h, d, pad)[0])
    got = parse(run("printf '1 2 3\\n4 5 6\\n7 8 9\\n' | tensor-slice 1 1 0 2 2 1 -").stdout)
    np.testing.assert_array_equal(got, [[5.0, 6.0], [8.0, 9.0]])


@warm_and_cold
def test_tensor_flatten_tool(tmp_path):
    t = np.arange(24.0).reshape(2, 3, 2, 2)
    np.save(tmp_path / "t.npy", t)
    np.testing.assert_array_equal(parse(run(["tensor-flatten", "t.npy"], cwd=tmp_path).stdout), t.reshape(2, 12))
    got = parse(run("cat t.npy | tensor-slice 0 0 0 2 2 3 | tensor-flatten", cwd=tmp_path).stdout)
    np.testing.assert_array_equal(got, t.reshape(2, 12))
    got = parse(run(["tensor-flatten", "-"], input="1 2\n3 4\n").stdout)
    np.testing.assert_array_equal(got, [[1.0, 2.0, 3.0, 4.0]])


def test_tensor_reshape_tool(tmp_path):
    """Rows of flattened images back into a batch (N,C,H,W) and back again; -1 after --; bad shapes refused."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 2, 2, 3))
    np.save(tmp_path / "x.npy", x)
    rows = load_npy(run(["tensor-flatten", "x.npy", "--format", "npy"], cwd=tmp_path).stdout)
    np.save(tmp_path / "rows.npy", rows)
    back = load_npy(run(["tensor-reshape", "--format", "npy", "--", "-1 2 2 3", "rows.npy"], cwd=tmp_path).stdout)
    np.testing.assert_array_equal(back, x)
    piped = run(["tensor-reshape", "3 12"], cwd=tmp_path, input=run(["tensor-flatten", "x.npy"], cwd=tmp_path).stdout)
    np.testing.assert_array_equal(parse(piped.stdout), x.reshape(3, 12))
    for dims, code, words in (("5 5", 1, "36 values do not fill a shape 5 5"), ("-1 -1", 2, "at most one -1"),
                              ("a b", 2, "whole numbers")):
        proc = run(["tensor-reshape", "--", dims, "x.npy"], cwd=tmp_path, check=False)
        assert proc.returncode == code and words in proc.stderr.decode(), proc.stderr
