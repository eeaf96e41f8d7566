"""What every function registry shares: parameters read from text, lookup by name."""

import math

import numpy as np

from ..errors import UsageError, close_matches


def resolve_params(kind, name, declared, given):
    """Turn ['0.2', 'beta=2'] into a tuple of floats for the declared (name, default) pairs."""
    values = {}
    positional = 0
    for item in given or ():
        item = str(item).strip()
        if "=" in item:
            key, _, raw = item.partition("=")
            key = key.strip()
            if key not in dict(declared):
                names = ", ".join(p for p, _ in declared) or "none"
                raise UsageError(f"{kind} {name} has no parameter {key!r} (parameters: {names})")
        else:
            if positional >= len(declared):
                raise UsageError(
                    f"{kind} {name} takes {len(declared)} parameter(s), got {len(given)}"
                )
            key, raw = declared[positional][0], item
            positional += 1
        try:
            # float() also takes other scripts' digits and '1_000': written back, they would read differently
            if not raw.isascii() or "_" in raw:
                raise ValueError
            values[key] = float(raw)
        except ValueError:
            raise UsageError(f"parameter {key} of {kind} {name} must be a number, not {raw!r}") from None
    missing = [p for p, d in declared if d is None and p not in values]
    if missing:
        raise UsageError(f"{kind} {name} needs parameter(s) {', '.join(missing)}")
    return tuple(values.get(p, d) for p, d in declared)


def checked_params(kind, name, declared, given, check=None):
    """resolve_params, then refuse non-finite values and those `check` (values → problem or None) finds impossible."""
    values = resolve_params(kind, name, declared, given)
    for (key, _), value in zip(declared, values):
        if not math.isfinite(value):
            raise UsageError(f"parameter {key} of {kind} {name} must be finite, not {format_value(value)}")
    problem = check(*values) if check else None
    if problem:
        raise UsageError(f"{kind} {name}: {problem}")
    return values


def lookup(table, kind, name):
    try:
        return table[name]
    except KeyError:
        raise UsageError(f"unknown {kind} {name!r}{close_matches(name, table)}") from None


def like(x, value):
    """An array shaped and typed like x (python floats would promote float32 to float64)."""
    return np.asarray(value, dtype=x.dtype)


def format_value(v):
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))
