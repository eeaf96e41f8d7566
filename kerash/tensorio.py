"""Tensor files: read and write text, ``.npy`` and KeraSH matrix files.

Formats are recognised from the bytes, never from a file name:

* ``.npy`` starts with the ``\\x93NUMPY`` magic;
* KeraSH's matrix format is a first line ``w h d`` followed by ``w·h·d``
  values, one per line, x fastest;
* anything else is text: rows of numbers separated by spaces, tabs or commas,
  ``#`` comment lines, and an optional first line ``# shape: d0 d1 …`` for
  N-D tensors stored as rows of the last dimension.

Text output uses the shortest representation that reads back to the same
value (Python's ``repr`` for float64, numpy's for float32), so a write/read
round trip is bit-exact.  Large inputs and outputs are split between two
processes, because text conversion is the slow part of a pipeline.
"""

import ast
import mmap
import os
import sys
from contextlib import contextmanager

import numpy as np

from .errors import DataError, UsageError

NPY_MAGIC = b"\x93NUMPY"
FORMATS = ("text", "npy", "kerash")
STDIN_NAME = "<stdin>"

# Text conversion below this many bytes/values stays in one process: a fork
# costs about a millisecond, which only pays off on large tensors.
_PARALLEL_BYTES = 4 << 20
_PARALLEL_VALUES = 500_000
# Rows shorter than this are parsed in one call over the whole text, with a
# vectorised check of the per-line counts, instead of one call per line.
_SHORT_ROW = 16

_SEPARATORS = bytes.maketrans(b",\t\r\f\v", b"     ")


# ---------------------------------------------------------------- reading


def source_name(source):
    """The name used in messages for an operand ('-' or None is standard input)."""
    return STDIN_NAME if source in (None, "-") else str(source)


def read_bytes(source):
    """All bytes of a file, or of standard input when source is '-' or None."""
    if source in (None, "-"):
        return sys.stdin.buffer.read()
    try:
        with open(source, "rb") as f:
            return f.read()
    except IsADirectoryError:
        raise DataError(f"cannot read {source}: it is a directory") from None
    except OSError as e:
        raise DataError(f"cannot read {source}: {e.strerror or e}") from None


def read_tensor(source=None):
    """Read one tensor from a path or standard input, in any supported format."""
    where = source_name(source)
    if source in (None, "-"):
        arr = parse_tensor(read_bytes(source), where)
        # npy arrays parsed from immutable bytes are read-only views
        return arr if arr.flags.writeable else arr.copy()
    try:
        with open(source, "rb") as f:
            head = f.read(6)
            if head == NPY_MAGIC:
                # Read into a mutable buffer so the array is writable without a copy.
                size = max(os.fstat(f.fileno()).st_size, 6)
                buf = bytearray(size)
                buf[:6] = head
                got = 6 + f.readinto(memoryview(buf)[6:])
                return _parse_npy(buf if got == size else buf[:got] + f.read(), where)
            f.seek(0)  # one read of the whole text, without copying it again
            return parse_tensor(f.read(), where)
    except IsADirectoryError:
        raise DataError(f"cannot read {source}: it is a directory") from None
    except OSError as e:
        raise DataError(f"cannot read {source}: {e.strerror or e}") from None


def parse_tensor(data, where="<data>"):
    """Parse the bytes of a tensor file; `where` names it in error messages."""
    if data[:6] == NPY_MAGIC:
        return _parse_npy(data, where)
    return _parse_text(data, where)


