"""Errors are one line `TOOL: error: WHAT (WHERE)` with the conventional exit code."""

import io

import numpy as np
import pytest

from conftest import assert_one_line_error, run, tool_env, warm_and_cold

pytestmark = warm_and_cold


def npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def fails(args, code, *fragments, **kwargs):
    proc = run(args, check=False, **kwargs)
    assert_one_line_error(proc, code, *fragments)
    assert proc.stdout == b""
    return proc


# ---------------------------------------------------------------- bad data (exit 1)


def test_ragged_rows_name_file_and_line(tmp_path):
    (tmp_path / "file.txt").write_text("# two columns\n1 2\n3\n4 5\n")
    fails(["matrix-transpose", "file.txt"], 1, "matrix-transpose: error: file.txt:3: expected 2 values, found 1", cwd=tmp_path)
    fails(["matrix-add", "-", "file.txt"], 1, "<stdin>:3: expected 2 values, found 1", cwd=tmp_path,
          input=(tmp_path / "file.txt").read_bytes())


def test_ragged_row_deep_in_a_long_file(tmp_path):
    lines = ["1 2 3"] * 500
    lines[417] = "1 2 3 4"
    (tmp_path / "long.txt").write_text("\n".join(lines) + "\n")
    fails(["matrix-sum", "long.txt"], 1, "long.txt:418: expected 3 values, found 4", cwd=tmp_path)


def test_ragged_row_in_a_large_file_in_process(tmp_path):
    # large enough for the text to be parsed by two processes; the error is in the second half
    from kerash.files import tensorio
    from kerash.errors import DataError

    rows = ["0.123456789012345 " * 9 + "1.5"] * 30000
    rows[29000] = "0.5 0.25"
    data = ("\n".join(rows) + "\n").encode()
    assert len(data) > 4 << 20
    with pytest.raises(DataError, match=r"^big\.txt:29001: expected 10 values, found 2$"):
        tensorio.parse_tensor(data, "big.txt")


def test_non_numeric_token_names_file_and_line(tmp_path):
    (tmp_path / "bad.txt").write_text("1 2\n\n3 abc\n")
    fails(["matrix-scale", "2", "bad.txt"], 1, "bad.txt:3:", "abc", cwd=tmp_path)


def test_empty_input():
    fails(["matrix-sum"], 1, "empty", "<stdin>", input=b"")
    fails(["matrix-transpose", "-"], 1, "empty", input=b"# only a comment\n\n")


def test_truncated_npy(tmp_path):
    data = npy_bytes(np.arange(20.0).reshape(4, 5))
    (tmp_path / "t.npy").write_bytes(data[:-13])
    fails(["matrix-transpose", "t.npy"], 1, "truncated", "t.npy", cwd=tmp_path)
    fails(["matrix-transpose"], 1, "truncated", "<stdin>", input=data[:9])


def test_matrix_mul_shape_mismatch_shows_both_shapes(tmp_path):
    (tmp_path / "a.txt").write_text("1 2\n" * 4)
    (tmp_path / "b.txt").write_text("1 2\n" * 3)
    fails(["matrix-mul", "a.txt", "b.txt"], 1, "matrix-mul: error: cannot multiply 4×2 by 3×2", cwd=tmp_path)


def test_matrix_add_shapes_that_do_not_broadcast(tmp_path):
    (tmp_path / "a.txt").write_text("1 2 3\n4 5 6\n")
    (tmp_path / "b.txt").write_text("1 2\n3 4\n")
    fails(["matrix-add", "a.txt", "b.txt"], 1, "2×3", "2×2", cwd=tmp_path)
    fails(["matrix-hadamard", "a.txt", "-"], 1, "2×3", "1×2", cwd=tmp_path, input="1 2\n")


def test_missing_file(tmp_path):
    fails(["matrix-transpose", "nowhere.txt"], 1, "nowhere.txt", cwd=tmp_path)
    (tmp_path / "a.txt").write_text("1\n")
    fails(["matrix-similar", "0", "a.txt", "nowhere.txt"], 2, "nowhere.txt", cwd=tmp_path)


def test_matrix_similar_unreadable_data_is_exit_2(tmp_path):
    (tmp_path / "a.txt").write_text("1 2\n")
    (tmp_path / "ragged.txt").write_text("1 2\n3\n")
    fails(["matrix-similar", "1e-9", "a.txt", "ragged.txt"], 2, "ragged.txt:2", cwd=tmp_path)


def test_kerash_header_with_wrong_count(tmp_path):
    (tmp_path / "k.txt").write_text("2 2 1\n1\n2\n3\n")
    fails(["matrix-transpose", "k.txt"], 1, "2 2 1", "4", "3", "k.txt", cwd=tmp_path)


def test_bad_axis():
    fails(["matrix-sum", "--axis", "2"], 1, "axis 2", "2×2", input="1 2\n3 4\n")
    fails(["matrix-mean", "--axis", "x"], 2, "--axis", input="1 2\n")


