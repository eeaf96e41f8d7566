"""Text tensors: an exact, streamed reader that is strict about what is not a number, and the writer.

Reading goes in blocks of whole lines, so memory follows the size of the
result and the first bad line ends the read.  Each block is parsed by numpy
as a whole: one ``bytes.translate`` classifies the bytes, the digits of every
number become one integer (``np.fromstring`` reads integers eight times as
fast as floats), and ``mantissa × 10^exponent`` is rounded exactly with
double-double arithmetic.  The few values whose rounding that cannot decide,
and every token that is not plain digits (``nan``, ``inf``, very long
mantissas, huge exponents), go through Python's ``float``, which rounds
correctly.  A line that fails is read again on its own by `line_problem`,
which says what is wrong.  A large regular file is read by two processes,
each parsing one half.

Values are separated by white space, by commas or by semicolons: the first
data line decides, and every line must follow it (see `Dialect`).  A first
line in which no field is a number is a header of column names.

Writing uses the shortest representation that reads back to the same value
(Python's ``repr`` for float64, numpy's for float32), so a round trip is
bit-exact; large tensors are formatted by two processes.
"""

import mmap
import os
import re
import sys
from typing import NamedTuple, Optional

import numpy as np

from ..errors import DataError, printable
from ..processes import end_child, fork_child, wait_child

MAX_DIMS = 32  # numpy 1.26 holds at most 32 dimensions
# A longer line is refused: parsing one line costs memory many times its size (a 40 MB line took 2.7 GB).
MAX_LINE = 16 << 20

# Bytes read and parsed at a time; a line longer than this is checked as it grows.
BLOCK = 1 << 20
# Larger regular files are read by two processes, and larger tensors written by two.
PARALLEL_BYTES = 8 << 20
PARALLEL_VALUES = 500_000

# Byte classes; separators sort before the characters of tokens.
WS, NL, FIELD, DIG, DOT, SIGN, EXP, QUOTE, HASH, OTHER, CONTROL = range(11)

