"""Graph models in float64, in process: forward passes against direct numpy loops, and
back-propagation through time against central finite differences of the loss."""

import math

import numpy as np
import pytest
from conftest import ROOT

from kerash import model
from kerash.network import Objective

H = 1e-6
SEEDS = ROOT / "models"  # NeuroMorph's two example models, as the seed shipped them


def make_net(text, seed=0, scale=0.8):
    """(spec, network, objective) in float64 with seeded normal weights."""
    spec = model.parse_model(text, "test.mdl")
    net = model.build_network(spec, np.float64)
    rng = np.random.default_rng(seed)
    params = {}
    for key, shapes in model.param_shapes(spec).items():
        fan_in = shapes["W"][0]
        params[key] = {"W": rng.normal(0, scale / math.sqrt(fan_in), size=shapes["W"]), "b": rng.normal(0, 0.3, size=shapes["b"])}
    net.set_params(params)
    net.use_arena()
    return spec, net, Objective(spec.loss, net)


def check_gradients(net, objective, x, y, rtol=1e-5, atol=1e-8):
    """net.gradient against central differences of Σ per-sequence losses, for every parameter."""
    objective.adapt_to_targets(y)
    losses, _ = net.gradient(objective, x, y, 1.0)
    analytic = net.arena.grads.copy()
    assert np.isclose(losses.sum(), net.losses(objective, x, y)[0].sum(), rtol=1e-12)
    p = net.arena.params
    numeric = np.empty_like(p)
    for i in range(p.size):
        old = p[i]
        p[i] = old + H
        up = net.losses(objective, x, y)[0].sum()
        p[i] = old - H
        down = net.losses(objective, x, y)[0].sum()
        p[i] = old
        numeric[i] = (up - down) / (2 * H)
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol)
    assert np.abs(analytic).max() > 1e-3, "vanishing gradient: the check would be vacuous"
    return analytic


def branches(op):
    return (f"(input, 3)\n[s, (a, 4, <tanh>) | (b, 4, <sigmoid>) {{c, a, {op}}}]\n(d, 4, <tanh>)\n"
            f"{{e, c, {op}}}\n(out, 2, <sigmoid>, <binary_cross_entropy>)\n")


@pytest.mark.parametrize("op", ["additive", "multiplicative", "average", "concatenate"])
@pytest.mark.parametrize("steps", [1, 3])
def test_every_merge_op_in_branches(op, steps):
    spec, net, objective = make_net(branches(op), seed=1)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, steps, 3))
    y = rng.integers(0, 2, size=(4, steps, 2)).astype(float)
    check_gradients(net, objective, x, y)
    # the merge computes what its name says, on the values of the nodes it names
    values = dict(zip([n.name for n in net.nodes], [v for v, _ in net.trace(x[:, 0])]))
    u, v = values["d"], values["c"]
    expected = {"additive": lambda: u + v, "multiplicative": lambda: u * v, "average": lambda: (u + v) / 2,
                "concatenate": lambda: np.concatenate([u, v], axis=1)}[op]()
    np.testing.assert_allclose(values["e"], expected, rtol=1e-15)


ELMAN = "(input, 2)\n{xh, state, concatenate}\n(h, 5, <tanh>)\n[state,]\n(out, 3, <softmax>, <cross_entropy>)\n"


def test_elman_forward_equals_a_direct_loop():
    spec, net, _ = make_net(ELMAN, seed=3)
    p = net.get_params()
    w, b = p["layer_01"]["W"], p["layer_01"]["b"]
    wo, bo = p["layer_02"]["W"], p["layer_02"]["b"]
    x = np.random.default_rng(4).normal(size=(3, 6, 2))
    h = np.zeros((3, 5))
    expected = []
    for t in range(6):
        h = np.tanh(np.concatenate([x[:, t], h], axis=1) @ w + b)
        z = h @ wo + bo
        e = np.exp(z - z.max(axis=1, keepdims=True))
        expected.append(e / e.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(net.forward(x), np.stack(expected, axis=1), rtol=1e-13)
    assert spec.node("xh").shape == (7,)  # concatenation of unequal widths 2 + 5


@pytest.mark.parametrize("scoring", ["every", "last", "classes"])
def test_bptt_through_an_elman_network(scoring):
    spec, net, objective = make_net(ELMAN, seed=5)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 7, 2))
    classes = rng.integers(0, 3, size=(4, 7))
    y = {"every": np.eye(3)[classes], "last": np.eye(3)[classes[:, -1]],
         "classes": model.prepare_targets(classes, spec, x)}[scoring]
    check_gradients(net, objective, x, y)


def test_bptt_of_a_node_that_reads_itself():
    # m(t) = tanh-layer(t) + m(t−1): a merge naming itself reads the previous step.
    spec, net, objective = make_net("(input, 3)\n(a, 3, <tanh>)\n{m, m, additive}\n(out, 2, <identity>, <mse>)\n", seed=7)
    assert spec.node("m").inputs == [("a", 0), ("m", 1)]
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 5, 3))
    check_gradients(net, objective, x, rng.normal(size=(2, 5, 2)))
    # the running sum, checked directly
    a = np.stack([v[1][0] for v in (net.trace(x[:, t]) for t in range(5))], axis=1)
    p = net.get_params()["layer_02"]
    np.testing.assert_allclose(net.forward(x), np.cumsum(a, axis=1) @ p["W"] + p["b"], rtol=1e-12)


def test_recurrent_output_and_a_loss_fused_with_softmax():
    # The output feeds the next step (a recurrent read of the last node) while a fused loss scores it.
    text = "(input, 2)\n{xo, out, concatenate}\n(h, 4, <tanh>)\n(out, 3, <softmax>, <cross_entropy>)\n"
    spec, net, objective = make_net(text, seed=9)
    assert objective.fused
    rng = np.random.default_rng(10)
    check_gradients(net, objective, rng.normal(size=(3, 5, 2)), np.eye(3)[rng.integers(0, 3, size=(3, 5))])


@pytest.mark.parametrize("name", ["neuromorph-big.mdl", "neuromorph-lstm.mdl"])
@pytest.mark.parametrize("scoring", ["every", "last"])
def test_seed_models(name, scoring):
    spec, net, objective = make_net((SEEDS / name).read_text(), seed=11, scale=1.5)
    rng = np.random.default_rng(12)
    x = rng.normal(size=(3, 6, 4))
    y = rng.normal(size=(3, 6, 4) if scoring == "every" else (3, 4))
    check_gradients(net, objective, x, y, rtol=1e-4, atol=1e-7)


def test_a_graph_without_recurrence_takes_rows_as_one_step():
    text = (ROOT / "models" / "digits-residual.mdl").read_text()
    spec, net, _ = make_net(text, seed=13)
    rng = np.random.default_rng(14)
    rows = rng.uniform(size=(5, 64))
    x = model.prepare_inputs(rows, spec)
    assert x.shape == (5, 1, 64)
    p = net.get_params()
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    h = relu(rows @ p["layer_01"]["W"] + p["layer_01"]["b"])
    block = relu(h @ p["layer_02"]["W"] + p["layer_02"]["b"]) @ p["layer_03"]["W"] + p["layer_03"]["b"]
    out = relu((block + h) @ p["layer_04"]["W"] + p["layer_04"]["b"])  # the skip added back, then a layer
    logits = out @ p["layer_05"]["W"] + p["layer_05"]["b"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(net.forward(x)[:, 0], e / e.sum(axis=1, keepdims=True), rtol=1e-12)
