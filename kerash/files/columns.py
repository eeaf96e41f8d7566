"""One table, samples and labels side by side, as a spreadsheet exports it: columns chosen by name or number.

`--label-column NAME|N` takes the labels from a column of the data file —
numbers, or words (class names) — and `--columns` / `--drop` choose the
feature columns; names come from the header row, numbers count from 1, as
cut(1) and awk do.  The file is split with the text reader's own dialects
(white space, commas, semicolons with decimal commas, quotes), a line at a
time: a spreadsheet's size, not a matrix of millions of rows.  A missing
cell (empty, NA, N/A, ?, null, -) is read as nan, which train --impute fills.
"""

import numpy as np

from ..errors import DataError, UsageError, printable
from . import tensorio, textformat
from .labels import word_labels


def _pick(spec, names, width, option):
    """0-based column indices of 'a,b,3' (names of the header row, or numbers from 1)."""
    found = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        if names is not None and item in names:
            found.append(names.index(item))
        elif item.isascii() and item.isdigit() and 1 <= int(item) <= width:
            found.append(int(item) - 1)
        else:
            known = f"the columns: {', '.join(names)}" if names else f"columns 1..{width} (no header row of names)"
            raise UsageError(f"{option} {item!r}: no such column; {known}")
    if not found:
        raise UsageError(f"{option} names no column")
    return found


def read_columns(path, label=None, columns=None, drop=None, dtype=None):
    """(samples (N, F) float, labels or None, feature names or None) of a table file.

    `label`: the labels' column (name or number from 1); its cells become
    numbers, or WordLabels when any is a word.  `columns` / `drop`: the
    feature columns to keep, or to leave out (comma-separated names or numbers).
    """
    where = tensorio.source_name(path)
    data = tensorio.read_bytes(path, limit=1 << 30)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    rows, names, dialect, first_line = [], None, None, None
    for lineno, raw in enumerate(data.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        if textformat.BINARY.search(raw):
            raise DataError(f"{where}:{lineno}: binary data, not a table")
        if dialect is None:
            dialect = textformat.dialect_of(line)
        fields = textformat.split_fields(line, dialect)
        if first_line is None:
            first_line = lineno
            if all(textformat.number(f, dialect) is None for f in fields):
                try:
                    names = [printable(f.decode("utf-8")) for f in fields]
                except UnicodeDecodeError:
                    raise DataError(f"{where}:{lineno}: a header row that is not UTF-8") from None
                continue
        if rows and len(fields) != len(rows[0][1]):
            raise DataError(f"{where}:{lineno}: {len(fields)} values, but the first row has {len(rows[0][1])}")
        rows.append((lineno, fields))
    if not rows:
        raise DataError(f"no rows in {where}")
    width = len(rows[0][1])
    if names is not None and len(names) != width:
        raise DataError(f"{where}:{first_line}: {len(names)} names in the header row, but the rows have {width} values")
    target = _pick(label, names, width, "--label-column")[0] if label is not None else None
    keep = _pick(columns, names, width, "--columns") if columns else list(range(width))
    if drop:
        dropped = set(_pick(drop, names, width, "--drop"))
        keep = [k for k in keep if k not in dropped]
    keep = [k for k in keep if k != target]
    if not keep:
        raise UsageError("no feature column is left (see --columns, --drop, --label-column)")
    x = np.empty((len(rows), len(keep)), dtype=np.float64)
    for r, (lineno, fields) in enumerate(rows):
        for c, k in enumerate(keep):
            value = textformat.number(fields[k], dialect)
            if value is None and (not fields[k].strip() or textformat.MISSING.fullmatch(fields[k].strip())):
                value = float("nan")  # missing: train --impute fills it
            if value is None:
                column = names[k] if names else str(k + 1)
                why = "a column of words can be the labels: --label-column; or leave it out: --drop"
                raise DataError(f"{where}:{lineno}: not a number in column {column!r}: "
                                f"{textformat.excerpt(fields[k])} ({why})")
            x[r, c] = value
    labels = None
    if target is not None:
        cells = [fields[target] for _, fields in rows]
        values = [textformat.number(cell, dialect) for cell in cells]
        if all(v is not None for v in values):
            labels = np.array(values, dtype=np.float64)
        else:
            labels = word_labels([printable(cell.decode("utf-8", "replace")) for cell in cells],
                                 [lineno for lineno, _ in rows], where)
    feature_names = [names[k] for k in keep] if names else None
    return (x.astype(dtype) if dtype is not None else x), labels, feature_names
