"""Class names: MODEL/classes.txt, and labels files that name classes instead of numbering them.

`train` on a fresh model maps the names of its labels to classes in sorted
order and stores them, one per line in class index order, in the model's
version folder (MODEL/classes.txt links to it).  Every tool that reads labels
maps names through that file; numeric labels keep working as they are.
"""

import os
import unicodedata

import numpy as np

from ..errors import DataError, ModelError, close_matches
from ..files import fs
from ..files.fs import TEXT_LIMIT
from ..files.labels import WordLabels
from .description import escaped

CLASSES_FILE = "classes.txt"


def class_count(spec):
    """How many classes a model's output tells apart: its width, or 2 for a single output."""
    return max(spec.output_width, 2)


def labels_are_names(model_path):
    """Whether labels files given with this model must be read as class names.

    So when some of its class names look like numbers (`1`, `2`, `x`): a file
    holding only `1` and `2` then means those names, not class indices.  With
    word names only, numeric labels stay class indices.
    """
    path = os.path.join(model_path, CLASSES_FILE)
    try:
        with open(path, "rb") as f:
            text = f.read(TEXT_LIMIT)
    except OSError:
        return False  # no class names (or unreadable: the model's own check says why later)
    for line in text.split(b"\n"):
        try:
            float(line)
            return True
        except ValueError:
            pass
    return False


def read_model_text(path, where):
    """The UTF-8 text of a small file that kerash wrote into a model directory, or None when it is absent."""
    if not os.path.lexists(path):
        return None
    f, size = fs.open_unbuffered(path, ModelError, where)
    with f:
        if size > TEXT_LIMIT:
            raise ModelError(f"{where} is too large ({size} bytes) to be a file written by kerash")
        data = fs.read_exactly(f, size, ModelError, where)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{where} is not UTF-8 text") from None


def read_classes(md, version):
    """The class names of the model directory `md` in its version folder `version`, or None."""
    where = os.path.join(md.path, CLASSES_FILE)
    text = read_model_text(os.path.join(version, CLASSES_FILE), where)
    if text is None:
        return None
    names = text.split("\n")
    if names and names[-1] == "":
        names.pop()
    if len(set(names)) != len(names) or not all(names):
        raise ModelError(f"{where} must hold distinct, non-empty names, one per line")
    check_printable(names, where, ModelError)
    if len(names) != class_count(md.spec):
        raise ModelError(f"{where} names {len(names)} classes but the model tells {class_count(md.spec)} apart")
    return names


def check_printable(names, where, error=DataError, lines=None):
    """Class names are printed as they are (predict --classes, reports): refuse control and direction characters.

    Category Cc (ESC, NUL, …) and Cf (U+202E, which reverses what a terminal shows after it).
    """
    for k, name in enumerate(names):
        line = lines[k] if lines is not None else k + 1
        bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf")), None)
        if bad is not None:
            raise error(f"{where}:{line}: class name '{escaped(name)}' holds the control character U+{ord(bad):04X}; "
                        "class names must be printable")


def class_names(model_path, count):
    """The names of a model's `count` classes (its classes.txt, checked), else '0' … 'count−1'."""
    from .directory import ModelDir

    md = ModelDir(model_path)
    with md.pinned() as version:
        names = read_classes(md, version)
    if names is None:
        return [str(k) for k in range(count)]
    if len(names) != count:
        raise DataError(f"{os.path.join(md.path, CLASSES_FILE)} names {len(names)} classes but the model has {count}")
    return names


def classes_text(names):
    return "".join(name + "\n" for name in names)


def _present(labels, samples):
    codes, _ = labels.codes_for(samples)
    return {labels.names[c] for c in np.unique(codes)}


def new_classes(spec, found):
    """Sorted class names for a fresh model from the word labels `found` [(WordLabels, samples)].

    The model must tell exactly that many classes apart.
    """
    names = sorted(set().union(*(_present(labels, samples) for labels, samples in found)))
    for labels, _ in found:
        check_printable(labels.names, labels.where, lines=labels.lines)
    check_class_count(spec, names, " and ".join(labels.where for labels, _ in found))
    return names


def check_class_count(spec, names, where):
    """The model must tell exactly len(names) classes apart."""
    if len(names) != class_count(spec):
        shown = ", ".join(escaped(n) for n in names[:12]) + (", …" if len(names) > 12 else "")
        outputs = "one output (two classes)" if spec.output_width == 1 else f"{spec.output_width} outputs"
        raise DataError(f"the labels name {len(names)} classes ({shown}) but the model has {outputs}; "
                        f"give the last layer {len(names) if len(names) > 2 else '1 or 2'} units ({where})")


def class_targets(y, classes, samples, model_path):
    """Labels as numbers: word labels become class indices through `classes`; numeric labels are returned as they are.

    Word labels for a model without class names, or names that are not among
    them, are errors naming the word and its line.
    """
    if not isinstance(y, WordLabels):
        return y
    codes, skipped = y.codes_for(samples)
    if classes is None:
        first = y.names[int(codes[0])] if len(codes) else y.names[0] if y.names else ""
        line = y.lines[y.names.index(first)] if first else 1
        raise DataError(f"{y.where}:{line}: '{escaped(first)}' is a class name, but {model_path} has no {CLASSES_FILE}; "
                        f"on a fresh model, train {model_path} -x X -y {y.where} --epochs 0 maps names to classes "
                        "without a step; else give class indices 0, 1, …")
    index = {name: k for k, name in enumerate(classes)}
    lookup = np.array([index.get(name, -1) for name in y.names], dtype=np.int64)
    mapped = lookup[codes] if len(codes) else np.empty(0, np.int64)
    if np.any(mapped < 0):
        code = int(codes[np.argmax(mapped < 0)])
        name = y.names[code]
        listed = ", ".join(escaped(n) for n in classes[:12]) + (", …" if len(classes) > 12 else "")
        raise DataError(f"{y.where}:{y.lines[code]}: '{escaped(name)}' is not a class of {model_path} "
                        f"({os.path.join(model_path, CLASSES_FILE)}: {listed}){close_matches(name, classes)}")
    return mapped.astype(np.float64)
