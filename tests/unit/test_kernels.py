"""The convolution and pooling kernels (kerash.layers.kernels) and the tensor operations (kerash.ops) in
process, against naive loops: every output pixel computed one at a time."""

import numpy as np

from helpers import naive_conv, naive_maxpool, naive_slice
from kerash import ops
from kerash.layers import kernels


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
