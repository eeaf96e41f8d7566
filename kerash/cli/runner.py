"""Run one tool: typer parses, the library computes, errors become one line.

Every executable goes through `run`, so all of them share the same error
format (``TOOL: error: WHAT (WHERE)``), exit codes (1 bad data, 2 bad usage,
130 interrupted) and quiet handling of a closed downstream pipe.
"""

import os
import re
import sys

from ..errors import KerashError, one_line


def tool(name):
    """Mark a command function as the tool `name`; `fn.main` is its console entry point."""

    def register(fn):
        fn.tool_name = name
        fn.main = lambda argv=None: run(fn, name, argv)
        return fn

    return register


def table_printer(columns, format_row, before=None):
    """A function printing one tab-separated row a call, after a header line that comes with the first row.

    The header waits for a row so that a run failing on bad data leaves
    standard output empty.  `before` runs first on every call (clearing a
    progress bar).
    """
    started = False

    def print_row(row):
        nonlocal started
        if before:
            before()
        if not started:
            sys.stdout.write("\t".join(columns) + "\n")
            started = True
        sys.stdout.write(format_row(row) + "\n")
        sys.stdout.flush()

    return print_row


_PROG = ["kerash"]  # the tool being run, for warnings
_ON_ERROR = {}  # optional 'before' () and 'after' (exit code) hooks around an error message


def on_error(before=None, after=None):
    """Hooks around a failure's message: an MPI rank delays it, then ends the whole job."""
    _ON_ERROR.update(before=before, after=after)


def warn(message):
    """Print `TOOL: warning: MESSAGE` on standard error (one line, escaped)."""
    if sys.stderr is not None:
        sys.stderr.write(f"{_PROG[0]}: warning: {one_line(message)}\n")


def _error(prog, message, code):
    if _ON_ERROR.get("before"):
        _ON_ERROR["before"]()
    if sys.stderr is not None:  # with standard error closed (2>&-) only the status tells
        sys.stderr.write(f"{prog}: error: {one_line(message)}\n")
        sys.stderr.flush()
    if _ON_ERROR.get("after"):
        _ON_ERROR["after"](code)
    return code


def _quiet_broken_pipe():
    # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def run(fn, prog, argv=None):
    """Parse argv for `fn`, call it and exit with the conventional status."""
    sys.exit(invoke(fn, prog, argv))


_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|nan)$")


def _check_options(command, args):
    """Reject unknown options ourselves, so that click can pass negative numbers through as operands."""
    from ..errors import UsageError, close_matches

    known = {"-h", "--help"}
    for param in command.params:
        known.update(getattr(param, "opts", ()))
        known.update(getattr(param, "secondary_opts", ()))
    for token in args:
        if token == "--":
            return
        if not token.startswith("-") or token == "-" or _NEGATIVE_NUMBER.match(token):
            continue
        name = token.split("=", 1)[0]
        if name in known or (not name.startswith("--") and name[:2] in known):
            continue
        raise UsageError(f"No such option: {name}{close_matches(name, sorted(o for o in known if o.startswith('--')))}")


def _version_option(name):
    """--version: print `NAME (kerash) VERSION` and exit, as GNU tools do."""
    from typer.core import TyperOption

    def show(ctx, param, value):
        if value and not ctx.resilient_parsing:
            from .. import __version__

            sys.stdout.write(f"{name} (kerash) {__version__}\n")
            ctx.exit(0)

    return TyperOption(param_decls=["--version"], is_flag=True, expose_value=False, is_eager=True, callback=show,
                       help="Print the version and exit.")


def build_command(fn, prog):
    """The click command of tool function `fn` called as `prog`, with --version: what parses argv and writes --help."""
    import typer
    from typer.main import get_command

    app = typer.Typer(
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={
            "help_option_names": ["-h", "--help"],
            "max_content_width": 100,
            "ignore_unknown_options": True,  # negative numbers are operands; see _check_options
        },
    )
    app.command(name=prog)(fn)
    built = get_command(app)
    built.params.append(_version_option(getattr(fn, "tool_name", prog)))
    return built


def invoke(fn, prog, argv=None):
    """Like `run` but return the exit status instead of exiting."""
    import numpy
    import typer

    # Overflow in exp() and friends yields the correct limit (0, 1, inf);
    # training checks for non-finite losses explicitly.
    numpy.seterr(all="ignore")
    command = build_command(fn, prog)
    _PROG[0] = prog
    debug = os.environ.get("KERASH_DEBUG") == "1"
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        _check_options(command, args)
        result = command.main(args=args, prog_name=prog, standalone_mode=False)
        sys.stdout.flush()
        return result if isinstance(result, int) else 0
    except KerashError as e:
        if debug:
            raise
        return _error(prog, str(e), e.exit_code)
    except typer.TyperException as e:
        # typer's usage errors (unknown option, missing argument, bad value)
        return _error(prog, e.format_message(), getattr(e, "exit_code", 2))
    except typer.Abort:
        return _error(prog, "aborted", 1)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 141
    except SystemExit as e:
        # typer's main turns a closed pipe into sys.exit(1); report it as SIGPIPE instead
        if isinstance(e.__context__, BrokenPipeError):
            _quiet_broken_pipe()
            return 141
        raise
    except MemoryError:
        return _error(prog, "out of memory", 1)
    except OSError as e:
        if debug:
            raise
        # a failed read or write outside tensorio (a full disk, a vanished file)
        where = f" ({os.fsdecode(e.filename)})" if e.filename else ""
        return _error(prog, f"{e.strerror or e}{where}", 1)
    except Exception as e:
        if isinstance(e, AttributeError) and sys.stdout is None:  # started with standard output closed (>&-)
            return _error(prog, "cannot write to standard output: it is closed", 1)
        if debug:
            raise
        return _error(prog, f"internal error: {type(e).__name__}: {e} (KERASH_DEBUG=1 shows the traceback)", 1)
