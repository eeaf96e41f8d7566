"""Tensor files: text, .npy and KeraSH formats, output selection, exact round trips, atomic writes."""

import io
import os

import numpy as np
import pytest

from conftest import assert_one_line_error, parse, run, tool_env
from kerash.files import fs, tensorio


def npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def load_npy(data):
    assert data[:6] == b"\x93NUMPY", data[:40]
    return np.load(io.BytesIO(data), allow_pickle=False)


def text_of(array):
    """Rows of repr(float) joined by spaces: an independent text writer."""
    return "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in np.atleast_2d(array))


def floats_of(text):
    """Every value of a text tensor, read with Python's float (independent of kerash)."""
    rows = [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return np.array([[float(t) for t in row] for row in rows])


def same_bits(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.uint64), b.view(np.uint64))


def awkward_matrix(rng, rows, cols):
    """Random float64 bit patterns (all exponents, subnormals) plus ±0, ±inf, nan and integers."""
    a = rng.integers(0, 2**64, size=(rows, cols), dtype=np.uint64).view(np.float64).copy()
    a[np.isnan(a)] = np.nan  # only the canonical NaN has a text spelling
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -3.0, 2.0**53, 5e-324, -5e-324,
                        1.7976931348623157e308, 2.2250738585072014e-308, 0.1, 1 / 3])
    mask = rng.random((rows, cols)) < 0.3
    a[mask] = rng.choice(special, size=int(mask.sum()))
    mask = rng.random((rows, cols)) < 0.2
    a[mask] = rng.integers(-10**6, 10**6, size=int(mask.sum()))
    return a


# ---------------------------------------------------------------- reading text


def test_text_separators_comments_and_crlf(tmp_path):
    expected = np.array([[1.5, -2.0, 3e-7], [4.0, 5.25, -6e10], [0.0, 7.0, 8.0]])
    text = (
        "# a comment line\n"
        "1.5 -2 3e-7\n"
        "\n"
        "4\t5.25\t-6e10\r\n"
        "  # indented comment\n"
        "0 \t7   8\n"
    )
    (tmp_path / "m.txt").write_text(text)
    csv = "# a comment line\n1.5,-2, 3e-7\n\n4,5.25,-6e10\r\n  # indented comment\n 0 ,7,8\n"
    (tmp_path / "m.csv").write_text(csv)
    for name in ("m.txt", "m.csv"):
        proc = run(["matrix-transpose", name], cwd=tmp_path)
        np.testing.assert_array_equal(parse(proc.stdout), expected.T)
    # the first data line sets the separator: a comma in a file separated by spaces is an error
    (tmp_path / "mixed.txt").write_text("1.5 2\n0,7 8\n")
    proc = run(["matrix-transpose", "mixed.txt"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "mixed.txt:2: not a number: '0,7'", "decimal comma")


def test_shape_header_gives_nd_tensor(tmp_path, rng):
    t = rng.normal(size=(2, 3, 4))
    body = text_of(t.reshape(-1, 4))
    (tmp_path / "t.txt").write_text("# shape: 2 3 4\n" + body)
    proc = run(["matrix-scale", "2", "t.txt", "--format", "npy"], cwd=tmp_path)
    out = load_npy(proc.stdout)
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, 2 * t)


def test_nd_text_output_has_shape_header(rng):
    t = rng.integers(-9, 9, size=(2, 2, 3)).astype(float)
    proc = run(["matrix-scale", "1", "-"], input=npy_bytes(t))
    lines = proc.stdout.decode().splitlines()
    assert lines[0].split() == ["#", "shape:", "2", "2", "3"]
    np.testing.assert_array_equal(parse(proc.stdout).reshape(2, 2, 3), t)


# ---------------------------------------------------------------- npy


def test_npy_recognised_by_magic_in_file_named_txt(tmp_path, rng):
    a = rng.normal(size=(3, 5))
    (tmp_path / "looks_like_text.txt").write_bytes(npy_bytes(a))
    proc = run(["matrix-transpose", "looks_like_text.txt", "--format", "npy"], cwd=tmp_path)
    assert same_bits(load_npy(proc.stdout), a.T)


