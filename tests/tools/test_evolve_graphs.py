"""Architecture search over MDL graphs (issue 22): every mutation gives valid MDL, a child inherits its parent's
weights (an identity insertion keeps the function), the same seed gives the same search, and the controls."""

import collections

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, run

from kerash import model
from kerash.evolve import graphs
from kerash.network import Objective

STARTS = {
    "feed-forward": "(input, 2)\n(h, 8, <tanh>)\n(output, 2, <softmax>, <cross_entropy>)\n",
    "elman": (ROOT / "models" / "echo-elman.mdl").read_text(),
    "lstm-like": (ROOT / "models" / "adding-lstm.mdl").read_text(),
}


@pytest.mark.parametrize("name", sorted(STARTS))
def test_every_mutation_is_valid_mdl_over_thousands_of_draws(name):
    text = model.normalised_text(model.parse_model(STARTS[name], name))
    rng = np.random.default_rng(hash(name) % 2**32)
    kinds = collections.Counter()
    current = text
    for _ in range(1500):
        child, what, _ = graphs.mutate(current, rng)
        spec = model.parse_model(child, "child")  # parses: widths agree, every branch is read, …
        assert spec.format == "mdl" and child != current
        kinds[what.split()[0]] += 1
        current = child if rng.random() < 0.6 and len(child) < 4000 else text
    assert set(kinds) == set(graphs.KINDS), kinds


def _net(text, params):
    spec = model.parse_model(text, "m")
    net = model.build_network(spec, np.float64)
    net.set_params({k: {n: np.asarray(v, np.float64) for n, v in d.items()} for k, d in params.items()})
    return spec, net


def test_children_inherit_weights_and_an_identity_insertion_keeps_the_function():
    text = model.normalised_text(model.parse_model(STARTS["elman"], "elman"))
    parent_spec = model.parse_model(text, "p")
    parent_params = model.init_params(parent_spec, 3, np.float64)
    x = np.random.default_rng(0).normal(size=(5, 7, 1))
    _, parent_net = _net(text, parent_params)
    before = parent_net.forward(x)
    identities = others = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        child, what, fresh = graphs.mutate(text, rng)
        child_spec = model.parse_model(child, "c")
        params = graphs.inherit(child_spec, parent_spec, parent_params, fresh, rng, np.float64)
        for node in child_spec.nodes:  # a node the parent had keeps its weights where the shapes agree
            old = next((n for n in parent_spec.nodes if n.name == node.name and n.key), None)
            if node.key and old is not None and params[node.key]["W"].shape == parent_params[old.key]["W"].shape:
                np.testing.assert_array_equal(params[node.key]["W"], parent_params[old.key]["W"])
        if fresh:  # inserted as an identity of the width it reads
            _, child_net = _net(child, params)
            np.testing.assert_allclose(child_net.forward(x), before, rtol=1e-12, atol=1e-14)
            identities += 1
        else:
            others += 1
    assert identities >= 5 and others >= 100


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("echo")
    run(["kerash", "dataset", "echo", "-o", "e", "--samples", "160", "--steps", "8", "--delay", "2", "--seed", "1"],
        cwd=folder)
    (folder / "ff.mdl").write_text(STARTS["feed-forward"].replace("(input, 2)", "(input, 1)"))
    return folder


def search(folder, out, *extra, check=True):
    return run(["evolve", "-x", "e/data.npy", "-y", "e/labels.txt", "--from", "ff.mdl", "--epochs-per-eval", "2",
                "--seed", "4", "-o", out, *extra], cwd=folder, check=check)


def test_the_same_seed_gives_the_same_graph_search_with_any_workers(echo):
    search(echo, "one", "--population", "4", "--generations", "3", "--workers", "1")
    search(echo, "two", "--population", "4", "--generations", "3", "--workers", "2")

    def lineage(name):
        return [line.split("\t")[:8] for line in (echo / name / "evolve.tsv").read_text().splitlines()]

    assert lineage("one") == lineage("two")
    assert (echo / "one" / "best.mdl").read_text() == (echo / "two" / "best.mdl").read_text()
    texts = [row[4] for row in lineage("one")[1:]]
    assert len(texts) == len(set(texts)) == 1 + 3 * 3  # no graph evaluated twice
    run(["kerash", "graph", "one"], cwd=echo)
    assert model.parse_model((echo / "one" / "best.mdl").read_text(), "best").format == "mdl"


