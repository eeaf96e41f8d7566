"""The function registry: every activation against an independent formula and finite differences."""

import math

import numpy as np
import pytest

from conftest import assert_one_line_error, parse, run
from kerash import functions
from kerash.errors import UsageError

SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717


def _sigmoid(x):
    return 1 / (1 + math.exp(-x)) if x > -700 else 0.0


def _srelu(x, tl, al, tr, ar):
    if x <= tl:
        return tl + al * (x - tl)
    if x >= tr:
        return tr + ar * (x - tr)
    return x


# name -> (scalar formula f(x, *params), non-default parameters to try, kinks(*params))
REFERENCE = {
    "identity": (lambda x: x, None, lambda: []),
    "binarystep": (lambda x: 1.0 if x >= 0 else 0.0, None, lambda: [0.0]),
    "sigmoid": (_sigmoid, None, lambda: []),
    "tanh": (math.tanh, None, lambda: []),
    "arctan": (math.atan, None, lambda: []),
    "arcsinh": (math.asinh, None, lambda: []),
    "elliotsig": (lambda x: x / (1 + abs(x)), None, lambda: [0.0]),
    "isru": (lambda x, a: x / math.sqrt(1 + a * x * x), (0.3,), lambda a: []),
    "isrlu": (lambda x, a: x if x >= 0 else x / math.sqrt(1 + a * x * x), (2.5,), lambda a: [0.0]),
    "relu": (lambda x: max(0.0, x), None, lambda: [0.0]),
    "leaky_relu": (lambda x, a: x if x >= 0 else a * x, (0.1,), lambda a: [0.0]),
    "prelu": (lambda x, a: x if x >= 0 else a * x, (0.6,), lambda a: [0.0]),
    "elu": (lambda x, a: x if x >= 0 else a * (math.exp(x) - 1), (0.4,), lambda a: [0.0]),
    "selu": (lambda x: SELU_LAMBDA * (x if x >= 0 else SELU_ALPHA * (math.exp(x) - 1)), None, lambda: [0.0]),
    "srelu": (_srelu, (-0.5, 0.2, 0.8, 1.5), lambda tl, al, tr, ar: [tl, tr]),
    "softplus": (lambda x: math.log1p(math.exp(x)), None, lambda: []),
    "bentidentity": (lambda x: (math.sqrt(x * x + 1) - 1) / 2 + x, None, lambda: []),
    "sinusoid": (math.sin, None, lambda: []),
    "sinc": (lambda x: math.sin(x) / x if x != 0 else 1.0, None, lambda: []),
    "gaussian": (lambda x: math.exp(-x * x), None, lambda: []),
    "swish": (lambda x, b: x * _sigmoid(b * x), (1.7,), lambda b: []),
    "gelu": (lambda x: 0.5 * x * (1 + math.erf(x / math.sqrt(2))), None, lambda: []),
    "softmax": (None, None, lambda: []),  # row-wise: checked on its own below
    "sqrt": (math.sqrt, None, lambda: []),
    "reciprocal": (lambda x: 1 / x, None, lambda: []),
    "abs": (abs, None, lambda: [0.0]),
    "log": (math.log, None, lambda: []),
    "exp": (math.exp, None, lambda: []),
    "square": (lambda x: x * x, None, lambda: []),
}
# Functions defined on part of the real line: points are moved into it.
DOMAINS = {"x > 0": lambda x: np.abs(x) + 1e-3, "x ≠ 0": lambda x: np.where(np.abs(x) < 1e-3, 1.0, x)}


def in_domain(name, x):
    domain = functions.get_activation(name).domain
    return x if domain is None else DOMAINS[domain](x)
DEFAULTS = {
    "isru": (1.0,), "isrlu": (1.0,), "leaky_relu": (0.01,), "prelu": (0.25,), "elu": (1.0,),
    "srelu": (-1.0, 0.01, 1.0, 0.01), "swish": (1.0,),
}
ELEMENTWISE = [n for n in REFERENCE if n != "softmax"]


def parameter_sets(name):
    """The default parameters and, for parameterised functions, one other set."""
    sets = [DEFAULTS.get(name, ())]
    if REFERENCE[name][1] is not None:
        sets.append(REFERENCE[name][1])
    return sets


def points(rng, kinks, n=3000, spread=6.0):
    """Random points away (≥ 1e-3) from the kinks, plus a few larger ones."""
    x = np.concatenate([rng.uniform(-spread, spread, n), rng.uniform(-40, 40, 200)])
    for k in kinks:
        x = x[np.abs(x - k) > 1e-3]
    return x


def reference(name, x, params):
    f = REFERENCE[name][0]
    return np.array([f(float(v), *params) for v in x])


