"""tdnn (issue 26, item 4): a time-delay layer, against a direct loop over steps and offsets, torch's conv1d
where installed, finite differences over sequences of different lengths, and both description formats."""

import numpy as np
import pytest

from kerash import functions, model
from kerash.layers.timedelay import TimeDelay
from kerash.network import Objective

from helpers import assert_network_gradient

EPS = 1e-6


def direct(p, x, offsets, lengths):
    """y_t = tanh(Σ_k x_{t+o_k} W_k + b), inputs outside each sequence's own steps zero."""
    n, steps, i = x.shape
    out = np.zeros((n, steps, p["b"].shape[0]))
    for s in range(n):
        for t in range(lengths[s]):
            z = p["b"].copy()
            for k, o in enumerate(offsets):
                if 0 <= t + o < lengths[s]:
                    z += x[s, t + o] @ p["W"][k * i:(k + 1) * i]
            out[s, t] = np.tanh(z)
    return out


def test_against_a_direct_loop_torch_and_finite_differences():
    rng = np.random.default_rng(5)
    offsets = [-2, 0, 1, 3]
    layer = TimeDelay(4, functions.get_activation("tanh").bind(), offsets)
    p = {k: rng.normal(0, 0.5, size=s) for k, s in layer.param_shapes([(3,)]).items()}
    lengths = np.array([7, 4, 6])
    x = rng.normal(size=(3, 7, 3)) * (np.arange(7)[None, :, None] < lengths[:, None, None])  # padding: zeros
    y, ctx = layer.forward(p, x, lengths)
    valid = np.arange(7)[None, :] < lengths[:, None]
    np.testing.assert_allclose(y[valid], direct(p, x, offsets, lengths)[valid], rtol=1e-12)
    dy = rng.normal(size=y.shape) * valid[..., None]
    g = {k: np.zeros_like(v) for k, v in p.items()}
    (dx,) = layer.backward(p, g, ctx, dy)
    for name, array, grad in [("W", p["W"], g["W"]), ("b", p["b"], g["b"]), ("x", x, dx)]:
        for index in np.ndindex(array.shape):
            if name == "x" and not valid[index[0], index[1]]:
                continue
            old = array[index]
            array[index] = old + EPS
            up = np.sum(direct(p, x, offsets, lengths) * dy)
            array[index] = old - EPS
            down = np.sum(direct(p, x, offsets, lengths) * dy)
            array[index] = old
            assert abs((up - down) / (2 * EPS) - grad[index]) < 1e-7, (name, index)
    torch = pytest.importorskip("torch")
    consecutive = TimeDelay(4, functions.get_activation("tanh").bind(), [-2, -1, 0, 1, 2])
    q = {k: rng.normal(size=s) for k, s in consecutive.param_shapes([(3,)]).items()}
    full = rng.normal(size=(2, 9, 3))
    weight = torch.tensor(q["W"].reshape(5, 3, 4).transpose(2, 1, 0).copy())  # (out, in, kernel)
    theirs = torch.tanh(torch.nn.functional.conv1d(torch.tensor(full.transpose(0, 2, 1).copy()), weight,
                                                   torch.tensor(q["b"]), padding=2)).numpy().transpose(0, 2, 1)
    np.testing.assert_allclose(consecutive.forward(q, full)[0], theirs, atol=1e-12)


@pytest.mark.parametrize("text", [
    "2 1 1\ninput\ntdnn 5 tanh -2..2\ntdnn 3 relu -3,0,3\ndense 2 softmax\n",
    "(input, 2)\n(t, 5, <tdnn, -2..2>, <tanh>)\n(u, 3, <tdnn, -3, 0, 3>, <relu>)\n(output, 2, <softmax>, <cross_entropy>)\n",
])
def test_stacked_time_delay_networks_in_both_formats(text):
    spec = model.parse_model(text, "m")
    from kerash.model.lines import lines_text
    from kerash.model.mdl import mdl_text

    written = "\n".join(mdl_text(spec) if spec.format == "mdl" else lines_text(spec))
    again = model.parse_model(written, "again")
    assert [n.layer.text() for n in again.nodes[1:]] == [n.layer.text() for n in spec.nodes[1:]]
    net = model.build_network(spec, np.float64)
    net.set_params(model.init_params(spec, 1, np.float64))
    net.use_arena()
    objective = Objective(spec.loss, net)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 8, 2))
    x[1, 5:] = np.nan
    y = np.where(np.isnan(x[..., :1]), np.nan, np.eye(2)[rng.integers(0, 2, size=(3, 8))])
    assert_network_gradient(net, objective, x, y, tol=1e-6)


def test_a_padded_sequence_equals_itself_alone_after_layers_that_fill_the_padding():
    """The padding after a shorter sequence is not zero after an embedding, a dense layer with a bias or another
    tdnn: a tdnn reading ahead must still see zeros beyond each sequence's own last step."""
    spec = model.parse_model("1 1 1\ninput\nembedding 5 3\ndense 4 tanh\ntdnn 3 tanh -1..2\ntdnn 2 identity 0,1\n"
                             "dense 2 softmax\n", "m")
    net = model.build_network(spec, np.float64)
    params = model.init_params(spec, 4, np.float64)
    for d in params.values():
        if "b" in d:
            d["b"][...] = 0.3
    net.set_params(params)
    net.use_arena()
    objective = Objective(spec.loss, net)
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, 5, size=t).astype(float) for t in (6, 3, 1)]
    x = np.full((3, 6, 1), np.nan)
    for k, s in enumerate(seqs):
        x[k, :len(s), 0] = s
    y = np.where(np.isnan(x), np.nan, np.eye(2)[rng.integers(0, 2, size=(3, 6))])
    together = net.forward(x)
    losses, _ = net.gradient(objective, x, y, 1.0)
    batch = net.arena.grads.copy()
    summed = np.zeros_like(batch)
    for k, s in enumerate(seqs):
        alone = net.forward(s.reshape(1, -1, 1))
        np.testing.assert_allclose(alone[0], together[k, :len(s)], rtol=1e-12, atol=1e-14)
        alone_losses, _ = net.gradient(objective, s.reshape(1, -1, 1), y[k:k + 1, :len(s)], 1.0)
        np.testing.assert_allclose(alone_losses[0], losses[k], rtol=1e-12)
        summed += net.arena.grads
    np.testing.assert_allclose(batch, summed, rtol=1e-10, atol=1e-14)
