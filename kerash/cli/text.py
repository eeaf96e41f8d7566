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
    if not exists:  # after the ids: a failure to write them leaves no vocabulary behind
        with fs.atomic_file(vocabulary) as f:
            f.write(vocab.text_of(known).encode("utf-8"))
    sys.stdout.flush()


@tool("sample")
def sample(
    model_dir: Annotated[str, typer.Argument(metavar="MODEL", help="A model that reads token ids and answers at every step (embedding, lstm or gru … sequences, dense V softmax).", show_default=False)],
    length: Annotated[int, typer.Option("--length", "-n", metavar="N", help="Tokens to generate.")] = 200,
    prime: Annotated[str, typer.Option("--prime", metavar="TEXT", help="Text to start from (encoded with the vocabulary); default: a newline, or the vocabulary's first token.")] = None,
    temperature: Annotated[float, typer.Option("--temperature", "-t", metavar="T", help="Below 1 safer, above 1 wilder: the probabilities to the power 1/T.")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", metavar="K", help="Draw only among the K likeliest tokens.")] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="S", help="The same seed, the same text.")] = None,
    vocabulary: Annotated[str, typer.Option("--vocabulary", "-v", metavar="FILE", help="The vocabulary of the token ids (default: MODEL/vocabulary.txt, kept by model-init --vocabulary).")] = None,
    words: Annotated[bool, typer.Option("--words", help="Tokens are words: write them separated by spaces.")] = False,
):
    """Generate text token by token from a trained model, printing it as it comes.

    The prime is read in one pass; then each drawn token is fed back one
    step at a time, the lstm and gru states carried along.  Output is
    written as it is produced (a line at a time), so `kerash sample … | head`
    stops it early; the same --seed gives the same text.

    \b
    Example:
      printf 'to be or not to be, that is the question\\n' > t.txt
      kerash text encode t.txt -v chars.txt > ids.txt; head -n -1 ids.txt > x.txt; tail -n +2 ids.txt > y.txt
      printf '1 1 1\\ninput\\nembedding %d 8\\nlstm 16 sequences\\ndense %d softmax\\n' $(wc -l < chars.txt) $(wc -l < chars.txt) > lm.model
      model-init lm.model -o lm --seed 1 --vocabulary chars.txt
      train lm -x x.txt -y y.txt --bptt 10 --batch-size 4 --optimizer adam --lr 0.02 --epochs 30 > /dev/null
      kerash sample lm --length 60 --prime 'to ' --temperature 0.8 --seed 1
    """
    from .. import model
    from ..errors import UsageError
    from ..files import tensorio
    from ..files import vocabulary as vocab
    from ..model.generate import check, generate

    path = vocabulary or os.path.join(model_dir, "vocabulary.txt")
    if not os.path.exists(path):
        raise UsageError(f"no vocabulary: {path} does not exist (give -v FILE, or model-init --vocabulary FILE)")
    known = vocab.parse(tensorio.read_bytes(path, limit=1 << 28).decode("utf-8"), path)
    if length < 0:
        raise UsageError(f"--length must be ≥ 0, not {length}")
    loaded = model.load(model_dir)
    width = loaded.net.layers[1].vocabulary if loaded.net.layers[1].kind == "embedding" else None
    if width is not None and width != len(known):
        raise UsageError(f"{path} holds {len(known)} tokens but the model's embedding reads {width}")
    check(loaded.net, len(known), temperature, top_k)  # before the prime is written
    if prime is None:
        prime = "\n" if "\n" in known else known[min(1, len(known) - 1)]
    ids, unknown = vocab.encode(vocab.tokens(prime, words), known)
    if not len(ids):
        raise UsageError("--prime holds no token")
    if unknown:
        warn(f"{unknown} tokens of --prime are not in {path}: read as <unk>")
    out = sys.stdout
    separator = " " if words else ""
    out.write(separator.join(vocab.tokens(prime, words)) if words else prime)  # the text goes on from the prime
    for k, token in enumerate(generate(loaded.net, ids, length, temperature, top_k, seed)):
        text_piece = separator + known[token]
        out.write(text_piece)
        if "\n" in text_piece:
            out.flush()
    if length and not (known[token].endswith("\n")):
        out.write("\n")
    out.flush()
