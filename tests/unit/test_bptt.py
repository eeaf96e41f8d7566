"""Truncated BPTT (train --bptt, issue 26): windows of streams, states carried from window to window, against
the same windows started from the states of one unrolled pass over each stream's prefix."""

import numpy as np

from kerash import model
from kerash.layers import Noise
from kerash.network import Objective
from kerash.training import bptt


class Given:
    """States given by node, as a reference."""

    def __init__(self, states):
        self.states = states

    def initial(self, node, ids):
        return self.states[node]

    def keep(self, node, ids, final):
        pass


def test_windows_carry_the_states_of_the_unrolled_stream():
    spec = model.parse_model("1 1 1\ninput\nembedding 6 4\nlstm 5 sequences\ngru 3 sequences\ndense 6 softmax\n", "m")
    net = model.build_network(spec, np.float64)
    net.set_params(model.init_params(spec, 2, np.float64))
    net.use_arena()
    objective = Objective(spec.loss, net)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 6, size=83)
    x = ids[:-1].astype(float).reshape(1, -1, 1)
    y = np.eye(6)[ids[1:]][None]
    streams, k = 3, 7
    xw, yw = bptt.stream_windows(x, y, streams, k)
    length = 82 // streams  # 27 steps a stream: 4 windows, the last one of 6 steps and a padded one
    assert xw.shape == (4 * streams, k, 1)
    stream_x = x[0, : streams * length].reshape(streams, length, 1)
    np.testing.assert_array_equal(xw[streams * 2 + 1, :, 0], stream_x[1, 14:21, 0])  # window 2 of stream 1
    assert np.isnan(xw[streams * 3, 6, 0]) and not np.isnan(xw[streams * 3, 5, 0])
    carry = bptt.Carry(net, streams, 4)
    for w in range(4):
        batch = np.arange(w * streams, (w + 1) * streams)
        net.gradient(objective, xw[batch], yw[batch], 1.0, noise=Noise(0, 1, batch, carry))
        carried = net.arena.grads.copy()
        if w == 0:
            states = None
        else:  # one unrolled pass over each stream's steps before the window
            _, states = net.forward_states(stream_x[:, : w * k])
        reference = Given(states or {i: tuple(np.zeros((streams, net.layers[i].units)) for _ in range(
            2 if net.layers[i].kind == "lstm" else 1)) for i in (2, 3)})
        net.gradient(objective, xw[batch], yw[batch], 1.0, noise=Noise(0, 1, batch, reference))
        np.testing.assert_allclose(carried, net.arena.grads, rtol=1e-10, atol=1e-13)
    # a new epoch starts the streams from zeros again
    batch = np.arange(streams)
    losses_again, _ = net.gradient(objective, xw[batch], yw[batch], 1.0, noise=Noise(0, 2, batch, carry))
    losses_fresh, _ = net.gradient(objective, xw[batch], yw[batch], 1.0)
    np.testing.assert_array_equal(losses_again, losses_fresh)
