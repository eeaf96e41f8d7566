"""Layers, activations and losses in float64, in process: forward passes against naive
loops, backward passes against central finite differences, loss values against
independent formulas."""

import math

import numpy as np
import pytest
from helpers import naive_conv, naive_maxpool

from kerash import functions, model
from kerash.network import Objective

H = 1e-6  # finite-difference step (float64)

# Where the derivative of an activation jumps: finite differences must stay away from these.
KINKS = {
    "binarystep": (0.0,),
    "relu": (0.0,),
    "leaky_relu": (0.0,),
    "prelu": (0.0,),
    "elu": (0.0,),
    "selu": (0.0,),
    "isrlu": (0.0,),
    "abs": (0.0,),
}
MARGIN = 1e-4  # a step of H moves a pre-activation by ~1e-5 at most here


# ---------------------------------------------------------------- helpers


def make_net(text, seed=0, w_scale=1.0, b_scale=0.5):
    """(spec, network, objective) in float64 with seeded normal weights of the given scales."""
    spec = model.parse_model(text, "test.model")
    net = model.build_network(spec, np.float64)
    rng = np.random.default_rng(seed)
    params = {}
    for key, shapes in model.param_shapes(spec).items():
        fan_in = int(np.prod(shapes["W"])) // shapes["W"][0] if len(shapes["W"]) == 4 else shapes["W"][0]
        params[key] = {
            "W": rng.normal(0, w_scale / math.sqrt(fan_in), size=shapes["W"]),
            "b": rng.normal(0, b_scale, size=shapes["b"]),
        }
    net.set_params(params)
    return spec, net, Objective(spec.loss, net)


def total_loss(net, objective, x, y):
    return float(net.losses(objective, x, y)[0].sum())


def pre_activations(net, x):
    """{node index: z} of every node with an activation, from one forward pass."""
    found = {}
    for i, (_, ctx) in enumerate(net.trace(x)):
        layer = net.layers[i]
        if layer is not None and layer.activation is not None:
            found[i] = layer.pre_activation(ctx)[0]
    return found


def kink_points(act):
    if act.name == "srelu":
        tl, _, tr, _ = act.values
        return (tl, tr)
    return KINKS.get(act.name, ())


def assert_away_from_kinks(net, x):
    """Every pre-activation is at least MARGIN away from a point where its derivative jumps."""
    for i, z in pre_activations(net, x).items():
        layer = net.layers[i]
        for k in kink_points(layer.activation):
            gap = np.min(np.abs(z - k))
            assert gap > MARGIN, (net.nodes[i].key, layer.activation.name, k, gap)


def numeric_grad(f, array):
    """Central differences of f() with respect to every entry of `array` (perturbed in place)."""
    grad = np.zeros_like(array)
    for idx in np.ndindex(array.shape):
        old = array[idx]
        array[idx] = old + H
        up = f()
        array[idx] = old - H
        down = f()
        array[idx] = old
        grad[idx] = (up - down) / (2 * H)
    return grad


def check_param_grads(net, objective, x, y, rtol=1e-5, atol=1e-7):
    losses, _ = net.gradient(objective, x, y, 1.0)
    analytic = {(key, name): g.copy() for key, name, g in net.grad_items()}
    assert analytic, "the network has no parameters"
    assert np.isclose(losses.sum(), total_loss(net, objective, x, y), rtol=1e-12, atol=1e-12)
    for key, name, p in net.param_items():
        numeric = numeric_grad(lambda: total_loss(net, objective, x, y), p)
        np.testing.assert_allclose(analytic[key, name], numeric, rtol=rtol, atol=atol, err_msg=f"{key}/{name}")
    return analytic


def input_gradient(net, objective, x, y):
    """dΣloss/dx through every layer's backward(dY) → dX."""
    return net.input_gradient(objective, x, y)


def check_input_grad(net, objective, x, y, rtol=1e-5, atol=1e-7):
    analytic = input_gradient(net, objective, x, y)
    assert analytic.shape == x.shape
    numeric = numeric_grad(lambda: total_loss(net, objective, x, y), x)
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol)


def sample_inputs(spec, n, seed, scale=1.0):
    d, h, w = spec.input_shape
    return np.random.default_rng(seed).normal(0, scale, size=(n, d, h, w))


