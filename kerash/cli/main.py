"""`kerash NAME …`: every tool under one command."""

import sys

from .catalog import ALIASES, TOOLS, load
from .runner import run


def usage():
    lines = ["Usage: kerash NAME [ARGS]...", "", "Neural networks as a Unix toolkit. Tools:", ""]
    width = max(len(n) for n in TOOLS)
    for name in TOOLS:
        doc = (load(name).__doc__ or "").strip().splitlines()[0]
        lines.append(f"  {name.ljust(width)}  {doc}")
    aliases = ", ".join(f"{old} = {new}" for old, new in ALIASES.items())
    lines += ["", f"Also: {aliases}.", "`kerash NAME --help` (or `NAME --help`) explains a tool, with an example."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        sys.exit(0 if argv else 2)
    if argv[0] in ("--version", "-V"):
        from .. import __version__

        print(f"kerash {__version__}")
        sys.exit(0)
    name = ALIASES.get(argv[0], argv[0])
    if name not in TOOLS:
        from ..errors import close_matches

        sys.stderr.write(f"kerash: error: unknown tool {name!r}{close_matches(name, TOOLS)} (kerash --help lists them)\n")
        sys.exit(2)
    run(load(name), f"kerash {argv[0]}", argv[1:])
