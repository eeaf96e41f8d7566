"""Two ways to split a training step between two processes, measured against one process.

    python bench/split_strategies.py [BATCH ...]      # default: 128 256 512

The 784-256-256-10 relu MLP with softmax/cross-entropy and SGD, float32,
one BLAS thread per process, written with plain numpy (not kerash) so that
only the split differs:

* one process: forward, backward and update of the whole batch;
* data split (what `train --workers 2` does): each process computes the
  gradient of half the batch; each adds the two halves up over half of the
  weights and updates them; 2 barriers a step;
* column split (what BLAS threads do inside each product, and what issue 9
  named "the way past" the data split): each process computes half of every
  layer's output columns for the whole batch, so no gradient is added up and
  each updates its own columns; 4 barriers a step (after each hidden layer
  forward, after the second layer's backward, before the update).

Processes share memory through anonymous mappings and meet at barriers that
spin on shared counters.  All three are checked to give the same weights
(to float32 rounding) before timing.  Seconds per step, median of 7
interleaved rounds.
"""
import mmap
import os
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

threadpool_limits(1)
np.ones((128, 256), np.float32) @ np.ones((256, 784), np.float32)  # pre-warm OpenBLAS (see PERFORMANCE-NOTES)
STEPS = 30
rng = np.random.default_rng(0)
N = 8192
x = rng.random((N, 784), dtype=np.float32)
labels = rng.integers(0, 10, N)
Y = np.eye(10, dtype=np.float32)[labels]
sizes = [784, 256, 256, 10]

def shared(shape, dtype=np.float32):
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer(mmap.mmap(-1, max(n, 8)), dtype=dtype, count=int(np.prod(shape))).reshape(shape)

W = [shared((a, b)) for a, b in zip(sizes, sizes[1:])]
bb = [shared((b,)) for b in sizes[1:]]
def init():
    r = np.random.default_rng(1)
    for w in W: w[...] = r.uniform(-0.05, 0.05, w.shape)
    for b in bb: b[...] = 0
lr = np.float32(0.1)

def softmax_grad(z, y, scale):
    z = z - z.max(axis=1, keepdims=True); e = np.exp(z); p = e / e.sum(axis=1, keepdims=True)
    return (p - y) * scale

def one_process(idx):
    X = x.take(idx, axis=0); y = Y.take(idx, axis=0)
    a = [X]; zs = []
    for l in range(3):
        z = a[-1] @ W[l]; z += bb[l]; zs.append(z)
        a.append(np.maximum(z, 0) if l < 2 else z)
    dz = softmax_grad(zs[2], y, np.float32(1 / len(idx)))
    for l in (2, 1, 0):
        dW = a[l].T @ dz; db = dz.sum(axis=0)
        if l > 0:
            da = dz @ W[l].T
            dz = da * (zs[l - 1] > 0)
        W[l] -= lr * dW; bb[l] -= lr * db

# ---- two processes: barrier by shared counters
ctr = shared((2, 16), np.int64)
def barrier(p, k):
    ctr[p, 0] = k
    while ctr[1 - p, 0] < k: pass

A1 = shared((1024, 256)); A2 = shared((1024, 256)); dZ2 = shared((1024, 256))
GR = [[shared((a, b)) for a, b in zip(sizes, sizes[1:])] for _ in range(2)]
GB = [[shared((b,)) for b in sizes[1:]] for _ in range(2)]
IDX = shared((1024,), np.int64)

def col_step(p, n, k):
    """Process p's part of one column-split step; k: barrier count so far."""
    idx = IDX[:n]
    X = x.take(idx, axis=0); y = Y.take(idx, axis=0)
    c = slice(0, 128) if p == 0 else slice(128, 256)
    c3 = slice(0, 5) if p == 0 else slice(5, 10)
    z1 = X @ W[0][:, c]; z1 += bb[0][c]
    np.maximum(z1, 0, out=A1[:n, c]); k += 1; barrier(p, k)
    a1 = A1[:n]
    z2 = a1 @ W[1][:, c]; z2 += bb[1][c]
    np.maximum(z2, 0, out=A2[:n, c]); k += 1; barrier(p, k)
    a2 = A2[:n]
    z3 = a2 @ W[2]; z3 += bb[2]
    dz3 = softmax_grad(z3, y, np.float32(1 / n))
    dW3 = a2.T @ dz3[:, c3]; db3 = dz3[:, c3].sum(axis=0)
    da2 = dz3 @ W[2][c].T
    np.multiply(da2, z2 > 0, out=dZ2[:n, c]); k += 1; barrier(p, k)
    dz2 = dZ2[:n]
    dW2 = a1.T @ dz2[:, c]; db2 = dz2[:, c].sum(axis=0)
    da1 = dz2 @ W[1][c].T
    dz1 = da1 * (z1 > 0)
    dW1 = X.T @ dz1; db1 = dz1.sum(axis=0)
    k += 1; barrier(p, k)
    W[0][:, c] -= lr * dW1; bb[0][c] -= lr * db1
    W[1][:, c] -= lr * dW2; bb[1][c] -= lr * db2
    W[2][:, c3] -= lr * dW3; bb[2][c3] -= lr * db3
    return k

