"""Mutations of MDL graph genomes, over every construct of the language.

A genome's description is read into statements — the input, dense layers,
merges, splits with their branches, and other nodes kept as written — one
is changed, and the text is written again and parsed: a child that does not
parse (widths that disagree, a branch nothing uses, …) is drawn again, so
every child is valid MDL.  The mutations:

* insert a dense node (half the time an identity of the width it reads,
  which leaves the function unchanged: network morphism), remove one;
* change a dense node's width or activation;
* add a branch, joined back by a merge of any op;
* add a skip connection (a merge naming an earlier node);
* add a recurrent link (a merge naming a node written at or after it: the
  previous step's value), or remove one;
* change a merge's op.

Node names survive a mutation, so a child inherits its parent's trained
weights node by node wherever the shapes overlap (inherit).
"""

import numpy as np

from .. import functions
from .. import model as modelmod
from ..errors import KerashError
from ..layers.merge import OPS
from ..model.mdl import mdl_text

WIDTHS = (4, 8, 12, 16, 24, 32, 48, 64)
ACTIVATIONS = ("tanh", "sigmoid", "relu", "identity", "relu_leaky", "elu", "softplus")
EXPLORED_OPS = tuple(op for op in OPS if op != "mix")  # mix belongs to the supergraph union (union.py)
EQUAL_WIDTH_OPS = tuple(op for op in EXPLORED_OPS if op != "concatenate")
TRIES = 60


def _node_lines(spec):
    """{node name: its line of MDL} and the initialisation header, as mdl_text writes them."""
    lines = mdl_text(spec)
    found = {}
    for line in lines[1:]:
        text = line.strip()
        if text[:1] in "({" and "," in text:
            found[text[1:].split(",", 1)[0].strip()] = text
    return lines[0], found


def statements(spec):
    """The description as nested statements (dicts) that mutations edit."""
    _, lines = _node_lines(spec)

    def convert(tree):
        out = []
        for item in tree:
            if isinstance(item, tuple):
                name, branches = item
                out.append({"t": "split", "name": name, "branches": [convert(b) for b in branches]})
                continue
            node = spec.node(item)
            if node.kind == modelmod.spec.INPUT:
                out.append({"t": "input", "name": item, "width": node.shape[0]})
            elif node.kind == "dense":
                out.append({"t": "dense", "name": item, "width": node.layer.units,
                            "act": node.layer.activation.text()})
            elif node.kind == "merge":
                out.append({"t": "merge", "name": item, "other": node.inputs[1][0], "op": node.layer.op})
            else:
                out.append({"t": "raw", "name": item, "line": lines[item]})
        return out

    return convert(spec.tree)


def text_of(header, program, loss):
    """MDL text of statements; the last top-level dense node carries the loss."""
    out = [header]

    def write(seq, depth, top):
        pad = "\t" * depth
        for k, s in enumerate(seq):
            last = top and k == len(seq) - 1
            if s["t"] == "input":
                out.append(f"{pad}({s['name']}, {s['width']})")
            elif s["t"] == "dense":
                act = "<" + ", ".join(s["act"].split()) + ">"
                out.append(f"{pad}({s['name']}, {s['width']}, {act}" + (f", <{', '.join(loss.split())}>)" if last else ")"))
            elif s["t"] == "merge":
                out.append(f"{pad}{{{s['name']}, {s['other']}, {s['op']}}}")
            elif s["t"] == "split":
                if not s["branches"]:
                    out.append(f"{pad}[{s['name']},]")
                    continue
                out.append(f"{pad}[{s['name']},")
                for b, branch in enumerate(s["branches"]):
                    if b:
                        out.append(f"{pad}|")
                    write(branch, depth + 1, False)
                out.append(f"{pad}]")
            else:
                out.append(pad + s["line"])

    write(program, 0, True)
    return "\n".join(out) + "\n"


def _walk(program):
    """Every (sequence, index, statement), branches included."""
    for k, s in enumerate(program):
        yield program, k, s
        if s["t"] == "split":
            for branch in s["branches"]:
                yield from _walk(branch)


def _names(program):
    return {s["name"] for _, _, s in _walk(program)}


