"""Model description files: KeraSH's format and its extensions, defaults, and errors naming FILE:LINE."""

import math
import os
import re

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, run
from kerash import model

KERASH_XOR = "2 1 1\ninput\ndense 10 sigmoid\ndense 1 sigmoid\n"
KERASH_CNN = (
    "256 256 3\ninput -\nconvolution relu 2 1 0 3 3\nmax_pooling - 1 0 2 2\n"
    "convolution relu 2 1 0 3 3\nmax_pooling - 1 0 2 2\nflatten -\ndense 30 softmax\n"
)


def lines_of(text):
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def init_dir(tmp_path, text, name="m", seed=1, extra=()):
    (tmp_path / f"{name}.model").write_text(text)
    run(["model-init", f"{name}.model", "-o", name, "--seed", str(seed), *extra], cwd=tmp_path)
    return tmp_path / name


def load(folder, key, name):
    return np.load(folder / key / f"{name}.npy")


# ---------------------------------------------------------------- KeraSH's own files


def test_shipped_xor_model_is_kerash_file_unchanged():
    assert lines_of((ROOT / "models" / "xor.model").read_text()) == lines_of(KERASH_XOR)


def test_shipped_cnn_example_is_kerash_file_unchanged():
    assert lines_of((ROOT / "models" / "kerash-cnn.model").read_text()) == lines_of(KERASH_CNN)


def test_kerash_xor_parses():
    spec = model.parse_model(KERASH_XOR, "xor.model")
    assert spec.input_shape == (1, 1, 2)
    assert [(s.kind, s.units, s.activation.name) for s in spec.layers] == [("dense", 10, "sigmoid"), ("dense", 1, "sigmoid")]
    assert spec.shapes == [(10,), (1,)]
    assert spec.loss.name == "mse"
    assert (spec.weight_init, spec.bias_init) == (("xavier", ()), ("zero", ()))


def conv_out(size, k, stride, pad):
    return (size + 2 * pad - k) // stride + 1


def test_kerash_cnn_parses_with_the_expected_shapes():
    spec = model.parse_model(KERASH_CNN, "cnn.model")
    assert spec.input_shape == (3, 256, 256)
    assert [s.kind for s in spec.layers] == ["convolution", "max_pooling", "convolution", "max_pooling", "flatten", "dense"]
    s1 = conv_out(256, 3, 1, 0)
    p1 = conv_out(s1, 2, 1, 0)
    s2 = conv_out(p1, 3, 1, 0)
    p2 = conv_out(s2, 2, 1, 0)
    assert spec.shapes == [(2, s1, s1), (2, p1, p1), (2, s2, s2), (2, p2, p2), (2 * p2 * p2,), (30,)]
    assert spec.loss.name == "cross_entropy"
    conv = spec.layers[0]
    assert (conv.activation.name, conv.filters, conv.stride, conv.pad, conv.kw, conv.kh) == ("relu", 2, 1, 0, 3, 3)


def test_kerash_cnn_summary_and_init(tmp_path):
    out = run(["kerash", "summary", str(ROOT / "models" / "kerash-cnn.model")]).stdout.decode()
    p2 = conv_out(conv_out(conv_out(conv_out(256, 3, 1, 0), 2, 1, 0), 3, 1, 0), 2, 1, 0)
    counts = [2 * 3 * 3 * 3 + 2, 0, 2 * 2 * 3 * 3 + 2, 0, 0, 2 * p2 * p2 * 30 + 30]
    assert f"Total params: {sum(counts):,}" in out
    for count in counts:
        if count:
            assert f"{count:,}" in out
    folder = tmp_path / "cnn"
    run(["model-init", str(ROOT / "models" / "kerash-cnn.model"), "-o", str(folder), "--seed", "3"])
    assert load(folder, "layer_01", "W").shape == (2, 3, 3, 3)
    assert load(folder, "layer_03", "W").shape == (2, 2, 3, 3)
    assert load(folder, "layer_06", "W").shape == (2 * p2 * p2, 30)
    assert not (folder / "layer_02").exists() and not (folder / "layer_05").exists()


