"""NeuroMorph's model description language (MDL): branches, merges and recurrence.

    /xavier,const_flat 0.5/          # optional initialisation header
    (input, 4)                       # the input, width 4
    {a, last, additive}              # a = input + last, read at the previous step
    [b,                              # a split: b names a's value, each branch reads it
        (gate, 4, <sigmoid>)
    |
        (cell, 4, <tanh>)
        {gated, gate, multiplicative}
    ]
    (mix, 4, <tanh>)                 # continues from b, not from a branch
    {both, gated, concatenate}
    [last,]                          # a tap: a second name for the current value
    (output, 2, <softmax>, <cross_entropy>)

The semantics are those of docs (graph models): a merge that names a node
written at or after itself reads that node's value at the previous time step.
Errors are ``FILE:LINE: NODE: what``; warnings have the same form.
"""

import re

from .. import functions, layers
from ..layers.merge import OPS
from ..errors import KerashError, ModelError, close_matches
from .lines import init_text, parse_init
from .spec import INPUT, SPLIT, TAP, ModelSpec, NodeSpec, check_sizes, check_time_axes

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SYMBOLS = set("(){}[]<>,|")
_WORD = re.compile(r"[^\s(){}\[\]<>,|#/]+")


def is_mdl(text):
    """Whether a description is MDL: after blanks, comments and a /…/ header, the next character is '('."""
    pos, n = 0, len(text)
    header_done = False
    while pos < n:
        c = text[pos]
        if c.isspace():
            pos += 1
        elif c == "#":
            end = text.find("\n", pos)
            pos = n if end < 0 else end
        elif c == "/" and not header_done:
            end = text.find("/", pos + 1)
            if end < 0:
                return False
            pos, header_done = end + 1, True
        else:
            return c == "("
    return False


# ---------------------------------------------------------------- tokens


class _Tokens:
    def __init__(self, text, where):
        self.where = where
        self.items = []  # (kind 'sym' | 'word', text, line)
        self.header = None  # (text, line)
        line, pos, n = 1, 0, len(text)
        while pos < n:
            c = text[pos]
            if c == "\n":
                line += 1
                pos += 1
            elif c.isspace():
                pos += 1
            elif c == "#":
                end = text.find("\n", pos)
                pos = n if end < 0 else end
            elif c == "/":
                end = text.find("/", pos + 1)
                if self.items or self.header is not None or end < 0 or "\n" in text[pos:end]:
                    self.fail(line, None, "a '/…/' initialisation header may only open the file, on one line")
                self.header = (text[pos : end + 1], line)
                pos = end + 1
            elif c in _SYMBOLS:
                self.items.append(("sym", c, line))
                pos += 1
            else:
                m = _WORD.match(text, pos)
                self.items.append(("word", m.group(), line))
                pos = m.end()
        self.pos = 0

    def fail(self, line, node, message):
        raise ModelError(f"{self.where}:{line}: {node + ': ' if node else ''}{message}")

    def peek(self):
        return self.items[self.pos] if self.pos < len(self.items) else ("end", "end of file", self.last_line)

    @property
    def last_line(self):
        return self.items[-1][2] if self.items else 1

    def take(self):
        item = self.peek()
        self.pos += 1
        return item

    def expect(self, symbol, node=None, what=None):
        kind, text, line = self.take()
        if kind != "sym" or text != symbol:
            self.fail(line, node, f"expected {what or repr(symbol)}, found {text!r}")
        return line

    def name(self, node=None, what="a node name"):
        kind, text, line = self.take()
        if kind != "word" or not NAME.match(text):
            self.fail(line, node, f"expected {what} (a letter or _ then letters, digits, _), found {text!r}")
        return text, line


# ---------------------------------------------------------------- syntax


def _function(tokens, node):
    """<name, p, …> → (name, [params], line)."""
    line = tokens.expect("<", node)
    kind, name, _ = tokens.take()
    if kind != "word":
        tokens.fail(line, node, f"expected a function name after '<', found {name!r}")
    params = []
    while tokens.peek()[1] == ",":
        tokens.take()
        kind, value, vline = tokens.take()
        if kind != "word":
            tokens.fail(vline, node, f"expected a number, found {value!r}")
        params.append(value)
    tokens.expect(">", node, "'>' or ',' in a function")
    return name, params, line


