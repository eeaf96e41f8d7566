"""The text reader in-process: every value exact against Python's float, blocks, two processes, messages."""

import io
import random
import re
from decimal import Decimal

import numpy as np
import pytest

from kerash.files import tensorio, textformat
from kerash.errors import DataError


def random_token(rnd, rng):
    """A number as people and programs write them: repr, %e, %f, integers, long mantissas, specials."""
    kind = rnd.random()
    if kind < 0.25:
        bits = rng.integers(0, 2**64, dtype=np.uint64).view(np.float64)
        return repr(float(bits)) if np.isfinite(bits) else "0.5"
    if kind < 0.4:
        return repr(float(rng.standard_normal()))
    if kind < 0.5:
        return "%.*e" % (rnd.randint(0, 25), rng.standard_normal() * 10.0 ** rnd.randint(-300, 300))
    if kind < 0.6:
        return str(rnd.randint(-(10 ** rnd.randint(0, 25)), 10 ** rnd.randint(0, 25)))
    if kind < 0.7:
        return "%.*f" % (rnd.randint(0, 30), rng.standard_normal() * 10.0 ** rnd.randint(-6, 15))
    if kind < 0.8:
        return rnd.choice([
            "nan", "inf", "-inf", "NaN", "+inf", "Infinity", "-0", "-0.0", "0e999", ".5", "5.", "+.5e-3",
            "-5.E+3", "1e-320", "4.9e-324", "2.2250738585072014e-308", "1.7976931348623157e308",
            "9007199254740993", "9007199254740993.0", "0.000000000000000000000000000012345678901234567890123",
            "00000000000000000000000000012", "123456789012345678901234567890", "1e+0005",
        ])
    digits = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(1, 30)))
    point = rnd.randint(0, len(digits))
    exponent = "e%d" % rnd.randint(-330, 330) if rnd.random() < 0.5 else ""
    return digits[:point] + "." + digits[point:] + exponent


