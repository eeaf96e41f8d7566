"""Labels that name classes: train maps them (sorted) and keeps MODEL/classes.txt, predict prints
names, evaluate labels its confusion matrix and reports precision, recall and F1 per class as
scikit-learn's classification_report does (checked against hand computations)."""

import io
import os

import numpy as np
import pytest

from conftest import assert_one_line_error, parse, run, savetxt
from helpers import make_model
from kerash.files.labels import WordLabels, read_labels
from kerash.model import class_report

NAMES = ["setosa", "versicolor", "virginica"]  # sorted: class indices 0, 1, 2
MODEL = "/uniform -0.5 0.5,zero/\n2 1 1\ninput\ndense 8 tanh\ndense 3 softmax\n"


def blobs(n, seed):
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 3, n)
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 1.5]])
    return centres[classes] + rng.normal(scale=0.6, size=(n, 2)), classes


def spreadsheet_column(path, names, header="species"):
    """A labels column as a spreadsheet exports it: byte-order mark, header, quotes, CRLF."""
    path.write_bytes(b"\xef\xbb\xbf" + f"{header}\r\n".encode() + "".join(f'"{n}"\r\n' for n in names).encode())


def report_by_hand(truth, predicted):
    """classification_report's numbers, computed from its definitions one class at a time."""
    rows = {}
    labels = sorted(set(truth) | set(predicted))
    for k in labels:
        tp = sum(1 for t, p in zip(truth, predicted) if t == k and p == k)
        predicted_k = sum(1 for p in predicted if p == k)
        support = sum(1 for t in truth if t == k)
        precision = tp / predicted_k if predicted_k else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows[k] = (precision, recall, f1, support)
    n = len(truth)
    macro = [sum(r[i] for r in rows.values()) / len(rows) for i in range(3)]
    weighted = [sum(r[i] * r[3] for r in rows.values()) / n for i in range(3)]
    accuracy = sum(1 for t, p in zip(truth, predicted) if t == p) / n
    return rows, accuracy, macro, weighted