def regression_targets(spec, n, seed):
    return np.random.default_rng(seed + 1000).normal(0, 1, size=(n, spec.output_width))


# ---------------------------------------------------------------- naive forward passes






# (input W H D, convolution FILTERS STRIDE PAD KW KH)
CONV_CASES = [
    ((5, 5, 2), (3, 1, 0, 3, 3)),
    ((7, 6, 2), (2, 2, 1, 3, 3)),
    ((6, 5, 1), (3, 1, 2, 2, 4)),
    ((9, 8, 3), (2, 3, 0, 2, 2)),
    ((5, 4, 2), (4, 1, 1, 1, 1)),
    ((6, 7, 1), (2, 2, 0, 4, 3)),
]


@pytest.mark.parametrize("dims,conv", CONV_CASES)
def test_convolution_forward_is_cross_correlation_with_zero_padding(dims, conv):
    w, h, d = dims
    f, s, p, kw, kh = conv
    spec, net, _ = make_net(f"{w} {h} {d}\ninput\nconvolution identity {f} {s} {p} {kw} {kh}\n", seed=3)
    x = sample_inputs(spec, 3, 4)
    params = net.get_params()["layer_01"]
    assert params["W"].shape == (f, d, kh, kw)
    out = net.forward(x)
    expected = naive_conv(x, params["W"], s, p, params["b"])
    assert out.shape == expected.shape == (3, *spec.shapes[0])
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pool", [(2, 0, 2, 2), (1, 1, 3, 3), (2, 1, 2, 3), (3, 0, 3, 2), (1, 0, 1, 1)])
@pytest.mark.parametrize("image", ["7 5", "16 11"])
def test_max_pooling_forward_against_naive_loop(pool, image):
    s, p, kw, kh = pool
    spec, net, _ = make_net(f"{image} 2\ninput\nmax_pooling - {s} {p} {kw} {kh}\nflatten -\ndense 2 identity\n")
    x = sample_inputs(spec, 3, 5)
    expected = naive_maxpool(x, kh, kw, s, p)
    out = net.trace(x)[1][0]
    assert out.shape == expected.shape == (3, *spec.shapes[0])
    np.testing.assert_array_equal(out, expected)


def test_flatten_keeps_channel_height_width_order_and_dense_is_x_at_w():
    spec, net, _ = make_net("3 2 2\ninput\nflatten -\ndense 4 tanh\n", seed=1)
    x = sample_inputs(spec, 5, 2)
    flat = net.trace(x)[1][0]
    np.testing.assert_array_equal(flat, np.stack([s.ravel(order="C") for s in x]))
    p = net.get_params()["layer_02"]
    np.testing.assert_allclose(net.forward(x), np.tanh(flat @ p["W"] + p["b"]), rtol=1e-14, atol=1e-15)


