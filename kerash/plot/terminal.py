"""Training curves in a terminal, drawn with Unicode braille characters (2×4 dots a character).

Needs nothing but the standard library: `kerash plot curves MODEL` works
before matplotlib is installed.  Training is a solid line and validation a
dashed one; with several models each has a colour and its number written at
the end of its curves, so the picture reads without colour too.
"""

import math

import numpy as np

from . import tables

# The bit of each dot of a braille character, by dot column and row.
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
_COLORS = (34, 31, 32, 35, 33, 36)  # ANSI blue, red, green, magenta, yellow, cyan
_RULES = {"resume": "┊", "restore": "│"}


class _Canvas:
    def __init__(self, cols, rows):
        self.cols, self.rows = cols, rows
        self.bits = [[0] * cols for _ in range(rows)]
        self.owner = [[None] * cols for _ in range(rows)]  # which model drew a character last
        self.chars = {}  # (row, col) → a character written over the dots

    def dot(self, x, y, owner):
        row, col = y // 4, x // 2
        self.bits[row][col] |= _DOTS[x % 2][y % 4]
        self.owner[row][col] = owner

    def line(self, points, owner, dashed):
        """Dots along the polyline `points` (dot coordinates); every other pair of dots left out when dashed."""
        step = 0
        for (x0, y0), (x1, y1) in zip(points, points[1:]) if len(points) > 1 else [(points[0], points[0])]:
            n = max(abs(x1 - x0), abs(y1 - y0), 1)
            for s in range(n):
                if not dashed or step % 4 < 2:
                    self.dot(round(x0 + (x1 - x0) * s / n), round(y0 + (y1 - y0) * s / n), owner)
                step += 1
        self.dot(*points[-1], owner)

    def rule(self, col, char):
        for row in range(self.rows):
            if not self.bits[row][col]:
                self.chars.setdefault((row, col), char)

    def lines(self, color):
        out = []
        for row in range(self.rows):
            text = []
            for col in range(self.cols):
                char = self.chars.get((row, col)) or chr(0x2800 + self.bits[row][col])
                owner = self.owner[row][col]
                if color and owner is not None:
                    char = f"\x1b[{_COLORS[owner % len(_COLORS)]}m{char}\x1b[0m"
                text.append(char)
            out.append("".join(text))
        return out


def _label(v):
    return f"{v:.3g}"


def _panel(traces, columns, title, cols, rows, color, scale=1.0):
    """The lines of one panel: a title, the canvas with a y axis, an x axis with the epoch range."""
    first = min(float(t.epoch.min()) for t in traces)
    last = max(float(t.epoch.max()) for t in traces)
    values = np.concatenate([t.column(c)[i] * scale for t in traces for c in columns for i, kept in t.pieces if kept])
    values = values[np.isfinite(values)]
    log = values.size > 0 and values.min() > 0 and values.max() / values.min() > 20
    shown = np.log10(values) if log else values
    low, high = (float(shown.min()), float(shown.max())) if shown.size else (0.0, 1.0)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    canvas = _Canvas(cols, rows)

    def to_x(epoch):
        return round((epoch - first) / max(last - first, 1e-12) * (2 * cols - 1))

    def to_y(v):
        v = math.log10(v) if log else v
        return round((high - v) / (high - low) * (4 * rows - 1))

    for k, t in enumerate(traces):
        for column, dashed in zip(columns, (False, True)):
            y = t.column(column) * scale
            end = None
            for indices, kept in t.pieces:
                points = [(to_x(t.epoch[i]), to_y(y[i])) for i in indices if kept and np.isfinite(y[i])]
                if points:
                    canvas.line(points, k, dashed)
                    end = points[-1]
            if end and len(traces) > 1:
                canvas.chars[(end[1] // 4, end[0] // 2)] = str(k + 1)[-1]
        for m in t.markers:
            canvas.rule(min(cols - 1, max(0, to_x(m.epoch) // 2)), _RULES[m.kind])
    ticks = {0: 10**high if log else high, rows // 2: 10 ** ((high + low) / 2) if log else (high + low) / 2, rows - 1: 10**low if log else low}
    width = max(len(_label(v)) for v in ticks.values())
    lines = [f"{title}{' (log scale)' if log else ''}"]
    for row, text in enumerate(canvas.lines(color)):
        lines.append(f"{_label(ticks[row]).rjust(width)} ┤{text}" if row in ticks else f"{' ' * width} │{text}")
    lines.append(f"{' ' * width} └{'─' * cols}")
    left, right = f"{first:g}", f"{last:g} epoch"
    lines.append(f"{' ' * (width + 2)}{left}{right.rjust(cols - len(left))}")
    return lines


def curves(models, cols=80, rows=10, color=False):
    """The training curves of `models` as text lines for a terminal `cols` characters wide."""
    traces = [tables.read_trace(p) for p in models]
    losses = {t.loss_name for t in traces}
    loss = f"loss ({losses.pop()})" if len(losses) == 1 and "loss" not in losses else "loss"
    plot_cols = max(20, cols - 12)
    lines = _panel(traces, ("loss", "val_loss"), f"{loss} per epoch", plot_cols, rows, color)
    if any(t.has("accuracy") or t.has("val_accuracy") for t in traces):
        lines += [""] + _panel(traces, ("accuracy", "val_accuracy"), "accuracy (%) per epoch", plot_cols, rows, color, 100.0)
    key = ["⠒⠒⠒ training", "⠒⠀⠒ validation"]
    kinds = {m.kind for t in traces for m in t.markers}
    key += [f"{_RULES[k]} {k}" for k in ("resume", "restore") if k in kinds]
    lines += ["", "   ".join(key)]
    if len(traces) > 1:
        for k, t in enumerate(traces):
            name = f"{str(k + 1)[-1]} {t.name}"
            lines.append(f"\x1b[{_COLORS[k % len(_COLORS)]}m{name}\x1b[0m" if color else name)
    return lines
