"""models/Makefile, the example of training with make: it redoes only what is out of date (more epochs train
on, fewer change nothing, new data start afresh), runs in parallel from clean, and keeps to GNU make 3.81."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, run, tool_env
from helpers import weights

TRACE_HEADER = ["epoch", "samples", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "lr", "batch_size", "event",
                "processes"]


def state(folder):
    return json.loads((folder / "state.json").read_text())


def trace_rows(folder):
    lines = (folder / "trace.tsv").read_text().splitlines()
    assert lines[0].split("\t") == TRACE_HEADER
    return [line.split("\t") for line in lines[1:]]


def raw_files(folder):
    """The bytes of every weight file: to show that nothing was rewritten."""
    return {key: (folder / f"{key}.npy").read_bytes() for key in weights(folder)}


# GNU make 3.81 (macOS's make) is tried too when a `make-3.81` is on the PATH.
MAKES = ["make"] + [m for m in ("make-3.81",) if shutil.which(m, path=tool_env()["PATH"])]


def make(out, *args, check=True, program="make"):
    env = tool_env()  # the venv's tools first on PATH
    env.pop("MAKEFLAGS", None)
    env.pop("MFLAGS", None)
    proc = subprocess.run([program, "-C", str(ROOT / "models"), f"OUT={out}", *args], capture_output=True, env=env,
                          timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    return proc


def up_to_date(proc):
    out = proc.stdout.decode()
    return "Nothing to be done" in out or "is up to date" in out


def report_epochs(out):
    return [int(line.split(", ")[1].split()[0]) for line in (out / "report.txt").read_text().splitlines()
            if line.startswith("== digits-")]


@pytest.mark.parametrize("program", MAKES)
def test_the_make_example_redoes_only_what_is_out_of_date(tmp_path, program):
    out = tmp_path / "build"
    make(out, "EPOCHS=2", program=program)
    report = (out / "report.txt").read_text()
    assert report_epochs(out) == [2, 2] and "accuracy" in report
    for m in ("mlp", "cnn"):
        assert state(out / m)["epochs"] == 2
    weights_before = {m: raw_files(out / m) for m in ("mlp", "cnn")}

    assert up_to_date(make(out, "EPOCHS=2", program=program))
    dry = make(out, "EPOCHS=2", "-n", program=program).stdout.decode()
    assert "train " not in dry and "model-init " not in dry
    assert {m: raw_files(out / m) for m in ("mlp", "cnn")} == weights_before

    # raising EPOCHS trains on from epoch 2 to 3, without a new model-init
    dry = make(out, "EPOCHS=3", "-n", program=program).stdout.decode()
    assert "model-init " not in dry and "--until-epoch 3" in dry
    more = make(out, "EPOCHS=3", program=program).stdout.decode()
    assert "model-init " not in more
    for m in ("mlp", "cnn"):
        assert state(out / m)["epochs"] == 3
        assert [r[0] for r in trace_rows(out / m)] == ["1", "2", "3"]
        assert (out / f"{m}-train.tsv").read_text() == (out / m / "trace.tsv").read_text()
    assert report_epochs(out) == [3, 3]

    # lowering EPOCHS trains nothing and truncates nothing; the report gives the epochs the models have
    traces = {m: (out / f"{m}-train.tsv").read_text() for m in ("mlp", "cnn")}
    make(out, "EPOCHS=1", program=program)
    assert {m: (out / f"{m}-train.tsv").read_text() for m in ("mlp", "cnn")} == traces
    assert report_epochs(out) == [3, 3]

    # data written again with the same content retrain nothing; other data start both models afresh
    for path in (out / "digits").iterdir():
        os.utime(path)
    for _ in range(2):
        touched = make(out, "EPOCHS=1", program=program).stdout.decode()
        assert "cksum " in touched and "model-init " not in touched and "train " not in touched
    run(["kerash", "dataset", "digits", "-o", str(out / "digits"), "--val-fraction", "0.2", "--seed", "2"])
    again = make(out, "EPOCHS=1", program=program).stdout.decode()
    assert again.count("model-init ") == 2
    for m in ("mlp", "cnn"):
        assert state(out / m)["epochs"] == 1
        assert [r[0] for r in trace_rows(out / m)] == ["1"]
    assert report_epochs(out) == [1, 1]


def test_the_make_example_runs_in_parallel_from_clean(tmp_path):
    out = tmp_path / "build"
    proc = make(out, "EPOCHS=1", "-j2")
    assert proc.stdout.decode().count("kerash dataset digits") == 1  # one run writes the four data files
    report = (out / "report.txt").read_text()
    assert report.count("== digits-") == 2
    for m in ("mlp", "cnn"):
        assert state(out / m)["epochs"] == 1
    assert "Nothing to be done" in make(out, "EPOCHS=1", "-j2").stdout.decode()


def test_the_makefile_uses_nothing_newer_than_gnu_make_3_81():
    text = (ROOT / "models" / "Makefile").read_text()
    rules = [line for line in text.splitlines() if not line.startswith(("#", "\t"))]
    for construct in ("&:", "$(file ", ".ONESHELL", "::=", "!=", "undefine ", ".RECIPEPREFIX", ".SHELLFLAGS",
                      "private ", "$(let ", "$(intcmp "):
        assert not any(construct in line for line in rules), construct


def test_the_makefile_makes_its_output_folder_when_the_data_come_from_elsewhere(tmp_path):
    # DATA and VAL given: no data set rule creates OUT before the stamp is written into it
    data = tmp_path / "d"
    data.mkdir()
    for name in ("data.npy", "labels.txt", "val-data.npy", "val-labels.txt"):
        (data / name).write_text("0\n")
    out = tmp_path / "fresh" / "out"
    proc = run(["make", "-n", "-C", str(ROOT / "models"), f"OUT={out}", f"DATA={data}/data.npy {data}/labels.txt",
                f"VAL={data}/val-data.npy {data}/val-labels.txt"], cwd=tmp_path)
    lines = proc.stdout.decode().splitlines()
    first_write = next(i for i, line in enumerate(lines) if str(out) in line and ">" in line)
    assert any(line.strip() == f"mkdir -p {out}" for line in lines[:first_write]), lines[: first_write + 1]
