"""One table, samples and labels side by side, as a spreadsheet exports it: columns chosen by name or number.

`--label-column NAME|N` takes the labels from a column of the data file —
numbers, or words (class names) — and `--columns` / `--drop` choose the
feature columns; names come from the header row, numbers count from 1, as
cut(1) and awk do.  The file is split with the text reader's own dialects
(white space, commas, semicolons with decimal commas, quotes), a line at a
time: a spreadsheet's size, not a matrix of millions of rows.  A missing
cell (empty, NA, N/A, ?, null, -) is read as nan, which train --impute fills.

A column of words (colours, towns) is a column of categories: a vocabulary
(its sorted distinct values, fitted once on the training data by model-init
--data) turns it into one 0/1 column per category — one-hot, scikit-learn's
OneHotEncoder — in the column's place.  A value the vocabulary does not know,
or a missing one, is all zeros, with a warning.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import DataError, UsageError, printable
from . import tensorio, textformat
from .labels import word_labels


@dataclass
class Table:
    rows: list  # (line number, fields as bytes)
    names: Optional[list]  # the header row's names, or None
    dialect: object
    where: str
    keep: list  # 0-based feature columns
    target: Optional[int]  # the labels' column

    def key(self, k):
        """How a vocabulary names column k: its header name, or its number from 1."""
        return self.names[k] if self.names else str(k + 1)


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


def read_table(path, label=None, columns=None, drop=None):
    """The rows of a table file, with the label and feature columns chosen (see read_columns)."""
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
    return Table(rows, names, dialect, where, keep, target)


def _missing(field):
    field = field.strip()
    return not field or textformat.MISSING.fullmatch(field) is not None


def _cell(field):
    return printable(field.strip().decode("utf-8", "replace"))


def fit_vocabulary(table, categorical=None):
    """{column key: sorted distinct values} of the feature columns that hold words, and of those named in
    `categorical` (comma-separated names or numbers: numeric codes that are categories)."""
    declared = set(_pick(categorical, table.names, len(table.rows[0][1]), "--categorical")) if categorical else set()
    if table.target in declared:
        raise UsageError(f"--categorical {table.key(table.target)!r} is the label column")
    unknown = declared - set(table.keep)
    if unknown:
        raise UsageError(f"--categorical {table.key(min(unknown))!r} is not a feature column (see --columns, --drop)")
    vocabulary = {}
    for k in table.keep:
        cells = [fields[k] for _, fields in table.rows if not _missing(fields[k])]
        numbers = [textformat.number(f, table.dialect) for f in cells]
        if k not in declared and all(v is not None for v in numbers):
            continue
        if all(v is not None for v in numbers):  # numeric codes: one per value (1 and 1.0 alike), in numeric order
            first = {}
            for value, cell in zip(numbers, cells):
                first.setdefault(value, _cell(cell))
            values = [first[value] for value in sorted(first)]
        else:
            values = sorted({_cell(f) for f in cells})
        if not values:
            raise DataError(f"{table.where}: column {table.key(k)!r} has no value to make categories of")
        vocabulary[table.key(k)] = values
    return vocabulary


def feature_names(table, vocabulary=None):
    vocabulary = vocabulary or {}
    names = []
    for k in table.keep:
        key = table.key(k)
        names += [f"{key}={v}" for v in vocabulary[key]] if key in vocabulary else [key]
    return names


def features(table, vocabulary=None, dtype=None, warn=None):
    """Samples (N, F) float of the table's feature columns, each category column one-hot by `vocabulary`."""
    vocabulary = vocabulary or {}
    extra = set(vocabulary) - {table.key(k) for k in table.keep}
    if extra:
        raise DataError(f"{table.where}: the model's category column {sorted(extra)[0]!r} is not among the feature "
                        "columns (give the columns it was made with)")
    widths = [len(vocabulary[table.key(k)]) if table.key(k) in vocabulary else 1 for k in table.keep]
    x = np.zeros((len(table.rows), sum(widths)), dtype=np.float64)
    start = 0
    for k, width in zip(table.keep, widths):
        key = table.key(k)
        if key in vocabulary:
            _one_hot(table, k, vocabulary[key], x[:, start:start + width], warn)
        else:
            _numbers(table, k, x[:, start])
        start += width
    return x.astype(dtype) if dtype is not None else x