def test_npy_from_stdin_and_dash(rng):
    a = rng.normal(size=(4, 2))
    for args in (["matrix-transpose", "--format", "npy"], ["matrix-transpose", "-", "--format", "npy"]):
        proc = run(args, input=npy_bytes(a))
        assert same_bits(load_npy(proc.stdout), a.T)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.int32).reshape(3, 4),
        np.asfortranarray(np.arange(12.0).reshape(3, 4) / 7),
        (np.arange(6.0).reshape(2, 3) / 3).astype(">f8"),
        np.array([[True, False], [False, True]]),
        np.arange(6, dtype=np.uint8).reshape(2, 3),
    ],
    ids=["int32", "fortran", "big-endian", "bool", "uint8"],
)
def test_npy_dtypes_and_layouts_read_in_process(array):
    out = tensorio.parse_tensor(npy_bytes(array), "x.npy")
    assert out.shape == array.shape
    assert out.dtype.kind == "f"
    np.testing.assert_array_equal(out, array.astype(np.float64))


def test_float32_npy_stays_float32_in_process(rng):
    a = rng.normal(size=(3, 3)).astype(np.float32)
    out = tensorio.parse_tensor(npy_bytes(a))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, a)


# ---------------------------------------------------------------- KeraSH format


def kerash_text(t):
    """KeraSH file of a (h, w) or (d, h, w) array: 'w h d' then values one per line, x fastest."""
    t3 = t if t.ndim == 3 else t[None]
    d, h, w = t3.shape
    return f"{w} {h} {d}\n" + "".join(f"{float(v)!r}\n" for v in t3.ravel())


@pytest.mark.parametrize("shape", [(2, 3), (1, 4), (3, 1), (2, 3, 4), (5, 1, 2)])
def test_kerash_input_recognised(tmp_path, rng, shape):
    t = rng.normal(size=shape)
    (tmp_path / "k.txt").write_text(kerash_text(t))
    proc = run(["matrix-scale", "1", "k.txt", "--format", "npy"], cwd=tmp_path)
    out = load_npy(proc.stdout)
    assert out.shape == shape
    assert same_bits(out, t)


def test_kerash_layout_x_fastest_in_process():
    # w=3, h=2, d=1: values 1..6 fill the first row (x = 0, 1, 2) before the second
    out = tensorio.parse_tensor(b"3 2 1\n1\n2\n3\n4\n5\n6\n")
    np.testing.assert_array_equal(out, [[1, 2, 3], [4, 5, 6]])
    out = tensorio.parse_tensor(b"1 2 2\n1\n2\n3\n4\n")
    np.testing.assert_array_equal(out, [[[1], [2]], [[3], [4]]])


def test_kerash_output_format(rng):
    t = rng.normal(size=(2, 3, 4))
    proc = run(["matrix-scale", "1", "--format", "kerash"], input=npy_bytes(t))
    lines = proc.stdout.decode().split("\n")
    assert lines[0].split() == ["4", "3", "2"]
    values = np.array([float(v) for v in lines[1:] if v])
    assert same_bits(values, t.ravel())
    # and it reads back as the same tensor
    proc = run(["matrix-scale", "1", "--format", "npy"], input=proc.stdout)
    assert same_bits(load_npy(proc.stdout), t)


# ---------------------------------------------------------------- output selection


