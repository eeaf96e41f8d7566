"""Shell completion scripts and man pages, made from the catalog and each tool's options and help.

The files are committed under share/ and pip installs that folder as it is
under the prefix (share/man/man1, share/bash-completion/completions,
share/zsh/site-functions).  Completion is static: a TAB runs shell code
only, never Python.  After changing a tool's options or help, run
`make shellfiles` (python -m kerash.cli.shellfiles) in the checkout; a test
fails while the committed files differ from what this module makes.
"""

import os
import re
import subprocess
import sys
from typing import Annotated

import typer

from .catalog import ALIASES, TOOLS, load
from .runner import build_command, tool

# Shell programs of bin/ installed with the tools, and their options (a test checks them against their --help).
SHELL_PROGRAMS = {
    "pipeline-train": ["--data", "--labels", "--epochs", "--batch-size", "--lr", "--workers", "--seed", "--dtype",
                       "--first-epoch", "--normalize", "-h", "--help"],
    "forward-pipeline": ["--show", "-h", "--help"],
    "backward-pipeline": ["--show", "--output", "-h", "--help"],
}
SHELL_VALUED = {"pipeline-train": ["--data", "--labels", "--epochs", "--batch-size", "--lr", "--workers", "--seed",
                                   "--dtype", "--first-epoch"], "backward-pipeline": ["--output"]}
HELP = ["-h", "--help"]


def program(name):
    """How tool `name` is called: its own executable, or `kerash NAME`."""
    return name if TOOLS[name][1] else f"kerash {name}"


def registry_choices(name):
    """{option or operand position: values} that tool `name` takes from kerash's registries, for completion."""
    from ..model.datasets import NAMES
    from ..plot import KINDS
    from ..training.engines import ENGINES
    from ..training.optimizers import OPTIMIZERS
    from ..training.schedule import KINDS as SCHEDULES
    from . import examples

    found = {}
    if name in ("train", "model-update", "evolve"):
        found["--optimizer"] = list(OPTIMIZERS)
    if name == "train":
        found["--engine"] = list(ENGINES)
        found["--lr-schedule"] = list(SCHEDULES)
    if name == "plot":
        found["1"] = list(KINDS)
    if name == "dataset":
        found["1"] = list(NAMES)
    if name == "models":
        found["1"] = sorted({n.rsplit(".", 1)[0] for n in examples.names()} | set(examples.names()))
    return found


def spec(name):
    """(options, options taking a value, {option or operand index: choices}) of tool `name`.

    Choices come from metavars such as text|npy|kerash, and from the registries (registry_choices); an
    operand is keyed by its position from 1.
    """
    options, valued, choices = [], [], {}
    position = 0
    for param in build_command(load(name), name).params:
        words = param.metavar.split("|") if param.metavar and "|" in param.metavar else None
        if param.param_type_name == "argument":
            position += 1
            if words:
                choices[str(position)] = words
            continue
        names = list(param.opts) + list(param.secondary_opts)
        options += names
        if not param.is_flag and not param.count:
            valued += names
            if words:
                choices.update((n, words) for n in names)
    for key, words in registry_choices(name).items():
        if key.isdigit() or key in options:
            choices[key] = words
    return options + HELP, valued, choices


def _all_specs():
    found = {name: spec(name) for name in TOOLS}
    found.update((name, (opts, SHELL_VALUED.get(name, []), {})) for name, opts in SHELL_PROGRAMS.items())
    return found


def _summary(name):
    return (load(name).__doc__ or "").strip().splitlines()[0]


def commands():
    """The command names completion serves: kerash, the installed tools and the shell programs."""
    return ["kerash"] + [n for n, (_, installed) in TOOLS.items() if installed] + list(SHELL_PROGRAMS)


HEADER = "made by python -m kerash.cli.shellfiles (make shellfiles) from the tools' options: do not edit"


