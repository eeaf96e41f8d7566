"""Matrix tools: the BLAS level of kerash (matrix-mul, matrix-add, …)."""

from typing import Annotated, Optional

import typer

from .options import A, B, Format, Input, Output, Params, Seed
from .runner import tool


def _io():
    from ..files import tensorio

    return tensorio


def _check_one_stdin(a, b):
    if a in (None, "-") and b in (None, "-"):
        from ..errors import UsageError

        raise UsageError("only one operand can be standard input")


def _binary(op, a, b, output, fmt):
    from .. import ops

    io = _io()
    _check_one_stdin(a, b)
    x, y = io.read_tensor(a), io.read_tensor(b)
    result = ops.matmul(x, y) if op == "multiply matrices" else ops.elementwise(op, x, y)
    io.write_tensor(result, output, fmt)


@tool("matrix-mul")
def mul(a: A, b: B, output: Output = None, fmt: Format = None):
    """Multiply two matrices: A·B (rows of A times columns of B).

    \b
    Example:
      printf '1 2\\n3 4\\n' > a.txt
      matrix-mul a.txt a.txt            # 7 10 / 15 22
    """
    _binary("multiply matrices", a, b, output, fmt)


@tool("matrix-add")
def add(a: A, b: B, output: Output = None, fmt: Format = None):
    """Add two tensors element by element; B may be a row broadcast over the rows of A.

    \b
    Example:
      matrix-create 2 3 --fill 1 > ones.txt
      echo "1 2 3" | matrix-add ones.txt -      # 2 3 4 on both rows
    """
    _binary("add", a, b, output, fmt)


@tool("matrix-sub")
def sub(a: A, b: B, output: Output = None, fmt: Format = None):
    """Subtract B from A element by element; B may be a row broadcast over the rows of A.

    \b
    Example:
      matrix-create 2 2 --fill 3 > a.txt; matrix-sub a.txt a.txt    # zeros
    """
    _binary("subtract", a, b, output, fmt)


@tool("matrix-hadamard")
def hadamard(a: A, b: B, output: Output = None, fmt: Format = None):
    """Multiply two tensors element by element (Hadamard product).

    \b
    Example:
      matrix-create 2 2 --fill 3 > a.txt; matrix-hadamard a.txt a.txt    # all 9
    """
    _binary("multiply", a, b, output, fmt)


@tool("matrix-scale")
def scale(
    factor: Annotated[float, typer.Argument(help="The number to multiply by.")],
    a: Input = "-",
    output: Output = None,
    fmt: Format = None,
):
    """Multiply every value of a tensor by FACTOR.

    \b
    Example:
      matrix-create 2 2 --fill 1 | matrix-scale 0.5      # all 0.5
    """
    io = _io()
    io.write_tensor(io.read_tensor(a) * factor, output, fmt)


@tool("matrix-transpose")
def transpose(a: Input = "-", output: Output = None, fmt: Format = None):
    """Transpose a matrix (a row vector becomes a column).

    \b
    Example:
      echo "1 2 3" | matrix-transpose        # a column of 1, 2, 3
    """
    from .. import ops

    io = _io()
    io.write_tensor(ops.transpose(io.read_tensor(a)), output, fmt)


Axis = Annotated[
    Optional[int],
    typer.Option("--axis", help="Reduce along this axis only (0: down the columns, 1: along the rows), keeping it as size 1."),
]


@tool("matrix-sum")
def msum(a: Input = "-", axis: Axis = None, output: Output = None, fmt: Format = None):
    """Sum all values of a tensor, or along one axis.

    \b
    Example:
      printf '1 2\\n3 4\\n' | matrix-sum --axis 0       # 4 6
    """
    from .. import ops

    io = _io()
    io.write_tensor(ops.reduce("sum", io.read_tensor(a), axis), output, fmt)


@tool("matrix-mean")
def mean(a: Input = "-", axis: Axis = None, output: Output = None, fmt: Format = None):
    """Average all values of a tensor, or along one axis.

    \b
    Example:
      printf '1 2\\n3 4\\n' | matrix-mean --axis 1      # a column: 1.5 and 3.5
    """
    from .. import ops

    io = _io()
    io.write_tensor(ops.reduce("mean", io.read_tensor(a), axis), output, fmt)


@tool("matrix-create")
def create(
    rows: Annotated[int, typer.Argument(help="Number of rows (the fan in for initialisers).")],
    cols: Annotated[int, typer.Argument(help="Number of columns (the fan out).")],
    fill: Annotated[Optional[float], typer.Option("--fill", help="Fill with this value.")] = None,
    init: Annotated[
        Optional[str],
        typer.Option(
            "--init",
            help="Draw values with an initialiser: xavier, he, lecun, uniform A B, normal MU SIGMA, zero, const_flat A, const_uneven A B.",
        ),
    ] = None,
    params: Params = None,
    seed: Seed = None,
    output: Output = None,
    fmt: Format = None,
):
    """Create a ROWS×COLS matrix: zeros, a constant, or random weights.

    \b
    Example:
      matrix-create 2 3 --init xavier --seed 1 -o W.npy
      matrix-create 2 2 --init uniform -p 0 -p 10 --seed 7
    """
    from .. import ops

    _io().write_tensor(ops.create(rows, cols, fill, init, params or (), seed), output, fmt)


@tool("matrix-similar")
def similar(
    eps: Annotated[float, typer.Argument(help="Largest allowed absolute difference.")],
    a: A,
    b: B,
):
    """Exit 0 when A and B have the same shape and every |a−b| ≤ EPS, 1 otherwise; print nothing.

    Like `cmp -s`: use it in `if` and `&&`.  Exit 2 when a file cannot be read.

    \b
    Example:
      echo "1 2" > a.txt; echo "1 2.0000000001" > b.txt
      matrix-similar 1e-9 a.txt b.txt && echo same     # same
    """
    from .. import ops
    from ..errors import KerashError

    io = _io()
    _check_one_stdin(a, b)
    try:
        x, y = io.read_tensor(a), io.read_tensor(b)
    except KerashError as e:
        # 1 means "different", so trouble reading must be 2, as for cmp.
        e.exit_code = 2
        raise
    return 0 if ops.similar(eps, x, y) else 1


@tool("matrix-apply")
def apply(
    func: Annotated[Optional[str], typer.Argument(help="Function name (see --list).", show_default=False)] = None,
    a: Input = "-",
    params: Params = None,
    derivative: Annotated[bool, typer.Option("--derivative", "-d", help="Apply the function's derivative instead.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the functions, their aliases, parameters and defaults.")] = False,
    output: Output = None,
    fmt: Format = None,
):
    """Apply an activation function (or its derivative) to every value.

    softmax works row by row; its --derivative gives the diagonal of its
    Jacobian, s·(1−s), per value (the full Jacobian is used in training).

    \b
    Example:
      echo "-1 0 2" | matrix-apply relu              # 0 0 2
      echo "-1 0 2" | matrix-apply leaky_relu -p 0.1
      echo "-1 0 2" | matrix-apply sigmoid --derivative
    """
    from .. import functions
    from ..errors import UsageError

    if list_:
        _print_functions(functions.activation_table())
        return
    if func is None:
        raise UsageError("missing function name (matrix-apply --list shows them)")
    bound = functions.get_activation(func).bind(params or ())
    io = _io()
    x = io.read_tensor(a)
    y = bound.forward(x)
    io.write_tensor(bound.derivative(x, y) if derivative else y, output, fmt)


def _print_functions(rows):
    header = ("name", "aliases", "parameters", "f(x)")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = []
    for r in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    typer.echo("\n".join(lines))
