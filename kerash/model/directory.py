"""Model directories: the description, versioned weights and state, locks.

A model directory holds the normalised description (`model`) and one folder
per node with parameters, `layer_NN/W.npy` and `b.npy`, plus `state.json`.
Those are symbolic links into `.versions/NNNNNNNN/`: a save writes a complete
new version and then switches the `current` link in one atomic rename, so a
crash or kill at any moment leaves the previous or the new version whole.
"""

import json
import os
import shutil

import numpy as np

from ..files import fs, tensorio
from ..files.fs import TEXT_LIMIT, copy_tree, read_json_checked
from ..errors import DataError, KerashError, ModelError, UsageError
from ..functions.expressions import FUNCTIONS_FILE, define_file
from .description import escaped, normalised_text, read_model_file
from .spec import build_network, param_shapes

MODEL_FILE = "model"
STATE_FILE = "state.json"
CURRENT = "current"
VERSIONS = ".versions"
CHECKPOINTS = "checkpoints"  # MODEL/checkpoints/NAME: copies of versions (train --checkpoint-every, --restore-best)
LOCK_FILE = ".lock"
DTYPES = {"float32": np.float32, "float64": np.float64}
# Files of a version that describe the model's inputs and outputs; a save keeps them (see ModelDir.save).
KEPT = ("classes.txt", "categories.tsv", "columns.txt", "vocabulary.txt", "normalization", "imputation", "validation-rows.txt")
VALIDATION_ROWS = "validation-rows.txt"  # the rows of the data that train --validation-split held out
PIN_WAIT = 5.0  # seconds a reader waits for a version that another process has locked exclusively


# ---------------------------------------------------------------- directory


def write_tree(folder, arrays, state=None):
    """Write {'layer_01/W': array, …} as .npy files (and state.json) under `folder`."""
    for key, array in arrays.items():
        path = os.path.join(folder, key + ".npy")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tensorio.save_npy(path, array)
    if state is not None:
        with fs.atomic_file(os.path.join(folder, STATE_FILE)) as f:
            f.write((json.dumps(state, indent=1, sort_keys=True) + "\n").encode())


def read_tree(folder, shapes, error, shown=None, hint=""):
    """{'layer_NN/W': array} read from folder/layer_NN/W.npy, each checked against `shapes` before it is read
    (a regular npy file of exactly that shape: a FIFO, a device, a sparse giant or a text file is refused unread).

    `error` is the exception to raise, `shown` the folder named in messages,
    `hint` a remark added when a file is missing.
    """
    arrays = {}
    for key, group in shapes.items():
        for name, shape in group.items():
            path = os.path.join(folder, key, name + ".npy")
            where = os.path.join(shown or folder, key, name + ".npy")
            arrays[f"{key}/{name}"] = _read_npy(path, shape, error, where, hint)
    return arrays


def _read_npy(path, shape, error, where, hint=""):
    """tensorio.read_npy_checked (a regular npy file of exactly `shape`), with `hint` when the file is missing."""
    if not os.path.lexists(path):
        raise error(f"{where} is missing{hint}")
    return tensorio.read_npy_checked(path, shape, error=error, where=where)


def flatten_params(params):
    return {f"{layer}/{name}": array for layer, group in params.items() for name, array in group.items()}


