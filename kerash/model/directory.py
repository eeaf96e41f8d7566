"""Model directories: the description, versioned weights and state, locks.

A model directory holds the normalised description (`model`) and one folder
per node with parameters, `layer_NN/W.npy` and `b.npy`, plus `state.json`.
Those are symbolic links into `.versions/NNNNNNNN/`: a save writes a complete
new version and then switches the `current` link in one atomic rename, so a
crash or kill at any moment leaves the previous or the new version whole.
"""

import errno
import json
import os
import shutil

import numpy as np

from .. import tensorio
from ..errors import ModelError, UsageError
from ..ops import shape_str
from .description import normalised_text, read_model_file
from .spec import build_network, param_shapes

MODEL_FILE = "model"
STATE_FILE = "state.json"
CURRENT = "current"
VERSIONS = ".versions"
LOCK_FILE = ".lock"
DTYPES = {"float32": np.float32, "float64": np.float64}


# ---------------------------------------------------------------- directory


def _fsync_dir(path):
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


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_tree(folder, arrays, state=None):
    """Write {'layer_01/W': array, …} as .npy files (and state.json) under `folder`."""
    for key, array in arrays.items():
        path = os.path.join(folder, key + ".npy")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tensorio.save_npy(path, array)
    if state is not None:
        with tensorio.atomic_file(os.path.join(folder, STATE_FILE)) as f:
            f.write((json.dumps(state, indent=1, sort_keys=True) + "\n").encode())


