"""Spreadsheet exports as they are, column statistics, and a look at a tensor."""

import numpy as np
import pytest

from conftest import assert_one_line_error, parse, run, savetxt


def spreadsheet_csv(names, rows):
    """A CSV as spreadsheets save it: UTF-8 byte-order mark, CRLF line ends, some numbers in quotes."""
    lines = [",".join(names)]
    for i, row in enumerate(rows):
        lines.append(",".join(f'"{v!r}"' if (i + j) % 3 == 0 else repr(v) for j, v in enumerate(row)))
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")


def test_spreadsheet_export_reads_as_numbers_with_column_names(tmp_path, rng):
    data = rng.normal(size=(6, 3)) * [1, 10, 100]
    data[2, 1] = np.nan
    (tmp_path / "export.csv").write_bytes(spreadsheet_csv(["sepal length", "Größe", "z"], data.tolist()))
    script = "matrix-scale 1 export.csv; echo ---; tensor-stats export.csv; echo ---; tensor-show export.csv"
    scaled, stats, shown = run(script, cwd=tmp_path).stdout.decode().split("---\n")
    np.testing.assert_array_equal(parse(scaled), data)
    lines = stats.splitlines()
    assert lines[0].split("\t") == ["column", "count", "nan", "mean", "std", "min", "max", "name"]
    table = [line.split("\t") for line in lines[1:]]
    assert [row[7] for row in table] == ["sepal length", "Größe", "z"]
    got = np.array([[float(v) for v in row[1:7]] for row in table])
    expected = np.column_stack([
        np.sum(~np.isnan(data), axis=0), np.sum(np.isnan(data), axis=0),
        np.nanmean(data, axis=0), np.nanstd(data, axis=0), np.nanmin(data, axis=0), np.nanmax(data, axis=0),
    ])
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    assert shown.splitlines()[0] == "export.csv: text, read as float64, shape 6×3, columns sepal length, Größe, z"
    assert "nan" in shown


def test_z_score_is_a_pipe(tmp_path, rng):
    x = rng.normal(size=(50, 4)) * [1, 5, 0.1, 30] + [0, 100, -2, 7]
    np.savetxt(tmp_path / "x.txt", x, fmt="%.17g")
    run(
        "tensor-stats --row mean x.txt > mean.txt && tensor-stats --row std x.txt | matrix-apply reciprocal > inv.txt"
        " && matrix-sub x.txt mean.txt | matrix-hadamard - inv.txt > z.txt",
        cwd=tmp_path,
    )
    z = parse((tmp_path / "z.txt").read_bytes())
    np.testing.assert_allclose(z, (x - x.mean(axis=0)) / x.std(axis=0), rtol=1e-12, atol=1e-12)


def test_semicolon_files_may_use_decimal_commas(tmp_path):
    (tmp_path / "de.csv").write_bytes("Länge;Breite\r\n1,5;2\r\n-0,25;3,125e2\r\n".encode())
    proc = run(["matrix-scale", "2", "de.csv"], cwd=tmp_path)
    np.testing.assert_array_equal(parse(proc.stdout), [[3.0, 4.0], [-0.5, 625.0]])


def test_decimal_commas_elsewhere_and_empty_fields_are_errors(tmp_path):
    cases = {
        "tabs.txt": ("1,5\t2,5\n3,5\t4,5\n", "tabs.txt:1: not a number: '5\\t2'", "decimal commas?"),
        "spaces.txt": ("1.5 2.5\n3,5 4,5\n", "spaces.txt:2: not a number: '3,5'", "a decimal comma?"),
        "quoted.csv": ('x,y\n"1,5",2\n', "quoted.csv:2: not a number: '1,5'", "a decimal comma in a comma-separated file"),
        "empty.csv": ("1,2,3\n4,,6\n", "empty.csv:2: empty field 2", "write nan"),
        "trailing.csv": ("1,2\n3,4,\n", "trailing.csv:2: empty field 3", "write nan"),
        "names.csv": ("a,b,c\n1,2\n", "names.csv:2: expected 3 values, found 2 (the header names 3 columns)", ""),
    }
    for name, (text, _, _) in cases.items():
        (tmp_path / name).write_text(text)
    for name, (_, message, hint) in cases.items():
        proc = run(["matrix-transpose", name], cwd=tmp_path, check=False)
        assert_one_line_error(proc, 1, message, hint)


