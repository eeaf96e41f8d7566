"""Peak memory of `train` against the data it trains on (issue 9: data + model + 50 MB for any input format).

One epoch of the 784-256-256-10 MLP (float32) on N samples of 784 values,
given as float32 .npy, float64 .npy and text, N = 10,000 and 60,000.  The
peak is the process's maximum resident set (its children, forked workers,
are not counted); `data` is the training array in
float32, `model` the weights with their optimiser state.

  python bench/memory.py [--quick]
"""

import os
import subprocess
import sys
import tempfile

BIN = os.path.dirname(sys.executable)
MODEL = "784 1 1\ninput\ndense 256 relu\ndense 256 relu\ndense 10 softmax\n"
PARAMS = 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10


MAKE_DATA = """
import sys, numpy as np
n, text = int(sys.argv[1]), sys.argv[2] == "1"
rng = np.random.default_rng(0)
x = rng.random((n, 784))
np.save("y.npy", rng.integers(0, 10, n).astype(float).reshape(-1, 1))
np.save("x32.npy", x.astype(np.float32))
np.save("x64.npy", x)
if text:
    np.savetxt("x.txt", x.astype(np.float32), fmt="%.8g")
"""


def peak_mb(args, cwd):
    """Maximum resident set of a command (MB) and of the largest of its children."""
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stderr.read().decode()}")
    return usage.ru_maxrss / 1024


def main():
    sizes = (10_000,) if "--quick" in sys.argv else (10_000, 60_000)
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as folder:
        with open(os.path.join(folder, "m.model"), "w") as f:
            f.write(MODEL)
        baseline = peak_mb([sys.executable, "-c", "import numpy, typer"], folder)
        model_mb = PARAMS * 4 * 3 / 1e6  # weights, gradients, optimiser-free SGD scratch
        print(f"interpreter with numpy and typer: {baseline:.0f} MB; model (weights, gradients, scratch): {model_mb:.1f} MB")
        print(f"{'samples':>8} {'input':<12} {'data MB':>8} {'peak MB':>8} {'peak − data − model':>20}")
        for n in sizes:
            # The data are made by another process: a child's peak counts the memory of the process it
            # was forked from, so this one stays small.
            subprocess.run([sys.executable, "-c", MAKE_DATA, str(n), "1" if n <= 10_000 or "--text" in sys.argv else "0"],
                           cwd=folder, check=True)
            inputs = [("float32 npy", "x32.npy"), ("float64 npy", "x64.npy")]
            inputs += [("text", "x.txt")] if os.path.exists(os.path.join(folder, "x.txt")) else []
            data_mb = n * 784 * 4 / 1e6
            for label, path in inputs:
                subprocess.run([f"{BIN}/init" if os.path.exists(f"{BIN}/init") else f"{BIN}/model-init", "m.model",
                                "-o", "m", "--seed", "1", "--force"], cwd=folder, check=True)
                peak = peak_mb([f"{BIN}/train", "m", "-x", path, "-y", "y.npy", "--epochs", "1", "-b", "256",
                                "--workers", "1"], folder)
                print(f"{n:>8} {label:<12} {data_mb:>8.0f} {peak:>8.0f} {peak - data_mb - model_mb:>20.0f}", flush=True)
            os.remove(os.path.join(folder, "x.txt")) if os.path.exists(os.path.join(folder, "x.txt")) else None


if __name__ == "__main__":
    main()
