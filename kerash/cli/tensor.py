"""Tensor tools: slices, flattening and reshaping, convolution and max-pooling."""

import os
import sys
from typing import Annotated, Optional

import typer

from .options import Format, Input, Output
from .runner import tool


def _io():
    from ..files import tensorio

    return tensorio


def _coord(help_text):
    return Annotated[int, typer.Argument(help=help_text, show_default=False)]


_X = _coord("Column of the corner (width axis), in the padded input.")
_Y = _coord("Row of the corner (height axis), in the padded input.")
_Z = _coord("Channel of the corner (depth axis).")
_W = _coord("Width of the slice.")
_H = _coord("Height of the slice.")
_D = _coord("Depth of the slice (channels).")
Pad = Annotated[int, typer.Option("--pad", help="Zero padding around the height and width of the input.")]


@tool("tensor-slice")
def tslice(
    x: _X,
    y: _Y,
    z: _Z,
    w: _W,
    h: _H,
    d: _D,
    a: Input = "-",
    pad: Pad = 0,
    output: Output = None,
    fmt: Format = None,
):
    """Cut the W×H×D sub-tensor whose corner is at X,Y,Z; values outside the input are 0.

    The input is a matrix (H,W), a sample (C,H,W) or a batch (N,C,H,W); a
    batch gives one slice per sample.  With --pad P the coordinates refer to
    the input surrounded by P zeros on each side, as convolution sees it.

    \b
    Example:
      printf '1 2 3\\n4 5 6\\n7 8 9\\n' | tensor-slice 1 1 0 2 2 1    # 5 6 / 8 9
    """
    from .. import ops

    io = _io()
    io.write_tensor(ops.tensor_slice(io.read_tensor(a), x, y, z, w, h, d, pad), output, fmt)


@tool("tensor-flatten")
def flatten(a: Input = "-", output: Output = None, fmt: Format = None):
    """Flatten a tensor to one row, or a batch (N,C,H,W) to one row per sample.

    \b
    Example:
      printf '1 2\\n3 4\\n' | tensor-flatten      # 1 2 3 4
    """
    from .. import ops

    io = _io()
    io.write_tensor(ops.flatten(io.read_tensor(a)), output, fmt)


@tool("tensor-reshape")
def reshape(
    dims: Annotated[str, typer.Argument(metavar="DIMS", help="The new shape, e.g. '-1 1 8 8' (one argument; -1: what the other dimensions leave).", show_default=False)],
    a: Input = "-",
    output: Output = None,
    fmt: Format = None,
):
    """Give a tensor another shape with the same values in the same order: rows of flattened images
    back into a batch (N,C,H,W) for conv and maxpool, or anything else.

    A DIMS that starts with -1 follows `--`, as any operand that starts
    with a dash.

    \b
    Example:
      printf '1 2 3 4\\n5 6 7 8\\n' | tensor-reshape '2 1 2 2'      # two 1×2×2 samples
      printf '1 2 3 4\\n5 6 7 8\\n' | tensor-reshape -- '-1 4'      # one row per sample
    """
    from .. import ops
    from ..errors import UsageError

    try:
        shape = [int(d) for d in dims.replace(",", " ").split()]
    except ValueError:
        raise UsageError(f"DIMS are whole numbers separated by spaces, such as '-1 1 8 8', not {dims!r}") from None
    if not shape:
        raise UsageError("give the new shape, such as '-1 1 8 8'")
    io = _io()
    io.write_tensor(ops.reshape(io.read_tensor(a), shape), output, fmt)


Stride = Annotated[int, typer.Option("--stride", help="Step between windows.")]


@tool("conv")
def conv(
    input: Annotated[str, typer.Argument(metavar="INPUT", help="Sample (C,H,W) or batch (N,C,H,W); '-' is standard input.")],
    kernels: Annotated[str, typer.Argument(metavar="KERNELS", help="Kernels (F,C,KH,KW); a single (C,KH,KW) or (KH,KW) kernel also works.")],
    stride: Stride = 1,
    pad: Pad = 0,
    bias: Annotated[Optional[str], typer.Option("--bias", metavar="B", help="File of F biases, one per filter.")] = None,
    output: Output = None,
    fmt: Format = None,
):
    """Convolve a sample (C,H,W) or batch (N,C,H,W) with kernels (F,C,KH,KW), as PyTorch's conv2d.

    Cross-correlation with symmetric zero padding; the output is (F,OH,OW)
    or (N,F,OH,OW) with OH = (H + 2·pad − KH) / stride + 1.

    \b
    Example:
      printf '1 2 3\\n4 5 6\\n7 8 9\\n' > img.txt
      printf '1 0\\n0 -1\\n' > k.txt
      conv img.txt k.txt                  # -4 -4 / -4 -4
    """
    from ..errors import UsageError
    from ..layers.kernels import conv2d

    if input in (None, "-") and kernels in (None, "-"):
        raise UsageError("only one operand can be standard input")
    io = _io()
    x, k = io.read_tensor(input), io.read_tensor(kernels)
    b = io.read_tensor(bias) if bias is not None else None
    io.write_tensor(conv2d(x, k, stride, pad, b), output, fmt)


