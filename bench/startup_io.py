"""Start-up time, the warm server and text I/O speed, as ratios against references measured in the same run.

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
* reading a 5000×784 and a 2000×2000 text matrix of random float64 values,
  written with their shortest exact digits, against numpy.loadtxt and, when
  they are installed (pip install 'kerash[bench]'), pandas.read_csv and
  pyarrow.csv.read_csv (target: ≥ 1× numpy; pandas is the aim); then the
  same file read by a whole new process, as a tool reads it: kerash's reader
  against `python -c "import pandas; pandas.read_csv(…)"` (the library's
  import is part of a tool's cost);
* writing them, exactly, against numpy.savetxt with full precision ('%.17g')
  and pandas' DataFrame.to_csv.

Each measurement is the median of several runs (three for the text files),
the runs of the contenders interleaved so that machine noise hits them alike.
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
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=env, shell=shell,
                       executable="/bin/bash" if shell else None)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(contenders, runs=3):
    """{name: median seconds} of each fn(), run in turn `runs` times."""
    times = {name: [] for name in contenders}
    for _ in range(runs):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def commands(runs, **named):
    """{name: median seconds} of commands given as name=(cmd, env) or (cmd, env, True) for a shell line, run in turn."""
    return interleaved({name: lambda c=c: wall(c[0], 1, *c[1:]) for name, c in named.items()}, runs)


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
    kerash = os.path.join(BIN, "kerash")
    subprocess.run([kerash, "warm", "start", "--idle", "10m"], env=env, check=True, stdout=subprocess.DEVNULL)
    return (dict(env, KERASH_WARM="0"), dict(env, KERASH_WARM="1"),
            lambda: subprocess.run([kerash, "warm", "stop"], env=env, check=True, stdout=subprocess.DEVNULL))


def bench_warm(folder, small):
    cold_env, warm_env, stop = warm_server(folder)
    try:
        tool = [os.path.join(BIN, "matrix-transpose"), small]
        t = commands(9 if QUICK else 21, cold=(tool, cold_env), warm=(tool, warm_env),
                     bare=([sys.executable, "-S", "-c", "pass"], cold_env))
        print(f"tool start: warm {t['warm'] * 1000:.0f} ms, cold {t['cold'] * 1000:.0f} ms, python -S -c pass "
              f"{t['bare'] * 1000:.0f} ms: warm/cold {t['warm'] / t['cold']:.3f} (target ≤ 0.25), "
              f"warm/python -S {t['warm'] / t['bare']:.2f} (target ≤ 3)")
        pipe = f"matrix-transpose {small} | matrix-scale 2 | matrix-apply tanh | matrix-transpose | matrix-sum"
        t = commands(5 if QUICK else 15, cold=(pipe, cold_env, True), warm=(pipe, warm_env, True))
        print(f"five-stage pipe: warm {t['warm'] * 1000:.0f} ms, cold {t['cold'] * 1000:.0f} ms: "
              f"{t['cold'] / t['warm']:.1f}× as fast")

        tools = dict(cold_env, KERASH_WORKDIR=folder)
        xor = os.path.join(folder, "xor")
        with open(os.path.join(folder, "x.txt"), "w") as f:
            f.write("0 0\n0 1\n1 0\n1 1\n")
        with open(os.path.join(folder, "y.txt"), "w") as f:
            f.write("0\n1\n1\n0\n")
        subprocess.run(["model-init", os.path.join(ROOT, "models", "xor.model"), "-o", xor, "--seed", "3"], env=tools, check=True)
        subprocess.run(["kerash", "dataset", "digits", "-o", os.path.join(folder, "digits")], env=tools, check=True)
        np.save(os.path.join(folder, "d.npy"), np.load(os.path.join(folder, "digits", "data.npy"))[:256])
        with open(os.path.join(folder, "digits", "labels.txt")) as f:
            labels = f.readlines()[:256]
        with open(os.path.join(folder, "d.txt"), "w") as f:
            f.writelines(labels)
        mlp = os.path.join(folder, "mlp")
        subprocess.run(["model-init", os.path.join(ROOT, "models", "digits-mlp.model"), "-o", mlp, "--seed", "1"], env=tools, check=True)
        workloads = [
            ("XOR, 4 workers", xor, os.path.join(folder, "x.txt"), os.path.join(folder, "y.txt"), 4, 4, 2, 10),
            ("digits MLP, batch 64, 2 workers", mlp, os.path.join(folder, "d.npy"), os.path.join(folder, "d.txt"), 64, 2, 1, 2),
        ]
        for name, model, data, labels, batch, workers, cold_epochs, warm_epochs in workloads:
            cold_t, warm_t = [], []
            for _ in range(1 if QUICK else 3):
                cold_t.append(pipeline_step(folder, model, data, labels, batch, workers, cold_epochs, tools))
                warm_t.append(pipeline_step(folder, model, data, labels, batch, workers, warm_epochs,
                                            dict(warm_env, KERASH_WORKDIR=folder)))
            cold, warm = statistics.median(cold_t), statistics.median(warm_t)
            print(f"pipeline-train, {name}: warm {warm:.3f} s/step, cold {cold:.3f} s/step: {cold / warm:.1f}× as fast "
                  f"(target ≥ 4×{'; KeraSH 0.26 s' if workers == 4 else ''})")
    finally:
        stop()


def report(what, times):
    ours = times["kerash"]
    others = ", ".join(f"{name} {t:.2f} s ({t / ours:.2f}× kerash's time)" for name, t in times.items() if name != "kerash")
    print(f"{what}: kerash {ours:.2f} s; {others}")


def _pyarrow_read(csv, path, width):
    import pyarrow

    names = [f"c{i}" for i in range(width)]
    table = csv.read_csv(path, read_options=csv.ReadOptions(column_names=names),
                         parse_options=csv.ParseOptions(delimiter=" "),
                         convert_options=csv.ConvertOptions(column_types={n: pyarrow.float64() for n in names}))
    return np.column_stack([c.to_numpy() for c in table.columns])


def main():
    from kerash.files import tensorio

    try:
        import pandas
    except ImportError:
        pandas = None
    try:
        import pyarrow.csv as pyarrow_csv
    except ImportError:
        pyarrow_csv = None
    folder = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    small = os.path.join(folder, "small.txt")
    with open(small, "w") as f:
        f.write("1 2\n3 4\n")
    base_cmd = [sys.executable, "-c", "import numpy, typer"]
    tool_cmd = [os.path.join(BIN, "matrix-transpose"), small]
    cold = dict(os.environ, KERASH_WARM="0")  # whatever warm server the user runs
    wall(base_cmd, 3), wall(tool_cmd, 3, cold)  # warm the file cache
    t = commands(9 if QUICK else 21, base=(base_cmd, cold), tool=(tool_cmd, cold))
    base, tool = t["base"], t["tool"]
    print(f"start-up: matrix-transpose {tool * 1000:.0f} ms, import numpy, typer {base * 1000:.0f} ms: ratio {tool / base:.3f} (target ≤ 1.15)")
    bench_warm(folder, small)

    rng = np.random.default_rng(0)
    for shape in ((5000, 784), (2000, 2000)):
        a = rng.standard_normal(shape)
        path = os.path.join(folder, "m.txt")
        out = os.path.join(folder, "out.txt")
        tensorio.write_tensor(a, path)
        name = "×".join(map(str, shape))
        readers = {"kerash": lambda: tensorio.read_tensor(path), "numpy.loadtxt": lambda: np.loadtxt(path)}
        if pandas:
            readers["pandas.read_csv"] = lambda: pandas.read_csv(path, sep=" ", header=None, dtype=np.float64).to_numpy()
        if pyarrow_csv:
            readers["pyarrow.csv"] = lambda: _pyarrow_read(pyarrow_csv, path, shape[1])
        assert np.array_equal(tensorio.read_tensor(path), a)
        report(f"read {name} text ({os.path.getsize(path) >> 20} MB)", interleaved(readers))
        if pandas:
            ours = [sys.executable, "-c", f"from kerash.files import tensorio; tensorio.read_tensor({path!r})"]
            theirs = [sys.executable, "-c", f"import numpy, pandas; pandas.read_csv({path!r}, sep=' ', header=None, "
                                            "dtype=numpy.float64).to_numpy()"]
            report(f"read {name} text in a new process", commands(3, kerash=(ours, cold), **{"pandas.read_csv": (theirs, cold)}))
        writers = {
            "kerash": lambda: tensorio.write_tensor(a, out),
            "numpy.savetxt %.17g": lambda: np.savetxt(out, a, fmt="%.17g"),
        }
        if pandas:
            frame = pandas.DataFrame(a)
            writers["pandas.to_csv"] = lambda: frame.to_csv(out, sep=" ", header=False, index=False)
        report(f"write {name} text, exactly", interleaved(writers))
        tensorio.write_tensor(a, out)
        assert np.array_equal(tensorio.read_tensor(out), a)
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