def _item(tokens):
    kind, sym, line = tokens.peek()
    if kind != "sym" or sym not in "({[":
        tokens.fail(line, None, f"expected a node: '(' layer, '{{' merge or '[' split, found {sym!r}")
    tokens.take()
    if sym == "(":
        name, _ = tokens.name()
        if tokens.peek()[1] == ")":  # (input): its width left out, for model-init to take from the data
            tokens.take()
            return {"type": "layer", "name": name, "line": line, "width": None, "funcs": []}
        tokens.expect(",", name)
        if tokens.peek()[1] == "<":  # a layer that keeps its input's width: (drop, <dropout, 0.3>)
            func = _function(tokens, name)
            tokens.expect(")", name)
            return {"type": "kind", "name": name, "line": line, "func": func}
        kind, width, wline = tokens.take()
        if kind != "word" or not (width.isascii() and width.isdigit()) or int(width) < 1:
            tokens.fail(wline, name, f"the width must be a positive integer, not {width!r}")
        funcs = []
        while tokens.peek()[1] == ",":
            tokens.take()
            funcs.append(_function(tokens, name))
        tokens.expect(")", name, "')' or ',' after the width" if not funcs else "')'")
        if len(funcs) > (3 if funcs and _width_kind(funcs[0][0]) else 2):
            tokens.fail(funcs[-1][2], name, "a layer takes at most an activation and a loss")
        return {"type": "layer", "name": name, "line": line, "width": int(width), "funcs": funcs}
    if sym == "{":
        name, _ = tokens.name()
        tokens.expect(",", name)
        other, oline = tokens.name(name, "the name of the node to merge with")
        tokens.expect(",", name)
        kind, op, opline = tokens.take()
        if op not in OPS:
            tokens.fail(opline, name, f"unknown merge {op!r}{close_matches(op, OPS)}; choose {', '.join(OPS)}")
        tokens.expect("}", name)
        return {"type": "merge", "name": name, "line": line, "other": other, "other_line": oline, "op": op}
    name, _ = tokens.name()
    tokens.expect(",", name)
    branches = []
    if tokens.peek()[1] != "]":
        while True:
            branch = []
            while tokens.peek()[1] not in ("|", "]", "end of file"):
                branch.append(_item(tokens))
            if not branch:
                tokens.fail(tokens.peek()[2], name, "an empty branch (a branch needs at least one node)")
            branches.append(branch)
            if tokens.peek()[1] != "|":
                break
            tokens.take()
    tokens.expect("]", name, "']' or '|'")
    return {"type": "split", "name": name, "line": line, "branches": branches}


# ---------------------------------------------------------------- meaning


