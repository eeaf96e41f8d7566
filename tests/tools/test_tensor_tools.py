"""tensor-slice, tensor-flatten, conv and maxpool against naive loops written here."""

import io

import numpy as np

from conftest import naive_conv, naive_maxpool, parse, run, warm_and_cold
from kerash import ops
from kerash.layers import kernels


def load_npy(data):
    return np.load(io.BytesIO(data), allow_pickle=False)


# ---------------------------------------------------------------- naive references






def naive_slice(t, x, y, z, w, h, d, pad):
    """Value by value: out[n, k, j, i] is the padded input at channel z+k, row y+j, column x+i, or 0."""
    n, c, height, width = t.shape
    out = np.zeros((n, d, h, w))
    for k in range(d):
        for j in range(h):
            for i in range(w):
                zz, yy, xx = z + k, y + j - pad, x + i - pad
                if 0 <= zz < c and 0 <= yy < height and 0 <= xx < width:
                    out[:, k, j, i] = t[:, zz, yy, xx]
    return out


def random_conv_case(rng):
    n, c, f = rng.integers(1, 4), rng.integers(1, 4), rng.integers(1, 4)
    kh, kw = rng.integers(1, 5), rng.integers(1, 5)
    stride, pad = int(rng.integers(1, 4)), int(rng.integers(0, 3))
    h = int(rng.integers(max(1, kh - 2 * pad), 9))
    w = int(rng.integers(max(1, kw - 2 * pad), 9))
    x = rng.normal(size=(n, c, h, w))
    k = rng.normal(size=(f, c, kh, kw))
    return x, k, stride, pad


# ---------------------------------------------------------------- conv in-process


def test_conv_batches_match_naive_loop():
    rng = np.random.default_rng(2024)
    for _ in range(80):
        x, k, stride, pad = random_conv_case(rng)
        bias = rng.normal(size=k.shape[0]) if rng.random() < 0.5 else None
        got = kernels.conv2d(x, k, stride, pad, bias)
        np.testing.assert_allclose(got, naive_conv(x, k, stride, pad, bias), rtol=1e-12, atol=1e-12)


def test_conv_single_sample_and_matrix_match_naive_loop():
    rng = np.random.default_rng(7)
    for _ in range(40):
        x, k, stride, pad = random_conv_case(rng)
        sample = x[0]
        got = kernels.conv2d(sample, k, stride, pad)
        expected = naive_conv(sample[None], k, stride, pad)[0]
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
        # a matrix with one 2-D kernel gives a matrix
        matrix, kernel = x[0, 0], k[0, 0]
        got = kernels.conv2d(matrix, kernel, stride, pad)
        expected = naive_conv(matrix[None, None], kernel[None, None], stride, pad)[0, 0]
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_conv_output_size_formula():
    for h, kh, s, p in [(5, 3, 1, 0), (5, 3, 2, 1), (7, 2, 3, 0), (4, 4, 1, 2), (6, 1, 4, 0)]:
        got = kernels.conv2d(np.ones((1, h, h)), np.ones((1, 1, kh, kh)), s, p)
        assert got.shape == (1, (h + 2 * p - kh) // s + 1, (h + 2 * p - kh) // s + 1)


# ---------------------------------------------------------------- maxpool in-process


def test_maxpool_matches_naive_loop():
    rng = np.random.default_rng(99)
    for _ in range(80):
        size = int(rng.integers(1, 5))
        stride = int(rng.integers(1, 4))
        pad = int(rng.integers(0, size // 2 + 1))
        n, c = rng.integers(1, 4), rng.integers(1, 4)
        h = int(rng.integers(max(1, size - 2 * pad), 10))
        w = int(rng.integers(max(1, size - 2 * pad), 10))
        x = rng.normal(size=(n, c, h, w))
        expected = naive_maxpool(x, size, size, stride, pad)
        np.testing.assert_array_equal(kernels.maxpool(x, size, stride, pad), expected)
        np.testing.assert_array_equal(kernels.maxpool(x[0], size, stride, pad), expected[0])
        np.testing.assert_array_equal(kernels.maxpool(x[0, 0], size, stride, pad), expected[0, 0])


def test_maxpool_stride_defaults_to_size_and_padding_is_minus_infinity():
    x = -np.arange(1.0, 37.0).reshape(1, 6, 6)  # all negative: zero padding would win
    np.testing.assert_array_equal(kernels.maxpool(x, 3), naive_maxpool(x[None], 3, 3, 3, 0)[0])
    np.testing.assert_array_equal(kernels.maxpool(x, 2, 2, 1), naive_maxpool(x[None], 2, 2, 2, 1)[0])
    assert np.all(kernels.maxpool(x, 2, 2, 1) < 0)


# ---------------------------------------------------------------- slice and flatten in-process


def test_tensor_slice_matches_naive_loop():
    rng = np.random.default_rng(5)
    for _ in range(150):
        n, c, h, w = (int(v) for v in rng.integers(1, 6, size=4))
        t = rng.normal(size=(n, c, h, w))
        pad = int(rng.integers(0, 3))
        x = int(rng.integers(-2, w + 2 * pad + 1))
        y = int(rng.integers(-2, h + 2 * pad + 1))
        z = int(rng.integers(-1, c + 1))
        sw, sh, sd = (int(v) for v in rng.integers(1, 5, size=3))
        expected = naive_slice(t, x, y, z, sw, sh, sd, pad)
        np.testing.assert_array_equal(ops.tensor_slice(t, x, y, z, sw, sh, sd, pad), expected)
        np.testing.assert_array_equal(ops.tensor_slice(t[0], x, y, z, sw, sh, sd, pad), expected[0])
    m = rng.normal(size=(4, 5))
    np.testing.assert_array_equal(ops.tensor_slice(m, 1, 2, 0, 3, 2, 1), m[2:4, 1:4])


def test_flatten_shapes():
    t = np.arange(24.0).reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(ops.flatten(t), t.reshape(2, 12))
    np.testing.assert_array_equal(ops.flatten(t[0]), t[0].reshape(1, 12))
    np.testing.assert_array_equal(ops.flatten(t[0, 0]), [[0.0, 1.0, 2.0, 3.0]])


# ---------------------------------------------------------------- through the executables


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
