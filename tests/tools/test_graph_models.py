"""Graph models (MDL) through the tools: model-init, summary, graph, predict, evaluate, backprop,
model-update, train, the sequence data sets, and the language's errors and warnings."""

import json

import numpy as np
import pytest
from conftest import ROOT, assert_one_line_error, parse, run, tool_env
from helpers import make_model, processes_column, weights

SEEDS = ROOT / "models"  # NeuroMorph's two example models, as the seed shipped them
ELMAN = "(input, 1)\n{xh, state, concatenate}\n(h, 12, <tanh>)\n[state,]\n(output, 2, <softmax>, <cross_entropy>)\n"


# ---------------------------------------------------------------- the language


@pytest.mark.parametrize("name,layers,total", [("neuromorph-lstm.mdl", 6, 6 * 20), ("neuromorph-big.mdl", 8, 8 * 20)])
def test_seed_models_init_and_read_back(tmp_path, name, layers, total):
    proc = run(["model-init", str(SEEDS / name), "-o", "m", "--seed", "1"], cwd=tmp_path)
    folder = tmp_path / "m"
    assert sorted(p.name for p in folder.glob("layer_*")) == [f"layer_{k:02d}" for k in range(1, layers + 1)]
    assert all(np.load(folder / f"layer_{k:02d}" / "W.npy").shape == (4, 4) for k in range(1, layers + 1))
    # the directory's normalised description is MDL again, and parses to the same model
    again = run(["kerash", "summary", "m"], cwd=tmp_path).stdout.decode()
    original = run(["kerash", "summary", str(SEEDS / name)], cwd=tmp_path).stdout.decode()
    assert again.replace('"m"', "X") == original.replace(f'"{name[:-4]}"', "X")
    assert f"Total params: {total}" in again
    if name == "neuromorph-big.mdl":
        # huber_modified keeps its parameter (issue 22); standby's forward reference closes no cycle
        err = proc.stderr.decode()
        assert "<huber_modified, 2.4>" in (folder / "model").read_text()
        assert "neuromorph-big.mdl:10: standby: 'stalerecur' is written later" in err
        assert len(err.strip().splitlines()) == 1


def test_summary_shows_connections_and_marks_recurrent_links(tmp_path):
    out = run(["kerash", "summary", str(SEEDS / "neuromorph-lstm.mdl")]).stdout.decode()
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(" ") and "(" in line}
    assert "input, lastrecur[t-1]" in rows["a"] and "(Add)" in rows["a"]
    assert "forget, prevstaterecur[t-1]" in rows["state0"] and "(Multiply)" in rows["state0"]
    assert "state0, pi" in rows["state1"] and "[t-1]" not in rows["state1"]
    assert "(Tap)" in rows["lastrecur"] and "(Split)" in rows["b"]
    assert " 20 " in rows["include"] and "sigmoid" in rows["include"]


def test_graph_prints_every_node_and_edge_as_dot(tmp_path):
    text = (SEEDS / "neuromorph-big.mdl").read_text()
    dot = run(["kerash", "graph", str(SEEDS / "neuromorph-big.mdl")]).stdout.decode()
    assert dot.startswith('digraph "neuromorph-big" {') and dot.rstrip().endswith("}")
    names = ["input", "a", "c2", "b", "b1", "d", "standby", "e", "f", "stale", "stalerecur", "g", "c", "c1", "output"]
    for name in names:
        assert name in text and f'  "{name}" [' in dot, name
    edges = [line.strip() for line in dot.splitlines() if "->" in line]
    expected = {("input", "a"), ("a", "c2"), ("g", "c2"), ("c2", "b"), ("b", "b1"), ("b1", "d"), ("d", "standby"),
                ("stalerecur", "standby"), ("standby", "e"), ("b1", "f"), ("f", "stale"), ("stale", "stalerecur"),
                ("stale", "g"), ("b1", "c"), ("c", "c1"), ("e", "c1"), ("c1", "output")}
    found = {tuple(part.strip().strip('"') for part in e.split("[")[0].rstrip(";").split("->")) for e in edges}
    assert found == expected
    dashed = {tuple(p.strip().strip('"') for p in e.split("[")[0].split("->")) for e in edges if "dashed" in e}
    assert dashed == {("g", "c2"), ("stalerecur", "standby")}
    # a line-format model is a chain
    chain = run(["kerash", "graph", str(ROOT / "models" / "digits-cnn.model")]).stdout.decode()
    assert chain.count("->") == 7 and "dashed" not in chain