def same(a, b):
    """Equal values, NaN equal to NaN, and the same sign of zero."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("sep", [" ", "\t", ",", ", ", ";", " ; "])
def test_every_value_is_exactly_pythons_float(sep):
    rnd, rng = random.Random(sep), np.random.default_rng(len(sep))
    for _ in range(40):
        rows, cols = rnd.randint(1, 20), rnd.randint(1, 10)
        table = [[random_token(rnd, rng) for _ in range(cols)] for _ in range(rows)]
        expected = np.array([[float(t) for t in row] for row in table])
        if any(abs(float(t)) == np.inf and "inf" not in t.lower() for row in table for t in row):
            continue  # overflow is an error, checked elsewhere
        ending = rnd.choice(["\n", "\r\n"])
        text = ending.join(sep.join(row) for row in table) + rnd.choice(["", ending])
        got = tensorio.parse_tensor(text.encode(), "t.txt")
        assert same(got, expected), (text[:300], got, expected)


def test_values_near_rounding_midpoints_are_exact():
    # decimals on, or a hair off, the midpoint between two floats: there the
    # double-double product cannot decide the rounding alone
    rng = np.random.default_rng(5)
    x = rng.standard_normal(2000) * 10.0 ** rng.integers(-30, 30, 2000)
    tokens = []
    for a, b in zip(x.tolist(), np.nextafter(x, np.inf).tolist()):
        mid = (Decimal(a) + Decimal(b)) / 2
        for delta in ("0", "1e-40", "-1e-40"):
            tokens.append(format(mid * (1 + Decimal(delta)), ".40e"))
            tokens.append(format(mid * (1 + Decimal(delta)), ".18e"))
    got = tensorio.parse_tensor(("\n".join(tokens) + "\n").encode())
    assert same(got.ravel(), [float(t) for t in tokens])


def test_blocks_and_long_lines(monkeypatch):
    # tiny blocks: lines span blocks, and a line longer than a block is checked as it grows
    monkeypatch.setattr(textformat, "BLOCK", 64)
    rng = np.random.default_rng(2)
    a = rng.standard_normal((7, 40))
    text = "".join(" ".join(map(repr, row)) + "\n" for row in a.tolist())
    assert same(tensorio.parse_tensor(text.encode()), a)
    bad = text.replace(repr(a.tolist()[3][30]), "x")
    with pytest.raises(DataError, match=r"^t:4: not a number: 'x'$"):
        tensorio.parse_tensor(bad.encode(), "t")
    with pytest.raises(DataError, match="^t:1: binary data"):
        tensorio.parse_tensor(b"1 2 3 4 5 6 7 8 9 " * 20 + b"\x00" * 200, "t")


def test_two_processes_agree_and_locate_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(textformat, "PARALLEL_BYTES", 1 << 12)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((600, 9))
    lines = ["# a comment", *[" ".join(map(repr, row)) for row in a.tolist()]]
    path = tmp_path / "big.txt"
    path.write_text("\n".join(lines) + "\n")
    assert same(tensorio.read_tensor(str(path)), a)
    # an error in the second half is reported with its line number in the whole file
    lines[500] = lines[500] + " 1"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"big\.txt:501: expected 9 values, found 10$"):
        tensorio.read_tensor(str(path))
    # with errors in both halves, the first one wins
    lines[10] = "1 2"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"big\.txt:11: expected 9 values, found 2$"):
        tensorio.read_tensor(str(path))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_two_processes_share_one_buffer_and_close_the_gap_of_blank_and_comment_lines(tmp_path, monkeypatch, dtype):
    # the second half is written after room for as many rows as the first half has lines; comment and
    # blank lines (and a header) there leave a gap that is closed in place
    monkeypatch.setattr(textformat, "PARALLEL_BYTES", 1 << 12)
    rng = np.random.default_rng(4)
    a = rng.standard_normal((900, 7))
    lines = ["x0 x1 x2 x3 x4 x5 x6"]
    for k, row in enumerate(a.tolist()):
        lines.append(" ".join(map(repr, row)))
        if k % 97 == 5:
            lines += ["", "# a note", "   "]
    path = tmp_path / "gaps.txt"
    path.write_text("\n".join(lines) + "\n")
    got = tensorio.read_tensor(str(path), dtype)
    assert got.dtype == dtype and got.shape == a.shape
    assert np.array_equal(got, a.astype(dtype))


@pytest.mark.parametrize(
    "text, message",
    [
        (b"1 2\n3\n", "t:2: expected 2 values, found 1"),
        (b"1 2\n3 4e\n", "t:2: not a number: '4e'"),
        (b"1 2\n1e999 3\n", "t:2: '1e999' is too large for a float64 (it overflows to infinity)"),
        (b"1 2\n-1e400 3\n", "t:2: '-1e400' is too large"),
        (b"1\xc2\xb2 3\n", "t:1: not a number: '1\u00b2'"),
        (b"1 2\n3 \x1b[31m\n", "t:2: binary data, not a text tensor"),
        (b"# shape: 2 x\n1 2\n", "t:1: bad shape header"),
        (b"# shape: 9223372036854775808 1\n1\n", "t:1: bad shape header: dimensions too large"),
        (b"# shape: -2 1\n1\n", "t:1: bad shape header"),
        (b"1 2\r3 4\r", "t:1: a carriage return inside the line"),
        (b"1 2 # note\n", "t:1: not a number: '#'"),
        (b"1--2 3\n", "t:1: not a number: '1--2'"),
        (b"1e5e5 2\n", "t:1: not a number: '1e5e5'"),
        (b"1_000 2\n", "t:1: not a number: '1_000'"),
        (b"0x10 2\n", "t:1: not a number: '0x10'"),
        (b"a b\n", "a header row (2 names) and no numbers found (t)"),
        (b"\xff\xfe1\x002\x00", "t is UTF-16 text"),
    ],
)
def test_messages(text, message):
    with pytest.raises(DataError) as caught:
        tensorio.parse_tensor(text, "t")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


def test_an_error_quotes_a_short_escaped_excerpt():
    with pytest.raises(DataError) as caught:
        tensorio.parse_tensor(b"1 2\n3 " + b"\xe9\x07" * 5000 + b"\n", "t")
    assert "binary data" in str(caught.value) and len(str(caught.value)) < 80
    with pytest.raises(DataError) as caught:
        tensorio.parse_tensor(b"1 2\n3 " + b"abc" * 5000 + b"\n", "t")
    assert str(caught.value) == "t:2: not a number: 'abcabcabcabcabcabcabcabc…'"


def test_header_rows_give_column_names():
    for text, columns in [
        (b"x,y\n1,2\n", ("x", "y")),
        (b"\xef\xbb\xbf\"sepal length\";\"Gr\xc3\xb6\xc3\x9fe\"\r\n1,5;2\r\n", ("sepal length", "Größe")),
        (b"a b c\n1 2 3\n4 5 6\n", ("a", "b", "c")),
        (b"nan 1\n2 3\n", None),
        (b"1,2\n", None),
    ]:
        table = tensorio.read_table(io.BytesIO(text))
        assert table.columns == columns and table.format == "text" and table.array.dtype == np.float64
    assert tensorio.read_table(io.BytesIO(b"x;y\n1,5;2\n")).array.tolist() == [[1.5, 2.0]]
    assert tensorio.read_table(io.BytesIO(b"3 1 1\n1\n2\n3\n")).format == "kerash"


# ---------------------------------------------------------------- rows a block at a time


def _blocks(data, rows):
    return list(tensorio.read_row_blocks(io.BytesIO(data), rows, where="s"))


@pytest.mark.parametrize("rows", [1, 7, 1000])
def test_row_blocks_of_a_stream_are_the_tensor_cut(rows, rng):
    """A stream (no size: parsed as it is read, in parser blocks of about a MiB) cut into blocks of exactly `rows`
    rows: together they are the tensor read whole, whatever the header, comments and blank lines."""
    x = rng.standard_normal((3000, 5))
    lines = [" ".join(map(repr, r)) for r in x.tolist()]
    lines[10:10] = ["# a comment", ""]
    data = ("a,b,c,d,e\n" + "\n".join(l.replace(" ", ",") for l in lines) + "\n").encode()
    for source in (data, b"# shape: 3000 5\n" + "\n".join(lines).encode()):
        blocks = _blocks(source, rows)
        assert [len(b) for b in blocks[:-1]] == [rows] * (len(blocks) - 1) and 0 < len(blocks[-1]) <= rows
        np.testing.assert_array_equal(np.concatenate(blocks), x)
        np.testing.assert_array_equal(np.concatenate(blocks), tensorio.parse_tensor(source))


def test_row_blocks_of_what_is_not_rows_come_whole():
    cube = _blocks(b"# shape: 2 1 2\n1 2\n3 4\n", 1)
    assert len(cube) == 1 and cube[0].shape == (2, 1, 2)
    kerash = _blocks(b"2 1 1\n5\n6\n", 1)  # KeraSH's 'w h d' then the values
    assert len(kerash) == 1 and kerash[0].tolist() == [[5.0, 6.0]]
    assert [b.shape for b in _blocks(b"# shape: 0 2\n", 4)] == [(0, 2)]


def test_row_blocks_report_errors_with_the_line_of_the_whole_input():
    good = b"1 2\n" * 200_000  # more than a parser block: the bad line comes in a later one
    with pytest.raises(DataError, match=r"^s:200002: "):
        _blocks(good + b"3 4\n5\n", 1000)
    with pytest.raises(DataError, match="shape 5 2 does not match 4 rows"):
        _blocks(b"# shape: 5 2\n" + b"1 2\n" * 4, 3)
    with pytest.raises(DataError, match="empty input"):
        _blocks(b"\n# nothing\n", 3)


@pytest.mark.parametrize("token", ["NA", "N/A", "?", "null", "-"])
def test_a_spreadsheets_missing_value_gets_a_hint(token):
    """Issue 24, item 2 (the message): NA and its kind say what they are and what to write."""
    with pytest.raises(DataError, match=rf"s:3: not a number: '{re.escape(token)}' \(a missing value\? write it nan"):
        tensorio.parse_tensor(f"a,b\n1,2\n3,{token}\n".encode(), "s")
