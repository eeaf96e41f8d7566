"""Sequences of different lengths, as files hold them, and as one padded array.

A data set of sequences comes as

* text, one sequence per block of rows, blocks separated by blank lines
  (a row per step; the Unix way: awk 'BEGIN { RS = "" }' reads it too);
* rows of every sequence's steps one after another (text or .npy), with a
  lengths file (--lengths FILE: one length per sequence);
* an (N, T, I) .npy with a lengths file (the steps after each length are padding);
* a ragged .npz: arrays 'data' (all steps, one after another) and
  'lengths', or one array per sequence (np.savez(path, *sequences)).

In memory they are one array (N, T, I), T the longest length, every value
of a step after a sequence's end nan: the padding travels with the data
(through shuffles, shards and row selections) and the network reads each
length from it.  Targets of every step are padded alike.
"""

import io
import os

import numpy as np

from ..errors import DataError
from . import tensorio
from .labels import WordLabels, read_labels

NPZ_MAGIC = b"PK\x03\x04"


def block_lengths(data):
    """The rows of each block of a text's lines (blocks: runs of non-blank lines; comments do not count)."""
    lengths, count = [], 0
    for line in data.split(b"\n"):
        line = line.strip()
        if not line:
            if count:
                lengths.append(count)
                count = 0
        elif not line.startswith(b"#"):
            count += 1
    if count:
        lengths.append(count)
    return lengths


def pad(sequences, dtype=np.float64, where="data"):
    """Sequences (each (L, …) or (L,)) as one (N, T, …) array, the steps after each one's end nan.

    A step whose values are all missing is refused: nan steps are how the padding is told apart.
    """
    sequences = [np.asarray(s) for s in sequences]
    sequences = [s[:, None] if s.ndim == 1 else s for s in sequences]
    if not sequences:
        raise DataError("no sequences")
    for k, s in enumerate(sequences):
        empty = np.isnan(s.reshape(len(s), -1)).all(axis=1) if s.dtype.kind == "f" and len(s) else []
        if np.any(empty):
            raise DataError(f"sequence {k + 1}, step {int(np.argmax(empty)) + 1}: every value is missing; kerash "
                            f"tells a shorter sequence's padding by such steps: give at least one value ({where})")
    steps = max(len(s) for s in sequences)
    out = np.full((len(sequences), steps) + sequences[0].shape[1:], np.nan, dtype=dtype)
    for k, s in enumerate(sequences):
        if s.shape[1:] != sequences[0].shape[1:]:
            raise DataError(f"sequence {k + 1} has steps of {s.shape[1:]} values, the first {sequences[0].shape[1:]}")
        out[k, :len(s)] = s
    return out


