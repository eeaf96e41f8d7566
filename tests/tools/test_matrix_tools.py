"""Matrix tools run as a user runs them: files, pipes and '-', checked against numpy."""

import io
import math

import numpy as np
import pytest

from conftest import parse, run, warm_and_cold

pytestmark = warm_and_cold


def save(path, array):
    """Write `array` as text (repr of each float) or .npy, chosen by the suffix."""
    if str(path).endswith(".npy"):
        np.save(path, array)
    else:
        path.write_text("".join(" ".join(repr(float(v)) for v in row) + "\n" for row in np.atleast_2d(array)))


def load_npy(data):
    return np.load(io.BytesIO(data), allow_pickle=False)


def close(got, expected):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------- binary operations


def test_matrix_mul_files_pipes_and_dash(tmp_path, rng):
    for m, k, n in [(1, 1, 1), (3, 4, 2), (7, 1, 5), (2, 9, 1)]:
        a, b = rng.normal(size=(m, k)), rng.normal(size=(k, n))
        save(tmp_path / "a.txt", a)
        save(tmp_path / "b.npy", b)
        close(parse(run(["matrix-mul", "a.txt", "b.npy"], cwd=tmp_path).stdout), a @ b)
    # A from standard input via '-', and B from a pipe
    close(parse(run(["matrix-mul", "-", "b.npy"], cwd=tmp_path, input=(tmp_path / "a.txt").read_bytes()).stdout), a @ b)
    close(parse(run("cat b.npy | matrix-mul a.txt -", cwd=tmp_path).stdout), a @ b)


def test_matrix_mul_vector_is_a_row(tmp_path):
    (tmp_path / "v.txt").write_text("1 2 3\n")
    (tmp_path / "m.txt").write_text("1 0\n0 1\n1 1\n")
    close(parse(run(["matrix-mul", "v.txt", "m.txt"], cwd=tmp_path).stdout), [[4.0, 5.0]])


@pytest.mark.parametrize(
    "tool, op",
    [("matrix-add", np.add), ("matrix-sub", np.subtract), ("matrix-hadamard", np.multiply)],
)
def test_elementwise_tools(tmp_path, rng, tool, op):
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    bias = rng.normal(size=(1, 3))
    save(tmp_path / "a.txt", a)
    save(tmp_path / "b.npy", b)
    save(tmp_path / "bias.txt", bias)
    close(parse(run([tool, "a.txt", "b.npy"], cwd=tmp_path).stdout), op(a, b))
    # a bias row is broadcast over the rows of A, here through a pipe on B's side
    close(parse(run(f"cat bias.txt | {tool} a.txt -", cwd=tmp_path).stdout), op(a, bias))
    close(parse(run([tool, "-", "a.txt"], cwd=tmp_path, input=(tmp_path / "b.npy").read_bytes()).stdout), op(b, a))


def test_kerash_front_end_matches_the_tools(tmp_path, rng):
    save(tmp_path / "a.txt", rng.normal(size=(3, 4)))
    save(tmp_path / "b.txt", rng.normal(size=(4, 2)))
    for args in (
        ["matrix-mul", "a.txt", "b.txt"],
        ["matrix-sum", "a.txt", "--axis", "0"],
        ["matrix-create", "3", "2", "--init", "he", "--seed", "5"],
        ["matrix-apply", "softmax", "a.txt"],
    ):
        direct = run(args, cwd=tmp_path)
        via = run(["kerash", *args], cwd=tmp_path)
        assert direct.stdout and via.stdout == direct.stdout, args


# ---------------------------------------------------------------- unary operations


def test_matrix_scale(tmp_path, rng):
    a = rng.normal(size=(3, 5))
    save(tmp_path / "a.npy", a)
    close(parse(run(["matrix-scale", "2.5", "a.npy"], cwd=tmp_path).stdout), 2.5 * a)
    close(parse(run("cat a.npy | matrix-scale 0.5", cwd=tmp_path).stdout), 0.5 * a)
    close(parse(run(["matrix-scale", "--", "-3", "-"], cwd=tmp_path, input=(tmp_path / "a.npy").read_bytes()).stdout), -3 * a)


