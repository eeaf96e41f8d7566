"""Tensor files: read and write text, ``.npy`` and KeraSH matrix files.

Formats are recognised from the bytes, never from a file name:

* ``.npy`` starts with the ``\\x93NUMPY`` magic;
* KeraSH's matrix format is a first line ``w h d`` followed by ``w·h·d``
  values, one per line, x fastest;
* anything else is text (see `textformat`): rows of numbers separated by
  spaces, tabs, commas or semicolons, ``#`` comment lines, an optional first
  line ``# shape: d0 d1 …`` for N-D tensors stored as rows of the last
  dimension, and an optional header row of column names.

Any readable path is an input: a file, ``-`` (standard input), a pipe, a
FIFO, ``/dev/stdin`` or a process substitution ``<(…)``.  Inputs are read
front to back without seeking, in blocks, so a bad file fails at its first
bad line with bounded memory; an npy file's size is known from its header
before anything is allocated.

Text output uses the shortest representation that reads back to the same
value (Python's ``repr`` for float64, numpy's for float32), so a write/read
round trip is bit-exact (see `textformat`).
"""

import ast
import io
import os
import stat
import sys
from typing import NamedTuple, Optional

import numpy as np

from ..errors import DataError, UsageError
from .fs import atomic_file, open_regular, source_name
from .textformat import MAX_DIMS

NPY_MAGIC = b"\x93NUMPY"
FORMATS = ("text", "npy", "kerash")

# npy headers are short dictionaries; numpy itself refuses those above 10 000 bytes.
_NPY_HEADER_MAX = 1 << 16
_NPY_MAX_BYTES = 1 << 62


# ---------------------------------------------------------------- reading


class Table(NamedTuple):
    """A tensor as read: the array, its column names (from a header row) and how it was stored."""

    array: np.ndarray
    columns: Optional[tuple]
    format: str  # 'text', 'kerash' or 'npy'
    stored: Optional[np.dtype]  # the npy file's dtype (None for text)


class InputStream:
    """An operand opened for reading front to back: read(n), readinto(view), and its size if it is a regular file."""

    def __init__(self, source, where=None):
        self.where = where or source_name(source)
        self.owned = False
        if source in (None, "-"):
            if sys.stdin is None:
                raise DataError("cannot read standard input: it is closed")
            self.file = sys.stdin.buffer
        elif hasattr(source, "read"):
            self.file = source
        else:
            try:
                self.file = open(source, "rb")
            except IsADirectoryError:
                raise DataError(f"cannot read {self.where}: it is a directory") from None
            except OSError as e:
                raise DataError(f"cannot read {self.where}: {e.strerror or e}") from None
            self.owned = True
        self.size = None
        self.pread = None
        self.ended = False  # a read found the end (read once: a terminal has more after its ^D)
        try:
            info = os.fstat(self.file.fileno())
        except (OSError, AttributeError, ValueError) as e:
            if source in (None, "-"):
                raise DataError("cannot read standard input: it is closed") from None
            if self.owned:
                raise DataError(f"cannot read {self.where}: {e.strerror or e}") from None
            # a file object without a descriptor (BytesIO, gzip): read it as a stream
        else:
            # only a file read directly knows its size; not so a decompressing reader with a fileno
            direct = source in (None, "-") or self.owned or isinstance(self.file, (io.BufferedReader, io.FileIO))
            if direct and stat.S_ISREG(info.st_mode):
                try:  # what is left of it: standard input may be a file read in part already
                    base = self.file.tell()
                except OSError:
                    base = None
                if base is not None:
                    self.size = info.st_size - base
                    fd = self.file.fileno()
                    self.pread = lambda n, offset: os.pread(fd, n, base + offset)

    def read(self, n):
        """Up to n bytes; fewer only at the end (a terminal hands over a line at a time).

        Each read1 reads the file once at most, and the first empty read is
        the end, never read again: a terminal's ^D ends the input the first
        time, as for cat (file.read(n) would take a second ^D to return what
        it has, and the next call a third).
        """
        parts, got = [], 0
        read1 = getattr(self.file, "read1", self.file.read)
        try:
            while got < n and not self.ended:
                data = read1(n - got)
                if not data:
                    self.ended = True
                    break
                parts.append(data)
                got += len(data)
        except OSError as e:
            raise DataError(f"cannot read {self.where}: {e.strerror or e}") from None
        return b"".join(parts)

    def readinto(self, view):
        """Fill `view` as far as the input goes; returns the number of bytes read (the end is read once, as above)."""
        got = 0
        readinto1 = getattr(self.file, "readinto1", self.file.readinto)
        try:
            while got < len(view) and not self.ended:
                n = readinto1(view[got:])
                if not n:
                    self.ended = True
                    break
                got += n
        except OSError as e:
            raise DataError(f"cannot read {self.where}: {e.strerror or e}") from None
        return got

    def close(self):
        if self.owned:
            self.file.close()


