"""Activations a user defines by expressions of x, and their derivative: a functions file.

    # DyNet's modified sigmoid, which never quite stops learning
    modsig(x)  = 1 / (1 + exp(-x)) + 0.01 * x
    modsig'(x) = y * (1 - y) + 0.01 * (1 - 0.01 * x) ... any expression of x and y = modsig(x)

The grammar is arithmetic only — numbers, x, y (in a derivative), pi, e,
+ − * / ^ (power), parentheses, and the element-wise functions of FUNCTIONS
and the parameterless activations already defined (sigmoid(x), relu(x) …)
— compiled to numpy operations; nothing is evaluated as Python.  Each
derivative is checked against central differences of its function when the
file is read, so a wrong one is refused before it trains anything.  A
model made with `model-init --functions FILE` keeps the file as
MODEL/functions.txt, and every tool that reads the model defines them.
"""

import math
import re

import numpy as np

from ..errors import ModelError
from . import activations

FUNCTIONS_FILE = "functions.txt"
FUNCTIONS = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "abs": np.abs, "sign": np.sign,
    "tanh": np.tanh, "sinh": np.sinh, "cosh": np.cosh, "sin": np.sin, "cos": np.cos, "arctan": np.arctan,
    "max": np.maximum, "min": np.minimum,
}
ARITY = {"max": 2, "min": 2}
CONSTANTS = {"pi": math.pi, "e": math.e}
_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|([A-Za-z_][A-Za-z_0-9]*)|(\*\*|[-+*/^(),]))")
_DEFINITION = re.compile(r"\s*([A-Za-z_][A-Za-z_0-9]*)\s*(')?\s*\(\s*x\s*\)\s*=(.*)")
# where the derivative is compared with central differences: off the usual kinks (0 of abs and relu)
CHECK_POINTS = np.linspace(-4.0, 4.0, 33) + 0.0123
CHECK_STEP = 1e-6


class _Parser:
    """Recursive descent over the tokens of one expression; builds a function of (x, y)."""

    def __init__(self, text, where, variables):
        self.where, self.variables = where, variables
        self.tokens, pos = [], 0
        text = text.rstrip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                raise ModelError(f"{where}: cannot read {text[pos:pos + 12].strip()!r} in an expression")
            number, name, op = match.groups()
            self.tokens.append(("num", float(number)) if number else ("name", name) if name else ("op", op))
            pos = match.end()
        self.i = 0

    def parse(self):
        if not self.tokens:
            raise ModelError(f"{self.where}: an empty expression")
        node = self.sum()
        if self.i < len(self.tokens):
            raise ModelError(f"{self.where}: unexpected {self.tokens[self.i][1]!r}")
        return node

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, None)

    def take(self, op):
        if self.peek() == ("op", op):
            self.i += 1
            return True
        return False

    def sum(self):
        node = self.product()
        while True:
            if self.take("+"):
                a, b = node, self.product()
                node = lambda x, y, a=a, b=b: a(x, y) + b(x, y)
            elif self.take("-"):
                a, b = node, self.product()
                node = lambda x, y, a=a, b=b: a(x, y) - b(x, y)
            else:
                return node

    def product(self):
        node = self.unary()
        while True:
            if self.take("*"):
                a, b = node, self.unary()
                node = lambda x, y, a=a, b=b: a(x, y) * b(x, y)
            elif self.take("/"):
                a, b = node, self.unary()
                node = lambda x, y, a=a, b=b: a(x, y) / b(x, y)
            else:
                return node

    def unary(self):
        if self.take("-"):
            a = self.unary()
            return lambda x, y, a=a: -a(x, y)
        if self.take("+"):
            return self.unary()
        return self.power()

    def power(self):
        base = self.atom()
        if self.take("^") or self.take("**"):
            exponent = self.unary()  # right-associative: 2^3^2 is 2^9
            return lambda x, y, a=base, b=exponent: np.power(a(x, y), b(x, y))
        return base

    def atom(self):
        kind, value = self.peek()
        self.i += 1
        if kind == "num":
            return lambda x, y, v=value: v
        if kind == "op" and value == "(":
            node = self.sum()
            if not self.take(")"):
                raise ModelError(f"{self.where}: a ( without its )")
            return node
        if kind == "name":
            if value in self.variables:
                return (lambda x, y: x) if value == "x" else (lambda x, y: y)
            if value in CONSTANTS:
                return lambda x, y, v=CONSTANTS[value]: v
            if self.peek() == ("op", "("):
                return self.call(value)
            known = sorted(set(FUNCTIONS) | set(CONSTANTS) | set(self.variables))
            raise ModelError(f"{self.where}: unknown name {value!r} (names: {', '.join(known)}, and activations "
                             "as functions)")
        raise ModelError(f"{self.where}: expected a number, x, a function or (, found "
                         f"{'the end' if kind is None else repr(value)}")

    def call(self, name):
        self.take("(")
        args = [self.sum()]
        while self.take(","):
            args.append(self.sum())
        if not self.take(")"):
            raise ModelError(f"{self.where}: {name}( without its )")
        if name in FUNCTIONS:
            want = ARITY.get(name, 1)
            if len(args) != want:
                raise ModelError(f"{self.where}: {name} takes {want} argument(s), got {len(args)}")
            f = FUNCTIONS[name]
            return lambda x, y, f=f, args=args: f(*(a(x, y) for a in args))
        act = activations.find_activation(name)
        if act is None:
            raise ModelError(f"{self.where}: unknown function {name!r} (functions: {', '.join(sorted(FUNCTIONS))}, "
                             "and activations without parameters)")
        if act.params or len(args) != 1:
            raise ModelError(f"{self.where}: activation {name} is used as a function of one value, without parameters")
        a = args[0]
        return lambda x, y, f=act.f, a=a: f(np.asarray(a(x, y), dtype=np.float64))


