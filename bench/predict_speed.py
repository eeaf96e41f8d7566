"""Parallel predict and evaluate (issue 21): one process against two on a large input, quiet and beside busy ones.

The 784-256-256-10 MLP (float32) on 60,000 × 784 random inputs:

* in-process: Network.predict with 1 and 2 processes (chunks of 1024
  samples taken as the processes become free), the forward pass alone;
* the tools: `predict MODEL x.npy --workers K --format npy` and `evaluate`,
  wall time of the whole command (start-up, reading 188 MB, writing),
  K = 1, 2 and the default (one process per idle core when the work pays).

Interleaved, medians of `rounds`; in three conditions: quiet, one and two
busy processes (a shell `while :` loop each, started and ended here).

  python bench/predict_speed.py [--quick]
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
BIN = os.path.dirname(sys.executable)
MODEL = "784 1 1\ninput\ndense 256 relu\ndense 256 relu\ndense 10 softmax\n"
SAMPLES = 60_000


def in_process(folder, rounds):
    """{processes: seconds} of Network.predict over the inputs, the processes interleaved."""
    from threadpoolctl import threadpool_limits

    from kerash import model
    from kerash.processes import prewarm_blas

    threadpool_limits(1)
    prewarm_blas(np.float32)
    loaded = model.load(os.path.join(folder, "m"))
    x = loaded.inputs(np.load(os.path.join(folder, "x.npy")), "x")
    times = {1: [], 2: []}
    outputs = {}
    for _ in range(rounds):
        for processes in times:
            start = time.perf_counter()
            outputs[processes] = loaded.net.predict(x, processes=processes)
            times[processes].append(time.perf_counter() - start)
    assert np.array_equal(outputs[1], outputs[2]), "outputs differ with the number of processes"
    return {p: statistics.median(t) for p, t in times.items()}


def tool(folder, args):
    start = time.perf_counter()
    subprocess.run(args, cwd=folder, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, KERASH_WARM="0"))
    return time.perf_counter() - start


def tools(folder, rounds):
    """{(tool, workers): seconds} of whole commands, interleaved."""
    runs = {}
    for name, args in (("predict", [f"{BIN}/predict", "m", "x.npy", "--format", "npy"]),
                       ("evaluate", [f"{BIN}/evaluate", "m", "-x", "x.npy", "-y", "y.npy"])):
        for workers in ("1", "2", "default"):
            runs[(name, workers)] = args + ([] if workers == "default" else ["--workers", workers])
    times = {key: [] for key in runs}
    for _ in range(rounds):
        for key, args in runs.items():
            times[key].append(tool(folder, args))
    return {key: statistics.median(t) for key, t in times.items()}


def main():
    from train_speed import BusyProcesses

    quick = "--quick" in sys.argv
    rounds = 3 if quick else 5
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as folder:
        rng = np.random.default_rng(0)
        np.save(os.path.join(folder, "x.npy"), rng.random((SAMPLES, 784), dtype=np.float32))
        np.save(os.path.join(folder, "y.npy"), rng.integers(0, 10, SAMPLES).astype(float).reshape(-1, 1))
        with open(os.path.join(folder, "m.model"), "w") as f:
            f.write(MODEL)
        subprocess.run([f"{BIN}/model-init", "m.model", "-o", "m", "--seed", "1", "--dtype", "float32"], cwd=folder,
                       check=True, stdout=subprocess.DEVNULL)
        print(f"{SAMPLES} × 784 through a 784-256-256-10 MLP (float32): seconds, medians of {rounds} interleaved runs;"
              " speed-up of 2 processes over 1")
        print(f"{'busy':>4}  {'forward 1':>9} {'forward 2':>9} {'×':>5}   "
              f"{'predict 1':>9} {'2':>6} {'default':>7} {'×':>5}   {'evaluate 1':>10} {'2':>6} {'default':>7} {'×':>5}")
        for busy in (0, 1, 2):
            with BusyProcesses(busy):
                forward = in_process(folder, rounds)
                whole = tools(folder, rounds)
            cells = [f"{forward[1]:9.3f} {forward[2]:9.3f} {forward[1] / forward[2]:5.2f}"]
            for name in ("predict", "evaluate"):
                one, two, default = (whole[(name, w)] for w in ("1", "2", "default"))
                cells.append(f"{one:{9 if name == 'predict' else 10}.3f} {two:6.3f} {default:7.3f} {one / two:5.2f}")
            print(f"{busy:>4}  " + "   ".join(cells), flush=True)


if __name__ == "__main__":
    main()