def test_softmax_in_a_convolution_runs_across_filters():
    spec, net, _ = make_net("4 4 2\ninput\nconvolution softmax 3 1 1 3 3\n", seed=2)
    x = sample_inputs(spec, 2, 3)
    p = net.get_params()["layer_01"]
    z = naive_conv(x, p["W"], 1, 1, p["b"])
    e = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(net.forward(x), e / e.sum(axis=1, keepdims=True), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- gradients: layers


@pytest.mark.parametrize("dims,conv", CONV_CASES)
@pytest.mark.parametrize("act", ["tanh", "relu", "softmax"])
def test_convolution_gradients(dims, conv, act):
    w, h, d = dims
    f, s, p, kw, kh = conv
    text = f"{w} {h} {d}\ninput\nconvolution {act} {f} {s} {p} {kw} {kh}\nflatten -\ndense 3 identity\n"
    spec, net, objective = make_net(text, seed=11)
    x = sample_inputs(spec, 3, 12)
    y = regression_targets(spec, 3, 13)
    assert_away_from_kinks(net, x)
    check_param_grads(net, objective, x, y)
    check_input_grad(net, objective, x, y)


@pytest.mark.parametrize("pool", [(2, 0, 2, 2), (1, 1, 3, 3), (2, 1, 2, 3), (3, 0, 3, 2)])
@pytest.mark.parametrize("image", ["7 6", "16 10"])  # outputs under 5 pixels wide are gathered by index, wider by offsets
def test_max_pooling_gradients(pool, image):
    s, p, kw, kh = pool
    text = f"{image} 2\ninput\nconvolution tanh 3 1 1 3 3\nmax_pooling - {s} {p} {kw} {kh}\nflatten -\ndense 2 sigmoid\n"
    spec, net, objective = make_net(text, seed=21)
    x = sample_inputs(spec, 3, 22)
    y = regression_targets(spec, 3, 23)
    check_param_grads(net, objective, x, y)
    check_input_grad(net, objective, x, y)


def test_gradients_when_the_first_layers_have_no_parameters():
    # max_pooling and flatten before the first trainable layer: no dX is needed below it.
    text = "6 6 2\ninput\nmax_pooling - 2 0 2 2\nconvolution tanh 2 1 1 3 3\nmax_pooling - 1 0 2 2\nflatten -\ndense 3 softmax\n"
    spec, net, objective = make_net(text, seed=31)
    x = sample_inputs(spec, 4, 32)
    y = np.eye(3)[[0, 2, 1, 2]]
    check_param_grads(net, objective, x, y)
    check_input_grad(net, objective, x, y)


def test_gradient_scale_multiplies_every_gradient():
    spec, net, objective = make_net("3 1 1\ninput\ndense 4 tanh\ndense 2 sigmoid\n", seed=41)
    x, y = sample_inputs(spec, 6, 42), regression_targets(spec, 6, 43)
    net.gradient(objective, x, y, 1.0)
    full = [g.copy() for _, _, g in net.grad_items()]
    net.gradient(objective, x, y, 0.25)
    for g, f in zip([g for _, _, g in net.grad_items()], full):
        np.testing.assert_allclose(g, 0.25 * f, rtol=1e-14, atol=1e-17)


def test_gradients_of_a_deeper_cnn_with_every_layer_type():
    text = (
        "8 7 2\ninput\nconvolution elu 3 1 1 3 3\nmax_pooling - 2 0 2 2\n"
        "convolution sigmoid 2 1 0 2 2\nflatten -\ndense 5 tanh\ndense 3 softmax\n"
    )
    spec, net, objective = make_net(text, seed=51)
    x = sample_inputs(spec, 3, 52)
    y = np.eye(3)[[2, 0, 1]]
    assert_away_from_kinks(net, x)
    check_param_grads(net, objective, x, y)
    check_input_grad(net, objective, x, y)


# ---------------------------------------------------------------- gradients: activations


ALL_ACTIVATIONS = sorted(name for name, act in functions.ACTIVATIONS.items() if act.domain is None)
PARAMETRISED = ["elu 0.5", "leaky_relu 0.2", "prelu 0.1", "isru 0.5", "isrlu 2", "swish 2", "srelu -0.5 0.1 0.5 0.2"]


def test_the_activation_list_is_complete():
    # A new activation must be added to these checks (this list is read from the registry).
    assert {"identity", "binarystep", "sigmoid", "relu", "softmax", "srelu", "gelu"} <= set(ALL_ACTIVATIONS)


def _activation_case(act, position, seed):
    if position == "hidden":
        text = f"3 1 1\ninput\ndense 6 {act}\ndense 2 identity\n"
    else:
        text = f"3 1 1\ninput\ndense 4 tanh\ndense 3 {act}\nloss mse\n"
    # Weights large enough that pre-activations spread over both sides of 0 and of ±1.
    spec, net, objective = make_net(text, seed=seed, w_scale=2.0, b_scale=0.7)
    x = sample_inputs(spec, 5, seed + 1)
    y = regression_targets(spec, 5, seed + 2)
    return spec, net, objective, x, y


@pytest.mark.parametrize("position", ["hidden", "output"])
@pytest.mark.parametrize("act", ALL_ACTIVATIONS + PARAMETRISED)
def test_activation_gradients(act, position):
    seed = 100
    spec, net, objective, x, y = _activation_case(act, position, seed)
    assert_away_from_kinks(net, x)
    index = 1 if position == "hidden" else len(net.nodes) - 1
    layer = net.nodes[index]
    act_fn = layer.layer.activation
    if kink_points(act_fn):
        # both sides of every kink are exercised
        z = pre_activations(net, x)[index]
        for k in kink_points(act_fn):
            assert (z < k).any() and (z > k).any(), (act, k)
    grads = check_param_grads(net, objective, x, y)
    check_input_grad(net, objective, x, y)
    if act == "binarystep":
        # its derivative is 0: nothing flows back through it, yet the checks above were not vacuous
        assert np.all(grads[layer.key, "W"] == 0) and np.all(grads[layer.key, "b"] == 0)
        assert np.all(input_gradient(net, objective, x, y) == 0)
        other = net.nodes[2] if position == "hidden" else None
        if other is not None:
            assert np.any(grads[other.key, "W"] != 0)
    else:
        assert np.any(np.abs(grads[layer.key, "W"]) > 1e-6), "gradient vanished: the check would be vacuous"


@pytest.mark.parametrize("act", ALL_ACTIVATIONS)
def test_activation_values_match_the_output_of_a_dense_layer(act):
    # The layer applies the registry's function to X @ W + b (softmax row-wise).
    spec, net, _, x, _ = _activation_case(act, "output", 7)
    out, ctx = net.trace(x)[-1]
    z, _ = net.layers[-1].pre_activation(ctx)
    below = net.trace(x)[-2][0]
    np.testing.assert_allclose(z, below @ net.get_params()["layer_02"]["W"] + net.get_params()["layer_02"]["b"], rtol=1e-13)
    np.testing.assert_allclose(out, functions.get_activation(act).bind().forward(z.copy()), rtol=1e-14, atol=0)


# ---------------------------------------------------------------- losses: values


def signed(y):
    return np.where(y == 0, -1.0, y)


def softplus(z):
    return np.logaddexp(0.0, z)


def logsumexp(z):
    m = z.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]