def test_matrix_transpose(tmp_path, rng):
    close(parse(run("matrix-create 2 3 --fill 1 | matrix-transpose").stdout), np.ones((3, 2)))
    a = rng.normal(size=(4, 6))
    save(tmp_path / "a.txt", a)
    close(parse(run(["matrix-transpose", "a.txt"], cwd=tmp_path).stdout), a.T)
    close(parse(run(["matrix-transpose", "-"], input="1 2 3\n").stdout), [[1.0], [2.0], [3.0]])


@pytest.mark.parametrize("tool, fn", [("matrix-sum", np.sum), ("matrix-mean", np.mean)])
def test_reductions(tmp_path, rng, tool, fn):
    a = rng.normal(size=(5, 3))
    save(tmp_path / "a.txt", a)
    # no axis: a scalar, printed as a single value
    out = run([tool, "a.txt"], cwd=tmp_path).stdout.split()
    assert len(out) == 1
    assert math.isclose(float(out[0]), fn(a), rel_tol=1e-13, abs_tol=1e-13)
    scalar = load_npy(run([tool, "a.txt", "--format", "npy"], cwd=tmp_path).stdout)
    assert scalar.shape == ()
    # an axis is kept with size 1
    for axis, shape in [(0, (1, 3)), (1, (5, 1)), (-1, (5, 1))]:
        got = load_npy(run([tool, "-", "--axis", str(axis), "--format", "npy"], input=(tmp_path / "a.txt").read_bytes()).stdout)
        assert got.shape == shape
        close(got, fn(a, axis=axis, keepdims=True))


def test_reduction_of_nd_tensor(tmp_path, rng):
    t = rng.normal(size=(2, 3, 4))
    np.save(tmp_path / "t.npy", t)
    got = load_npy(run(["matrix-sum", "t.npy", "--axis", "1", "--format", "npy"], cwd=tmp_path).stdout)
    close(got, t.sum(axis=1, keepdims=True))


# ---------------------------------------------------------------- matrix-create


def test_create_fill_and_zeros():
    close(parse(run(["matrix-create", "2", "3", "--fill", "1.25"]).stdout), np.full((2, 3), 1.25))
    close(parse(run(["matrix-create", "3", "1"]).stdout), np.zeros((3, 1)))
    close(parse(run(["matrix-create", "1", "2", "--fill", "-7"]).stdout), [[-7.0, -7.0]])


def created(*args):
    return load_npy(run(["matrix-create", *args, "--format", "npy"]).stdout)


@pytest.mark.parametrize(
    "init, limit",
    [
        ("xavier", math.sqrt(6 / (60 + 500))),
        ("he", math.sqrt(6 / 60)),
        ("lecun", math.sqrt(3 / 60)),
    ],
)
def test_create_scaled_uniform_initialisers(init, limit):
    # fan_in = ROWS = 60, fan_out = COLS = 500: the bounds tell the fans apart
    w = created("60", "500", "--init", init, "--seed", "3")
    assert w.shape == (60, 500)
    assert np.all(np.abs(w) <= limit)
    assert w.max() > 0.99 * limit and w.min() < -0.99 * limit
    assert abs(w.mean()) < 0.01 * limit
    assert math.isclose(w.var(), limit**2 / 3, rel_tol=0.03)


def test_create_uniform_and_normal():
    w = created("200", "100", "--init", "uniform", "-p", "2", "-p", "5", "--seed", "1")
    assert w.min() >= 2 and w.max() < 5 and w.min() < 2.01 and w.max() > 4.99
    assert math.isclose(w.mean(), 3.5, abs_tol=0.03)
    w = created("200", "100", "--init", "normal", "-p", "mu=-1", "-p", "sigma=0.5", "--seed", "1")
    assert math.isclose(w.mean(), -1, abs_tol=0.02)
    assert math.isclose(w.std(), 0.5, rel_tol=0.02)
    assert np.mean(np.abs(w + 1) < 0.5) == pytest.approx(0.6827, abs=0.01)


def test_create_seeds_are_reproducible():
    args = ["matrix-create", "4", "3", "--init", "xavier"]
    first = run([*args, "--seed", "42"]).stdout
    assert run([*args, "--seed", "42"]).stdout == first
    assert run([*args, "--seed", "43"]).stdout != first
    npy = load_npy(run([*args, "--seed", "42", "--format", "npy"]).stdout)
    assert np.array_equal(parse(first).view(np.uint64), npy.view(np.uint64))