def test_the_report_equals_scikit_learns_documented_example():
    # scikit-learn's classification_report docstring: y_true [0, 1, 2, 2, 2], y_pred [0, 0, 2, 2, 1]
    # prints 0.50 1.00 0.67 1 / 0.00 0.00 0.00 1 / 1.00 0.67 0.80 3, accuracy 0.60,
    # macro avg 0.50 0.56 0.49, weighted avg 0.70 0.60 0.61.
    confusion = np.zeros((4, 4), dtype=int)
    for t, p in zip([0, 1, 2, 2, 2], [0, 0, 2, 2, 1]):
        confusion[t, p] += 1
    table = class_report(confusion)
    assert [r[0] for r in table["rows"]] == [0, 1, 2]  # class 3 occurs nowhere: no row, not in the averages
    np.testing.assert_allclose([r[1:4] for r in table["rows"]], [[0.5, 1, 2 / 3], [0, 0, 0], [1, 2 / 3, 0.8]])
    assert [r[4] for r in table["rows"]] == [1, 1, 3]
    assert table["accuracy"] == 0.6
    np.testing.assert_allclose(table["macro"][:3], [0.5, 5 / 9, (2 / 3 + 0.8) / 3])
    np.testing.assert_allclose(table["weighted"][:3], [0.7, 0.6, (2 / 3 + 3 * 0.8) / 5])
    # A class predicted but never true: precision 0, recall 0/0 = 0, and it counts in the macro average.
    rng = np.random.default_rng(3)
    truth, predicted = rng.integers(0, 3, 40).tolist(), rng.integers(0, 4, 40).tolist()
    confusion = np.zeros((5, 5), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    table = class_report(confusion)
    rows, accuracy, macro, weighted = report_by_hand(truth, predicted)
    assert [r[0] for r in table["rows"]] == sorted(rows)
    np.testing.assert_allclose([r[1:4] for r in table["rows"]], [rows[k][:3] for k in sorted(rows)], atol=1e-15)
    np.testing.assert_allclose([table["accuracy"], *table["macro"][:3], *table["weighted"][:3]],
                               [accuracy, *macro, *weighted], atol=1e-15)


def test_named_labels_train_predict_and_evaluate_by_name(tmp_path):
    x, classes = blobs(90, seed=1)
    savetxt(tmp_path / "x.txt", x)
    spreadsheet_column(tmp_path / "y.csv", [NAMES[c] for c in classes])
    savetxt(tmp_path / "y-index.txt", classes.reshape(-1, 1))
    folder = make_model(tmp_path, MODEL)
    run(["train", "m", "-x", "x.txt", "-y", "y.csv", "--epochs", "20", "--lr", "0.3", "--batch-size", "10",
         "--seed", "2", "--validation-split", "0.2"], cwd=tmp_path)
    assert (folder / "classes.txt").read_text() == "setosa\nversicolor\nvirginica\n"
    # the same training on class indices gives the same weights: names are only a mapping
    other = make_model(tmp_path, MODEL, "n")
    run(["train", "n", "-x", "x.txt", "-y", "y-index.txt", "--epochs", "20", "--lr", "0.3", "--batch-size", "10",
         "--seed", "2", "--validation-split", "0.2"], cwd=tmp_path)
    for layer in ("layer_01", "layer_02"):
        np.testing.assert_array_equal(np.load(folder / layer / "W.npy"), np.load(other / layer / "W.npy"))

    outputs = parse(run(["predict", "m", "x.txt"], cwd=tmp_path).stdout)
    predicted = outputs.argmax(axis=1)
    names = run(["predict", "m", "x.txt", "--classes"], cwd=tmp_path).stdout.decode().splitlines()
    assert names == [NAMES[c] for c in predicted]
    assert len(set(predicted)) == 3 and (predicted != classes).any()  # every class, and some mistakes

    out = run(["evaluate", "m", "-x", "x.txt", "-y", "y.csv", "--confusion", "--report"], cwd=tmp_path).stdout.decode()
    lines = out.splitlines()
    at = lines.index("true\\predicted\tsetosa\tversicolor\tvirginica")
    confusion = np.zeros((3, 3), dtype=int)
    np.add.at(confusion, (classes, predicted), 1)
    for k, name in enumerate(NAMES):
        assert lines[at + 1 + k] == name + "\t" + "\t".join(map(str, confusion[k]))
    table = {line.split("\t")[0]: line.split("\t")[1:] for line in lines[lines.index("class\tprecision\trecall\tf1-score\tsupport") + 1:]}
    rows, accuracy, macro, weighted = report_by_hand(classes.tolist(), predicted.tolist())
    for k, name in enumerate(NAMES):
        np.testing.assert_allclose([float(v) for v in table[name][:3]], rows[k][:3], atol=5e-5)
        assert int(table[name][3]) == rows[k][3]
    assert table["accuracy"][:2] == ["", ""] and abs(float(table["accuracy"][2]) - accuracy) < 5e-5
    np.testing.assert_allclose([float(v) for v in table["macro avg"][:3]], macro, atol=5e-5)
    np.testing.assert_allclose([float(v) for v in table["weighted avg"][:3]], weighted, atol=5e-5)
    assert table["macro avg"][3] == table["weighted avg"][3] == table["accuracy"][3] == "90"
    # class indices still work on a model with names, and give the same numbers
    numeric = run(["evaluate", "m", "-x", "x.txt", "-y", "y-index.txt"], cwd=tmp_path).stdout.decode()
    assert numeric == "\n".join(lines[:4]) + "\n"


def test_named_labels_in_backprop_and_a_one_output_model(tmp_path):
    x, classes = blobs(12, seed=4)
    binary = (classes > 0).astype(int)
    savetxt(tmp_path / "x.txt", x)
    (tmp_path / "y.txt").write_text("".join(["ham\n", "spam\n"][c] for c in binary))
    savetxt(tmp_path / "yi.txt", binary.reshape(-1, 1))
    make_model(tmp_path, "2 1 1\ninput\ndense 4 tanh\ndense 1 sigmoid\n", "b")
    run(["train", "b", "-x", "x.txt", "-y", "y.txt", "--epochs", "0"], cwd=tmp_path)  # names, no step
    assert (tmp_path / "b" / "classes.txt").read_text() == "ham\nspam\n"
    assert '"steps": 0' in (tmp_path / "b" / "state.json").read_text()
    rows = "3 0 7 11"
    run(["backprop", "b", "-x", "x.txt", "-y", "y.txt", "--rows", rows, "-o", "g1"], cwd=tmp_path)
    run(["backprop", "b", "-x", "x.txt", "-y", "yi.txt", "--rows", rows, "-o", "g2"], cwd=tmp_path)
    for name in ("layer_01/W.npy", "layer_02/b.npy"):
        np.testing.assert_array_equal(np.load(tmp_path / "g1" / name), np.load(tmp_path / "g2" / name))
    out = parse(run(["predict", "b", "x.txt"], cwd=tmp_path).stdout)[:, 0]
    names = run(["predict", "b", "x.txt", "--classes"], cwd=tmp_path).stdout.decode().split()
    assert names == [["ham", "spam"][int(v > 0.5)] for v in out]


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    """A model trained on class indices (no classes.txt) and one trained on names."""
    folder = tmp_path_factory.mktemp("named")
    x, classes = blobs(20, seed=5)
    savetxt(folder / "x.txt", x)
    (folder / "y.txt").write_text("".join(NAMES[c] + "\n" for c in classes))
    savetxt(folder / "yi.txt", classes.reshape(-1, 1))
    make_model(folder, MODEL, "plain")
    run(["train", "plain", "-x", "x.txt", "-y", "yi.txt", "--epochs", "1"], cwd=folder)
    make_model(folder, MODEL, "named")
    run(["train", "named", "-x", "x.txt", "-y", "y.txt", "--epochs", "1"], cwd=folder)
    return folder


def test_names_a_model_does_not_know_are_errors_naming_the_word_and_file(numbered, tmp_path):
    proc = run(["evaluate", "plain", "-x", "x.txt", "-y", "y.txt"], cwd=numbered, check=False)
    assert_one_line_error(proc, 1, "y.txt:1:", "is a class name", "plain has no classes.txt", "--epochs 0")
    proc = run(["train", "plain", "-x", "x.txt", "-y", "y.txt", "--epochs", "1"], cwd=numbered, check=False)
    assert_one_line_error(proc, 1, "y.txt:1:", "plain has no classes.txt")
    (tmp_path / "typo.txt").write_text("setosa\n" * 5 + "virginca\n" + "setosa\n" * 14)
    proc = run(["evaluate", "named", "-x", "x.txt", "-y", str(tmp_path / "typo.txt")], cwd=numbered, check=False)
    assert_one_line_error(proc, 1, "typo.txt:6: 'virginca' is not a class of named", "did you mean 'virginica'")
    # four names for a three-output model
    (tmp_path / "four.txt").write_text("a\nb\nc\nd\n" * 5)
    make_model(tmp_path, MODEL, "fresh")
    proc = run(["train", "fresh", "-x", str(numbered / "x.txt"), "-y", "four.txt"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "4 classes (a, b, c, d)", "3 outputs", "four.txt")
    assert not (tmp_path / "fresh" / "classes.txt").exists()
    (tmp_path / "two.csv").write_text("id,species\n1,setosa\n2,virginica\n")
    proc = run(["train", "fresh", "-x", str(numbered / "x.txt"), "-y", "two.csv"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "two.csv:1:", "several columns", "one name per line")


def test_labels_files_are_read_as_names_only_when_they_hold_words():
    def read(data):
        return read_labels(io.BytesIO(data))

    # numbers, with or without a header, stay numbers
    np.testing.assert_array_equal(read(b"class\n0\n2\n1\n"), [[0], [2], [1]])
    np.testing.assert_array_equal(read(b"0 1\n1 0\n"), [[0, 1], [1, 0]])
    words = read(b"# a comment\nspam\n\nham\r\nspam\n")
    assert isinstance(words, WordLabels)
    assert words.names == ("spam", "ham") and words.codes.tolist() == [0, 1, 0] and words.lines == (2, 4)
    assert read(b"spam\n").names == ("spam",)
    quoted = read(b'\xef\xbb\xbf"label"\n"not spam"\n"say ""hi"""\n"not spam"\n')
    assert quoted.names == ("label", "not spam", 'say "hi"')
    # the first line is the column's name when it is one line too many and appears nowhere else
    assert quoted.codes_for(3)[0].tolist() == [1, 2, 1]
    assert quoted.codes_for(4)[0].tolist() == [0, 1, 2, 1]
    repeated = read(b"spam\nham\nspam\n")
    assert repeated.codes_for(2)[0].tolist() == [0, 1, 0]  # 'spam' is a label: no header, 3 labels
    # a word after many numbers is a bad number, named by its line
    from kerash.errors import DataError

    with pytest.raises(DataError, match=r"<data>:70001: not a number: 'spam'"):
        read(b"1\n" * 70000 + b"spam\n")
    with pytest.raises(DataError, match="binary data"):
        read(b"spam\nham\n\x00\x01\x02\n")
    with pytest.raises(DataError, match="more than 4096 bytes"):
        read(b"spam\nham\n" + b"x" * 100000)


def test_names_that_look_like_numbers_stay_names_once_the_model_has_them(tmp_path):
    # classes '1', '2', 'x': a validation file holding only '1' and '2' must still mean those names
    x, classes = blobs(300, 5)
    names = np.array(["1", "2", "x"])[classes]
    savetxt(tmp_path / "x.txt", x)
    (tmp_path / "y.txt").write_text("\n".join(names) + "\n")
    keep = classes != 2
    savetxt(tmp_path / "vx.txt", x[keep])
    (tmp_path / "vy.txt").write_text("\n".join(names[keep]) + "\n")
    make_model(tmp_path, MODEL, name="m", seed=1)
    run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "150", "--lr", "0.3", "--seed", "1"], cwd=tmp_path)
    assert (tmp_path / "m" / "classes.txt").read_text().split() == ["1", "2", "x"]
    predicted = parse(run(["predict", "m", "vx.txt"], cwd=tmp_path).stdout).argmax(axis=1)
    evaluated = run(["evaluate", "m", "-x", "vx.txt", "-y", "vy.txt"], cwd=tmp_path).stdout.decode()
    accuracy = float(evaluated.split("accuracy\t")[1].split()[0])
    assert accuracy == pytest.approx(np.mean(predicted == classes[keep]), abs=1e-4) and accuracy > 0.8


def test_a_labels_file_whose_first_word_comes_late_is_read_as_names(tmp_path):
    # labels grouped by class: 64 KiB of digits before the first word
    rows = ["1", "2"] * 20000 + ["x", "2"]
    (tmp_path / "y.txt").write_text("\n".join(rows) + "\n")
    labels = read_labels(str(tmp_path / "y.txt"))
    assert isinstance(labels, WordLabels) and labels.names == ("1", "2", "x") and len(labels.codes) == len(rows)
    # a stream cannot be read twice: the word is an error at its line
    proc = run(f"cat y.txt | kerash dataset digits -o d >/dev/null && model-init /dev/stdin -o m <<< $'4 1 1\\ninput\\ndense 3 softmax' "
               f"&& python3 -c 'import numpy; numpy.save(\"x.npy\", numpy.zeros(({len(rows)}, 4)))' "
               f"&& cat y.txt | train m -x x.npy -y - --epochs 0", cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, f"<stdin>:{len(rows) - 1}: not a number: 'x'")


@pytest.mark.parametrize("bad", ["\x1b[31mred", "evil\u202etxt", "nul\x00"], ids=["ESC", "U+202E", "NUL"])
def test_class_names_with_control_characters_are_refused_where_they_are_read(tmp_path, bad):
    """Issue 19: predict --classes printed ESC, U+202E and NUL from classes.txt raw to the terminal."""
    x, classes = blobs(30, seed=1)
    savetxt(tmp_path / "x.txt", x)
    good = [NAMES[c] for c in classes]
    spreadsheet_column(tmp_path / "y.csv", good)
    folder = make_model(tmp_path, MODEL)
    run(["train", "m", "-x", "x.txt", "-y", "y.csv", "--epochs", "1"], cwd=tmp_path)
    version = os.path.realpath(folder / "classes.txt")
    os.chmod(version, 0o644)
    with open(version, "w") as f:
        f.write(f"setosa\n{bad}\nvirginica\n")
    proc = run(["predict", "m", "x.txt", "--classes"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "classes.txt:2: class name", f"U+{ord([c for c in bad if not c.isprintable()][0]):04X}")
    assert proc.stdout == b"" and not any(c in proc.stderr.decode() for c in "\x1b\u202e\x00")
    # and a labels file naming such a class is refused before a model learns it
    fresh = make_model(tmp_path, MODEL, "fresh")
    (tmp_path / "bad.txt").write_text("".join(f"{name}\n" for name in good[:-1]) + f"{bad}\n")
    before = sorted(os.listdir(fresh))
    proc = run(["train", "fresh", "-x", "x.txt", "-y", "bad.txt", "--epochs", "1"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, f"bad.txt:{len(good)}: ", "class name")  # as binary data, or as a control character
    assert sorted(os.listdir(fresh)) == before