def parse_functions(text, where="functions"):
    """[(name, f(x), d(x, y), source text)] of a functions file; each derivative checked (see module)."""
    forms, order = {}, []
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        if not code.strip():
            continue
        match = _DEFINITION.fullmatch(code)
        if not match:
            raise ModelError(f"{where}:{number}: expected 'NAME(x) = expression' or \"NAME'(x) = expression\"")
        name, prime, body = match.groups()
        key = (name, bool(prime))
        if key in forms:
            raise ModelError(f"{where}:{number}: {name}{prime or ''}(x) is defined twice")
        variables = ("x", "y") if prime else ("x",)
        forms[key] = (_Parser(body, f"{where}:{number}", variables).parse(), number, code.strip())
        if name not in order:
            order.append(name)
    found = []
    for name in order:
        if (name, False) not in forms:
            raise ModelError(f"{where}: {name}'(x) has no {name}(x)")
        if (name, True) not in forms:
            raise ModelError(f"{where}: {name}(x) needs its derivative, {name}'(x) = … (x, and y = {name}(x))")
        f_node, line, f_text = forms[(name, False)]
        d_node, _, d_text = forms[(name, True)]
        f, d = _compiled(f_node, d_node)
        _check_derivative(name, f, d, f"{where}:{line}")
        found.append((name, f, d, f"{f_text}\n{d_text}"))
    return found


def _compiled(f_node, d_node):
    def f(x):
        with np.errstate(all="ignore"):
            return np.asarray(np.broadcast_to(f_node(x, None), np.shape(x)), dtype=np.asarray(x).dtype).copy()

    def d(x, y):
        with np.errstate(all="ignore"):
            return np.asarray(np.broadcast_to(d_node(x, y), np.shape(x)), dtype=np.asarray(x).dtype).copy()

    return f, d


def _check_derivative(name, f, d, where):
    x = CHECK_POINTS.copy()
    y = f(x)
    numeric = (f(x + CHECK_STEP) - f(x - CHECK_STEP)) / (2 * CHECK_STEP)
    given = d(x, y)
    usable = np.isfinite(y) & np.isfinite(numeric)
    if not usable.any():
        raise ModelError(f"{where}: {name}(x) is not finite anywhere in [-4, 4]")
    bad = usable & ~(np.abs(given - numeric) <= 1e-4 * np.maximum(1.0, np.abs(numeric)))
    if bad.any():
        k = int(np.argmax(bad))
        raise ModelError(f"{where}: {name}'(x) is not the derivative of {name}(x): at x = {x[k]:.4g} it gives "
                         f"{given[k]:.6g}, central differences {numeric[k]:.6g}")


def define(text, where="functions"):
    """Register the activations of a functions file; the same definition again is no change, another under
    a name already taken is refused."""
    for name, f, d, source in parse_functions(text, where):
        existing = activations.find_activation(name)
        if existing is not None:
            if getattr(existing, "source", None) == source:
                continue
            raise ModelError(f"{where}: {name} is already an activation"
                             + (" with another definition" if getattr(existing, "source", None) else " of kerash's"))
        act = activations.Activation(name, f, d, doc=f"defined in {where}: {source.splitlines()[0]}")
        act.source = source
        activations.add_activation(act)


def define_file(path, where=None):
    """define() the file at `path` (a model's functions.txt)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(1 << 20)
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"cannot read {where or path}: {getattr(e, 'strerror', None) or e}") from None
    define(text, where or path)
    return text
