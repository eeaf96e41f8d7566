"""Model descriptions and model directories.

A description is a small text file, a superset of KeraSH's format::

    /xavier,zero/            # optional initialisation header (NeuroMorph syntax)
    64 1 1                   # input width, height, depth
    input
    dense 128 sigmoid
    convolution relu 16 1 1 3 3     # activation filters stride pad kw kh
    max_pooling - 2 0 2 2           # - stride pad kw kh
    flatten -
    dense 10 softmax
    loss cross_entropy       # optional; default cross_entropy after softmax, else mse

A model directory holds the normalised description (`model`) and one folder
per layer with parameters, `layer_NN/W.npy` and `b.npy` (NN is the layer's
position in the file, `input` being 00), plus `state.json`.  Those are
symbolic links into `.versions/NNNNNNNN/`: a save writes a complete new
version and then switches the `current` link in one atomic rename, so a
crash or kill at any moment leaves the previous or the new version whole.
"""

import errno
import json
import os
import shutil
from dataclasses import dataclass, field

import numpy as np

from . import functions, layers, tensorio
from .ops import shape_str
from .errors import DataError, KerashError, ModelError, UsageError, close_matches
from .network import Network, targets_are_classes

MODEL_FILE = "model"
STATE_FILE = "state.json"
CURRENT = "current"
VERSIONS = ".versions"
LOCK_FILE = ".lock"
DTYPES = {"float32": np.float32, "float64": np.float64}
LAYER_KINDS = ("dense", "convolution", "max_pooling", "flatten")


# ---------------------------------------------------------------- description


@dataclass
class LayerSpec:
    kind: str
    lineno: int
    index: int  # position in the file, input = 0
    activation: object = None  # functions.BoundActivation
    units: int = 0
    filters: int = 0
    stride: int = 1
    pad: int = 0
    kw: int = 0
    kh: int = 0

    @property
    def key(self):
        return f"layer_{self.index:02d}"


@dataclass
class ModelSpec:
    input_shape: tuple  # (D, H, W) = (C, H, W) of one sample
    layers: list
    weight_init: tuple = ("xavier", ())
    bias_init: tuple = ("zero", ())
    loss: object = None  # functions.BoundLoss
    source: str = "<model>"
    shapes: list = field(default_factory=list)  # output shape of each layer

    @property
    def output_width(self):
        return int(np.prod(self.shapes[-1]))


def _fail(where, lineno, message):
    raise ModelError(f"{where}:{lineno}: {message}")


def _int_args(tokens, names, where, lineno, what, minimum=1):
    if len(tokens) < len(names):
        _fail(where, lineno, f"{what} needs {' '.join(names)}, found {' '.join(tokens) or 'nothing'}")
    values = []
    for name, tok in zip(names, tokens):
        try:
            v = int(tok)
        except ValueError:
            _fail(where, lineno, f"{what}: {name} must be an integer, not {tok!r}")
        low = 0 if name == "PAD" else minimum
        if v < low:
            _fail(where, lineno, f"{what}: {name} must be ≥ {low}, not {v}")
        values.append(v)
    return values


def _bind(where, lineno, bind, *args):
    try:
        return bind(*args)
    except KerashError as e:
        _fail(where, lineno, str(e))


def _parse_init(line, where, lineno):
    body = line.strip()
    if not (body.startswith("/") and body.endswith("/") and len(body) >= 2):
        _fail(where, lineno, "an initialisation header looks like /xavier,zero/")
    parts = [p.strip() for p in body[1:-1].split(",")]
    if len(parts) > 2 or not parts[0]:
        _fail(where, lineno, "an initialisation header is /WEIGHTS[ PARAMS],BIASES[ PARAMS]/, e.g. /he,const_flat 0.1/")
    result = []
    for part in parts + (["zero"] if len(parts) == 1 else []):
        tokens = part.split()
        if not tokens:
            _fail(where, lineno, "empty initialiser in the header")
        name, params = tokens[0], tuple(tokens[1:])
        _bind(where, lineno, lambda: functions.get_initializer(name).bind(params))
        result.append((name, params))
    return result[0], result[1]


