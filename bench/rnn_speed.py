"""Recurrent training speed: the built-in lstm and gru layers, and the LSTM-like MDL cell, against PyTorch.

Built-in layers (issue 23): `train` of `lstm 64` and `gru 64` (a linear
output on the last step, mse, Adam, float32, --workers 1 --threads 1) against
torch.nn.LSTM / nn.GRU with the same model and settings on one thread, at
batch 32 and 64, T = 50 (targets: ≥ 1.0× at batch 64, ≥ 0.8× at batch 32),
with the share of one kerash step spent in BLAS products (the same GEMMs
replayed alone).

Then the cell written node by node:

Sequences per second of training (forward, BPTT, Adam) on the adding problem,
one thread, float32, batch 32, T = 50, the cell of models/adding-lstm.mdl at
width 64.  References, measured in this run and interleaved:

* PyTorch running the same cell as an explicit loop over time with autograd;
* torch.nn.LSTM (cuDNN-style fused cell, width 64) with a linear output, for reference.

Also: where kerash's time goes — BLAS products (the same GEMMs replayed
alone) against the rest (element-wise numpy calls and Python).

  pip install torch==2.13.0      # for this benchmark only
  python bench/rnn_speed.py [--quick] [--builtin]   # --builtin: the built-in layers only
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
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIDTH, STEPS, BATCH, SAMPLES = 64, 50, 32, 2048


def cell_text(width=WIDTH):
    with open(os.path.join(ROOT, "models", "adding-lstm.mdl")) as f:
        return f.read().replace(", 16,", f", {width},")


def make_data(folder):
    sys.path.insert(0, ROOT)
    from kerash.model.datasets import adding

    x, y = adding(SAMPLES, STEPS, seed=1)
    np.save(os.path.join(folder, "x.npy"), x.astype(np.float32))
    np.save(os.path.join(folder, "y.npy"), y.astype(np.float32))


# ---------------------------------------------------------------- PyTorch


def torch_rate(folder, kind, epochs, batch=BATCH):
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    nn = torch.nn
    x = torch.from_numpy(np.load(os.path.join(folder, "x.npy")))
    y = torch.from_numpy(np.load(os.path.join(folder, "y.npy")))
    if kind == "loop":
        layers = nn.ModuleDict({name: nn.Linear(2 if name == "proj" else WIDTH, 1 if name == "output" else WIDTH)
                                for name in ("proj", "include", "process", "add", "forget", "statep", "output")})

        def run(xb):
            h = c = torch.zeros(xb.shape[0], WIDTH)
            for t in range(xb.shape[1]):
                a = layers["proj"](xb[:, t]) + h
                pi = torch.tanh(layers["process"](a)) * torch.sigmoid(layers["include"](a))
                o = torch.sigmoid(layers["add"](a))
                c = torch.sigmoid(layers["forget"](a)) * c + pi
                h = torch.tanh(layers["statep"](c)) * o
            return layers["output"](h)

        params = layers.parameters()
    else:
        lstm = (nn.GRU if kind == "gru" else nn.LSTM)(2, WIDTH, batch_first=True)
        out = nn.Linear(WIDTH, 1)

        def run(xb):
            return out(lstm(xb)[0][:, -1])

        params = list(lstm.parameters()) + list(out.parameters())
    opt = torch.optim.Adam(params, lr=0.001)
    rates = []
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        t0 = time.perf_counter()
        for s in range(0, len(x), batch):
            idx = perm[s : s + batch]
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(run(x[idx]), y[idx])
            loss.backward()
            opt.step()
        rates.append(len(x) / (time.perf_counter() - t0))
    return rates[1:]


# ---------------------------------------------------------------- kerash


def kerash_rate(folder, epochs):
    """Sequences/s of `train`, from its per-epoch seconds (start-up and the first epoch excluded)."""
    model_file = os.path.join(folder, "cell.mdl")
    with open(model_file, "w") as f:
        f.write(cell_text())
    model = os.path.join(folder, "cell")
    env = dict(os.environ, KERASH_WORKDIR=folder)
    subprocess.run([f"{BIN}/model-init", model_file, "-o", model, "--seed", "1", "--force"], check=True, env=env)
    out = subprocess.run(
        [f"{BIN}/train", model, "-x", os.path.join(folder, "x.npy"), "-y", os.path.join(folder, "y.npy"),
         "--epochs", str(epochs), "-b", str(BATCH), "--optimizer", "adam", "--lr", "0.001", "--seed", "1"],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    rows = [line.split("\t") for line in out.splitlines()[1:]]
    return [int(r[1]) / float(r[6]) for r in rows][1:]


def best_of(f, reps=10):
    """The best mean seconds of f over 5 rounds of `reps` calls (after one warm-up call)."""
    f()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        times.append((time.perf_counter() - t0) / reps)
    return min(times)


def builtin_rate(folder, kind, batch, epochs):
    """Sequences/s of `train` on `KIND 64` then a linear output, one process, one thread."""
    model_file = os.path.join(folder, f"{kind}.model")
    with open(model_file, "w") as f:
        f.write(f"2 1 1\ninput\n{kind} {WIDTH}\ndense 1 identity\n")
    model = os.path.join(folder, kind)
    env = dict(os.environ, KERASH_WORKDIR=folder, KERASH_WARM="0")
    subprocess.run([f"{BIN}/model-init", model_file, "-o", model, "--seed", "1", "--force"], check=True, env=env)
    out = subprocess.run(
        [f"{BIN}/train", model, "-x", os.path.join(folder, "x.npy"), "-y", os.path.join(folder, "y.npy"),
         "--epochs", str(epochs), "-b", str(batch), "--optimizer", "adam", "--lr", "0.001", "--seed", "1",
         "--workers", "1", "--threads", "1"],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    rows = [line.split("\t") for line in out.splitlines()[1:]]
    return [int(r[1]) / float(r[6]) for r in rows][1:]


def builtin_shares(folder, kind, batch):
    """(seconds per training step of the network, of which the same BLAS products replayed alone), in process."""
    sys.path.insert(0, ROOT)
    from threadpoolctl import threadpool_limits

    from kerash import model
    from kerash.network import Objective
    from kerash.processes import tune_allocator

    tune_allocator()
    threadpool_limits(1)
    spec = model.parse_model(f"2 1 1\ninput\n{kind} {WIDTH}\ndense 1 identity\n")
    net = model.build_network(spec, np.float32)
    net.set_params(model.init_params(spec, 1, np.float32))
    net.use_arena()
    objective = Objective(spec.loss, net)
    x = np.load(os.path.join(folder, "x.npy"))[:batch]
    y = np.load(os.path.join(folder, "y.npy"))[:batch]
    gates = 4 if kind == "lstm" else 3
    f32 = np.float32
    h, rows = np.ones((batch, WIDTH), f32), STEPS * batch
    w, d, wt = np.ones((gates, WIDTH, WIDTH), f32), np.ones((gates, batch, WIDTH), f32), np.ones((gates, WIDTH, WIDTH), f32)
    hs, dz, xs = np.ones((rows, WIDTH), f32), np.ones((gates, rows, WIDTH), f32), np.ones((rows, 2), f32)

    def gemms():
        np.matmul(xs, np.ones((gates, 2, WIDTH), f32))
        for _ in range(STEPS):
            np.matmul(h, w)  # forward: the state's product
            np.matmul(d, wt)  # backward: the state's gradient
        np.matmul(hs.T, dz)  # W_hh's gradient
        np.matmul(xs.T, dz)  # W_ih's gradient

    return best_of(lambda: net.gradient(objective, x, y, 1.0 / batch)), best_of(gemms)


def time_shares(folder):
    """(seconds per step, of which BLAS products) for one training step of the cell, in process."""
    sys.path.insert(0, ROOT)
    from threadpoolctl import threadpool_limits

    from kerash import model
    from kerash.network import Objective

    threadpool_limits(1)
    spec = model.parse_model(cell_text())
    net = model.build_network(spec, np.float32)
    net.set_params(model.init_params(spec, 1, np.float32))
    net.use_arena()
    objective = Objective(spec.loss, net)
    x = np.load(os.path.join(folder, "x.npy"))[:BATCH]
    y = np.load(os.path.join(folder, "y.npy"))[:BATCH]
    np.ones((128, 256), np.float32) @ np.ones((256, 784), np.float32)

    step = best_of(lambda: net.gradient(objective, x, y, 1.0 / BATCH), 20)
    # The same products alone: per dense node and step, X·W forward, Xᵀ·dZ and dZ·Wᵀ backward.
    products = []
    for key, shapes in model.param_shapes(spec).items():
        n_in, n_out = shapes["W"]
        a, w, dz = (np.ones((BATCH, n_in), np.float32), np.ones((n_in, n_out), np.float32),
                    np.ones((BATCH, n_out), np.float32))
        products.append((a, w, dz, np.empty((n_in, n_out), np.float32)))

    def gemms():
        for _ in range(STEPS):
            for a, w, dz, g in products:
                a @ w
                np.matmul(a.T, dz, out=g)
                dz @ w.T

    return step, best_of(gemms, 20)


def child(kind, folder, epochs, batch=BATCH):
    if kind == "shares":
        print(json.dumps(time_shares(folder)))
    elif kind.startswith("shares-"):
        print(json.dumps(builtin_shares(folder, kind[7:], int(batch))))
    else:
        print(json.dumps(torch_rate(folder, kind, int(epochs), int(batch))))


def measure(kind, folder, epochs, batch=BATCH):
    out = subprocess.run([sys.executable, __file__, "--child", kind, folder, str(epochs), str(batch)],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{kind} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
        return
    epochs = 3 if "--quick" in sys.argv else 4
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as folder:
        make_data(folder)
        print(f"built-in layers, width {WIDTH}, T={STEPS}, 1 thread, float32, Adam (sequences/s; interleaved)")
        for kind in ("lstm", "gru"):
            for batch in (32, 64):
                ours, theirs = [], []
                for _ in range(3):
                    ours += builtin_rate(folder, kind, batch, epochs)
                    theirs += measure(kind, folder, epochs, batch)
                ours, theirs = statistics.median(ours), statistics.median(theirs)
                step, blas = measure(f"shares-{kind}", folder, 0, batch)
                target = 1.0 if batch == 64 else 0.8
                print(f"  {kind} {WIDTH}, batch {batch}: kerash {ours:7.0f}, torch nn.{kind.upper()} {theirs:7.0f}: "
                      f"{ours / theirs:.2f}x (target >= {target}); a step {step * 1e3:.2f} ms, BLAS {blas / step:.0%}",
                      flush=True)
        if "--builtin" in sys.argv:
            return
        ours, loop, fused = [], [], []
        for _ in range(3):  # interleaved: the machine is shared
            ours += kerash_rate(folder, epochs)
            loop += measure("loop", folder, epochs)
            fused += measure("lstm", folder, epochs)
        ours, loop, fused = (statistics.median(r) for r in (ours, loop, fused))
        print(f"LSTM-like cell, width {WIDTH}, T={STEPS}, batch {BATCH}, 1 thread, float32 (sequences/s)")
        print(f"  kerash train                      {ours:8.0f}")
        print(f"  PyTorch, same cell, explicit loop {loop:8.0f}   kerash/PyTorch {ours / loop:.2f}x")
        print(f"  PyTorch nn.LSTM (reference)       {fused:8.0f}   kerash/nn.LSTM {ours / fused:.2f}x")
        step, blas = measure("shares", folder, 0)
        print(f"  one kerash step: {step * 1e3:.1f} ms, of which BLAS products {blas * 1e3:.1f} ms ({blas / step:.0%}); "
              f"element-wise numpy and Python {100 - round(100 * blas / step)}%")


if __name__ == "__main__":
    main()
