"""Training throughput: kerash's `train` against a hand-written numpy loop (and PyTorch if installed).

Prints samples/s of each and their ratios, all measured in this run, one
BLAS thread each unless said otherwise:

  python bench/train_speed.py            # all
  python bench/train_speed.py --quick    # fewer epochs
  python bench/train_speed.py --engines [--quick] [NAME…]   # the engine lines only (of the workloads named)

Workloads (issue 3): digits MLP 64-128-64-10 sigmoid + softmax/cross-entropy,
batch 32; MLP 784-256-256-10 relu, batch 128; the small CNN of
PERFORMANCE-NOTES (1×28×28, batch 64).  Engines (issue 9): on the
784-256-256-10 MLP at batch 128, 256 and 512, `--workers 2` against
`--workers 1` and against `--threads 2`; on the digits CNN (batch 32, as
`make demo` trains it, and 128), `--workers 2` against `--workers 1`
(`--engines` runs only these).  Each engine line ends with the ceiling any
two-process split has on this machine at that moment (see split_ceiling).
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
WORKLOADS = {
    "digits-mlp": {"sizes": [64, 128, 64, 10], "act": "sigmoid", "batch": 32, "samples": 53910},
    "wide-mlp": {"sizes": [784, 256, 256, 10], "act": "relu", "batch": 128, "samples": 16384},
    # conv 8 3×3 → relu → pool 2 → conv 16 3×3 → relu → pool 2 → dense 10 on 1×28×28 (PERFORMANCE-NOTES)
    "cnn": {"sizes": [784], "act": "relu", "batch": 64, "samples": 4096, "cnn": True},
}
CNN_MODEL = """28 28 1
input
convolution relu 8 1 0 3 3
max_pooling - 2 0 2 2
convolution relu 16 1 0 3 3
max_pooling - 2 0 2 2
flatten -
dense 10 softmax
"""


def make_data(folder, w):
    rng = np.random.default_rng(0)
    if w["sizes"][0] == 64:
        from kerash.model.datasets import digits

        x, y = digits()
        # Copies (thirty unless the workload says), so that an epoch lasts long enough to time (the trace
        # has millisecond seconds).
        copies = w.get("copies", 30)
        x, y = np.tile(x, (copies, 1)), np.tile(y, copies)
    else:
        x = rng.random((w["samples"], w["sizes"][0]))
        y = rng.integers(0, 10, w["samples"]).astype(float)
    np.save(os.path.join(folder, "x.npy"), x.astype(np.float32))
    np.save(os.path.join(folder, "y.npy"), y.reshape(-1, 1))
    return os.path.join(folder, "x.npy"), os.path.join(folder, "y.npy")


# ---------------------------------------------------------------- references


def hand_loop(w, epochs):
    """A plain numpy training loop, written as one would by hand (float32, 1 thread, prewarmed)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    np.ones((128, 256), np.float32) @ np.ones((256, 784), np.float32)
    rng = np.random.default_rng(1)
    sizes, batch = w["sizes"], w["batch"]
    x = np.load(os.environ["BENCH_X"]).astype(np.float32)
    labels = np.load(os.environ["BENCH_Y"])[:, 0].astype(int)
    y = np.eye(10, dtype=np.float32)[labels]
    Ws = [rng.uniform(-0.1, 0.1, (a, b)).astype(np.float32) for a, b in zip(sizes, sizes[1:])]
    bs = [np.zeros(b, np.float32) for b in sizes[1:]]
    lr = np.float32(0.1)
    sigmoid = w["act"] == "sigmoid"
    n = len(x)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = rng.permutation(n)
        for s in range(0, n, batch):
            idx = perm[s : s + batch]
            xb, yb = x[idx], y[idx]
            acts = [xb]
            for W, b in zip(Ws[:-1], bs[:-1]):
                z = acts[-1] @ W + b
                acts.append(1 / (1 + np.exp(-z)) if sigmoid else np.maximum(z, 0))
            z = acts[-1] @ Ws[-1] + bs[-1]
            e = np.exp(z - z.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
            dz = (p - yb) / len(idx)
            for i in range(len(Ws) - 1, -1, -1):
                dW = acts[i].T @ dz
                db = dz.sum(axis=0)
                if i:
                    da = dz @ Ws[i].T
                    a = acts[i]
                    dz = da * a * (1 - a) if sigmoid else da * (a > 0)
                Ws[i] -= lr * dW
                bs[i] -= lr * db
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def hand_cnn(w, epochs):
    """The CNN as one would write it by hand with numpy: im2col products, reshape pooling."""
    from numpy.lib.stride_tricks import sliding_window_view
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    np.ones((128, 256), np.float32) @ np.ones((256, 784), np.float32)
    rng = np.random.default_rng(1)
    x = np.load(os.environ["BENCH_X"]).astype(np.float32).reshape(-1, 28, 28, 1)  # channels-last
    labels = np.load(os.environ["BENCH_Y"])[:, 0].astype(int)
    y = np.eye(10, dtype=np.float32)[labels]
    k1 = rng.uniform(-0.3, 0.3, (9 * 1, 8)).astype(np.float32)
    k2 = rng.uniform(-0.1, 0.1, (9 * 8, 16)).astype(np.float32)
    wd = rng.uniform(-0.1, 0.1, (5 * 5 * 16, 10)).astype(np.float32)
    b1, b2, bd = np.zeros(8, np.float32), np.zeros(16, np.float32), np.zeros(10, np.float32)
    lr = np.float32(0.01)

    def conv(a, k):
        n, h, w_, c = a.shape
        cols = sliding_window_view(a, (3, 3), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3).reshape(-1, 9 * c)
        return cols, (cols @ k).reshape(n, h - 2, w_ - 2, -1)

    def pool(a):
        n, h, w_, c = a.shape
        v = a[:, : h // 2 * 2, : w_ // 2 * 2].reshape(n, h // 2, 2, w_ // 2, 2, c)
        return v.max(axis=(2, 4))

    def unpool(d, a, out):
        n, h, w_, c = a.shape
        da = np.zeros_like(a)
        v = a[:, : h // 2 * 2, : w_ // 2 * 2].reshape(n, h // 2, 2, w_ // 2, 2, c)
        mask = v == out[:, :, None, :, None, :]
        da[:, : h // 2 * 2, : w_ // 2 * 2] = (mask * d[:, :, None, :, None, :]).reshape(n, h // 2 * 2, w_ // 2 * 2, c)
        return da

    def unconv(dcols, shape, c):
        n, h, w_, _ = shape
        d = dcols.reshape(n, h - 2, w_ - 2, 3, 3, c)
        dx = np.zeros(shape, np.float32)
        for i in range(3):
            for j in range(3):
                dx[:, i : i + h - 2, j : j + w_ - 2] += d[:, :, :, i, j]
        return dx

    n = len(x)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = rng.permutation(n)
        for s in range(0, n, w["batch"]):
            idx = perm[s : s + w["batch"]]
            xb, yb = x[idx], y[idx]
            c1, z1 = conv(xb, k1)
            a1 = np.maximum(z1 + b1, 0)
            p1 = pool(a1)
            c2, z2 = conv(p1, k2)
            a2 = np.maximum(z2 + b2, 0)
            p2 = pool(a2)
            flat = p2.reshape(len(idx), -1)
            z = flat @ wd + bd
            e = np.exp(z - z.max(axis=1, keepdims=True))
            dz = (e / e.sum(axis=1, keepdims=True) - yb) / len(idx)
            dwd, dbd = flat.T @ dz, dz.sum(axis=0)
            dp2 = (dz @ wd.T).reshape(p2.shape)
            dz2 = unpool(dp2, a2, p2) * (a2 > 0)
            dk2, db2 = c2.T @ dz2.reshape(-1, 16), dz2.reshape(-1, 16).sum(axis=0)
            dp1 = unconv(dz2.reshape(-1, 16) @ k2.T, p1.shape, 8)
            dz1 = unpool(dp1, a1, p1) * (a1 > 0)
            dk1, db1 = c1.T @ dz1.reshape(-1, 8), dz1.reshape(-1, 8).sum(axis=0)
            for p, g in ((wd, dwd), (bd, dbd), (k2, dk2), (b2, db2), (k1, dk1), (b1, db1)):
                p -= lr * g
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def torch_loop(w, epochs, threads=1):
    import torch

    torch.set_num_threads(threads)
    sizes, batch = w["sizes"], w["batch"]
    x = torch.from_numpy(np.load(os.environ["BENCH_X"]).astype(np.float32))
    y = torch.from_numpy(np.load(os.environ["BENCH_Y"])[:, 0].astype(np.int64))
    layers = []
    if w.get("cnn"):
        x = x.reshape(-1, 1, 28, 28)
        nn = torch.nn
        layers = [nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Flatten(), nn.Linear(400, 10), nn.ReLU()]
    for a, b in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.Sigmoid() if w["act"] == "sigmoid" else torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = len(x)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        for s in range(0, n, batch):
            idx = perm[s : s + batch]
            opt.zero_grad()
            loss = loss_fn(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


# ---------------------------------------------------------------- kerash


def kerash_train(folder, w, epochs, workers=1, batch=None, extra=(), every=False):
    """samples/s of the `train` tool, from its per-epoch seconds column (start-up excluded).

    The first epoch warms caches up and is left out, unless every=True.
    """
    sizes = w["sizes"]
    lines = [f"{sizes[0]} 1 1", "input"] if not w.get("model") else []
    lines += [f"dense {s} {w['act']}" for s in sizes[1:-1]]
    lines += [f"dense {sizes[-1]} softmax"]
    model_file = os.path.join(folder, "bench.model")
    with open(model_file, "w") as f:
        f.write(w.get("model") or (CNN_MODEL if w.get("cnn") else "\n".join(lines) + "\n"))
    model = os.path.join(folder, f"model-{workers or 'default'}")
    env = dict(os.environ, KERASH_WORKDIR=folder)
    subprocess.run([f"{BIN}/model-init", model_file, "-o", model, "--seed", "1", "--force"], check=True, env=env)
    out = subprocess.run(
        [f"{BIN}/train", model, "--data", os.environ["BENCH_X"], "--labels", os.environ["BENCH_Y"],
         "--epochs", str(epochs), "--batch-size", str(batch or w["batch"]), "--lr", "0.1", "--seed", "1",
         *(("--workers", str(workers)) if workers else ()), *extra],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    rows = [line.split("\t") for line in out.splitlines()[1:]]
    samples = [int(r[1]) for r in rows]
    seconds = [float(r[6]) for r in rows]
    rates = [s / t for s, t in zip(samples, seconds)]
    with open(os.path.join(model, "trace.tsv")) as f:  # how many processes computed each epoch's steps (mean)
        trace = [line.rstrip("\n").split("\t") for line in f]
    column = trace[0].index("processes")
    PROCESSES[:] = [float(r[column]) for r in trace[1:]][-len(rates):]
    if every:
        return rates
    del PROCESSES[:1]
    return rates[1:] if len(rates) > 1 else rates


PROCESSES = []  # the processes column of the last kerash_train's epochs (steady ones, as its rates)


def split_ceiling(model_file, batch, seconds=0.3, rounds=7):
    """What any split of a batch between two processes could gain here, now: (alone, side by side).

    One process computes the gradient of whole batches, then of half batches
    (interleaved; one BLAS thread): alone = T(batch) / T(batch/2).  Then two
    processes compute half batches at the same time, as two workers would:
    side by side = T(batch) / T(batch/2 with the other core busy).  No
    hand-off, no update: an engine reaches at most these ratios.
    """
    from threadpoolctl import threadpool_limits

    from kerash.model.description import read_model_file
    from kerash.model.spec import build_network
    from kerash.network import Objective
    from kerash.processes import prewarm_blas, tune_allocator

    threadpool_limits(1)
    tune_allocator()
    prewarm_blas(np.float32)
    spec = read_model_file(model_file)
    net = build_network(spec)
    objective = Objective(spec.loss, net)
    net.use_arena()
    rng = np.random.default_rng(0)
    net.arena.params[:] = rng.normal(0, 0.05, net.arena.size)
    x = np.load(os.environ["BENCH_X"]).astype(np.float32).reshape((-1,) + tuple(net.nodes[0].shape))
    y = np.eye(10, dtype=np.float32)[np.load(os.environ["BENCH_Y"])[:, 0].astype(int)]

    def step_time(b):
        start, steps, i = time.perf_counter(), 0, 0
        while time.perf_counter() - start < seconds:
            net.gradient(objective, x[i:i + b], y[i:i + b], 1.0 / b)
            i, steps = (i + b) % (len(x) - b), steps + 1
        return (time.perf_counter() - start) / steps

    half = batch // 2
    alone, beside = [], []
    for _ in range(rounds):
        whole = step_time(batch)
        alone.append(whole / step_time(half))
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the other core's half batch, started together with ours
            os.read(go_r, 1)
            step_time(half)
            os._exit(0)
        os.write(go_w, b"x")
        beside.append(whole / step_time(half))
        os.waitpid(pid, 0)
        os.close(go_r), os.close(go_w)
    return statistics.median(alone), statistics.median(beside)


def child(kind, name, epochs, extra):
    if kind == "ceiling":  # name: a model file, epochs: the batch size
        print(json.dumps(split_ceiling(name, int(epochs))))
        return
    w, epochs = WORKLOADS[name], int(epochs)
    if kind == "hand":
        print(json.dumps(hand_cnn(w, epochs) if w.get("cnn") else hand_loop(w, epochs)))
    elif kind == "torch":
        print(json.dumps(torch_loop(w, epochs, int(extra or 1))))


def measure(kind, name, epochs, extra=""):
    out = subprocess.run([sys.executable, __file__, "--child", kind, name, str(epochs), extra],
                         capture_output=True, text=True, env=os.environ)
    if out.returncode:
        sys.exit(f"{kind} {name} failed:\n{out.stderr}")
    out = out.stdout
    return json.loads(out)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5], sys.argv[5] if len(sys.argv) > 5 else "")
        return
    quick = "--quick" in sys.argv
    if "--engines" in sys.argv:
        with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as folder:
            engines(folder, quick)
        return
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as folder:
        print("workload                       kerash/s    numpy/s   ratio" + ("    torch/s   ratio" if have_torch else ""))
        for name, w in WORKLOADS.items():
            os.environ["BENCH_X"], os.environ["BENCH_Y"] = make_data(folder, w)
            epochs = 3 if quick else 5
            # The machine is shared: interleave three runs of each and take the medians.
            ours, hand, torch_rates = [], [], []
            for _ in range(3):
                ours += kerash_train(folder, w, epochs)
                hand.append(measure("hand", name, epochs))
                if have_torch:
                    torch_rates.append(measure("torch", name, epochs, "1"))
            ours, hand = statistics.median(ours), statistics.median(hand)
            line = f"{name + ' (batch ' + str(w['batch']) + ')':<28} {ours:>10.0f} {hand:>10.0f} {ours / hand:>7.2f}"
            if have_torch:
                t = statistics.median(torch_rates)
                line += f" {t:>10.0f} {ours / t:>7.2f}"
            print(line, flush=True)
        engines(folder, quick)


class BusyProcesses:
    """`count` processes that keep a core busy (a shell `while :` loop each), as another user's job would."""

    def __init__(self, count):
        self.procs = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(count)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.kill()
            proc.wait()
        return False


def engine_workloads(folder):
    """(name, workload, model text or None, data maker, batch sizes) of the engine lines (issue 21)."""
    digits = dict(WORKLOADS["digits-mlp"])
    cnn = dict(WORKLOADS["digits-mlp"], model=open(os.path.join(ROOT, "models", "digits-cnn.model")).read(), copies=8)
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import rnn_speed

    lstm = {"sizes": [2], "act": "tanh", "batch": rnn_speed.BATCH, "model": rnn_speed.cell_text(),
            "extra": ("--optimizer", "adam", "--lr", "0.001"), "ceiling": False}  # split_ceiling drives classifiers

    def lstm_data():
        rnn_speed.make_data(folder)
        return os.path.join(folder, "x.npy"), os.path.join(folder, "y.npy")

    return [
        ("digits MLP", digits, lambda: make_data(folder, digits), (32,)),
        ("digits CNN", cnn, lambda: make_data(folder, cnn), (32, 128)),
        ("MLP 784-256-256-10", WORKLOADS["wide-mlp"], lambda: make_data(folder, WORKLOADS["wide-mlp"]), (128, 256, 512)),
        ("LSTM (rnn_speed)", lstm, lstm_data, (rnn_speed.BATCH,)),
    ]


def engines(folder, quick):
    """The default engine against one process and against BLAS threads, quiet and beside busy processes.

    For each workload and batch, the settings run interleaved, `rounds` times,
    in each of three conditions: quiet, one busy process, two busy processes
    (started and ended here).  Medians of steady epochs, in samples/s; the
    ratio is the default's over --workers 1's; the ceiling is what any
    two-process split could reach here and now (see split_ceiling).
    """
    epochs = 3 if quick else 5
    rounds = 2 if quick else 3
    settings = {"workers 1": ("--workers", "1"), "default": (), "threads 2": ("--workers", "1", "--threads", "2")}
    print("\nengines: samples/s, median of steady epochs; default/w1 and t2/w1 ratios; "
          "ceiling T(batch)/T(batch/2) alone | beside a second process; processes: the default's mean per step")
    print(f"{'workload':<22} {'batch':>5} {'busy':>4} " + " ".join(f"{n:>10}" for n in settings)
          + "  def/w1  t2/w1  ceiling      processes")
    only = [a for a in sys.argv[sys.argv.index("--engines") + 1:] if not a.startswith("--")]
    for name, w, data, batches in engine_workloads(folder):
        if only and not any(o.lower() in name.lower() for o in only):
            continue
        os.environ["BENCH_X"], os.environ["BENCH_Y"] = data()
        for batch in batches:
            for busy in (0, 1, 2):
                rates = {n: [] for n in settings}
                processes = []
                with BusyProcesses(busy):
                    for _ in range(rounds):
                        for n, extra in settings.items():
                            rates[n] += kerash_train(folder, w, epochs, None, batch, (*w.get("extra", ()), *extra))
                            if n == "default":
                                processes += PROCESSES
                    ceiling = "n/a"
                    if w.get("ceiling", True):
                        ceiling = "{:.2f} | {:.2f}".format(*measure("ceiling", os.path.join(folder, "bench.model"), batch))
                med = {n: statistics.median(r) for n, r in rates.items()}
                cells = " ".join(f"{med[n]:>10.0f}" for n in settings)
                print(f"{name:<22} {batch:>5} {busy:>4} {cells}  {med['default'] / med['workers 1']:6.2f} "
                      f"{med['threads 2'] / med['workers 1']:6.2f}  {ceiling:<11}  "
                      f"{statistics.mean(processes):.2f}", flush=True)


if __name__ == "__main__":
    main()
