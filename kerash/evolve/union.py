"""Exploitation by supergraph union (NeuroMorph's "differential supergraph union", done as DARTS does).

The best K graphs of the exploration are united into one MDL supergraph:
each graph's body (its nodes between the input and the output layer,
renamed p1_…, p2_…) is an alternative path from the input, the bodies after
the first run as branches of a split and end in a projection to the first
body's width (an identity when the widths agree), and `mix` merges — s₀u +
s₁v, s = softmax of two learnable logits — join them one after another
before a shared output layer.  The supergraph trains like any model (the
mixing logits with the weights, by gradient descent), then `derive` keeps
the alternative with the largest total mixing weight: that parent's graph,
with the weights its body learned inside the supergraph, to fine-tune.
"""

import numpy as np

from .. import model as modelmod
from ..errors import UsageError
from . import graphs


def _bodies(specs):
    """[(statements of each body, output node spec)] checked to share input and output."""
    found = []
    first = specs[0]
    for spec in specs:
        if spec.format != "mdl":
            raise UsageError("a supergraph unites MDL graphs (start evolve from an MDL description)")
        if spec.input_shape != first.input_shape:
            raise UsageError("the graphs to unite read inputs of different widths")
        out, out0 = spec.nodes[-1], first.nodes[-1]
        if (out.kind != "dense" or out.layer.units != out0.layer.units
                or out.layer.activation.text() != out0.layer.activation.text() or spec.loss.text() != first.loss.text()):
            raise UsageError("the graphs to unite must end in the same output layer and loss")
        program = graphs.statements(spec)
        found.append(program[1:-1])
    return found


def _renamed(body, prefix, input_name, output_name):
    """The statements of a body with every name (and every name a merge reads) prefixed."""
    def name(n):
        return "input" if n == input_name else ("output" if n == output_name else prefix + n)

    out = []
    for s in body:
        s = dict(s, name=name(s["name"]))
        if s["t"] == "merge":
            s["other"] = name(s["other"])
        if s["t"] == "split":
            s["branches"] = [_renamed(b, prefix, input_name, output_name) for b in s["branches"]]
        if s["t"] == "raw":  # a node kept as written: rename its own name only
            s["line"] = s["line"].replace(f"({s['line'][1:].split(',', 1)[0].strip()},", f"({s['name']},", 1)
        out.append(s)
    return out


def _last_width(spec):
    """The width of the value the output layer reads."""
    source = spec.nodes[-1].inputs[0][0]
    return spec.node(source).shape[0]


def union(texts):
    """(MDL text of the supergraph of `texts`, [the width each body ends with])."""
    specs = [modelmod.parse_model(t, f"graph {k + 1}") for k, t in enumerate(texts)]
    bodies = _bodies(specs)
    header = graphs._node_lines(specs[0])[0]
    width = _last_width(specs[0])
    ends = [_last_width(s) for s in specs]
    renamed = [_renamed(b, f"p{k + 1}_", s.nodes[0].name, s.nodes[-1].name)
               for k, (b, s) in enumerate(zip(bodies, specs))]
    branches = [body + [{"t": "dense", "name": f"p{k + 2}_to", "width": width, "act": "identity"}]
                for k, body in enumerate(renamed[1:])]
    program = [{"t": "input", "name": "input", "width": specs[0].input_shape[0]},
               {"t": "split", "name": "u", "branches": branches}]
    program += renamed[0]
    program += [{"t": "merge", "name": f"x{k + 2}", "other": f"p{k + 2}_to", "op": "mix"} for k in range(len(branches))]
    out = specs[0].nodes[-1]
    program.append({"t": "dense", "name": "output", "width": out.layer.units, "act": out.layer.activation.text()})
    text = graphs.text_of(header, program, specs[0].loss.text())
    return modelmod.normalised_text(modelmod.parse_model(text, "supergraph")), ends


def inherit(super_spec, specs, params_list, ends, rng, dtype=np.float32):
    """The supergraph's weights: each body's from its graph, the first graph's output layer, identity
    projections where the widths agree, the mixing logits giving every body the same weight."""
    params = modelmod.init_params(super_spec, int(rng.integers(2**63)), dtype)
    width = ends[0]
    for node in super_spec.nodes:
        if node.key is None:
            continue
        target = params[node.key]
        if node.name.endswith("_to"):
            k = int(node.name[1:].split("_")[0]) - 1
            if ends[k] == width:
                target["W"][...] = np.eye(width, dtype=dtype)
                target["b"][...] = 0
            continue
        if node.kind == "merge":  # x_k mixes k − 1 bodies with body k: (k − 1)/k and 1/k, so each starts at 1/K
            k = int(node.name[1:])
            target["a"][...] = [np.log(k - 1), 0.0]
            continue
        k, original = (0, specs[0].nodes[-1].name) if node.name == "output" else (
            int(node.name[1:].split("_")[0]) - 1, node.name.split("_", 1)[1])
        keys = {n.name: n.key for n in specs[k].nodes if n.key}
        source = params_list[k].get(keys.get(original))
        if source is not None:
            for name, array in target.items():
                if name in source and source[name].shape == array.shape:
                    array[...] = source[name]
    return params


def strengths(super_spec, params, count):
    """The total mixing weight of each of the `count` bodies."""
    weights = np.ones(count)
    for k in range(2, count + 1):
        a = params[super_spec.node(f"x{k}").key]["a"].astype(np.float64)
        s = np.exp(a - a.max())
        s /= s.sum()
        weights[:k - 1] *= s[0]
        weights[k - 1] *= s[1]
    return weights


def derive(super_spec, params, texts, params_list, ends):
    """(index of the strongest body, its graph's text, its weights as learned in the supergraph)."""
    weights = strengths(super_spec, params, len(texts))
    k = int(np.argmax(weights))
    spec = modelmod.parse_model(texts[k], "derived")
    derived = {key: {n: a.copy() for n, a in d.items()} for key, d in params_list[k].items()}
    keys = {n.name: n.key for n in super_spec.nodes if n.key}
    for node in spec.nodes:
        if node.key is None:
            continue
        source = keys.get("output" if node is spec.nodes[-1] else f"p{k + 1}_{node.name}")
        if node is spec.nodes[-1] and ends[k] != ends[0]:
            continue  # its own output layer: the shared one read a projection
        if source is not None:
            for name, array in derived[node.key].items():
                if params[source][name].shape == array.shape:
                    array[...] = params[source][name]
    return k, weights, texts[k], derived