def test_shipped_models_parse():
    for path in sorted((ROOT / "models").glob("*.model")):
        spec = model.read_model_file(path)
        assert spec.layers, path


# ---------------------------------------------------------------- extensions and defaults


def test_comments_blank_lines_and_indentation_are_ignored():
    text = "# a comment\n\n  2 1 1   # input size\ninput\n\n   dense 3 tanh  # hidden\n# between\ndense 1 sigmoid\n"
    spec = model.parse_model(text)
    assert [s.units for s in spec.layers] == [3, 1]
    assert [s.index for s in spec.layers] == [1, 2]


@pytest.mark.parametrize(
    "header,weights,biases",
    [
        ("/xavier,zero/", ("xavier", ()), ("zero", ())),
        ("/he,const_flat 0.1/", ("he", ()), ("const_flat", ("0.1",))),
        ("/uniform 0 1,const_uneven 0.1 0.5/", ("uniform", ("0", "1")), ("const_uneven", ("0.1", "0.5"))),
        ("/normal 0.5 0.01,zero/", ("normal", ("0.5", "0.01")), ("zero", ())),
        ("/lecun,zero/", ("lecun", ()), ("zero", ())),
    ],
)
def test_init_header_variants_parse(header, weights, biases):
    spec = model.parse_model(f"{header}\n4 1 1\ninput\ndense 3 tanh\n")
    assert spec.weight_init == weights
    assert spec.bias_init == biases


def test_he_and_const_flat_initialisation(tmp_path):
    folder = init_dir(tmp_path, "/he,const_flat 0.1/\n8 8 1\ninput\nconvolution relu 6 1 1 3 3\nflatten -\ndense 40 relu\n")
    w1, w3 = load(folder, "layer_01", "W"), load(folder, "layer_03", "W")
    for w, fan_in in ((w1, 1 * 3 * 3), (w3, 6 * 8 * 8)):
        limit = math.sqrt(6 / fan_in)
        assert np.abs(w).max() <= limit
        assert np.abs(w).max() > 0.8 * limit  # the bound is that of he, not a smaller one
    for key in ("layer_01", "layer_03"):
        assert np.all(load(folder, key, "b") == np.float32(0.1))


def test_uniform_and_const_uneven_initialisation(tmp_path):
    folder = init_dir(tmp_path, "/uniform 0 1,const_uneven 0.1 0.5/\n30 1 1\ninput\ndense 50 relu\n")
    w, b = load(folder, "layer_01", "W"), load(folder, "layer_01", "b")
    assert w.min() >= 0 and w.max() < 1 and w.min() < 0.05 and w.max() > 0.95
    assert np.all(np.isfinite(b)) and len(np.unique(b)) == b.size  # uneven: not one constant


def test_normal_initialisation(tmp_path):
    folder = init_dir(tmp_path, "/normal 0.5 0.01,zero/\n64 1 1\ninput\ndense 128 relu\n", extra=["--dtype", "float64"])
    w = load(folder, "layer_01", "W")
    n = w.size
    assert abs(w.mean() - 0.5) < 4 * 0.01 / math.sqrt(n)
    assert abs(w.std() - 0.01) < 0.001
    assert np.all(load(folder, "layer_01", "b") == 0)


def test_default_initialisation_is_xavier_zero(tmp_path):
    folder = init_dir(tmp_path, "64 1 1\ninput\ndense 128 sigmoid\ndense 10 softmax\n")
    for key, fan_in, fan_out in (("layer_01", 64, 128), ("layer_02", 128, 10)):
        w = load(folder, key, "W")
        limit = math.sqrt(6 / (fan_in + fan_out))
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.9 * limit
        assert np.all(load(folder, key, "b") == 0)


