"""A character LSTM on the project's own text (issue 26): kerash against the same model in PyTorch, and a unigram.

Corpus: README.md and docs/tutorial.md, 90% training, 10% validation, one
id per character (kerash text encode).  Model: embedding 32, lstm 128 (every
step), a softmax over the vocabulary; truncated BPTT over 32 streams side
by side, windows of 64 steps, the states carried within an epoch; Adam
lr 0.003, gradient norm clipped at 5, float32, EPOCHS epochs.  kerash runs
through `model-init` and `train --bptt` (its validation loss: one pass over
the validation stream); PyTorch runs the same recipe (nn.Embedding, nn.LSTM,
nn.Linear; states detached between windows) on one thread.  Prints
validation bits per character (nats / ln 2) and training seconds, with a
unigram model of the training text as the baseline.

Needs torch:  pip install torch
  python bench/charlm.py [--epochs 15]
"""

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

BIN = os.path.dirname(sys.executable)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBED, HIDDEN, STREAMS, WINDOW, LR, CLIP = 32, 128, 32, 64, 0.003, 5.0


def tool(folder, *args):
    env = dict(os.environ, KERASH_WARM="0")
    return subprocess.run([os.path.join(BIN, args[0]), *args[1:]], cwd=folder, env=env, check=True,
                          capture_output=True, text=True).stdout


def kerash(folder, vocabulary, epochs):
    with open(os.path.join(folder, "lm.model"), "w") as f:
        f.write(f"1 1 1\ninput\nembedding {vocabulary} {EMBED}\nlstm {HIDDEN} sequences\ndense {vocabulary} softmax\n")
    tool(folder, "model-init", "lm.model", "-o", "lm", "--seed", "1", "--force", "--vocabulary", "chars.txt")
    start = time.perf_counter()
    out = tool(folder, "train", "lm", "-x", "x.txt", "-y", "y.txt", "--val-data", "vx.txt", "--val-labels", "vy.txt",
               "--bptt", str(WINDOW), "--batch-size", str(STREAMS), "--optimizer", "adam", "--lr", str(LR),
               "--clip-norm", str(CLIP), "--epochs", str(epochs), "--seed", "1")
    seconds = time.perf_counter() - start
    last = out.strip().splitlines()[-1].split("\t")
    return float(last[4]) / math.log(2), seconds


def pytorch(train_ids, val_ids, vocabulary, epochs):
    import torch

    torch.manual_seed(1)
    torch.set_num_threads(1)
    nn = torch.nn
    embed, lstm, out = nn.Embedding(vocabulary, EMBED), nn.LSTM(EMBED, HIDDEN, batch_first=True), nn.Linear(HIDDEN, vocabulary)
    params = list(embed.parameters()) + list(lstm.parameters()) + list(out.parameters())
    opt = torch.optim.Adam(params, lr=LR)
    x, y = torch.tensor(train_ids[:-1]), torch.tensor(train_ids[1:])
    length = len(x) // STREAMS
    xs, ys = x[: STREAMS * length].view(STREAMS, length), y[: STREAMS * length].view(STREAMS, length)
    start = time.perf_counter()
    for _ in range(epochs):
        state = None
        for w in range(0, length, WINDOW):
            xb, yb = xs[:, w:w + WINDOW], ys[:, w:w + WINDOW]
            opt.zero_grad()
            h, state = lstm(embed(xb), state)
            state = tuple(s.detach() for s in state)
            loss = nn.functional.cross_entropy(out(h).reshape(-1, vocabulary), yb.reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(params, CLIP)
            opt.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        vx, vy = torch.tensor(val_ids[:-1])[None], torch.tensor(val_ids[1:])
        h, _ = lstm(embed(vx))
        loss = nn.functional.cross_entropy(out(h)[0], vy)
    return float(loss) / math.log(2), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "corpus.txt"), "w") as f:
            for name in ("README.md", os.path.join("docs", "tutorial.md")):
                with open(os.path.join(ROOT, name)) as g:
                    f.write(g.read())
        ids = np.array(tool(folder, "kerash", "text", "encode", "corpus.txt", "-v", "chars.txt").split(), dtype=np.int64)
        vocabulary = len(open(os.path.join(folder, "chars.txt")).read().splitlines())
        cut = len(ids) * 9 // 10
        train_ids, val_ids = ids[:cut], ids[cut:]
        for name, values in (("x", train_ids[:-1]), ("y", train_ids[1:]), ("vx", val_ids[:-1]), ("vy", val_ids[1:])):
            np.savetxt(os.path.join(folder, f"{name}.txt"), values, fmt="%d")
        counts = np.bincount(train_ids[1:], minlength=vocabulary).astype(float)
        p = np.where(counts > 0, counts, 1.0) / counts.sum()
        unigram = float(-np.mean(np.log2(p[val_ids[1:]])))
        print(f"corpus {len(ids)} characters, vocabulary {vocabulary}; {args.epochs} epochs")
        print(f"unigram model of the training text: {unigram:.3f} bits per character")
        ours, our_time = kerash(folder, vocabulary, args.epochs)
        print(f"kerash  embedding {EMBED}, lstm {HIDDEN}: {ours:.3f} bits per character, {our_time:.1f} s", flush=True)
        theirs, their_time = pytorch(train_ids, val_ids, vocabulary, args.epochs)
        print(f"PyTorch embedding {EMBED}, lstm {HIDDEN}: {theirs:.3f} bits per character, {their_time:.1f} s (one thread)")


if __name__ == "__main__":
    main()
