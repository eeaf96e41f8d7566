"""Label files that hold class names (`setosa`, `spam`) instead of numbers.

A labels file is read as numbers (any tensor format, see `tensorio`) unless
it is text in which some label after the first line is a word: then it is
one class name per line (a spreadsheet's column: quotes removed, a byte-order
mark and CRLF line ends allowed, `#` comment lines and blank lines skipped).
The first line may be the column's name; whether it is depends on the data
it goes with (see `WordLabels.codes_for`).  Reading is streamed: memory
follows the number of labels (four bytes each) and of distinct names, and
the first bad line ends the read.
"""

from typing import NamedTuple

import numpy as np

from ..errors import DataError
from .tensorio import NPY_MAGIC, InputStream

PEEK = 1 << 16  # bytes looked at to tell names from numbers
MAX_NAME = 4096  # bytes of one label line: longer is not a class name


class WordLabels(NamedTuple):
    """Class names as read: distinct names in order of appearance, one code per label line."""

    names: tuple  # distinct names, in order of first appearance
    codes: np.ndarray  # (N,) int32: the index into names of each label, in file order
    lines: tuple  # the line number of each name's first appearance
    where: str  # the file's name for messages

    def codes_for(self, samples):
        """The codes of `samples` labels: a first line that names the column is dropped.

        The first line is taken for a header when there is one label more than
        samples and its word appears nowhere else (a spreadsheet column exported
        with its name); otherwise every line is a label.
        """
        codes = self.codes
        if len(codes) == samples + 1 and samples and not np.any(codes[1:] == codes[0]):
            return codes[1:], 1
        return codes, 0

    def take(self, rows, samples):
        """The labels of the 0-based rows `rows` of data with `samples` samples (backprop --rows)."""
        codes, _ = self.codes_for(samples)
        if len(codes) != samples:
            raise DataError(f"{samples} data samples but {len(codes)} labels ({self.where})")
        return self._replace(codes=codes[rows])


def word_labels(names, lines, where):
    """WordLabels of one class name per label (`lines`: the line number of each, for messages)."""
    index, found, first = {}, [], []
    codes = np.empty(len(names), dtype=np.int32)
    for k, (name, lineno) in enumerate(zip(names, lines)):
        code = index.get(name)
        if code is None:
            code = index[name] = len(found)
            found.append(name)
            first.append(lineno)
        codes[k] = code
    return WordLabels(tuple(found), codes, tuple(first), where)


def read_labels(source=None, names=False):
    """A labels file: a numeric array (as tensorio.read_tensor), or WordLabels when it names classes.

    With names=True (the model has class names) a text file is always read as
    names, so that names that look like numbers (`1`, `2`, `x`) stay names.
    """
    from . import textformat

    inp = InputStream(source)
    try:
        head = inp.read(len(NPY_MAGIC))
        if head == NPY_MAGIC:
            from .tensorio import read_npy_stream

            return read_npy_stream(inp, head)[0]
        head += inp.read(PEEK - len(head))
        if names or _names_in(head, len(head) < PEEK):
            return _read_words(inp, head)
        try:
            return textformat.read_text(inp, inp.where, head)[0]
        except DataError as e:
            # The first word may come late (labels grouped by class): a file can be read again.
            if not _rereadable(source) or "not a number" not in str(e):
                raise
            as_numbers = e
    finally:
        inp.close()
    try:
        return read_labels(source, names=True)
    except DataError:
        raise as_numbers from None


def _rereadable(source):
    import os

    return isinstance(source, (str, os.PathLike)) and str(source) != "-" and os.path.isfile(source)


def _data_lines(block):
    """(line number, line) of the lines of `block` that hold something, comments and blanks skipped."""
    for lineno, line in enumerate(block.split(b"\n"), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith(b"#"):
            yield lineno, stripped


def _is_name(line):
    """True when a line is a label that is not numbers (a word), as the numeric reader would split it."""
    from .textformat import dialect_of, number, split_fields

    dialect = dialect_of(line)
    fields = split_fields(line, dialect)
    return bool(fields) and any(f and number(f, dialect) is None for f in fields)


def _names_in(head, whole):
    """Whether the first bytes of a text file are class names: a word in a label after the first."""
    from .textformat import BINARY

    text = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    if not whole:
        text = text[: text.rfind(b"\n") + 1]  # whole lines only
    binary = BINARY.search(text)
    if binary:  # decided by the lines before; the reader then says what is wrong at that line
        text, whole = text[: text.rfind(b"\n", 0, binary.start()) + 1], False
    lines = [line for _, line in _data_lines(text)]
    if len(lines) == 1 and whole:
        return _is_name(lines[0])
    return any(_is_name(line) for line in lines[1:])


def _name_of(line, lineno, where):
    """The class name on one label line (surrounding white space and quotes removed)."""
    from .textformat import BINARY, excerpt

    if len(line) > MAX_NAME:
        raise DataError(f"{where}:{lineno}: a label of more than {MAX_NAME} bytes is not a class name")
    if BINARY.search(line):
        raise DataError(f"{where}:{lineno}: binary data, not a class name")
    if b"\r" in line:
        raise DataError(f"{where}:{lineno}: a carriage return inside the line (old Mac line ends? convert them: tr '\\r' '\\n')")
    if line[:1] == b'"':
        if len(line) < 2 or line[-1:] != b'"' or b'"' in line[1:-1].replace(b'""', b""):
            raise DataError(f"{where}:{lineno}: unbalanced quotes in {excerpt(line)}")
        line = line[1:-1].replace(b'""', b'"').strip()
    else:
        for sep, what in ((b"\t", "tabs"), (b",", "commas"), (b";", "semicolons")):
            if sep in line:
                raise DataError(f"{where}:{lineno}: {excerpt(line)} holds several columns (separated by {what}); "
                                "a labels file of class names holds one name per line")
    if not line:
        raise DataError(f"{where}:{lineno}: an empty class name")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{where}:{lineno}: {excerpt(line)} is not UTF-8 text") from None


def _read_words(inp, head):
    from array import array

    index, names, lines = {}, [], []
    codes = array("i")
    pending = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    lineno = 0
    while True:
        more = inp.read(PEEK) if pending is not None else b""
        data = (pending or b"") + more
        if more:
            cut = data.rfind(b"\n") + 1
            if not cut and len(data) > MAX_NAME:
                raise DataError(f"{inp.where}:{lineno + 1}: a label of more than {MAX_NAME} bytes is not a class name")
            block, pending = data[:cut], data[cut:]
        else:
            block, pending = data, None
        for offset, line in _data_lines(block):
            name = _name_of(line, lineno + offset, inp.where)
            code = index.get(name)
            if code is None:
                code = index[name] = len(names)
                names.append(name)
                lines.append(lineno + offset)
            codes.append(code)
        lineno += block.count(b"\n")
        if pending is None:
            break
    return WordLabels(tuple(names), np.frombuffer(codes, dtype=np.int32) if codes else np.empty(0, np.int32),
                      tuple(lines), inp.where)