def bash_script():
    specs = _all_specs()
    cases = []
    for name, (opts, valued, _) in specs.items():
        cases.append(f"        {name}) opts='{' '.join(opts)}' valued='{' '.join(valued)}' ;;")
    choices = [f'        "{name} {key}") echo "{" ".join(words)}" ;;'
               for name, (_, _, found) in specs.items() for key, words in found.items()]
    aliases = " ".join(f"{old}) tool={new} ;;" for old, new in ALIASES.items())
    return f"""# bash completion for kerash and its tools; {HEADER}.
# Installed in share/bash-completion/completions (a file a command, each sourcing this one),
# or: source <(kerash completion bash)

_kerash_tools='{" ".join([*TOOLS, *ALIASES])}'

# Sets opts (every option of tool $1) and valued (those taking a value).
_kerash_tool() {{
    opts='-h --help' valued=''
    case $1 in
{chr(10).join(cases)}
    esac
}}

# The words an option's value (or the Nth operand) of a tool may be; none: complete file names.
_kerash_choices() {{
    case "$1 $2" in
{chr(10).join(choices)}
    esac
}}

# COMPREPLY from standard input, a word per line (a read loop: bash 3.2, macOS's, has no builtin for it).
_kerash_reply() {{
    local line
    COMPREPLY=()
    while IFS= read -r line; do COMPREPLY+=("$line"); done
}}

_kerash() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} tool=${{COMP_WORDS[0]##*/}} first=1 opts valued prev='' words i operand=0
    COMPREPLY=()
    if [[ $tool == kerash ]]; then
        if ((COMP_CWORD == 1)); then
            _kerash_reply < <(compgen -W "$_kerash_tools --help --version" -- "$cur")
            return
        fi
        tool=${{COMP_WORDS[1]}} first=2
        case $tool in {aliases} esac
    fi
    _kerash_tool "$tool"
    ((COMP_CWORD > first)) && prev=${{COMP_WORDS[COMP_CWORD-1]}}
    if [[ -n $prev && " $valued " == *" $prev "* ]]; then
        words=$(_kerash_choices "$tool" "$prev")
    elif [[ $cur == -* ]]; then
        words=$opts
    else
        # the operand's position, not counting options and their values
        for ((i = first; i < COMP_CWORD; i++)); do
            if [[ ${{COMP_WORDS[i]}} == -?* ]]; then
                [[ " $valued " == *" ${{COMP_WORDS[i]}} "* ]] && ((i++))
            else
                ((operand++))
            fi
        done
        words=$(_kerash_choices "$tool" $((operand + 1)))
    fi
    if [[ -n $words ]]; then
        _kerash_reply < <(compgen -W "$words" -- "$cur")
    else
        compopt -o filenames 2> /dev/null
        _kerash_reply < <(compgen -f -- "$cur")
    fi
}}

complete -F _kerash {" ".join(commands())}
"""


def bash_stub(name):
    """The file bash-completion loads for command `name` (it looks for one named after the command)."""
    return f'# bash completion for {name}: kerash\'s, in the file next to this one; {HEADER}.\n. "${{BASH_SOURCE[0]%/*}}/kerash"\n'


def zsh_script():
    specs = _all_specs()
    cases = [f"        {name}) opts=({' '.join(opts)}) valued=({' '.join(valued)}) ;;"
             for name, (opts, valued, _) in specs.items()]
    choices = [f'        "{name} {key}") reply=({" ".join(words)}) ;;'
               for name, (_, _, found) in specs.items() for key, words in found.items()]
    described = [f"        '{name}:{_summary(name).replace(chr(39), chr(39) + chr(92) + chr(39) * 2)}'" for name in TOOLS]
    described += [f"        '{old}:same as {new}'" for old, new in ALIASES.items()]
    aliases = " ".join(f"{old}) tool={new} ;;" for old, new in ALIASES.items())
    return f"""#compdef {" ".join(commands())}
# zsh completion for kerash and its tools; {HEADER}.
# Installed in share/zsh/site-functions (on $fpath), or: source <(kerash completion zsh)

_kerash_tool() {{
    opts=(-h --help) valued=()
    case $1 in
{chr(10).join(cases)}
    esac
}}

_kerash_choices() {{
    reply=()
    case "$1 $2" in
{chr(10).join(choices)}
    esac
}}

_kerash() {{
    local tool=${{words[1]:t}} first=2 prev='' i operand=0
    local -a opts valued reply tools
    if [[ $tool == kerash ]]; then
        if (( CURRENT == 2 )); then
            tools=(
{chr(10).join(described)}
            )
            _describe -t tools 'kerash tool' tools
            return
        fi
        tool=${{words[2]}} first=3
        case $tool in {aliases} esac
    fi
    _kerash_tool $tool
    (( CURRENT > first )) && prev=${{words[CURRENT-1]}}
    if [[ -n $prev && ${{valued[(Ie)$prev]}} -gt 0 ]]; then
        _kerash_choices $tool $prev
    elif [[ $PREFIX == -* ]]; then
        compadd -a opts
        return
    else
        for (( i = first; i < CURRENT; i++ )); do
            if [[ $words[i] == -?* ]]; then
                (( ${{valued[(Ie)$words[i]]}} )) && (( i++ ))
            else
                (( operand++ ))
            fi
        done
        _kerash_choices $tool $(( operand + 1 ))
    fi
    if (( $#reply )); then
        compadd -a reply
    else
        _files
    fi
}}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _kerash "$@"
else
    compdef _kerash {" ".join(commands())}
fi
"""


