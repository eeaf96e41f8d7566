"""The README's chapters from a spreadsheet to a classifier and to a regression: every command runs, in
order, in one shell, and the results are what they promise."""

import re

from conftest import ROOT, run, tool_env


def chapter(title):
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    end = text.index("\n## ", start + 1)
    return "\n".join(re.findall(r"```bash\n(.*?)```", text[start:end], flags=re.S))


def test_from_a_spreadsheet_to_a_classifier(tmp_path):
    proc = run(["bash", "-euo", "pipefail", "-c", chapter("From a spreadsheet to a classifier")], cwd=tmp_path,
               env=tool_env(KERASH_WORKDIR=tmp_path))
    out = proc.stdout.decode()
    assert re.search(r"^train\t120 rows\tparts/train/flowers.csv$", out, re.M), out
    accuracy = re.search(r"^accuracy\t([0-9.]+)$", out, re.M)
    assert accuracy and float(accuracy.group(1)) >= 0.8, out
    assert "macro avg" in out  # the report
    assert (tmp_path / "flowers" / "classes.txt").read_text().split() == ["setosa", "versicolor", "virginica"]
    assert (tmp_path / "flowers" / "categories.tsv").read_text() == "colour\tblue\tgreen\tred\n"
    assert (tmp_path / "flowers" / "imputation" / "values.npy").exists()
    assert (tmp_path / "confusion.png").stat().st_size > 1000


def test_from_a_spreadsheet_to_a_regression(tmp_path):
    proc = run(["bash", "-euo", "pipefail", "-c", chapter("… and to a regression")], cwd=tmp_path,
               env=tool_env(KERASH_WORKDIR=tmp_path))
    scores = dict(line.split("\t") for line in proc.stdout.decode().splitlines() if line.count("\t") == 1)
    assert float(scores["r2"]) > 0.95 and float(scores["rmse"]) < 15, scores


def test_sequences_of_different_lengths_classified_with_lstm_and_gru(tmp_path):
    proc = run(["bash", "-euo", "pipefail", "-c", chapter("Sequences: lstm, gru, embeddings")], cwd=tmp_path,
               env=tool_env(KERASH_WORKDIR=tmp_path))
    out = proc.stdout.decode()
    accuracies = [float(a) for a in re.findall(r"^accuracy\t([0-9.]+)$", out, re.M)]
    assert len(accuracies) == 2 and min(accuracies) >= 0.95, out
    assert out.splitlines()[-2:] == ["0", "1"], out