BAD = [
    ("(input, 2)\n(a, 3, <tanh>)\n{m, nowhere, additive}\n(out, 1, <identity>, <mse>)\n", 3, "m: unknown node 'nowhere'"),
    ("(input, 2)\n(a, 3, <tanh>)\n(a, 3, <tanh>)\n(out, 1, <identity>, <mse>)\n", 3, "a: the name is already used (line 2)"),
    ("(input, 2)\n(a, 3, <tanh>)\n{m, input, additive}\n(out, 1, <identity>, <mse>)\n", 3,
     "m: an additive merge of 'a' (width 3) and 'input' (width 2) needs equal widths"),
    ("(input, 2)\n[s, (a, 3, <tanh>) | (b, 3, <tanh>)]\n{m, a, concatenate}\n(out, 1, <identity>, <mse>)\n", 2,
     "b: the result of this branch is used by no merge"),
    ("(input, 2)\n[s, (a, 3, <tanh>) | ]\n{m, a, concatenate}\n(out, 1, <identity>, <mse>)\n", 2, "s: an empty branch"),
    ("(input, 2)\n(a, 3, <tanh>, <mse>)\n(out, 1, <identity>, <mse>)\n", 3, "out: a second loss (a has one)"),
    ("(input, 2)\n(a, 3, <tanh>, <mse>)\n(out, 1, <identity>)\n", 2, "a: a loss on a node that is not the last"),
    ("(input, 2)\n(a, 3, <tanh>)\n(out, 1, <identity>)\n", 3, "out: the output needs a loss"),
    ("(input, 2, <tanh>)\n(out, 1, <identity>, <mse>)\n", 1, "input: the input takes no function"),
    ("(input, 2)\n(a, 3, <tahn>)\n(out, 1, <identity>, <mse>)\n", 2, "a: unknown activation 'tahn'; did you mean 'tanh'"),
    ("(input, 2)\n(out, 1, <identity>, <mes>)\n", 2, "out: unknown loss 'mes'"),
    ("/xavir,zero/\n(input, 2)\n(out, 1, <identity>, <mse>)\n", 1, "unknown initialiser 'xavir'"),
    ("(input, 2)\n{m, m, concatenate}\n(out, 1, <identity>, <mse>)\n", 2, "m: its width depends on itself"),
    ("(input, 2)\n(a, 3, <tanh>\n(out, 1, <identity>, <mse>)\n", 3, "a: expected ')', found '('"),
]


@pytest.mark.parametrize("text,line,message", BAD)
def test_bad_mdl_gets_a_located_one_line_error_and_creates_nothing(tmp_path, text, line, message):
    (tmp_path / "bad.mdl").write_text(text)
    proc = run(["model-init", "bad.mdl", "-o", "m"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, f"bad.mdl:{line}: {message}")
    assert not (tmp_path / "m").exists()


def test_an_mdl_description_normalises_to_explicit_functions(tmp_path):
    text = "# comment\n/he,const_flat 0.1/\n(inp, 3)  (h, 4) # no activation: identity\n{c, inp, concatenate}\n" \
           "(out, 2, <relu_leaky, 0.2>, <huber, 2.5>)\n"
    model = make_model(tmp_path, text, name="n")
    normal = (model / "model").read_text()
    body = [line for line in normal.splitlines() if not line.startswith("#")]
    assert body == ["/he,const_flat 0.1/", "(inp, 3)", "(h, 4, <identity>)", "{c, inp, concatenate}",
                    "(out, 2, <leaky_relu, 0.2>, <huber, 2.5>)"]
    assert np.load(model / "layer_02" / "W.npy").shape == (7, 2)  # concatenation: 4 + 3 inputs
    assert np.all(np.load(model / "layer_01" / "b.npy") == 0.1)


# ---------------------------------------------------------------- tools on sequences


@pytest.fixture(scope="module")
def elman(tmp_path_factory):
    folder = tmp_path_factory.mktemp("elman")
    (folder / "elman.mdl").write_text(ELMAN)
    run(["model-init", "elman.mdl", "-o", "m", "--seed", "2", "--dtype", "float64"], cwd=folder)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2, size=(6, 5, 1)).astype(float)
    with open(folder / "x.txt", "w") as f:  # sequences as text: a shape line, then rows of I values
        f.write("# shape: 6 5 1\n" + "\n".join(str(v) for v in x.ravel()) + "\n")
    y = rng.integers(0, 2, size=(6, 5))
    np.savetxt(folder / "y.txt", y, fmt="%d")
    return folder, x, y