def test_a_population_of_one_climbs_and_the_budgets_stop_the_search(echo):
    out = search(echo, "climb", "--population", "1", "--generations", "6", "--force").stdout.decode().splitlines()
    rows = [line.split("\t") for line in out[1:]]
    assert [r[0] for r in rows] == ["0", "1", "2", "3", "4", "5", "6"]  # one mutant a generation, tried
    kept = (echo / "climb" / "best.mdl").read_text()
    assert min(rows, key=lambda r: (float(r[6]), r[1]))[4] in " ".join(kept.split())
    out = search(echo, "budget", "--population", "5", "--generations", "50", "--max-evaluations", "7").stdout
    assert len(out.decode().splitlines()) - 1 == 7
    out = search(echo, "train-fit", "--population", "3", "--generations", "1", "--fitness", "train").stdout
    assert len(out.decode().splitlines()) == 4
    proc = search(echo, "bad", "--fitness", "test", check=False)
    assert_one_line_error(proc, 2, "--fitness must be train or validation")


def test_fitness_on_separate_validation_data(echo):
    run(["kerash", "dataset", "echo", "-o", "v", "--samples", "40", "--steps", "8", "--delay", "2", "--seed", "9"],
        cwd=echo)
    out = search(echo, "with-val", "--population", "2", "--generations", "1", "--val-data", "v/data.npy",
                 "--val-labels", "v/labels.txt", "--validation-split", "0").stdout.decode().splitlines()
    best = run(["evaluate", "with-val", "-x", "v/data.npy", "-y", "v/labels.txt"], cwd=echo).stdout.decode()
    scores = dict(line.split("\t") for line in best.splitlines())
    losses = [float(line.split("\t")[6]) for line in out[1:]]
    assert abs(float(scores["loss"]) - min(losses)) < 1e-4 * max(1, min(losses))


def test_the_small_defects_of_neuromorph_models(tmp_path):
    """Issue 22, item 5: a second input-like node is warned about; glorot is xavier; huber_modified keeps its
    parameter (the boundary of its square, −4z beyond −1 by default); a step function warns that it cannot train."""
    (tmp_path / "two.mdl").write_text("(input, 2)\n(x2, 2)\n(output, 1, <sigmoid>, <mse>)\n")
    proc = run(["model-init", "two.mdl", "-o", "two"], cwd=tmp_path)
    assert b"two.mdl:2: x2: (x2, 2) reads the input through a dense identity layer" in proc.stderr
    (tmp_path / "g.mdl").write_text("/glorot,zero/\n(input, 3)\n(output, 2, <tanh>, <huber_modified, 2.4>)\n")
    (tmp_path / "x.mdl").write_text("/xavier,zero/\n(input, 3)\n(output, 2, <tanh>, <huber_modified, 2.4>)\n")
    run(["model-init", "g.mdl", "-o", "g", "--seed", "5"], cwd=tmp_path)
    run(["model-init", "x.mdl", "-o", "x", "--seed", "5"], cwd=tmp_path)
    assert (tmp_path / "g" / "layer_01" / "W.npy").read_bytes() == (tmp_path / "x" / "layer_01" / "W.npy").read_bytes()
    assert "<huber_modified, 2.4>" in (tmp_path / "g" / "model").read_text()
    from kerash import functions

    loss = functions.get_loss("huber_modified").bind([2.4])
    yhat, y = np.array([[-5.0], [0.5], [-2.0]]), np.array([[1.0], [1.0], [1.0]])
    z = yhat[:, 0]
    expected = np.where(z >= -2.4, np.maximum(0, 1 - z) ** 2, 3.4 ** 2 - 2 * 3.4 * (z + 2.4))
    np.testing.assert_allclose(loss.value(yhat, y), expected)
    eps = 1e-6
    numeric = (loss.value(yhat + eps, y) - loss.value(yhat - eps, y)) / (2 * eps)
    np.testing.assert_allclose(loss.grad(yhat, y)[:, 0], numeric, rtol=1e-6)
    default = functions.get_loss("huber_modified").bind()
    np.testing.assert_allclose(default.value(np.array([[-3.0]]), np.array([[1.0]])), [12.0])  # −4z
    (tmp_path / "s.model").write_text("2 1 1\ninput\ndense 2 binarystep\ndense 1 sigmoid\n")
    run(["model-init", "s.model", "-o", "s"], cwd=tmp_path)
    (tmp_path / "d.txt").write_text("0 1\n1 0\n")
    (tmp_path / "l.txt").write_text("1\n0\n")
    proc = run(["train", "s", "-x", "d.txt", "-y", "l.txt", "--epochs", "1"], cwd=tmp_path)
    assert b"binarystep's derivative is zero" in proc.stderr


