"""Completion scripts and man pages: committed, current, correct, and one for every command."""

import re
import shutil
import subprocess
import tomllib

import pytest

from conftest import ROOT, run
from kerash.cli import shellfiles
from kerash.cli.catalog import ALIASES, TOOLS

SHARE = ROOT / "share"


def test_committed_files_are_what_the_generator_makes():
    made = shellfiles.files(str(ROOT))
    committed = {str(p.relative_to(ROOT)) for p in SHARE.rglob("*") if p.is_file()}
    assert committed == set(made), "run make shellfiles"
    stale = [rel for rel, content in made.items() if (ROOT / rel).read_text() != content]
    assert not stale, f"run make shellfiles: {stale}"


def test_the_generated_files_are_the_same_on_a_machine_with_other_cores():
    # train --help names this machine's default worker count; the committed pages must not
    import os
    import sys

    proc = subprocess.run([sys.executable, "-m", "kerash.cli.shellfiles", "--check"], capture_output=True,
                          preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert proc.returncode == 0, proc.stderr.decode()
    one_core = subprocess.run([sys.executable, "-c", "from kerash.cli.train import WORKERS_HERE; print(WORKERS_HERE)"],
                              capture_output=True, preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert one_core.stdout.decode().strip() == "1 on this 1-core machine"  # the text that is replaced did change


def test_kerash_completion_prints_the_installed_scripts():
    assert run(["kerash", "completion", "bash"]).stdout.decode() == (SHARE / "bash-completion/completions/kerash").read_text()
    assert run(["kerash", "completion", "zsh"]).stdout.decode() == (SHARE / "zsh/site-functions/_kerash").read_text()
    proc = run(["kerash", "completion", "fish"], check=False)
    assert proc.returncode == 2 and proc.stderr == b"kerash completion: error: no completion for 'fish': bash or zsh\n"


def test_every_installed_command_has_a_page_and_completion():
    with open(ROOT / "pyproject.toml", "rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    installed = {path.rsplit("/", 1)[1] for path in setuptools["script-files"]}
    assert set(shellfiles.SHELL_PROGRAMS) < installed
    for name in installed:
        assert (SHARE / "man/man1" / f"{name}.1").is_file(), name
        assert (SHARE / "bash-completion/completions" / name).is_file(), name
    for name, (_, alone) in TOOLS.items():
        assert (SHARE / "man/man1" / (f"{name}.1" if alone else f"kerash-{name}.1")).is_file(), name
    first = (SHARE / "zsh/site-functions/_kerash").read_text().splitlines()[0]
    assert set(first.split()[1:]) == installed
    # pip installs every generated file (data-files globs) and the example models
    data = setuptools["data-files"]
    assert data["share/man/man1"] == ["share/man/man1/*.1"]
    assert setuptools["package-dir"] == {"kerash.examples": "models"}


def test_packages_listed_in_pyproject_are_those_under_kerash():
    with open(ROOT / "pyproject.toml", "rb") as f:
        packages = tomllib.load(f)["tool"]["setuptools"]["packages"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "kerash").rglob("__init__.py")}
    assert set(packages) == found | {"kerash.examples"}


def test_shell_programs_complete_the_options_their_usage_names():
    for name, options in shellfiles.SHELL_PROGRAMS.items():
        text = run(["bash", str(ROOT / "bin" / name), "--help"]).stdout.decode()
        first, _, rest = text.partition("\n")
        usage = first.partition(": ")[0]
        if usage == name:  # the usage is the next paragraph
            usage = rest.strip().split("\n\n")[0]
        assert set(options) == set(re.findall(r"--[a-z][a-z-]*", usage)) | {"-h", "--help"}, name
        valued = set(re.findall(r"(--[a-z][a-z-]*) [^-\s\[]", usage))
        assert set(shellfiles.SHELL_VALUED.get(name, [])) == valued, name


def _complete(*words, source="train"):
    """COMPREPLY for the command line `words` (the last one being completed), through bash-completion's file for `source`."""
    script = (f'. {SHARE}/bash-completion/completions/{source}\n'
              'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _kerash; printf "%s\\n" "${COMPREPLY[@]}"\n')
    proc = subprocess.run(["bash", "-c", script, "bash", *words], capture_output=True, text=True, cwd=ROOT, check=True)
    assert proc.stderr == ""
    return proc.stdout.split()


def test_bash_completes_the_registries_names():
    """Issue 24, item 9: optimisers, engines, schedule kinds, plot kinds, data sets and example models."""
    from kerash.model.datasets import NAMES
    from kerash.plot import KINDS
    from kerash.training.optimizers import OPTIMIZERS

    assert _complete("train", "m", "--optimizer", "") == list(OPTIMIZERS)
    assert _complete("train", "m", "--optimizer", "ad") == ["adam"]
    assert _complete("train", "m", "--engine", "") == ["local", "fork", "mpi"]
    assert _complete("train", "m", "--lr-schedule", "c") == ["constant", "cosine"]
    assert _complete("model-update", "m", "g", "--optimizer", "n", source="model-update") == ["nesterov"]
    assert _complete("kerash", "plot", "", source="kerash") == list(KINDS)
    assert _complete("kerash", "dataset", "", source="kerash") == list(NAMES)
    assert "xor" in _complete("kerash", "models", "", source="kerash")


def test_bash_completes_tools_options_values_and_files():
    listed = _complete("kerash", "", source="kerash")
    assert set(TOOLS) | set(ALIASES) | {"--help", "--version"} == set(listed)
    assert _complete("kerash", "mat", source="kerash") == [n for n in TOOLS if n.startswith("mat")]
    assert _complete("train", "--ep") == ["--epochs", "--eps"]
    assert _complete("/usr/local/bin/train", "mlp", "--until") == ["--until-epoch"]
    assert _complete("kerash", "train", "--ep", source="kerash") == ["--epochs", "--eps"]
    assert _complete("kerash", "init", "--fo", source="kerash") == ["--force"]  # an alias completes as its tool
    assert _complete("matrix-mul", "--format", "", source="matrix-mul") == ["text", "npy", "kerash"]
    assert _complete("kerash", "warm", "st", source="kerash") == ["start", "stop", "status"]
    assert _complete("kerash", "warm", "--idle", "5m", "st", source="kerash") == ["start", "stop", "status"]
    assert _complete("pipeline-train", "xor", "--ba", source="pipeline-train") == ["--batch-size"]
    # operands and the values of other options are file names
    assert _complete("train", "-x", "READ") == ["README.md"]
    assert _complete("matrix-mul", "pyproj", source="matrix-mul") == ["pyproject.toml"]


def test_zsh_script_parses():
    if not shutil.which("zsh"):
        pytest.skip("no zsh on this machine")
    subprocess.run(["zsh", "-n", str(SHARE / "zsh/site-functions/_kerash")], check=True)


def test_man_pages_render_without_warnings():
    pages = sorted((SHARE / "man/man1").glob("*.1"))
    if shutil.which("mandoc"):
        command = ["mandoc", "-Tlint", "-Wwarning"]
    elif shutil.which("groff"):
        command = ["groff", "-man", "-Tutf8", "-ww", "-z"]
    else:
        pytest.skip("neither mandoc nor groff on this machine")
    for page in pages:
        proc = subprocess.run([*command, str(page)], capture_output=True, text=True)
        assert (proc.returncode, proc.stderr) == (0, ""), page.name
    if shutil.which("groff"):
        text = subprocess.run(["groff", "-man", "-Tutf8", str(SHARE / "man/man1/train.1")], capture_output=True,
                              text=True, check=True).stdout
        plain = " ".join(re.sub(r".\x08", "", text).replace("\u2010", "-").split())  # no overstrikes, hyphens, justification
        assert "train - Train a model" in plain and "-e, --epochs <int>" in plain
        assert "kerash dataset digits -o digits" in plain


def test_troff_escapes():
    assert shellfiles.troff("a\\b -x ×") == "a\\eb \\-x \\[u00D7]"
    assert shellfiles._line(".hidden") == "\\&.hidden"
    assert shellfiles._line("'quote") == "\\&'quote"


def test_bash_completion_keeps_to_bash_3_2():
    # macOS's /bin/bash is 3.2: no mapfile/readarray, associative arrays, case changes or ;&
    script = (ROOT / "share" / "bash-completion" / "completions" / "kerash").read_text()
    for bash4 in ("mapfile", "readarray", "declare -A", "local -A", ",,}", "^^}", ";&", ";;&"):
        assert bash4 not in script, bash4
