"""The line format, a superset of KeraSH's model files::

    /xavier,zero/            # optional initialisation header (NeuroMorph syntax)
    64 1 1                   # input width, height, depth
    input
    dense 128 sigmoid
    convolution relu 16 1 1 3 3     # activation filters stride pad kw kh
    max_pooling - 2 0 2 2           # - stride pad kw kh
    flatten -
    dense 10 softmax
    loss cross_entropy       # optional; default cross_entropy after softmax, else mse

Each line names a layer kind of kerash.layers, which parses the rest of the
line.  The model is the chain of its layers; layer NN (input = 00) keeps its
parameters in layer_NN.
"""

from .. import functions, layers
from ..errors import KerashError, ModelError, close_matches
from .spec import INPUT, MAX_VALUES, ModelSpec, NodeSpec, check_sizes, check_time_axes, default_loss


def fail(where, lineno, message):
    raise ModelError(f"{where}:{lineno}: {message}")


def located(where, lineno, make):
    """make(), with a KerashError it raises located at where:lineno."""
    try:
        return make()
    except KerashError as e:
        fail(where, lineno, str(e))


def parse_init(body, where, lineno):
    """(weights, biases) initialisers of a header /WEIGHTS[ PARAMS],BIASES[ PARAMS]/."""
    body = body.strip()
    if not (body.startswith("/") and body.endswith("/") and len(body) >= 2):
        fail(where, lineno, "an initialisation header looks like /xavier,zero/")
    parts = [p.strip() for p in body[1:-1].split(",")]
    if len(parts) > 2 or not parts[0]:
        fail(where, lineno, "an initialisation header is /WEIGHTS[ PARAMS],BIASES[ PARAMS]/, e.g. /he,const_flat 0.1/")
    result = []
    for part in parts + (["zero"] if len(parts) == 1 else []):
        tokens = part.split()
        if not tokens:
            fail(where, lineno, "empty initialiser in the header")
        name, params = tokens[0], tuple(tokens[1:])
        located(where, lineno, lambda: functions.get_initializer(name).bind(params))
        result.append((name, params))
    return result[0], result[1]


def chain(input_shape, layer_list, where="<model>", linenos=None):
    """Nodes of the chain input → layer_list[0] → …, with shapes checked; errors name the lines."""
    nodes = [NodeSpec("input", INPUT, shape=tuple(input_shape))]
    shape = tuple(input_shape)
    for position, layer in enumerate(layer_list, 1):
        lineno = linenos[position - 1] if linenos else 0
        located(where, lineno, lambda: layer.check([shape]))
        shape = tuple(located(where, lineno, lambda: layer.output_shape([shape])))
        key = f"layer_{position:02d}"
        nodes.append(NodeSpec(key, layer.kind, layer, [(nodes[-1].name, 0)], lineno, position,
                              key if layer.param_shapes([nodes[-1].shape]) else None, shape))
    return nodes


def chain_spec(like, layer_list):
    """A line-format description with the input, initialisers and loss of `like` and these layers."""
    return ModelSpec(chain(like.input_shape, layer_list, like.source), like.weight_init, like.bias_init, like.loss,
                     like.source)


def parse_lines(text, where="<model>", input_size=None):
    """Parse a line-format description; errors name FILE:LINE and what was expected.

    A description that starts at `input`, its size left out, takes `input_size` (W, H, D) — model-init's,
    from the data or --input-size."""
    dims = None
    input_seen = False
    init = None
    loss = None
    found, linenos = [], []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("/"):
            if init is not None:
                fail(where, lineno, "a second initialisation header")
            init = parse_init(line, where, lineno)
            continue
        tokens = line.split()
        head = tokens[0]
        if dims is None and head == "input" and tokens[1:] in ([], ["-"]):
            if input_size is None:
                fail(where, lineno, "the input size is left out: model-init takes it from the data (--data X) or "
                                    "--input-size W[,H,D]")
            w, h, d = input_size
            dims = (d, h, w)
            input_seen = True
            continue
        if dims is None:
            if len(tokens) != 3 or not all(t.isascii() and t.isdigit() and int(t) > 0 for t in tokens):
                fail(where, lineno, f"expected the input size 'W H D' (three positive integers), found {line!r}")
            w, h, d = (int(t) for t in tokens)
            if w * h * d > MAX_VALUES:
                fail(where, lineno, f"an input of {w}×{h}×{d} values is more than {MAX_VALUES}")
            dims = (d, h, w)
            continue
        if not input_seen:
            if head != "input" or tokens[1:] not in ([], ["-"]):
                fail(where, lineno, f"expected 'input' after the input size, found {line!r}")
            input_seen = True
            continue
        if head == "loss":
            if loss is not None:
                fail(where, lineno, "a second loss line")
            if len(tokens) < 2:
                fail(where, lineno, "loss needs a NAME, e.g. 'loss mse'")
            loss = located(where, lineno, lambda: functions.get_loss(tokens[1]).bind(tokens[2:]))
            continue
        if loss is not None:
            fail(where, lineno, "layers must come before the loss line")
        kind = layers.KINDS.get(head)
        if kind is None or kind.arity != 1:
            names = [k for k, c in layers.KINDS.items() if c.arity == 1]
            hint = close_matches(head, names + ["loss", "input"])
            fail(where, lineno, f"unknown layer {head!r}{hint} (expected {', '.join(names)} or loss)")
        found.append(located(where, lineno, lambda: kind.parse(tokens[1:])))
        linenos.append(lineno)
    if dims is None:
        raise ModelError(f"{where}: empty model: expected the input size 'W H D', then 'input', then layers")
    if not input_seen:
        raise ModelError(f"{where}: expected 'input' after the input size")
    if not found:
        raise ModelError(f"{where}: the model has no layers after 'input'")
    spec = ModelSpec(chain(dims, found, where, linenos), source=where)
    if init is not None:
        spec.weight_init, spec.bias_init = init
    spec.loss = loss if loss is not None else default_loss(found[-1])
    check_sizes(spec, where)
    check_time_axes(spec, where)
    return spec


def init_text(spec):
    return "/" + ",".join(" ".join([name, *map(str, params)]) for name, params in (spec.weight_init, spec.bias_init)) + "/"


def lines_text(spec):
    """The description with every default made explicit; parse_lines reads it back unchanged."""
    d, h, w = spec.input_shape
    out = [init_text(spec), f"{w} {h} {d}", "input"]
    out += [node.layer.text() for node in spec.layers]
    out.append("loss " + spec.loss.text())
    return out
