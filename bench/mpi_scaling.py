"""A measured model of data-parallel scaling with MPI (the wide MLP 784-256-256-10, float32).

Measured here: the compute time per sample of one training process, and the
time of one in-place Allreduce of the gradient buffer (the step's only
communication) with 1, 2 and 3 ranks of mpiexec on this machine.  From them,
the time of a step of a global batch G split over K hosts,

    step(K) = (G / K) · compute per sample + allreduce(K),

and the speed-up step(1) / step(K) for 4, 16 and 64 hosts joined by 10 and
100 Gbit/s links, with a ring Allreduce: 2(K−1) messages of latency α and
2(K−1)/K of the buffer's bytes through each link.

  pip install 'kerash[mpi]'
  python bench/mpi_scaling.py
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

BIN = os.path.dirname(sys.executable)
MODEL = "784 1 1\ninput\ndense 256 relu\ndense 256 relu\ndense 10 softmax\n"
PARAMS = 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10
LINKS = {"10 Gbit/s": (10e9 / 8, 20e-6), "100 Gbit/s": (100e9 / 8, 5e-6)}  # bytes/s, latency per message


def allreduce_seconds():
    """Median time of an in-place Allreduce of the gradient buffer (run under mpiexec)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    buf = np.ones(PARAMS + 260, dtype=np.float32)  # the gradients, then the losses and figures of a step
    times = []
    for i in range(300):
        comm.Barrier()
        t0 = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        if i >= 50:
            times.append(time.perf_counter() - t0)
    if comm.rank == 0:
        print(json.dumps(statistics.median(times)))


def compute_per_sample(folder):
    """Seconds per sample of `train` in one process, one thread (steady epochs)."""
    rng = np.random.default_rng(0)
    np.save(os.path.join(folder, "x.npy"), rng.random((8192, 784)).astype(np.float32))
    np.save(os.path.join(folder, "y.npy"), rng.integers(0, 10, 8192).astype(float).reshape(-1, 1))
    with open(os.path.join(folder, "m.model"), "w") as f:
        f.write(MODEL)
    subprocess.run([f"{BIN}/model-init", "m.model", "-o", "m", "--seed", "1", "--force"], cwd=folder, check=True)
    out = subprocess.run([f"{BIN}/train", "m", "-x", "x.npy", "-y", "y.npy", "--epochs", "4", "-b", "256",
                          "--workers", "1", "--lr", "0.05"], cwd=folder, check=True, capture_output=True, text=True).stdout
    rows = [line.split("\t") for line in out.splitlines()[2:]]
    return statistics.median(float(r[6]) / int(r[1]) for r in rows)


def ring(ranks, link):
    bandwidth, latency = link
    nbytes = (PARAMS + 260) * 4
    return 2 * (ranks - 1) * latency + 2 * (ranks - 1) / ranks * nbytes / bandwidth


def main():
    if "--allreduce" in sys.argv:
        allreduce_seconds()
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as folder:
        per_sample = compute_per_sample(folder)
    print(f"wide MLP, {PARAMS:,} parameters ({PARAMS * 4 / 1e6:.2f} MB of float32 gradients per Allreduce)")
    print(f"compute: {per_sample * 1e6:.1f} µs per sample (one process, one thread, batch 256)")
    measured = {}
    for ranks in (1, 2, 3):
        out = subprocess.run([f"{BIN}/mpiexec", "-n", str(ranks), sys.executable, __file__, "--allreduce"],
                             check=True, capture_output=True, text=True).stdout
        measured[ranks] = json.loads(out)
        print(f"Allreduce with {ranks} rank(s) on this machine: {measured[ranks] * 1e3:.3f} ms")
    print("\npredicted speed-up of a step, K hosts of this machine's speed (one rank each), ring Allreduce:")
    print(f"{'global batch':>13} {'link':>11} " + " ".join(f"{f'K={k}':>14}" for k in (4, 16, 64)))
    for batch in (256, 1024, 8192):
        one = batch * per_sample
        for name, link in LINKS.items():
            cells = []
            for k in (4, 16, 64):
                step = batch / k * per_sample + ring(k, link)
                cells.append(f"{one / step:5.1f}× ({batch // k:>4}/rank)")
            print(f"{batch:>13} {name:>11} " + " ".join(cells))
    print("\nwhere it stops paying: a step cannot be faster than its Allreduce; at 10 Gbit/s that is "
          f"{ring(16, LINKS['10 Gbit/s']) * 1e3:.2f} ms for 16 hosts, the compute of "
          f"{ring(16, LINKS['10 Gbit/s']) / per_sample:.0f} samples")


if __name__ == "__main__":
    main()
