"""What splitting a batch into logical shards costs one process, measured, against the rule that fixes the count.

Every engine computes the logical shards of a batch one gradient call each
(training/engines/step.py: shard_count), so one process doing all the shards
pays each call's fixed work once more per shard.  The rule allows a count
when that costs at most SHARD_OVERHEAD over one whole-batch call.  This
prints, per model:

* the fixed cost of a call F and the cost per sample c, fitted from calls
  of a few sizes (ms), and F/c in samples, beside the rule's estimate of the
  same ratio (its fixed cost over the model's multiply-adds per sample);
* per batch size: the time of k calls of batch/k over one call of the batch
  (median of interleaved rounds) for each count, and the count the rule
  chooses (marked *).

  python bench/shard_cost.py [--quick] [NAME…]

Run it on a quiet machine; one BLAS thread, float32, as workers run.
"""

import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

COUNTS = (1, 2, 3, 4, 6, 8)


def models():
    """(name, model text, input maker (N → x), batches)."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import rnn_speed

    def flat(width):
        return lambda n, rng: rng.random((n, width, 1, 1)).astype(np.float32)

    def mlp(sizes, act):
        lines = [f"{sizes[0]} 1 1", "input"] + [f"dense {s} {act}" for s in sizes[1:-1]]
        return "\n".join(lines + [f"dense {sizes[-1]} softmax"]) + "\n"

    def sequences(n, rng):
        from kerash.model.datasets import adding

        return adding(n, rnn_speed.STEPS, seed=1)[0].astype(np.float32)

    with open(os.path.join(ROOT, "models", "digits-cnn.model")) as f:
        cnn = f.read()
    return [
        ("digits MLP 64-128-64-10", mlp([64, 128, 64, 10], "sigmoid"), flat(64), (32, 128)),
        ("MLP 784-256-256-10", mlp([784, 256, 256, 10], "relu"), flat(784), (128, 256, 512)),
        ("MLP 784-1024-1024-10", mlp([784, 1024, 1024, 10], "relu"), flat(784), (128, 512)),
        ("MLP 32×8 layers", mlp([32] * 9 + [10], "tanh"), flat(32), (64, 256)),
        ("digits CNN", cnn, lambda n, rng: rng.random((n, 1, 8, 8)).astype(np.float32), (32, 128, 512)),
        ("LSTM (rnn_speed)", rnn_speed.cell_text(), sequences, (32, 128)),
    ]


def build(text, folder):
    from kerash.model.description import read_model_file
    from kerash.model.spec import build_network
    from kerash.network import Objective

    path = os.path.join(folder, "m.mdl" if "(" in text else "m.model")
    with open(path, "w") as f:
        f.write(text)
    spec = read_model_file(path)
    net = build_network(spec)
    net.use_arena()
    net.arena.params[:] = np.random.default_rng(0).normal(0, 0.05, net.arena.size)
    return net, Objective(spec.loss, net)


def call_time(net, objective, x, y, n, calls_of, seconds):
    """Seconds for one batch of n computed as `calls_of` calls (shards), looped for about `seconds`."""
    bounds = np.linspace(0, n, calls_of + 1).astype(int)
    rounds, start = 0, time.perf_counter()
    while True:
        for a, b in zip(bounds[:-1], bounds[1:]):
            net.gradient(objective, x[a:b], y[a:b], 1.0 / n)
        rounds += 1
        if time.perf_counter() - start >= seconds:
            return (time.perf_counter() - start) / rounds


def main():
    from threadpoolctl import threadpool_limits

    from kerash.processes import prewarm_blas, tune_allocator
    from kerash.training.engines.step import NODE_COST, PARAM_COST, SHARD_OVERHEAD, shard_count

    threadpool_limits(1)
    tune_allocator()
    prewarm_blas(np.float32)
    quick = "--quick" in sys.argv
    only = [a for a in sys.argv[1:] if not a.startswith("--")]
    seconds, rounds = (0.08, 3) if quick else (0.2, 5)
    rng = np.random.default_rng(0)
    import tempfile

    print(f"shards: time of k calls of batch/k over one call of the batch (median of {rounds} interleaved rounds); "
          f"* the rule's count (≤ {SHARD_OVERHEAD:.0%} estimated)")
    with tempfile.TemporaryDirectory() as folder:
        for name, text, make_x, batches in models():
            if only and not any(o.lower() in name.lower() for o in only):
                continue
            net, objective = build(text, folder)
            n_max = max(batches)
            x = make_x(n_max, rng)
            steps = x.shape[1] if net.sequence and x.ndim > 2 else 1
            out = net.nodes[-1].shape[-1] if hasattr(net.nodes[-1], "shape") else 10
            y = (np.eye(out, dtype=np.float32)[rng.integers(0, out, n_max)] if out > 1
                 else rng.random((n_max, 1)).astype(np.float32))
            sizes = (2, 8, 32)
            small = {s: statistics.median(call_time(net, objective, x, y, s, 1, seconds) for _ in range(rounds))
                     for s in sizes}
            per_sample = (small[32] - small[8]) / 24
            fixed = small[2] - 2 * per_sample
            rule_fixed = NODE_COST * len(net.nodes) * steps + PARAM_COST * net.arena.size
            print(f"\n{name}: {len(net.nodes)} nodes, {net.arena.size} parameters, {net.macs_per_sample()} MACs/sample"
                  f"{f', {steps} steps' if steps > 1 else ''}; F = {fixed * 1e3:.3f} ms, c = {per_sample * 1e3:.4f} ms,"
                  f" F/c = {fixed / per_sample:.0f} samples (rule: {rule_fixed / (net.macs_per_sample() * steps):.0f})")
            for batch in batches:
                times = {k: [] for k in COUNTS if k <= batch}
                for _ in range(rounds):
                    for k in times:
                        times[k].append(call_time(net, objective, x, y, batch, k, seconds))
                whole = statistics.median(times[1])
                chosen = shard_count(net, batch, steps)
                cells = "  ".join(f"{k}{'*' if k == chosen else ' '}: {statistics.median(t) / whole:5.2f}"
                                  for k, t in times.items())
                print(f"  batch {batch:>4} ({whole * 1e3:6.2f} ms)  {cells}", flush=True)


if __name__ == "__main__":
    main()