def _fresh(program, prefix):
    used = _names(program)
    k = 1
    while f"{prefix}{k}" in used:
        k += 1
    return f"{prefix}{k}"


def _referenced(program):
    return {s["other"] for _, _, s in _walk(program) if s["t"] == "merge"}


def _value_before(seq, k, widths, feeder):
    """(name, width) of the value a statement inserted at seq[k] would read."""
    name = seq[k - 1]["name"] if k else feeder
    return name, widths.get(name)


def _feeders(program, feeder=None):
    """{id(sequence): the name of what feeds its first statement}."""
    found = {id(program): feeder}
    for seq, k, s in _walk(program):
        if s["t"] == "split":
            for branch in s["branches"]:
                found[id(branch)] = s["name"]
    return found


def _pick(rng, items):
    """One of items, drawn uniformly (one draw of rng)."""
    return items[int(rng.integers(len(items)))]


def _act(rng):
    return _pick(rng, ACTIVATIONS)


def _try_mutation(program, widths, rng, kind):
    """Apply one mutation of `kind` to program (in place); (description, {new node: 'identity'}) or None."""
    top = program
    feeders = _feeders(program)
    hidden = [(seq, k, s) for seq, k, s in _walk(program) if s["t"] == "dense" and not (seq is top and k == len(top) - 1)]
    merges = [(seq, k, s) for seq, k, s in _walk(program) if s["t"] == "merge"]
    sequences = [top] + [b for _, _, s in _walk(program) if s["t"] == "split" for b in s["branches"]]
    if kind == "insert":
        seq = _pick(rng, sequences)
        low, high = (1, len(seq) - 1) if seq is top else (0, len(seq) - 1)
        if high < low:
            return None
        k = int(rng.integers(low, high + 1))
        _, width = _value_before(seq, k, widths, feeders[id(seq)])
        name = _fresh(program, "n")
        if width and rng.random() < 0.5:  # an identity of the width it reads: the function is unchanged
            seq.insert(k, {"t": "dense", "name": name, "width": width, "act": "identity"})
            return f"insert {name} (identity {width})", {name: "identity"}
        w, act = int(_pick(rng, WIDTHS)), _act(rng)
        seq.insert(k, {"t": "dense", "name": name, "width": w, "act": act})
        return f"insert {name} ({w}, {act})", {}
    if kind == "remove":
        free = [(seq, k, s) for seq, k, s in hidden if s["name"] not in _referenced(program)]
        if not free:
            return None
        seq, k, s = _pick(rng, free)
        del seq[k]
        return f"remove {s['name']}", {}
    if kind == "width":
        if not hidden:
            return None
        _, _, s = _pick(rng, hidden)
        old = s["width"]
        s["width"] = max(2, int(round(old * (0.5, 0.75, 1.5, 2.0)[int(rng.integers(4))])))
        if s["width"] == old:
            s["width"] += 1
        return f"width {s['name']} {old}→{s['width']}", {}
    if kind == "activation":
        if not hidden:
            return None
        _, _, s = _pick(rng, hidden)
        old, s["act"] = s["act"], _act(rng)
        return (f"activation {s['name']} {old}→{s['act']}", {}) if s["act"] != old else None
    if kind == "branch":
        if len(top) < 2:
            return None
        k = int(rng.integers(1, len(top)))
        _, width = _value_before(top, k, widths, None)
        op = _pick(rng, EXPLORED_OPS)
        w = width if op != "concatenate" else int(_pick(rng, WIDTHS))
        split = _fresh(program, "s")
        top.insert(k, {"t": "split", "name": split, "branches": [[]]})
        cell = _fresh(program, "b")  # each name fresh once the one before is in the program
        top[k]["branches"][0].append({"t": "dense", "name": cell, "width": w, "act": _act(rng)})
        merge = _fresh(program, "m")
        top.insert(k + 1, {"t": "merge", "name": merge, "other": cell, "op": op})
        return f"branch {split}: {cell} ({w}) joined by {op} {merge}", {}
    if kind in ("skip", "recurrent"):
        if len(top) < 3:
            return None
        k = int(rng.integers(1, len(top)))  # the merge goes at top[k]
        _, width = _value_before(top, k, widths, None)
        candidates = top[:k - 1] if kind == "skip" else top[k:]  # earlier than its predecessor, or at/after it
        candidates = [s for s in candidates if s["t"] != "split" or s["branches"] == []] + \
            [s for s in candidates if s["t"] == "split" and s["branches"]]
        if not candidates:
            return None
        other = _pick(rng, candidates)["name"]
        same = widths.get(other) == width
        op = _pick(rng, EQUAL_WIDTH_OPS) if same and rng.random() < 0.7 else "concatenate"
        name = _fresh(program, "m")
        top.insert(k, {"t": "merge", "name": name, "other": other, "op": op})
        return f"{kind} {name}: {op} with {other}" + (" (previous step)" if kind == "recurrent" else ""), {}
    if kind == "unlink":
        order = {s["name"]: n for n, (_, _, s) in enumerate(_walk(program))}
        links = [(seq, k, s) for seq, k, s in merges if order[s["other"]] >= order[s["name"]]]
        if not links:
            return None
        seq, k, s = _pick(rng, links)
        if s["name"] in _referenced(program):
            return None
        del seq[k]
        return f"unlink {s['name']} (recurrent from {s['other']})", {}
    if kind == "op":
        if not merges:
            return None
        _, _, s = _pick(rng, merges)
        old = s["op"]
        choices = [op for op in EXPLORED_OPS if op != old]
        s["op"] = _pick(rng, choices)
        return f"op {s['name']} {old}→{s['op']}", {}
    return None


