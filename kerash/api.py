"""The Python API: the tools' verbs on numpy arrays, in this process, with the tools' semantics.

    import kerash
    kerash.init("xor.model", "xor", seed=1)               # model-init
    history = kerash.train("xor", x, y, epochs=200, lr=0.5, batch_size=4)
    outputs = kerash.predict("xor", x)                     # predict
    classes = kerash.classify("xor", x)                    # predict --classes
    hidden = kerash.node_values("xor", x, "layer_01")      # predict --node
    scores = kerash.evaluate("xor", x, y)                  # evaluate
    grads, stats = kerash.backprop("xor", x, y)            # backprop, without the folder

A model is a model directory (or a version or checkpoint folder), as every
tool takes it: the same files, the same locks, the same checks.  Inputs are
raw data (a model trained with normalize=True applies its statistics);
labels may be class indices, one-hot rows, values, or class names.
Sequences of different lengths may be given as a list of arrays (a
sequence each, (T, I) or (T,)), and targets at every step alike: they are
padded as the tools pad them (kerash.files.sequences).  Errors
are kerash.errors.KerashError subclasses (UsageError, DataError,
ModelError, TrainingError) carrying the tool's one-line message.
PUBLIC lists what is stable; docs/python.md shows it at work.
"""

import numpy as np

from . import model as modelmod
from .errors import TrainingError, UsageError
from .files import sequences
from .files.labels import WordLabels, word_labels
from .functions.expressions import define_file
from .training import fit as fitmod
from .training.config import SETTINGS, TrainConfig
from .training.params_file import read_params
from .training.steps import gradient_sums

PUBLIC = ("init", "train", "predict", "classify", "node_values", "evaluate", "backprop", "settings")


def _ragged(values):
    """Whether `values` is a list of arrays of different lengths (sequences of different lengths)."""
    return (isinstance(values, (list, tuple)) and len(values) > 1 and all(np.ndim(v) >= 1 for v in values)
            and len({len(v) for v in values}) > 1)


def _samples(x):
    """Samples as an array; sequences of different lengths padded with nan steps, as the tools read them."""
    return sequences.pad(x) if _ragged(x) else np.asarray(x)


def _labels(y, where="labels"):
    """Labels as the tools read them: numbers as an array, class names (strings) as WordLabels; targets at
    every step of sequences of different lengths padded."""
    if isinstance(y, WordLabels):
        return y
    if _ragged(y):
        return sequences.pad(y)
    values = np.asarray(y)
    if values.dtype.kind not in "UO":
        return values
    names = [str(name) for name in values.reshape(-1).tolist()]
    return word_labels(names, range(1, len(names) + 1), where)


def init(model_file, output, seed=None, dtype="float32", force=False, functions=None):
    """Create the model directory `output` from a description file, as model-init (`functions`: the path of a
    functions file, as --functions); returns its path."""
    text = define_file(functions) if functions is not None else None
    spec = modelmod.read_model_file(model_file)
    modelmod.check_target(output, force)
    if dtype not in modelmod.DTYPES:
        raise UsageError(f"dtype must be float32 or float64, not {dtype!r}")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**63))
    dt = modelmod.DTYPES[dtype]
    params = modelmod.init_params(spec, seed, dt)
    modelmod.ModelDir.create(output, spec, params, modelmod.new_state(seed, dt), origin=model_file, force=force,
                             functions=text)
    return output


def settings():
    """{name: help} of train's settings, the keyword arguments train() takes (train --help says the same)."""
    return {s.name: s.help for s in SETTINGS if s.config}


def train(model, x, y, validation=None, **given):
    """Train `model` on samples x and labels y, as the train tool: returns the epoch records (dicts of
    epoch, samples, loss, accuracy, val_loss, val_accuracy, seconds).

    Keyword arguments are train's settings (see settings(): epochs=10,
    lr=0.1, batch_size=32, optimizer="adam", workers=1, …); MODEL/params
    gives those not given, as for the tool.  `validation` is (x, y) of
    validation data.  A run that ends on a non-finite loss raises
    TrainingError; one stopped by a signal returns what it finished.
    """
    unknown = set(given) - set(settings())
    if unknown:
        raise UsageError(f"train() has no setting {', '.join(sorted(unknown))}; see kerash.settings()")
    chosen = read_params(model)
    for files in ("data", "labels", "val_data", "val_labels"):
        chosen.pop(files, None)
    if "epochs" in given:
        chosen.pop("until_epoch", None)
    if "until_epoch" in given:
        chosen.pop("epochs", None)
    chosen.update(given)
    cfg = TrainConfig(**chosen)
    records = []
    if validation is not None:
        validation = (_samples(validation[0]), _labels(validation[1], "validation labels"))
    result = fitmod.fit(model, _samples(x), _labels(y), cfg, validation, records.append)
    if result.status == "nan":
        raise TrainingError(result.message)
    return records


def predict(model, x, dtype=None):
    """The model's outputs for samples x: (N, K), or (N, T, K) for sequences, as predict prints them."""
    outputs, _ = modelmod.predict(model, _samples(x), dtype)
    return outputs


def classify(model, x, dtype=None):
    """The predicted classes of samples x: indices (N,) or (N, T); class names when the model has classes.txt."""
    loaded = modelmod.load(model, dtype)
    _, predicted = modelmod.predict_loaded(loaded, _samples(x))
    if loaded.classes is None:
        return predicted
    return np.array(loaded.classes, dtype=object)[predicted]


def node_values(model, x, *nodes, dtype=None):
    """The values of the named nodes for samples x, as predict --node: one node's array as it is shaped
    ((N, K), images (N, C, H, W), sequences (N, T, …)), several flattened per sample and side by side."""
    if not nodes:
        raise UsageError("name at least one node (kerash summary lists them)")
    loaded = modelmod.load(model, dtype)
    return next(modelmod.node_blocks(loaded, [_samples(x)], list(nodes)))


def evaluate(model, x, y, dtype=None):
    """{'loss', 'accuracy', 'samples', 'correct', 'confusion', 'classes', 'regression'} as evaluate prints them;
    'regression' holds mse, rmse, mae and r2 for targets that are values (else None)."""
    return modelmod.evaluate(model, _samples(x), _labels(y), dtype)


def backprop(model, x, y, dtype=None, seed=None, epoch=None):
    """({'layer_NN/W': gradient sum, …}, {'loss_sum', 'samples', 'correct'}) of the per-sample losses over
    (x, y): what backprop writes to its folder (sums: divide by samples for the mean's gradient)."""
    return gradient_sums(model, _samples(x), _labels(y), dtype, seed=seed, epoch=epoch)