def split(rows, lengths, where):
    """Rows of steps one after another, cut into sequences of `lengths`."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if int(lengths.sum(dtype=object)) != len(rows):
        raise DataError(f"the lengths add up to {int(lengths.sum(dtype=object))} steps but {where} has {len(rows)} rows")
    ends = np.cumsum(lengths)
    return [rows[end - n:end] for n, end in zip(lengths, ends)]


def read_lengths(path):
    """Sequence lengths from a file: one positive whole number per sequence."""
    where = tensorio.source_name(path)
    values = np.asarray(tensorio.read_tensor(path), dtype=np.float64).reshape(-1)
    if not len(values) or np.any(values != np.floor(values)) or np.any(values < 1) or np.any(values > 2**40):
        raise DataError(f"{where} must hold one positive whole number per sequence (its length)")
    return values.astype(np.int64)


def read_sequences(source, dtype=None, lengths=None, width=None):
    """Samples as the sequence model reads them: (N, T, I), padded with nan where lengths differ.

    `lengths`: a lengths array (--lengths) for rows of steps one after
    another or an (N, T, I) tensor.  Text with blank lines between blocks of
    rows is one sequence per block (one block of rows: one sequence, when its
    rows are `width` wide, the model's step); an .npy without lengths comes
    as read_tensor gives it.
    """
    where = tensorio.source_name(source)
    data = tensorio.read_bytes(source, limit=1 << 34)
    if data.startswith(NPZ_MAGIC):
        return _ragged_npz(data, where, dtype)
    found = None
    if not data.startswith(tensorio.NPY_MAGIC):
        found = block_lengths(data)
    table = tensorio.read_table(io.BytesIO(data), where, dtype=dtype)
    array = table.array
    if lengths is not None:
        if array.ndim == 3:
            if len(lengths) != len(array) or int(lengths.max()) > array.shape[1]:
                raise DataError(f"{len(lengths)} lengths (up to {int(lengths.max())}) for {where}'s {len(array)} "
                                f"sequences of {array.shape[1]} steps")
            array = np.array(array, dtype=dtype or np.float64, copy=True)
            array[np.arange(array.shape[1])[None, :] >= lengths[:, None]] = np.nan
            return array
        rows = array.reshape(len(array), -1) if array.ndim != 1 else array[:, None]
        return pad(split(rows, lengths, where), dtype or np.float64, where)
    if found is not None and len(found) == 1 and array.ndim == 2 and array.shape[1] == (width or array.shape[1]):
        return pad([array], dtype or np.float64, where)  # one block of rows: one sequence
    if found is not None and len(found) > 1:
        if table.columns is not None:  # a header row of names counts in the first block
            found[0] -= 1
        rows = array.reshape(len(array), -1) if array.ndim != 1 else array[:, None]
        return pad(split(rows, found, where), dtype or np.float64, where)
    return array


def _ragged_npz(data, where, dtype):
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # a damaged zip, or an object array
        raise DataError(f"{where}: not a readable .npz of arrays ({e})") from None
    with archive:
        names = list(archive.files)
        if "data" in names and "lengths" in names:
            lengths = np.asarray(archive["lengths"]).reshape(-1)
            if np.any(lengths < 1) or np.any(lengths != np.floor(lengths)):
                raise DataError(f"{where}: 'lengths' must hold positive whole numbers")
            rows = archive["data"]
            rows = rows[:, None] if rows.ndim == 1 else rows.reshape(len(rows), -1)
            return pad(split(rows, lengths.astype(np.int64), f"{where}'s 'data'"), dtype or np.float64)
        numbered = sorted((n for n in names if n.startswith("arr_") and n[4:].isdigit()), key=lambda n: int(n[4:]))
        if not numbered or len(numbered) != len(names):
            raise DataError(f"{where}: a ragged .npz holds 'data' and 'lengths', or one array per sequence "
                            f"(np.savez(path, *sequences)); found {', '.join(names) or 'nothing'}")
        return pad([archive[n] for n in numbered], dtype or np.float64)


def read_sequence_labels(source, x, names=False):
    """Labels for sequences x (N, T, …): a row per sequence (its last step), or every step — blocks between blank
    lines, or rows one after another — padded with nan as x is."""
    where = tensorio.source_name(source)
    labels = read_labels(source, names)
    if x.ndim != 3:
        return labels
    steps = x.shape[1] - np.isnan(x.reshape(x.shape[0], x.shape[1], -1)).all(axis=2).sum(axis=1)
    count = len(labels.codes if isinstance(labels, WordLabels) else labels)
    if count == len(x) or count != int(steps.sum()):
        return labels
    if isinstance(labels, WordLabels):
        raise DataError(f"{where}: class names at every step of sequences of different lengths: give class "
                        "indices 0..K-1 instead")
    if isinstance(source, str) and source != "-" and os.path.isfile(source):  # a file can be read again
        data = tensorio.read_bytes(source, limit=1 << 34)
        blocks = block_lengths(data) if not data.startswith(tensorio.NPY_MAGIC) else []
        if len(blocks) > 1:  # blocks of labels: each as long as its sequence
            for k, (have, want) in enumerate(zip(blocks, steps.tolist())):
                if have != want:
                    raise DataError(f"{where}: block {k + 1} holds {have} labels but sequence {k + 1} has {want} "
                                    "steps")
            if len(blocks) != len(steps):
                raise DataError(f"{where}: {len(blocks)} blocks of labels for {len(steps)} sequences")
    rows = np.asarray(labels, dtype=np.float64)
    rows = rows[:, None] if rows.ndim == 1 else rows.reshape(len(rows), -1)
    return pad(split(rows, steps, where))


def text_blocks(values, lengths=None):
    """Text of per-step values (N, T, K): a block of rows per sequence, blank lines between; padding left out."""
    out = []
    for k in range(values.shape[0]):
        steps = values.shape[1] if lengths is None else int(lengths[k])
        out.append(b"".join(tensorio.tensor_chunks(values[k, :steps].reshape(steps, -1))))
    return b"\n".join(out)
