"""Fuzzing the model description parsers (line format and MDL) in-process.

Any text gives a ModelSpec or kerash's own error, located at FILE:LINE, on
one line; never another exception.  A description that parses is written
back (`model-init` writes it into MODEL/model) and must read back to the same
text: nothing from the input may break the file it is written into.  The
number of examples is bounded and the search derandomised, so a run takes
seconds and repeats itself.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerash.errors import KerashError
from kerash.model import normalised_text, param_shapes, parse_model

WHERE = "fuzz.model"

# Pieces of both formats, good and bad: models are put together from a header,
# an input, layers and a loss of each kind, or strung together at random.
_HEADERS = [""] * 6 + ["/xavier,zero/"] * 4 + [ "/he,const_flat 0.1/", "/uniform -0.5 0.5,normal 0 1/", "/uniform 1 0,zero/",
            "/normal 0 -1/", "/uniform inf 1/", "/normal nan 1/", "/const_uneven 0 -2/", "/uniform -1e308 1e308/",
            "/,/", "//", "/he", "/lecun,const_flat/", "/const_flat ²/"]
_SIZES = ["2 1 1"] * 4 + ["8 8 1", "5 4 2", "0 1 1", "² 1 1", "٣ 1 1", "99999999999999999999 1 1", "-1 1 1", "1e3 1 1",
          "65536 65536 65536"]
_INPUTS = ["input"] * 6 + ["input -", "input x", ""]
_LAYERS = [
    *["dense 3 tanh", "dense 10 softmax", "convolution relu 3 1 1 3 3", "flatten -"] * 3, "dense ³ relu", "dense 0 relu", "dense -4 relu", "dense 4 leaky_relu 0.2",
    "dense 4 leaky_relu ²", "dense 4 leaky_relu nan", "dense 4 elu alpha=٣", "dense 4 elu 1_0", "dense 4 sigmoid 1 2 3",
    "dense", "dense 4 nosuch", "dense 99999999999999999999 tanh", "dense 3000000000 relu",
    "convolution relu 3 1 1 3 3", "convolution relu 3 0 1 3 3", "convolution relu 3 1 -1 3 3", "convolution relu ²",
    "convolution relu 3 1 1 99 99", "convolution relu 99999999999 1 1 1 1", "max_pooling - 2 0 2 2",
    "max_pooling - 0 0 2 2", "max_pooling - 2 5 2 2", "flatten -", "flatten", "merge additive", "input",
]
_LOSSES = ["", "loss mse", "loss huber 1", "loss huber ²", "loss", "loss nosuch", "loss cross_entropy", "loss mse 3"]
_MDL_INPUTS = ["(input, 2)"] * 6 + [ "(input, 4)", "(input, ²)", "(input, 0)", "(input, 2, <tanh>)", "(input, 99999999999999999999)"]
_MDL_NODES = [
    *["(h, 3, <tanh>)", "{m, h, additive}", "{m, out, concatenate}"] * 3, "(h, 3)", "(x, 2, <leaky_relu, 0.1>)", "(x, 2, <leaky_relu, ²>)", "(x, 2, <relu, 1>)",
    "(x, 99999999999999999999)", "(y, 3000000000)", "(x, 2, <nosuch>)", "(x, 2, <mse>)", "(é, 2)", "(1x, 2)",
    "{m, h, additive}", "{m, out, concatenate}", "{c, c, concatenate}", "{m, x, multiplicative}", "{m, m, average}",
    "{m, h, nosuch}", "{m, nowhere, additive}", "[s,", "|", "]", "[t,]", "[s, (a, 3) | (b, 3) {c, a, additive}]",
    "[s, (a, 3) | ]", "(", ")", "{", "}", "<", ">", ",",
]
_MDL_OUTPUTS = ["(out, 2, <softmax>, <cross_entropy>)"] * 4 + [ "(out, 1, <identity>, <mse>)", "(out, 1, <sigmoid>, <huber, 2>)",
                "(out, 3)", "(out, 1, <identity>, <mse>, <mse>)", "(out, ², <identity>, <mse>)"]
_NOISE = [""] * 10 + ["# a comment", "", "\t", "\r", "\x00", "\x1b[31m", "\u2028", "\ufeff", "#", "/", "\\"]
_SEPARATORS = ["\n", "\n", "\n", "\r\n", "\n# note\n", " # note\n"]


def _lines(parts):
    return st.tuples(*parts, st.lists(st.sampled_from(_SEPARATORS), min_size=len(parts), max_size=len(parts))).map(
        lambda t: "".join(p + sep for p, sep in zip(t[:-1], t[-1]))
    )


def _some(pieces, most):
    return st.lists(st.sampled_from(pieces), max_size=most).map("\n".join)


model_texts = st.one_of(
    _lines([st.sampled_from(_HEADERS), st.sampled_from(_SIZES), st.sampled_from(_INPUTS), _some(_LAYERS, 4),
            st.sampled_from(_LOSSES), st.sampled_from(_NOISE)]),
    _lines([st.sampled_from(_HEADERS), st.sampled_from(_MDL_INPUTS), _some(_MDL_NODES, 6), st.sampled_from(_MDL_OUTPUTS),
            st.sampled_from(_NOISE)]),
    _some(_HEADERS + _SIZES + _LAYERS + _LOSSES + _MDL_INPUTS + _MDL_NODES + _NOISE, 12),
    st.text(max_size=200),
)


@settings(max_examples=300, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(model_texts)
def test_model_parsers_raise_only_located_kerash_errors(text):
    try:
        spec = parse_model(text, WHERE)
    except KerashError as e:
        message = str(e)
        assert message.startswith(WHERE), message
        assert "\n" not in message and "\r" not in message, message
        return
    written = normalised_text(spec, origin=text)  # any text as the origin comment, as model-init writes a path
    again = parse_model(written, WHERE)
    assert normalised_text(again, origin=text) == written
    assert param_shapes(again) == param_shapes(spec)


@pytest.mark.parametrize("text,fragment", [
    ("/uniform 1 0,zero/\n2 1 1\ninput\ndense 3 tanh\n", "fuzz.model:1:"),
    ("/normal 0 -1/\n2 1 1\ninput\ndense 3 tanh\n", "fuzz.model:1:"),
    ("/xavier,const_uneven 0 -1/\n(input, 2)\n(out, 1, <identity>, <mse>)\n", "fuzz.model:1:"),
    ("/uniform -inf 0/\n2 1 1\ninput\ndense 3 tanh\n", "fuzz.model:1:"),
    ("2 1 1\ninput\ndense 3 leaky_relu ²\n", "fuzz.model:3:"),
    ("2 1 1\ninput\ndense ² tanh\n", "fuzz.model:3:"),
    ("(input, 2)\n(out, 1, <leaky_relu, ٣>, <mse>)\n", "fuzz.model:2:"),
])
def test_bad_numbers_are_refused_where_they_are_written(text, fragment):
    with pytest.raises(KerashError) as caught:
        parse_model(text, WHERE)
    assert str(caught.value).startswith(fragment), str(caught.value)