def read_table(source=None, where=None, dtype=None):
    """Read one tensor from a path, standard input ('-' or None) or a binary file object, in any format.

    With `dtype` (float32, float64) the values arrive in it, converted piece by piece as
    they are read: training float32 on a float64 or text file needs no second copy.
    """
    inp = InputStream(source, where)
    try:
        head = inp.read(len(NPY_MAGIC))
        if head == NPY_MAGIC:
            array, stored = read_npy_stream(inp, head, as_dtype=dtype)
            return Table(array, None, "npy", stored)
        from . import textformat

        array, columns, fmt = textformat.read_text(inp, inp.where, head, dtype)
        return Table(array, columns, fmt, None)
    finally:
        inp.close()


STREAM_BYTES = 256 << 20  # a regular file up to this size is read whole (large ones by two processes)


def read_row_blocks(source=None, rows=1024, dtype=None, where=None):
    """The rows of a tensor as a generator of 2-D arrays: read whole when that is bounded, else `rows` at a time.

    Text from a pipe or a terminal, or in a file larger than STREAM_BYTES,
    is parsed as it is read, and comes in blocks of exactly `rows` rows (the
    last one shorter): memory holds a block, not the input, and the first
    rows come before the input ends.  An npy file (its header announces its
    size) and smaller files come whole, in one block, as does a tensor that
    is not rows (of other than two dimensions).
    """
    inp = InputStream(source, where)
    try:
        head = inp.read(len(NPY_MAGIC))
        if head == NPY_MAGIC:
            yield read_npy_stream(inp, head, as_dtype=dtype)[0]
            return
        from . import textformat

        if inp.size is not None and inp.size <= STREAM_BYTES:
            yield textformat.read_text(inp, inp.where, head, dtype)[0]
            return
        blocks = textformat.iter_text_rows(inp, inp.where, head, dtype)
        next(blocks)  # the column names
        yield from _rebatch(blocks, rows)
    finally:
        inp.close()


def _rebatch(blocks, rows):
    """Blocks of exactly `rows` rows (the last one shorter; one empty block when there are no rows) from 2-D blocks."""
    pending, count, given = [], 0, False
    for block in blocks:
        if block.ndim != 2:
            yield block  # not rows: always alone
            return
        pending.append(block)
        count += len(block)
        while count >= rows and count:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield joined[:rows]
            given = True
            pending, count = [joined[rows:]], count - rows
    if count or (pending and not given):
        yield np.concatenate(pending) if len(pending) > 1 else pending[0]


def read_tensor(source=None, dtype=None):
    """Read one tensor from a path or standard input, in any supported format (as `dtype` if given)."""
    return read_table(source, dtype=dtype).array


def parse_tensor(data, where="<data>"):
    """Parse the bytes of a tensor file; `where` names it in error messages."""
    return read_table(io.BytesIO(data), where).array


def read_bytes(source, limit=16 << 20):
    """All bytes of a small file or of standard input ('-' or None); more than `limit` bytes is a DataError."""
    inp = InputStream(source)
    try:
        data = inp.read(limit + 1)
    finally:
        inp.close()
    if len(data) > limit:
        raise DataError(f"{inp.where} is larger than {limit} bytes")
    return data


