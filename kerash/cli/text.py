"""kerash text: text to token ids and back."""

import io
import os
import sys
from typing import Annotated

import typer

from .options import Output
from .runner import tool, warn


@tool("text")
def text(
    action: Annotated[str, typer.Argument(metavar="ACTION", help="encode (text to token ids) or decode (token ids to text).", show_default=False)],
    input: Annotated[str, typer.Argument(metavar="[INPUT]", help="The text (encode) or the ids (decode); '-' or omitted: standard input.")] = "-",
    vocabulary: Annotated[str, typer.Option("--vocabulary", "-v", metavar="FILE", help="The vocabulary: encode fits it on the text and writes it when FILE does not exist, else reads it; decode reads it.", show_default=False)] = ...,
    words: Annotated[bool, typer.Option("--words", help="Tokens are whitespace-separated words, not characters.")] = False,
    lines: Annotated[bool, typer.Option("--lines", help="encode: each line of the text is a sequence of its own (a block of ids, blank lines between), for models that read one sequence per line; decode: write a line per block.")] = False,
    output: Output = None,
):
    """Turn text into token ids for an embedding layer, and token ids back into text.

    encode writes one id per line: the characters of the text (or its words
    with --words) in order, a single sequence for training over one stream;
    with --lines, a block of ids per line of text, blank lines between (a
    sequence per line).  The vocabulary (one token per line; id 0 is <unk>,
    for tokens it lacks — counted in a warning) is fitted on the text when
    FILE does not exist yet, sorted, so the same text gives the same ids.
    decode reads ids (one per line, blocks between blank lines) and writes
    their text: characters joined, words separated by spaces, a line per
    block.

    \b
    Example:
      printf 'to be or not to be\\n' | kerash text encode -v chars.txt > ids.txt
      kerash text decode ids.txt -v chars.txt
      printf 'good film\\nbad film\\n' | kerash text encode --words --lines -v words.txt
    """
    from ..errors import DataError, UsageError
    from ..files import fs, sequences, tensorio
    from ..files import vocabulary as vocab

    if action not in ("encode", "decode"):
        from ..errors import close_matches

        raise UsageError(f"unknown action {action!r}{close_matches(action, ['encode', 'decode'])}: encode or decode")
    where = tensorio.source_name(input)
    data = tensorio.read_bytes(input, limit=1 << 32)
    exists = os.path.exists(vocabulary)
    if exists:
        known = vocab.parse(tensorio.read_bytes(vocabulary, limit=1 << 28).decode("utf-8", "strict"), vocabulary)
    elif action == "decode":
        raise UsageError(f"--vocabulary {vocabulary}: no such file (kerash text encode writes it)")
    if action == "decode":
        blocks = sequences.block_lengths(data)
        ids = tensorio.read_table(io.BytesIO(data), where).array.reshape(-1) if blocks else []
        pieces = [vocab.decode(part, known, words) for part in sequences.split(ids, blocks, where)] if blocks else []
        joiner = "\n" if (lines or len(pieces) > 1) else ""
        text_out = joiner.join(pieces) + ("\n" if lines or len(pieces) > 1 else "")
        tensorio.write_chunks([text_out.encode("utf-8")], output)
        return
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: not UTF-8 text (byte {e.start + 1})") from None
    parts = [line for line in content.split("\n") if line.strip()] if lines else [content]
    token_lists = [vocab.tokens(part, words) for part in parts]
    if not exists:
        known = vocab.fit(token_lists)
        with fs.atomic_file(vocabulary) as f:
            f.write(vocab.text_of(known).encode("utf-8"))
    blocks, unknown = [], 0
    for found in token_lists:
        if not found:
            continue
        ids, missing = vocab.encode(found, known)
        unknown += missing
        blocks.append("".join(f"{i}\n" for i in ids.tolist()))
    if unknown:
        warn(f"{unknown} tokens of {where} are not in {vocabulary}: encoded as 0 (<unk>)")
    tensorio.write_chunks(["\n".join(blocks).encode()], output)
    sys.stdout.flush()