@tool("completion")
def completion(
    shell: Annotated[str, typer.Argument(metavar="bash|zsh", help="The shell to complete for.", show_default=False)],
):
    """Print the completion script for bash or zsh: tool names after kerash, each tool's options, file names.

    pip installs the same scripts where bash-completion and zsh look for
    them; where it did not (a --user or --target install), source the output
    from ~/.bashrc or ~/.zshrc.  Completing runs no Python.

    \b
    Example:
      kerash completion bash > kerash-completion.bash
      grep -c complete kerash-completion.bash
    """
    from ..errors import UsageError

    scripts = {"bash": bash_script, "zsh": zsh_script}
    if shell not in scripts:
        raise UsageError(f"no completion for {shell!r}: bash or zsh")
    sys.stdout.write(scripts[shell]())


# Man pages -------------------------------------------------------------------------------------

_TROFF_ESCAPES = {"\\": "\\e", "-": "\\-"}


def troff(text):
    """`text` as troff input text: backslashes and hyphens escaped, other than ASCII as \\[uXXXX]."""
    out = []
    for ch in text:
        if ch in _TROFF_ESCAPES:
            out.append(_TROFF_ESCAPES[ch])
        elif ord(ch) > 127:
            out.append(f"\\[u{ord(ch):04X}]")
        else:
            out.append(ch)
    return "".join(out)


def _line(text):
    """One troff text line: a leading dot or apostrophe would make it a request."""
    text = troff(text)
    return "\\&" + text if text[:1] in (".", "'") else text


def _verbatim(lines):
    lines = [line.rstrip() for line in lines]
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return [".RS", ".nf", *(_line(line[indent:]) if line.strip() else "" for line in lines), ".fi", ".RE"]


def _paragraphs(lines):
    """Blank-line separated groups of lines."""
    groups, group = [], []
    for line in lines + [""]:
        if line.strip():
            group.append(line)
        elif group:
            groups.append(group)
            group = []
    return groups


def _prose(groups):
    """Paragraphs as troff: their lines at the paragraph's indentation filled, more indented runs kept as they are."""
    out = []
    for group in groups:
        if out:
            out.append(".PP")
        base = len(group[0]) - len(group[0].lstrip())
        runs = []  # (indented?, lines)
        for line in group:
            indented = len(line) - len(line.lstrip()) > base
            if runs and runs[-1][0] == indented:
                runs[-1][1].append(line)
            else:
                runs.append((indented, [line]))
        for indented, lines in runs:
            out += _verbatim(lines) if indented else [_line(" ".join(line.strip() for line in lines))]
    return out


def _page(title, summary, synopsis, body, see_also):
    from .. import __version__

    head = [f'.TH {title.upper()} 1 "" "kerash {__version__}" "kerash"',
            ".SH NAME", f"{troff(title)} \\- {troff(summary.rstrip('.'))}", ".SH SYNOPSIS", *synopsis]
    tail = [".SH SEE ALSO", ",\n".join(f".BR {troff(n)} (1)" for n in see_also)]
    return "\n".join([f'.\\" {HEADER}.', *head, *body, *tail]) + "\n"


def help_text(name):
    """Tool `name`'s --help as `kerash NAME --help` or `NAME --help` prints it, at unlimited width."""
    prog = program(name)
    command = build_command(load(name), prog)
    ctx = command.context_class(command, info_name=prog, terminal_width=10**6, max_content_width=10**6,
                                help_option_names=HELP)
    text = command.get_help(ctx)
    if name == "train":  # the same page for every machine
        from .train import WORKERS_ANYWHERE, WORKERS_HERE

        text = text.replace(WORKERS_HERE, WORKERS_ANYWHERE)
    return text


def _definitions(lines):
    """click's two-column option or argument lines as .TP items."""
    out, term = [], None
    for line in lines:
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if term is None and len(parts) == 1 and len(line) - len(line.lstrip()) == 2:
            term = parts[0]  # a long term: its description is on the next line
            continue
        if term is None:
            term, parts = parts[0], parts[1:]
        out += [".TP", f"\\fB{troff(term)}\\fR", _line(" ".join(parts))]
        term = None
    return out


