"""Layer kinds, one registry (see base.py); importing the package registers them all."""

from .base import KINDS, Layer, get_kind
from .connect import Connect
from .conv import Convolution, MaxPooling
from .dense import Dense, Flatten
from .dropout import Dropout, Noise
from .embedding import Embedding
from .merge import Merge
from .recurrent import GRU, LSTM
from .timedelay import TimeDelay

__all__ = ["KINDS", "Layer", "get_kind", "Dense", "Dropout", "Flatten", "Noise", "Convolution", "MaxPooling", "Merge", "LSTM", "GRU", "Embedding", "TimeDelay", "Connect"]