def parse_model(text, where="<model>"):
    """Parse a model description; errors name FILE:LINE and what was expected."""
    dims = None
    input_seen = False
    init = None
    loss_spec = None
    specs = []
    index = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("/"):
            if init is not None:
                _fail(where, lineno, "a second initialisation header")
            init = _parse_init(line, where, lineno)
            continue
        tokens = line.split()
        head = tokens[0]
        if dims is None:
            if len(tokens) != 3 or not all(t.isdigit() and int(t) > 0 for t in tokens):
                _fail(where, lineno, f"expected the input size 'W H D' (three positive integers), found {line!r}")
            w, h, d = (int(t) for t in tokens)
            dims = (d, h, w)
            continue
        if not input_seen:
            if head != "input" or tokens[1:] not in ([], ["-"]):
                _fail(where, lineno, f"expected 'input' after the input size, found {line!r}")
            input_seen = True
            continue
        if head == "loss":
            if loss_spec is not None:
                _fail(where, lineno, "a second loss line")
            if len(tokens) < 2:
                _fail(where, lineno, "loss needs a NAME, e.g. 'loss mse'")
            loss_spec = (lineno, _bind(where, lineno, lambda: functions.get_loss(tokens[1]).bind(tokens[2:])))
            continue
        if loss_spec is not None:
            _fail(where, lineno, "layers must come before the loss line")
        index += 1
        args = tokens[1:]
        if head == "dense":
            (units,) = _int_args(args[:1], ["UNITS"], where, lineno, "dense")
            if len(args) < 2:
                _fail(where, lineno, "dense needs UNITS ACTIVATION [PARAM…], e.g. 'dense 10 sigmoid'")
            act = _bind(where, lineno, lambda: functions.get_activation(args[1]).bind(args[2:]))
            specs.append(LayerSpec("dense", lineno, index, act, units=units))
        elif head == "convolution":
            if not args:
                _fail(where, lineno, "convolution needs ACTIVATION FILTERS STRIDE PAD KW KH")
            filters, stride, pad, kw, kh = _int_args(
                args[1:6], ["FILTERS", "STRIDE", "PAD", "KW", "KH"], where, lineno, "convolution ACTIVATION"
            )
            act = _bind(where, lineno, lambda: functions.get_activation(args[0]).bind(args[6:]))
            specs.append(LayerSpec("convolution", lineno, index, act, filters=filters, stride=stride, pad=pad, kw=kw, kh=kh))
        elif head == "max_pooling":
            if not args or args[0] != "-":
                _fail(where, lineno, "expected 'max_pooling - STRIDE PAD KW KH' (the '-' stands for no activation)")
            stride, pad, kw, kh = _int_args(args[1:], ["STRIDE", "PAD", "KW", "KH"], where, lineno, "max_pooling -")
            if len(args) > 5:
                _fail(where, lineno, "max_pooling takes only - STRIDE PAD KW KH")
            specs.append(LayerSpec("max_pooling", lineno, index, stride=stride, pad=pad, kw=kw, kh=kh))
        elif head == "flatten":
            if args not in ([], ["-"]):
                _fail(where, lineno, "flatten takes no arguments ('flatten -')")
            specs.append(LayerSpec("flatten", lineno, index))
        else:
            hint = close_matches(head, LAYER_KINDS + ("loss", "input"))
            _fail(where, lineno, f"unknown layer {head!r}{hint} (expected dense, convolution, max_pooling, flatten or loss)")
    if dims is None:
        raise ModelError(f"{where}: empty model: expected the input size 'W H D', then 'input', then layers")
    if not input_seen:
        raise ModelError(f"{where}: expected 'input' after the input size")
    if not specs:
        raise ModelError(f"{where}: the model has no layers after 'input'")
    spec = ModelSpec(dims, specs, source=where)
    if init is not None:
        spec.weight_init, spec.bias_init = init
    _infer_shapes(spec, where)
    if loss_spec is not None:
        spec.loss = loss_spec[1]
    else:
        last = specs[-1].activation
        spec.loss = functions.get_loss("cross_entropy" if last is not None and last.name == "softmax" else "mse").bind()
    return spec


def _infer_shapes(spec, where):
    shape = spec.input_shape
    for s in spec.layers:
        if s.kind in ("convolution", "max_pooling"):
            if len(shape) != 3:
                _fail(where, s.lineno, f"{s.kind} needs an image input (C,H,W), but its input is a vector of {shape[0]}")
            c, h, w = shape
            if s.kh > h + 2 * s.pad or s.kw > w + 2 * s.pad:
                _fail(where, s.lineno, f"{s.kind} window {s.kw}×{s.kh} is larger than its padded input {w + 2 * s.pad}×{h + 2 * s.pad}")
            if s.kind == "max_pooling" and 2 * s.pad > min(s.kw, s.kh):
                _fail(where, s.lineno, f"max_pooling padding {s.pad} must be at most half the window")
            oh = (h + 2 * s.pad - s.kh) // s.stride + 1
            ow = (w + 2 * s.pad - s.kw) // s.stride + 1
            shape = (s.filters if s.kind == "convolution" else c, oh, ow)
        elif s.kind == "dense":
            shape = (s.units,)
        else:
            shape = (int(np.prod(shape)),)
        spec.shapes.append(shape)


def read_model_file(path):
    """Parse the description in file `path`."""
    data = tensorio.read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{path} is not a text model description") from None
    return parse_model(text, str(path))