def data_step(p, n, k):
    idx = IDX[:n]; h = n // 2
    part = idx[:h] if p == 0 else idx[h:]
    X = x.take(part, axis=0); y = Y.take(part, axis=0)
    a = [X]; zs = []
    for l in range(3):
        z = a[-1] @ W[l]; z += bb[l]; zs.append(z)
        a.append(np.maximum(z, 0) if l < 2 else z)
    dz = softmax_grad(zs[2], y, np.float32(1 / n))
    for l in (2, 1, 0):
        np.matmul(a[l].T, dz, out=GR[p][l]); GB[p][l][...] = dz.sum(axis=0)
        if l > 0:
            dz = (dz @ W[l].T) * (zs[l - 1] > 0)
    k += 1; barrier(p, k)
    for l in range(3):  # own half of rows of each W
        rows = W[l].shape[0] // 2
        r = slice(0, rows) if p == 0 else slice(rows, None)
        g = GR[0][l][r] + GR[1][l][r]; g *= lr; W[l][r] -= g
        if p == 0:
            bb[l] -= lr * (GB[0][l] + GB[1][l])
    k += 1; barrier(p, k)
    return k

def run_two(step_fn, perm, steps=None):
    """Steps with a forked partner; returns seconds per step."""
    steps = steps or len(perm) // B
    ctr[...] = 0
    pid = os.fork()
    p = 0 if pid else 1
    k = 0
    if p == 0:
        t = time.perf_counter()
    for s in range(steps):
        if p == 0:
            IDX[:B] = perm[s * B:(s + 1) * B]
        k += 1; barrier(p, k)
        k = step_fn(p, B, k)
    if p == 1:
        os._exit(0)
    dt = (time.perf_counter() - t) / steps
    os.waitpid(pid, 0)
    return dt

def run_one(perm):
    steps = len(perm) // B
    t = time.perf_counter()
    for s in range(steps):
        one_process(perm[s * B:(s + 1) * B])
    return (time.perf_counter() - t) / steps



def compare(batch):
    global B
    B = batch
    perm = np.random.default_rng(9).permutation(N)
    weights = {}
    for name, fn in (("one", None), ("cols", col_step), ("data", data_step)):
        init()
        run_one(perm[: 5 * B]) if fn is None else run_two(fn, perm[: 5 * B], 5)
        weights[name] = [w.copy() for w in W]
    for name in ("cols", "data"):
        diff = max(float(np.abs(a - b).max()) for a, b in zip(weights[name], weights["one"]))
        assert diff < 1e-6, f"{name} split differs from one process by {diff}"
    res = {"one": [], "cols": [], "data": []}
    for rep in range(7):
        perm = np.random.default_rng(rep).integers(0, N, STEPS * B)
        init()
        res["one"].append(run_one(perm))
        init()
        res["cols"].append(run_two(col_step, perm))
        init()
        res["data"].append(run_two(data_step, perm))
    m = {k: statistics.median(v) for k, v in res.items()}
    print(f"batch {B:>4}: one process {m['one'] * 1e3:6.2f} ms   column split {m['cols'] * 1e3:6.2f} ms"
          f" ({m['one'] / m['cols']:.2f}x)   data split {m['data'] * 1e3:6.2f} ms ({m['one'] / m['data']:.2f}x)", flush=True)


if __name__ == "__main__":
    for batch in [int(a) for a in sys.argv[1:]] or [128, 256, 512]:
        compare(batch)