KINDS = ("insert", "remove", "width", "activation", "branch", "skip", "recurrent", "unlink", "op")


def mutate(parent_text, rng, seen=()):
    """(child text, description, {new node: how to initialise it}) of a valid child that differs from the
    parent and from every text in `seen`; KerashError when none is found in TRIES draws."""
    spec = modelmod.parse_model(parent_text, "parent")
    if spec.format != "mdl":
        raise KerashError("graph mutations need an MDL genome")
    header, _ = _node_lines(spec)
    widths = {n.name: n.shape[0] for n in spec.nodes}
    loss = spec.loss.text()
    for _ in range(TRIES):
        program = statements(spec)
        kind = _pick(rng, KINDS)
        done = _try_mutation(program, widths, rng, kind)
        if done is None:
            continue
        text = text_of(header, program, loss)
        try:
            child = modelmod.parse_model(text, "child")
        except KerashError:
            continue  # widths that disagree, a branch nothing reads, …: drawn again
        normal = modelmod.normalised_text(child)
        if normal == parent_text or normal in seen:
            continue
        return normal, done[0], done[1]
    raise KerashError(f"no new valid child in {TRIES} draws")


def inherit(child_spec, parent_spec, parent_params, fresh, rng, dtype=np.float32):
    """The child's weights: the parent's node by node (same name) wherever the shapes overlap, identities for
    the nodes inserted as such, fresh draws elsewhere."""
    params = modelmod.init_params(child_spec, int(rng.integers(2**63)), dtype)
    parent_keys = {n.name: n.key for n in parent_spec.nodes if n.key is not None}
    for node in child_spec.nodes:
        if node.key is None:
            continue
        target = params[node.key]
        if fresh.get(node.name) == "identity":
            target["W"][...] = np.eye(*target["W"].shape, dtype=dtype)
            target["b"][...] = 0
            continue
        old = parent_keys.get(node.name)
        if old is None or old not in parent_params:
            continue
        for name, array in target.items():
            source = parent_params[old].get(name)
            if source is None or source.ndim != array.ndim:
                continue
            overlap = tuple(slice(0, min(a, b)) for a, b in zip(source.shape, array.shape))
            array[overlap] = source[overlap]
    return params


def one_line(text):
    """A genome's description on one line, for the lineage table."""
    return " ".join(line.strip() for line in text.splitlines()
                    if line.strip() and not line.startswith("#") and not line.startswith("/"))


def activation_names():
    """The activations a mutation may pick (all in the registry)."""
    return [a for a in ACTIVATIONS if a.split()[0] in functions.ACTIVATIONS]
