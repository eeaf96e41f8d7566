"""Any readable path is an input; hostile inputs fail fast with little memory; output failures are located errors."""

import gzip
import os
import re
import pty
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import BIN, assert_one_line_error, parse, run, tool_env
from kerash.files import tensorio
from kerash.errors import DataError, ModelError


def npy_with_header(header, data=b""):
    """An npy file with a hand-written header dictionary."""
    text = header.encode("latin1")
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data


# ---------------------------------------------------------------- any readable path


def test_process_substitutions_fifos_and_dev_stdin(tmp_path, rng):
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    np.save(tmp_path / "b.npy", b)
    np.savetxt(tmp_path / "a.txt", a, fmt="%.17g")
    os.mkfifo(tmp_path / "fifo")
    script = (
        "matrix-mul <(cat a.txt) <(cat b.npy) --format npy > ab.npy\n"  # two process substitutions, npy through a pipe
        "cat a.txt > fifo & matrix-transpose fifo > at.txt; wait\n"
        "matrix-add /dev/stdin <(cat a.txt) < a.txt > a2.txt\n"
    )
    run(script, cwd=tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "ab.npy"), a @ b, rtol=1e-14)
    np.testing.assert_array_equal(parse((tmp_path / "at.txt").read_bytes()), a.T)
    np.testing.assert_array_equal(parse((tmp_path / "a2.txt").read_bytes()), 2 * a)


def test_train_reads_compressed_data_through_process_substitution(tmp_path):
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 4, dtype=float)
    y = np.array([[0], [1], [1], [0]] * 4, dtype=float)
    with gzip.open(tmp_path / "x.txt.gz", "wt") as f:
        np.savetxt(f, x, fmt="%g")
    np.savetxt(tmp_path / "x.txt", x, fmt="%g")
    np.savetxt(tmp_path / "y.txt", y, fmt="%g")
    (tmp_path / "m.model").write_text("2 1 1\ninput\ndense 3 tanh\ndense 1 sigmoid\n")
    run("model-init m.model -o a --seed 2 && model-init m.model -o b --seed 2", cwd=tmp_path)
    piped = run("train a -x <(zcat x.txt.gz) -y <(cat y.txt) --epochs 2 --batch-size 4", cwd=tmp_path)
    files = run("train b -x x.txt -y y.txt --epochs 2 --batch-size 4", cwd=tmp_path)
    columns = lambda out: [line.split("\t")[:6] for line in out.decode().splitlines()]  # without the seconds
    assert columns(piped.stdout) == columns(files.stdout)
    assert len(columns(piped.stdout)) == 3


# ---------------------------------------------------------------- hostile inputs


def peak_memory_run(args, cwd):
    """Run a tool; returns (CompletedProcess, its peak resident memory in MiB)."""
    probe = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, timeout=60)\n"
        "sys.stdout.buffer.write(b'%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss + p.stderr)\n"
        "sys.exit(p.returncode)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, cwd=cwd, env=tool_env(), timeout=90)
    peak, _, err = proc.stdout.partition(b"\n")
    proc.stderr = err
    return proc, int(peak) / 1024


def test_hostile_inputs_fail_at_their_first_line_in_little_memory(tmp_path):
    with open(tmp_path / "sparse.bin", "wb") as f:  # 300 MB of NUL bytes, no disk used
        f.truncate(300 << 20)
    for source in ("/dev/urandom", "/dev/zero", "sparse.bin"):
        proc, peak = peak_memory_run([str(BIN / "matrix-transpose"), source], tmp_path)
        assert_one_line_error(proc, 1, "binary data, not a text tensor")
        # the first line that holds binary data: random bytes begin with a blank line now and then
        assert re.search(rf"{re.escape(source)}:[12]: binary data", proc.stderr.decode()), proc.stderr
        assert peak < 100, (source, peak)


def test_hostile_npy_headers_are_located_errors(tmp_path):
    cases = {
        "huge.npy": ("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,), }", "impossibly large"),
        "negative.npy": ("{'descr': '<f8', 'fortran_order': False, 'shape': (-1, 2), }", "negative dimension"),
        "overflow.npy": ("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", "impossibly large"),
        "object.npy": ("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", "numbers only"),
        "dims.npy": ("{'descr': '<f8', 'fortran_order': False, 'shape': (" + "1, " * 40 + "), }", "40 dimensions"),
        "claims.npy": ("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }", "truncated"),
    }
    for name, (header, _) in cases.items():
        (tmp_path / name).write_bytes(npy_with_header(header, b"\0" * 8))
    script = "".join(f"matrix-transpose {name} 2>&1 | head -c 300\n" for name in cases)
    script += "cat claims.npy | matrix-transpose 2>&1 | head -c 300\n"
    lines = run(script, cwd=tmp_path).stdout.decode().splitlines()
    for line, (name, (_, fragment)) in zip(lines, cases.items()):
        assert line.startswith("matrix-transpose: error: ") and fragment in line and name in line, line
        assert "internal error" not in line
    # from a stream, whose size is unknown: allocating 8 TB fails, or else the data runs short
    assert "(<stdin>)" in lines[-1] and ("more than fits in memory" in lines[-1] or "truncated" in lines[-1])


