"""The one registry of mathematical functions: activations, losses, initialisers.

Tools (`matrix-apply`, `matrix-create`) and layers look names up here; no
other module defines these functions.  Every activation has its exact
derivative, written in terms of the input x and the output y = f(x) so that a
layer can reuse the output it already computed.
"""


from .activations import ACTIVATIONS, Activation, BoundActivation, activation_names, activation_table, get_activation
from .initializers import INITIALIZERS, Initializer, get_initializer
from .losses import LOSSES, BoundLoss, FusedLoss, Loss, get_loss
from .registry import resolve_params