@pytest.mark.parametrize(
    "body,loss",
    [
        ("dense 3 softmax\n", "cross_entropy"),
        ("dense 3 sigmoid\n", "mse"),
        ("dense 3 identity\n", "mse"),
        ("dense 4 softmax\ndense 3 tanh\n", "mse"),
        ("dense 3 softmax\nloss mse\n", "mse"),
        ("dense 1 sigmoid\nloss binary_cross_entropy\n", "binary_cross_entropy"),
        ("dense 2 identity\nloss hinge\n", "hinge"),
    ],
)
def test_default_and_explicit_loss(body, loss):
    assert model.parse_model("4 1 1\ninput\n" + body).loss.name == loss


def test_loss_with_a_parameter_is_kept_in_the_model_directory(tmp_path):
    spec = model.parse_model("4 1 1\ninput\ndense 2 identity\nloss huber 2.5\n")
    assert spec.loss.name == "huber" and spec.loss.values == (2.5,)
    folder = init_dir(tmp_path, "4 1 1\ninput\ndense 2 identity\nloss huber 2.5\n")
    assert model.ModelDir(folder).spec.loss.values == (2.5,)
    assert "Loss: huber 2.5" in run(["kerash", "summary", str(folder)]).stdout.decode()


def test_normalised_description_reads_back_the_same(tmp_path):
    text = "/he,const_flat 0.1/\n8 6 2\ninput -\nconvolution elu 3 2 1 3 2 0.5\nmax_pooling - 1 0 2 2\nflatten -\ndense 5 leaky_relu 0.2\ndense 3 softmax\n"
    original = model.parse_model(text)
    folder = init_dir(tmp_path, text)
    again = model.ModelDir(folder).spec
    assert again.input_shape == original.input_shape == (2, 6, 8)
    assert again.shapes == original.shapes
    assert again.weight_init == original.weight_init and again.bias_init == original.bias_init
    assert again.loss.name == original.loss.name == "cross_entropy"
    for a, b in zip(again.layers, original.layers):
        assert (a.kind, a.index, vars(a.layer).keys()) == (b.kind, b.index, vars(b.layer).keys())
        assert {k: v for k, v in vars(a.layer).items() if k != "activation"} == {k: v for k, v in vars(b.layer).items() if k != "activation"}
        if a.activation is not None:
            assert (a.activation.name, a.activation.values) == (b.activation.name, b.activation.values)
    assert original.layers[0].activation.values == (0.5,)
    assert (original.layers[0].kw, original.layers[0].kh) == (3, 2)
    assert original.layers[3].activation.values == (0.2,)


# ---------------------------------------------------------------- errors: FILE:LINE and what was expected


ERRORS = [
    ("bad first line", "2 1\ninput\ndense 1 relu\n", 1, ["input size", "W H D"]),
    ("words for sizes", "# c\na b c\ninput\ndense 1 relu\n", 2, ["input size", "'a b c'"]),
    ("missing input", "2 1 1\ndense 3 relu\n", 2, ["expected 'input'"]),
    ("unknown layer", "2 1 1\ninput\ndens 3 relu\n", 3, ["unknown layer 'dens'", "'dense'"]),
    ("unknown activation", "2 1 1\ninput\ndense 3 sigmoidd\n", 3, ["unknown activation 'sigmoidd'", "'sigmoid'"]),
    ("unknown loss", "2 1 1\ninput\ndense 3 relu\n\nloss crossentropy\n", 5, ["unknown loss 'crossentropy'", "'cross_entropy'"]),
    ("bad integer", "2 1 1\ninput\ndense ten relu\n", 3, ["'ten'", "integer"]),
    ("bad conv integer", "8 8 1\ninput\nconvolution relu 2 1 x 3 3\n", 3, ["PAD", "'x'"]),
    ("conv window too large", "8 8 1\ninput\nconvolution relu 2 1 0 9 9\n", 3, ["9×9", "larger"]),
    ("pool window too large", "8 8 1\ninput\ndense 4 relu\nmax_pooling - 1 0 3 9\n", 4, ["max_pooling"]),
    ("pool window too large for image", "6 5 1\ninput\nconvolution relu 2 1 0 3 3\nmax_pooling - 1 0 2 4\n", 4, ["larger"]),
    ("pooling without dash", "8 8 1\ninput\nmax_pooling 2 0 2 2\n", 3, ["max_pooling -"]),
    ("missing dense activation", "2 1 1\ninput\ndense 3\n", 3, ["ACTIVATION"]),
    ("bad header", "/fancy,zero/\n2 1 1\ninput\ndense 1 relu\n", 1, ["'fancy'"]),
    ("bad loss parameter", "2 1 1\ninput\ndense 1 relu\nloss huber x\n", 4, ["'x'"]),
    ("huber delta not positive", "2 1 1\ninput\ndense 1 relu\nloss huber -1\n", 4, ["delta must be > 0", "not -1"]),
    ("huber delta not finite", "2 1 1\ninput\ndense 1 relu\nloss huber inf\n", 4, ["delta", "finite"]),
    ("layer after loss", "2 1 1\ninput\nloss mse\ndense 1 relu\n", 4, ["loss"]),
    ("pool padding over half the window", "8 8 1\ninput\nmax_pooling - 1 2 3 3\n", 3, ["padding 2", "half"]),
]


