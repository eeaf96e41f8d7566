"""lstm and gru (issue 23): against a direct numpy loop written from the equations of PyTorch's documentation,
central finite differences, PyTorch itself where it is installed, and sequences of different lengths padded
in a batch against each sequence alone."""

import numpy as np
import pytest

from kerash import model
from kerash.layers.recurrent import GRU, LSTM
from kerash.network import Objective

from helpers import assert_network_gradient

EPS = 1e-6


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def loop_lstm(p, x, every, lengths=None):
    """torch.nn.LSTM's equations, a step at a time: W = [W_ih; W_hh]ᵀ, gates i, f, g, o."""
    n, steps, i = x.shape
    hidden = p["b"].shape[0] // 4
    h, c, out = np.zeros((n, hidden)), np.zeros((n, hidden)), []
    for t in range(steps):
        z = x[:, t] @ p["W"][:i] + h @ p["W"][i:] + p["b"]
        gi, gf = sigmoid(z[:, :hidden]), sigmoid(z[:, hidden:2 * hidden])
        gg, go = np.tanh(z[:, 2 * hidden:3 * hidden]), sigmoid(z[:, 3 * hidden:])
        c = gf * c + gi * gg
        h = go * np.tanh(c)
        out.append(h)
    return _select(np.stack(out, axis=1), every, lengths)


