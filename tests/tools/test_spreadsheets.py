"""Spreadsheet exports as they are, column statistics, and a look at a tensor."""

import numpy as np

from conftest import assert_one_line_error, parse, run


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