def _spec_line(name, params):
    return " ".join([name, *[str(p) for p in params]])


def normalised_text(spec, origin=None):
    """The description with every default made explicit; parse_model reads it back unchanged."""
    lines = []
    if origin:
        lines.append(f"# normalised by kerash from {origin}")
    lines.append(f"/{_spec_line(*spec.weight_init)},{_spec_line(*spec.bias_init)}/")
    d, h, w = spec.input_shape
    lines += [f"{w} {h} {d}", "input"]
    for s in spec.layers:
        act = s.activation.text() if s.activation is not None else ""
        if s.kind == "dense":
            lines.append(f"dense {s.units} {act}")
        elif s.kind == "convolution":
            name, _, params = act.partition(" ")
            lines.append(" ".join(filter(None, ["convolution", name, str(s.filters), str(s.stride), str(s.pad), str(s.kw), str(s.kh), params])))
        elif s.kind == "max_pooling":
            lines.append(f"max_pooling - {s.stride} {s.pad} {s.kw} {s.kh}")
        else:
            lines.append("flatten -")
    lines.append("loss " + spec.loss.text())
    return "\n".join(lines) + "\n"


def layer_description(s):
    """One layer as written in a model file (for summaries and traces)."""
    if s.kind == "dense":
        return f"dense {s.units} {s.activation.text()}"
    if s.kind == "convolution":
        return f"convolution {s.activation.text()} {s.filters} {s.stride} {s.pad} {s.kw} {s.kh}"
    if s.kind == "max_pooling":
        return f"max_pooling - {s.stride} {s.pad} {s.kw} {s.kh}"
    return "flatten -"


# ---------------------------------------------------------------- network


def build_network(spec, dtype=np.float32):
    """The layers of `spec`, without parameters (see init_params / ModelDir.load)."""
    built = []
    shape = spec.input_shape
    for s in spec.layers:
        if s.kind == "dense":
            layer = layers.Dense(s.units, s.activation, shape)
        elif s.kind == "convolution":
            layer = layers.Convolution(s.filters, s.kh, s.kw, s.stride, s.pad, s.activation, shape)
        elif s.kind == "max_pooling":
            layer = layers.MaxPooling(s.kh, s.kw, s.stride, s.pad)
        else:
            layer = layers.Flatten()
        layer.key = s.key
        built.append(layer)
        shape = layer.output_shape(shape)
    return Network(built, spec.loss, spec.input_shape, dtype)


def param_shapes(spec):
    """{'layer_NN': {'W': shape, 'b': shape}} for the layers with parameters."""
    net = build_network(spec)
    return {l.key: dict(l.param_shapes) for l in net.layers if hasattr(l, "param_shapes")}


def init_params(spec, seed=None, dtype=np.float32):
    """Fresh weights drawn with the description's initialisers; the same seed gives the same bits."""
    rng = np.random.default_rng(seed)
    draw_w = functions.get_initializer(spec.weight_init[0]).bind(spec.weight_init[1])
    draw_b = functions.get_initializer(spec.bias_init[0]).bind(spec.bias_init[1])
    params = {}
    for layer in build_network(spec).layers:
        if not hasattr(layer, "param_shapes"):
            continue
        shapes = layer.param_shapes
        w = draw_w(rng, shapes["W"], layer.fan_in, layer.fan_out)
        b = draw_b(rng, shapes["b"], layer.fan_in, layer.fan_out)
        params[layer.key] = {"W": np.asarray(w, dtype=dtype), "b": np.asarray(b, dtype=dtype)}
    return params


def count_params(spec):
    return sum(int(np.prod(s)) for shapes in param_shapes(spec).values() for s in shapes.values())


# ---------------------------------------------------------------- data


def prepare_inputs(x, spec, where="data"):
    """Samples as (N, C, H, W): rows of flattened samples or an (N, C, H, W) tensor."""
    d, h, w = spec.input_shape
    need = d * h * w
    x = np.asarray(x)
    if x.ndim == 4:
        if x.shape[1:] != (d, h, w):
            raise DataError(
                f"data samples are {shape_str(x.shape[1:])} but the model input is {d}×{h}×{w} (C×H×W) ({where})"
            )
        return x
    if x.ndim == 3 and x.shape == (d, h, w):
        return x[None]
    if x.ndim == 3 and d == 1 and x.shape[1:] == (h, w):
        return x[:, None]
    if x.ndim <= 1:
        x = x.reshape(1, -1)
    if x.ndim == 2:
        if x.shape[1] != need:
            raise DataError(
                f"data rows have {x.shape[1]} values but the model input {w}×{h}×{d} needs {need} ({where})"
            )
        return x.reshape(x.shape[0], d, h, w)
    raise DataError(f"data of shape {shape_str(x.shape)} does not fit the model input {d}×{h}×{w} ({where})")


