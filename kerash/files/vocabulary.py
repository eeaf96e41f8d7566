"""Text as token ids and back: a vocabulary of characters or of whitespace-separated words.

The vocabulary file holds one token per line, its line number minus one its
id; id 0 is `<unk>`, which stands for every token the vocabulary lacks.
Characters that would break the one-token-a-line format are escaped:
newline `\\n`, tab `\\t`, carriage return `\\r`, backslash `\\\\`.  It is fitted on
the text given (sorted tokens, so the same text gives the same ids) or read
back for new text.
"""

import numpy as np

from ..errors import DataError

UNKNOWN = "<unk>"
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


def tokens(text, words=False):
    """The tokens of a text: its characters, or its whitespace-separated words."""
    return text.split() if words else list(text)


def fit(token_lists):
    """A vocabulary (list, id → token) of every token found, sorted, after `<unk>` at id 0."""
    found = set()
    for found_tokens in token_lists:
        found.update(found_tokens)
    found.discard(UNKNOWN)
    return [UNKNOWN] + sorted(found)


def encode(found_tokens, vocabulary):
    """(ids (L,) int64, count of tokens the vocabulary lacks)."""
    index = {t: i for i, t in enumerate(vocabulary)}
    ids = np.fromiter((index.get(t, 0) for t in found_tokens), dtype=np.int64, count=len(found_tokens))
    unknown = sum(1 for t in found_tokens if t not in index)
    return ids, unknown


def decode(ids, vocabulary, words=False):
    """The text of token ids; ids outside the vocabulary are refused."""
    ids = np.asarray(ids).reshape(-1)
    bad = (ids < 0) | (ids >= len(vocabulary)) | (ids != np.floor(ids))
    if bad.any():
        raise DataError(f"token id {ids[bad][0]:g} is not one of 0..{len(vocabulary) - 1} (the vocabulary's)")
    pieces = [vocabulary[int(i)] for i in ids]
    return " ".join(pieces) if words else "".join(pieces)


def text_of(vocabulary):
    out = []
    for token in vocabulary:
        out.append("".join(_ESCAPES.get(c, c) for c in token) + "\n")
    return "".join(out)


def parse(text, where):
    vocabulary = []
    for lineno, line in enumerate(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"), 1):
        token, k = [], 0
        while k < len(line):
            if line[k] == "\\" and k + 1 < len(line) and line[k + 1] in _UNESCAPES:
                token.append(_UNESCAPES[line[k + 1]])
                k += 2
            else:
                token.append(line[k])
                k += 1
        if not token:
            raise DataError(f"{where}:{lineno}: an empty token (a vocabulary holds one token per line)")
        vocabulary.append("".join(token))
    if not vocabulary or vocabulary[0] != UNKNOWN:
        raise DataError(f"{where}: a vocabulary starts with {UNKNOWN} (id 0) on its first line")
    if len(set(vocabulary)) != len(vocabulary):
        raise DataError(f"{where}: a token appears twice")
    return vocabulary
