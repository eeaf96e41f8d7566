"""Start-up time and text I/O speed, as ratios against references measured in the same run.

  python bench/startup_io.py

* start-up: median wall time of `matrix-transpose` on a 2×2 text matrix
  against `python -c "import numpy, typer"` with the same interpreter
  (target: within 1.15×);
* reading a 5000×784 and a 2000×2000 text matrix of random float64 values,
  written with their shortest exact digits, against numpy.loadtxt and, when
  it is installed, pandas.read_csv (target: ≥ 1× numpy; pandas is the aim);
* writing them, exactly, against numpy.savetxt with full precision ('%.17g')
  and pandas' DataFrame.to_csv.

Each measurement is the median of three runs, the runs of the contenders
interleaved so that machine noise hits them alike.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

BIN = os.path.dirname(sys.executable)


def wall(cmd, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
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


def report(what, times):
    ours = times["kerash"]
    others = ", ".join(f"{name} {t:.2f} s ({t / ours:.2f}× kerash's time)" for name, t in times.items() if name != "kerash")
    print(f"{what}: kerash {ours:.2f} s; {others}")


def main():
    from kerash import tensorio

    try:
        import pandas
    except ImportError:
        pandas = None
    folder = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    small = os.path.join(folder, "small.txt")
    with open(small, "w") as f:
        f.write("1 2\n3 4\n")
    base_cmd = [sys.executable, "-c", "import numpy, typer"]
    tool_cmd = [os.path.join(BIN, "matrix-transpose"), small]
    wall(base_cmd, 3), wall(tool_cmd, 3)  # warm the file cache
    base_t, tool_t = [], []
    for _ in range(7):
        base_t.append(wall(base_cmd, 3))
        tool_t.append(wall(tool_cmd, 3))
    base, tool = statistics.median(base_t), statistics.median(tool_t)
    print(f"start-up: matrix-transpose {tool * 1000:.0f} ms, import numpy, typer {base * 1000:.0f} ms: ratio {tool / base:.3f} (target ≤ 1.15)")

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
        assert np.array_equal(tensorio.read_tensor(path), a)
        report(f"read {name} text ({os.path.getsize(path) >> 20} MB)", interleaved(readers))
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
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    os.rmdir(folder)


if __name__ == "__main__":
    main()
