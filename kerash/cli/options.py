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
