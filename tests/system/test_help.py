"""Every tool explains itself in one sentence and shows a runnable example; the install list matches."""

import os
import re
import tempfile
import tomllib

import numpy as np
import pytest

from conftest import BIN, ROOT, parse, run, tool_env
from kerash.cli.catalog import TOOLS
from kerash.cli.shellfiles import SHELL_PROGRAMS

MARK = "=== end of example line ==="


def help_text(*command):
    proc = run([*command, "--help"])
    assert proc.stderr == b""
    return proc.stdout.decode()


def description(text):
    """The first paragraph after the usage line, as one string."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    assert paragraphs[0].startswith("Usage: "), text
    return " ".join(paragraphs[1].split())


def example_lines(text):
    """The command lines indented under 'Example:'."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Example:"]
    assert len(starts) == 1, text
    indent = len(lines[starts[0]]) - len(lines[starts[0]].lstrip())
    commands = []
    for line in lines[starts[0] + 1 :]:
        if not line.strip() or len(line) - len(line.lstrip()) <= indent:
            break
        commands.append(line.strip())
    return commands


def command_of(name):
    """How a user calls the tool: by its own name, or as `kerash NAME` when it is not installed alone."""
    return [name] if TOOLS[name][1] else ["kerash", name]


@pytest.mark.parametrize("name", list(TOOLS))
def test_help_has_one_sentence_and_a_runnable_example(name, tmp_path):
    text = help_text(*command_of(name))
    sentence = description(text)
    assert sentence.endswith("."), sentence
    assert ". " not in sentence, sentence
    assert len(sentence) > 20, sentence
    commands = example_lines(text)
    assert commands, text
    called = " ".join(command_of(name))
    assert any(re.search(rf"(^|[|;&]\s*){re.escape(called)}\b", line) for line in commands), commands
    # the example runs on its own in an empty folder, without complaint; a marker
    # after each line splits the output by command
    script = "set -eo pipefail\n" + "".join(f"{line}\necho {MARK}\n" for line in commands)
    warm = {}
    if name == "warm":  # its example starts and stops a server: its own
        warm["KERASH_WARM_DIR"] = tempfile.mkdtemp(prefix="kerash-warm-", dir="/tmp")
    proc = run(script, cwd=tmp_path, env=tool_env(**warm))
    if warm:
        os.rmdir(warm["KERASH_WARM_DIR"])
    # standard error may carry progress or diagnostics, never an error
    assert b"error:" not in proc.stderr and b"Traceback" not in proc.stderr, proc.stderr.decode()
    outputs = proc.stdout.decode().split(MARK + "\n")
    assert len(outputs) == len(commands) + 1
    assert any(outputs) or any(tmp_path.iterdir()), f"{name} example produced nothing"
    # a trailing comment made of numbers ('# 7 10 / 15 22', '/' between rows) lists the
    # values printed, in reading order
    for line, out in zip(commands, outputs):
        comment = line.partition("#")[2].strip()
        if comment and re.fullmatch(r"[-0-9. /]+", comment):
            expected = np.array(comment.replace("/", " ").split(), dtype=float)
            np.testing.assert_array_equal(parse(out).ravel(), expected, err_msg=line)


def test_kerash_front_end_help_is_the_same():
    for name in ("matrix-mul", "conv"):
        direct, via = help_text(name), help_text("kerash", name)
        assert description(direct) == description(via)
        assert example_lines(direct) == example_lines(via)
    listing = run(["kerash", "--help"]).stdout.decode()
    for name in TOOLS:
        assert name in listing


def test_scripts_in_pyproject_match_the_catalog():
    with open(ROOT / "pyproject.toml", "rb") as f:
        scripts = tomllib.load(f)["tool"]["setuptools"]["script-files"]
    installed = {name for name, (_, flag) in TOOLS.items() if flag}
    shell_programs = [f"bin/{name}" for name in SHELL_PROGRAMS]  # installed too; bin/demo is make demo's
    assert sorted(scripts) == sorted([f"scripts/{name}" for name in installed | {"kerash"}] + shell_programs)
    # no script takes a name that system commands have (Debian's init is systemd's)
    assert not {"scripts/init", "scripts/update"} & set(scripts)
    assert sorted(p.name for p in (ROOT / "scripts").iterdir()) == sorted(installed | {"kerash"})
    for name in installed | {"kerash"}:
        # each goes through the launcher (warm server or cold start), named as in the catalog
        text = (ROOT / "scripts" / name).read_text()
        assert text == f'#!python\nfrom kerash.warm.launch import main\nmain("{name}")\n', name


def test_every_tool_answers_version(capsys):
    from kerash import __version__
    from kerash.cli.catalog import load
    from kerash.cli.runner import invoke

    for name in TOOLS:
        assert invoke(load(name), name, ["--version"]) == 0, name
        assert capsys.readouterr().out == f"{name} (kerash) {__version__}\n"
    proc = run(["matrix-mul", "--version"])
    assert (proc.stdout.decode(), proc.stderr) == (f"matrix-mul (kerash) {__version__}\n", b"")


def test_renamed_tools_answer_to_their_old_names_through_kerash(tmp_path):
    (tmp_path / "m.model").write_text("2 1 1\ninput\ndense 1 sigmoid\n")
    run(["kerash", "init", "m.model", "-o", "m", "--seed", "1"], cwd=tmp_path)
    assert (tmp_path / "m" / "layer_01" / "W.npy").exists()
    assert description(help_text("kerash", "update")) == description(help_text("model-update"))
    assert not (BIN / "init").exists() and not (BIN / "update").exists()
    assert "init = model-init" in run(["kerash", "--help"]).stdout.decode()


def test_no_example_or_document_calls_the_old_names():
    import re

    old = re.compile(r"(^|[\s`$(|;&])(init|update) (?!=)\S")  # a command line starting with the old names
    docs = [p for p in (ROOT / "docs").glob("*.md") if p.name != "graph-models.md"]  # its grammar has an `init` rule
    files = [*(ROOT / "models").iterdir(), *docs, ROOT / "README.md", *(ROOT / "bin").iterdir()]
    found = []
    for path in files:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            text = re.sub(r"(kerash|model-|--|/) ?(init|update)", "", line)  # the new names, options, paths
            if old.search(text.lstrip("# ")) and not re.search(r"\b(init|update) (header|=|is |exists)", text):
                found.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert found == [], "\n".join(found)