def _parse_npy(data, where):
    # The header is parsed here rather than by np.load so that a truncated or
    # unusual file gets a precise one-line message instead of a traceback.
    if len(data) < 10:
        raise DataError(f"truncated npy header ({where})")
    major = data[6]
    if major == 1:
        hlen, start = int.from_bytes(data[8:10], "little"), 10
    elif major in (2, 3):
        if len(data) < 12:
            raise DataError(f"truncated npy header ({where})")
        hlen, start = int.from_bytes(data[8:12], "little"), 12
    else:
        raise DataError(f"unsupported npy version {major} ({where})")
    header_bytes = data[start : start + hlen]
    if len(header_bytes) < hlen:
        raise DataError(f"truncated npy header ({where})")
    try:
        header = ast.literal_eval(header_bytes.decode("utf-8" if major == 3 else "latin1"))
        dtype = np.dtype(header["descr"])
        shape = tuple(int(d) for d in header["shape"])
        fortran = bool(header["fortran_order"])
    except Exception:
        raise DataError(f"malformed npy header ({where})") from None
    if dtype.hasobject or dtype.fields is not None:
        raise DataError(f"npy arrays of {dtype} are not supported; numbers only ({where})")
    if dtype.kind == "c":
        raise DataError(f"complex values are not supported ({where})")
    if dtype.kind not in "biuf":
        raise DataError(f"npy arrays of {dtype} are not supported; numbers only ({where})")
    offset = start + hlen
    count = int(np.prod(shape, dtype=np.int64))
    need = count * dtype.itemsize
    have = len(data) - offset
    if have < need:
        raise DataError(
            f"truncated npy file: shape {shape} needs {need} bytes of data, found {have} ({where})"
        )
    if have > need:
        raise DataError(f"{have - need} unexpected bytes after the npy array data ({where})")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    arr = arr.reshape(shape, order="F" if fortran else "C")
    if dtype.kind != "f":
        return arr.astype(np.float64)
    if not dtype.isnative or dtype.itemsize < 4:
        return arr.astype(np.float32 if dtype.itemsize <= 4 else np.float64)
    return arr


def _bad_line_message(line, lineno, where, ncols=None):
    """Explain why one text line does not parse as `ncols` numbers."""
    tokens = line.split()
    for tok in tokens:
        try:
            float(tok)
        except ValueError:
            shown = tok.decode("utf-8", "replace")
            return f"{where}:{lineno}: not a number: {shown!r}"
    if ncols is not None and len(tokens) != ncols:
        return f"{where}:{lineno}: expected {ncols} values, found {len(tokens)}"
    return f"{where}:{lineno}: cannot parse this line as numbers"


def _parse_line(line, lineno, where):
    try:
        return np.fromstring(line, sep=" ")
    except ValueError:
        raise DataError(_bad_line_message(line, lineno, where)) from None


def _token_counts(joined):
    """Number of whitespace-separated tokens on each line of `joined`."""
    b = np.frombuffer(joined, dtype=np.uint8)
    word = b > 32
    starts = word.copy()
    starts[1:] &= ~word[:-1]
    token_pos = np.flatnonzero(starts)
    line_ends = np.flatnonzero(b == 10)
    line_ends = np.append(line_ends, b.size)
    return np.diff(np.searchsorted(token_pos, line_ends), prepend=0)


def _parse_rows(lines, linenos, ncols, out, where):
    """Parse `lines` (non-blank, no comments) into `out`, shape (len(lines), ncols)."""
    if ncols < _SHORT_ROW and len(lines) > 64:
        joined = b"\n".join(lines)
        try:
            values = np.fromstring(joined, sep=" ")
        except ValueError:
            values = None
        if values is not None and values.size == out.size:
            bad = np.flatnonzero(_token_counts(joined) != ncols)
            if bad.size == 0:
                out[...] = values.reshape(out.shape)
                return
    for k, line in enumerate(lines):
        row = _parse_line(line, linenos[k], where)
        if row.size != ncols:
            raise DataError(_bad_line_message(line, linenos[k], where, ncols))
        out[k] = row


def _fork(task):
    """Run task() in a forked child; return its pid, or None when fork is unavailable."""
    if not hasattr(os, "fork"):
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:
        status = 1
        try:
            task()
            status = 0
        except BaseException:
            pass
        finally:
            os._exit(status)
    return pid


