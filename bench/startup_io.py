"""Start-up time and text I/O speed, as ratios against references measured in the same run.

  python bench/startup_io.py

* start-up: median wall time of `matrix-transpose` on a 2×2 text matrix
  against `python -c "import numpy, typer"` with the same interpreter
  (target: within 1.15×);
* reading a 2000×2000 text matrix against numpy.loadtxt (target: ≥ 1×);
* writing it against numpy.savetxt with full precision, '%.17g' (target: ≥ 1×).
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
    wall(base_cmd, 3), wall(tool_cmd, 3)  # warm the file cache
    # Interleave the two measurements so that machine noise hits both alike.
    base_t, tool_t = [], []
    for _ in range(7):
        base_t.append(wall(base_cmd, 3))
        tool_t.append(wall(tool_cmd, 3))
    base, tool = statistics.median(base_t), statistics.median(tool_t)
    print(f"start-up: matrix-transpose {tool * 1000:.0f} ms, import numpy, typer {base * 1000:.0f} ms: ratio {tool / base:.3f} (target ≤ 1.15)")

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
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    os.rmdir(folder)


if __name__ == "__main__":
    main()
