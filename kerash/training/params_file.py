"""DyNet's parameters file: MODEL/params gives train's defaults, one 'option value' per line.

    # MODEL/params
    epochs 100
    lr 0.05
    optimizer adam
    data ../digits/data.npy      # paths are relative to the model directory

Keys are train's long options without the dashes (batch-size or batch_size),
as config.SETTINGS says; the command line wins over the file.
"""

import os

from ..errors import UsageError, close_matches
from .config import PATH, SETTINGS

PARAMS_FILE = "params"

KEYS = {s.key: s.kind for s in SETTINGS if s.params}  # key: int, float, str, bool or PATH
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def read_params(model_dir):
    """{python_name: value} from MODEL/params, or {} when there is no such file."""
    from ..files.tensorio import read_bytes

    path = os.path.join(model_dir, PARAMS_FILE)
    if not os.path.isfile(path):
        return {}
    data = read_bytes(path, limit=1 << 20)
    try:
        lines = data.decode("utf-8-sig").splitlines()  # an editor's byte-order mark is no part of the first key
    except UnicodeDecodeError as e:
        lineno = data[: e.start].count(b"\n") + 1
        raise UsageError(f"{path}:{lineno}: not UTF-8 text") from None
    found = {}
    for lineno, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, value = line.partition(" ")
        key, value = key.strip().replace("_", "-"), value.strip()
        if key not in KEYS:
            raise UsageError(f"{path}:{lineno}: unknown option {key!r}{close_matches(key, KEYS)}")
        if not value:
            raise UsageError(f"{path}:{lineno}: option {key} needs a value")
        kind = KEYS[key]
        try:
            if kind is bool:
                if value.lower() not in _TRUE | _FALSE:
                    raise ValueError
                parsed = value.lower() in _TRUE
            elif kind == PATH:
                parsed = value if value == "-" else os.path.join(model_dir, value)
            else:
                # int() and float() also take '1_0' and other scripts' digits: a file should say what it means
                if kind in (int, float) and (not value.isascii() or "_" in value):
                    raise ValueError
                parsed = kind(value)
                if kind is int and parsed < 0:
                    raise ValueError
        except ValueError:
            expected = {int: "a whole number ≥ 0", float: "a number", bool: "true or false", str: "a word"}[kind]
            raise UsageError(f"{path}:{lineno}: {key} must be {expected}, not {value!r}") from None
        found[key.replace("-", "_")] = parsed
    return found