def test_tensor_show_summarises_large_tensors(tmp_path):
    big = np.arange(2000 * 30, dtype=np.float32).reshape(2000, 30)
    np.save(tmp_path / "big.npy", big)
    np.save(tmp_path / "ints.npy", np.arange(4, dtype=np.int16).reshape(2, 2))
    out = run("tensor-show big.npy; tensor-show ints.npy; tensor-show --full big.npy | wc -l", cwd=tmp_path).stdout.decode()
    lines = out.splitlines()
    assert lines[0] == "big.npy: npy float32, shape 2000×30"
    assert "..." in lines[1] and len(lines) < 20
    assert "ints.npy: npy int16, read as float64, shape 2×2" in lines
    assert int(lines[-1]) > 2000


def test_column_stats_against_numpy_in_process(rng):
    import warnings

    from kerash import ops

    for shape in [(7, 3), (1, 4), (5,), (), (0, 3), (4, 2, 3)]:
        a = rng.normal(size=shape)
        if a.size > 2:
            a.flat[::3] = np.nan
        got = ops.column_stats(a)
        m = a.reshape(-1, 1) if a.ndim < 2 else a.reshape(a.shape[0], int(np.prod(a.shape[1:])))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            expected = {
                "count": np.sum(~np.isnan(m), axis=0), "nan": np.sum(np.isnan(m), axis=0),
                "mean": np.nanmean(m, axis=0), "std": np.nanstd(m, axis=0),
                "min": np.nanmin(m, axis=0) if m.size else np.full(m.shape[1], np.nan),
                "max": np.nanmax(m, axis=0) if m.size else np.full(m.shape[1], np.nan),
            }
        for name in ops.STATS:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-13, err_msg=f"{name} {shape}")


# ---------------------------------------------------------------- kerash split (issue 24)


def test_split_keeps_headers_word_labels_and_rows_aligned(tmp_path, rng):
    """A spreadsheet export and a column of word labels with its own header: every part keeps both headers,
    the lines untouched, the same rows of each file; the parts cover the rows once; the seed decides."""
    data = rng.normal(size=(40, 3)).round(3)
    data[:, 0] = np.arange(40)  # an id column: it tells which row went where
    (tmp_path / "flowers.csv").write_bytes(spreadsheet_csv(["id", "width", "height"], data.tolist()))
    words = ["big" if w > 0 else "small" for w in data[:, 1]]
    (tmp_path / "species.txt").write_text("species\n" + "\n".join(words) + "\n")
    out = run(["kerash", "split", "flowers.csv", "species.txt", "-o", "parts", "--fractions", "0.5,0.25,0.25",
               "--seed", "3"], cwd=tmp_path).stdout.decode().splitlines()
    assert [line.split("\t")[:2] for line in out] == [["train", "20 rows"], ["val", "10 rows"], ["test", "10 rows"]]
    seen = []
    original = (tmp_path / "flowers.csv").read_bytes().split(b"\r\n")
    for part in ("train", "val", "test"):
        lines = (tmp_path / "parts" / part / "flowers.csv").read_bytes().split(b"\r\n")
        assert lines[0] == original[0]  # the header, with its byte-order mark
        assert all(line in original for line in lines[1:-1])  # each line as it was
        ids = parse(run(["matrix-scale", "1", f"parts/{part}/flowers.csv"], cwd=tmp_path).stdout)[:, 0].astype(int)
        assert list(ids) == sorted(ids)  # file order kept
        labels = (tmp_path / "parts" / part / "species.txt").read_text().splitlines()
        assert labels[0] == "species" and labels[1:] == [words[i] for i in ids]
        seen += list(ids)
    assert sorted(seen) == list(range(40))
    again = run(["kerash", "split", "flowers.csv", "species.txt", "-o", "parts", "--fractions", "0.5,0.25,0.25",
                 "--seed", "3", "--force"], cwd=tmp_path)
    assert again.stdout.decode().splitlines() == out
    other = run(["kerash", "split", "flowers.csv", "species.txt", "-o", "other", "--fractions", "0.5,0.25,0.25",
                 "--seed", "4"], cwd=tmp_path)
    assert (tmp_path / "other" / "val" / "flowers.csv").read_bytes() != (tmp_path / "parts" / "val" / "flowers.csv").read_bytes()
    assert other.returncode == 0


