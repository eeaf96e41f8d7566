"""A sequence classifier end to end (issue 23, item 5): kerash's lstm and gru against the same models in PyTorch.

The data: sequences of random bits of lengths 5 to 40, one block of rows per
sequence (blank lines between), labelled 1 when three 1s come in a row
(the README's and tutorial's example).  2000 training sequences, 500 test.

kerash: `model-init`, `train`, `evaluate` through the installed tools —
`lstm 16` (or `gru 16`) then `dense 2 softmax`, Adam lr 0.01, batch 32, 15
epochs.  PyTorch: nn.LSTM / nn.GRU(1, 16) and nn.Linear(16, 2), the
sequences packed (pack_padded_sequence, so that each one's last step is its
own), cross-entropy, the same optimiser, batch, epochs and data order
settings; its own initialisation.  Prints test accuracy and training
seconds per model and seed.

Needs torch:  pip install torch
  python bench/sequence_classifier.py [--seeds 3]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

BIN = os.path.dirname(sys.executable)
HIDDEN, EPOCHS, BATCH, LR = 16, 15, 32, 0.01


def make(rng, count):
    seqs, labels = [], []
    for _ in range(count):
        bits = (rng.random(int(rng.integers(5, 41))) < 0.45).astype(int)
        runs = np.convolve(bits, np.ones(3, dtype=int), mode="valid")
        seqs.append(bits)
        labels.append(int(np.any(runs == 3)))
    return seqs, np.array(labels)


def write(folder, name, seqs, labels):
    with open(os.path.join(folder, f"{name}.txt"), "w") as f:
        f.write("\n".join("".join(f"{b}\n" for b in s) for s in seqs))
    np.savetxt(os.path.join(folder, f"{name}-labels.txt"), labels, fmt="%d")


def kerash(folder, kind, seed):
    env = dict(os.environ, KERASH_WARM="0")

    def tool(*args):
        return subprocess.run([os.path.join(BIN, args[0]), *args[1:]], cwd=folder, env=env, check=True,
                              capture_output=True, text=True).stdout

    with open(os.path.join(folder, f"{kind}.model"), "w") as f:
        f.write(f"1 1 1\ninput\n{kind} {HIDDEN}\ndense 2 softmax\n")
    tool("model-init", f"{kind}.model", "-o", kind, "--seed", str(seed), "--force")
    start = time.perf_counter()
    tool("train", kind, "-x", "train.txt", "-y", "train-labels.txt", "--optimizer", "adam", "--lr", str(LR),
         "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--seed", str(seed), "--quiet")
    seconds = time.perf_counter() - start
    scores = dict(line.split("\t") for line in tool("evaluate", kind, "-x", "test.txt", "-y",
                                                    "test-labels.txt").splitlines())
    return float(scores["accuracy"]), seconds


def pytorch(train, test, kind, seed):
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    nn = torch.nn
    cell = (nn.LSTM if kind == "lstm" else nn.GRU)(1, HIDDEN, batch_first=True)
    out = nn.Linear(HIDDEN, 2)
    opt = torch.optim.Adam(list(cell.parameters()) + list(out.parameters()), lr=LR)

    def batch(seqs):
        lengths = torch.tensor([len(s) for s in seqs])
        padded = torch.zeros(len(seqs), int(lengths.max()), 1)
        for k, s in enumerate(seqs):
            padded[k, :len(s), 0] = torch.tensor(s, dtype=torch.float32)
        packed = nn.utils.rnn.pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
        _, state = cell(packed)
        h = state[0] if kind == "lstm" else state
        return out(h[-1])

    (xs, ys), (tx, ty) = train, test
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        order = rng.permutation(len(xs))
        for s in range(0, len(xs), BATCH):
            idx = order[s:s + BATCH]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(batch([xs[i] for i in idx]), torch.tensor(ys[idx]))
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        predicted = batch(tx).argmax(dim=1).numpy()
    return float(np.mean(predicted == ty)), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    train, test = make(rng, 2000), make(rng, 500)
    print("model\tseed\tkerash accuracy\tkerash seconds\tPyTorch accuracy\tPyTorch seconds")
    with tempfile.TemporaryDirectory() as folder:
        write(folder, "train", *train)
        write(folder, "test", *test)
        for kind in ("lstm", "gru"):
            for seed in range(1, args.seeds + 1):
                ours, our_time = kerash(folder, kind, seed)
                theirs, their_time = pytorch(train, test, kind, seed)
                print(f"{kind} {HIDDEN}\t{seed}\t{ours:.4f}\t{our_time:.1f}\t{theirs:.4f}\t{their_time:.1f}", flush=True)


if __name__ == "__main__":
    main()
