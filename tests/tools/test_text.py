"""kerash text encode and decode (issue 23, item 4): text to token ids for an embedding, and back."""

import numpy as np

from conftest import assert_one_line_error, parse, run


def test_characters_round_trip_with_a_fitted_vocabulary(tmp_path):
    text = "to be\tor not\\to be,\nthat is the question — ça va?\r\n"
    (tmp_path / "t.txt").write_text(text, encoding="utf-8", newline="")
    run(["kerash", "text", "encode", "t.txt", "-v", "chars.txt", "-o", "ids.txt"], cwd=tmp_path)
    vocabulary = (tmp_path / "chars.txt").read_text(encoding="utf-8").split("\n")[:-1]
    unescape = {"\\n": "\n", "\\t": "\t", "\\r": "\r", "\\\\": "\\"}
    tokens = [unescape.get(v, v) for v in vocabulary]
    assert tokens == ["<unk>"] + sorted(set(text))  # sorted after <unk>: the same text, the same ids
    ids = parse((tmp_path / "ids.txt").read_bytes()).reshape(-1)
    assert [tokens[int(i)] for i in ids] == list(text)
    back = run(["kerash", "text", "decode", "ids.txt", "-v", "chars.txt"], cwd=tmp_path).stdout
    assert back.decode("utf-8") == text


def test_words_by_line_make_blocks_and_unknown_words_warn(tmp_path):
    proc = run("printf 'good film\\nbad  film\\n\\nfine\\n' | kerash text encode --words --lines -v words.txt",
               cwd=tmp_path)
    assert (tmp_path / "words.txt").read_text() == "<unk>\nbad\nfilm\nfine\ngood\n"
    assert proc.stdout == b"4\n2\n\n1\n2\n\n3\n"
    proc = run("printf 'good movie film\\n' | kerash text encode --words --lines -v words.txt", cwd=tmp_path)
    assert proc.stdout == b"4\n0\n2\n"
    assert b"1 tokens of <stdin> are not in words.txt: encoded as 0 (<unk>)" in proc.stderr
    out = run("printf '4\\n2\\n\\n1\\n2\\n' | kerash text decode --words -v words.txt", cwd=tmp_path)
    assert out.stdout == b"good film\nbad film\n"


def test_errors(tmp_path):
    proc = run(["kerash", "text", "decode", "-v", "none.txt"], cwd=tmp_path, check=False, input=b"1\n")
    assert_one_line_error(proc, 2, "--vocabulary none.txt: no such file")
    (tmp_path / "v.txt").write_text("<unk>\na\n")
    proc = run(["kerash", "text", "decode", "-v", "v.txt"], cwd=tmp_path, check=False, input=b"1\n2\n")
    assert_one_line_error(proc, 1, "token id 2 is not one of 0..1")
    proc = run(["kerash", "text", "encrypt", "-v", "v.txt"], cwd=tmp_path, check=False, input=b"")
    assert_one_line_error(proc, 2, "unknown action 'encrypt'")
    (tmp_path / "bad.txt").write_text("a\nb\n")
    proc = run(["kerash", "text", "encode", "-v", "bad.txt"], cwd=tmp_path, check=False, input=b"ab")
    assert_one_line_error(proc, 1, "starts with <unk>")
    assert np.array_equal(parse(run(["kerash", "text", "encode", "-v", "v.txt"], cwd=tmp_path,
                                    input=b"ab").stdout).reshape(-1), [1, 0])
