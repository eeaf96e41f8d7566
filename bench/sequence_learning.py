"""Does BPTT learn?  The sequence tasks of the graph-models issue, through the tools.

* adding problem, T = 50, models/adding-lstm.mdl (the seed's LSTM-like cell with
  a linear input projection to width 16), Adam: the held-out mean squared error
  after each epoch of 300 updates (batch 32), for three seeds; solved means
  < 0.01 (predicting the mean gives 0.167) within 1,500 updates;
* echo at delay 5, models/echo-elman.mdl against the same layers without the
  recurrent merge: held-out accuracy on the steps that need memory.

  python bench/sequence_learning.py
"""

import os
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.path.dirname(sys.executable)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tool(*args, cwd):
    return subprocess.run([f"{BIN}/{args[0]}", *args[1:]], cwd=cwd, check=True, capture_output=True, text=True).stdout


def adding(folder, seed):
    tool("model-init", os.path.join(ROOT, "models", "adding-lstm.mdl"), "-o", f"lstm{seed}", "--seed", str(seed), cwd=folder)
    out = tool("train", f"lstm{seed}", "-x", "add/data.npy", "-y", "add/labels.txt", "--val-data", "held/data.npy",
               "--val-labels", "held/labels.txt", "--epochs", "5", "-b", "32", "--optimizer", "adam", "--lr", "0.01",
               "--seed", str(seed), cwd=folder)
    rows = [line.split("\t") for line in out.splitlines()[1:]]
    return [float(r[4]) for r in rows], sum(float(r[6]) for r in rows)


def echo_accuracy(folder, name, text, delay=5):
    with open(os.path.join(folder, f"{name}.mdl"), "w") as f:
        f.write(text)
    tool("model-init", f"{name}.mdl", "-o", name, "--seed", "3", cwd=folder)
    tool("train", name, "-x", "echo/data.npy", "-y", "echo/labels.txt", "--epochs", "25", "-b", "16",
         "--optimizer", "adam", "--lr", "0.01", "--seed", "1", cwd=folder)
    classes = np.loadtxt(tool("predict", name, "echo-test/data.npy", "--classes", cwd=folder).splitlines())
    labels = np.loadtxt(os.path.join(folder, "echo-test", "labels.txt"))
    return np.mean(classes[:, delay:] == labels[:, delay:])


def main():
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as folder:
        tool("kerash", "dataset", "adding", "-o", "add", "--samples", "9600", "--steps", "50", "--seed", "1", cwd=folder)
        tool("kerash", "dataset", "adding", "-o", "held", "--samples", "1000", "--steps", "50", "--seed", "2", cwd=folder)
        print("adding problem, T=50, held-out MSE after each 300 updates (predicting the mean: 0.167)")
        solved = 0
        for seed in (1, 2, 3):
            losses, seconds = adding(folder, seed)
            first = next((300 * (k + 1) for k, v in enumerate(losses) if v < 0.01), None)
            solved += first is not None
            print(f"  seed {seed}: " + "  ".join(f"{v:.4f}" for v in losses)
                  + f"   < 0.01 after {first or '-'} updates ({seconds:.0f} s)")
        print(f"  solved within 1,500 updates: {solved} of 3 seeds")
        tool("kerash", "dataset", "echo", "-o", "echo", "--samples", "800", "--steps", "12", "--delay", "5", "--seed", "1", cwd=folder)
        tool("kerash", "dataset", "echo", "-o", "echo-test", "--samples", "500", "--steps", "12", "--delay", "5", "--seed", "2", cwd=folder)
        with open(os.path.join(ROOT, "models", "echo-elman.mdl")) as f:
            elman = f.read()
        flat = "(input, 1)\n(h, 32, <tanh>)\n(output, 2, <softmax>, <cross_entropy>)\n"
        print("echo at delay 5 (held-out accuracy on the steps t ≥ 5, chance 0.5)")
        print(f"  Elman network: {echo_accuracy(folder, 'elman', elman):.3f}")
        print(f"  without its recurrent merge: {echo_accuracy(folder, 'flat', flat):.3f}")


if __name__ == "__main__":
    main()
