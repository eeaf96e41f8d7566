"""kerash: neural networks as a Unix toolkit.

Layers of the package, each importing only those above it in this list:
tensorio/errors (tensor files) → functions, ops (activations, losses,
initialisers, convolution) → layers → model → training → evolve → cli.
"""

__version__ = "0.1.0"