def read_tree(folder, shapes, error, shown=None, hint=""):
    """{'layer_NN/W': array} read from folder/layer_NN/W.npy, each checked against `shapes`.

    `error` is the exception to raise, `shown` the folder named in messages,
    `hint` a remark added when a file is missing.
    """
    arrays = {}
    for key, group in shapes.items():
        for name, shape in group.items():
            path = os.path.join(folder, key, name + ".npy")
            where = os.path.join(shown or folder, key, name + ".npy")
            if not os.path.exists(path):
                raise error(f"{where} is missing{hint}")
            array = tensorio.read_tensor(path)
            if array.shape != tuple(shape):
                raise error(f"{where} has shape {shape_str(array.shape)} but the model needs {shape_str(shape)}")
            arrays[f"{key}/{name}"] = array
    return arrays


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
        if not os.path.isfile(model_file):
            raise ModelError(f"{self.path} is not a model directory (no {MODEL_FILE} file; create one with init)")
        self.spec = read_model_file(model_file)

    # ------------------------------------------------------------ reading

    def version_dir(self):
        current = os.path.join(self.path, CURRENT)
        target = os.path.realpath(current)
        if not os.path.isdir(target):
            raise ModelError(f"model directory {self.path} has no current version ({current} is missing)")
        return target

    def read_state(self, version=None):
        path = os.path.join(version or self.version_dir(), STATE_FILE)
        try:
            with open(path) as f:
                return json.load(f)
        except FileNotFoundError:
            raise ModelError(f"{self.path}: missing {STATE_FILE}") from None
        except (OSError, ValueError) as e:
            raise ModelError(f"{self.path}: unreadable {STATE_FILE}: {e}") from None

    def dtype(self, state=None):
        state = state or self.read_state()
        return DTYPES.get(state.get("dtype", "float32"), np.float32)

    def load(self, dtype=None, version=None):
        """(params, state) of the current version (or of a checkpoint folder); params as `dtype` (default: stored)."""
        version = version or self.version_dir()
        state = self.read_state(version)
        dtype = dtype or self.dtype(state)
        arrays = read_tree(version, param_shapes(self.spec), ModelError, shown=self.path)
        params = {}
        for key, array in arrays.items():
            layer, name = key.split("/")
            params.setdefault(layer, {})[name] = np.array(array, dtype=dtype)
        return params, state

    def load_extra(self, prefix):
        """Extra arrays saved under `prefix/` in the current version (optimizer state), by relative key."""
        root = os.path.join(self.version_dir(), prefix)
        found = {}
        if not os.path.isdir(root):
            return found
        for folder, _, files in os.walk(root):
            for name in files:
                if name.endswith(".npy"):
                    rel = os.path.relpath(os.path.join(folder, name), root)[: -len(".npy")]
                    found[rel] = tensorio.read_tensor(os.path.join(folder, name))
        return found

    def network(self, dtype=None):
        """The network with the current weights loaded, and the state."""
        params, state = self.load(dtype)
        net = build_network(self.spec, dtype or self.dtype(state))
        net.set_params(params)
        return net, state

    # ------------------------------------------------------------ writing

    def lock(self, blocking=True):
        """An exclusive lock on the model for a read-modify-write (update, train)."""
        return _ModelLock(os.path.join(self.path, LOCK_FILE), blocking, self.path)

    def save(self, params, state, extra=None):
        """Write a complete new version (params, state, extra arrays) and make it current atomically."""
        arrays = flatten_params(params)
        for key, array in (extra or {}).items():
            arrays[key] = array
        self._commit(lambda folder: write_tree(folder, arrays, state))

    def adopt(self, source_folder):
        """Make a copy of a complete version folder (a checkpoint) the current version."""

        def fill(folder):
            shutil.rmtree(folder)
            copy_tree(source_folder, folder)

        self._commit(fill)

    def _commit(self, fill):
        versions = os.path.join(self.path, VERSIONS)
        os.makedirs(versions, exist_ok=True)
        self._remove_stale(versions)
        tmp = os.path.join(versions, f"tmp-{os.getpid()}")
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        os.makedirs(tmp)
        try:
            fill(tmp)
            _fsync_dir(tmp)
            numbers = [int(n) for n in os.listdir(versions) if n.isdigit()]
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
        _fsync_dir(self.path)
        self._ensure_links(final)
        # Keep the previous version too: a reader may still be going through it.
        for n in numbers:
            if n < number - 1:
                shutil.rmtree(os.path.join(versions, f"{n:08d}"), ignore_errors=True)

    def _ensure_links(self, version):
        for name in sorted(os.listdir(version)):
            link = os.path.join(self.path, name)
            if not os.path.lexists(link):
                os.symlink(os.path.join(CURRENT, name), link)

    def _remove_stale(self, versions):
        # Leftovers of a writer that was killed mid-save.
        for name in os.listdir(versions):
            if name.startswith("tmp-"):
                pid = name[4:]
                if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                    shutil.rmtree(os.path.join(versions, name), ignore_errors=True)
        for name in os.listdir(self.path):
            if name.startswith(f"{CURRENT}.tmp-"):
                pid = name.rsplit("-", 1)[-1]
                if pid.isdigit() and not _pid_alive(int(pid)):
                    os.unlink(os.path.join(self.path, name))

    @classmethod
    def create(cls, path, spec, params, state, origin=None, force=False):
        """Write a new model directory atomically (replacing an existing one only with force)."""
        path = os.fspath(path).rstrip("/") or "/"
        if os.path.lexists(path):
            if not force:
                raise UsageError(f"{path} already exists (use --force to replace it)")
            if os.path.isdir(path) and not os.path.islink(path) and os.listdir(path):
                if not os.path.isfile(os.path.join(path, MODEL_FILE)):
                    raise UsageError(f"{path} is not a model directory; refusing to replace it")

        def fill(tmp):
            os.makedirs(tmp)
            with tensorio.atomic_file(os.path.join(tmp, MODEL_FILE)) as f:
                f.write(normalised_text(spec, origin).encode())
            # The lock file exists from the start, so a train or update that fails adds nothing.
            open(os.path.join(tmp, LOCK_FILE), "a").close()
            staged = cls.__new__(cls)
            staged.path, staged.spec = tmp, spec
            staged.save(params, state)

        tensorio.atomic_folder(path, fill)
        return cls(path)


def copy_tree(source, target):
    """Copy a folder of immutable files, with hard links where the file system allows."""

    def link_or_copy(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)


class _ModelLock:
    def __init__(self, path, blocking, model):
        self.path, self.blocking, self.model = path, blocking, model

    def __enter__(self):
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB))
        except OSError as e:
            os.close(self.fd)
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise UsageError(f"{self.model} is being trained or updated by another process") from None
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
