"""Category columns of a table, encoded one-hot with a vocabulary that travels with the model.

model-init --data TABLE fits the vocabulary — the sorted distinct values of
every feature column of words, and of those declared with --categorical —
on the training data and keeps it as MODEL/categories.tsv (a line per
column: its name, then its categories, tab-separated).  The model's input
size is then the width after encoding.  Every tool that reads a table for
that model encodes the same columns the same way (files/columns.py); a
value the vocabulary lacks is all zeros and a warning, never a failure.
"""

import os

from ..errors import ModelError
from ..files.columns import parse_vocabulary, read_columns
from .classes import read_model_text

FILE = "categories.tsv"


def read(model_path):
    """The vocabulary of the model directory's current version ({column: categories}), or None."""
    path = os.path.join(model_path, FILE)
    text = read_model_text(path, path)
    return None if text is None else parse_vocabulary(text, path, ModelError)


COLUMNS_FILE = "columns.txt"  # the feature columns' header names, in the order model-init --data found them


def read_order(model_path):
    """The names of the feature columns the model was made with, or None."""
    path = os.path.join(model_path, COLUMNS_FILE)
    text = read_model_text(path, path)
    return None if text is None else [line for line in text.split("\n") if line]


def uses_table(model_path, *options):
    """Whether data for the model is read as a table: a table option is given, or the model encodes categories."""
    return any(o is not None for o in options) or read(model_path) is not None


def read_data(model_path, path, label=None, columns=None, drop=None, dtype=None, warn=None):
    """(samples, labels or None, feature names or None) of a table, its categories encoded as the model's and its
    columns taken by name in the model's order."""
    return read_columns(path, label, columns, drop, dtype, read(model_path), warn, read_order(model_path),
                        model_path)