class _Builder:
    """Nodes in text order from the parsed items, with every check of the design page."""

    def __init__(self, tokens):
        self.tokens = tokens
        self.nodes = []
        self.by_name = {}
        self.funcs = {}  # layer name -> (activation, loss or None, line of the loss)
        self.branch_results = []  # (result name, line)
        self.width_losses = {}  # the loss of an output written (NAME, K, <connect, …>, <ACT>, <LOSS>)
        self.warnings = []

    def fail(self, line, node, message):
        self.tokens.fail(line, node, message)

    def warn(self, line, node, message):
        self.warnings.append(f"{self.tokens.where}:{line}: {node}: {message}")

    def add(self, node):
        if node.name in self.by_name:
            self.fail(node.lineno, node.name, f"the name is already used (line {self.by_name[node.name].lineno})")
        node.index = len(self.nodes)
        self.nodes.append(node)
        self.by_name[node.name] = node
        return node

    def walk(self, items, pred):
        """Add the nodes of a sequence fed by `pred`; returns the tree of the sequence."""
        tree = []
        for item in items:
            name, line = item["name"], item["line"]
            if item["type"] == "layer" and item["funcs"] and _width_kind(item["funcs"][0][0]):
                layer = self.width_kind(item)
                self.add(NodeSpec(name, layer.kind, layer, [(pred, 0)], line))
                pred = name
                tree.append(name)
            elif item["type"] == "layer":
                self.add(NodeSpec(name, "dense", None, [(pred, 0)], line))
                self.funcs[name] = item
                pred = name
                tree.append(name)
            elif item["type"] == "kind":
                layer = self.layer_kind(name, item["func"])
                self.add(NodeSpec(name, layer.kind, layer, [(pred, 0)], line))
                pred = name
                tree.append(name)
            elif item["type"] == "merge":
                self.add(NodeSpec(name, "merge", layers.Merge(item["op"]), [(pred, 0), (item["other"], None)], line))
                pred = name
                tree.append(name)
            else:
                self.add(NodeSpec(name, SPLIT if item["branches"] else TAP, None, [(pred, 0)], line))
                subtrees = []
                for branch in item["branches"]:
                    subtrees.append(self.walk(branch, name))
                    last = branch[-1]
                    self.branch_results.append((last["name"], last["line"]))
                tree.append((name, subtrees))
                pred = name
        return tree

    def width_kind(self, item):
        """A layer of the registry written with a width, e.g. (h, 64, <lstm>) or (h, 64, <gru, sequences>)."""
        (kind_name, params, line), *rest = item["funcs"]
        kind = layers.KINDS[kind_name]
        takes = kind.parse_width.__code__.co_argcount > 3  # an activation after the kind (tdnn, connect)
        if takes and len(rest) == 2:  # and a loss: the output
            self.width_losses[item["name"]] = rest.pop()
        if len(rest) > (1 if takes else 0):
            self.fail(rest[-1][2], item["name"], f"({item['name']}, {item['width']}, <{kind_name}, …>) takes no "
                      f"{'loss' if takes else 'activation or loss'}: the output is a layer of its own, e.g. "
                      "(output, 2, <softmax>, <cross_entropy>)")
        try:
            if rest:
                activation = self.function(item["name"], rest[0], functions.get_activation, "activation")
                return kind.parse_width(item["width"], params, activation)
            return kind.parse_width(item["width"], params)
        except KerashError as e:
            self.fail(line, item["name"], str(e))

    def layer_kind(self, node, func):
        """A layer of the registry written as a node without width, e.g. (drop, <dropout, 0.3>)."""
        name, params, line = func
        kind = layers.KINDS.get(name)
        if kind is None or not getattr(kind, "keeps_width", False):
            kinds = [k for k, c in layers.KINDS.items() if getattr(c, "keeps_width", False)]
            self.fail(line, node, f"(NAME, <KIND, …>) is a layer that keeps its input's width: {', '.join(kinds)}, "
                                  f"not {name!r}{close_matches(name, kinds)}")
        try:
            return kind.parse(params)
        except KerashError as e:
            self.fail(line, node, str(e))

    def function(self, node, func, lookup, what):
        name, params, line = func
        try:
            found = lookup(name)
        except KerashError:
            hint = ""
            if what == "activation" and name in functions.LOSSES:
                hint = f"; <{name}> is a loss: write the activation first, e.g. ({node}, K, <identity>, <{name}>)"
            elif what == "activation":
                hint = close_matches(name, functions.activation_names())
            else:
                hint = close_matches(name, functions.LOSSES)
            self.fail(line, node, f"unknown {what} {name!r}{hint}")
        if params and not found.params:
            self.warn(line, node, f"{name} takes no parameter; ignored {', '.join(params)}")
            params = []
        try:
            return found.bind(params)
        except KerashError as e:
            self.fail(line, node, str(e))


