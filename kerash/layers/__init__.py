"""Layer kinds, one registry (see base.py); importing the package registers them all."""

from .base import KINDS, Layer, get_kind
from .conv import Convolution, MaxPooling
from .dense import Dense, Flatten
from .merge import Merge

__all__ = ["KINDS", "Layer", "get_kind", "Dense", "Flatten", "Convolution", "MaxPooling", "Merge"]
