"""Reports on a description: Keras-style summary tables and Graphviz pictures."""

import numpy as np

from .spec import ALIASES, INPUT, SPLIT, param_shapes

RECURRENT_MARK = "[t-1]"


def _shape_text(shape):
    return "(None, " + ", ".join(map(str, shape)) + ")"


def _input_shape(spec):
    # A line-format input W 1 1 is a vector, as Keras shows it.
    shape = spec.input_shape
    if len(shape) == 3 and shape[0] == 1 and shape[1] == 1:
        shape = (shape[2],)
    return _shape_text(shape)


def _type_name(node):
    if node.kind == INPUT:
        return "InputLayer"
    if node.kind in ALIASES:
        return "Split" if node.kind == SPLIT else "Tap"
    return node.layer.keras_name


def connections(node):
    """The node's inputs as names, recurrent ones marked [t-1]."""
    return ", ".join(src + (RECURRENT_MARK if delay else "") for src, delay in node.inputs)


def _timed(spec):
    """{node name: whether its value has a time axis} of a model with lstm, gru or tdnn layers (else empty)."""
    if not spec.whole_sequences:
        return {}
    timed = {}
    for node in spec.nodes:
        if node.kind == INPUT:
            timed[node.name] = True
        elif getattr(node.layer, "sequence_layer", False):
            timed[node.name] = node.layer.every
        else:
            timed[node.name] = timed[node.inputs[0][0]]
    return timed


def summary_text(spec, name, frozen=()):
    """The model as a table of nodes, output shapes and parameter counts, as Keras prints it.

    Graph (MDL) models get Keras's "Connected to" column, recurrent links marked [t-1];
    `frozen` parameter folders (train --freeze) count as non-trainable.
    """
    shapes = param_shapes(spec)
    graph = spec.format == "mdl"
    columns = [("Layer (type)", 28), ("Output Shape", 20), ("Param #", 12)]
    columns += [("Connected to", 30)] if graph else []
    columns += [("Activation", 0)]
    rows = []
    total = fixed = 0
    timed = _timed(spec)
    for node in spec.nodes:
        count = sum(int(np.prod(v)) for v in shapes.get(node.key, {}).values()) if node.key else 0
        total += count
        fixed += count if node.key in frozen else 0
        shape = _input_shape(spec) if node.kind == INPUT else _shape_text(node.shape)
        if timed.get(node.name):  # a value at every step of a sequence: Keras's (None, None, H)
            shape = "(None, None, " + shape[len("(None, "):]
        row = [f" {node.name} ({_type_name(node)})", shape, f"{count:,}"]
        if graph:
            row.append(connections(node) or "-")
        row.append(node.layer.describe() if node.layer is not None else "")
        rows.append(row)
    width = sum(w for _, w in columns) + 12
    rule, thick = "_" * width, "=" * width

    def line(cells):
        return "".join(f"{c:<{w}}" if w else c for c, (_, w) in zip(cells, columns)).rstrip()

    lines = [f'Model: "{name}"', rule, line([" " + columns[0][0]] + [c for c, _ in columns[1:]]), thick]
    for i, row in enumerate(rows):
        lines.append(line(row))
        if i < len(rows) - 1:
            lines.append("")
    lines += [
        thick,
        f"Total params: {total:,}",
        f"Trainable params: {total - fixed:,}",
        f"Non-trainable params: {fixed:,}" + (f" (frozen: {', '.join(frozen)})" if fixed else ""),
        f"Loss: {spec.loss.text()}",
    ]
    if spec.recurrent:
        lines.append(f"Recurrent links ({RECURRENT_MARK}) read the previous time step, zeros at the first.")
    connected = [n.layer for n in spec.nodes if n.kind == "connect"]
    if connected:  # as DyNet's initnet counted them: units, connections, the weights that really train
        bias = any(s == "b" for c in connected for s, _, _ in c.connections)  # DyNet's unit 0, always 1
        inputs = int(np.prod(spec.input_shape)) + bias
        units = inputs + sum(n.shape[0] for n in spec.nodes[1:] if n.key is not None)
        conns = sum(len(c.connections) for c in connected)
        real = sum(c.real_weights() for c in connected)
        lines.append(f"DyNet: {units} units, {inputs} inputs, {spec.output_width} outputs, {conns} conns, "
                     f"{real} real weights")
    lines.append(rule)
    return "\n".join(lines) + "\n"