# per-sample loss formulas written independently of kerash: yhat, y are (N, K)
FORMULAS = {
    "mse": lambda p, y: ((p - y) ** 2).sum(axis=1) / y.shape[1],
    "mae": lambda p, y: np.abs(p - y).sum(axis=1) / y.shape[1],
    "mape": lambda p, y: 100 * np.mean(np.abs((y - p) / y), axis=1),
    "huber": lambda p, y: np.mean([[0.5 * e * e if abs(e) <= 1 else abs(e) - 0.5 for e in row] for row in p - y], axis=1),
    "huber_modified": lambda p, y: np.mean(
        [[(max(0.0, 1 - z)) ** 2 if z >= -1 else -4 * z for z in row] for row in signed(y) * p], axis=1
    ),
    "binary_cross_entropy": lambda p, y: -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p), axis=1),
    "cross_entropy": lambda p, y: -np.sum(y * np.log(p), axis=1),
    # outside a fused tanh output, McClelland's error reads ŷ and y as probabilities (the sigmoid case)
    "mcclelland": lambda p, y: -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p), axis=1),
    "hinge": lambda p, y: np.mean(np.maximum(0, 1 - signed(y) * p), axis=1),
}


def loss_case(name, rng, n=7, k=3):
    if name in ("binary_cross_entropy", "cross_entropy", "mcclelland"):
        p = rng.uniform(0.05, 0.95, size=(n, k))
        y = np.eye(k)[rng.integers(0, k, n)] if name == "cross_entropy" else rng.integers(0, 2, size=(n, k)).astype(float)
    elif name in ("hinge", "huber_modified"):
        p = rng.normal(0, 2, size=(n, k))
        y = rng.choice([-1.0, 0.0, 1.0], size=(n, k))
    else:
        p = rng.normal(0, 2, size=(n, k))
        y = rng.normal(0, 2, size=(n, k))
    return p, y


def test_every_loss_has_a_formula_here():
    assert set(FORMULAS) == set(functions.LOSSES)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_loss_values_per_sample(name, rng):
    p, y = loss_case(name, rng)
    got = functions.get_loss(name).bind().value(p, y)
    assert got.shape == (p.shape[0],)
    np.testing.assert_allclose(got, FORMULAS[name](p, y), rtol=1e-12, atol=1e-14)