def _numbers(table, k, out):
    for r, (lineno, fields) in enumerate(table.rows):
        value = textformat.number(fields[k], table.dialect)
        if value is None and _missing(fields[k]):
            value = float("nan")  # missing: train --impute fills it
        if value is None:
            why = ("a column of categories is encoded one-hot by model-init MODEL_FILE --data FILE (the same "
                   "--label-column, --columns, --drop); a column of words can be the labels: --label-column; "
                   "or leave it out: --drop")
            raise DataError(f"{table.where}:{lineno}: not a number in column {table.key(k)!r}: "
                            f"{textformat.excerpt(fields[k])} ({why})")
        out[r] = value


def _one_hot(table, k, values, out, warn):
    codes = [textformat.number(v.encode(), table.dialect) for v in values]
    numeric = all(c is not None for c in codes)  # numeric codes match by value: 1.0 is the category 1
    index = {c: i for i, c in enumerate(codes)} if numeric else {v: i for i, v in enumerate(values)}
    unseen, missing = {}, 0
    for r, (_, fields) in enumerate(table.rows):
        if _missing(fields[k]):
            missing += 1
            continue
        cell = _cell(fields[k])
        key = textformat.number(fields[k], table.dialect) if numeric else cell
        if key in index:
            out[r, index[key]] = 1.0
        else:
            unseen[cell] = unseen.get(cell, 0) + 1
    if unseen and warn:
        shown = ", ".join(repr(v) for v in list(unseen)[:3]) + (", …" if len(unseen) > 3 else "")
        warn(f"{table.where}: {sum(unseen.values())} rows with a value of column {table.key(k)!r} the model has "
             f"no category for ({shown}): all zeros")
    if missing and warn:
        warn(f"{table.where}: {missing} rows without a value in the category column {table.key(k)!r}: all zeros")


def labels_of(table):
    """The label column's values: numbers, or WordLabels when any is a word."""
    cells = [fields[table.target] for _, fields in table.rows]
    values = [textformat.number(cell, table.dialect) for cell in cells]
    if all(v is not None for v in values):
        return np.array(values, dtype=np.float64)
    return word_labels([printable(cell.decode("utf-8", "replace")) for cell in cells],
                       [lineno for lineno, _ in table.rows], table.where)


def in_order(table, order, where_from):
    """The table with its feature columns in the order the model was made with (`order`: header names)."""
    if not order or table.names is None:
        return table
    found = {table.key(k): k for k in table.keep}
    if set(found) != set(order):
        missing, extra = sorted(set(order) - set(found)), sorted(set(found) - set(order))
        said = "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "",
                                           f"not in it {', '.join(extra)}" if extra else "") if part)
        raise DataError(f"{table.where}: the feature columns differ from those {where_from} was made with "
                        f"({', '.join(order)}): {said}")
    table.keep = [found[name] for name in order]
    return table


def read_columns(path, label=None, columns=None, drop=None, dtype=None, vocabulary=None, warn=None, order=None,
                 where_from="the model"):
    """(samples (N, F) float, labels or None, feature names or None) of a table file.

    `label`: the labels' column (name or number from 1); its cells become
    numbers, or WordLabels when any is a word.  `columns` / `drop`: the
    feature columns to keep, or to leave out (comma-separated names or numbers).
    `vocabulary`: the model's categories ({column: values}), encoded one-hot.
    `order`: the feature columns' names as the model was made with them: a
    table with its columns in another order is read in that one.
    """
    table = in_order(read_table(path, label, columns, drop), order, where_from)  # columns matched by name
    x = features(table, vocabulary, dtype, warn)
    labels = labels_of(table) if table.target is not None else None
    return x, labels, (feature_names(table, vocabulary) if table.names else None)


# MODEL/categories.tsv: a line per category column, its key then its values, tab-separated
_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))


def _escape(text):
    for raw, escaped in _ESCAPES:
        text = text.replace(raw, escaped)
    return text


def _unescape(text):
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append({"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def vocabulary_text(vocabulary):
    return "".join("\t".join(_escape(v) for v in [key, *values]) + "\n" for key, values in vocabulary.items())


def parse_vocabulary(text, where, error=DataError):
    vocabulary = {}
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        key, *values = [_unescape(v) for v in line.split("\t")]
        if not values or len(set(values)) != len(values) or key in vocabulary:
            raise error(f"{where}:{n}: a column's name then its distinct categories, tab-separated, once per column")
        vocabulary[key] = values
    return vocabulary