_NUMBER = re.compile(rb"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)", re.IGNORECASE)
BINARY = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")
_LONE_CR = re.compile(rb"\r(?!\n)")
_SHAPE = re.compile(rb"\s*#\s*shape:(.*)", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(rb"[ \t\r\f\v]*#")
# The bytes of numbers (nan and inf(inity) included) and of separators.
_NUMBER_BYTES = b'0123456789+-.eEnNaAiIfFtTyY" \t\r\f\v,;'

_BOM = b"\xef\xbb\xbf"
_MAX_BYTES = 1 << 62
# np.fromstring saturates integers that overflow int64; such mantissas, and
# those above 9e18 (whose split into two doubles would not be exact), go to float().
_MAX_DIGITS = 40
_MAX_MANTISSA = 9 * 10**18
_MAX_EXP_DIGITS = 4


class Dialect:
    """How the values of a line are separated: white space, commas, or semicolons.

    The first data line (or the header) decides.  A semicolon makes a
    semicolon file, where a comma is a decimal comma (``1,5;2,5``); else a
    comma makes a comma file (``1.5, 2.5``); else values are separated by
    white space, and a comma anywhere is an error, because ``1,5 2,5`` would
    otherwise silently become four columns.
    """

    def __init__(self, sep):
        self.sep = sep
        classes = bytearray([OTHER]) * 256
        for c in [*range(0, 9), *range(14, 32), 127]:  # as BINARY
            classes[c] = CONTROL
        for c in b" \t\r\f\v":
            classes[c] = WS
        classes[ord("\n")] = NL
        for c in b"0123456789":
            classes[c] = DIG
        classes[ord(".")] = DOT
        classes[ord("+")] = classes[ord("-")] = SIGN
        classes[ord("e")] = classes[ord("E")] = EXP
        classes[ord('"')] = QUOTE
        classes[ord("#")] = HASH
        self.delete = b"."
        if sep == b";":
            classes[ord(";")] = FIELD
            classes[ord(",")] = DOT
            self.delete = b".,"
        elif sep == b",":
            classes[ord(",")] = FIELD
        self.classes = bytes(classes)
        # What np.fromstring reads: digits and signs; an exponent becomes a
        # second integer; decimal points go.
        self.digits = bytes.maketrans(b'\t\r\f\veE,;"', b"         ")

    @property
    def name(self):
        return {None: "white space", b",": "commas", b";": "semicolons"}[self.sep]


_DIALECTS = {}


def dialect_of(line):
    """The dialect that a first line (of data or names) sets for its file."""
    sep = b";" if b";" in line else b"," if b"," in line else None
    if sep not in _DIALECTS:
        _DIALECTS[sep] = Dialect(sep)
    return _DIALECTS[sep]


class _LineProblem(Exception):
    """Line `lineno` is not numbers: `problem` says why (the file name is added by read_text)."""

    def __init__(self, lineno, problem):
        super().__init__(lineno, problem)
        self.lineno, self.problem = lineno, problem


# ---------------------------------------------------------------- one line at a time


def excerpt(data, limit=24):
    """A short quoted excerpt of some bytes that is safe to print: escaped, at most `limit` characters."""
    text = printable(bytes(data[: 4 * limit]).decode("utf-8", "backslashreplace"))
    if len(text) > limit or len(data) > 4 * limit:
        text = text[:limit] + "…"
    return f"'{text}'"


def split_fields(line, dialect):
    """The fields of one line (quotes removed, white space stripped); [] for a line without values."""
    if dialect.sep is None:
        fields = line.split()
        if b'"' not in line:
            return fields
        return [f[1:-1] if len(f) >= 2 and f[:1] == f[-1:] == b'"' else f for f in fields]
    import csv

    text = line.decode("latin-1").replace("\r", " ").replace("\0", " ")  # csv refuses both inside a line
    row = next(csv.reader([text], delimiter=dialect.sep.decode(), skipinitialspace=True), [])
    fields = [f.strip().encode("latin-1") for f in row]
    return fields if any(fields) else []


def number(field, dialect):
    """The value of one field, or None when it is not a number."""
    if dialect.sep == b";":
        field = field.replace(b",", b".")
    if not _NUMBER.fullmatch(field):
        return None
    return float(field)


def _overflows(value, field):
    return abs(value) == float("inf") and b"inf" not in field.lower()


def line_problem(line, dialect, ncols, header=False):
    """Why `line` is not a row of `ncols` numbers (any number when None), or None when it is one or holds no values."""
    if BINARY.search(line):
        return "binary data, not a text tensor"
    if _COMMENT.match(line):
        return None
    if _LONE_CR.search(line.rstrip(b"\r")):
        return "a carriage return inside the line (old Mac line ends? convert them: tr '\\r' '\\n')"
    fields = split_fields(line, dialect)
    for k, field in enumerate(fields, 1):
        if not field:
            return f"empty field {k} (a missing value? write nan)"
        value = number(field, dialect)
        if value is None:
            return f"not a number: {excerpt(field)}{_hint(field, dialect)}"
        if _overflows(value, field):
            return f"{excerpt(field)} is too large for a float64 (it overflows to infinity)"
    if fields and ncols is not None and len(fields) != ncols:
        named = f" (the header names {ncols} columns)" if header else ""
        return f"expected {ncols} values, found {len(fields)}{named}"
    return None


MISSING = re.compile(rb"(?:NA|N/A|n/a|na|\?|null|NULL|None|-|#N/A|missing)")  # spreadsheets' missing values


def _hint(field, dialect):
    if MISSING.fullmatch(field.strip()):
        return " (a missing value? write it nan; train and predict need every value: fill it or leave its row out)"
    if dialect.sep is None and (b"," in field or b";" in field):
        return " (a decimal comma? this file's first line is separated by white space; write 1.5, or separate all values by ';')"
    if dialect.sep is not None and re.search(rb"[0-9.]\s+[-+.0-9]", field):
        return f" (values separated by spaces in a file separated by {dialect.name}: decimal commas? write 1.5)"
    if dialect.sep == b"," and re.fullmatch(rb"[-+]?[0-9]+,[0-9]+", field):
        return " (a decimal comma in a comma-separated file: write 1.5, or separate the values by ';')"
    return ""


# ---------------------------------------------------------------- exact rounding

_POW10 = None
_POW_MIN, _POW_MAX = -280, 280  # the double-double powers stay normal and the products finite
_SPLIT = 134217729.0  # 2**27 + 1: Dekker's split of a double into two 26-bit halves


def _powers():
    """10^e for e in [_POW_MIN, _POW_MAX] as double-doubles hi + lo, with hi split in halves."""
    global _POW10
    if _POW10 is None:
        hi, lo = [], []
        for e in range(_POW_MIN, _POW_MAX + 1):
            # int → float and int / int round correctly in Python
            if e >= 0:
                h = float(10**e)
                hi.append(h)
                lo.append(float(10**e - int(h)))
            else:
                d = 10**-e
                h = 1 / d
                num, den = h.as_integer_ratio()
                hi.append(h)
                lo.append((den - num * d) / (d * den))
        hi, lo = np.array(hi), np.array(lo)
        c = _SPLIT * hi
        hh = c - (c - hi)
        _POW10 = (hi, hh, hi - hh, lo)
    return _POW10


def _scale(m, e10):
    """Round m · 10^e10 (0 ≤ m ≤ 9e18, e10 in range) to float64.

    Returns (values, undecided).  The product is a double-double with a
    relative error below 2^-100, so its rounding is exact unless the value
    lies that close to a midpoint between two floats: those are undecided.
    """
    # In slices whose temporaries stay in the cache (and below malloc's mmap
    # threshold): five times as fast as whole blocks.
    values, undecided = np.empty(m.size), np.empty(m.size, bool)
    for s in range(0, m.size, _SLICE):
        values[s : s + _SLICE], undecided[s : s + _SLICE] = _scale_slice(m[s : s + _SLICE], e10[s : s + _SLICE])
    return values, undecided


_SLICE = 8192


def _scale_slice(m, e10):
    hi, hh, hl, lo = _powers()
    i = e10 - _POW_MIN
    ph, phh, phl, pl = hi[i], hh[i], hl[i], lo[i]
    mh = m.astype(np.float64)
    ml = (m - mh.astype(np.int64)).astype(np.float64)  # exact: |ml| ≤ 512
    c = _SPLIT * mh
    mhh = c - (c - mh)
    mhl = mh - mhh
    p = mh * ph
    # Dekker's exact error of the product mh·ph, then the small cross terms.
    err = mhh * phh
    err -= p
    err += mhh * phl
    err += mhl * phh
    err += mhl * phl
    err += mh * pl + ml * ph
    bound = p * 2.0**-96
    low = p + (err - bound)
    high = p + (err + bound)
    return low, low != high


# ---------------------------------------------------------------- blocks of lines


def parse_block(blk, dialect, ncols, lineno, header=False):
    """Parse `blk` (whole lines, ending in a newline) into rows of `ncols` float64 values.

    Blank lines and comment lines are skipped; `lineno` is the number of the
    block's first line.  Returns (rows, number of lines); raises _LineProblem
    for the first bad line.
    """
    if b"#" in blk:
        blk = _blank_comments(blk)
    cls = np.frombuffer(blk.translate(dialect.classes), np.uint8)
    tok = cls > FIELD
    edges = np.flatnonzero(tok[1:] != tok[:-1]) + 1
    if tok[0]:
        edges = np.concatenate(([0], edges))
    starts, ends = edges[0::2], edges[1::2]
    newlines = np.flatnonzero(cls == NL)
    counts = np.diff(np.searchsorted(starts, newlines), prepend=0)
    bad_lines = [np.flatnonzero((counts != ncols) & (counts != 0))]
    special = np.flatnonzero(cls > DIG)
    kinds = cls[special]
    control = special[kinds == CONTROL]
    if control.size:
        bad_lines.append(np.searchsorted(newlines, control[:1]))
    if b"\r" in blk and blk.count(b"\r") != blk.count(b"\r\n"):
        bad_lines.append(np.searchsorted(newlines, [_LONE_CR.search(blk).start()]))
    odd = np.zeros(starts.size, bool)  # tokens left to Python's float (which may reject them)
    if b'"' in blk:
        starts, ends, special, kinds = _unquote(cls, starts, ends, special, kinds, odd)
    if dialect.sep is not None and starts.size:
        bad_lines.append(_misplaced_separators(cls, starts, ends, counts, newlines, ncols))
    has_e, frac = _structure(cls, starts, ends, special, kinds, odd)
    first_bad = min((int(b[0]) for b in bad_lines if len(b)), default=len(newlines))
    try:
        values = _values(blk, dialect, starts, ends, has_e, frac, odd)
    except (ValueError, _Mismatch):  # not expected for tokens that passed the checks
        first_bad = 0
    else:
        if odd.any():
            first_bad = _read_odd(blk, dialect, starts, ends, odd, newlines, values, first_bad)
    if first_bad < len(newlines):
        _fail(blk, newlines, first_bad, dialect, ncols, lineno, header)
    return values.reshape(-1, ncols), len(newlines)


class _Mismatch(Exception):
    pass


def _token_of(starts, positions):
    return np.searchsorted(starts, positions, "right") - 1


def _blank_comments(blk):
    """`blk` with every line whose first non-blank character is '#' made blank."""
    buf = None
    pos = blk.find(b"#")
    while pos >= 0:
        start = blk.rfind(b"\n", 0, pos) + 1
        end = blk.find(b"\n", pos)
        if not blk[start:pos].strip():
            buf = buf or bytearray(blk)
            buf[start:end] = b" " * (end - start)
        pos = blk.find(b"#", end)
    return blk if buf is None else bytes(buf)


def _unquote(cls, starts, ends, special, kinds, odd):
    """Numbers in double quotes ("1.5"): the quotes must enclose a whole token, which loses them."""
    is_quote = kinds == QUOTE
    tid = _token_of(starts, special[is_quote])
    n = np.bincount(tid, minlength=starts.size)
    quoted = np.flatnonzero(n)
    whole = (n[quoted] == 2) & (cls[starts[quoted]] == QUOTE) & (cls[ends[quoted] - 1] == QUOTE)
    whole &= ends[quoted] - starts[quoted] >= 3
    odd[quoted[~whole]] = True
    inside = quoted[whole]
    starts, ends = starts.copy(), ends.copy()
    starts[inside] += 1
    ends[inside] -= 1
    return starts, ends, special[~is_quote], kinds[~is_quote]


def _misplaced_separators(cls, starts, ends, counts, newlines, ncols):
    """Lines (indices) whose separators are not exactly one between each two values."""
    seps = np.flatnonzero(cls == FIELD)
    per_line = np.diff(np.searchsorted(seps, newlines), prepend=0)
    full = (counts == ncols) & (counts > 0)
    bad = np.flatnonzero(full & (per_line != ncols - 1))
    good = full & (per_line == ncols - 1)
    if ncols > 1 and good.any():
        rows = np.flatnonzero(good)
        in_good = np.repeat(good, counts)
        s = starts[in_good].reshape(-1, ncols)
        e = ends[in_good].reshape(-1, ncols)
        f = seps[np.repeat(good, per_line)].reshape(-1, ncols - 1)
        between = (f >= e[:, :-1]) & (f < s[:, 1:])
        bad = np.union1d(bad, rows[~between.all(axis=1)])
    return bad


def _structure(cls, starts, ends, special, kinds, odd):
    """Check that each token is [sign] digits [. digits] [e [sign] digits]; mark the others odd.

    Returns (whether it has an exponent, number of digits after the point), per token.
    """
    ntok = starts.size
    epos = ends
    has_e = np.zeros(ntok, bool)
    exps = special[kinds == EXP]
    if exps.size:
        tid = _token_of(starts, exps)
        odd[tid[1:][tid[1:] == tid[:-1]]] = True  # two exponents
        has_e[tid] = True
        epos = ends.copy()
        epos[tid] = exps
        exp_digits = ends[tid] - exps - 1 - (cls[exps + 1] == SIGN)
        odd[tid[(exp_digits < 1) | (exp_digits > _MAX_EXP_DIGITS)]] = True
    dots = special[kinds == DOT]
    frac = np.zeros(ntok, np.int64)
    ndot = 0
    if dots.size == ntok and ntok and np.all(dots >= starts) and np.all(dots < ends):
        frac = epos - dots - 1  # one point in every token: the common case
        ndot = 1
        odd[frac < 0] = True  # the point was in the exponent
    elif dots.size:
        tid = _token_of(starts, dots)
        ndot = np.bincount(tid, minlength=ntok)
        odd[ndot > 1] = True
        after = epos[tid] - dots - 1
        odd[tid[after < 0]] = True
        frac[tid] = after
    lead = 0
    signs = special[kinds == SIGN]
    if signs.size:
        lead = cls[starts] == SIGN
        before = cls[signs - 1]
        misplaced = signs[(before > FIELD) & (before != QUOTE) & (before != EXP)]
        if misplaced.size:
            odd[_token_of(starts, misplaced)] = True
    others = special[kinds >= QUOTE]
    if others.size:
        odd[_token_of(starts, others)] = True
    digits = epos - starts - lead - ndot
    odd |= (digits < 1) | (digits > _MAX_DIGITS)
    return has_e, frac


def _values(blk, dialect, starts, ends, has_e, frac, odd):
    """The value of every plain token; odd ones are left as NaN, for `_read_odd`."""
    ntok = starts.size
    if ntok == 0:
        return np.empty(0)
    any_odd = bool(odd.any())
    if any_odd:
        plain = ~odd
        buf = bytearray(blk)
        lengths = ends[odd] - starts[odd]
        offsets = np.repeat(starts[odd] - np.cumsum(lengths) + lengths, lengths)
        np.frombuffer(buf, np.uint8)[offsets + np.arange(offsets.size)] = 32
        text = bytes(buf)
        has_e, frac = has_e[plain], frac[plain]
        first = np.frombuffer(blk, np.uint8)[starts[plain]]
    else:
        text = blk
        first = np.frombuffer(blk, np.uint8)[starts]
    n = first.size
    expected = n + int(np.count_nonzero(has_e))
    if expected == 0:
        return np.full(ntok, np.nan)  # np.fromstring would read a 0 from white space alone
    ints = np.fromstring(text.translate(dialect.digits, dialect.delete), dtype=np.int64, sep=" ")
    if ints.size != expected:
        raise _Mismatch
    if n != ints.size:
        at = np.arange(n) + np.cumsum(has_e) - has_e
        m = ints[at]
        e10 = np.zeros(n, np.int64)
        e10[has_e] = ints[at[has_e] + 1]
        e10 -= frac
    else:
        m, e10 = ints, -frac
    np.abs(m, out=m)
    usable = (e10 >= _POW_MIN) & (e10 <= _POW_MAX) & (m <= _MAX_MANTISSA) & (m >= 0)
    scaled, undecided = _scale(np.where(usable, m, 0), np.where(usable, e10, 0))
    undecided |= ~usable & (m != 0)
    np.negative(scaled, out=scaled, where=first == ord("-"))
    if not any_odd and not undecided.any():
        return scaled
    values = np.full(ntok, np.nan)
    plain_idx = np.flatnonzero(~odd)
    values[plain_idx] = scaled
    odd[plain_idx[undecided]] = True
    return values


def _read_odd(blk, dialect, starts, ends, odd, newlines, values, first_bad):
    """Read the odd tokens with Python's float, in order; returns the first bad line (index)."""
    idx = np.flatnonzero(odd)
    lines = np.searchsorted(newlines, starts[idx])
    for t, line in zip(idx.tolist(), lines.tolist()):
        if line >= first_bad:
            break
        field = blk[starts[t] : ends[t]]
        value = number(field, dialect)
        if value is None or _overflows(value, field):
            return line
        values[t] = value
    return first_bad


def _fail(blk, newlines, index, dialect, ncols, lineno, header):
    start = int(newlines[index - 1]) + 1 if index else 0
    for k in range(index, len(newlines)):
        problem = line_problem(blk[start : newlines[k]], dialect, ncols, header)
        if problem:
            raise _LineProblem(lineno + k, problem)
        start = int(newlines[k]) + 1
    raise _LineProblem(lineno + index, f"cannot read this line as {ncols} numbers")


# ---------------------------------------------------------------- whole files


class _Lines:
    """Blocks of whole lines from read(n) → bytes, up to byte `limit` of the input."""

    def __init__(self, read, head, check):
        self.read = read
        self.pending = head
        self.consumed = len(head)  # bytes taken from the input so far
        self.limit = None
        self.eof = False
        self.check = check  # checks a line longer than a block as it grows

    def block(self, lineno):
        """The next bytes holding whole lines (ending in a newline), or b'' at the end."""
        parts = [self.pending]
        unchecked, waiting = [self.pending], len(self.pending)  # of a line longer than a block
        found = False  # in what is read now: what was pending holds no newline, but for the first bytes
        comment = None
        length = len(self.pending)  # of the line being read, which holds no newline yet
        while not found and not self.eof:
            if length > MAX_LINE:
                raise _LineProblem(lineno, f"a line longer than {MAX_LINE >> 20} MiB (a row of more than a million "
                                           "values): store such a tensor as .npy, or its rows on lines of their own "
                                           "under a '# shape:' header")
            if waiting > BLOCK:
                data = b"".join(unchecked)
                if comment is None:  # the first check sees the start of the line
                    comment = bool(_COMMENT.match(data))
                rest = b"" if comment else data[self.check(data, lineno) :]
                unchecked, waiting = [rest], len(rest)
            want = BLOCK if self.limit is None else min(BLOCK, self.limit - self.consumed)
            more = self.read(want) if want > 0 else b""
            self.consumed += len(more)
            self.eof = not more
            found = b"\n" in more
            parts.append(more)
            unchecked.append(more)
            waiting += len(more)
            length += len(more) if not found else 0
        pending = b"".join(parts) if len(parts) > 1 else parts[0]
        if self.eof and pending and not pending.endswith(b"\n"):
            pending += b"\n"
        cut = pending.rfind(b"\n") + 1
        self.pending = pending[cut:]
        return pending[:cut]


def read_text(source, where, head=b"", dtype=None):
    """Parse a text tensor from `head` followed by source.read(n).

    `source` may also offer `size` (the input's total size, when it is a
    regular file) and `pread(n, offset)`: then a large input is split
    between two processes.  Returns (array, column names from a header row
    or None, 'text' or 'kerash').  With `dtype`, every block of rows is
    converted as soon as it is parsed: no float64 copy of the whole tensor.
    """
    try:
        start = _start(source, where, head, np.dtype(dtype or np.float64))
        if start.whole is not None:
            return start.whole
        split = _split_point(source, start.lines, start.offset)
        args = (start.dialect, start.ncols, start.lineno, start.columns is not None)
        if split is None:
            chunks = _blocks(start.lines, start.body, *args, start.dtype)
        else:
            chunks = _blocks_in_two(source, start.lines, start.body, (start.offset, split), *args, start.dtype)
        return (*_finish(chunks, start.shape, start.ncols, start.columns, where, start.dtype), "text")
    except _LineProblem as e:
        raise DataError(f"{where}:{e.lineno}: {e.problem}") from None


def iter_text_rows(source, where, head=b"", dtype=None):
    """A text tensor of rows as it is read: its column names (or None), then blocks of rows (2-D arrays).

    A generator: memory holds one block of the input at a time (about a
    MiB), whatever its length.  The blocks hold, in order, exactly the rows
    read_text gives.  A tensor that is not rows (KeraSH's format, a
    '# shape:' of other than two dimensions) comes whole, as one block.
    Errors are raised when the block that holds them is reached.
    """
    try:
        start = _start(source, where, head, np.dtype(dtype or np.float64))
        if start.whole is not None:
            yield start.whole[1]
            yield start.whole[0]
            return
        if start.shape is not None and len(start.shape) != 2:
            yield start.columns
            yield _finish(_blocks(start.lines, start.body, start.dialect, start.ncols, start.lineno,
                                  start.columns is not None, start.dtype),
                          start.shape, start.ncols, start.columns, where, start.dtype)[0]
            return
        yield start.columns
        body, lineno, rows = start.body or start.lines.block(start.lineno), start.lineno, 0
        while body:
            block, nlines = parse_block(body, start.dialect, start.ncols, lineno, start.columns is not None)
            lineno += nlines
            rows += len(block)
            if len(block):
                yield block.astype(start.dtype, copy=False)
            body = start.lines.block(lineno)
        if start.shape is not None and start.shape != (rows, start.ncols):
            raise DataError(f"{where}:1: shape {' '.join(map(str, start.shape))} does not match {rows} rows of "
                            f"{start.ncols} values")
        if not rows and start.shape is None:
            found = f"a header row ({len(start.columns)} names) and" if start.columns else "empty input:"
            raise DataError(f"{found} no numbers found ({where})")
    except _LineProblem as e:
        raise DataError(f"{where}:{e.lineno}: {e.problem}") from None


class _Start(NamedTuple):
    """A text tensor read up to its first row of values; `whole` (array, columns, format) when it ended there."""

    whole: Optional[tuple]
    lines: Optional["_Lines"] = None
    body: bytes = b""
    offset: int = 0  # of `body` in the input
    dialect: Optional[Dialect] = None
    ncols: int = 0
    lineno: int = 1  # of body's first line
    columns: Optional[tuple] = None
    shape: Optional[tuple] = None
    dtype: np.dtype = np.dtype(np.float64)


def _start(source, where, head, dtype):
    """Read the comments, the '# shape:' line and a header row of names, up to the first row of values."""
    dialect = None

    def check(data, lineno):
        return _check_long_line(data, dialect, lineno)

    lines = _Lines(source.read, head, check)
    lineno = 1
    base = 0  # offset of blk in the input
    blk = lines.block(lineno)
    if blk.startswith(_BOM):
        blk, base = blk[3:], 3
    elif blk[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(f"{where} is UTF-16 text; save it as UTF-8 (a spreadsheet's 'CSV UTF-8')")
    shape = None
    pos = 0
    # Comments and blank lines before the first data line; '# shape:' may open the file.
    while True:
        end = blk.find(b"\n", pos)
        if end < 0:
            more = lines.block(lineno)
            if not more:
                return _Start((*_finish([], shape, None, None, where, dtype), "text"))
            blk, base, pos = blk[pos:] + more, base + pos, 0
            continue
        line = blk[pos:end]
        if BINARY.search(line):
            raise _LineProblem(lineno, "binary data, not a text tensor")
        stripped = line.strip()
        if stripped.startswith(b"#"):
            if lineno == 1:
                shape = _shape_header(line, where)
        elif stripped.translate(None, b" \t\r\f\v,;"):  # not only separators: values
            break
        pos = end + 1
        lineno += 1
    first = blk[pos:end]
    dialect = dialect_of(first)
    fields = split_fields(first, dialect)
    ncols = len(fields)
    columns = None
    if all(number(f, dialect) is None for f in fields):
        if not any(fields):
            raise _LineProblem(lineno, "empty fields only")
        try:
            columns = tuple(printable(f.decode("utf-8")) for f in fields)
        except UnicodeDecodeError:  # no header of names: random bytes that happen to hold no control character
            raise _LineProblem(lineno, "binary data, not a text tensor (or text that is not UTF-8)") from None
        pos = end + 1
        lineno += 1
    elif shape is None and dialect.sep is None and ncols == 3 and _kerash_like(fields):
        blk, is_kerash = _kerash_second_line(blk, end, lines, lineno)
        if is_kerash:
            w, h, d = (int(f) for f in fields)
            chunks = _blocks(lines, blk[end + 1 :], dialect, 1, lineno + 1, False, dtype)
            values = np.concatenate(chunks).ravel() if chunks else np.empty(0)
            if values.size != w * h * d:
                raise DataError(f"KeraSH header '{w} {h} {d}' announces {w * h * d} values, found {values.size} ({where})")
            return _Start((values.reshape((h, w) if d == 1 else (d, h, w)), None, "kerash"))
    return _Start(None, lines, blk[pos:], base + pos, dialect, ncols, lineno, columns, shape, dtype)


def _blocks(lines, body, dialect, ncols, lineno, header, dtype=np.float64):
    """Parse the rest of the input (`body`, then lines.block()); returns the row blocks, as `dtype`."""
    chunks = []
    body = body or lines.block(lineno)
    while body:
        rows, nlines = parse_block(body, dialect, ncols, lineno, header)
        chunks.append(rows.astype(dtype, copy=False))
        lineno += nlines
        body = lines.block(lineno)
    return chunks


def _check_long_line(data, dialect, lineno):
    """Part of a line longer than a block: fail early when it is clearly not numbers.

    Only its bytes are checked (the line is parsed once it is whole).
    Returns how much of `data` needs no checking again.
    """
    start = data.rfind(b"\n") + 1  # the first block may open with whole lines: they are parsed as lines
    if start:
        return start + _check_long_line(data[start:], dialect, lineno + data.count(b"\n", 0, start))
    dialect = dialect or dialect_of(data)
    seps = b" \t\r\f\v" + (dialect.sep or b"")
    cut = max(data.rfind(bytes([c])) for c in seps) + 1
    strange = data.translate(None, _NUMBER_BYTES)
    if strange:
        if BINARY.search(strange):
            raise _LineProblem(lineno, "binary data, not a text tensor")
        problem = cut and line_problem(data[:cut].strip(seps), dialect, None)
        if problem:
            raise _LineProblem(lineno, problem)
    if cut == 0 and len(data) > BLOCK:
        raise _LineProblem(lineno, f"more than {BLOCK} bytes without a separator: not a text tensor")
    return cut


def _shape_header(line, where):
    match = _SHAPE.fullmatch(line)
    if not match:
        return None
    words = match.group(1).split()
    if not all(re.fullmatch(rb"[0-9]+", w) for w in words):
        raise DataError(f"{where}:1: bad shape header {excerpt(line.strip())}: expected '# shape: d0 d1 …', whole numbers ≥ 0")
    dims = tuple(int(w) for w in words)
    span = 1  # numpy refuses shapes whose nonzero dimensions overflow, even with a zero among them
    for d in dims:
        span *= max(d, 1)
    if span * 8 >= _MAX_BYTES:
        raise DataError(f"{where}:1: bad shape header: dimensions too large")
    if len(dims) > MAX_DIMS:
        raise DataError(f"{where}:1: bad shape header: {len(dims)} dimensions, more than {MAX_DIMS}")
    return dims


def _kerash_like(fields):
    """Three whole numbers ≥ 1: KeraSH's 'w h d' line, when the next line holds one value."""
    return all(re.fullmatch(rb"[0-9]{1,9}", f) and int(f) >= 1 for f in fields)


def _kerash_second_line(blk, end, lines, lineno):
    """(blk, whether the data line after offset `end` holds exactly one value)."""
    nxt = end + 1
    while True:
        stop = blk.find(b"\n", nxt)
        if stop < 0:
            more = lines.block(lineno)
            if not more:
                return blk, False
            blk += more
            continue
        line = blk[nxt:stop].strip()
        if line and not line.startswith(b"#"):
            return blk, len(line.split()) == 1
        nxt = stop + 1


TRIM_BYTES = 4 << 20


def _malloc_trim():
    """glibc's malloc_trim, or None elsewhere."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _finish(chunks, shape, ncols, columns, where, dtype=np.float64):
    if len(chunks) == 1:
        out = chunks[0]
    elif chunks:
        # Block by block into the result, each block let go once copied, and the freed
        # memory given back every few MB (glibc keeps freed blocks otherwise: twice the data).
        out = np.empty((sum(len(c) for c in chunks), chunks[0].shape[1]), dtype=chunks[0].dtype)
        trim = _malloc_trim()
        row = freed = 0
        for i in range(len(chunks)):
            block, chunks[i] = chunks[i], None
            out[row : row + len(block)] = block
            row += len(block)
            freed += block.nbytes
            del block
            if trim is not None and freed > TRIM_BYTES:
                trim(0)
                freed = 0
    else:
        out = np.empty((0, ncols or 0), dtype=dtype)
    if shape is None:
        if out.size == 0:
            found = f"a header row ({len(columns)} names) and" if columns else "empty input:"
            raise DataError(f"{found} no numbers found ({where})")
        return out, columns
    total = 1
    for d in shape:
        total *= d
    if total != out.size or (len(shape) > 0 and out.size and shape[-1] != out.shape[1]):
        raise DataError(
            f"{where}:1: shape {' '.join(map(str, shape))} does not match {out.shape[0]} rows of {out.shape[1]} values"
        )
    return out.reshape(shape), columns


# ---------------------------------------------------------------- two processes

_CHILD_HEADER = 4096  # status, values, line, message length, message


def _split_point(source, lines, body_start):
    """Where a second process should start reading a large regular file (a line start), or None."""
    size, pread = getattr(source, "size", None), getattr(source, "pread", None)
    if size is None or pread is None or size - body_start < PARALLEL_BYTES or not hasattr(os, "fork"):
        return None
    mid = body_start + (size - body_start) // 2
    if mid < lines.consumed:
        return None
    for offset in range(mid, min(size, mid + 4 * BLOCK), BLOCK):
        found = pread(BLOCK, offset).find(b"\n")
        if found >= 0:
            return offset + found + 1 if offset + found + 1 < size else None
    return None


def _count_lines(source, start, stop):
    """Newlines in bytes [start, stop) of a regular file: at least as many as the rows there."""
    count = 0
    for offset in range(start, stop, 1 << 22):
        count += source.pread(min(1 << 22, stop - offset), offset).count(b"\n")
    return count


def _parse_into(out, n, lines, body, dialect, ncols, lineno, header):
    """Parse `body` and the blocks after it into out[n:]; returns (the end of what was written, the next line)."""
    while body:
        rows, nlines = parse_block(body, dialect, ncols, lineno, header)
        out[n : n + rows.size] = rows.ravel()
        n += rows.size
        lineno += nlines
        body = lines.block(lineno)
    return n, lineno


def _blocks_in_two(source, lines, body, span, dialect, ncols, lineno, header, dtype=np.float64):
    """Parse up to the split here while a forked child parses from the split to the end.

    Both write into one shared buffer, this process from its start and the child
    after room for as many rows as this half has lines, so the result needs no
    second copy: only a gap left by comment or blank lines is closed (in place).
    """
    body_start, split = span
    room = (_count_lines(source, body_start, split) + 1) * max(ncols, 1)  # this half's values, at most
    capacity = room + (source.size - split) // 2 + 1  # every value takes two bytes at least
    shared = mmap.mmap(-1, _CHILD_HEADER + dtype.itemsize * capacity)  # only the pages written take memory
    out = np.frombuffer(shared, dtype, capacity, _CHILD_HEADER)

    def second_half():
        offset = [split]

        def read(n):
            data = source.pread(n, offset[0])
            offset[0] += len(data)
            return data

        child_lines = _Lines(read, b"", lambda data, k: _check_long_line(data, dialect, k))
        n = room
        try:
            n, _ = _parse_into(out, room, child_lines, child_lines.block(1), dialect, ncols, 1, header)
            status, line, message = 0, 0, b""
        except _LineProblem as e:
            status, line, message = 1, e.lineno, e.problem.encode()[: _CHILD_HEADER - 32]
        header_words = np.frombuffer(shared, np.int64, 4)
        header_words[1:] = n - room, line, len(message)
        shared[32 : 32 + len(message)] = message
        header_words[0] = status

    pid = fork_task(second_half)
    if pid is None:
        return _blocks(lines, body, dialect, ncols, lineno, header, dtype)
    lines.limit = split
    try:
        n, lineno = _parse_into(out, 0, lines, body or lines.block(lineno), dialect, ncols, lineno, header)
    except BaseException:
        end_child(pid)
        raise
    mine = out[:n].reshape(-1, ncols)
    if wait_child(pid) != 0:
        # the child died for its own reasons: read its half here
        lines.limit, lines.eof = None, False
        return [mine] + _blocks(lines, lines.block(lineno), dialect, ncols, lineno, header, dtype)
    status, theirs, line, length = np.frombuffer(shared, np.int64, 4).tolist()
    if status:
        raise _LineProblem(lineno + line - 1, shared[32 : 32 + length].decode())
    if n < room and theirs:  # close the gap: an overlapping move in place, no temporary copy
        import ctypes

        base = out.ctypes.data
        ctypes.memmove(base + n * dtype.itemsize, base + room * dtype.itemsize, theirs * dtype.itemsize)
    return [out[: n + theirs].reshape(-1, ncols)]


def fork_task(task):
    """Run task() in a forked child (see fork_child); the child's pid, or None without fork."""
    if not hasattr(os, "fork"):
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        return fork_child(task)
    except OSError:
        return None


# ---------------------------------------------------------------- writing


def _integral(a):
    """True when every value prints exactly as an integer (and no -0.0 would lose its sign)."""
    if a.size == 0:
        return False
    if a.dtype.kind != "f":
        return True
    if not np.all(np.abs(a) < 2.0**53):
        return False
    if not np.all(a == np.trunc(a)):
        return False
    return not np.any(np.signbit(a[a == 0]))


def _format_block(rows2d, kind):
    """Text of rows of a 2-D array, one line each, with a trailing newline."""
    if kind == "int":
        table = rows2d.astype(np.int64).tolist()
        text = "\n".join([" ".join(map(str, row)) for row in table])
    elif kind == "float32":
        table = rows2d.astype("S16").tolist()
        return b"\n".join([b" ".join(row) for row in table]) + b"\n"
    else:
        # float.__repr__ is the shortest exact form; numpy's own formatters
        # (astype('S'), format_float_positional, array2string) are slower.
        table = rows2d.astype(np.float64, copy=False).tolist()
        rep = float.__repr__
        text = "\n".join([" ".join(map(rep, row)) for row in table])
    return text.encode("ascii") + b"\n"


def _format_kind(a):
    if _integral(a):
        return "int"
    return "float32" if a.dtype == np.float32 else "float64"


def text_chunks(a):
    """The text encoding of array `a`, as byte chunks."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise DataError(f"cannot write values of type {a.dtype}")
    if a.ndim > 2 or (a.size == 0 and a.ndim > 0):
        yield ("# shape: " + " ".join(map(str, a.shape)) + "\n").encode()
        if a.size == 0:
            return
    rows2d = a.reshape(1, -1) if a.ndim < 2 else a.reshape(-1, a.shape[-1])
    kind = _format_kind(a)
    if a.size < PARALLEL_VALUES or rows2d.shape[0] < 2:
        yield _format_block(rows2d, kind)
        return
    # The child formats the second half into shared memory: 8 bytes of length,
    # then the text (at most 25 characters a value plus separators).
    mid = rows2d.shape[0] // 2
    shared = mmap.mmap(-1, 8 + 26 * rows2d[mid:].size + rows2d.shape[0] + 64)

    def format_second_half():
        block = _format_block(rows2d[mid:], kind)
        shared[8 : 8 + len(block)] = block
        shared[:8] = len(block).to_bytes(8, "little")

    pid = fork_task(format_second_half)
    if pid is None:
        yield _format_block(rows2d, kind)
        return
    try:
        yield _format_block(rows2d[:mid], kind)
    except BaseException:
        end_child(pid)
        raise
    if wait_child(pid) == 0:
        length = int.from_bytes(shared[:8], "little")
        yield memoryview(shared)[8 : 8 + length]
    else:
        yield _format_block(rows2d[mid:], kind)


def kerash_chunks(a):
    """KeraSH's matrix format: 'w h d', then the values one per line, x fastest."""
    a = np.asarray(a)
    if a.ndim > 3:
        raise DataError(f"the KeraSH format holds at most 3 dimensions, this tensor has {a.ndim}")
    d, h, w = (1,) * (3 - a.ndim) + a.shape
    yield f"{w} {h} {d}\n".encode()
    if a.size:
        yield _format_block(a.reshape(-1, 1), _format_kind(a))