def _npy_header(inp, head):
    """(dtype, shape, fortran_order, bytes read) of an npy file whose first bytes `head` came from `inp`."""
    where = inp.where

    def complete(size):
        data = head + inp.read(size - len(head)) if len(head) < size else head
        if len(data) < size:
            raise DataError(f"truncated npy header ({where})")
        return data

    head = complete(10)
    major = head[6]
    if major == 1:
        hlen, start = int.from_bytes(head[8:10], "little"), 10
    elif major in (2, 3):
        head = complete(12)
        hlen, start = int.from_bytes(head[8:12], "little"), 12
    else:
        raise DataError(f"unsupported npy version {major} ({where})")
    if hlen > _NPY_HEADER_MAX:
        raise DataError(f"npy header of {hlen} bytes is too long ({where})")
    head = complete(start + hlen)
    try:
        header = ast.literal_eval(bytes(head[start : start + hlen]).decode("utf-8" if major == 3 else "latin1"))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, UnicodeDecodeError):
        raise DataError(f"malformed npy header ({where})") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise DataError(f"malformed npy header ({where})")
    shape, fortran = header["shape"], header["fortran_order"]
    if not isinstance(shape, tuple) or not all(type(d) is int for d in shape) or not isinstance(fortran, bool):
        raise DataError(f"malformed npy header ({where})")
    if len(shape) > MAX_DIMS:
        raise DataError(f"npy header gives {len(shape)} dimensions, more than {MAX_DIMS} ({where})")
    if any(d < 0 for d in shape):
        raise DataError(f"npy header gives a negative dimension in shape {_shape_str(shape)} ({where})")
    try:
        dtype = np.dtype(header["descr"])
    except Exception:  # numpy raises several types for a malformed descr
        raise DataError(f"npy header has an unknown dtype ({where})") from None
    if dtype.kind == "c":
        raise DataError(f"complex values are not supported ({where})")
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.shape != ():
        raise DataError(f"npy arrays of {_short(str(dtype))} are not supported; numbers only ({where})")
    span = 1  # numpy refuses shapes whose nonzero dimensions overflow, even with a zero among them
    for d in shape:
        span *= max(d, 1)
    if span * dtype.itemsize >= _NPY_MAX_BYTES:
        raise DataError(f"npy header gives an impossibly large shape {_shape_str(shape)} ({where})")
    return dtype, shape, fortran, head


_CONVERT_BYTES = 8 << 20  # what is read at a time when values are converted on the way