def test_shape_errors_of_tensor_tools(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 5, 5)))
    np.save(tmp_path / "k.npy", np.zeros((4, 3, 3, 3)))
    fails(["conv", "x.npy", "k.npy"], 1, "3 channel", "2", cwd=tmp_path)
    fails(["maxpool", "x.npy", "--size", "7"], 1, "7×7", cwd=tmp_path)
    fails(["maxpool", "x.npy", "--size", "2", "--stride", "0"], 2, "stride", cwd=tmp_path)


# ---------------------------------------------------------------- usage (exit 2)


def test_unknown_option_and_missing_argument():
    fails(["matrix-add", "--frobnicate", "a", "b"], 2, "matrix-add: error:", "--frobnicate")
    fails(["matrix-mul", "a.txt"], 2, "matrix-mul: error:", "Missing argument")
    fails(["matrix-create", "2"], 2, "matrix-create: error:", "Missing argument")
    fails(["kerash", "matrix-transpose", "--bogus"], 2, "kerash matrix-transpose: error:", "--bogus")
    fails(["matrix-create", "2", "2", "--format", "yaml"], 2, "yaml")


def test_unknown_tool_via_kerash():
    fails(["kerash", "matrix-mull"], 2, "kerash: error:", "did you mean", "'matrix-mul'")


def test_both_operands_from_stdin_is_a_usage_error():
    fails(["matrix-mul", "-", "-"], 2, "standard input", input="1\n")
    fails(["matrix-similar", "0", "-", "-"], 2, "standard input", input="1\n")
    fails(["conv", "-", "-"], 2, "standard input", input="1\n")


# ---------------------------------------------------------------- debug and pipes


def test_debug_shows_traceback(tmp_path):
    (tmp_path / "bad.txt").write_text("1 2\n3\n")
    proc = run(["matrix-transpose", "bad.txt"], cwd=tmp_path, env=tool_env(KERASH_DEBUG="1"), check=False)
    assert proc.returncode != 0
    err = proc.stderr.decode()
    assert "Traceback" in err and "DataError" in err and "bad.txt:2" in err


def test_closed_pipe_ends_quietly():
    proc = run("matrix-create 3000 300 --fill 1.5 | head -1; echo \"status ${PIPESTATUS[0]}\" >&2")
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].split() == ["1.5"] * 300
    # nothing but our own status line on standard error, and the status of `yes | head -1`
    assert proc.stderr.decode().splitlines() == ["status 141"]


def test_tensors_of_no_samples_flatten_and_convolve_as_any(tmp_path):
    """Issue 19: tensor-flatten and conv of an npy of shape (0, 2, 1, 1) ended in internal errors."""
    np.save(tmp_path / "none.npy", np.zeros((0, 2, 1, 1)))
    np.save(tmp_path / "k.npy", np.ones((3, 2, 1, 1)))
    run(["tensor-flatten", "none.npy", "-o", "flat.npy"], cwd=tmp_path)
    assert np.load(tmp_path / "flat.npy").shape == (0, 2)
    run(["conv", "none.npy", "k.npy", "-o", "out.npy"], cwd=tmp_path)
    assert np.load(tmp_path / "out.npy").shape == (0, 3, 1, 1)


def test_a_padding_no_memory_can_hold_is_refused_with_the_sizes(tmp_path):
    (tmp_path / "one.txt").write_text("1\n")
    proc = run(["conv", "one.txt", "one.txt", "--pad", "99999999999"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "with padding 99999999999, the images would be 1×1×199999999999×199999999999 values",
                          "more than this machine's memory")


def test_predict_of_no_samples_is_an_empty_table(tmp_path):
    """Issue 19: `printf '# shape: 0 2\\n' | predict M -` and an npy of shape (0, 2) ended in internal errors."""
    from helpers import make_model

    make_model(tmp_path, "2 1 1\ninput\ndense 3 softmax\n")
    np.save(tmp_path / "none.npy", np.zeros((0, 2)))
    assert run(["predict", "m", "-"], cwd=tmp_path, input="# shape: 0 2\n").stdout == b"# shape: 0 3\n"
    run(["predict", "m", "none.npy", "-o", "out.npy"], cwd=tmp_path)
    assert np.load(tmp_path / "out.npy").shape == (0, 3)
    assert run(["predict", "m", "none.npy", "--classes"], cwd=tmp_path).stdout == b"# shape: 0 1\n"


def test_a_line_longer_than_16_mib_is_refused_at_once(tmp_path):
    """Issue 19: a 40 MB single-line text tensor took 2.67 GB and 29 s; a line is capped with a clear error."""
    line = b"0.5 " * (17 * (1 << 20) // 4) + b"\n"
    (tmp_path / "long.txt").write_bytes(line)
    for args, data in ((["tensor-stats", "long.txt"], None), (["tensor-stats", "-"], line)):
        proc = run(args, cwd=tmp_path, input=data, check=False, timeout=60)
        assert_one_line_error(proc, 1, ":1: a line longer than 16 MiB", ".npy")
    shorter = b"0.5 " * (4 * (1 << 20) // 4) + b"\n"  # 4 MiB: a million values, read as ever
    proc = run(["tensor-stats", "-"], cwd=tmp_path, input=shorter)
    assert proc.stdout.decode().splitlines()[1].split("\t")[1] == "1"
