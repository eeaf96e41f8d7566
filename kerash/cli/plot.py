"""The plot tool."""

import os
import shutil
import sys
from typing import Annotated, List, Optional

import typer

from .options import Columns, Drop, LabelColumn
from .runner import tool


@tool("plot")
def plot(
    kind: Annotated[str, typer.Argument(metavar="KIND", help="curves, confusion, regression, boundary, activations, weights or evolution.", show_default=False)],
    sources: Annotated[
        List[str],
        typer.Argument(metavar="MODEL...", help="Model directories (curves: one or more); for evolution, a folder written by evolve -o (or its table).", show_default=False),
    ],
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="FILE", help="Picture to write: FILE.png or FILE.svg. Without it, curves draws in the terminal.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", "-x", metavar="X", help="Samples (confusion, regression, boundary, activations).")] = None,
    labels: Annotated[Optional[str], typer.Option("--labels", "-y", metavar="Y", help="Their classes: a column of indices, one-hot rows, or class names (MODEL/classes.txt); for regression, the true values.")] = None,
    validation_of: Annotated[Optional[str], typer.Option("--validation-of", metavar="MODEL", help="confusion, regression, boundary: only the rows of the data that train --validation-split held out of MODEL.", show_default=False)] = None,
    label_column: LabelColumn = None,
    columns: Columns = None,
    drop: Drop = None,
    node: Annotated[Optional[str], typer.Option("--node", metavar="NAME", help="activations: the node drawn (a layer folder such as layer_01, or an MDL node's name; kerash summary lists them).")] = None,
    grads: Annotated[Optional[str], typer.Option("--grads", metavar="GRADS", help="weights: also the histograms of this gradient folder (written by backprop).")] = None,
    width: Annotated[Optional[int], typer.Option("--width", metavar="PX", help="Width in pixels (default 800; weights: 280 a column of histograms).")] = None,
    height: Annotated[Optional[int], typer.Option("--height", metavar="PX", help="Height in pixels (default 600; weights: 200 a layer).")] = None,
    dpi: Annotated[int, typer.Option("--dpi", metavar="DPI", help="Pixels per inch: text is sized in points, so a higher dpi makes it larger.")] = 100,
):
    """Draw training curves, a confusion matrix, predicted against true values, decision regions, weight histograms or an evolution as a picture.

    \b
    KIND and its operands:
      curves MODEL...                 loss and accuracy per epoch (MODEL/trace.tsv), models overlaid;
                                      restores and resumes marked
      confusion MODEL -x X -y Y       heat-map of the confusion matrix, class names from MODEL/classes.txt
      regression MODEL -x X -y Y      targets that are values: predicted against true, one panel per
                                      output, the identity line, R², RMSE and MAE in the title
      boundary MODEL -x X -y Y        2-D inputs: the model's class over the plane, points by true class,
                                      misclassified ones crossed
      activations MODEL -x X --node NAME [-y Y]
                                      a node's values, a row per sample (grouped by class with -y), a
                                      column per unit: which units are alive, saturated or dead
      weights MODEL [--grads GRADS]   histograms of each layer's parameters (and gradients); with
                                      MODEL/stats.tsv, per-layer statistics over epochs
      evolution EVOLVE_DIR            best and mean validation loss and accuracy per generation

    PNG or SVG from the extension of -o; matplotlib draws them (pip install
    'kerash[plot]').  Without -o, and standard output a terminal, curves
    draws with Unicode characters in the terminal.

    \b
    Example:
      kerash dataset circle -o circle --samples 200
      printf '2 1 1\\ninput\\ndense 8 tanh\\ndense 2 softmax\\n' > c.model
      model-init c.model -o c --seed 1
      train c -x circle/data.npy -y circle/labels.txt --epochs 30 --lr 0.5 > /dev/null
      kerash plot curves c -o curves.png --width 640 --height 480
    """
    from .. import plot as plots
    from ..errors import UsageError

    plots.check_request(kind, sources, data, labels, grads, node, validation_of, label_column)
    if output is None:
        if kind != "curves":
            raise UsageError(f"{kind} needs -o FILE.png or -o FILE.svg (only curves draws in the terminal)")
        if not sys.stdout.isatty():
            raise UsageError("standard output is not a terminal: give -o FILE.png or -o FILE.svg")
        from ..plot import terminal

        size = shutil.get_terminal_size()
        color = "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
        lines = terminal.curves(sources, size.columns, max(6, min(14, (size.lines - 12) // 2)), color)
        sys.stdout.write("\n".join(lines) + "\n")
        return
    from ..plot import figures

    figures.output_format(output)
    default_width, default_height = figures.default_size(kind, sources, grads)
    width, height = width or default_width, height or default_height
    figures.check_size(width, height, dpi)
    figures.save(figures.draw(kind, sources, data, labels, grads, node, validation_of, (label_column, columns, drop)), output, width, height, dpi)