def read_npy_stream(inp, head, expect_shape=None, expect_dtype=None, as_dtype=None):
    """The array of an npy file whose first bytes `head` came from `inp`, and its stored dtype.

    With `as_dtype` different from the stored one, the values are converted a piece at a time.
    """
    where = inp.where
    dtype, shape, fortran, head = _npy_header(inp, head)
    offset = len(head)
    if expect_shape is not None and shape != expect_shape:
        raise DataError(f"{where} has shape {_shape_str(shape)} but {_shape_str(expect_shape)} is expected")
    if expect_dtype is not None and dtype != np.dtype(expect_dtype):
        raise DataError(f"{where} holds {dtype} values, {np.dtype(expect_dtype)} expected")
    count = 1
    for d in shape:
        count *= d
    need = count * dtype.itemsize
    if inp.size is not None:  # a regular file: its size is known before anything is read
        have = inp.size - offset
        if have < need:
            raise DataError(f"truncated npy file: shape {_shape_str(shape)} needs {need} bytes of data, found {have} ({where})")
        if have > need:
            raise DataError(f"{have - need} unexpected bytes after the npy array data ({where})")
    target = np.dtype(as_dtype) if as_dtype is not None and dtype.kind in "biuf" else dtype
    try:
        array = np.empty(count, target)
    except (MemoryError, ValueError):
        raise DataError(f"npy header announces {need} bytes of data, more than fits in memory ({where})") from None
    if target == dtype:
        got = inp.readinto(memoryview(array).cast("B"))
    else:
        piece = np.empty(max(1, _CONVERT_BYTES // dtype.itemsize), dtype)
        got, done = 0, 0
        while done < count:
            k = min(len(piece), count - done)
            n = inp.readinto(memoryview(piece[:k]).cast("B"))
            got += n
            if n < k * dtype.itemsize:
                break
            array[done : done + k] = piece[:k]
            done += k
    if got < need:
        raise DataError(f"truncated npy file: shape {_shape_str(shape)} needs {need} bytes of data, found {got} ({where})")
    if inp.size is None and inp.read(1):
        raise DataError(f"unexpected bytes after the npy array data ({where})")
    array = array.reshape(shape, order="F" if fortran else "C")
    return (array if target != dtype else _native(array)), dtype


def _native(array):
    """Floats stay (in native byte order; half precision becomes float32); integers and booleans become float64."""
    dtype = array.dtype
    if dtype.kind != "f" or dtype.itemsize > 8:
        return array.astype(np.float64)
    if not dtype.isnative or dtype.itemsize < 4:
        return array.astype(np.float32 if dtype.itemsize <= 4 else np.float64)
    return array


def _shape_str(shape):
    return _short("×".join(map(str, shape))) if len(shape) else "scalar"


def _short(text, limit=60):
    return text if len(text) <= limit else text[:limit] + "…"


def read_npy_checked(path, shape=None, dtype=None, error=DataError, where=None):
    """Read an npy file that must be a regular file holding exactly `shape` (and `dtype`, if given).

    For files whose content is known in advance (a model's weights): the
    type, header and exact byte count are checked before anything is
    allocated, a FIFO or device is refused without opening it for long, and
    nothing from a file that is not npy is quoted.  Raises `error`.
    """
    where = where or source_name(path)
    f, _ = open_regular(path, error, where)
    with f:
        inp = InputStream(f, where)
        head = inp.read(len(NPY_MAGIC))
        if head != NPY_MAGIC:
            raise error(f"{where} is not an npy file")
        try:
            array, stored = read_npy_stream(inp, head, None if shape is None else tuple(shape), dtype)
        except DataError as e:
            raise error(str(e)) from None
    return array


# ---------------------------------------------------------------- writing


def resolve_format(fmt=None, output=None):
    """The output format: --format, else an -o path ending in .npy, else KERASH_FORMAT, else text."""
    if fmt:
        if fmt not in FORMATS:
            raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    if output not in (None, "-") and str(output).endswith(".npy"):
        return "npy"
    env = os.environ.get("KERASH_FORMAT")
    if env:
        if env not in FORMATS:
            raise UsageError(f"KERASH_FORMAT={env!r} is not one of {', '.join(FORMATS)}")
        return env
    return "text"


def _npy_chunks(a):
    """The npy header, then the array's bytes straight from memory (no copy of a C-ordered array)."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise DataError(f"cannot write values of type {a.dtype}")
    header = io.BytesIO()
    info = {"descr": np.lib.format.dtype_to_descr(a.dtype), "fortran_order": False, "shape": a.shape}
    np.lib.format.write_array_header_1_0(header, info)
    yield header.getvalue()
    if a.size:
        yield memoryview(np.ravel(a, order="C")).cast("B")


def tensor_chunks(array, fmt="text"):
    """Byte chunks encoding `array` in format `fmt`."""
    if fmt == "npy":
        return _npy_chunks(array)
    from . import textformat

    return textformat.kerash_chunks(array) if fmt == "kerash" else textformat.text_chunks(array)


def _stdout():
    if sys.stdout is None:
        raise DataError("cannot write to standard output: it is closed")
    sys.stdout.flush()
    return sys.stdout.buffer


def _is_terminal(stream):
    try:
        return os.isatty(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False


def write_tensor(array, output=None, fmt=None):
    """Write `array` to standard output, or atomically to the path `output`."""
    fmt = resolve_format(fmt, output)
    write_chunks(tensor_chunks(array, fmt), output, binary=fmt == "npy")


def write_chunks(chunks, output=None, binary=False):
    """Write byte chunks, made as they are asked for, to standard output or atomically to the path `output`."""
    if output in (None, "-"):
        out = _stdout()
        if binary and _is_terminal(out):
            # as gzip does: binary data on a terminal is garbage and may upset it
            raise UsageError("refusing to write npy to a terminal; redirect standard output or use --format text")
        write_stream(out, chunks)
        return
    with atomic_file(output) as f:
        for chunk in chunks:
            f.write(chunk)


def write_text(text, output=None):
    """Write a str to standard output, or atomically to the path `output`."""
    data = text.encode("utf-8")
    if output in (None, "-"):
        write_stream(_stdout(), [data])
        return
    with atomic_file(output) as f:
        f.write(data)


def write_stream(out, chunks):
    """Write byte chunks to a stream such as standard output; a failed write is a DataError."""
    try:
        for chunk in chunks:
            view = memoryview(chunk).cast("B")
            while view:
                # A large write into a pipe can come back short when the reader
                # goes away; writing the rest then raises BrokenPipeError.
                written = out.write(view)
                if not written:
                    raise BrokenPipeError(32, "short write to standard output")
                view = view[written:]
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise DataError(f"cannot write to standard output: {e.strerror or e}") from None


def save_npy(path, array):
    """Write one .npy file atomically."""
    with atomic_file(path) as f:
        for chunk in _npy_chunks(array):
            f.write(chunk)