def tool_page(name):
    """Tool `name`'s man page, from its --help: usage, description, example, arguments, options."""
    text = help_text(name)
    sections = {}
    current = "Usage"
    for line in text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":") and " " not in line.strip():
            current = line.strip()[:-1]
            continue
        sections.setdefault(current, []).append(line)
    usage, *description = sections.pop("Usage")
    usage = usage.removeprefix("Usage: ").removeprefix(program(name))
    groups = _paragraphs(description)
    summary = " ".join(groups.pop(0)).strip()
    example = [g for g in groups if g[0].strip() == "Example:"]
    groups = [g for g in groups if g[0].strip() != "Example:"]
    body = [".SH DESCRIPTION", _line(summary), ".PP", *_prose(groups)]
    if example:
        body += [".SH EXAMPLE", *_verbatim(example[0][1:])]
    for heading, lines in sections.items():
        body += [f".SH {heading.upper()}", *_definitions([line for line in lines if line.strip()])]
    synopsis = [f"\\fB{troff(program(name))}\\fR{troff(usage)}"]
    return _page(page_name(name), summary, synopsis, body, ["kerash"])


def page_name(name):
    """Tools reached only as `kerash NAME` get the page kerash-NAME, as git's subcommands do."""
    return name if name in SHELL_PROGRAMS or TOOLS[name][1] else f"kerash-{name}"


def script_page(name, root):
    """The man page of shell program bin/NAME, from its --help (the comment at its top)."""
    text = subprocess.run(["bash", os.path.join(root, "bin", name), "--help"], capture_output=True, text=True,
                          check=True).stdout
    first, *rest = text.splitlines()
    head, _, summary = first.partition(": ")
    groups = _paragraphs(rest)
    if head != name:
        synopsis = [_line(head)]
    else:  # the usage is the first indented paragraph
        synopsis = _verbatim(groups.pop(0))
    return _page(name, summary, synopsis, [".SH DESCRIPTION", *_prose(groups)], ["kerash"])


def kerash_page():
    from .main import usage

    lines = usage().splitlines()
    entries = [line for line in lines if line.startswith("  ")]
    prose = [line for line in lines[1:] if not line.startswith("  ") and line.strip()]
    body = [".SH DESCRIPTION", _line(prose[0]), *_definitions(entries), ".PP", *map(_line, prose[1:]),
            ".PP", _line("Every tool has its page: NAME(1) for the executables, kerash-NAME(1) for the tools "
                         "reached only as kerash NAME."),
            ".SH SHELL COMPLETION",
            _line("pip installs completion for bash (share/bash-completion/completions) and zsh "
                  "(share/zsh/site-functions); elsewhere, source <(kerash completion bash) or "
                  "source <(kerash completion zsh).")]
    see_also = sorted({page_name(n) for n in TOOLS} | set(SHELL_PROGRAMS))
    synopsis = ["\\fBkerash\\fR \\fINAME\\fR [\\fIARGS\\fR]...", ".br", "\\fBkerash\\fR \\-\\-help | \\-\\-version"]
    return _page("kerash", "neural networks as a Unix toolkit", synopsis, body, see_also)


def files(root):
    """{path relative to the checkout: content} of every generated file."""
    out = {"share/bash-completion/completions/kerash": bash_script(),
           "share/zsh/site-functions/_kerash": zsh_script(),
           "share/man/man1/kerash.1": kerash_page()}
    for name in commands()[1:]:
        out[f"share/bash-completion/completions/{name}"] = bash_stub(name)
    for name in TOOLS:
        out[f"share/man/man1/{page_name(name)}.1"] = tool_page(name)
    for name in SHELL_PROGRAMS:
        out[f"share/man/man1/{name}.1"] = script_page(name, root)
    return out


def main(argv=None):
    """Write the files into the checkout (or the folder given); --check lists those that differ and exits 1."""
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    rest = [a for a in args if a != "--check"]
    root = rest[0] if rest else os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    stale = []
    for rel, content in files(root).items():
        path = os.path.join(root, rel)
        try:
            with open(path, encoding="utf-8") as f:
                same = f.read() == content
        except FileNotFoundError:
            same = False
        if same:
            continue
        stale.append(rel)
        if not check:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + f".tmp-{os.getpid()}", "w", encoding="utf-8") as f:
                f.write(content)
            os.replace(path + f".tmp-{os.getpid()}", path)
    for rel in stale:
        print(f"{'differs' if check else 'wrote'}: {rel}", file=sys.stderr)
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