class ModelDir:
    """A model directory: the description, the current version of the weights and state."""

    def __init__(self, path):
        self.path = os.fspath(path)
        model_file = os.path.join(self.path, MODEL_FILE)
        if not os.path.isdir(self.path):
            what = "does not exist" if not os.path.exists(self.path) else "is not a directory"
            raise ModelError(f"model directory {self.path} {what}")
        # A version folder, MODEL/.versions/N (what `kerash snapshot` gives), or a checkpoint of one,
        # reads as the model at that version.
        self.frozen = _version_of(self.path)
        if self.frozen:
            model_file = os.path.join(self.frozen, MODEL_FILE)
        if not os.path.isfile(model_file):
            raise ModelError(f"{self.path} is not a model directory (no {MODEL_FILE} file; create one with model-init)")
        if os.path.getsize(model_file) > TEXT_LIMIT:
            raise ModelError(f"{model_file} is too large to be a model description")
        functions = os.path.join(os.path.dirname(model_file), FUNCTIONS_FILE)
        if os.path.exists(functions):  # the user's activations (model-init --functions), before the description
            define_file(functions)
        self.spec = read_model_file(model_file)

    # ------------------------------------------------------------ reading

    def version_dir(self):
        if self.frozen:
            return self.path
        current = os.path.join(self.path, CURRENT)
        target = os.path.realpath(current)
        try:
            os.stat(target)
        except FileNotFoundError:
            if os.path.lexists(current):
                raise ModelError(f"model directory {self.path} has no current version ({current} points to "
                                 f"{os.readlink(current)}, which is missing)") from None
            raise ModelError(f"model directory {self.path} has no current version ({current} is missing)") from None
        except OSError as e:  # an unreadable .versions is not a missing one
            raise ModelError(f"cannot read the current version of {self.path}: {e.strerror or e} ({target})") from None
        if not os.path.isdir(target):
            raise ModelError(f"model directory {self.path} has no current version ({target} is not a folder)")
        return target

    def pin(self):
        """(fd, folder): the current version, kept from clean-up for as long as fd is open (and inherited).

        A shared flock on the version folder: a save removes old versions
        only when it can lock them exclusively (see _commit).
        """
        import fcntl
        import time

        # Never a blocking wait: anyone who can read the model can lock a version folder.  A save
        # holds its exclusive lock only on an old version, for as long as it takes to remove it.
        deadline = None
        for _ in range(2000):
            if self.frozen:
                folder = self.path
            else:
                folder = os.path.join(self.path, VERSIONS, os.path.basename(self.version_dir()))
            try:
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                if self.frozen:
                    break
                continue  # removed since `current` was read: a newer version is current
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = fs.lock_holder(fd)
                os.close(fd)
                now = time.monotonic()
                deadline = deadline or now + PIN_WAIT
                if now > deadline:
                    raise ModelError(f"{folder} is locked by another process{holder}; it cannot be read "
                                     "until that process ends") from None
                time.sleep(0.01)
                continue
            try:
                if os.path.samestat(os.fstat(fd), os.stat(folder)):
                    return fd, folder
            except FileNotFoundError:
                pass
            os.close(fd)  # it was being removed when we locked it
            if self.frozen:
                break
        if self.frozen:
            raise ModelError(f"{self.path} no longer exists: the model was saved twice since this version was "
                             "current (kerash snapshot MODEL -- COMMAND keeps a version)")
        raise ModelError(f"{self.path} changes too fast to pin a version")

    def pinned(self):
        """A context manager giving the folder of the current version, pinned while the block runs."""
        from contextlib import contextmanager

        @contextmanager
        def holding():
            fd, folder = self.pin()
            try:
                yield folder
            finally:
                os.close(fd)

        return holding()

    def read_state(self, version=None):
        if version is None:
            with self.pinned() as folder:
                return self.read_state(folder)
        where = os.path.join(self.path, STATE_FILE)
        state = read_json_checked(os.path.join(version, STATE_FILE), ModelError, where)
        _check_state(state, where)
        return state

    def dtype(self, state=None):
        state = state or self.read_state()
        return DTYPES.get(state.get("dtype", "float32"), np.float32)

    def load(self, dtype=None, version=None):
        """(params, state) of the current version (or of a checkpoint folder); params as `dtype` (default: stored)."""
        if version is None:
            with self.pinned() as folder:
                return self.load(dtype, folder)
        state = self.read_state(version)
        dtype = dtype or self.dtype(state)
        arrays = read_tree(version, param_shapes(self.spec), ModelError, shown=self.path)
        params = {}
        for key, array in arrays.items():
            layer, name = key.split("/")
            params.setdefault(layer, {})[name] = np.array(array, dtype=dtype)
        return params, state

    def load_extra(self, prefix, version=None):
        """Extra arrays saved under `prefix/` in the current version (or `version`), by relative key.

        Optimizer state ('layer_01/W.m') must have the shape of its parameter.
        """
        if version is None:
            with self.pinned() as folder:
                return self.load_extra(prefix, folder)
        root = os.path.join(version, prefix)
        shapes = {f"{layer}/{name}": shape for layer, group in param_shapes(self.spec).items()
                  for name, shape in group.items()}
        found = {}
        if not os.path.isdir(root):
            return found
        for folder, _, files in os.walk(root):
            for name in files:
                if name.endswith(".npy"):
                    path = os.path.join(folder, name)
                    rel = os.path.relpath(path, root)[: -len(".npy")]
                    where = os.path.join(self.path, prefix, rel + ".npy")
                    shape = None
                    if prefix == "optimizer":
                        shape = shapes.get(rel.rsplit(".", 1)[0])
                        if shape is None:
                            raise ModelError(f"{where} belongs to no parameter of the model")
                    found[rel] = _read_npy(path, shape, ModelError, where)
        return found

    def network(self, dtype=None, version=None):
        """The network with the current weights (or those of `version`) loaded, and the state."""
        params, state = self.load(dtype, version)
        net = build_network(self.spec, dtype or self.dtype(state))
        net.set_params(params)
        return net, state

    # ------------------------------------------------------------ writing

    def lock(self, blocking=True, on_wait=None):
        """An exclusive lock on the model for a read-modify-write (model-update, train).

        When another process holds it: with blocking, on_wait(message) is
        called and the lock awaited; without, a UsageError.
        """
        if self.frozen:
            raise UsageError(f"{self.path} is a version of the model {self.frozen}, which only reads; "
                             f"train or model-update {self.frozen} itself")
        return _ModelLock(os.path.join(self.path, LOCK_FILE), blocking, self.path, on_wait)

    def save(self, params, state, extra=None, files=None):
        """Write a complete new version (params, state, extra arrays, text files) and make it current atomically.

        What describes the model's inputs and outputs (KEPT: classes.txt,
        normalization/) goes on from the current version unless given anew.
        """
        arrays = flatten_params(params)
        for key, array in (extra or {}).items():
            arrays[key] = array
        files = files or {}
        current = os.path.join(self.path, CURRENT)
        previous = os.path.realpath(current) if os.path.lexists(current) else None

        def fill(folder):
            write_tree(folder, arrays, state)
            for name, text in files.items():
                with fs.atomic_file(os.path.join(folder, name)) as f:
                    f.write(text.encode())
            for name in KEPT:
                given = name in files or any(key.startswith(name + "/") for key in arrays)
                source = os.path.join(previous, name) if previous else None
                if not given and source and os.path.lexists(source):
                    if os.path.isdir(source):
                        copy_tree(source, os.path.join(folder, name))
                    else:
                        fs.link_or_copy(source, os.path.join(folder, name))

        self._commit(fill)

    def adopt(self, source_folder):
        """Make a copy of a complete version folder (a checkpoint) the current version."""

        def fill(folder):
            shutil.rmtree(folder)
            copy_tree(source_folder, folder)

        self._commit(fill)

    def _commit(self, fill):
        try:
            self._write_version(fill)
        except OSError as e:  # a full disk: the previous version stays current
            raise DataError(f"cannot save {self.path}: {e.strerror or e}") from None

    def _write_version(self, fill):
        versions = os.path.join(self.path, VERSIONS)
        os.makedirs(versions, exist_ok=True)
        self._remove_stale(versions)
        tmp = os.path.join(versions, f"tmp-{os.getpid()}")
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        os.makedirs(tmp)
        try:
            fill(tmp)
            fs.fsync_dir(tmp)
            numbers = [int(n) for n in os.listdir(versions) if n.isascii() and n.isdigit()]
            number = max(numbers, default=0) + 1
            final = os.path.join(versions, f"{number:08d}")
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        link_tmp = os.path.join(self.path, f"{CURRENT}.tmp-{os.getpid()}")
        if os.path.lexists(link_tmp):
            os.unlink(link_tmp)
        os.symlink(os.path.join(VERSIONS, f"{number:08d}"), link_tmp)
        os.replace(link_tmp, os.path.join(self.path, CURRENT))
        fs.fsync_dir(self.path)
        self._ensure_links(final)
        # Keep the previous version too: a reader may still be going through it.
        for n in numbers:
            if n < number - 1:
                _remove_unpinned(versions, f"{n:08d}")

    def _ensure_links(self, version):
        for name in sorted(os.listdir(version)):
            link = os.path.join(self.path, name)
            if not os.path.lexists(link):
                os.symlink(os.path.join(CURRENT, name), link)

    def _remove_stale(self, versions):
        # Leftovers of a writer that was killed mid-save (tmp-PID) or mid-removal (tmp-PID-gone-N).
        for name in os.listdir(versions):
            if name.startswith("tmp-"):
                pid = name[4:].split("-", 1)[0]
                if pid.isascii() and pid.isdigit() and int(pid) != os.getpid() and not fs.pid_alive(int(pid)):
                    shutil.rmtree(os.path.join(versions, name), ignore_errors=True)
        for name in os.listdir(self.path):
            if name.startswith(f"{CURRENT}.tmp-"):
                pid = name.rsplit("-", 1)[-1]
                if pid.isascii() and pid.isdigit() and not fs.pid_alive(int(pid)):
                    os.unlink(os.path.join(self.path, name))

    @classmethod
    def create(cls, path, spec, params, state, origin=None, force=False, extra=None, files=None, functions=None):
        """Write a new model directory, replacing an existing one only with force; `functions` is the text of
        the functions file its description uses (kept as MODEL/functions.txt).

        The new directory is built beside `path` and read back completely
        before anything is replaced; an existing model directory is swapped
        out in one step while its lock is held, so a failure at any point
        leaves the old one as it was.
        """
        check_target(os.fspath(path).rstrip("/") or "/", force)
        path, tmp = fs.folder_beside(path)
        try:
            os.makedirs(tmp)
            with fs.atomic_file(os.path.join(tmp, MODEL_FILE)) as f:
                f.write(normalised_text(spec, origin).encode())
            if functions is not None:
                with fs.atomic_file(os.path.join(tmp, FUNCTIONS_FILE)) as f:
                    f.write(functions.encode())
            # The lock file exists from the start, so a train or model-update that fails adds nothing.
            open(os.path.join(tmp, LOCK_FILE), "a").close()
            staged = cls.__new__(cls)
            staged.path, staged.spec = tmp, spec
            staged.save(params, state, extra, files)
            _check_staged(tmp, spec, path)
            with _replacing(path):
                check_target(path, force)  # what is there may have changed while the new one was written
                fs.put_in_place(tmp, path)
        except OSError as e:
            raise DataError(f"cannot create {path}: {e.strerror or e}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls(path)


_COUNTS = ("epochs", "steps", "batch", "samples", "partial_samples_total", "stale")
_OBJECTS = ("optimizer", "partial", "best", "last")


def _check_state(state, where):
    """Refuse a state.json whose fields have impossible types or values, before anything computes with them."""
    for key in _COUNTS:
        value = state.get(key, 0)
        if type(value) is not int or value < 0:
            raise ModelError(f"{where}: {key} must be a whole number ≥ 0, not {escaped(json.dumps(value))[:40]}")
    for key in ("seed", "init_seed"):
        if type(state.get(key, 0)) not in (int, type(None)):
            raise ModelError(f"{where}: {key} must be a whole number")
    if state.get("dtype", "float32") not in DTYPES:
        raise ModelError(f"{where}: dtype must be float32 or float64")
    for key in _OBJECTS:
        if type(state.get(key)) not in (dict, type(None)):
            raise ModelError(f"{where}: {key} must be an object")


def _version_of(path):
    """The model directory of a version folder MODEL/.versions/N or a checkpoint MODEL/checkpoints/NAME, else None."""
    parent, name = os.path.split(os.path.normpath(path))
    model, kind = os.path.split(parent)
    if kind == VERSIONS and name.isascii() and name.isdigit():
        return model or "."
    if (kind == CHECKPOINTS and not os.path.exists(os.path.join(path, MODEL_FILE))
            and os.path.isfile(os.path.join(model or ".", MODEL_FILE))):
        return model or "."
    return None


def check_target(path, force):
    """Refuse a path for a new model directory unless nothing is there, or --force and a model directory (or an empty folder)."""
    path = os.fspath(path).rstrip("/") or "/"
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        kind = "a symbolic link" if os.path.islink(path) else "a file" if os.path.isfile(path) else "not a folder"
        raise UsageError(f"{path} is {kind}, not a model directory; refusing to replace it, even with --force")
    try:
        empty = not os.listdir(path)
    except OSError as e:
        raise UsageError(f"{path} cannot be read ({e.strerror}); refusing to replace it") from None
    if not empty and not os.path.isfile(os.path.join(path, MODEL_FILE)):
        raise UsageError(f"{path} is not a model directory; refusing to replace it, even with --force")
    if not force:
        raise UsageError(f"{path} already exists (use --force to replace it)")


def _check_staged(folder, spec, path):
    """Read a new model directory back as every tool will, before it replaces anything."""
    try:
        staged = ModelDir(folder)
        staged.load()
        same = normalised_text(staged.spec) == normalised_text(spec)
    except KerashError as e:
        raise ModelError(f"{path} was not created: the new directory does not read back ({e})") from None
    if not same:
        raise ModelError(f"{path} was not created: its description does not read back the same")


class _replacing:
    """Hold the lock of the model directory at `path`, if there is one, while it is replaced."""

    def __init__(self, path):
        self.path = path
        self.lock = None

    def __enter__(self):
        if os.path.isfile(os.path.join(self.path, LOCK_FILE)):
            self.lock = _ModelLock(os.path.join(self.path, LOCK_FILE), False, self.path, None, "replaced")
            self.lock.__enter__()
        return self

    def __exit__(self, *exc):
        if self.lock is not None:
            self.lock.__exit__(*exc)
        return False


def _remove_unpinned(versions, name):
    """Remove an old version folder unless a reader has pinned it (see ModelDir.pin)."""
    import fcntl

    folder = os.path.join(versions, name)
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return  # pinned: a later save removes it
    try:
        # Renamed first, so a reader that opened it before sees it gone; removed after.
        gone = os.path.join(versions, f"tmp-{os.getpid()}-gone-{name}")
        os.rename(folder, gone)
        shutil.rmtree(gone, ignore_errors=True)
    except OSError:
        pass
    finally:
        os.close(fd)


class _ModelLock:
    def __init__(self, path, blocking, model, on_wait=None, doing="trained or updated"):
        self.path, self.blocking, self.model, self.on_wait, self.doing = path, blocking, model, on_wait, doing

    def __enter__(self):
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = fs.lock_holder(self.fd)
                if not self.blocking:
                    if self.doing == "replaced":
                        raise UsageError(f"{self.model} is in use by another process{holder}; not replaced") from None
                    raise UsageError(f"{self.model} is being trained or updated by another process{holder}") from None
                if self.on_wait:
                    self.on_wait(f"waiting for {self.model}, in use by another process{holder} (--no-wait fails instead)")
                fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing releases the lock
        return False


def new_state(seed, dtype):
    """The state of a freshly initialised model."""
    return {
        "format": 1,
        "dtype": np.dtype(dtype).name,
        "epochs": 0,
        "steps": 0,
        "samples": 0,
        "init_seed": seed,
    }