def prepare_targets(y, n, width, where="labels"):
    """Targets (N, K): one-hot rows, one column of class indices (one-hot encoded), or real values."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 0:
        y = y.reshape(1, 1)
    elif y.ndim == 1:
        y = y.reshape(-1, 1) if n != 1 or y.size == 1 else y.reshape(1, -1)
    elif y.ndim > 2:
        y = y.reshape(y.shape[0], -1)
    if y.shape[0] != n:
        raise DataError(f"{n} data samples but {y.shape[0]} label rows ({where})")
    if y.shape[1] == width:
        return y
    if y.shape[1] == 1 and width > 1:
        classes = y[:, 0]
        if not np.all((classes == np.floor(classes)) & (classes >= 0) & (classes < width)):
            bad = classes[~((classes == np.floor(classes)) & (classes >= 0) & (classes < width))][0]
            raise DataError(
                f"a label column must hold class indices 0..{width - 1} for the model's {width} outputs, found {bad:g} ({where})"
            )
        onehot = np.zeros((n, width))
        onehot[np.arange(n), classes.astype(np.int64)] = 1.0
        return onehot
    raise DataError(
        f"labels have {y.shape[1]} columns but the model outputs {width} values; give one-hot rows of {width}, "
        f"one column of class indices, or {width} targets per row ({where})"
    )


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


# ---------------------------------------------------------------- using a model


def load_network(path, dtype=None):
    """(network, state) of the model directory `path`; dtype a name ('float64') or None for the stored one."""
    if dtype is not None and dtype not in DTYPES:
        raise UsageError(f"--dtype must be float32 or float64, not {dtype!r}")
    return ModelDir(path).network(DTYPES.get(dtype))


def predict(path, x, dtype=None, name="input"):
    """Outputs (N, K) and predicted classes (N,) of the model for samples x."""
    net, _ = load_network(path, dtype)
    out = net.predict(prepare_inputs(x, ModelDir(path).spec, name))
    return out, net.classes(out)


def evaluate(path, x, y, dtype=None, names=("data", "labels")):
    """{'loss', 'accuracy', 'samples', 'correct', 'confusion' (or None)} of the model on (x, y)."""
    md = ModelDir(path)
    net, _ = md.network(DTYPES.get(dtype))
    x = prepare_inputs(x, md.spec, names[0])
    y = prepare_targets(y, x.shape[0], md.spec.output_width, names[1])
    net.adapt_to_targets(y)
    loss_sum, correct, predicted = net.evaluate(x, y.astype(net.dtype))
    n = x.shape[0]
    width = md.spec.output_width
    classification = targets_are_classes(y)
    confusion = None
    if classification and n:
        k = max(width, 2)
        truth = y.argmax(axis=1) if width > 1 else (y[:, 0] > 0.5).astype(np.int64)
        confusion = np.zeros((k, k), dtype=np.int64)
        np.add.at(confusion, (truth, predicted), 1)
    return {
        "loss": loss_sum / n if n else float("nan"),
        "accuracy": correct / n if classification and n else float("nan"),
        "samples": n,
        "correct": correct if classification else None,
        "confusion": confusion,
    }


_KERAS_NAMES = {"dense": "Dense", "convolution": "Convolution", "max_pooling": "MaxPooling", "flatten": "Flatten"}


def summary_text(spec, name):
    """The model as a table of layers, output shapes and parameter counts, as Keras prints it."""
    shapes = param_shapes(spec)
    rule, thick = "_" * 78, "=" * 78
    rows = [(" input (Input)", "(None, " + ", ".join(map(str, spec.input_shape)) + ")", "0", "")]
    total = 0
    for s, out in zip(spec.layers, spec.shapes):
        count = sum(int(np.prod(v)) for v in shapes.get(s.key, {}).values())
        total += count
        act = s.activation.name if s.activation is not None else ""
        rows.append((f" {s.key} ({_KERAS_NAMES[s.kind]})", "(None, " + ", ".join(map(str, out)) + ")", f"{count:,}", act))
    lines = [f'Model: "{name}"', rule, f"{' Layer (type)':<28}{'Output Shape':<24}{'Param #':<12}Activation", thick]
    for i, (layer, shape, count, act) in enumerate(rows):
        lines.append(f"{layer:<28}{shape:<24}{count:<12}{act}".rstrip())
        if i < len(rows) - 1:
            lines.append("")
    lines += [
        thick,
        f"Total params: {total:,}",
        f"Trainable params: {total:,}",
        "Non-trainable params: 0",
        f"Loss: {spec.loss.text()}",
        rule,
    ]
    return "\n".join(lines) + "\n"
