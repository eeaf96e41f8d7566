"""A character model from text (issue 26): train --bptt over one stream, the same bits with any number of
processes and across a resume, and kerash sample."""

import subprocess

from conftest import assert_one_line_error, run, tool_env
from helpers import processes_column

TEXT = "the cat sat on the mat. the dog sat on the log. " * 30


def stream(tmp_path):
    (tmp_path / "corpus.txt").write_text(TEXT)
    run("kerash text encode corpus.txt -v chars.txt > ids.txt && head -n -1 ids.txt > x.txt && "
        "tail -n +2 ids.txt > y.txt", cwd=tmp_path)
    vocabulary = len((tmp_path / "chars.txt").read_text().splitlines())
    (tmp_path / "lm.model").write_text(f"1 1 1\ninput\nembedding {vocabulary} 8\nlstm 16 sequences\n"
                                       f"dense {vocabulary} softmax\n")
    return vocabulary


def test_bptt_gives_the_same_bits_with_any_processes_and_across_a_resume(tmp_path):
    stream(tmp_path)
    common = ["-x", "x.txt", "-y", "y.txt", "--bptt", "10", "--batch-size", "6", "--optimizer", "adam", "--lr",
              "0.01", "--seed", "1", "--shards", "3"]
    for name, workers in (("a", "1"), ("b", "3")):
        run(["model-init", "lm.model", "-o", name, "--seed", "1", "--dtype", "float64", "--vocabulary",
             "chars.txt"], cwd=tmp_path)
        run(["train", name, *common, "--epochs", "2", "--workers", workers], cwd=tmp_path,
            env=tool_env(KERASH_ENGINE_ADAPT=0))  # every worker computes at every step
    assert processes_column(tmp_path / "b") == [3.0, 3.0]
    run(["model-init", "lm.model", "-o", "c", "--seed", "1", "--dtype", "float64"], cwd=tmp_path)
    run(["train", "c", *common, "--epochs", "1"], cwd=tmp_path)
    run(["train", "c", *common, "--epochs", "1"], cwd=tmp_path)
    for other in ("b", "c"):
        for key in ("layer_01/W.npy", "layer_02/W.npy", "layer_03/W.npy"):
            assert (tmp_path / other / key).read_bytes() == (tmp_path / "a" / key).read_bytes(), (other, key)
    lines = (tmp_path / "a" / "trace.tsv").read_text().splitlines()
    losses = [float(line.split("\t")[2]) for line in lines if line[:1].isdigit()]
    assert losses[-1] < losses[0]


def test_sample_streams_the_same_text_for_a_seed(tmp_path):
    stream(tmp_path)
    run(["model-init", "lm.model", "-o", "lm", "--seed", "1", "--vocabulary", "chars.txt"], cwd=tmp_path)
    run(["train", "lm", "-x", "x.txt", "-y", "y.txt", "--bptt", "20", "--batch-size", "8", "--optimizer", "adam",
         "--lr", "0.02", "--epochs", "15", "--seed", "1"], cwd=tmp_path)
    first = run(["kerash", "sample", "lm", "-n", "80", "--prime", "the ", "--seed", "3"], cwd=tmp_path).stdout
    again = run(["kerash", "sample", "lm", "-n", "80", "--prime", "the ", "--seed", "3"], cwd=tmp_path).stdout
    assert first == again and first.startswith(b"the ") and len(first.decode()) >= 84
    assert set(first.decode()) <= set(TEXT) | {"\n"}
    cold = run(["kerash", "sample", "lm", "-n", "80", "--prime", "the ", "--seed", "3", "-t", "0.05"],
               cwd=tmp_path).stdout.decode()
    assert "sat on the" in cold  # nearly greedy: what the text says most
    top1 = run(["kerash", "sample", "lm", "-n", "40", "--top-k", "1", "--seed", "9"], cwd=tmp_path).stdout
    assert top1 == run(["kerash", "sample", "lm", "-n", "40", "--top-k", "1", "--seed", "4"], cwd=tmp_path).stdout
    # a pipe that closes early stops it: a million tokens would take minutes
    proc = subprocess.run("kerash sample lm -n 1000000 --seed 1 -t 3 | head -c 100 | wc -c", shell=True,
                          cwd=tmp_path, env=tool_env(), capture_output=True, timeout=60)
    assert proc.stdout.strip() == b"100"
    for args, code, words in ((["-t", "0"], 2, "--temperature must be between 0.01 and 100"),
                              (["-v", "none.txt"], 2, "no vocabulary: none.txt does not exist")):
        assert_one_line_error(run(["kerash", "sample", "lm", *args], cwd=tmp_path, check=False), code, words)
    assert (tmp_path / "lm" / "vocabulary.txt").read_text() == (tmp_path / "chars.txt").read_text()


def test_bptt_goes_on_exactly_after_an_interruption_inside_an_epoch(tmp_path):
    import json
    import random
    import signal

    (tmp_path / "corpus.txt").write_text(TEXT * 12)
    run("kerash text encode corpus.txt -v chars.txt > ids.txt && head -n -1 ids.txt > x.txt && "
        "tail -n +2 ids.txt > y.txt", cwd=tmp_path)
    vocabulary = len((tmp_path / "chars.txt").read_text().splitlines())
    (tmp_path / "lm.model").write_text(f"1 1 1\ninput\nembedding {vocabulary} 8\ngru 16 sequences\n"
                                       f"dense {vocabulary} softmax\n")
    common = ["-x", "x.txt", "-y", "y.txt", "--bptt", "5", "--batch-size", "4", "--optimizer", "adam", "--lr",
              "0.01", "--seed", "1", "--workers", "1", "--dtype", "float64"]
    for name in ("cut", "whole"):
        run(["model-init", "lm.model", "-o", name, "--seed", "1"], cwd=tmp_path)
    proc = subprocess.Popen(["train", "cut", *common, "--epochs", "1000"], cwd=tmp_path, env=tool_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().startswith(b"epoch\t")
        assert proc.stdout.readline().startswith(b"1\t")
        import time

        time.sleep(random.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    state = json.loads((tmp_path / "cut" / "state.json").read_text())
    until = str(state["epochs"] + 1)
    run(["train", "cut", *common, "--until-epoch", until], cwd=tmp_path)
    run(["train", "whole", *common, "--epochs", until], cwd=tmp_path)
    for key in ("layer_01/W.npy", "layer_02/W.npy", "layer_02/bh.npy", "layer_03/W.npy"):
        assert (tmp_path / "cut" / key).read_bytes() == (tmp_path / "whole" / key).read_bytes(), (key, state)