def _child_ok(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _reap(pid):
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except OSError:
        pass


def _parse_rows_parallel(lines, linenos, ncols, where, nbytes):
    rows = len(lines)
    if nbytes < _PARALLEL_BYTES or rows < 2:
        out = np.empty((rows, ncols))
        _parse_rows(lines, linenos, ncols, out, where)
        return out
    # The child parses the second half straight into shared memory.
    shared = mmap.mmap(-1, max(1, rows * ncols * 8))
    out = np.frombuffer(shared, dtype=np.float64).reshape(rows, ncols)
    mid = rows // 2
    pid = _fork(lambda: _parse_rows(lines[mid:], linenos[mid:], ncols, out[mid:], where))
    if pid is None:
        _parse_rows(lines, linenos, ncols, out, where)
        return out
    try:
        _parse_rows(lines[:mid], linenos[:mid], ncols, out[:mid], where)
    except BaseException:
        _reap(pid)
        raise
    if not _child_ok(pid):
        # Parse again here to raise the located error (or succeed if the
        # child died for an unrelated reason).
        _parse_rows(lines[mid:], linenos[mid:], ncols, out[mid:], where)
    return out


def _parse_shape_header(line, where):
    text = line.lstrip()[1:].strip()
    if not text.lower().startswith(b"shape:"):
        return None
    try:
        dims = tuple(int(t) for t in text[6:].split())
    except ValueError:
        raise DataError(f"{where}:1: bad shape header, expected '# shape: d0 d1 …'") from None
    if any(d < 0 for d in dims):
        raise DataError(f"{where}:1: bad shape header, dimensions must be ≥ 0")
    return dims


def _is_kerash_header(values):
    return (
        values.size == 3
        and bool(np.all(values >= 1))
        and bool(np.all(values == np.floor(values)))
        and bool(np.all(values < 2**31))
    )


def _parse_kerash(lines, linenos, header, where):
    w, h, d = (int(v) for v in header)
    body = lines[1:]
    joined = b"\n".join(body)
    try:
        values = np.fromstring(joined, sep=" ")
    except ValueError:
        values = None
    if values is None or values.size != len(body):
        for k, line in enumerate(body):
            row = _parse_line(line, linenos[k + 1], where)
            if row.size != 1:
                raise DataError(
                    f"{where}:{linenos[k + 1]}: KeraSH format expects one value per line, found {row.size}"
                )
    if values.size != w * h * d:
        raise DataError(
            f"KeraSH header '{w} {h} {d}' announces {w * h * d} values, found {values.size} ({where})"
        )
    return values.reshape((h, w) if d == 1 else (d, h, w))


def _parse_text(data, where):
    if b"," in data or b"\t" in data or b"\r" in data or b"\f" in data or b"\v" in data:
        data = data.translate(_SEPARATORS)
    all_lines = data.split(b"\n")
    shape = None
    if b"#" in data:
        lines, linenos = [], []
        for i, line in enumerate(all_lines):
            stripped = line.lstrip()
            if stripped.startswith(b"#"):
                if i == 0:
                    shape = _parse_shape_header(stripped, where)
                continue
            if stripped:
                lines.append(line)
                linenos.append(i + 1)
    else:
        lines, linenos = [], []
        for i, line in enumerate(all_lines):
            if line and not line.isspace():
                lines.append(line)
                linenos.append(i + 1)
    if not lines:
        if shape is not None and int(np.prod(shape)) == 0:
            return np.zeros(shape)
        raise DataError(f"empty input: no numbers found ({where})")

    first = _parse_line(lines[0], linenos[0], where)
    if first.size == 0:
        raise DataError(_bad_line_message(lines[0], linenos[0], where))
    if shape is None and len(lines) >= 2 and _is_kerash_header(first):
        second = _parse_line(lines[1], linenos[1], where)
        if second.size == 1:
            return _parse_kerash(lines, linenos, first, where)
    ncols = first.size
    out = _parse_rows_parallel(lines, linenos, ncols, where, len(data))
    if shape is None:
        return out
    count = int(np.prod(shape, dtype=np.int64))
    if count != out.size or (len(shape) > 0 and shape[-1] != ncols):
        raise DataError(
            f"{where}:1: shape {' '.join(map(str, shape))} does not match "
            f"{out.shape[0]} rows of {ncols} values"
        )
    return out.reshape(shape)


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
        table = rows2d.astype(np.float64, copy=False).tolist()
        rep = float.__repr__
        text = "\n".join([" ".join(map(rep, row)) for row in table])
    return text.encode("ascii") + b"\n"


def _format_kind(a):
    if _integral(a):
        return "int"
    return "float32" if a.dtype == np.float32 else "float64"


def _text_chunks(a):
    """Yield the text encoding of array `a` as byte chunks."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise DataError(f"cannot write values of type {a.dtype}")
    if a.ndim > 2 or (a.size == 0 and a.ndim > 0):
        yield ("# shape: " + " ".join(map(str, a.shape)) + "\n").encode()
        if a.size == 0:
            return
    rows2d = a.reshape(1, -1) if a.ndim < 2 else a.reshape(-1, a.shape[-1])
    kind = _format_kind(a)
    if a.size < _PARALLEL_VALUES or rows2d.shape[0] < 2:
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

    pid = _fork(format_second_half)
    if pid is None:
        yield _format_block(rows2d, kind)
        return
    try:
        yield _format_block(rows2d[:mid], kind)
    except BaseException:
        _reap(pid)
        raise
    if _child_ok(pid):
        length = int.from_bytes(shared[:8], "little")
        yield memoryview(shared)[8 : 8 + length]
    else:
        yield _format_block(rows2d[mid:], kind)


def _kerash_chunks(a):
    a = np.asarray(a)
    if a.ndim > 3:
        raise DataError(f"the KeraSH format holds at most 3 dimensions, this tensor has {a.ndim}")
    shape = (1,) * (3 - a.ndim) + a.shape
    d, h, w = shape
    yield f"{w} {h} {d}\n".encode()
    if a.size:
        yield _format_block(a.reshape(-1, 1), _format_kind(a))


def _npy_chunks(a):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(a), allow_pickle=False)
    yield buf.getbuffer()


def tensor_chunks(array, fmt="text"):
    """Byte chunks encoding `array` in format `fmt`."""
    if fmt == "npy":
        return _npy_chunks(array)
    if fmt == "kerash":
        return _kerash_chunks(array)
    return _text_chunks(array)


@contextmanager
def atomic_file(path):
    """Open `path` for binary writing through `PATH.tmp-<pid>`, renamed into place on success."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        f = open(tmp, "wb")
    except OSError as e:
        raise DataError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException:
        f.close()
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_folder(path, fill):
    """Build a folder with fill(tmp) beside `path`, then put it in place, replacing an older one.

    Readers see the old folder or the new one, never half of it (but for
    the instant between two renames when an old folder is replaced).
    """
    import shutil

    path = os.fspath(path).rstrip("/") or "/"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise DataError(f"cannot create {path}: folder {parent} does not exist")
    tmp = f"{path}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fill(tmp)
        if os.path.lexists(path):
            old = f"{path}.old-{os.getpid()}"
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"cannot create {path}: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_tensor(array, output=None, fmt=None):
    """Write `array` to standard output, or atomically to the path `output`."""
    fmt = resolve_format(fmt, output)
    chunks = tensor_chunks(array, fmt)
    if output in (None, "-"):
        sys.stdout.flush()
        out = sys.stdout.buffer
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
        return
    with atomic_file(output) as f:
        for chunk in chunks:
            f.write(chunk)


def save_npy(path, array):
    """Write one .npy file atomically."""
    with atomic_file(path) as f:
        np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)