def elman_forward(folder, x):
    """The Elman network's outputs, computed with numpy from the weight files."""
    w = weights(folder / "m")
    h = np.zeros((len(x), 12))
    out = []
    for t in range(x.shape[1]):
        h = np.tanh(np.concatenate([x[:, t], h], axis=1) @ w["layer_01/W"] + w["layer_01/b"])
        z = h @ w["layer_02/W"] + w["layer_02/b"]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        out.append(e / e.sum(axis=1, keepdims=True))
    return np.stack(out, axis=1)


def test_predict_and_evaluate_sequences(elman):
    folder, x, y = elman
    expected = elman_forward(folder, x)
    out = run(["predict", "m", "x.txt"], cwd=folder).stdout.decode()
    assert out.splitlines()[0] == "# shape: 6 5 2"
    np.testing.assert_allclose(parse(out).reshape(6, 5, 2), expected, rtol=1e-12)
    classes = parse(run("predict m --classes < x.txt", cwd=folder).stdout)
    np.testing.assert_array_equal(classes, expected.argmax(axis=2))
    lines = dict(line.split("\t") for line in run(["evaluate", "m", "-x", "x.txt", "-y", "y.txt"], cwd=folder).stdout.decode().splitlines())
    per_step = -np.log(np.take_along_axis(expected, y[..., None], axis=2)[..., 0])
    assert float(lines["loss"]) == pytest.approx(per_step.mean(axis=1).mean(), rel=1e-5)
    assert float(lines["accuracy"]) == pytest.approx(np.mean(expected.argmax(axis=2) == y), abs=1e-4)
    assert int(lines["correct"]) == np.sum(expected.argmax(axis=2) == y)
    # the last step only: labels (N,) are classes scored at the last step
    np.savetxt(folder / "last.txt", y[:, -1], fmt="%d")
    lines = dict(line.split("\t") for line in run(["evaluate", "m", "-x", "x.txt", "-y", "last.txt"], cwd=folder).stdout.decode().splitlines())
    assert float(lines["loss"]) == pytest.approx(per_step[:, -1].mean(), rel=1e-5)


def test_predict_node_of_a_recurrent_graph_gives_every_step(elman):
    """Issue 25: an MDL node's values at every time step (N, T, width), against the numpy unrolling."""
    folder, x, _ = elman
    w = weights(folder / "m")
    h, hidden = np.zeros((len(x), 12)), []
    for t in range(x.shape[1]):
        h = np.tanh(np.concatenate([x[:, t], h], axis=1) @ w["layer_01/W"] + w["layer_01/b"])
        hidden.append(h)
    hidden = np.stack(hidden, axis=1)
    out = run(["predict", "m", "x.txt", "--node", "h"], cwd=folder).stdout.decode()
    assert out.splitlines()[0] == "# shape: 6 5 12"
    np.testing.assert_allclose(parse(out).reshape(6, 5, 12), hidden, rtol=1e-12)
    both = parse(run(["predict", "m", "x.txt", "--node", "h", "--node", "output"], cwd=folder).stdout).reshape(6, 5, 14)
    np.testing.assert_allclose(both, np.concatenate([hidden, elman_forward(folder, x)], axis=2), rtol=1e-12)


def test_backprop_and_update_equal_one_step_of_train(elman, tmp_path):
    folder, x, y = elman
    run(f"cp -r {folder}/m {tmp_path}/a && cp -r {folder}/m {tmp_path}/b && cp {folder}/x.txt {folder}/y.txt {tmp_path}/", cwd=tmp_path)
    grads = run(["backprop", "a", "-x", "x.txt", "-y", "y.txt", "-o", "g"], cwd=tmp_path)
    stats = json.loads((tmp_path / "g" / "stats.json").read_text())
    assert stats["samples"] == 6 and stats["correct"] <= 30
    assert grads.returncode == 0
    run(["model-update", "a", "g", "--lr", "0.3"], cwd=tmp_path)
    run(["train", "b", "-x", "x.txt", "-y", "y.txt", "--epochs", "1", "-b", "6", "--lr", "0.3"], cwd=tmp_path)
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-12, err_msg=key)
    assert not np.allclose(a["layer_01/W"], weights(folder / "m")["layer_01/W"])