def test_output_format_choices(tmp_path):
    expected = np.full((2, 3), 2.5)
    proc = run(["matrix-create", "2", "3", "--fill", "2.5", "--format", "npy"])
    np.testing.assert_array_equal(load_npy(proc.stdout), expected)

    run(["matrix-create", "2", "3", "--fill", "2.5", "-o", "w.npy"], cwd=tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy"), expected)

    run(["matrix-create", "2", "3", "--fill", "2.5", "-o", "w.txt"], cwd=tmp_path)
    np.testing.assert_array_equal(parse((tmp_path / "w.txt").read_bytes()), expected)

    # --format wins over the .npy suffix
    run(["matrix-create", "2", "3", "--fill", "2.5", "-o", "t.npy", "--format", "text"], cwd=tmp_path)
    np.testing.assert_array_equal(parse((tmp_path / "t.npy").read_bytes()), expected)
    assert not list(tmp_path.glob("*.tmp-*"))


def test_kerash_format_env_sets_a_whole_pipeline():
    env = tool_env(KERASH_FORMAT="npy")
    proc = run("matrix-create 2 3 --fill 2 | matrix-scale 3 | matrix-transpose", env=env)
    out = load_npy(proc.stdout)
    np.testing.assert_array_equal(out, np.full((3, 2), 6.0))
    # --format still overrides the environment
    proc = run("matrix-create 1 2 --fill 2 | matrix-scale 3 --format text", env=env)
    np.testing.assert_array_equal(parse(proc.stdout), [[6.0, 6.0]])


# ---------------------------------------------------------------- exact round trips


def test_text_round_trip_bit_exact_in_process(rng):
    for rows, cols in [(1, 1), (1, 7), (9, 3), (40, 17), (200, 2), (3, 30)]:
        a = awkward_matrix(rng, rows, cols)
        text = b"".join(bytes(c) for c in tensorio.tensor_chunks(a, "text"))
        # read back independently (Python float) and by kerash
        assert same_bits(floats_of(text.decode()), a)
        assert same_bits(tensorio.parse_tensor(text), a)


def test_integer_matrices_print_as_integers_and_round_trip(rng):
    a = rng.integers(-(2**53) + 1, 2**53, size=(5, 4)).astype(np.float64)
    text = b"".join(bytes(c) for c in tensorio.tensor_chunks(a, "text")).decode()
    assert "." not in text and "e" not in text
    assert same_bits(floats_of(text), a)
    # a single negative zero keeps the whole matrix in float notation
    a[0, 0] = -0.0
    text = b"".join(bytes(c) for c in tensorio.tensor_chunks(a, "text")).decode()
    assert same_bits(floats_of(text), a)


def test_large_round_trip_uses_both_halves_in_process(rng):
    # above the size where reading and writing are split between two processes
    a = awkward_matrix(rng, 1200, 500)
    text = b"".join(bytes(c) for c in tensorio.tensor_chunks(a, "text"))
    assert len(text) > 4 << 20
    assert text.count(b"\n") == 1200
    assert same_bits(tensorio.parse_tensor(text), a)


def test_round_trip_through_the_tools(tmp_path, rng):
    a = awkward_matrix(rng, 23, 11)
    (tmp_path / "a.txt").write_text(text_of(a))
    (tmp_path / "a.npy").write_bytes(npy_bytes(a))
    # text in, npy out
    proc = run(["matrix-transpose", "a.txt", "--format", "npy"], cwd=tmp_path)
    assert same_bits(load_npy(proc.stdout), a.T)
    # npy in, text out, read with Python's float
    proc = run(["matrix-transpose", "a.npy"], cwd=tmp_path)
    assert same_bits(floats_of(proc.stdout.decode()), a.T)
    # text through a pipe of text tools
    proc = run("matrix-transpose a.txt | matrix-transpose -", cwd=tmp_path)
    assert same_bits(floats_of(proc.stdout.decode()), a)


# ---------------------------------------------------------------- atomic writes


def test_output_file_is_replaced_atomically(tmp_path):
    run(["matrix-create", "3", "2", "--fill", "4", "-o", "out.txt"], cwd=tmp_path)
    np.testing.assert_array_equal(parse((tmp_path / "out.txt").read_bytes()), np.full((3, 2), 4.0))
    run(["matrix-create", "1", "2", "--fill", "5", "-o", "out.txt"], cwd=tmp_path)
    np.testing.assert_array_equal(parse((tmp_path / "out.txt").read_bytes()), [[5.0, 5.0]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_failed_run_leaves_previous_output_unchanged(tmp_path, rng):
    (tmp_path / "out.txt").write_text("previous content\n")
    (tmp_path / "bad.txt").write_text("1 2\n3\n")
    proc = run(["matrix-transpose", "bad.txt", "-o", "out.txt"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "bad.txt:2")
    # an error raised while the output is being written (a 4-D tensor has no KeraSH form)
    (tmp_path / "batch.npy").write_bytes(npy_bytes(rng.normal(size=(2, 1, 2, 2))))
    proc = run(["matrix-scale", "1", "batch.npy", "-o", "out.txt", "--format", "kerash"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "KeraSH")
    assert (tmp_path / "out.txt").read_text() == "previous content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "batch.npy", "out.txt"]


def test_atomic_file_in_process_keeps_old_content_on_error(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"old\n")
    with pytest.raises(RuntimeError):
        with fs.atomic_file(path) as f:
            f.write(b"half of the new")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old\n"
    assert os.listdir(tmp_path) == ["x.txt"]