def test_huber_delta_parameter(rng):
    p, y = rng.normal(0, 3, (6, 4)), rng.normal(0, 3, (6, 4))
    e = np.abs(p - y)
    expected = np.mean(np.where(e <= 2.5, 0.5 * e**2, 2.5 * (e - 1.25)), axis=1)
    np.testing.assert_allclose(functions.get_loss("huber").bind(["2.5"]).value(p, y), expected, rtol=1e-13)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_batch_loss_is_the_mean_of_per_sample_losses(name, rng):
    out_act = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "mcclelland": "sigmoid"}.get(name, "identity")
    spec, net, objective = make_net(f"4 1 1\ninput\ndense 5 tanh\ndense 3 {out_act}\nloss {name}\n", seed=8)
    x = sample_inputs(spec, 9, 9)
    _, y = loss_case(name, rng, n=9)
    if name == "mape":
        y = rng.uniform(0.5, 2, size=y.shape) * rng.choice([-1, 1], size=y.shape)
    loss_sum, _, _ = net.evaluate(objective, x, y, batch_size=4)
    per_sample = FORMULAS[name](net.forward(x), y)
    np.testing.assert_allclose(loss_sum / len(x), per_sample.mean(), rtol=1e-11)


def test_fused_cross_entropy_equals_log_softmax_formula(rng):
    spec, net, objective = make_net("5 1 1\ninput\ndense 4 relu\ndense 6 softmax\n", seed=5)
    assert spec.loss.name == "cross_entropy" and objective.fused
    x = sample_inputs(spec, 8, 6)
    y = np.eye(6)[rng.integers(0, 6, 8)]
    z, _ = net.layers[-1].pre_activation(net.trace(x)[-1][1])
    expected = -np.sum(y * (z - logsumexp(z)[:, None]), axis=1)
    np.testing.assert_allclose(net.losses(objective, x, y)[0], expected, rtol=1e-12)
    # soft targets whose rows do not sum to 1: −Σ y log softmax(z) still holds
    soft = rng.uniform(0, 1, size=(8, 6))
    np.testing.assert_allclose(net.losses(objective, x, soft)[0], -np.sum(soft * (z - logsumexp(z)[:, None]), axis=1), rtol=1e-12)


def test_fused_cross_entropy_with_huge_logits():
    # z = (1000, 0, −1000): exp(1000) overflows a naive computation; −log softmax is exact here.
    spec, net, objective = make_net("1 1 1\ninput\ndense 3 softmax\n")
    net.set_params({"layer_01": {"W": np.array([[1000.0, 0.0, -1000.0]]), "b": np.zeros(3)}})
    x = np.ones((3, 1, 1, 1))
    y = np.eye(3)
    with np.errstate(all="ignore"):
        losses, _ = net.losses(objective, x, y)
        net.gradient(objective, x, y, 1.0)
    np.testing.assert_allclose(losses, [0.0, 1000.0, 2000.0], rtol=1e-15, atol=1e-300)
    gw = net.grads[1]["W"]
    assert np.all(np.isfinite(gw))
    # dL/dz = softmax(z) − y = (1,0,0) − y summed over the three samples, times x = 1
    np.testing.assert_allclose(gw, [[2.0, -1.0, -1.0]], atol=1e-12)


def test_fused_binary_cross_entropy_with_large_logits():
    spec, net, objective = make_net("1 1 1\ninput\ndense 4 sigmoid\nloss binary_cross_entropy\n")
    assert objective.fused
    z = np.array([[-1000.0, -40.0, 40.0, 1000.0]])
    net.set_params({"layer_01": {"W": z.copy(), "b": np.zeros(4)}})
    x = np.ones((2, 1, 1, 1))
    y = np.array([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]])
    with np.errstate(all="ignore"):
        losses, _ = net.losses(objective, x, y)
    expected = np.mean(softplus(z) - y * z, axis=1)
    np.testing.assert_allclose(losses, expected, rtol=1e-14)
    # the confidently wrong units cost |z| each, the right ones nothing: (40 + 40) / 4 and (1000 + 1000) / 4
    assert losses[0] == pytest.approx(20.0, rel=1e-12)
    assert losses[1] == pytest.approx(500.0, rel=1e-12)


# ---------------------------------------------------------------- gradients: losses


