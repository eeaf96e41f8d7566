"""A parsed model description: nodes in text order, and what they compile to.

Both description formats (the line format and NeuroMorph's MDL) parse to the
same ModelSpec; a line-format model is the chain in which each layer reads
the one before, as Keras's Sequential builds a functional model.  Splits and
taps (second names for a value) are kept here for summaries and pictures and
compiled away in the network.
"""

from dataclasses import dataclass, field

import numpy as np

from .. import functions
from ..network import Network, Node

# Node kinds besides the layer kinds of kerash.layers.
INPUT, SPLIT, TAP = "input", "split", "tap"
ALIASES = (SPLIT, TAP)


@dataclass
class NodeSpec:
    """One node of a description.  For a layer node, attributes not found here are the layer's."""

    name: str
    kind: str  # input, split, tap, merge, or a layer kind
    layer: object = None  # a kerash.layers.Layer (None for input, split, tap)
    inputs: list = field(default_factory=list)  # [(node name, delay)], delay 1: the previous time step
    lineno: int = 0
    index: int = 0  # line-format position (input = 0); MDL: position in the text
    key: str = None  # parameter folder layer_NN of a layer node
    shape: tuple = ()

    def __getattr__(self, name):
        # A line of the line format reads as its layer: spec.layers[0].units, .activation…
        layer = self.__dict__.get("layer")
        if layer is None:
            raise AttributeError(name)
        return getattr(layer, name)


@dataclass
class ModelSpec:
    nodes: list  # NodeSpec, the input first and the output last
    weight_init: tuple = ("xavier", ())
    bias_init: tuple = ("zero", ())
    loss: object = None  # functions.BoundLoss
    source: str = "<model>"
    format: str = "lines"  # lines or mdl
    tree: list = None  # MDL: the nesting of splits and branches, for writing the text back
    warnings: list = field(default_factory=list)

    @property
    def input_shape(self):
        """(C, H, W) of one sample (line format), or (I,) for an MDL model."""
        return self.nodes[0].shape

    @property
    def layers(self):
        """Every node after the input (the layers of a line-format model)."""
        return self.nodes[1:]

    @property
    def shapes(self):
        return [node.shape for node in self.nodes[1:]]

    @property
    def output_width(self):
        return int(np.prod(self.nodes[-1].shape))

    @property
    def sequence(self):
        """MDL models, and models with a recurrent layer (lstm, gru), read sequences (N, T, I); for MDL, (N, I)
        is T = 1 when nothing is recurrent."""
        return self.format == "mdl" or self.whole_sequences

    @property
    def whole_sequences(self):
        """Whether a layer reads whole sequences (lstm, gru): every node then runs once over all steps."""
        return any(getattr(n.layer, "sequence_layer", False) for n in self.nodes)

    @property
    def recurrent(self):
        return any(delay for node in self.nodes for _, delay in node.inputs)

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)


# Values in one tensor (a sample at a node, or a parameter): larger sizes are typing mistakes, and
# numpy's int64 shapes would overflow on products of several of them.
MAX_VALUES = 2**31 - 1


def check_sizes(spec, where):
    """Refuse, at the line that asks for it, a node whose output or parameters exceed MAX_VALUES values."""
    from ..errors import ModelError
    from ..layers.base import size_of

    shapes = {n.name: n.shape for n in spec.nodes}
    for node in spec.nodes:
        named = f"{node.name if spec.format == 'mdl' else node.kind}: "
        found = [("its output", node.shape)]
        if node.layer is not None:
            found += [(f"its parameter {k}", s) for k, s in node.layer.param_shapes([shapes[src] for src, _ in node.inputs]).items()]
        for what, shape in found:
            if size_of(shape) > MAX_VALUES:
                raise ModelError(f"{where}:{node.lineno}: {named}{what} would hold {size_of(shape)} values, "
                                 f"more than {MAX_VALUES}")


def check_time_axes(spec, where):
    """Refuse, at its line, a sequence layer (lstm, gru, tdnn) that reads one value per sequence — what an lstm
    or gru returning its last step gives — or a merge of values with and without a time axis."""
    from ..errors import ModelError

    if not spec.whole_sequences:
        return
    timed = {}
    for node in spec.nodes:
        reads = [timed[src] for src, _ in node.inputs]
        named = node.name if spec.format == "mdl" else node.kind
        if node.kind == INPUT:
            timed[node.name] = True
        elif getattr(node.layer, "sequence_layer", False):
            if not reads[0]:
                raise ModelError(f"{where}:{node.lineno}: {named}: reads sequences, but what comes before it gives "
                                 "one value per sequence (an lstm or gru returning its last step): make that one "
                                 "return every step ('sequences')")
            timed[node.name] = node.layer.every
        else:
            if len(set(reads)) > 1:
                raise ModelError(f"{where}:{node.lineno}: {named}: merges a value at every step with one per sequence")
            timed[node.name] = reads[0]


def default_loss(last_layer):
    """cross_entropy after softmax, else mse."""
    act = getattr(last_layer, "activation", None)
    return functions.get_loss("cross_entropy" if act is not None and act.name == "softmax" else "mse").bind()


def _producers(spec):
    """{name: (index of the computing node, delay)} with splits and taps resolved to what they name."""
    index, found = {}, {}
    for node in spec.nodes:
        if node.kind in ALIASES:
            (source, _), = node.inputs
            index[node.name] = index[source]
        else:
            index[node.name] = len(found)
            found[node.name] = node
    return index, list(found.values())


def build_network(spec, dtype=np.float32):
    """The network of `spec`, without parameters (see init_params / ModelDir.load)."""
    index, computing = _producers(spec)
    nodes = [Node(n.name, n.layer, [(index[src], delay) for src, delay in n.inputs], n.key, n.shape) for n in computing]
    return Network(nodes, dtype, sequence=spec.sequence)


def layer_nodes(spec):
    """The nodes that have parameters, in text order."""
    return [n for n in spec.nodes if n.key is not None]


def in_shapes(spec, node):
    shapes = {n.name: n.shape for n in spec.nodes}
    return [shapes[src] for src, _ in node.inputs]


def param_shapes(spec):
    """{'layer_NN': {'W': shape, 'b': shape}} for the nodes with parameters."""
    return {n.key: n.layer.param_shapes(in_shapes(spec, n)) for n in layer_nodes(spec)}


def init_params(spec, seed=None, dtype=np.float32):
    """Fresh weights drawn with the description's initialisers; the same seed gives the same bits.

    Every layer node gets the header's initialisers with its own fan-in and fan-out.
    """
    rng = np.random.default_rng(seed)
    draw_w = functions.get_initializer(spec.weight_init[0]).bind(spec.weight_init[1])
    draw_b = functions.get_initializer(spec.bias_init[0]).bind(spec.bias_init[1])
    params = {}
    for node in layer_nodes(spec):
        shapes = in_shapes(spec, node)
        fan_in, fan_out = node.layer.fans(shapes)
        wanted = node.layer.param_shapes(shapes)
        # W with the weights' initialiser, b and any other bias (a gru's bh) with the biases'
        params[node.key] = {name: np.asarray((draw_w if name == "W" else draw_b)(rng, shape, fan_in, fan_out),
                                             dtype=dtype) for name, shape in wanted.items()}
        if hasattr(node.layer, "constrain"):  # a layer whose weights must fit a pattern (connect's masks, ties)
            node.layer.constrain(params[node.key])
    return params


def count_params(spec):
    return sum(int(np.prod(s)) for shapes in param_shapes(spec).values() for s in shapes.values())