def finite_difference(fn, x):
    h = 1e-6 * np.maximum(1.0, np.abs(x))
    return (fn(x + h) - fn(x - h)) / (2 * h)


def test_registry_is_what_matrix_apply_lists():
    out = run(["matrix-apply", "--list"]).stdout.decode()
    listed = {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
    assert listed == set(REFERENCE) == set(functions.ACTIVATIONS)
    assert functions.get_activation("linear") is functions.get_activation("identity")
    assert functions.get_activation("relu_parametric") is functions.get_activation("prelu")
    for name in ("alpha=0.01", "alpha=0.25", "beta=1"):
        assert name in out


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_values_match_independent_formula(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    act = functions.get_activation(name)
    for params in parameter_sets(name):
        x = points(rng, [], n=500)
        x = in_domain(name, np.concatenate([x, [0.0, -0.0, 1.0, -1.0]]))
        got = act.bind([str(p) for p in params]).forward(x.copy())
        np.testing.assert_allclose(got, reference(name, x, params), rtol=1e-12, atol=1e-14, err_msg=f"{name}{params}")


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_derivative_matches_finite_differences(name):
    rng = np.random.default_rng(1000 + sum(map(ord, name)))
    for params in parameter_sets(name):
        bound = functions.get_activation(name).bind(list(params))
        x = in_domain(name, points(rng, REFERENCE[name][2](*params)))
        d = bound.derivative(x, bound.forward(x))
        fd = finite_difference(bound.forward, x)
        np.testing.assert_allclose(d, fd, rtol=1e-6, atol=1e-7, err_msg=f"{name}{params}")
        # the backward product of an element-wise function is derivative × upstream gradient
        g = rng.normal(size=x.shape)
        np.testing.assert_allclose(bound.backward(x, bound.forward(x), g), d * g, rtol=1e-14, atol=0)


def sinc_derivative_series(x):
    """d/dx sin(x)/x = Σ_{k≥1} (−1)^k 2k x^(2k−1) / (2k+1)!, summed exactly enough for |x| < 1."""
    return math.fsum((-1) ** k * 2 * k * x ** (2 * k - 1) / math.factorial(2 * k + 1) for k in range(1, 15))


def test_sinc_near_zero():
    act = functions.get_activation("sinc")
    x = np.array([0.0, -0.0, 1e-12, -1e-8, 1e-5, -1e-3, 0.00999999, 0.01, -0.01000001, 0.05, -0.3, 0.9])
    y = act.f(x)
    assert y[0] == 1.0 and y[1] == 1.0
    np.testing.assert_allclose(y, [1.0 if v == 0 else math.sin(v) / v for v in x], rtol=1e-15)
    d = act.d(x, y)
    assert d[0] == 0.0
    np.testing.assert_allclose(d, [sinc_derivative_series(v) for v in x], rtol=1e-12, atol=1e-300)


# ---------------------------------------------------------------- softmax


def direct_softmax(x):
    out = np.empty_like(x)
    for i, row in enumerate(x):
        e = [math.exp(v - max(row)) for v in row]
        out[i] = [v / math.fsum(e) for v in e]
    return out


def test_softmax_values_and_rows_sum_to_one():
    rng = np.random.default_rng(21)
    act = functions.get_activation("softmax")
    for rows, cols in [(1, 1), (1, 5), (7, 3), (20, 10)]:
        x = rng.normal(size=(rows, cols)) * 5
        y = act.f(x.copy())
        np.testing.assert_allclose(y, direct_softmax(x), rtol=1e-13, atol=1e-300)
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-14)
    # large inputs do not overflow
    y = act.f(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(y, [[0.5, 0.5, 0.0]])


def softmax_jacobian_fd(x, h=1e-6):
    """Finite-difference Jacobian of row-wise softmax for one row: J[i, j] = ∂s_i/∂x_j."""
    f = functions.get_activation("softmax").f
    jac = np.empty((x.size, x.size))
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        jac[:, j] = (f((x + e)[None])[0] - f((x - e)[None])[0]) / (2 * h)
    return jac


def test_softmax_derivative_is_jacobian_diagonal():
    rng = np.random.default_rng(22)
    act = functions.get_activation("softmax")
    x = rng.normal(size=(30, 6)) * 2
    y = act.f(x.copy())
    d = act.d(x, y)
    np.testing.assert_allclose(d, y * (1 - y), rtol=1e-14)
    for row, drow in zip(x, d):
        np.testing.assert_allclose(drow, np.diag(softmax_jacobian_fd(row)), rtol=1e-6, atol=1e-9)


def test_softmax_vjp_matches_finite_difference_jacobian():
    rng = np.random.default_rng(23)
    act = functions.get_activation("softmax")
    for cols in (1, 2, 5, 9):
        x = rng.normal(size=(8, cols)) * 3
        g = rng.normal(size=x.shape)
        y = act.f(x.copy())
        got = act.vjp(x, y, g)
        for row in range(x.shape[0]):
            jac = softmax_jacobian_fd(x[row])
            # vector-Jacobian product gᵀJ
            np.testing.assert_allclose(got[row], g[row] @ jac, rtol=1e-6, atol=1e-8)
            # and, from the other side, <vjp(g), v> = <g, J v> with J v by finite differences
            v = rng.normal(size=cols)
            h = 1e-6
            jv = (act.f((x[row] + h * v)[None])[0] - act.f((x[row] - h * v)[None])[0]) / (2 * h)
            assert math.isclose(got[row] @ v, g[row] @ jv, rel_tol=1e-6, abs_tol=1e-8)


# ---------------------------------------------------------------- robustness and dtypes


@pytest.mark.parametrize("name", list(REFERENCE))
def test_extreme_inputs_stay_finite_and_float32_stays_float32(name):
    act = functions.get_activation(name).bind()
    x = in_domain(name, np.array([[-700.0, -50.0, -1.5, 0.0, 1.5, 50.0, 700.0]]))
    y = act.forward(x.copy())
    assert np.all(np.isfinite(y)), y
    assert np.all(np.isfinite(act.derivative(x, y))), act.derivative(x, y)
    x32 = x.astype(np.float32) / 100
    y32 = act.forward(x32.copy())
    assert y32.dtype == np.float32
    assert act.derivative(x32, y32).dtype == np.float32
    assert act.backward(x32, y32, np.ones_like(x32)).dtype == np.float32


# ---------------------------------------------------------------- parameters and names


def test_parameters_positional_and_named():
    leaky = functions.get_activation("leaky_relu")
    assert leaky.bind(["0.1"]).values == (0.1,)
    assert leaky.bind(["alpha=0.1"]).values == (0.1,)
    assert leaky.bind().values == (0.01,)
    srelu = functions.get_activation("srelu")
    assert srelu.bind(["-2", "ar=0.5"]).values == (-2.0, 0.01, 1.0, 0.5)
    for bad in (["beta=1"], ["0.1", "0.2"], ["x"]):
        with pytest.raises(UsageError):
            leaky.bind(bad)


def test_every_function_through_matrix_apply(tmp_path):
    rng = np.random.default_rng(31)
    x = rng.uniform(-4, 4, size=(3, 5))
    inputs = {name: in_domain(name, x) for name in REFERENCE}
    for name, values in inputs.items():
        (tmp_path / f"{name}.txt").write_text("".join(" ".join(repr(float(v)) for v in row) + "\n" for row in values))
    script = "set -e\n" + "".join(f"echo {name}; matrix-apply {name} {name}.txt\n" for name in REFERENCE)
    out = run(script, cwd=tmp_path).stdout.decode()
    blocks = {}
    for line in out.splitlines():
        if line in REFERENCE:
            name = line
            blocks[name] = []
        else:
            blocks[name].append(line)
    assert set(blocks) == set(REFERENCE)
    for name, lines in blocks.items():
        got = parse("\n".join(lines))
        xi = inputs[name]
        expected = direct_softmax(xi) if name == "softmax" else reference(name, xi.ravel(), DEFAULTS.get(name, ())).reshape(x.shape)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14, err_msg=name)


def test_aliases_and_params_through_matrix_apply():
    x = np.array([[-2.0, -0.5, 0.0, 3.0]])
    text = "-2 -0.5 0 3\n"
    expected = np.where(x >= 0, x, 0.1 * x)
    for args in (["prelu", "-p", "0.1"], ["relu_parametric", "-p", "alpha=0.1"], ["leaky_relu", "--param", "alpha=0.1"]):
        np.testing.assert_allclose(parse(run(["matrix-apply", *args], input=text).stdout), expected)
    np.testing.assert_array_equal(parse(run(["matrix-apply", "linear"], input=text).stdout), x)
    elu = np.where(x >= 0, x, 0.5 * np.expm1(x))
    np.testing.assert_allclose(parse(run(["matrix-apply", "elu", "-p", "0.5"], input=text).stdout), elu, rtol=1e-15)


def test_unknown_function_suggests_close_names():
    proc = run(["matrix-apply", "sigmoidd"], input="1 2\n", check=False)
    assert_one_line_error(proc, 2, "matrix-apply: error:", "sigmoidd", "did you mean", "'sigmoid'")
    proc = run(["matrix-apply", "leaky_relu", "-p", "beta=1"], input="1 2\n", check=False)
    assert_one_line_error(proc, 2, "alpha")
    with pytest.raises(UsageError, match="did you mean 'gelu'"):
        functions.get_activation("gelu2")