def test_workers_shard_sequences_and_resume_is_exact(tmp_path):
    run(["kerash", "dataset", "echo", "-o", "echo", "--samples", "64", "--steps", "8", "--delay", "2", "--seed", "4"], cwd=tmp_path)
    make_model(tmp_path, ELMAN, name="one", seed=5)
    for name in ("two", "half"):
        run(["cp", "-r", "one", name], cwd=tmp_path)
    # four shards in every run: the rule makes a batch of this small model one, which leaves the worker nothing to do
    common = ["-x", "echo/data.npy", "-y", "echo/labels.txt", "-b", "16", "--optimizer", "adam", "--lr", "0.01",
              "--seed", "1", "--shards", "4"]
    run(["train", "one", *common, "--epochs", "4", "--workers", "1"], cwd=tmp_path)
    run(["train", "two", *common, "--epochs", "4", "--workers", "2"], cwd=tmp_path,
        env=tool_env(KERASH_ENGINE_ADAPT=0))  # the worker computes at every step
    assert processes_column(tmp_path / "two") == [2.0] * 4
    run(["train", "half", *common, "--epochs", "2", "--workers", "1"], cwd=tmp_path)
    run(["train", "half", *common, "--epochs", "2", "--workers", "1"], cwd=tmp_path)
    one, two, half = (weights(tmp_path / n) for n in ("one", "two", "half"))
    for key in one:
        np.testing.assert_array_equal(two[key], one[key], err_msg=key)
        np.testing.assert_array_equal(half[key], one[key], err_msg=key)


def test_sequence_data_must_fit_the_model(elman):
    folder, _, _ = elman
    np.save(folder / "wide.npy", np.zeros((3, 4, 2)))
    assert_one_line_error(run(["predict", "m", "wide.npy"], cwd=folder, check=False), 1,
                          "sequence steps have 2 values but the model input is 1 wide")
    assert_one_line_error(run(["predict", "m", "y.txt"], cwd=folder, check=False), 1, "the model is recurrent: give sequences")
    np.save(folder / "steps.npy", np.zeros((6, 4, 1)))
    assert_one_line_error(run(["evaluate", "m", "-x", "steps.npy", "-y", "y.txt"], cwd=folder, check=False), 1,
                          "fit neither the last step")


# ---------------------------------------------------------------- data sets and learning


def test_sequence_data_sets_hold_what_they_say(tmp_path):
    run("kerash dataset echo -o e --samples 50 --steps 9 --delay 3 --seed 1 && "
        "kerash dataset parity -o p --samples 50 --steps 9 --seed 1 && "
        "kerash dataset adding -o a --samples 50 --steps 12 --seed 1", cwd=tmp_path)
    bits, echo = np.load(tmp_path / "e" / "data.npy")[..., 0], np.loadtxt(tmp_path / "e" / "labels.txt")
    assert bits.shape == echo.shape == (50, 9) and set(np.unique(bits)) == {0, 1}
    np.testing.assert_array_equal(echo[:, 3:], bits[:, :-3])
    assert np.all(echo[:, :3] == 0)
    bits, parity = np.load(tmp_path / "p" / "data.npy")[..., 0], np.loadtxt(tmp_path / "p" / "labels.txt")
    for t in range(9):
        np.testing.assert_array_equal(parity[:, t], bits[:, : t + 1].sum(axis=1) % 2)
    x, target = np.load(tmp_path / "a" / "data.npy"), np.loadtxt(tmp_path / "a" / "labels.txt")
    assert x.shape == (50, 12, 2) and target.shape == (50,)
    marks = x[:, :, 1]
    assert np.all(marks.sum(axis=1) == 2) and np.all(marks[:, :6].sum(axis=1) == 1)
    np.testing.assert_allclose(target, (x[:, :, 0] * marks).sum(axis=1), rtol=1e-15)


def echo_accuracy_after_delay(folder, model, delay):
    """Accuracy of predict --classes on the steps that need memory (t ≥ delay)."""
    classes = parse(run(["predict", model, "val/data.npy", "--classes"], cwd=folder).stdout)
    labels = np.loadtxt(folder / "val" / "labels.txt")
    return np.mean(classes[:, delay:] == labels[:, delay:])


def test_an_elman_network_learns_the_echo_and_needs_its_memory_for_it(tmp_path):
    run("kerash dataset echo -o echo --samples 800 --steps 12 --delay 5 --seed 1 && "
        "kerash dataset echo -o val --samples 300 --steps 12 --delay 5 --seed 2", cwd=tmp_path)
    memoryless = "(input, 1)\n(h, 12, <tanh>)\n(output, 2, <softmax>, <cross_entropy>)\n"
    for name, text in (("elman", (ROOT / "models" / "echo-elman.mdl").read_text()), ("flat", memoryless)):
        make_model(tmp_path, text, name=name, seed=3, dtype="float32")
        run(["train", name, "-x", "echo/data.npy", "-y", "echo/labels.txt", "--epochs", "25", "-b", "16",
             "--optimizer", "adam", "--lr", "0.01", "--seed", "1"], cwd=tmp_path)
    assert echo_accuracy_after_delay(tmp_path, "elman", 5) > 0.99
    assert 0.4 < echo_accuracy_after_delay(tmp_path, "flat", 5) < 0.6  # chance: it cannot remember