def loop_gru(p, x, every, lengths=None):
    """torch.nn.GRU's equations: r, z, n; n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)); h' = (1 − z) n + z h."""
    n, steps, i = x.shape
    hidden = p["bh"].shape[0]
    h, out = np.zeros((n, hidden)), []
    for t in range(steps):
        gi, gh = x[:, t] @ p["W"][:i] + p["b"], h @ p["W"][i:]
        r = sigmoid(gi[:, :hidden] + gh[:, :hidden])
        z = sigmoid(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
        cand = np.tanh(gi[:, 2 * hidden:] + r * (gh[:, 2 * hidden:] + p["bh"]))
        h = (1 - z) * cand + z * h
        out.append(h)
    return _select(np.stack(out, axis=1), every, lengths)


def _select(out, every, lengths):
    if every:
        return out
    return out[:, -1] if lengths is None else out[np.arange(len(out)), lengths - 1]


LOOPS = {"lstm": loop_lstm, "gru": loop_gru}


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("every", [False, True])
@pytest.mark.parametrize("ragged", [False, True])
def test_layer_against_the_loop_and_finite_differences(kind, every, ragged):
    rng = np.random.default_rng(hash((kind, every, ragged)) % 2**32)
    n, steps, width, hidden = 3, 6, 4, 5
    layer = {"lstm": LSTM, "gru": GRU}[kind](hidden, every)
    p = {k: rng.normal(0, 0.6, size=s) for k, s in layer.param_shapes([(width,)]).items()}
    x = rng.normal(size=(n, steps, width))
    lengths = np.array([6, 2, 4]) if ragged else None
    y, ctx = layer.forward(p, x, lengths)
    np.testing.assert_allclose(y, LOOPS[kind](p, x, every, lengths), rtol=1e-12, atol=1e-13)
    dy = rng.normal(size=y.shape)
    if every and ragged:
        dy[np.arange(steps)[None, :] >= lengths[:, None]] = 0  # a padded step's output is no output
    g = {k: np.zeros_like(v) for k, v in p.items()}
    (dx,) = layer.backward(p, g, ctx, dy)

    def objective():
        return float(np.sum(LOOPS[kind](p, x, every, lengths) * dy))

    for name, array, grad in [*((k, p[k], g[k]) for k in p), ("x", x, dx)]:
        for index in np.ndindex(array.shape):
            old = array[index]
            array[index] = old + EPS
            up = objective()
            array[index] = old - EPS
            down = objective()
            array[index] = old
            assert abs((up - down) / (2 * EPS) - grad[index]) < 1e-7, (name, index)


def network(text, seed=0):
    spec = model.parse_model(text, "test.model")
    net = model.build_network(spec, np.float64)
    net.set_params({k: {n: np.asarray(v, np.float64) for n, v in d.items()}
                    for k, d in model.init_params(spec, seed, np.float64).items()})
    net.use_arena()
    return spec, net, Objective(spec.loss, net)


def padded(sequences):
    """Sequences of different lengths as one (N, T, I) batch, the steps after each one's end nan."""
    steps = max(len(s) for s in sequences)
    out = np.full((len(sequences), steps, sequences[0].shape[1]), np.nan)
    for k, s in enumerate(sequences):
        out[k, :len(s)] = s
    return out


STACKED = "3 1 1\ninput\nlstm 5 sequences\ngru 4 sequences\ndense 2 softmax\n"
LAST = "(input, 3)\n(a, 4, <gru, sequences>)\n(h, 5, <lstm>)\n(output, 2, <softmax>, <cross_entropy>)\n"


@pytest.mark.parametrize("text, every", [(STACKED, True), (LAST, False)])
def test_padded_batches_equal_each_sequence_alone_and_finite_differences(text, every):
    """A padded batch: each sequence's loss and every gradient equal those of the sequence run alone (summed),
    and central finite differences of the batch's loss."""
    rng = np.random.default_rng(4)
    lengths = [5, 2, 7, 1]
    sequences = [rng.normal(size=(t, 3)) for t in lengths]
    x = padded(sequences)
    if every:
        targets = [np.eye(2)[rng.integers(0, 2, size=t)] for t in lengths]
        y = padded(targets)
    else:
        y = np.eye(2)[rng.integers(0, 2, size=len(lengths))]
        targets = list(y[:, None, :])
    spec, net, objective = network(text)
    losses, _ = net.gradient(objective, x, y, 1.0)
    batch = net.arena.grads.copy()
    alone_sum = np.zeros_like(batch)
    for k, (s, t) in enumerate(zip(sequences, targets)):
        alone_losses, _ = net.gradient(objective, s[None], t[None] if every else t, 1.0)
        np.testing.assert_allclose(losses[k], alone_losses[0], rtol=1e-12)
        alone_sum += net.arena.grads
    np.testing.assert_allclose(batch, alone_sum, rtol=1e-10, atol=1e-14)
    size = net.arena.params.size
    assert_network_gradient(net, objective, x, y, indices=np.random.default_rng(0).choice(size, min(size, 60), False))


def test_mdl_text_round_trips_and_recurrent_merges_are_refused():
    spec = model.parse_model(LAST, "m.mdl")
    from kerash.model.mdl import mdl_text

    text = "\n".join(mdl_text(spec))
    assert "(a, 4, <gru, sequences>)" in text and "(h, 5, <lstm>)" in text
    again = model.parse_model(text, "again.mdl")
    assert [n.layer.text() for n in again.nodes[1:]] == [n.layer.text() for n in spec.nodes[1:]]
    from kerash.errors import ModelError

    with pytest.raises(ModelError, match="a recurrent merge in a model with lstm or gru nodes"):
        model.parse_model("(input, 2)\n{m, h, additive}\n(h, 2, <lstm, sequences>)\n"
                          "(output, 1, <sigmoid>, <mse>)\n", "r.mdl")
    with pytest.raises(ModelError, match="'last' .* 'sequences'"):
        model.parse_model("2 1 1\ninput\nlstm 4 every\ndense 1 sigmoid\n", "l.model")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_equal_to_pytorch_with_packed_sequences(kind):
    """Weights copied into torch.nn.LSTM / nn.GRU: outputs and every gradient agree to 1e-6 in float64, for
    sequences of different lengths given to torch as a PackedSequence."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    width, hidden = 3, 4
    lengths = np.array([6, 3, 5])
    x = rng.normal(size=(3, 6, width))
    layer = {"lstm": LSTM, "gru": GRU}[kind](hidden, True)
    p = {k: rng.normal(0, 0.5, size=s) for k, s in layer.param_shapes([(width,)]).items()}
    cell = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](width, hidden, batch_first=True).double()
    with torch.no_grad():
        cell.weight_ih_l0.copy_(torch.tensor(p["W"][:width].T))
        cell.weight_hh_l0.copy_(torch.tensor(p["W"][width:].T))
        if kind == "lstm":  # the two biases only ever appear summed: kerash's b is their sum
            cell.bias_ih_l0.copy_(torch.tensor(p["b"] / 2))
            cell.bias_hh_l0.copy_(torch.tensor(p["b"] / 2))
        else:  # r and z: summed; n: the input side, and the state side (bh) that r multiplies
            cell.bias_ih_l0.copy_(torch.tensor(p["b"]))
            cell.bias_hh_l0.copy_(torch.tensor(np.r_[np.zeros(2 * hidden), p["bh"]]))
    xt = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True,
                                                     enforce_sorted=False)
    out, _ = cell(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
    dy = rng.normal(size=out.shape)
    dy[np.arange(6)[None, :] >= lengths[:, None]] = 0
    (out * torch.tensor(dy)).sum().backward()
    y, ctx = layer.forward(p, x * (np.arange(6)[None, :, None] < lengths[:, None, None]), lengths)
    valid = np.arange(6)[None, :] < lengths[:, None]
    np.testing.assert_allclose(y[valid], out.detach().numpy()[valid], atol=1e-6)
    g = {k: np.zeros_like(v) for k, v in p.items()}
    (dx,) = layer.backward(p, g, ctx, dy)
    np.testing.assert_allclose(dx[valid], xt.grad.numpy()[valid], atol=1e-6)
    np.testing.assert_allclose(g["W"][:width], cell.weight_ih_l0.grad.numpy().T, atol=1e-6)
    np.testing.assert_allclose(g["W"][width:], cell.weight_hh_l0.grad.numpy().T, atol=1e-6)
    if kind == "lstm":
        np.testing.assert_allclose(g["b"], cell.bias_ih_l0.grad.numpy(), atol=1e-6)
    else:
        np.testing.assert_allclose(g["b"], cell.bias_ih_l0.grad.numpy(), atol=1e-6)
        np.testing.assert_allclose(g["bh"], cell.bias_hh_l0.grad.numpy()[2 * hidden:], atol=1e-6)
        np.testing.assert_allclose(g["b"][:2 * hidden], cell.bias_hh_l0.grad.numpy()[:2 * hidden], atol=1e-6)


@pytest.mark.parametrize("text", [
    "1 1 1\ninput\nembedding 7 3\nlstm 4\ndense 2 softmax\n",
    "(input, 1)\n(e, 3, <embedding, 7>)\n(h, 4, <gru, sequences>)\n(output, 2, <softmax>, <cross_entropy>)\n",
])
def test_embedding_of_token_ids_in_padded_batches(text):
    """embedding V D: a token id picks its row (DyNet's word input); finite differences over a padded batch of
    token sequences; the rows of tokens that never came get no gradient; ids out of range are refused."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, size=(5, 6, 1)).astype(float)  # ids 5 and 6 never come
    x[1, 4:] = np.nan
    x[3, 2:] = np.nan
    every = "sequences" in text
    y = np.where(np.isnan(x), np.nan, np.eye(2)[rng.integers(0, 2, size=(5, 6))]) if every else \
        np.eye(2)[rng.integers(0, 2, size=5)]
    spec, net, objective = network(text)
    assert_network_gradient(net, objective, x, y)
    rows = net.grads[1]["W"]
    assert np.all(rows[5:] == 0) and np.all(np.any(rows[:5] != 0, axis=1))
    from kerash.errors import DataError

    with pytest.raises(DataError, match="token id 7 is not one of 0..6"):
        net.forward(np.full((1, 2, 1), 7.0))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_a_state_carried_into_the_next_window(kind):
    """Truncated BPTT: a window started from the previous window's final state continues the sequence exactly,
    and its gradients (the carried state a constant) match finite differences."""
    rng = np.random.default_rng(11)
    layer = {"lstm": LSTM, "gru": GRU}[kind](4, True)
    p = {k: rng.normal(0, 0.6, size=s) for k, s in layer.param_shapes([(3,)]).items()}
    x = rng.normal(size=(2, 7, 3))
    whole, _ = layer.forward(p, x)
    _, ctx = layer.forward(p, x[:, :3])
    carried = layer.final_state(ctx)
    second, ctx2 = layer.forward(p, x[:, 3:], None, carried)
    np.testing.assert_allclose(second, whole[:, 3:], rtol=1e-12, atol=1e-14)
    dy = rng.normal(size=second.shape)
    g = {k: np.zeros_like(v) for k, v in p.items()}
    layer.backward(p, g, ctx2, dy)
    for name in p:
        for index in np.ndindex(p[name].shape):
            old = p[name][index]
            p[name][index] = old + EPS
            up = np.sum(layer.forward(p, x[:, 3:], None, carried)[0] * dy)
            p[name][index] = old - EPS
            down = np.sum(layer.forward(p, x[:, 3:], None, carried)[0] * dy)
            p[name][index] = old
            assert abs((up - down) / (2 * EPS) - g[name][index]) < 1e-7, (name, index)
