"""Named exceptions: the command layer turns them into one-line messages.

Exit codes follow the conventions: 1 for bad data or a failed run, 2 for bad
usage.  Library code raises these and never prints.
"""


class KerashError(Exception):
    """Base of every error kerash reports to a user."""

    exit_code = 1


class DataError(KerashError):
    """The data is unreadable or inconsistent (ragged rows, bad numbers, truncated files)."""


class ShapeError(DataError):
    """Operand shapes do not fit together."""


class ModelError(KerashError):
    """A model description or model directory is invalid."""


class TrainingError(KerashError):
    """Training could not go on (a worker died, the loss became NaN, …)."""


class UsageError(KerashError):
    """The command line asks for something impossible."""

    exit_code = 2


def close_matches(name, choices):
    """A ', did you mean …?' suffix for an unknown name, or '' when nothing is close."""
    import difflib

    found = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    if not found:
        return ""
    return "; did you mean " + " or ".join(repr(f) for f in found) + "?"


def printable(text):
    """`text` with control and other unprintable characters escaped, so that a message stays one line."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch.isprintable():
            out.append(ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as os.fsdecode keeps it
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


QUOTE_LIMIT = 60  # characters of a quoted excerpt in a message
MESSAGE_LIMIT = 1000  # characters of a whole message


def short_quotes(text):
    """`text` with every quoted excerpt ('…') longer than QUOTE_LIMIT cut short: a line of a file may be huge."""
    import re

    # A quote opens after a space or bracket and closes before one: the text between two quoted words is no excerpt.
    pattern = r"(?:(?<=^)|(?<=[\s(\[{=:]))'([^']{%d,})'(?=$|[\s)\]},.;:…])" % (QUOTE_LIMIT + 1)
    return re.sub(pattern, lambda m: f"'{m.group(1)[:QUOTE_LIMIT]}…'", text)


def one_line(message):
    """A message as a tool prints it: unprintable characters escaped, quotes and length cut short."""
    text = short_quotes(printable(message))
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 21] + f"… ({len(text)} characters)"
    return text