# ---------------------------------------------------------------- matrix-similar


def test_similar_exit_codes_and_silence(tmp_path, rng):
    a = rng.normal(size=(3, 4))
    save(tmp_path / "a.txt", a)
    np.save(tmp_path / "near.npy", a + 1e-7)
    np.save(tmp_path / "far.npy", a + 1e-3)
    save(tmp_path / "other_shape.txt", a[:, :3])
    cases = [
        (["1e-6", "a.txt", "near.npy"], 0),
        (["1e-8", "a.txt", "near.npy"], 1),
        (["1e-6", "a.txt", "far.npy"], 1),
        (["0", "a.txt", "a.txt"], 0),
        (["10", "a.txt", "other_shape.txt"], 1),
    ]
    for args, code in cases:
        proc = run(["matrix-similar", *args], cwd=tmp_path, check=False)
        assert (proc.returncode, proc.stdout, proc.stderr) == (code, b"", b""), args
    proc = run("matrix-transpose a.txt | matrix-transpose | matrix-similar 0 a.txt -", cwd=tmp_path, check=False)
    assert (proc.returncode, proc.stdout) == (0, b"")


# ---------------------------------------------------------------- matrix-apply


def test_apply_through_the_tool(tmp_path, rng):
    x = rng.normal(size=(3, 4)) * 3
    save(tmp_path / "x.txt", x)
    close(parse(run(["matrix-apply", "relu", "x.txt"], cwd=tmp_path).stdout), np.maximum(x, 0))
    sig = 1 / (1 + np.exp(-x))
    close(parse(run("cat x.txt | matrix-apply sigmoid -", cwd=tmp_path).stdout), sig)
    close(parse(run(["matrix-apply", "sigmoid", "x.txt", "--derivative"], cwd=tmp_path).stdout), sig * (1 - sig))


def test_apply_parameters_positional_and_named(tmp_path, rng):
    x = rng.normal(size=(2, 5))
    save(tmp_path / "x.txt", x)
    expected = np.where(x >= 0, x, 0.1 * x)
    close(parse(run(["matrix-apply", "leaky_relu", "x.txt", "-p", "0.1"], cwd=tmp_path).stdout), expected)
    close(parse(run(["matrix-apply", "leaky_relu", "x.txt", "-p", "alpha=0.1"], cwd=tmp_path).stdout), expected)
    close(parse(run(["matrix-apply", "swish", "x.txt", "--param", "beta=2"], cwd=tmp_path).stdout), x / (1 + np.exp(-2 * x)))
    # srelu with its four parameters, positionally
    tl, al, tr, ar = -0.5, 0.2, 0.5, 0.3
    expected = np.where(x <= tl, tl + al * (x - tl), np.where(x >= tr, tr + ar * (x - tr), x))
    args = ["matrix-apply", "srelu", "x.txt", "-p", "-0.5", "-p", "0.2", "-p", "0.5", "-p", "0.3"]
    close(parse(run(args, cwd=tmp_path).stdout), expected)


def test_apply_softmax_and_its_derivative(tmp_path, rng):
    x = rng.normal(size=(4, 5)) * 4
    save(tmp_path / "x.txt", x)
    e = np.exp(x)
    s = e / e.sum(axis=1, keepdims=True)
    close(parse(run(["matrix-apply", "softmax", "x.txt"], cwd=tmp_path).stdout), s)
    close(parse(run(["matrix-apply", "softmax", "x.txt", "--derivative"], cwd=tmp_path).stdout), s * (1 - s))


def test_apply_list_names_every_function():
    out = run(["matrix-apply", "--list"]).stdout.decode()
    names = {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
    expected = {
        "identity", "binarystep", "sigmoid", "tanh", "arctan", "arcsinh", "elliotsig", "isru", "isrlu",
        "relu", "leaky_relu", "prelu", "elu", "selu", "srelu", "softplus", "bentidentity", "sinusoid",
        "sinc", "gaussian", "swish", "gelu", "softmax", "sqrt", "reciprocal", "abs", "log", "exp", "square",
    }
    assert names == expected
    assert "linear" in out and "relu_parametric" in out