LOSS_CASES = [
    # (loss line, output activation, target kind)
    ("mse", "identity", "real"),
    ("mae", "identity", "real"),
    ("mape", "identity", "away"),
    ("huber", "identity", "real"),
    ("huber 0.5", "tanh", "real"),
    ("huber_modified", "identity", "signed"),
    ("binary_cross_entropy", "sigmoid", "binary"),  # fused
    ("binary_cross_entropy", "softmax", "binary"),  # unfused
    ("cross_entropy", "softmax", "onehot"),  # fused
    ("cross_entropy", "softmax", "soft"),  # fused, rows not summing to 1
    ("cross_entropy", "sigmoid", "onehot"),  # unfused
    ("hinge", "identity", "signed"),
]


def _targets(kind, out, rng):
    n, k = out.shape
    if kind == "real":
        # errors e = ŷ − y on both sides of 0 and of the Huber thresholds, never near them
        offsets = rng.choice([-2.3, -0.8, -0.3, 0.2, 0.7, 1.9], size=(n, k))
        return out - offsets
    if kind == "away":
        return np.where(rng.random((n, k)) < 0.5, -1.0, 1.0) * rng.uniform(0.5, 2, (n, k))
    if kind == "signed":
        return rng.choice([-1.0, 0.0, 1.0], size=(n, k))
    if kind == "binary":
        return rng.integers(0, 2, size=(n, k)).astype(float)
    if kind == "onehot":
        return np.eye(k)[rng.integers(0, k, n)]
    return rng.uniform(0, 1, size=(n, k))


def _assert_loss_away_from_kinks(name, params, out, y):
    e = out - y
    if name in ("mae", "mape"):
        assert np.min(np.abs(e)) > MARGIN
    if name == "huber":
        delta = float(params[0]) if params else 1.0
        assert np.min(np.abs(np.abs(e) - delta)) > MARGIN
        assert (np.abs(e) < delta).any() and (np.abs(e) > delta).any()
    if name in ("hinge", "huber_modified"):
        margin = signed(y) * out
        assert np.min(np.abs(margin - 1)) > MARGIN and np.min(np.abs(margin + 1)) > MARGIN
        assert (margin < 1).any() and (margin > 1).any()


@pytest.mark.parametrize("loss,act,kind", LOSS_CASES)
def test_loss_gradients(loss, act, kind):
    name, *params = loss.split()
    spec, net, objective = make_net(f"3 1 1\ninput\ndense 5 tanh\ndense 3 {act}\nloss {loss}\n", seed=61, w_scale=3.0, b_scale=1.0)
    assert objective.fused == ((name, act) in (("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid")))
    rng = np.random.default_rng(62)
    x = sample_inputs(spec, 8, 63)
    y = _targets(kind, net.forward(x), rng)
    _assert_loss_away_from_kinks(name, params, net.forward(x), y)
    grads = check_param_grads(net, objective, x, y)
    check_input_grad(net, objective, x, y)
    assert np.any(np.abs(grads["layer_02", "W"]) > 1e-6)
    # the value computed by the network matches the independent formula (with the default parameters)
    if not params:
        np.testing.assert_allclose(net.losses(objective, x, y)[0], FORMULAS[name](net.forward(x), y), rtol=1e-11)


@pytest.mark.parametrize("copies", [1, 3])  # 3 side by side: an output 6 wide, pooled offset by offset
def test_max_pooling_gradient_goes_to_the_first_maximum_of_a_tie_and_to_nan(copies):
    # PyTorch's rule: a tie sends the gradient to the first position of the window
    # (row by row); a NaN wins its window.
    from kerash.layers import MaxPooling

    x = np.array([[[[1.0, 3.0, 2.0, 2.0],
                    [3.0, 0.0, 2.0, 2.0],
                    [0.0, 0.0, 5.0, np.nan],
                    [0.0, 0.0, np.nan, 5.0]]]])
    expected = np.zeros_like(x)
    expected[0, 0, 0, 1] = 1  # first 3
    expected[0, 0, 0, 2] = 1  # first 2
    expected[0, 0, 2, 0] = 1  # first 0
    expected[0, 0, 2, 3] = 1  # first NaN
    x, expected = np.tile(x, (1, 1, 1, copies)), np.tile(expected, (1, 1, 1, copies))
    pool = MaxPooling(2, 2, 2, 0)
    out, ctx = pool.forward({}, x.transpose(1, 0, 2, 3))  # pooling works on (C, N, H, W)
    out = out.transpose(1, 0, 2, 3)
    for c in range(copies):
        assert out[0, 0, 0, 2 * c] == 3 and out[0, 0, 0, 2 * c + 1] == 2 and out[0, 0, 1, 2 * c] == 0
        assert np.isnan(out[0, 0, 1, 2 * c + 1])
    (dx,) = pool.backward({}, {}, ctx, np.ones_like(out).transpose(1, 0, 2, 3))
    np.testing.assert_array_equal(dx.transpose(1, 0, 2, 3), expected)


