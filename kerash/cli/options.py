"""Options shared by the tools, defined once."""

from typing import Annotated, List, Optional

import typer

Input = Annotated[
    str,
    typer.Argument(help="Tensor file (text or CSV, npy, KeraSH; also a FIFO or <(…)); '-' or omitted: standard input.", metavar="[A]"),
]
_OPERAND_HELP = "Tensor file (text or CSV, npy, KeraSH; also a FIFO or <(…)); '-' is standard input."
A = Annotated[str, typer.Argument(metavar="A", help=_OPERAND_HELP, show_default=False)]
B = Annotated[str, typer.Argument(metavar="B", help=_OPERAND_HELP, show_default=False)]
Output = Annotated[
    Optional[str],
    typer.Option(
        "--output", "-o", metavar="PATH", help="Write to PATH (atomically) instead of standard output."
    ),
]
Format = Annotated[
    Optional[str],
    typer.Option(
        "--format",
        metavar="text|npy|kerash",
        help="Output format. Default: npy when -o ends in .npy, else $KERASH_FORMAT, else text.",
    ),
]
Seed = Annotated[
    Optional[int], typer.Option("--seed", min=0, help="Random seed (≥ 0): the same seed gives bit-identical results.")
]
Params = Annotated[
    Optional[List[str]],
    typer.Option(
        "--param", "-p", metavar="P", help="A function parameter, in order (0.2) or by name (alpha=0.2); repeatable."
    ),
]
Dtype = Annotated[
    Optional[str],
    typer.Option("--dtype", metavar="float32|float64", help="Floating-point type of the computation."),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or diagnostics on standard error.")]


def settings_options(tool_name, after, **fill):
    """A decorator: the settings config.SETTINGS gives `tool_name` become options of the tool function.

    They come after its parameter `after`, in the declaration's order, and
    reach it as keyword arguments (**settings), None when not given.  Each
    {name} in a help text becomes fill[name].
    """
    import inspect

    from ..training.config import PATH, for_tool

    def decorate(fn):
        signature = inspect.signature(fn)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        at = [p.name for p in own].index(after) + 1
        made = []
        for s in for_tool(tool_name):
            text = s.help
            for name, value in fill.items():
                text = text.replace("{" + name + "}", value)
            option = "--" + s.key
            names = [f"{option}/--no-{s.key}" if s.negatable else option] + ([s.short] if s.short else [])
            info = typer.Option(*names, help=text, metavar=s.metavar, show_default=False)
            kind = str if s.kind == PATH else s.kind
            made.append(inspect.Parameter(s.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                          annotation=Annotated[Optional[kind], info]))
        fn.__signature__ = signature.replace(parameters=own[:at] + made + own[at:])
        return fn

    return decorate


# A spreadsheet's table: labels and features chosen among the columns of one file (files/columns.py)
LabelColumn = Annotated[Optional[str], typer.Option("--label-column", metavar="NAME|N", help="Take the labels from this column of the data (its header name, or its number from 1), then no --labels.", show_default=False)]
Workers = Annotated[Optional[int], typer.Option("--workers", "-w", metavar="K", help="Processes for a large input, taking its chunks of 1024 samples as they become free [default: this one, and one per idle core when the work pays]. The outputs do not depend on it (predict --node: one process).", show_default=False)]
Columns = Annotated[Optional[str], typer.Option("--columns", metavar="A,B,…", help="Use only these columns of the data as features (names or numbers from 1).", show_default=False)]
Drop = Annotated[Optional[str], typer.Option("--drop", metavar="A,B,…", help="Leave these columns of the data out (names or numbers from 1).", show_default=False)]
# Sequences of different lengths (files/sequences.py)
Lengths = Annotated[Optional[str], typer.Option("--lengths", metavar="FILE", help="Sequences of different lengths: one length per sequence, for data holding every sequence's steps one after another (text with blank lines between blocks of rows needs none).", show_default=False)]