@pytest.mark.parametrize("case,text,line,fragments", ERRORS, ids=[e[0] for e in ERRORS])
def test_model_file_errors_name_file_and_line(tmp_path, case, text, line, fragments):
    (tmp_path / "bad.model").write_text(text)
    proc = run(["model-init", "bad.model", "-o", "out", "--seed", "1"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, f"model-init: error: bad.model:{line}: ", *fragments)
    assert proc.stdout == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.model"]


def test_model_without_layers_or_input(tmp_path):
    for text, fragment in (("2 1 1\ninput\n", "no layers"), ("2 1 1\n", "'input'"), ("# only a comment\n", "input size")):
        (tmp_path / "bad.model").write_text(text)
        proc = run(["model-init", "bad.model", "-o", "out"], cwd=tmp_path, check=False)
        assert_one_line_error(proc, 1, "bad.model", fragment)
        assert not (tmp_path / "out").exists()


def test_error_names_the_line_after_comments_and_header(tmp_path):
    text = "# XOR with a typo\n/he,zero/\n\n2 1 1\ninput\ndense 10 sigmoid\ndense 1 sigmiod\n"
    (tmp_path / "typo.model").write_text(text)
    proc = run(["model-init", "typo.model", "-o", "out"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "typo.model:7:", "sigmiod", "'sigmoid'")
    assert re.search(r"typo\.model:7:", proc.stderr.decode())


def test_bad_descriptions_are_located_errors_of_init(tmp_path):
    cases = {
        "/normal 0 -1,zero/\n2 1 1\ninput\ndense 3 tanh\n": ("x.model:1:", "standard deviation"),
        "2 1 1\ninput\ndense 3 leaky_relu ²\n": ("x.model:3:", "²"),
        "(input, 2)\n(h, 99999999999999999999)\n(out, 1, <identity>, <mse>)\n": ("x.model:2:", "h:"),
        "8 8 1\ninput\nconvolution relu 9999 1 1 3 3\nflatten -\ndense 4000 tanh\n": ("x.model:5:", "more than"),
    }
    for text, fragments in cases.items():
        (tmp_path / "x.model").write_text(text)
        proc = run(["model-init", "x.model", "-o", "x"], cwd=tmp_path, check=False)
        assert_one_line_error(proc, 1, *fragments)
        assert os.listdir(tmp_path) == ["x.model"]


@pytest.mark.parametrize("line", [
    "convolution elu 4 1 1 3 3 0.5",  # activation parameters after the window (they once drifted before it)
    "convolution srelu 2 2 0 3 2 -1 0.1 1 0.2",
    "dense 7 leaky_relu 0.3",
    "dense 3 isru 2",
    "max_pooling - 2 1 2 2",
    "flatten -",
])
def test_every_layer_kind_writes_the_text_it_reads(line):
    from kerash import layers

    kind, *args = line.split()
    layer = layers.get_kind(kind).parse(args)
    assert layer.text() == line
    text = f"6 5 2\ninput\n{line}\nflatten -\ndense 2 softmax\n" if kind != "dense" else f"6 5 2\ninput\n{line}\ndense 2 softmax\n"
    spec = model.parse_model(text)
    assert model.normalised_text(spec).splitlines()[3] == line
    assert model.normalised_text(model.parse_model(model.normalised_text(spec))) == model.normalised_text(spec)


@pytest.mark.parametrize("text", ["2 1 1\ninput\ndense 3 {long}\n", "2 1 1\ninput\n{long} 3 relu\n", "/{long}/\n2 1 1\ninput\n",
                                  "2 1 1 {long}\ninput\ndense 3 relu\n",
                                  "(in, 2)\n(h, 3, <{long}>)\n(out, 1, <sigmoid>, <mse>)\n"],
                         ids=["activation", "layer", "header", "size", "mdl"])
def test_a_huge_line_gives_a_short_error(tmp_path, text):
    """Issue 19: a model-file line of 100k characters produced a 200 KB error line."""
    name = "bad.mdl" if text.startswith("(") else "bad.model"
    (tmp_path / name).write_text(text.format(long="x" * 100_000))
    proc = run(["model-init", name, "-o", "out"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, f"{name}:")
    assert len(proc.stderr) < 400 and "…" in proc.stderr.decode(), proc.stderr[:400]


def test_a_description_may_leave_its_input_size_to_the_data(tmp_path):
    """Issue 24, item 4: the line format starting at `input`, or MDL's `(input)`: model-init takes the size from
    --data (a row's values, or (N,C,H,W) images) or --input-size, writes it into MODEL/model, and refuses a
    size that contradicts the description's own."""
    import numpy as np

    np.savetxt(tmp_path / "rows.txt", np.zeros((4, 7)))
    np.save(tmp_path / "images.npy", np.zeros((2, 3, 6, 5)))
    (tmp_path / "a.model").write_text("input\ndense 4 tanh\ndense 2 softmax\n")
    (tmp_path / "c.model").write_text("input\nconvolution relu 4 1 1 3 3\nflatten -\ndense 2 softmax\n")
    (tmp_path / "g.mdl").write_text("(input)\n(h, 4, <tanh>)\n(out, 2, <softmax>, <cross_entropy>)\n")
    run(["model-init", "a.model", "-o", "a", "--data", "rows.txt"], cwd=tmp_path)
    run(["model-init", "c.model", "-o", "c", "--data", "images.npy"], cwd=tmp_path)
    run(["model-init", "g.mdl", "-o", "g", "--input-size", "9"], cwd=tmp_path)
    assert "7 1 1\ninput\n" in (tmp_path / "a" / "model").read_text()
    assert "5 6 3\ninput\n" in (tmp_path / "c" / "model").read_text()
    assert "(input, 9)" in (tmp_path / "g" / "model").read_text()
    assert np.load(tmp_path / "a" / "layer_01" / "W.npy").shape == (7, 4)
    assert np.load(tmp_path / "c" / "layer_01" / "W.npy").shape == (4, 3, 3, 3)
    proc = run(["model-init", "a.model", "-o", "x"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "a.model:1: the input size is left out", "--data X")
    (tmp_path / "sized.model").write_text("3 1 1\ninput\ndense 2 softmax\n")
    proc = run(["model-init", "sized.model", "-o", "x", "--data", "rows.txt"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "gives the input size 3×1×1", "7×1×1")
    proc = run(["model-init", "a.model", "-o", "x", "--input-size", "0"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "--input-size")
    (tmp_path / "late.mdl").write_text("(input, 3)\n(h)\n(out, 2, <softmax>, <cross_entropy>)\n")
    proc = run(["model-init", "late.mdl", "-o", "x"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "a layer needs its width")
    assert not (tmp_path / "x").exists()