@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_mcclelland_error_values_and_gradients(act):
    spec, net, objective = make_net(f"3 1 1\ninput\ndense 5 tanh\ndense 3 {act}\nloss mcclelland\n", seed=71, w_scale=3.0, b_scale=1.0)
    assert objective.fused
    rng = np.random.default_rng(72)
    x = sample_inputs(spec, 8, 73)
    low = 0.0 if act == "sigmoid" else -1.0
    y = rng.uniform(low, 1.0, size=(8, 3))
    check_param_grads(net, objective, x, y)
    check_input_grad(net, objective, x, y)
    out = net.forward(x)
    p, q = (out, y) if act == "sigmoid" else ((1 + out) / 2, (1 + y) / 2)
    expected = -np.mean(q * np.log(p) + (1 - q) * np.log(1 - p), axis=1)
    np.testing.assert_allclose(net.losses(objective, x, y)[0], expected, rtol=1e-10)


@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_mcclelland_error_keeps_learning_where_the_output_saturates(act):
    # One unit saturated at the wrong end: the squared error's gradient nearly vanishes
    # (it carries f'(z)), McClelland's stays ŷ − y at the pre-activation.
    target = 1.0
    results = {}
    for loss in ("mse", "mcclelland"):
        spec, net, objective = make_net(f"1 1 1\ninput\ndense 1 {act}\nloss {loss}\n")
        net.set_params({"layer_01": {"W": np.array([[-12.0]]), "b": np.zeros(1)}})
        x, y = np.ones((1, 1, 1, 1)), np.full((1, 1), target)
        net.gradient(objective, x, y, 1.0)
        results[loss] = net.grads[1]["W"][0, 0]
    yhat = {"sigmoid": 1 / (1 + math.exp(12.0)), "tanh": math.tanh(-12.0)}[act]
    assert results["mcclelland"] == pytest.approx(yhat - target, rel=1e-9)
    assert abs(results["mse"]) < 1e-4 * abs(results["mcclelland"])


@pytest.mark.parametrize("c, n, h, w, k, stride, pad", [
    (16, 32, 4, 4, 3, 1, 1),   # output under 5 pixels wide: added back through the patch index
    (3, 2, 7, 5, 2, 2, 1),
    (1, 1, 9, 9, 3, 2, 0),
    (16, 64, 4, 4, 3, 1, 1),   # too many values for that: pixels-outermost accumulation
    (4, 8, 9, 9, 3, 2, 1),     # fewer pixels than channels × batch: pixels-outermost accumulation
    (5, 40, 3, 3, 3, 1, 2),
    (2, 3, 12, 11, 3, 1, 1),   # more: row-wise accumulation
])
def test_col2im_adds_each_patch_gradient_where_it_came_from(c, n, h, w, k, stride, pad):
    from kerash.layers import kernels

    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    rng = np.random.default_rng(0)
    dcols = rng.standard_normal((c * k * k, n * oh * ow))
    expected = np.zeros((c, n, h + 2 * pad, w + 2 * pad))
    d = dcols.reshape(c, k, k, n, oh, ow)
    for ch in range(c):
        for i in range(k):
            for j in range(k):
                for s in range(n):
                    for r in range(oh):
                        for q in range(ow):
                            expected[ch, s, r * stride + i, q * stride + j] += d[ch, i, j, s, r, q]
    expected = expected[:, :, pad : pad + h, pad : pad + w]
    np.testing.assert_allclose(kernels.col2im(dcols, (c, n, h, w), k, k, stride, pad, oh, ow), expected, rtol=1e-12, atol=1e-12)
