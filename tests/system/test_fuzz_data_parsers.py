"""Fuzzing the parsers: any input ends in a value or in kerash's own error, never another exception.

Each target is a name, a hypothesis strategy of inputs, and a function that
parses one input; add a parser by adding a line to TARGETS.  The number of
examples is bounded and the search derandomised, so a run takes seconds and
repeats itself.
"""

import io
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerash.files import tensorio, textformat
from kerash.errors import KerashError
from kerash.training import params_file

# Bytes that make numbers and break them: digits, signs, points, exponents,
# separators, quotes, comments, letters of nan/inf, control and non-ASCII bytes.
_TEXT_ALPHABET = list(b"0123456789+-.eE ,;\t\r\n\"#nafiNAFIx") + [0, 1, 0x1B, 0x7F, 0xC2, 0xB2, 0xE9, 0xFF]
text_inputs = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(_TEXT_ALPHABET), max_size=300).map(bytes),
    st.lists(st.sampled_from([b"1", b"-2.5", b"1e999", b"nan", b" ", b",", b";", b"\n", b"\r\n", b'"', b"# shape: 2 2\n", b"# shape: 0 1152921504606846976\n",
                              b"\xef\xbb\xbf", b"3 2 1\n", b"a,b\n", b"1,5", b"9" * 25, b"0.", b".e1"]), max_size=60).map(b"".join),
)

_DESCRS = ["<f8", "<f4", ">f8", "<f2", "<f16", "<i4", "|b1", "|u1", "<c16", "|O", "<U3", "V8", "xyz", "", "[('a', '<f8')]"]
_DIMS = st.one_of(st.integers(-3, 5), st.integers(-(2**70), 2**70), st.sampled_from([2**31, 2**32, 2**62, 2**63, -(2**63)]))
npy_headers = st.fixed_dictionaries({
    "descr": st.sampled_from(_DESCRS),
    "fortran_order": st.sampled_from(["True", "False", "1", "None"]),
    "shape": st.one_of(st.lists(_DIMS, max_size=6), st.lists(st.integers(0, 2), min_size=30, max_size=40)).map(
        lambda dims: "(" + "".join(f"{d}, " for d in dims) + ")"
    ),
})


def npy_file(header, data, version):
    text = "{" + ", ".join(f"'{k}': {v if k != 'descr' or v.startswith('[') else repr(v)}" for k, v in header.items()) + "}"
    body = text.encode("latin1") + b"\n"
    size = len(body).to_bytes(2 if version == 1 else 4, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + size + body + data


npy_inputs = st.one_of(
    st.builds(npy_file, npy_headers, st.binary(max_size=64), st.sampled_from([1, 2, 3, 9])),
    st.binary(max_size=80).map(lambda tail: b"\x93NUMPY" + tail),
)

params_inputs = st.one_of(
    st.binary(max_size=200),
    st.lists(
        st.tuples(
            st.sampled_from(["seed", "epochs", "lr", "batch-size", "optimizer", "restore-best", "data", "bogus", "lr#"]),
            st.sampled_from(["-1", "0", "3", "1e999", "nan", "x", "", "true", "\xff", "²", "9" * 30, "../x"]),
        ),
        max_size=8,
    ).map(lambda pairs: "".join(f"{k} {v}\n" for k, v in pairs).encode("utf-8", "surrogateescape")),
)


def parse_params(data):
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, params_file.PARAMS_FILE), "wb") as f:
            f.write(data)
        return params_file.read_params(folder)


def parse_in_small_blocks(data):
    """The text reader with 16-byte blocks: lines across blocks, lines longer than a block."""
    saved, textformat.BLOCK = textformat.BLOCK, 16
    try:
        return tensorio.parse_tensor(data, "fuzz.txt")
    finally:
        textformat.BLOCK = saved


TARGETS = [
    ("text", text_inputs, lambda data: tensorio.parse_tensor(data, "fuzz.txt")),
    ("text-small-blocks", text_inputs, parse_in_small_blocks),
    ("npy", npy_inputs, lambda data: tensorio.parse_tensor(data, "fuzz.npy")),
    ("npy-stream", npy_inputs, lambda data: tensorio.read_table(io.BufferedReader(io.BytesIO(data)), "fuzz").array),
    ("params", params_inputs, parse_params),
]


@pytest.mark.parametrize("strategy, parse", [t[1:] for t in TARGETS], ids=[t[0] for t in TARGETS])
def test_parsers_raise_only_kerash_errors(strategy, parse):
    @settings(max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def check(data):
        try:
            result = parse(data)
        except KerashError as e:
            message = str(e)
            assert "\n" not in message and len(message) < 400, message
        else:
            if isinstance(result, np.ndarray):
                assert result.dtype in (np.float32, np.float64)

    check()


def test_a_long_first_line_after_a_blank_line_is_checked_as_one_line():
    # found by the fuzzer: the long-line check saw the blank line's newline inside the line
    with pytest.raises(KerashError, match=r"fuzz.txt:2: not a number: '!'"):
        parse_in_small_blocks(b"\n              !,")
    assert parse_in_small_blocks(b"\n\n1, 2\n" + b" " * 20 + b"3, 4\n").tolist() == [[1, 2], [3, 4]]