def _dot_string(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def graph_dot(spec, name):
    """The model as Graphviz DOT: layer kinds, widths and activations; merges and splits drawn
    distinctly; recurrent links dashed.  `dot -Tsvg` draws it."""
    out = [f"digraph {_dot_string(name)} {{", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=11];',
           '  edge [fontname="Helvetica", fontsize=9];']
    for node in spec.nodes:
        shape = "x".join(map(str, node.shape))
        if node.kind == INPUT:
            label, style = f"{node.name}\ninput {shape}", 'shape=invhouse, style=filled, fillcolor="#e8f0fe"'
        elif node.kind in ALIASES:
            label, style = f"{node.name}\n{node.kind}", 'shape=point, width=0.12, xlabel=' + _dot_string(node.name)
        elif node.kind == "merge":
            label, style = f"{node.name}\n{node.layer.op}", 'shape=ellipse, style=filled, fillcolor="#fdf0d5"'
        else:
            label = f"{node.name}\n{node.layer.keras_name} {shape}"
            if node.layer.describe():
                label += f"\n{node.layer.describe()}"
            if node is spec.nodes[-1]:
                label += f"\nloss {spec.loss.text()}"
            style = 'shape=box, style="rounded,filled", fillcolor="#e6f4ea"'
        if node.kind in ALIASES:
            out.append(f"  {_dot_string(node.name)} [{style}];")
        else:
            out.append(f"  {_dot_string(node.name)} [label={_dot_string(label)}, {style}];")
    for node in spec.nodes:
        for src, delay in node.inputs:
            attrs = ' [style=dashed, color="#c5221f", label="t-1", constraint=false]' if delay else ""
            out.append(f"  {_dot_string(src)} -> {_dot_string(node.name)}{attrs};")
    out.append("}")
    return "\n".join(out) + "\n"


def forward_steps(spec, normalized=False, model='"$model"'):
    """A network without recurrence as shell steps of kerash tools, one file per node: forward-pipeline's
    script for an MDL graph.  The input is read from standard input (normalised first when the model has
    statistics); each step writes "$work/NODE.npy"; the last prints the output node.  Refuses what no tool
    computes."""
    from ..errors import ModelError

    files = {}  # node name → the file holding its values (a split or tap names its source's)
    if normalized:
        steps = ['matrix-scale 1 - -o "$work/raw.npy"',
                 f'matrix-sub "$work/raw.npy" {model}/normalization/mean.npy | matrix-hadamard - '
                 f'<(matrix-apply reciprocal {model}/normalization/std.npy) -o "$work/input.npy"']
    else:
        steps = ['matrix-scale 1 - -o "$work/input.npy"']
    for node in spec.nodes:
        if node.kind == INPUT:
            files[node.name] = '"$work/input.npy"'
            continue
        if any(delay for _, delay in node.inputs):
            raise ModelError(f"node {node.name} reads the previous time step: a recurrent network is a loop over "
                             "time, not a pipe; predict --node NAME shows any of its nodes")
        sources = [files[name] for name, _ in node.inputs]
        if node.kind in ALIASES:
            files[node.name] = sources[0]
            continue
        out = f'"$work/{node.name}.npy"'
        kind = node.layer.kind
        if kind == "dense":
            act = node.layer.activation
            apply = " ".join(["matrix-apply", act.name] + [f"-p {v!r}" for v in act.values])
            steps.append(f'matrix-mul {sources[0]} {model}/{node.key}/W.npy | matrix-add - {model}/{node.key}/b.npy'
                         f" | {apply} -o {out}")
        elif kind == "dropout":
            files[node.name] = sources[0]  # the identity when predicting
            continue
        elif kind == "merge":
            op = node.layer.op
            first, second = sources
            if op == "concatenate":  # the rows of both, side by side: text rows joined by paste
                steps.append(f"paste -d ' ' <(matrix-scale 1 {first}) <(matrix-scale 1 {second}) | matrix-scale 1 - "
                             f"-o {out}")
            elif op == "average":
                steps.append(f"matrix-add {first} {second} | matrix-scale 0.5 - -o {out}")
            else:
                tool = "matrix-add" if op == "additive" else "matrix-hadamard"
                steps.append(f"{tool} {first} {second} -o {out}")
        else:
            raise ModelError(f"node {node.name} is a {kind} layer, which no tool of forward-pipeline computes; "
                             "use predict")
        files[node.name] = out
    steps.append(f"matrix-scale 1 {files[spec.nodes[-1].name]}")
    return steps
