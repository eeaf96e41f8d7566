"""The network: a graph of layer nodes (a chain is one case), its flat parameter arena, and the objective.

graph holds Network (compile from nodes, forward steps, backward, back-propagation
through time) and Node; arena holds Arena (every weight in one flat buffer, every
gradient in another); objective holds Objective (the loss and its fusion with the
output activation, accuracy, what the targets allow), which the caller keeps and
gives to the graph's passes, and targets_are_classes.
"""

from .arena import Arena
from .graph import Network, Node
from .objective import Objective, targets_are_classes

__all__ = ["Arena", "Network", "Node", "Objective", "targets_are_classes"]