def parse_mdl(text, where="<model>", input_size=None):
    """Parse an MDL description into a ModelSpec (see the module docstring); an input written (input), its width
    left out, takes `input_size` (W, H, D: their product) — model-init's, from the data or --input-size."""
    tokens = _Tokens(text, where)
    items = []
    while tokens.peek()[0] != "end":
        items.append(_item(tokens))
    if not items:
        raise ModelError(f"{where}: empty model: expected the input node, e.g. (input, 4)")
    first = items[0]
    if first["type"] != "layer":
        tokens.fail(first["line"], first["name"], "the model must start with its input, e.g. (input, 4)")
    if first["funcs"]:
        tokens.fail(first["funcs"][0][2], first["name"], "the input takes no function")
    for item in items:
        if item.get("width", 0) is None and item is not first:
            tokens.fail(item["line"], item["name"], "a layer needs its width: (NAME, WIDTH, …)")
    if first["width"] is None:
        if input_size is None:
            tokens.fail(first["line"], first["name"], "the input width is left out: model-init takes it from the "
                        "data (--data X) or --input-size N")
        first["width"] = input_size[0] * input_size[1] * input_size[2]
    b = _Builder(tokens)
    b.add(NodeSpec(first["name"], INPUT, None, [], first["line"], shape=(first["width"],)))
    tree = [first["name"]] + b.walk(items[1:], first["name"])
    nodes = b.nodes
    if len(nodes) < 2:
        tokens.fail(first["line"], first["name"], "the model has no node after its input")
    spec = ModelSpec(nodes, source=where, format="mdl", tree=tree, warnings=b.warnings)
    if tokens.header is not None:
        spec.weight_init, spec.bias_init = parse_init(tokens.header[0], where, tokens.header[1])
    _functions(b, spec, items[-1])
    _references(b)
    _widths(b)
    _check_branches(b)
    _check_cycles(b)
    if spec.whole_sequences:
        for node in nodes:
            if node.kind == "merge" and node.inputs[1][1]:
                b.fail(node.lineno, node.name, "a recurrent merge in a model with lstm or gru nodes: those run "
                       "over whole sequences; give the recurrence to an lstm or gru node")
    number = 0
    for node in nodes:
        if node.kind == "dense" or _width_kind(node.kind) or (node.kind == "merge" and node.layer.op == "mix"):
            number += 1
            node.key = f"layer_{number:02d}"
    check_sizes(spec, where)
    check_time_axes(spec, where)
    return spec


def _functions(b, spec, last_item):
    output = last_item["name"]
    if last_item["type"] != "layer":
        b.fail(last_item["line"], output, "the last node is the output: a layer with a loss, e.g. (output, 2, <softmax>, <cross_entropy>)")
    losses = {name: item["funcs"][1] for name, item in b.funcs.items() if len(item["funcs"]) == 2}
    losses.update(b.width_losses)
    lossy = sorted(losses, key=lambda name: b.by_name[name].index)
    if len(lossy) > 1:
        b.fail(losses[lossy[1]][2], lossy[1], f"a second loss ({lossy[0]} has one); a model has exactly one, on its last node")
    if lossy and lossy[0] != output:
        b.fail(losses[lossy[0]][2], lossy[0], f"a loss on a node that is not the last (the output is {output!r})")
    if not lossy:
        b.fail(last_item["line"], output, f"the output needs a loss, e.g. ({output}, {last_item['width']}, <sigmoid>, <mse>)")
    for name, item in b.funcs.items():
        node = b.by_name[name]
        funcs = item["funcs"]
        if not funcs and node.inputs[0][0] == b.nodes[0].name and node is not b.nodes[-1]:
            b.warn(item["line"], name, f"({name}, {item['width']}) reads the input through a dense identity "
                   "layer: a model has one input (the first node); a second input-like node is a layer")
        act = b.function(name, funcs[0], functions.get_activation, "activation") if funcs else functions.get_activation("identity").bind()
        node.layer = layers.Dense(item["width"], act)
    if lossy:
        spec.loss = b.function(lossy[0], losses[lossy[0]], functions.get_loss, "loss")


def _references(b):
    """Resolve what each merge names: the same step if written before it, else the previous step."""
    for node in b.nodes:
        if node.kind != "merge":
            continue
        other = node.inputs[1][0]
        target = b.by_name.get(other)
        if target is None:
            b.fail(node.lineno, node.name, f"unknown node {other!r}{close_matches(other, b.by_name)}")
        node.inputs[1] = (other, 1 if target.index >= node.index else 0)


