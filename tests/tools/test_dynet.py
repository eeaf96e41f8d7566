"""DyNet's networks (issue 26, item 5): connections listed one by one, tied weights, and the seed's XOR network
read from DyNet's ASCII format, counted as its initnet counted it."""

import numpy as np
import pytest

from conftest import assert_one_line_error, parse, run

XOR_NET = "6 units\n3 inputs\n0 1 2\n1 outputs\n5\n9 conns\n0 3\n1 3\n2 3\n0 4\n1 4\n2 4\n0 5\n3 5\n4 5\n"


def test_the_seeds_xor_network_reads_counts_and_learns(tmp_path):
    (tmp_path / "xor.net").write_text("NETWORK FILE:\n" + XOR_NET)
    run(["kerash", "dynet", "xor.net", "-o", "xor.mdl"], cwd=tmp_path)
    run(["model-init", "xor.mdl", "-o", "xor", "--seed", "1"], cwd=tmp_path)
    summary = run(["kerash", "summary", "xor"], cwd=tmp_path).stdout.decode()
    assert "DyNet: 6 units, 3 inputs, 1 outputs, 9 conns, 9 real weights" in summary  # initnet's own figures
    (tmp_path / "x.txt").write_text("0 0\n0 1\n1 0\n1 1\n")
    (tmp_path / "y.txt").write_text("0\n1\n1\n0\n")
    run(["train", "xor", "-x", "x.txt", "-y", "y.txt", "--epochs", "3000", "--lr", "2", "--batch-size", "4"],
        cwd=tmp_path)
    assert run(["predict", "xor", "x.txt", "--classes"], cwd=tmp_path).stdout == b"0\n1\n1\n0\n"
    # the output layer reads the hidden units and the bias only: its other weights are absent, and stay 0
    w = np.load(tmp_path / "xor" / "layer_02" / "W.npy")
    assert w.shape == (4, 1) and np.all(w[2:] == 0) and np.all(w[:2] != 0)


def test_masked_and_tied_connections_train_as_one_weight_against_a_direct_computation(tmp_path):
    (tmp_path / "t.model").write_text("3 1 1\ninput\nconnect 2 tanh 0:0=a,1:0,2:1=a,b:1\nconnect 1 sigmoid 0:0,1:0,b:0\n")
    run(["model-init", "t.model", "-o", "t", "--seed", "2", "--dtype", "float64"], cwd=tmp_path)
    w0 = np.load(tmp_path / "t" / "layer_01" / "W.npy")
    assert w0[0, 0] == w0[2, 1] and np.count_nonzero(w0) == 3
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3))
    y = (x[:, 0] > 0).astype(float)
    np.savetxt(tmp_path / "x.txt", x, fmt="%.17g")
    np.savetxt(tmp_path / "y.txt", y, fmt="%g")
    params = {k: np.load(tmp_path / "t" / k) for k in ("layer_01/W.npy", "layer_01/b.npy", "layer_02/W.npy",
                                                        "layer_02/b.npy")}
    run(["train", "t", "-x", "x.txt", "-y", "y.txt", "--epochs", "1", "--batch-size", "8", "--lr", "0.5",
         "--workers", "1"], cwd=tmp_path)
    # one SGD step by hand: the tied pair moves by the sum of its two gradients, absent weights not at all
    a, b1, w2, b2 = params["layer_01/W.npy"][0, 0], params["layer_01/b.npy"], params["layer_02/W.npy"], \
        params["layer_02/b.npy"]
    w1 = params["layer_01/W.npy"]

    def loss(a_value, w11):
        h = np.tanh(np.column_stack([x[:, 0] * a_value + x[:, 1] * w11, x[:, 2] * a_value + b1[1]]))
        out = 1 / (1 + np.exp(-(h @ w2[:, 0] + b2[0])))
        return np.mean((out - y) ** 2)

    eps = 1e-6
    grad_a = (loss(a + eps, w1[1, 0]) - loss(a - eps, w1[1, 0])) / (2 * eps)
    w_after = np.load(tmp_path / "t" / "layer_01" / "W.npy")
    np.testing.assert_allclose(w_after[0, 0], a - 0.5 * grad_a, rtol=1e-6)
    assert w_after[0, 0] == w_after[2, 1] and w_after[1, 1] == 0 and w_after[2, 0] == 0
    assert np.load(tmp_path / "t" / "layer_01" / "b.npy")[0] == 0


@pytest.mark.parametrize("net, words", [
    ("4 units\n2 inputs\n0 1\n1 outputs\n3\n4 conns\n1 2\n2 3\n3 2\n0 3\n", "recursive"),
    ("4 units\n2 inputs\n0 1\n1 outputs\n2\n3 conns\n1 2\n1 3\n2 3\n", "must be exactly the deepest"),
    ("3 units\n2 inputs\n0 1\n1 outputs\n2\n2 conns\n1 2\n", "2 conns announced, 1 listed"),
    ("3 units\n2 inputs\n0 1\n1 outputs\n2\n1 conns\n1 7\n", "unit 7 of a network of 3 units"),
])
def test_networks_kerash_cannot_build_are_refused(tmp_path, net, words):
    (tmp_path / "bad.net").write_text(net)
    proc = run(["kerash", "dynet", "bad.net", "-o", "bad.mdl"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, words)
    assert not (tmp_path / "bad.mdl").exists()


def test_a_weight_shared_across_layers_is_refused(tmp_path):
    (tmp_path / "t.net").write_text("4 units\n2 inputs\n0 1\n1 outputs\n3\n3 conns\n1 2 wa\n2 3 wa\n0 3\n")
    proc = run(["kerash", "dynet", "t.net", "-o", "t.mdl"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "weight wa is shared by units of layers 1 and 2")
