"""Start-up, the warm server and text I/O speed, as ratios against references measured in the same run.

  python bench/startup_io.py            # all
  python bench/startup_io.py --quick    # fewer rounds and steps

* start-up: median wall time of `matrix-transpose` on a 2×2 text matrix
  against `python -c "import numpy, typer"` with the same interpreter
  (target: within 1.15×);
* the warm server (issue 10), measured against a private server started here:
  the same start warm, against cold (target ≤ 0.25×) and against
  `python -S -c pass` (target ≤ 3×); a five-stage pipe warm and cold;
  `bin/pipeline-train` seconds per step, cold and warm, on KeraSH's XOR
  network (models/xor.model, 4 samples, 4 workers: one step an epoch;
  KeraSH's own zsh epoch took 0.26 s) and on the digits MLP
  (models/digits-mlp.model, 256 samples, batches of 64, 2 workers);
* reading a 2000×2000 text matrix against numpy.loadtxt (target: ≥ 1×);
* writing it against numpy.savetxt with full precision, '%.17g' (target: ≥ 1×).
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

BIN = os.path.dirname(sys.executable)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = "--quick" in sys.argv


def wall(cmd, runs, env=None, shell=False):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=env, shell=shell, executable="/bin/bash" if shell else None)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(commands, rounds, runs=3):
    """Median wall time of each (cmd, env, shell) in `commands`, measured in turn, round after round."""
    times = [[] for _ in commands]
    for _ in range(rounds):
        for t, (cmd, env, shell) in zip(times, commands):
            t.append(wall(cmd, runs, env, shell))
    return [statistics.median(t) for t in times]


def pipeline_step(folder, model, data, labels, batch, workers, epochs, env):
    """Seconds per step of bin/pipeline-train on a fresh copy of `model`."""
    work = os.path.join(folder, "m")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(model, work, symlinks=True)
    n = len(np.load(data)) if data.endswith(".npy") else sum(1 for _ in open(data))
    steps = epochs * -(-n // batch)
    start = time.perf_counter()
    subprocess.run([os.path.join(ROOT, "bin", "pipeline-train"), work, "--data", data, "--labels", labels,
                    "--epochs", str(epochs), "--batch-size", str(batch), "--lr", "0.5", "--workers", str(workers)],
                   env=env, check=True, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - start) / steps


def warm_server(folder):
    """Start a private warm server for this run: (cold environment, warm environment, stop function)."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", KERASH_WARM_DIR=os.path.join(folder, "warm"))
    subprocess.run([os.path.join(BIN, "kerash"), "warm", "start", "--idle", "10m"], env=env, check=True, stdout=subprocess.DEVNULL)
    return (dict(env, KERASH_WARM="0"), dict(env, KERASH_WARM="1"),
            lambda: subprocess.run([os.path.join(BIN, "kerash"), "warm", "stop"], env=env, check=True, stdout=subprocess.DEVNULL))