def test_split_stratified_keeps_each_class_share(tmp_path, rng):
    labels = np.repeat([0, 1, 2], [60, 30, 10])
    rng.shuffle(labels)
    np.save(tmp_path / "x.npy", rng.normal(size=(100, 2, 2)))
    np.savetxt(tmp_path / "y.txt", labels, fmt="%d")
    run(["kerash", "split", "x.npy", "y.txt", "-o", "p", "--stratify", "--seed", "1"], cwd=tmp_path)
    x = np.load(tmp_path / "x.npy")
    for part, share in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        y = np.loadtxt(tmp_path / "p" / part / "y.txt").astype(int)
        assert np.all(np.abs(np.bincount(y, minlength=3) - share * np.array([60, 30, 10])) <= 1), (part, y)
        assert np.load(tmp_path / "p" / part / "x.npy").shape[1:] == (2, 2)
    rows = [np.load(tmp_path / "p" / part / "x.npy") for part in ("train", "val", "test")]
    assert sorted(map(tuple, np.concatenate(rows).reshape(100, -1).tolist())) == sorted(map(tuple, x.reshape(100, -1).tolist()))


def test_split_refuses_what_does_not_fit(tmp_path, rng):
    np.save(tmp_path / "x.npy", rng.normal(size=(10, 2)))
    np.savetxt(tmp_path / "y.txt", np.arange(9), fmt="%d")
    np.savetxt(tmp_path / "z.txt", np.arange(10), fmt="%d")
    for args, words in (
        (["x.npy", "y.txt"], "y.txt has 9 rows but x.npy has 10 samples"),
        (["x.npy", "z.txt", "--counts", "8,3,1"], "--counts"),
        (["x.npy", "z.txt", "--counts", "8,2"], "2 parts asked for but 3 names"),
        (["x.npy", "z.txt", "--fractions", "0.5,0.6,0.1"], "add up to 1"),
        (["x.npy", "z.txt", "--names", "a,a,b"], "distinct"),
        (["x.npy", "x.npy"], "different names"),
    ):
        proc = run(["kerash", "split", *args, "-o", "parts"], cwd=tmp_path, check=False)
        assert_one_line_error(proc, 2, words)
        assert not (tmp_path / "parts").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("precious")
    proc = run(["kerash", "split", "x.npy", "z.txt", "-o", "mine", "--force"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "not a folder kerash split wrote")
    assert (tmp_path / "mine" / "keep.txt").read_text() == "precious"


def test_labels_and_features_by_column_name_or_number(tmp_path, rng):
    """Issue 24, item 5: one spreadsheet holds the samples and their word labels; --label-column, --columns and
    --drop choose them by header name or number from 1, for train, evaluate and predict; the result equals
    training on the columns cut apart by hand."""
    names = ["setosa", "versicolor", "virginica"]
    values = rng.normal(size=(30, 3)) + np.repeat(np.arange(3), 10)[:, None]
    species = [names[i // 10] for i in range(30)]
    rows = [[i, *v] for i, v in enumerate(values.tolist())]
    csv = spreadsheet_csv(["id", "a", "b", "c"], rows).decode("utf-8").split("\r\n")
    csv = [line + ("," + ("species" if k == 0 else species[k - 1]) if line else "") for k, line in enumerate(csv)]
    (tmp_path / "table.csv").write_text("\r\n".join(csv))
    np.savetxt(tmp_path / "x.txt", values[:, :2])
    (tmp_path / "y.txt").write_text("\n".join(species) + "\n")
    (tmp_path / "m.model").write_text("2 1 1\ninput\ndense 3 softmax\n")
    for name in ("by-hand", "by-name", "by-number"):
        run(["model-init", "m.model", "-o", name, "--seed", "4", "--dtype", "float64"], cwd=tmp_path)
    common = ["--epochs", "3", "--batch-size", "5", "--seed", "1", "--lr", "0.2"]
    run(["train", "by-hand", "-x", "x.txt", "-y", "y.txt", *common], cwd=tmp_path)
    run(["train", "by-name", "-x", "table.csv", "--label-column", "species", "--columns", "a,b", *common], cwd=tmp_path)
    run(["train", "by-number", "-x", "table.csv", "--label-column", "5", "--drop", "id,4", *common], cwd=tmp_path)
    for name in ("by-name", "by-number"):
        for key in ("layer_01/W.npy", "layer_01/b.npy"):
            np.testing.assert_array_equal(np.load(tmp_path / name / key), np.load(tmp_path / "by-hand" / key))
        assert (tmp_path / name / "classes.txt").read_text() == (tmp_path / "by-hand" / "classes.txt").read_text()
    scored = run(["evaluate", "by-name", "-x", "table.csv", "--label-column", "species", "--drop", "id,c"],
                 cwd=tmp_path).stdout
    assert scored == run(["evaluate", "by-hand", "-x", "x.txt", "-y", "y.txt"], cwd=tmp_path).stdout
    predicted = run(["predict", "by-name", "table.csv", "--columns", "2,3", "--classes"], cwd=tmp_path).stdout
    assert predicted == run(["predict", "by-hand", "x.txt", "--classes"], cwd=tmp_path).stdout
    for args, words in (
        (["--label-column", "kind"], "no such column; the columns: id, a, b, c, species"),
        (["--label-column", "species", "-y", "y.txt"], "not both"),
        (["--drop", "id,a,b,c", "--label-column", "species"], "no feature column"),
    ):
        proc = run(["train", "by-name", "-x", "table.csv", "--epochs", "1", *args], cwd=tmp_path, check=False)
        assert_one_line_error(proc, 2, words)
    proc = run(["train", "by-name", "-x", "table.csv", "-y", "y.txt", "--drop", "id", "--epochs", "1"], cwd=tmp_path,
               check=False)
    assert_one_line_error(proc, 1, "not a number in column 'species'", "--label-column")


def test_the_held_out_part_is_recorded_and_scored(tmp_path, rng):
    """Issue 24, item 6: train --validation-split writes MODEL/validation-rows.txt (the rows it held out, for
    tensor-rows too); evaluate and kerash plot --validation-of score exactly that part: train's val figures."""
    x = rng.normal(size=(50, 3))
    savetxt(tmp_path / "x.txt", x)
    (tmp_path / "y.txt").write_text("\n".join("ab"[int(v > 0)] for v in x[:, 0]) + "\n")
    (tmp_path / "m.model").write_text("3 1 1\ninput\ndense 2 softmax\n")
    run(["model-init", "m.model", "-o", "m", "--seed", "2", "--dtype", "float64"], cwd=tmp_path)
    out = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "3", "--validation-split", "0.2", "--seed",
               "7"], cwd=tmp_path).stdout.decode().splitlines()
    last = out[-1].split("\t")
    lines = (tmp_path / "m" / "validation-rows.txt").read_text().splitlines()
    assert lines[0].startswith("# samples 50:")
    from kerash.training.batches import split

    assert [int(v) for v in lines[1:]] == split(50, 0.2, 7)[1].tolist()
    scored = dict(line.split("\t") for line in run(["evaluate", "m", "-x", "x.txt", "-y", "y.txt", "--validation-of",
                                                    "m"], cwd=tmp_path).stdout.decode().splitlines())
    assert (scored["loss"], scored["accuracy"], scored["samples"]) == (last[4], last[5], "10")
    rows = ",".join(lines[1:])
    picked = parse(run(["tensor-rows", rows, "x.txt"], cwd=tmp_path).stdout)
    np.testing.assert_array_equal(picked, x[[int(v) for v in lines[1:]]])
    run(["kerash", "plot", "confusion", "m", "-x", "x.txt", "-y", "y.txt", "--validation-of", "m", "-o", "c.svg"],
        cwd=tmp_path)
    assert f"{scored['correct']} of 10 correct" in (tmp_path / "c.svg").read_text()
    savetxt(tmp_path / "short.txt", x[:40])
    proc = run(["evaluate", "m", "-x", "short.txt", "-y", "y.txt", "--validation-of", "m"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "held rows out of 50 samples, but the data given has 40")
    run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "1"], cwd=tmp_path)  # no split this time
    proc = run(["evaluate", "m", "-x", "x.txt", "-y", "y.txt", "--validation-of", "m"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "held no rows out")


@pytest.mark.parametrize("method", ["mean", "median", "most-frequent"])
def test_impute_fills_missing_values_fitted_on_the_training_part(tmp_path, method):
    """Issue 24, item 2: NA, ?, empty cells and nan read as missing; train --impute fits one value per feature on
    the training part only (numpy's mean, median or most frequent), keeps it with the model, and every tool fills
    its inputs with it."""
    rng = np.random.default_rng(8)
    x = rng.integers(0, 4, size=(40, 3)).astype(float)
    gaps = rng.random(x.shape) < 0.15
    cells = [[("NA", "?", "")[(i + j) % 3] if gaps[i, j] else f"{v:g}" for j, v in enumerate(row)]
             for i, row in enumerate(x.tolist())]
    labels = ["yes" if v > 1 else "no" for v in x[:, 0]]
    (tmp_path / "t.csv").write_text("a,b,c,label\n" + "".join(",".join(r) + f",{l}\n" for r, l in zip(cells, labels)))
    (tmp_path / "m.model").write_text("3 1 1\ninput\ndense 2 softmax\n")
    run(["model-init", "m.model", "-o", "m", "--seed", "1", "--dtype", "float64"], cwd=tmp_path)
    proc = run(["train", "m", "-x", "t.csv", "--label-column", "label", "--epochs", "1"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "non-finite value nan", "--impute")
    run(["train", "m", "-x", "t.csv", "--label-column", "label", "--epochs", "2", "--impute", method,
         "--validation-split", "0.25", "--seed", "3"], cwd=tmp_path)
    from kerash.training.batches import split

    train_rows = split(40, 0.25, 3)[0]
    known = np.where(gaps, np.nan, x)[train_rows]
    expected = []
    for column in known.T:
        column = column[~np.isnan(column)]
        if method == "mean":
            expected.append(column.mean())
        elif method == "median":
            expected.append(np.median(column))
        else:
            values, counts = np.unique(column, return_counts=True)
            expected.append(values[np.argmax(counts)])
    np.testing.assert_allclose(np.load(tmp_path / "m" / "imputation" / "values.npy"), expected, rtol=1e-12)
    filled = np.where(gaps, np.array(expected)[None, :], x)
    w = {k: np.load(tmp_path / "m" / "layer_01" / f"{k}.npy") for k in ("W", "b")}
    z = filled @ w["W"] + w["b"]
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    got = parse(run(["predict", "m", "t.csv", "--label-column", "label"], cwd=tmp_path).stdout)
    np.testing.assert_allclose(got, probs, rtol=1e-10)
    before = (tmp_path / "m" / "imputation" / "values.npy").read_bytes()
    run(["train", "m", "-x", "t.csv", "--label-column", "label", "--epochs", "1"], cwd=tmp_path)  # kept
    assert (tmp_path / "m" / "imputation" / "values.npy").read_bytes() == before
    run(["model-init", "m.model", "-o", "raw", "--seed", "1"], cwd=tmp_path)
    proc = run(["train", "raw", "-x", "t.csv", "--label-column", "label", "--impute", "mode"], cwd=tmp_path,
               check=False)
    assert_one_line_error(proc, 2, "--impute must be mean, median or most-frequent")


def test_category_columns_are_one_hot_with_a_vocabulary_kept_by_the_model(tmp_path):
    """Issue 24, items 3 and 4: model-init --data TABLE fits the categories of the columns of words (and of those
    --categorical names) on that data, keeps them in MODEL/categories.tsv and takes the input size after encoding;
    train, evaluate, predict and kerash plot encode alike, equal to the one-hot columns written by hand; an unseen
    or missing category is all zeros with a warning, never a failure."""
    rng = np.random.default_rng(5)
    colours, sizes = ["red", "green", "blue"], [3, 1, 2]  # size: numeric codes, declared categorical
    rows, hand = [], []
    for i in range(36):
        c, s, v = colours[i % 3], sizes[(i // 3) % 3], float(rng.normal())
        label = "yes" if (c == "red") != (v > 0) else "no"
        rows.append(f"{i},{c},{v!r},{s},{label}")
        hand.append([float(c == "blue"), float(c == "green"), float(c == "red"), v, float(s == 1), float(s == 2),
                     float(s == 3)])
    (tmp_path / "t.csv").write_text("id,colour,value,size,label\n" + "\n".join(rows) + "\n")
    np.savetxt(tmp_path / "x.txt", np.array(hand), fmt="%.17g")
    (tmp_path / "y.txt").write_text("".join(r.rsplit(",", 1)[1] + "\n" for r in rows))
    (tmp_path / "m.model").write_text("input\ndense 2 softmax\n")
    table = ["--label-column", "label", "--drop", "id"]
    run(["model-init", "m.model", "-o", "m", "--seed", "3", "--dtype", "float64", "--data", "t.csv", *table,
         "--categorical", "size"], cwd=tmp_path)
    assert (tmp_path / "m" / "categories.tsv").read_text() == "colour\tblue\tgreen\tred\nsize\t1\t2\t3\n"
    assert "7 1 1" in (tmp_path / "m" / "model").read_text()
    (tmp_path / "h.model").write_text("7 1 1\ninput\ndense 2 softmax\n")
    run(["model-init", "h.model", "-o", "h", "--seed", "3", "--dtype", "float64"], cwd=tmp_path)
    common = ["--epochs", "3", "--batch-size", "6", "--seed", "1", "--lr", "0.3"]
    run(["train", "m", "-x", "t.csv", *table, *common], cwd=tmp_path)
    run(["train", "h", "-x", "x.txt", "-y", "y.txt", *common], cwd=tmp_path)
    for key in ("layer_01/W.npy", "layer_01/b.npy"):
        np.testing.assert_array_equal(np.load(tmp_path / "m" / key), np.load(tmp_path / "h" / key))
    assert (tmp_path / "m" / "categories.tsv").exists()  # kept by the save
    scored = run(["evaluate", "m", "-x", "t.csv", *table], cwd=tmp_path).stdout
    assert scored == run(["evaluate", "h", "-x", "x.txt", "-y", "y.txt"], cwd=tmp_path).stdout
    (tmp_path / "new.csv").write_text("id,colour,value,size,label\n1,purple,0.5,2,yes\n2,,0.5,4,no\n3,red,0.5,1,no\n")
    proc = run(["predict", "m", "new.csv", *table], cwd=tmp_path)
    np.savetxt(tmp_path / "new.txt", [[0, 0, 0, 0.5, 0, 1, 0], [0, 0, 0, 0.5, 0, 0, 0], [0, 0, 1, 0.5, 1, 0, 0]])
    assert proc.stdout == run(["predict", "h", "new.txt"], cwd=tmp_path).stdout
    warnings = proc.stderr.decode()
    assert "1 rows with a value of column 'colour' the model has no category for ('purple'): all zeros" in warnings
    assert "1 rows without a value in the category column 'colour'" in warnings
    assert "column 'size' the model has no category for ('4')" in warnings
    run(["kerash", "plot", "confusion", "m", "-x", "t.csv", *table, "-o", "c.svg"], cwd=tmp_path)
    assert "of 36 correct" in (tmp_path / "c.svg").read_text()
    for args, code, words in (
        (["--data", "t.csv", "--label-column", "label", "--categorical", "label"], 2, "is the label column"),
        (["--data", "t.csv", "--label-column", "label", "--categorical", "nope"], 2, "no such column"),
        (["--label-column", "label"], 2, "choose the columns of --data: give it"),
        (["--data", "t.csv", "--label-column", "label", "--drop", "id", "--input-size", "7"], 2, "not both"),
    ):
        proc = run(["model-init", "m.model", "-o", "bad", *args], cwd=tmp_path, check=False)
        assert_one_line_error(proc, code, words)
        assert not (tmp_path / "bad").exists()
    proc = run(["train", "h", "-x", "t.csv", *table, "--epochs", "1"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "not a number in column 'colour'", "model-init MODEL_FILE --data FILE")


def test_numeric_category_codes_match_by_value(tmp_path):
    (tmp_path / "t.csv").write_text("size,v,label\n1,0.5,a\n2,0.1,b\n1.0,0.3,a\n3,0.2,b\n")
    (tmp_path / "m.model").write_text("input\ndense 2 softmax\n")
    run(["model-init", "m.model", "-o", "m", "--data", "t.csv", "--label-column", "label", "--categorical", "size",
         "--seed", "1"], cwd=tmp_path)
    assert (tmp_path / "m" / "categories.tsv").read_text() == "size\t1\t2\t3\n"  # 1 and 1.0: one category
    (tmp_path / "new.csv").write_text("size,v,label\n1.00,0.5,a\n2e0,0.1,b\n")
    proc = run(["predict", "m", "new.csv", "--label-column", "label", "--node", "input"], cwd=tmp_path)
    np.testing.assert_array_equal(parse(proc.stdout), [[1, 0, 0, 0.5], [0, 1, 0, 0.1]])
    assert b"no category" not in proc.stderr


def test_a_table_with_its_columns_in_another_order_is_read_by_name(tmp_path):
    """model-init --data TABLE records the feature columns' names (MODEL/columns.txt); a table with the same columns
    in another order gives the same answers, one without them a one-line error."""
    rng = np.random.default_rng(2)
    rows = [f"{i},{rng.normal():.3f},{'red' if i % 2 else 'blue'},{rng.normal():.3f},{'ab'[i % 3 == 0]}"
            for i in range(20)]
    (tmp_path / "t.csv").write_text("id,length,colour,width,kind\n" + "\n".join(rows) + "\n")
    reordered = ["id,width,kind,colour,length"] + [",".join(r.split(",")[k] for k in (0, 3, 4, 2, 1)) for r in rows]
    (tmp_path / "r.csv").write_text("\n".join(reordered) + "\n")
    (tmp_path / "m.model").write_text("input\ndense 2 softmax\n")
    table = ["--label-column", "kind", "--drop", "id"]
    run(["model-init", "m.model", "-o", "m", "--data", "t.csv", *table, "--seed", "1"], cwd=tmp_path)
    assert (tmp_path / "m" / "columns.txt").read_text() == "length\ncolour\nwidth\n"
    run(["train", "m", "-x", "t.csv", *table, "--epochs", "2"], cwd=tmp_path)
    assert run(["predict", "m", "r.csv", *table], cwd=tmp_path).stdout == \
        run(["predict", "m", "t.csv", *table], cwd=tmp_path).stdout
    assert run(["evaluate", "m", "-x", "r.csv", *table], cwd=tmp_path).stdout == \
        run(["evaluate", "m", "-x", "t.csv", *table], cwd=tmp_path).stdout
    proc = run(["predict", "m", "r.csv", "--label-column", "kind", "--drop", "id,width"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "the feature columns differ from those m was made with", "missing width")
