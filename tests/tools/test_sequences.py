"""Sequences as users have them (issue 23): lstm and gru models through the tools, sequences of different
lengths as blocks of text, --lengths or a ragged .npz, the same bits whatever the number of processes."""

import numpy as np
import pytest

from conftest import assert_one_line_error, parse, run, tool_env
from helpers import processes_column


def parity_data(tmp_path, count=120, seed=0, every=False):
    """Blocks of 0/1 steps between blank lines (lengths 2–9) and the parity of each (or of every prefix)."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for _ in range(count):
        s = rng.integers(0, 2, size=int(rng.integers(2, 10)))
        seqs.append(s)
        labels.append(np.cumsum(s) % 2 if every else [s.sum() % 2])
    (tmp_path / "x.txt").write_text("\n".join("".join(f"{v}\n" for v in s) for s in seqs))
    (tmp_path / "y.txt").write_text("\n".join("".join(f"{v}\n" for v in lab) for lab in labels))
    return seqs, labels


@pytest.mark.parametrize("description", [
    "1 1 1\ninput\nlstm 8\ndense 2 softmax\n",
    "(input, 1)\n(h, 8, <gru>)\n(output, 2, <softmax>, <cross_entropy>)\n",
])
def test_blocks_of_different_lengths_train_the_same_bits_with_any_processes(tmp_path, description):
    seqs, labels = parity_data(tmp_path)
    (tmp_path / "m.model").write_text(description)
    for workers in ("1", "2", "3"):
        run(["model-init", "m.model", "-o", f"m{workers}", "--seed", "1", "--dtype", "float64"], cwd=tmp_path)
        run(["train", f"m{workers}", "-x", "x.txt", "-y", "y.txt", "--epochs", "2", "--batch-size", "40",
             "--workers", workers, "--shards", "4", "--seed", "3", "--optimizer", "adam", "--lr", "0.01"],
            cwd=tmp_path, env=tool_env(KERASH_ENGINE_ADAPT=0))  # every worker computes at every step
        assert processes_column(tmp_path / f"m{workers}") == [float(workers)] * 2
    for workers in ("2", "3"):
        for key in ("layer_01/W.npy", "layer_01/b.npy", "layer_02/W.npy"):
            assert (tmp_path / f"m{workers}" / key).read_bytes() == (tmp_path / "m1" / key).read_bytes()
    # predict: a row per sequence, equal to each sequence given alone
    out = parse(run(["predict", "m1", "x.txt"], cwd=tmp_path).stdout)
    assert out.shape == (len(seqs), 2)
    for k in (0, 7, 42):
        (tmp_path / "one.txt").write_text("".join(f"{v}\n" for v in seqs[k]))
        alone = parse(run(["predict", "m1", "-"], cwd=tmp_path, input=(tmp_path / "one.txt").read_bytes() +
                          b"\n").stdout)
        np.testing.assert_allclose(alone.reshape(-1), out[k], rtol=1e-12)
    scores = dict(line.split("\t") for line in run(["evaluate", "m1", "-x", "x.txt", "-y", "y.txt"],
                                                  cwd=tmp_path).stdout.decode().splitlines())
    assert scores["samples"] == str(len(seqs))


def test_every_step_targets_lengths_files_and_ragged_npz(tmp_path):
    seqs, labels = parity_data(tmp_path, count=60, seed=1, every=True)
    (tmp_path / "m.model").write_text("1 1 1\ninput\ngru 6 sequences\ndense 2 softmax\n")
    run(["model-init", "m.model", "-o", "m", "--seed", "2", "--dtype", "float64"], cwd=tmp_path)
    run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "3", "--batch-size", "16"], cwd=tmp_path)
    blocks = run(["predict", "m", "x.txt", "--classes"], cwd=tmp_path).stdout.decode().split("\n\n")
    assert [len(b.split()) for b in blocks] == [len(s) for s in seqs]  # a block per sequence, a row per step
    text_out = run(["predict", "m", "x.txt"], cwd=tmp_path).stdout
    flat = np.concatenate(seqs).astype(float)[:, None]
    np.save(tmp_path / "flat.npy", flat)
    (tmp_path / "lengths.txt").write_text("".join(f"{len(s)}\n" for s in seqs))
    assert run(["predict", "m", "flat.npy", "--lengths", "lengths.txt"], cwd=tmp_path).stdout == text_out
    np.savez(tmp_path / "ragged.npz", *[s.astype(float) for s in seqs])
    assert run(["predict", "m", "ragged.npz"], cwd=tmp_path).stdout == text_out
    np.savez(tmp_path / "packed.npz", data=flat, lengths=np.array([len(s) for s in seqs]))
    assert run(["predict", "m", "packed.npz"], cwd=tmp_path).stdout == text_out
    scores = dict(line.split("\t") for line in run(["evaluate", "m", "-x", "x.txt", "-y", "y.txt"],
                                                  cwd=tmp_path).stdout.decode().splitlines())
    predicted = np.concatenate([np.array(b.split(), dtype=int) for b in blocks])
    truth = np.concatenate(labels)
    assert scores["accuracy"] == f"{np.mean(predicted == truth):.4f}"  # padded steps are not counted


def test_refusals(tmp_path):
    (tmp_path / "x.txt").write_text("1\n0\n\n1\n")
    (tmp_path / "y.txt").write_text("1\n1\n")
    (tmp_path / "r.mdl").write_text("(input, 1)\n(a, 2, <tanh>)\n{m, h, additive}\n(h, 2, <tanh>)\n"
                                    "(output, 2, <softmax>, <cross_entropy>)\n")
    run(["model-init", "r.mdl", "-o", "r", "--seed", "1"], cwd=tmp_path)
    proc = run(["train", "r", "-x", "x.txt", "-y", "y.txt", "--epochs", "1"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "sequences of different lengths need a model whose recurrence is an lstm or gru")
    (tmp_path / "l.model").write_text("1 1 1\ninput\nlstm 2 sometimes\ndense 2 softmax\n")
    proc = run(["model-init", "l.model", "-o", "l"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "l.model:3", "'last' (the default)")
    (tmp_path / "ok.model").write_text("1 1 1\ninput\nlstm 2\ndense 2 softmax\n")
    run(["model-init", "ok.model", "-o", "ok", "--seed", "1"], cwd=tmp_path)
    np.save(tmp_path / "hole.npy", np.array([[[1.0], [np.nan], [0.0]]]))
    proc = run(["predict", "ok", "hole.npy"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "sequence 1, step 2: a step of missing values inside a sequence")
    (tmp_path / "bad-lengths.txt").write_text("2\n2\n")
    proc = run(["predict", "ok", "x.txt", "--lengths", "bad-lengths.txt"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "the lengths add up to 4 steps but x.txt has 3 rows")


def test_backprop_and_the_confusion_picture_read_sequences_of_different_lengths(tmp_path):
    seqs, labels = parity_data(tmp_path, count=30, seed=4)
    (tmp_path / "m.model").write_text("1 1 1\ninput\nlstm 4\ndense 2 softmax\n")
    run(["model-init", "m.model", "-o", "m", "--seed", "1", "--dtype", "float64"], cwd=tmp_path)
    run(["backprop", "m", "--inputs", "x.txt", "--labels", "y.txt", "-o", "g1"], cwd=tmp_path)
    np.savez(tmp_path / "r.npz", *[s.astype(float) for s in seqs])
    run(["backprop", "m", "--inputs", "r.npz", "--labels", "y.txt", "-o", "g2"], cwd=tmp_path)
    for key in ("layer_01/W.npy", "layer_02/W.npy"):
        np.testing.assert_array_equal(np.load(tmp_path / "g1" / key), np.load(tmp_path / "g2" / key))
    correct = dict(line.split("\t") for line in run(["evaluate", "m", "-x", "x.txt", "-y", "y.txt"],
                                                   cwd=tmp_path).stdout.decode().splitlines())["correct"]
    run(["kerash", "plot", "confusion", "m", "-x", "x.txt", "-y", "y.txt", "-o", "c.svg"], cwd=tmp_path)
    assert f"{correct} of 30 correct" in (tmp_path / "c.svg").read_text()


def test_review_findings_are_refused_or_right(tmp_path):
    """A sequence layer after one that returns the last step is refused at model-init; --impute works on
    sequences of different lengths; --bptt refuses --skip-below; kerash sample refuses a tdnn model."""
    (tmp_path / "a.model").write_text("1 1 1\ninput\nlstm 4\ngru 3\ndense 2 softmax\n")
    proc = run(["model-init", "a.model", "-o", "a"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "a.model:4: gru: reads sequences", "'sequences'")
    assert not (tmp_path / "a").exists()
    (tmp_path / "x.txt").write_text("1 0.5\nnan 1\n0 2\n\n1 1\n\n0 0\n1 nan\n")  # a value missing, not a step
    (tmp_path / "y.txt").write_text("1\n0\n1\n")
    (tmp_path / "m.model").write_text("2 1 1\ninput\ngru 3 sequences\ntdnn 2 identity -1..1\ngru 2\n"
                                      "dense 2 softmax\n")
    run(["model-init", "m.model", "-o", "m", "--seed", "1"], cwd=tmp_path)
    run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--impute", "mean", "--epochs", "1"], cwd=tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "m" / "imputation" / "values.npy"), [0.6, 0.9])
    proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--bptt", "2", "--skip-below", "0.1"], cwd=tmp_path,
               check=False)
    assert_one_line_error(proc, 2, "--skip-below")
    (tmp_path / "t.model").write_text("1 1 1\ninput\nembedding 3 2\ntdnn 3 tanh -1..1\ndense 3 softmax\n")
    (tmp_path / "v.txt").write_text("<unk>\na\nb\n")
    run(["model-init", "t.model", "-o", "t", "--vocabulary", "v.txt"], cwd=tmp_path)
    proc = run(["kerash", "sample", "t", "-n", "3"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "a tdnn layer reads the steps around each step")


def test_second_review_findings(tmp_path):
    """Blocks of labels must match their sequences one by one; a step of only missing values is refused (it would
    read as padding); tdnn offsets are bounded; --bptt longer than the stream is the whole stream."""
    seqs, labels = parity_data(tmp_path, count=6, seed=2, every=True)
    blocks = (tmp_path / "y.txt").read_text().split("\n\n")
    first, second = blocks[0].splitlines(), blocks[1].splitlines()
    blocks[0], blocks[1] = "\n".join(first[:-1]) + "\n", "\n".join([first[-1], *second]) + "\n"
    (tmp_path / "moved.txt").write_text("\n".join(b if b.endswith("\n") else b + "\n" for b in blocks))
    (tmp_path / "m.model").write_text("1 1 1\ninput\ngru 3 sequences\ndense 2 softmax\n")
    run(["model-init", "m.model", "-o", "m", "--seed", "1"], cwd=tmp_path)
    proc = run(["evaluate", "m", "-x", "x.txt", "-y", "moved.txt"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, f"block 1 holds {len(seqs[0]) - 1} labels but sequence 1 has {len(seqs[0])}")
    (tmp_path / "hole.txt").write_text("1\n0\nnan\n\n1\n")
    proc = run(["predict", "m", "hole.txt"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "sequence 1, step 3: every value is missing")
    (tmp_path / "big.model").write_text("1 1 1\ninput\ntdnn 4 tanh -100000000..100000000\ndense 1 sigmoid\n")
    proc = run(["model-init", "big.model", "-o", "big"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1, "tdnn: at most 1024 offsets")
