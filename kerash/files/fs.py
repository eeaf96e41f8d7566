"""The file system: atomic files and folders, regular-file opens, small JSON files, locks' holders.

Every write that a reader may see goes through atomic_file or atomic_folder
(or a model directory's versions, which use exchange and put_in_place), so a
crash or kill leaves the old content or the new, never half of it.
"""

import errno
import json
import os
import shutil
import stat
from contextlib import contextmanager

from ..errors import DataError, ModelError, printable

STDIN_NAME = "<stdin>"

TEXT_LIMIT = 16 << 20  # bytes: a model description or a JSON file larger than this is not one kerash wrote


def source_name(source):
    """The name used in messages for an operand ('-' or None is standard input), escaped to one line."""
    if source in (None, "-"):
        return STDIN_NAME
    if hasattr(source, "read"):
        source = getattr(source, "name", "<data>")
    return printable(os.fsdecode(source) if isinstance(source, (bytes, os.PathLike)) else str(source))


def open_regular(path, error, where, hint="", buffering=-1):
    """(file, size) of `path` opened for reading, which must be a regular file (not a FIFO, device or folder).

    Raises `error`: '{where} is missing{hint}', '… is not a regular file', 'cannot read …'.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{where} is missing{hint}") from None
    except OSError as e:
        raise error(f"cannot read {where}: {e.strerror or e}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{where} is not a regular file")
    try:
        # O_NONBLOCK: should a FIFO replace the file after the stat, opening it does not hang.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise error(f"cannot read {where}: {e.strerror or e}") from None
    f = os.fdopen(fd, "rb", buffering=buffering)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # replaced by something else since the stat
        f.close()
        raise error(f"{where} is not a regular file")
    return f, info.st_size


def fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_unbuffered(path, error, where, hint=""):
    """(unbuffered file, size) of `path`, a regular file (see open_regular)."""
    return open_regular(path, error, where, hint, buffering=0)


def read_exactly(f, size, error, where):
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        n = f.readinto(view[got:])
        if not n:
            raise error(f"{where} changed while it was read")
        got += n
    return data


def read_json_checked(path, error=ModelError, where=None, hint=""):
    """The object in a small JSON file that kerash wrote (state.json, stats.json): a regular file, a JSON object."""
    where = where or path
    f, size = open_unbuffered(path, error, where, hint)
    with f:
        if size > TEXT_LIMIT:
            raise error(f"{where} is too large ({size} bytes) to be a file written by kerash")
        data = read_exactly(f, size, error, where)
    try:
        found = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise error(f"{where} is not valid JSON") from None
    if not isinstance(found, dict):
        raise error(f"{where} does not hold a JSON object")
    return found


@contextmanager
def atomic_file(path):
    """Open `path` for binary writing through `PATH.tmp-<pid>`, renamed into place on success.

    A failure to write (a full disk) is a DataError naming `path`; the old
    file stays as it was and the temporary file is removed.
    """
    path = os.fspath(path)
    shown = source_name(path)
    if os.path.isdir(path):
        raise DataError(f"cannot write {shown}: it is a directory")
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        f = open(tmp, "wb")
    except OSError as e:
        raise DataError(f"cannot write {shown}: {e.strerror or e}") from None
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException as e:
        try:
            f.close()
        except OSError:
            pass
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise DataError(f"cannot write {shown}: {e.strerror or e}") from None
        raise


def folder_beside(path):
    """(path normalised, the name of a fresh work folder beside it): its parent must exist."""
    import shutil

    path = os.fspath(path).rstrip("/") or "/"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise DataError(f"cannot create {path}: folder {parent} does not exist")
    tmp = f"{path}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed run of this pid
    return path, tmp


def atomic_folder(path, fill):
    """Build a folder with fill(tmp) beside `path`, then put it in place, replacing an older one.

    Readers see the old folder or the new one, never half of it (but for
    the instant between two renames when an old folder is replaced).
    """
    import shutil

    path, tmp = folder_beside(path)
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


RENAME_EXCHANGE = 2


def exchange(a, b):
    """Swap two paths in one step (Linux renameat2); False where the system cannot."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), b)


def put_in_place(tmp, path):
    """Move the folder tmp to path; an older folder at path ends up at tmp (for the caller to remove)."""
    if not os.path.lexists(path):
        os.rename(tmp, path)
    elif not exchange(tmp, path):
        old = f"{path}.old-{os.getpid()}"
        os.rename(path, old)
        try:
            os.rename(tmp, path)
        except OSError:
            os.rename(old, path)
            raise
        os.rename(old, tmp)


def link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def copy_tree(source, target):
    """Copy a folder of immutable files, with hard links where the file system allows."""
    shutil.copytree(source, target, copy_function=link_or_copy)


def lock_holder(fd):
    """' (train, pid 123)' naming the process holding an flock on fd's file, from /proc/locks, or ''."""
    try:
        info = os.fstat(fd)
        key = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
        with open("/proc/locks") as f:
            pids = [fields[4] for fields in (line.split() for line in f)
                    if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == key]
        if not pids:
            return ""
        with open(f"/proc/{pids[0]}/cmdline", "rb") as f:
            args = [os.fsdecode(a) for a in f.read().split(b"\0") if a]
    except (OSError, ValueError):
        return ""
    if len(args) > 1 and os.path.basename(args[0]).startswith("python"):
        args = args[1:]  # a console script: the interpreter, then the tool
    name = os.path.basename(args[0]) if args else "?"
    if name == "kerash" and len(args) > 1:
        name += " " + args[1]
    return f" ({name}, pid {pids[0]})"