def test_read_npy_checked_refuses_what_is_not_exactly_the_expected_file(tmp_path):
    np.save(tmp_path / "W.npy", np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(tensorio.read_npy_checked(tmp_path / "W.npy", (2, 3)), np.arange(6.0).reshape(2, 3))
    with pytest.raises(ModelError, match=r"W\.npy has shape 2×3 but 3×2 is expected"):
        tensorio.read_npy_checked(tmp_path / "W.npy", (3, 2), error=ModelError)
    with pytest.raises(DataError, match="holds float64 values, float32 expected"):
        tensorio.read_npy_checked(tmp_path / "W.npy", (2, 3), np.float32)
    # a text file: said to be no npy file, and nothing of it is quoted
    (tmp_path / "text.npy").write_text("secret first line\n")
    with pytest.raises(DataError) as caught:
        tensorio.read_npy_checked(tmp_path / "text.npy", (2, 3))
    assert str(caught.value).endswith("text.npy is not an npy file") and "secret" not in str(caught.value)
    # one byte too many, a FIFO without a writer (no hang), a device, a directory
    (tmp_path / "long.npy").write_bytes((tmp_path / "W.npy").read_bytes() + b"\0")
    with pytest.raises(DataError, match="1 unexpected bytes"):
        tensorio.read_npy_checked(tmp_path / "long.npy", (2, 3))
    os.mkfifo(tmp_path / "fifo.npy")
    for path in (tmp_path / "fifo.npy", "/dev/zero", tmp_path):
        with pytest.raises(DataError, match="is not a regular file"):
            tensorio.read_npy_checked(path, (2, 3))


# ---------------------------------------------------------------- closed and failing streams


def test_closed_standard_streams_are_one_line_errors(tmp_path):
    (tmp_path / "x.txt").write_text("1 2\n3 4\n")
    cases = [
        ("matrix-transpose 2>&1 <&-", "cannot read standard input: it is closed"),
        ("tensor-stats - 2>&1 <&-", "cannot read standard input: it is closed"),
        ("matrix-transpose x.txt 2>&1 >&-", "cannot write to standard output: it is closed"),
        ("tensor-stats x.txt 2>&1 >&-", "cannot write to standard output: it is closed"),
        ("tensor-show x.txt 2>&1 >&-", "cannot write to standard output: it is closed"),
        ("kerash batches --samples 4 --batch-size 2 2>&1 >&-", "cannot write to standard output: it is closed"),
    ]
    script = "".join(f'out=$({command}); echo "$out $?"\n' for command, _ in cases)
    lines = run(script, cwd=tmp_path).stdout.decode().splitlines()
    assert len(lines) == len(cases), lines
    for line, (command, message) in zip(lines, cases):
        assert ": error: " + message in line and line.endswith(" 1"), (command, line)


def test_full_disk_and_directories_as_outputs(tmp_path):
    (tmp_path / "x.txt").write_text("1 2\n")
    (tmp_path / "folder").mkdir()
    script = (
        'out=$(matrix-create 300 300 --fill 1.5 2>&1 > /dev/full); echo "$out $?"\n'
        'out=$(tensor-stats x.txt 2>&1 > /dev/full); echo "$out $?"\n'
        'out=$(matrix-transpose x.txt -o folder 2>&1); echo "$out $?"\n'
    )
    lines = run(script, cwd=tmp_path).stdout.decode().splitlines()
    assert lines[0] == "matrix-create: error: cannot write to standard output: No space left on device 1"
    assert lines[1] == "tensor-stats: error: cannot write to standard output: No space left on device 1"
    assert lines[2] == "matrix-transpose: error: cannot write folder: it is a directory 1"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a small tmpfs needs root")
def test_output_on_a_full_file_system(tmp_path):
    full = tmp_path / "small"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (full / "old.txt").write_text("old\n")
        proc = run(["matrix-create", "300", "300", "--fill", "1.5", "-o", str(full / "old.txt")], check=False)
        assert_one_line_error(proc, 1, "cannot write", "old.txt: No space left on device")
        assert sorted(os.listdir(full)) == ["old.txt"] and (full / "old.txt").read_text() == "old\n"
    finally:
        subprocess.run(["umount", str(full)], check=True)


def test_npy_on_a_terminal_is_refused():
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            ["matrix-create", "2", "2", "--format", "npy"], stdout=follower, stderr=subprocess.PIPE, env=tool_env(), timeout=60
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 2
    assert proc.stderr.decode() == (
        "matrix-create: error: refusing to write npy to a terminal; redirect standard output or use --format text\n"
    )


def test_paths_with_newlines_and_control_characters_are_escaped(tmp_path):
    name = "two\nlines\x1b[31m.txt"
    (tmp_path / name).write_text("1 2\n3\n")
    proc = run(["matrix-transpose", name], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "two\\nlines\\x1b[31m.txt:2: expected 2 values, found 1")
    proc = run(["matrix-transpose", "no\nsuch"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "cannot read no\\nsuch: No such file or directory")
