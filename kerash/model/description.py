"""Model descriptions: either format, from text or a file, and back to text."""

from ..files import fs, tensorio
from ..errors import ModelError
from .lines import lines_text, parse_lines
from .mdl import is_mdl, mdl_text, parse_mdl


def parse_model(text, where="<model>", input_size=None):
    """Parse a description in the line format or MDL (recognised from the text); `input_size` (W, H, D) for one
    that leaves its input size out."""
    return parse_mdl(text, where, input_size) if is_mdl(text) else parse_lines(text, where, input_size)


def read_model_file(path, input_size=None):
    """Parse the description in file `path` (or standard input for '-')."""
    data = tensorio.read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{fs.source_name(path)} is not a text model description (it is not UTF-8)") from None
    if "\0" in text:
        raise ModelError(f"{fs.source_name(path)} is not a text model description (it holds NUL bytes)")
    return parse_model(text, fs.source_name(path), input_size)


def escaped(text):
    """Text on one line, with control characters and backslashes escaped (for comments and messages)."""
    out = []
    for c in str(text):
        if c == "\\":
            out.append("\\\\")
        elif c.isprintable():
            out.append(c)
        else:
            out.append(c.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def normalised_text(spec, origin=None):
    """The description with every default made explicit, in its own format; it parses back unchanged."""
    lines = [f"# normalised by kerash from {escaped(origin)}"] if origin else []
    lines += mdl_text(spec) if spec.format == "mdl" else lines_text(spec)
    return "\n".join(lines) + "\n"