def bench_warm(folder, small):
    cold_env, warm_env, stop = warm_server(folder)
    try:
        tool = [os.path.join(BIN, "matrix-transpose"), small]
        floor = [sys.executable, "-S", "-c", "pass"]
        cold, warm, bare = interleaved([(tool, cold_env, False), (tool, warm_env, False), (floor, cold_env, False)],
                                       3 if QUICK else 7)
        print(f"tool start: warm {warm * 1000:.0f} ms, cold {cold * 1000:.0f} ms, python -S -c pass {bare * 1000:.0f} ms: "
              f"warm/cold {warm / cold:.3f} (target ≤ 0.25), warm/python -S {warm / bare:.2f} (target ≤ 3)")
        pipe = f"matrix-transpose {small} | matrix-scale 2 | matrix-apply tanh | matrix-transpose | matrix-sum"
        cold, warm = interleaved([(pipe, cold_env, True), (pipe, warm_env, True)], 3 if QUICK else 5)
        print(f"five-stage pipe: warm {warm * 1000:.0f} ms, cold {cold * 1000:.0f} ms: {cold / warm:.1f}× as fast")

        env = dict(cold_env, KERASH_WORKDIR=folder)
        tools = dict(env, PATH=f"{BIN}{os.pathsep}{env['PATH']}")
        xor = os.path.join(folder, "xor")
        with open(os.path.join(folder, "x.txt"), "w") as f:
            f.write("0 0\n0 1\n1 0\n1 1\n")
        with open(os.path.join(folder, "y.txt"), "w") as f:
            f.write("0\n1\n1\n0\n")
        subprocess.run(["init", os.path.join(ROOT, "models", "xor.model"), "-o", xor, "--seed", "3"], env=tools, check=True)
        subprocess.run(["kerash", "dataset", "digits", "-o", os.path.join(folder, "digits")], env=tools, check=True)
        x = np.load(os.path.join(folder, "digits", "data.npy"))[:256]
        np.save(os.path.join(folder, "d.npy"), x)
        with open(os.path.join(folder, "digits", "labels.txt")) as f:
            labels = f.readlines()[:256]
        with open(os.path.join(folder, "d.txt"), "w") as f:
            f.writelines(labels)
        mlp = os.path.join(folder, "mlp")
        subprocess.run(["init", os.path.join(ROOT, "models", "digits-mlp.model"), "-o", mlp, "--seed", "1"], env=tools, check=True)
        workloads = [
            ("XOR, 4 workers", xor, os.path.join(folder, "x.txt"), os.path.join(folder, "y.txt"), 4, 4, 2, 10),
            ("digits MLP, batch 64, 2 workers", mlp, os.path.join(folder, "d.npy"), os.path.join(folder, "d.txt"), 64, 2, 1, 2),
        ]
        for name, model, data, labels, batch, workers, cold_epochs, warm_epochs in workloads:
            cold_t, warm_t = [], []
            for _ in range(1 if QUICK else 3):
                cold_t.append(pipeline_step(folder, model, data, labels, batch, workers, cold_epochs, dict(cold_env, KERASH_WORKDIR=folder)))
                warm_t.append(pipeline_step(folder, model, data, labels, batch, workers, warm_epochs, dict(warm_env, KERASH_WORKDIR=folder)))
            cold, warm = statistics.median(cold_t), statistics.median(warm_t)
            print(f"pipeline-train, {name}: warm {warm:.3f} s/step, cold {cold:.3f} s/step: {cold / warm:.1f}× as fast "
                  f"(target ≥ 4×{'; KeraSH 0.26 s' if workers == 4 else ''})")
    finally:
        stop()


def timed(fn, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    from kerash import tensorio

    folder = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    small = os.path.join(folder, "small.txt")
    with open(small, "w") as f:
        f.write("1 2\n3 4\n")
    base_cmd = [sys.executable, "-c", "import numpy, typer"]
    tool_cmd = [os.path.join(BIN, "matrix-transpose"), small]
    cold = dict(os.environ, KERASH_WARM="0")  # whatever warm server the user runs
    wall(base_cmd, 3), wall(tool_cmd, 3, cold)  # warm the file cache
    # Interleave the two measurements so that machine noise hits both alike.
    base, tool = interleaved([(base_cmd, cold, False), (tool_cmd, cold, False)], 3 if QUICK else 7)
    print(f"start-up: matrix-transpose {tool * 1000:.0f} ms, import numpy, typer {base * 1000:.0f} ms: ratio {tool / base:.3f} (target ≤ 1.15)")
    bench_warm(folder, small)

    a = np.random.default_rng(0).standard_normal((2000, 2000))
    path = os.path.join(folder, "big.txt")
    ref_path = os.path.join(folder, "ref.txt")
    np.savetxt(path, a, fmt="%.17g")
    t_load = timed(lambda: np.loadtxt(path), 3)
    t_read = timed(lambda: tensorio.read_tensor(path), 3)
    assert np.array_equal(tensorio.read_tensor(path), a)
    print(f"read 2000×2000 text: kerash {t_read:.3f} s, numpy.loadtxt {t_load:.3f} s: {t_load / t_read:.2f}× as fast (target ≥ 1)")

    t_save = timed(lambda: np.savetxt(ref_path, a, fmt="%.17g"), 3)
    t_write = timed(lambda: tensorio.write_tensor(a, path), 3)
    assert np.array_equal(tensorio.read_tensor(path), a)
    print(f"write 2000×2000 text: kerash {t_write:.3f} s, numpy.savetxt %.17g {t_save:.3f} s: {t_save / t_write:.2f}× as fast (target ≥ 1)")
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
