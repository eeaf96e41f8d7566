"""Splitting a data set into parts (training, validation, test): the same rows of every file, seeded.

Files are split as they are: a text or CSV file line by line (its header
row, comments before the data and line ends kept, values untouched — word
labels too), an .npy file by its first axis.  Every file must hold the
same number of rows.  The rows of a part keep their order in the files.
"""

import os

import numpy as np

from ..errors import DataError, UsageError
from ..files import fs, tensorio

MARKER = ".split"  # in a folder kerash split wrote: --force may replace it


class RowsFile:
    """One file to split: npy (an array) or text (lines before the rows, then one line per row)."""

    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(os.path.normpath(path))
        data = tensorio.read_bytes(path, limit=1 << 31)
        if data.startswith(tensorio.NPY_MAGIC):
            self.array = tensorio.parse_tensor(data, tensorio.source_name(path))  # the bytes read once
            if self.array.ndim == 0:
                raise DataError(f"{path} holds one value, not rows")
            self.head, self.lines = [], None
            return
        self.array = None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{path} is neither .npy nor UTF-8 text") from None
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += "\r\n" if lines[0].endswith("\r\n") else "\n"
        # Comments and blank lines before the first row stay at the top of every part; later ones are dropped.
        first = next((i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")),
                     len(lines))
        self.head = lines[:first]
        body = [line for line in lines[first:] if not line.lstrip().startswith("#")]
        while body and not body[-1].strip():
            body.pop()
        if any(not line.strip() for line in body):  # rows in blocks: sequences of different lengths
            raise DataError(f"{path} holds blocks of rows between blank lines (sequences): kerash split cuts rows "
                            "and would break them; keep them apart as .npz (one array per sequence) or cut by block "
                            "(awk 'BEGIN { RS = \"\" }')")
        self.lines = [line for line in body if line.strip()]

    @property
    def rows(self):
        return len(self.array) if self.array is not None else len(self.lines)

    def part(self, indices, header):
        """The bytes of the part holding these rows."""
        if self.array is not None:
            return b"".join(bytes(chunk) for chunk in tensorio.tensor_chunks(self.array[indices], "npy"))
        keep = self.head + (self.lines[:1] if header else [])
        body = self.lines[1:] if header else self.lines
        return "".join(keep + [body[i] for i in indices]).encode("utf-8")

    def classes(self, header):
        """A class per row, for stratifying: the line's text, or the row's value (argmax of one-hot rows)."""
        if self.array is not None:
            a = self.array.reshape(len(self.array), -1)
            return a.argmax(axis=1) if a.shape[1] > 1 else a[:, 0]
        body = self.lines[1:] if header else self.lines
        return np.array([line.strip() for line in body])


def has_header(f):
    """Whether a text file's first row is a header: none of its fields is a number (and another row has one)."""
    from ..files import textformat

    if f.array is not None or len(f.lines) < 2:
        return False
    first = f.lines[0].strip().encode("utf-8")
    dialect = textformat.dialect_of(first)
    fields = textformat.split_fields(first, dialect)
    later = textformat.split_fields(f.lines[1].strip().encode("utf-8"), dialect)
    return (all(textformat.number(x, dialect) is None for x in fields)
            and any(textformat.number(x, dialect) is not None for x in later))


def part_sizes(n, fractions=None, counts=None):
    """Rows per part from fractions (largest remainders: they add up to n) or counts (at most n in all)."""
    if (fractions is None) == (counts is None):
        raise UsageError("give --fractions or --counts")
    if counts is not None:
        if any(c < 0 for c in counts) or sum(counts) > n:
            raise UsageError(f"--counts {','.join(map(str, counts))}: whole numbers ≥ 0 that add up to at most the "
                             f"{n} rows")
        return list(counts)
    if any(not 0 <= f <= 1 for f in fractions) or not 0.999999 <= sum(fractions) <= 1.000001:
        raise UsageError(f"--fractions {','.join(map(str, fractions))}: numbers in [0, 1] that add up to 1")
    exact = [f * n for f in fractions]
    sizes = [int(e) for e in exact]
    for k in sorted(range(len(exact)), key=lambda k: exact[k] - sizes[k], reverse=True)[: n - sum(sizes)]:
        sizes[k] += 1
    return sizes


def split_rows(n, sizes, seed, classes=None):
    """Index arrays (in file order) of the parts: a seeded shuffle cut at the sizes.

    With `classes` (stratified), each class is shuffled and its rows spread
    evenly through the order — row j of a class of m at (j + u)/m, u drawn
    in [0, 1) — so that every stretch of the order, and so every part, holds
    each class in its share of the whole, within one row.
    """
    rng = np.random.default_rng(seed)
    if classes is None:
        order = rng.permutation(n)
    else:
        _, codes = np.unique(np.asarray(classes), return_inverse=True)
        keys = np.empty(n)
        for c in range(codes.max() + 1 if n else 0):
            rows = rng.permutation(np.flatnonzero(codes == c))
            keys[rows] = (np.arange(len(rows)) + rng.random(len(rows))) / len(rows)
        order = np.argsort(keys, kind="stable")
    cuts = np.cumsum([0] + list(sizes))
    return [np.sort(order[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]


def write_split(folder, files, names, parts, headers, force=False):
    """Write folder/PART/FILE for every part and file at once (built beside, then put in place): a folder that
    exists is replaced only with `force`, and only when kerash split made it."""
    if os.path.lexists(folder):
        known = os.path.isfile(os.path.join(folder, MARKER))
        if not force or not known:
            raise UsageError(f"{folder} exists; give --force to replace a folder kerash split wrote"
                             if known else f"{folder} exists and is not a folder kerash split wrote; refusing to "
                             "replace it")

    def fill(tmp):
        os.makedirs(tmp)
        for name, indices in zip(names, parts):
            os.makedirs(os.path.join(tmp, name))
            for f, header in zip(files, headers):
                with open(os.path.join(tmp, name, f.name), "wb") as out:
                    out.write(f.part(indices, header))
        with open(os.path.join(tmp, MARKER), "w") as marker:
            marker.write("kerash split\n")

    try:
        fs.atomic_folder(folder, fill)
    except OSError as e:
        raise DataError(f"cannot write {folder}: {e.strerror or e}") from None