def _widths(b):
    """Each node's width; a merge naming a later node may need that node's width first."""
    width = {}
    pending = list(b.nodes)
    while pending:
        left = []
        for node in pending:
            if node.kind == INPUT:
                width[node.name] = node.shape[0]
            elif node.kind == "dense" or _width_kind(node.kind):
                width[node.name] = node.layer.units
            elif node.kind in (SPLIT, TAP) or _keeps_width(node):
                if node.inputs[0][0] in width:
                    width[node.name] = width[node.inputs[0][0]]
            else:
                (u, _), (v, _) = node.inputs
                merged = node.layer.merged_width(width[u], width.get(v)) if u in width else None
                if merged is not None:
                    width[node.name] = merged
            if node.name not in width:
                left.append(node)
        if len(left) == len(pending):
            node = left[0]
            b.fail(node.lineno, node.name, "its width depends on itself through concatenations; give a layer in the loop a width")
        pending = left
    for node in b.nodes:
        node.shape = (width[node.name],)
        if node.kind == "merge":
            (u, _), (v, _) = node.inputs
            try:
                node.layer.check([(width[u],), (width[v],)])
            except ModelError:
                article = "an" if node.layer.op[0] in "aeiou" else "a"
                b.fail(node.lineno, node.name, f"{article} {node.layer.op} merge of {u!r} (width {width[u]}) and {v!r} "
                       f"(width {width[v]}) needs equal widths (concatenate joins unequal ones)")


def _width_kind(name):
    """Whether a layer kind is written (NAME, WIDTH, <KIND, …>) in MDL: lstm, gru, embedding."""
    return getattr(layers.KINDS.get(name), "mdl_width", False)


def _keeps_width(node):
    return node.layer is not None and getattr(node.layer, "keeps_width", False)


def _check_branches(b):
    used = {}
    for node in b.nodes:
        if node.kind == "merge":
            used.setdefault(node.inputs[1][0], set()).add(node.name)
    for name, line in b.branch_results:
        if not used.get(name, set()) - {name}:
            b.fail(line, name, "the result of this branch is used by no merge (a branch flows on only through a merge that names it)")


def _check_cycles(b):
    """Warn when a forward reference closes no cycle: NeuroMorph would have read it from the same step."""
    consumers = {}
    for node in b.nodes:
        for src, delay in node.inputs:
            if not delay:
                consumers.setdefault(src, []).append(node.name)
    for node in b.nodes:
        if node.kind != "merge" or not node.inputs[1][1]:
            continue
        other = node.inputs[1][0]
        seen, stack = set(), [node.name]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            stack.extend(consumers.get(name, ()))
        if other not in seen:
            b.warn(node.lineno, node.name, f"{other!r} is written later, so it is read from the previous time step, "
                   "but it does not depend on this node (NeuroMorph would have read it from the same step)")


# ---------------------------------------------------------------- text


def _function_text(bound):
    return "<" + ", ".join(bound.text().split()) + ">"


def mdl_text(spec):
    """The description with every function explicit; parse_mdl reads it back to the same model."""
    out = [init_text(spec)]

    def write(tree, depth):
        pad = "\t" * depth
        for item in tree:
            if isinstance(item, tuple):
                name, branches = item
                if not branches:
                    out.append(f"{pad}[{name},]")
                    continue
                out.append(f"{pad}[{name},")
                for k, branch in enumerate(branches):
                    if k:
                        out.append(f"{pad}|")
                    write(branch, depth + 1)
                out.append(f"{pad}]")
                continue
            node = spec.node(item)
            if node.kind == INPUT:
                out.append(f"{pad}({node.name}, {node.shape[0]})")
            elif _width_kind(node.kind):
                act = f", {_function_text(node.layer.activation)}" if node.kind in ("tdnn", "connect") else ""
                if node is spec.nodes[-1]:
                    act += f", {_function_text(spec.loss)}"
                out.append(f"{pad}({node.name}, {node.layer.units}, <{', '.join([node.kind, *node.layer.mdl_params()])}>{act})")
            elif _keeps_width(node):
                out.append(f"{pad}({node.name}, <{', '.join(node.layer.text().split())}>)")
            elif node.kind == "merge":
                out.append(f"{pad}{{{node.name}, {node.inputs[1][0]}, {node.layer.op}}}")
            else:
                funcs = [_function_text(node.layer.activation)]
                if node is spec.nodes[-1]:
                    funcs.append(_function_text(spec.loss))
                out.append(f"{pad}({node.name}, {node.layer.units}, {', '.join(funcs)})")

    write(spec.tree, 0)
    return out
