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
    pictures        plot
    tools           cli
    entrance        warm
"""

__version__ = "0.1.0"
