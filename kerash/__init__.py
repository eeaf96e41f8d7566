"""kerash: neural networks as a Unix toolkit.

Layers of the package, each importing only those above it in this list (the
table of tests/system/test_layering.py; the README's "Code layout" says what
each holds):

    tensor files    errors, processes, files
    functions       functions, ops
    layers          layers
    network         network
    model           model
    training        training
    evolve          evolve
    python API      api
    pictures        plot
    tools           cli
    entrance        warm
"""

__version__ = "0.1.0"


_API = ("init", "train", "predict", "classify", "node_values", "evaluate", "backprop", "settings")  # api.PUBLIC


def __getattr__(name):
    """kerash.train, kerash.predict, …: the Python API (api.py), imported at first use — a tool's start
    imports this package and must not pay for numpy and the training code.  Any other name fails at once:
    `from kerash import model` asks here before it imports the submodule."""
    if name not in _API:
        raise AttributeError(f"module 'kerash' has no attribute {name!r}")
    from . import api

    return getattr(api, name)