def test_a_supergraph_mixes_its_parents_and_derives_the_strongest():
    """Item 3: the union of three graphs is valid MDL whose mix merges, pushed to one side, compute exactly that
    parent's function with its weights; the mixing logits get gradients (finite differences); derive keeps the
    body with the largest mixing weight, with the weights it learned in the supergraph."""
    from kerash.evolve import union

    rng = np.random.default_rng(1)
    base = model.normalised_text(model.parse_model(STARTS["feed-forward"].replace("(input, 2)", "(input, 1)"), "s"))
    texts, current = [base], base
    for steps in (5, 3):
        for _ in range(steps):
            current, _, _ = graphs.mutate(current, rng)
        texts.append(current)
    text, ends = union.union(texts)
    sup = model.parse_model(text, "supergraph")
    assert sum(n.kind == "merge" and n.layer.op == "mix" for n in sup.nodes) == 2
    specs = [model.parse_model(t, "g") for t in texts]
    params_list = [model.init_params(s, k, np.float64) for k, s in enumerate(specs)]
    params = union.inherit(sup, specs, params_list, ends, rng, np.float64)
    np.testing.assert_allclose(union.strengths(sup, params, 3), [1 / 3] * 3)
    x = np.random.default_rng(0).normal(size=(3, 6, 1))

    def forward(description, weights):
        net = model.build_network(model.parse_model(description, "m"), np.float64)
        net.set_params(weights)
        return net.forward(x)

    for k in range(3):  # all the weight on body k: the supergraph is graph k (its own output layer if widths agree)
        for j in (2, 3):
            params[sup.node(f"x{j}").key]["a"][...] = [60.0, -60.0] if j > k + 1 else [-60.0, 60.0] if j == k + 1 \
                else [0.0, 0.0]
        if ends[k] == ends[0]:
            out_key = specs[k].nodes[-1].key
            params[sup.node("output").key]["W"][...] = params_list[k][out_key]["W"]
            params[sup.node("output").key]["b"][...] = params_list[k][out_key]["b"]
            np.testing.assert_allclose(forward(text, params), forward(texts[k], params_list[k]), atol=1e-12)
        chosen, weights, derived_text, derived = union.derive(sup, params, texts, params_list, ends)
        assert chosen == k and derived_text == texts[k] and weights[k] > 0.99
    net = model.build_network(sup, np.float64)
    for j in (2, 3):
        params[sup.node(f"x{j}").key]["a"][...] = [0.4, -0.3]
    net.set_params(params)
    net.use_arena()
    y = np.eye(2)[np.random.default_rng(3).integers(0, 2, size=(3, 6))]
    from helpers import assert_network_gradient

    keys = [(sup.node(f"x{j}").key, "a") for j in (2, 3)]
    picked = [start for key, name, start in _starts(net) if (key, name) in keys]
    assert len(picked) == 2  # the mixing logits are parameters of the flat arena like any weight
    assert_network_gradient(net, Objective(sup.loss, net), x, y, tol=1e-6,
                            indices=[i for s in picked for i in (s, s + 1)])


def _starts(net):
    """(key, name, offset in the flat arena) of every parameter."""
    flat = net.arena.params
    base = flat.__array_interface__["data"][0]
    for key, name, view in net.arena.views(flat):
        yield key, name, (view.__array_interface__["data"][0] - base) // flat.itemsize


def test_evolve_union_scores_the_supergraph_and_the_derived_graph(echo):
    out = search(echo, "united", "--population", "4", "--generations", "2", "--union", "3").stdout.decode()
    rows = [line.split("\t") for line in out.splitlines()[1:]]
    assert rows[-2][1] == "g3-union" and rows[-2][3].startswith("union of ")
    assert rows[-1][1] == "g3-derived" and rows[-1][3].startswith("derived: the body of ")
    assert "mix" in rows[-2][4] and "mix" not in rows[-1][4]
