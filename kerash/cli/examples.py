"""`kerash models`: the example model files shipped with kerash."""

import os
import re
import sys
from typing import Annotated, Optional

import typer

from .runner import tool

SUFFIXES = (".model", ".mdl")


def folder():
    """Where the example models are: kerash/examples when installed from a wheel, else the checkout's models/."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    installed = os.path.join(package, "examples")
    # an editable install runs the checkout, where models/ is the source folder
    return installed if os.path.isdir(installed) else os.path.join(os.path.dirname(package), "models")


def names():
    return sorted(n for n in os.listdir(folder()) if n.endswith(SUFFIXES))


def describe(path):
    """The first sentence of the file's opening comment; the seeds' files, kept unchanged, have none: their layers."""
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    comment = []
    for line in lines:
        text = line[1:]
        if not line.startswith("#") or text.startswith("   "):  # an indented comment line is a command
            break
        comment.append(text.strip())
    if comment:
        return re.split(r"(?<=\.)\s", " ".join(comment), maxsplit=1)[0]
    if path.endswith(".mdl"):
        nodes = re.findall(r"\((\w+)\s*,", " ".join(lines))
        return f"NeuroMorph's example (seed 000), unchanged: {len(nodes)} nodes, " + ", ".join(nodes)
    layers = [line.split() for line in lines if line[0].isalpha() and not line.startswith("input")]
    return "KeraSH's example, unchanged: " + ", ".join(" ".join(w[:3] if w[0] == "dense" else w[:1]) for w in layers)


@tool("models")
def models(
    name: Annotated[Optional[str], typer.Argument(metavar="NAME", help="An example model (xor.model, or just xor) to print.", show_default=False)] = None,
    path: Annotated[bool, typer.Option("--path", help="Print the folder that holds the example models.")] = False,
):
    """List the example models shipped with kerash, or print one to standard output.

    Without NAME, one line a model: its file name, a tab, and what it is.
    Models ending in .model use the line format, .mdl NeuroMorph's format (see
    kerash summary).  Copy one to edit it, or give the copy to model-init.

    \b
    Example:
      kerash models
      kerash models xor > xor.model
      model-init xor.model -o xor --seed 1
    """
    from ..errors import UsageError, close_matches

    where = folder()
    if path:
        sys.stdout.write(where + "\n")
        return
    known = names()
    if name is None:
        for known_name in known:
            sys.stdout.write(f"{known_name}\t{describe(os.path.join(where, known_name))}\n")
        return
    matches = [n for n in known if n == name or os.path.splitext(n)[0] == name]
    if not matches:
        raise UsageError(f"no example model {name!r}{close_matches(name, [os.path.splitext(n)[0] for n in known])} (kerash models lists them)")
    if len(matches) > 1:
        raise UsageError(f"{name!r} names {' and '.join(matches)}: give the file name")
    with open(os.path.join(where, matches[0]), encoding="utf-8") as f:
        sys.stdout.write(f.read())