@tool("maxpool")
def maxpool(
    a: Input = "-",
    size: Annotated[int, typer.Option("--size", "-k", help="Window size K (a K×K window).")] = 2,
    stride: Annotated[Optional[int], typer.Option("--stride", help="Step between windows (default: the size).")] = None,
    pad: Annotated[int, typer.Option("--pad", help="Padding with −∞ on each side (at most K/2), as PyTorch.")] = 0,
    output: Output = None,
    fmt: Format = None,
):
    """Max-pool a sample (C,H,W) or batch (N,C,H,W) with K×K windows, as PyTorch's max_pool2d.

    \b
    Example:
      printf '1 2 3 4\\n5 6 7 8\\n' | maxpool --size 2      # 6 8
    """
    from ..layers import kernels

    io = _io()
    io.write_tensor(kernels.maxpool(io.read_tensor(a), size, stride, pad), output, fmt)


@tool("tensor-rows")
def rows(
    indices: Annotated[str, typer.Argument(metavar="ROWS", help="0-based row numbers, separated by spaces or commas (one argument).", show_default=False)],
    a: Input = "-",
    output: Output = None,
    fmt: Format = None,
):
    """Pick rows (samples) of a tensor by number, in the order given: a batch out of a data set.

    \b
    Example:
      printf '10\\n11\\n12\\n13\\n' | tensor-rows "3 0 2"      # 13 10 12
      printf '1 2\\n3 4\\n5 6\\n' > data.txt
      tensor-rows "$(kerash batches --samples 3 --batch-size 2 --seed 1 | head -n 1)" data.txt
    """
    from .. import ops

    from ..errors import ShapeError

    io = _io()
    try:
        picked = ops.take_rows(io.read_tensor(a), ops.parse_indices(indices))
    except ShapeError as e:
        raise ShapeError(f"{e} ({io.source_name(a)})") from None
    io.write_tensor(picked, output, fmt)


@tool("tensor-stats")
def stats(
    a: Input = "-",
    row: Annotated[
        Optional[str],
        typer.Option("--row", metavar="STAT", help="Print only this statistic, as a 1×C tensor: count, nan, mean, std, min or max."),
    ] = None,
    output: Output = None,
    fmt: Format = None,
):
    """Print each column's count, NaN count, mean, std, min and max: one tab-separated line per column.

    A header line names the fields (column count nan mean std min max, then
    name when the file has a header row of column names).  Statistics leave
    NaNs out; std is the population standard deviation (÷N).  A batch
    (N,C,H,W) has one column per feature of a sample.  --row STAT prints one
    statistic as a tensor row, so that a z-score is a pipe (last lines).

    \b
    Example:
      printf 'height,weight\\n1.6,60\\n1.8,80\\n1.7,nan\\n' > people.csv
      tensor-stats people.csv
      tensor-stats --row mean people.csv > mean.txt; tensor-stats --row std people.csv | matrix-apply reciprocal > inv.txt
      matrix-sub people.csv mean.txt | matrix-hadamard - inv.txt      # z-scores
    """
    from .. import ops
    from ..errors import UsageError, close_matches

    io = _io()
    if row is not None and row not in ops.STATS:
        raise UsageError(f"unknown statistic {row!r}{close_matches(row, ops.STATS)}; choose {', '.join(ops.STATS)}")
    table = io.read_table(a)
    values = ops.column_stats(table.array)
    if row is not None:
        io.write_tensor(values[row].reshape(1, -1), output, fmt)
        return
    names = table.columns if table.columns and len(table.columns) == values["count"].size else None
    lines = ["\t".join(("column", *ops.STATS) + (("name",) if names else ()))]
    for k in range(values["count"].size):
        fields = [str(k), str(values["count"][k]), str(values["nan"][k])]
        fields += [repr(float(values[s][k])) for s in ops.STATS[2:]]
        lines.append("\t".join(fields + ([names[k]] if names else [])))
    io.write_text("\n".join(lines) + "\n", output)


@tool("tensor-show")
def show(
    a: Input = "-",
    full: Annotated[bool, typer.Option("--full", help="Print every value, not a summary of a large tensor.")] = False,
):
    """Show a tensor file for a person: its format, shape, dtype, column names and values.

    Large tensors are summarised as numpy prints them (the first and last
    rows and columns, with …); --full prints everything.

    \b
    Example:
      matrix-create 2 3 --init xavier --seed 1 -o W.npy
      tensor-show W.npy
    """
    import numpy as np

    from .. import ops

    io = _io()
    table = io.read_table(a)
    array = table.array
    kind = {"npy": f"npy {table.stored}", "kerash": "KeraSH text", "text": "text"}[table.format]
    if table.format == "npy" and table.stored != array.dtype:
        kind += f", read as {array.dtype}"
    elif table.format != "npy":
        kind += f", read as {array.dtype}"
    head = f"{io.source_name(a)}: {kind}, shape {ops.shape_str(array.shape)}"
    if table.columns:
        head += ", columns " + ", ".join(table.columns)
    width = 100
    try:
        width = max(40, os.get_terminal_size().columns)
    except OSError:
        pass
    threshold = sys.maxsize if full else 1000
    body = np.array2string(array, threshold=threshold, edgeitems=3, max_line_width=width, separator=" ")
    io.write_text(head + "\n" + body + "\n", None)
