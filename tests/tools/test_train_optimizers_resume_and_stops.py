"""train and model-update against a hand-written reference: the optimisers step by step, exact resume,
--until-epoch, stop criteria (target loss, patience and --restore-best, a non-finite loss), checkpoints,
trace.tsv, MODEL/params and skipping learned samples.  Signals are in system/test_interrupts.py, the
Make example in system/test_make_example.py.

Most tests use full-batch training (--batch-size = number of samples), so each epoch is one
step that the numpy reference below can replay exactly whatever the shuffle order.
"""

import json
import os

import numpy as np
import pytest

import helpers
from conftest import assert_one_line_error, run, savetxt, tool_env
from helpers import assert_weights, copy_model, processes_column, weights

MLP = "/uniform -0.5 0.5,uniform -0.3 0.3/\n4 1 1\ninput\ndense 5 tanh\ndense 3 softmax\n"
HEADER = ["epoch", "samples", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]
TRACE_HEADER = HEADER + ["lr", "batch_size", "event", "processes"]


# ---------------------------------------------------------------- helpers


def make_model(tmp_path, text=MLP, name="m", seed=1):
    return helpers.make_model(tmp_path, text, name, seed)


def raw_files(folder):
    """The bytes of every weight file: to show that nothing was rewritten."""
    return {
        key: open(os.path.join(folder, key + ".npy"), "rb").read()
        for key in weights(folder)
    }


def arrays_under(root):
    """{'layer_01/W.m': array, …}: the .npy files under a folder (the optimiser's state), if any."""
    found = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, root)[: -len(".npy")]] = np.load(path)
    return found


def max_diff(a, b):
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def state(folder):
    return json.loads((folder / "state.json").read_text())


def versions(folder):
    """Where `current` points and the versions kept: any save changes one of them."""
    return os.readlink(folder / "current"), sorted(os.listdir(folder / ".versions"))


def rows_of(text):
    """Header and rows of a tab-separated trace."""
    lines = text.decode().splitlines() if isinstance(text, bytes) else text.splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def stdout_rows(proc):
    header, rows = rows_of(proc.stdout)
    assert header == HEADER
    return rows


def trace_rows(folder):
    header, rows = rows_of((folder / "trace.tsv").read_text())
    assert header == TRACE_HEADER
    return rows


def column(rows, name, header=HEADER):
    i = header.index(name)
    return [float(r[i]) for r in rows]


def classification_data(tmp_path, n, seed=0, name=""):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = (x[:, :3].argmax(axis=1) + (rng.random(n) < 0.2)) % 3
    savetxt(tmp_path / f"x{name}.txt", x)
    savetxt(tmp_path / f"y{name}.txt", y.reshape(-1, 1))
    return x, y


# ---------------------------------------------------------------- the reference, by hand


def forward(w, x):
    h = np.tanh(x @ w["layer_01/W"] + w["layer_01/b"])
    z = h @ w["layer_02/W"] + w["layer_02/b"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return h, e / e.sum(axis=1, keepdims=True)


def sample_losses(w, x, y):
    return -np.log(forward(w, x)[1][np.arange(len(x)), y])


def mean_grads(w, x, y):
    """Gradients of the mean cross-entropy of MLP over (x, y) by the chain rule."""
    h, p = forward(w, x)
    dz = (p - np.eye(3)[y]) / len(x)
    dh = (dz @ w["layer_02/W"].T) * (1 - h * h)
    return {"layer_01/W": x.T @ dh, "layer_01/b": dh.sum(axis=0), "layer_02/W": h.T @ dz, "layer_02/b": dz.sum(axis=0)}


DEFAULTS = {
    "sgd": {"lr": 0.01},
    "momentum": {"lr": 0.01, "momentum": 0.9},
    "nesterov": {"lr": 0.01, "momentum": 0.9},
    "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
    "rmsprop": {"lr": 0.001, "rho": 0.9, "eps": 1e-8},
}


class HandOptimizer:
    """The documented (PyTorch) rules, written out once more with numpy."""

    def __init__(self, name, weight_decay=0.0, decay_biases=False, **hyper):
        self.name, self.wd, self.decay_biases = name, weight_decay, decay_biases
        self.h = {**DEFAULTS[name], **hyper}
        self.t = 0
        self.state = {}

    def step(self, w, grads):
        self.t += 1
        h, t = self.h, self.t
        lr = h["lr"]
        for key in w:
            g = grads[key]
            if self.wd and (key.endswith("/W") or self.decay_biases):
                g = g + self.wd * w[key]
            if self.name == "sgd":
                w[key] = w[key] - lr * g
            elif self.name in ("momentum", "nesterov"):
                v = h["momentum"] * self.state.get(key + ".velocity", 0.0) + g
                self.state[key + ".velocity"] = v
                w[key] = w[key] - lr * (v if self.name == "momentum" else g + h["momentum"] * v)
            elif self.name == "adam":
                m = h["beta1"] * self.state.get(key + ".m", 0.0) + (1 - h["beta1"]) * g
                v = h["beta2"] * self.state.get(key + ".v", 0.0) + (1 - h["beta2"]) * g * g
                self.state[key + ".m"], self.state[key + ".v"] = m, v
                m_hat, v_hat = m / (1 - h["beta1"] ** t), v / (1 - h["beta2"] ** t)
                w[key] = w[key] - lr * m_hat / (np.sqrt(v_hat) + h["eps"])
            else:
                s = h["rho"] * self.state.get(key + ".s", 0.0) + (1 - h["rho"]) * g * g
                self.state[key + ".s"] = s
                w[key] = w[key] - lr * g / (np.sqrt(s) + h["eps"])


def full_batch_run(w0, x, y, steps, opt):
    """[W_0, W_1, …, W_steps]: full-batch training with the hand optimiser."""
    w = {k: v.copy() for k, v in w0.items()}
    path = [{k: v.copy() for k, v in w.items()}]
    for _ in range(steps):
        opt.step(w, mean_grads(w, x, y))
        path.append({k: v.copy() for k, v in w.items()})
    return path


# ---------------------------------------------------------------- 1. optimisers


OPTIMIZER_CASES = {
    "sgd": ("sgd", {"lr": 0.5}),
    "momentum": ("momentum", {"lr": 0.3}),
    "momentum-0.7-decay": ("momentum", {"lr": 0.3, "momentum": 0.7, "weight_decay": 0.1}),
    "nesterov-0.6": ("nesterov", {"lr": 0.3, "momentum": 0.6}),
    "adam": ("adam", {"lr": 0.05}),
    "adam-betas-eps": ("adam", {"lr": 0.05, "beta1": 0.5, "beta2": 0.9, "eps": 0.01}),
    "adam-decay": ("adam", {"lr": 0.05, "weight_decay": 0.2}),
    "rmsprop": ("rmsprop", {"lr": 0.02}),
    "rmsprop-rho-eps": ("rmsprop", {"lr": 0.02, "rho": 0.5, "eps": 0.01}),
}


def options(name, settings):
    args = ["--optimizer", name]
    for key, value in settings.items():
        args += [f"--{key.replace('_', '-')}", repr(value)]
    return args


@pytest.mark.parametrize("case", OPTIMIZER_CASES)
def test_first_steps_of_each_optimizer_match_the_documented_rules(tmp_path, case):
    name, settings = OPTIMIZER_CASES[case]
    n, steps = 6, 3
    folder = make_model(tmp_path, seed=3)
    trained = copy_model(folder, "trained")
    x, y = classification_data(tmp_path, n, seed=1)
    w0 = weights(folder)
    assert all(np.any(v != 0) for v in w0.values())  # nonzero biases, so decaying them would show

    hyper = {k: v for k, v in settings.items() if k != "weight_decay"}
    decay = settings.get("weight_decay", 0.0)
    hand = HandOptimizer(name, decay, **hyper)
    expected = full_batch_run(w0, x, y, steps, hand)[-1]

    # backprop + model-update in a loop: the optimiser state lives in the model directory between steps
    for _ in range(steps):
        run(["backprop", "m", "-x", "x.txt", "-y", "y.txt", "-o", "grads"], cwd=tmp_path)
        run(["model-update", "m", "grads", *options(name, settings)], cwd=tmp_path)
    assert_weights(weights(folder), expected)

    # train: one batch per epoch, three epochs
    proc = run(["train", "trained", "-x", "x.txt", "-y", "y.txt", "--batch-size", str(n), "--epochs", str(steps),
                "--seed", "2", *options(name, settings)], cwd=tmp_path)
    assert [r[1] for r in stdout_rows(proc)] == [str(n)] * steps
    assert_weights(weights(trained), expected)

    # the optimiser's state arrays are ordinary .npy files in the model directory
    for model in (folder, trained):
        saved = arrays_under(model / "optimizer")
        assert saved.keys() == hand.state.keys()
        for key in hand.state:
            np.testing.assert_allclose(saved[key], hand.state[key], rtol=0, atol=1e-12, err_msg=key)

    # The options matter: the same steps with the defaults (or with biases decayed too) end elsewhere.
    if set(hyper) - {"lr"}:
        plain = HandOptimizer(name, decay, lr=hyper["lr"])
        assert max_diff(full_batch_run(w0, x, y, steps, plain)[-1], expected) > 1e-4
    if decay:
        biases_too = HandOptimizer(name, decay, decay_biases=True, **hyper)
        other = full_batch_run(w0, x, y, steps, biases_too)[-1]
        assert max(float(np.max(np.abs(other[k] - expected[k]))) for k in expected if k.endswith("/b")) > 1e-4
        undecayed = full_batch_run(w0, x, y, steps, HandOptimizer(name, **hyper))[-1]
        assert max_diff(undecayed, expected) > 1e-4


def test_an_unknown_optimizer_or_a_foreign_option_is_a_usage_error(tmp_path):
    folder = make_model(tmp_path)
    classification_data(tmp_path, 6)
    before = versions(folder)
    proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--optimizer", "adamw"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "adamw")
    proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--optimizer", "sgd", "--beta1", "0.5"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "beta1")
    assert versions(folder) == before
    assert not (folder / "trace.tsv").exists()


# ---------------------------------------------------------------- 2. resume


# With workers: four shards (the rule makes a batch of this small model one, which leaves the worker nothing to
# compute), and KERASH_ENGINE_ADAPT=0 in the test (it computes at every step).
RESUME_CASES = {
    "adam": ["--optimizer", "adam", "--lr", "0.05"],
    "adam-validation-split": ["--optimizer", "adam", "--lr", "0.05", "--validation-split", "0.25"],
    "adam-2-workers": ["--optimizer", "adam", "--lr", "0.05", "--workers", "2", "--shards", "4"],
    "nesterov-2-workers-split": ["--optimizer", "nesterov", "--lr", "0.1", "--workers", "2", "--shards", "4",
                                 "--validation-split", "0.2"],
}


def without_seconds(rows, header=HEADER):
    i = header.index("seconds")
    return [r[:i] + r[i + 1:] for r in rows]


@pytest.mark.parametrize("case", RESUME_CASES)
def test_ten_epochs_equal_five_twice(tmp_path, case):
    env = tool_env(KERASH_WORKDIR=tmp_path / "work", KERASH_ENGINE_ADAPT=0)
    once = make_model(tmp_path, name="once", seed=5)
    twice = copy_model(once, "twice")
    initial = weights(once)
    classification_data(tmp_path, 61, seed=2)  # batches of 8 and a last one of 5
    common = ["-x", "x.txt", "-y", "y.txt", "--batch-size", "8", "--seed", "11", *RESUME_CASES[case]]
    full = stdout_rows(run(["train", "once", "--epochs", "10", *common], cwd=tmp_path, env=env))
    first = stdout_rows(run(["train", "twice", "--epochs", "5", *common], cwd=tmp_path, env=env))
    second = stdout_rows(run(["train", "twice", "--epochs", "5", *common], cwd=tmp_path, env=env))
    assert_weights(weights(twice), weights(once))
    assert max_diff(weights(once), initial) > 1e-3
    # the optimiser state continues too
    slots = arrays_under(once / "optimizer")
    assert slots and arrays_under(twice / "optimizer").keys() == slots.keys()
    assert_weights(arrays_under(twice / "optimizer"), slots)
    assert [r[0] for r in first + second] == [str(e) for e in range(1, 11)]
    assert without_seconds(first + second) == without_seconds(full)
    assert state(twice)["epochs"] == state(once)["epochs"] == 10
    assert state(twice)["steps"] == state(once)["steps"]
    # and so does the history in trace.tsv
    event = TRACE_HEADER.index("event")
    events = [r[event] for r in trace_rows(twice)]
    assert events == ["start"] + [""] * 4 + ["start"] + [""] * 4  # each run's first epoch says so

    def figures(rows):  # what the run's history says, without its timing, events and processes
        return [r[: event - 1] for r in without_seconds(rows, TRACE_HEADER)]  # seconds, before event, is gone

    assert figures(trace_rows(twice)) == figures(trace_rows(once))
    if "--workers" in common:  # the worker computed in every epoch (a mean: a last batch of one sample is one shard)
        assert all(p > 1 for p in processes_column(once) + processes_column(twice))


def test_until_epoch_trains_to_a_total_and_then_does_nothing(tmp_path):
    folder = make_model(tmp_path, seed=6)
    straight = copy_model(folder, "straight")
    classification_data(tmp_path, 30, seed=3)
    common = ["-x", "x.txt", "-y", "y.txt", "--batch-size", "7", "--seed", "4", "--optimizer", "momentum", "--lr", "0.1"]
    rows = stdout_rows(run(["train", "m", "--until-epoch", "4", *common], cwd=tmp_path))
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    assert state(folder)["epochs"] == 4
    run(["train", "straight", "--epochs", "4", *common], cwd=tmp_path)
    assert_weights(weights(folder), weights(straight))

    files, trace, where = raw_files(folder), (folder / "trace.tsv").read_bytes(), versions(folder)
    for until in ("4", "2"):
        proc = run(["train", "m", "--until-epoch", until, *common], cwd=tmp_path)
        assert proc.returncode == 0
        assert proc.stdout == b""
        assert raw_files(folder) == files
        assert (folder / "trace.tsv").read_bytes() == trace
        assert versions(folder) == where
        assert state(folder)["epochs"] == 4

    # from 4 to 6: two more epochs, the same as six in one go
    rows = stdout_rows(run(["train", "m", "--until-epoch", "6", *common], cwd=tmp_path))
    assert [r[0] for r in rows] == ["5", "6"]
    run(["train", "straight", "--epochs", "2", *common], cwd=tmp_path)
    assert_weights(weights(folder), weights(straight))
    assert [r[0] for r in trace_rows(folder)] == [str(e) for e in range(1, 7)]


# ---------------------------------------------------------------- 3. stop criteria


def test_target_loss_stops_at_the_first_epoch_below_it(tmp_path):
    n = 12
    folder = make_model(tmp_path, seed=7)
    x, y = classification_data(tmp_path, n, seed=4)
    w0 = weights(folder)
    path = full_batch_run(w0, x, y, 40, HandOptimizer("sgd", lr=0.5))
    # Epoch e reports the loss of the weights it started from, W_{e-1} (full batch: one step).
    losses = [sample_losses(w, x, y).mean() for w in path]
    # just above the loss epoch 10 reports: a stop on anything but "loss < target" shows
    target = float(losses[9]) * (1 + 1e-9)
    first = next(e for e in range(1, 41) if losses[e - 1] < target)
    assert first == 10 and losses[8] > target * (1 + 1e-4)

    proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--batch-size", str(n), "--lr", "0.5", "--epochs", "40",
                "--target-loss", repr(target)], cwd=tmp_path)
    rows = stdout_rows(proc)
    assert [int(r[0]) for r in rows] == list(range(1, first + 1))
    np.testing.assert_allclose(column(rows, "loss"), losses[:first], rtol=1e-5)
    assert [r[0] for r in trace_rows(folder)] == [r[0] for r in rows]
    assert_weights(weights(folder), path[first])
    assert state(folder)["epochs"] == first
    assert "target" in proc.stderr.decode()


def patience_data(tmp_path):
    """Training and validation sets on which the validation loss falls, then rises."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(12, 4)), rng.integers(0, 3, 12)
    vx, vy = rng.normal(size=(12, 4)), rng.integers(0, 3, 12)
    savetxt(tmp_path / "x.txt", x)
    savetxt(tmp_path / "y.txt", y.reshape(-1, 1))
    savetxt(tmp_path / "vx.txt", vx)
    savetxt(tmp_path / "vy.txt", vy.reshape(-1, 1))
    return x, y, vx, vy


def test_patience_stops_and_restore_best_puts_back_the_best_weights(tmp_path):
    patience, lr = 3, 0.5
    plain = make_model(tmp_path, seed=4)
    best_kept = copy_model(plain, "best")
    rerun = copy_model(plain, "rerun")
    x, y, vx, vy = patience_data(tmp_path)
    path = full_batch_run(weights(plain), x, y, 60, HandOptimizer("sgd", lr=lr))
    val = [sample_losses(w, vx, vy).mean() for w in path]  # val loss after epoch e: val[e]
    best, best_epoch, stale = np.inf, 0, 0
    for epoch in range(1, 61):
        if val[epoch] < best:
            best, best_epoch, stale = val[epoch], epoch, 0
        else:
            stale += 1
        if stale >= patience:
            break
    stop = epoch
    assert 1 < best_epoch < stop < 60, (best_epoch, stop)  # the data make a real dip
    assert min(abs(val[e] - val[e - 1]) for e in range(2, stop + 1)) > 1e-6

    common = ["-x", "x.txt", "-y", "y.txt", "--val-data", "vx.txt", "--val-labels", "vy.txt", "--batch-size", "12",
              "--lr", str(lr), "--epochs", "60", "--patience", str(patience)]
    proc = run(["train", "m", *common], cwd=tmp_path)
    rows = stdout_rows(proc)
    assert [int(r[0]) for r in rows] == list(range(1, stop + 1))
    np.testing.assert_allclose(column(rows, "val_loss"), val[1:stop + 1], rtol=1e-5)
    assert_weights(weights(plain), path[stop])  # without --restore-best: the last weights
    assert "patience" in proc.stderr.decode() or "improve" in proc.stderr.decode()

    proc = run(["train", "best", *common, "--restore-best"], cwd=tmp_path)
    assert [int(r[0]) for r in stdout_rows(proc)] == list(range(1, stop + 1))
    assert_weights(weights(best_kept), path[best_epoch])
    run(["train", "rerun", *common[:-4], "--epochs", str(best_epoch)], cwd=tmp_path)
    assert_weights(weights(best_kept), weights(rerun))
    snapshot = best_kept / "checkpoints" / "best"
    if snapshot.is_dir():
        assert_weights(weights(snapshot), path[best_epoch])


def test_restore_best_at_the_end_of_the_epochs(tmp_path):
    folder = make_model(tmp_path, seed=4)
    x, y, vx, vy = patience_data(tmp_path)
    path = full_batch_run(weights(folder), x, y, 12, HandOptimizer("sgd", lr=0.5))
    val = [sample_losses(w, vx, vy).mean() for w in path]
    best_epoch = int(np.argmin(val[1:])) + 1
    assert best_epoch < 12
    run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--val-data", "vx.txt", "--val-labels", "vy.txt",
         "--batch-size", "12", "--lr", "0.5", "--epochs", "12", "--restore-best"], cwd=tmp_path)
    assert_weights(weights(folder), path[best_epoch])


def test_a_non_finite_loss_stops_with_the_model_at_its_last_finite_step(tmp_path):
    n, lr = 10, 50.0
    folder = make_model(tmp_path, "3 1 1\ninput\ndense 1 identity\nloss mse\n", seed=2)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(n, 3))
    t = x @ [[1.0], [-2.0], [0.5]] + 0.3
    savetxt(tmp_path / "x.txt", x)
    savetxt(tmp_path / "t.txt", t)
    # Gradient descent on the mean squared error with a far too large step: it blows up.
    w = weights(folder)
    path, losses = [], []
    with np.errstate(all="ignore"):
        while True:
            path.append({k: v.copy() for k, v in w.items()})
            r = x @ w["layer_01/W"] + w["layer_01/b"] - t
            losses.append(float(np.mean(r * r)))
            if not np.isfinite(losses[-1]):
                break
            w["layer_01/W"] = w["layer_01/W"] - lr * (2 * x.T @ r / n)
            w["layer_01/b"] = w["layer_01/b"] - lr * (2 * r.sum(axis=0) / n)
    k = len(losses) - 1  # W_k is the first with a non-finite loss; epoch k+1 meets it
    assert 5 < k < 500

    proc = run(["train", "m", "-x", "x.txt", "-y", "t.txt", "--batch-size", str(n), "--lr", str(lr),
                "--epochs", "1000"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 1)
    message = proc.stderr.decode()
    assert "finite" in message or "nan" in message.lower(), message
    assert str(k + 1) in message, message
    assert len(stdout_rows(proc)) <= k
    steps = state(folder)["steps"]
    assert steps in (k - 1, k), (steps, k)
    saved = weights(folder)
    assert all(np.all(np.isfinite(v)) for v in saved.values())
    scale = max(float(np.max(np.abs(v))) for v in path[steps].values())
    assert_weights(saved, path[steps], atol=1e-9 * scale)
    # loadable: predict gives the hand outputs of those weights
    out = run(["predict", "m", "x.txt"], cwd=tmp_path).stdout.decode()
    predicted = np.array([[float(v) for v in line.split()] for line in out.splitlines() if line.strip()])
    expected = x @ path[steps]["layer_01/W"] + path[steps]["layer_01/b"]
    if np.isfinite(losses[steps]):
        np.testing.assert_allclose(predicted, expected, rtol=1e-9)
    # the trace holds the epochs the model has
    assert len(trace_rows(folder)) == state(folder)["epochs"]


# ---------------------------------------------------------------- 5. checkpoints


def test_checkpoints_are_kept_listed_and_restored(tmp_path):
    n, lr = 12, 0.3
    folder = make_model(tmp_path, seed=8)
    x, y = classification_data(tmp_path, n, seed=5)
    path = full_batch_run(weights(folder), x, y, 6, HandOptimizer("momentum", lr=lr))
    losses = [sample_losses(w, x, y).mean() for w in path]
    common = ["-x", "x.txt", "-y", "y.txt", "--batch-size", str(n), "--optimizer", "momentum", "--lr", str(lr),
              "--checkpoint-every", "2", "--epochs", "3"]
    run(["train", "m", *common], cwd=tmp_path)
    run(["train", "m", *common], cwd=tmp_path)  # the count goes on across runs
    kept = sorted(p.name for p in (folder / "checkpoints").iterdir() if p.name.startswith("epoch-"))
    assert kept == ["epoch-0002", "epoch-0004", "epoch-0006"]
    for epoch in (2, 4, 6):
        assert_weights(weights(folder / "checkpoints" / f"epoch-{epoch:04d}"), path[epoch])

    proc = run(["kerash", "checkpoints", "m"], cwd=tmp_path)
    header, rows = rows_of(proc.stdout)
    assert header[:3] == ["name", "epoch", "loss"]
    listed = {r[0]: r for r in rows if r[0].startswith("epoch-")}
    assert sorted(listed) == kept
    traced = {int(r[0]): float(r[2]) for r in trace_rows(folder)}
    for name, row in listed.items():
        epoch = int(name[len("epoch-"):])
        assert int(row[1]) == epoch
        assert float(row[2]) == pytest.approx(traced[epoch], rel=1e-6)
        assert float(row[2]) == pytest.approx(losses[epoch - 1], rel=1e-5)
    # each checkpoint scored on data (issue 25): its own weights' loss, as the hand-written loop gives it
    header, rows = rows_of(run(["kerash", "checkpoints", "m", "--evaluate", "x.txt", "y.txt"], cwd=tmp_path).stdout)
    assert header[-2:] == ["eval_loss", "eval_accuracy"]
    for row in rows:
        if row[0].startswith("epoch-"):
            epoch = int(row[0][len("epoch-"):])
            assert float(row[-2]) == pytest.approx(sample_losses(path[epoch], x, y).mean(), rel=1e-5)
            assert 0 <= float(row[-1]) <= 1

    checkpoint = folder / "checkpoints" / "epoch-0004"
    expected_files = raw_files(checkpoint)
    run(["kerash", "restore", "m", "epoch-0004"], cwd=tmp_path)
    assert raw_files(folder) == expected_files
    assert state(folder)["epochs"] == 4
    # training on from the restored checkpoint continues its momentum exactly
    run(["train", "m", *common[:-1], "2"], cwd=tmp_path)
    assert_weights(weights(folder), path[6])

    where = versions(folder)
    proc = run(["kerash", "restore", "m", "epoch-0005"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "epoch-0005")
    assert versions(folder) == where


# ---------------------------------------------------------------- 6. trace


def test_trace_keeps_the_whole_history_with_the_learning_rate(tmp_path):
    n = 12
    folder = make_model(tmp_path, seed=9)
    w0 = weights(folder)
    x, y = classification_data(tmp_path, n, seed=6)
    common = ["-x", "x.txt", "-y", "y.txt", "--batch-size", str(n)]
    first = run(["train", "m", *common, "--lr", "0.5", "--epochs", "3"], cwd=tmp_path)
    second = run(["train", "m", *common, "--lr", "0.25", "--epochs", "2"], cwd=tmp_path)
    lines = (folder / "trace.tsv").read_text().splitlines()
    assert lines[0].split("\t") == TRACE_HEADER
    assert sum(line.startswith("epoch\t") for line in lines) == 1  # the header once
    rows = trace_rows(folder)
    assert [r[: len(HEADER)] for r in rows] == stdout_rows(first) + stdout_rows(second)
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5]
    assert column(rows, "lr", TRACE_HEADER) == [0.5] * 3 + [0.25] * 2
    opt = HandOptimizer("sgd", lr=0.5)
    path = full_batch_run(w0, x, y, 3, opt)
    opt.h["lr"] = 0.25
    path += full_batch_run(path[-1], x, y, 2, opt)[1:]
    losses = [sample_losses(w, x, y).mean() for w in path]
    np.testing.assert_allclose(column(rows, "loss", TRACE_HEADER), losses[:5], rtol=1e-5)
    assert_weights(weights(folder), path[5])


# ---------------------------------------------------------------- 7. MODEL/params


PARAMS = """# training defaults for this model (DyNet's para)
epochs 3
lr 0.5          # a comment after the value
optimizer momentum

batch-size 12
data ../x.txt
labels ../y.txt
"""


def test_params_file_gives_the_defaults_and_the_command_line_wins(tmp_path):
    folder = make_model(tmp_path, seed=10)
    other = copy_model(folder, "other")
    x, y = classification_data(tmp_path, 12, seed=7)
    w0 = weights(folder)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for model in (folder, other):
        (model / "params").write_text(PARAMS)

    # data paths are relative to the model directory, not to the working directory
    rows = stdout_rows(run(["train", str(folder)], cwd=elsewhere))
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert_weights(weights(folder), full_batch_run(w0, x, y, 3, HandOptimizer("momentum", lr=0.5))[-1])
    assert column(trace_rows(folder), "lr", TRACE_HEADER) == [0.5] * 3

    rows = stdout_rows(run(["train", "other", "--lr", "0.1", "--epochs", "2", "--momentum", "0.5"], cwd=tmp_path))
    assert [r[0] for r in rows] == ["1", "2"]
    assert_weights(weights(other), full_batch_run(w0, x, y, 2, HandOptimizer("momentum", lr=0.1, momentum=0.5))[-1])


@pytest.mark.parametrize("line, fragment", [("learning-rate 0.1", "learning-rate"), ("epochs many", "epochs")])
def test_a_bad_params_line_is_an_error_naming_the_line(tmp_path, line, fragment):
    folder = make_model(tmp_path, seed=10)
    classification_data(tmp_path, 12, seed=7)
    lines = PARAMS.splitlines()
    lines.insert(3, line)  # line 4
    (folder / "params").write_text("\n".join(lines) + "\n")
    files, where = raw_files(folder), versions(folder)
    proc = run(["train", "m"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "params:4", fragment)
    proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "1"], cwd=tmp_path, check=False)
    assert_one_line_error(proc, 2, "params:4")
    assert raw_files(folder) == files and versions(folder) == where
    assert not (folder / "trace.tsv").exists()
    assert proc.stdout == b""


# ---------------------------------------------------------------- 8. skipping learned samples


def skip_run(w0, x, y, epochs, lr, below, growth):
    """DyNet's skipping with full batches: (weights, samples learned per epoch, {sample: epochs learned})."""
    w = {k: v.copy() for k, v in w0.items()}
    estimate = np.full(len(x), np.inf)
    learned_counts, learned_at = [], {i: [] for i in range(len(x))}
    for epoch in range(1, epochs + 1):
        estimate[estimate < below] += growth  # a skipped sample's loss is assumed to grow
        active = np.flatnonzero(estimate >= below)
        estimate[active] = sample_losses(w, x[active], y[active])
        learn = active[estimate[active] >= below]
        learned_counts.append(len(learn))
        for i in learn:
            learned_at[i].append(epoch)
        if len(learn):
            g = mean_grads(w, x[learn], y[learn])
            for key in w:
                w[key] = w[key] - lr * g[key]
    return w, learned_counts, learned_at


def test_skip_below_learns_only_the_samples_above_the_bar(tmp_path):
    n, lr, below, growth, epochs = 20, 1.0, 0.2, 0.05, 15
    folder = make_model(tmp_path, seed=11)
    x, y = classification_data(tmp_path, n, seed=8)
    w0 = weights(folder)
    w_end, counts, learned_at = skip_run(w0, x, y, epochs, lr, below, growth)
    # preconditions of a meaningful test: samples get skipped, and some come back later
    assert counts[0] == n and min(counts) < n // 2
    returned = [i for i, at in learned_at.items() if any(b - a > 1 for a, b in zip(at, at[1:]))]
    assert returned

    proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--batch-size", str(n), "--lr", str(lr),
                "--epochs", str(epochs), "--skip-below", str(below), "--skip-growth", str(growth)], cwd=tmp_path)
    rows = stdout_rows(proc)
    assert [int(r[1]) for r in rows] == counts
    assert [int(r[1]) for r in trace_rows(folder)] == counts
    assert_weights(weights(folder), w_end)

    # a faster growth brings skipped samples back sooner: the option matters
    assert skip_run(w0, x, y, epochs, lr, below, 0.2)[1] != counts


def test_a_tiny_skip_bar_skips_nothing(tmp_path):
    skipping = make_model(tmp_path, seed=12)
    plain = copy_model(skipping, "plain")
    classification_data(tmp_path, 40, seed=9)
    common = ["-x", "x.txt", "-y", "y.txt", "--batch-size", "8", "--lr", "0.3", "--epochs", "4", "--seed", "3"]
    rows = stdout_rows(run(["train", "m", *common, "--skip-below", "1e-12", "--skip-growth", "1e-13"], cwd=tmp_path))
    assert [r[1] for r in rows] == ["40"] * 4
    plain_rows = stdout_rows(run(["train", "plain", *common], cwd=tmp_path))
    assert_weights(weights(skipping), weights(plain))
    np.testing.assert_allclose(column(rows, "loss"), column(plain_rows, "loss"), rtol=1e-6)


def test_layer_rates_and_momenta_are_exact_recorded_and_kept_on_resume(tmp_path):
    """Issue 25, item 4: --layer-lr NODE=RATE gives one layer its own rate (the first step checked against the
    gradient sums backprop gives), --layer-momentum its own momentum; both recorded in state.json and kept,
    so two runs of one epoch equal one run of two, bit for bit."""
    folder = make_model(tmp_path, seed=8)
    n = 12
    classification_data(tmp_path, n, seed=5)
    run(["backprop", "m", "-x", "x.txt", "-y", "y.txt", "-o", "g"], cwd=tmp_path)
    grads, before = weights(tmp_path / "g"), weights(folder)
    one, two, plain = (copy_model(folder, name) for name in ("one", "two", "plain"))
    common = ["-x", "x.txt", "-y", "y.txt", "--batch-size", str(n), "--lr", "0.1", "--layer-lr", "layer_01=0.02"]
    run(["train", "m", *common, "--epochs", "1", "--optimizer", "sgd"], cwd=tmp_path)
    after = weights(folder)
    for key in after:
        rate = 0.02 if key.startswith("layer_01/") else 0.1
        np.testing.assert_allclose(after[key], before[key] - rate * grads[key] / n, rtol=1e-5, atol=1e-7, err_msg=key)
    assert state(folder)["layer_lr"] == "layer_01=0.02"

    momentum = [*common, "--optimizer", "momentum", "--momentum", "0.9", "--layer-momentum", "layer_02=0.5"]
    run(["train", "one", *momentum, "--epochs", "2"], cwd=tmp_path)
    run(["train", "two", *momentum, "--epochs", "1"], cwd=tmp_path)
    run(["train", "two", "-x", "x.txt", "-y", "y.txt", "--epochs", "1"], cwd=tmp_path)  # recorded settings go on
    assert state(two)["layer_momentum"] == "layer_02=0.5"
    for key, value in weights(one).items():
        np.testing.assert_array_equal(weights(two)[key], value, err_msg=key)
    # and they matter: the same run without them differs in both layers
    run(["train", "plain", "-x", "x.txt", "-y", "y.txt", "--batch-size", str(n), "--lr", "0.1", "--optimizer",
         "momentum", "--momentum", "0.9", "--epochs", "2"], cwd=tmp_path)
    for key in ("layer_01/W", "layer_02/W"):
        assert not np.allclose(weights(plain)[key], weights(one)[key]), key
    for bad, words in ((["--layer-lr", "nowhere=0.1"], "not a layer"), (["--layer-lr", "layer_01"], "NODE=RATE"),
                       (["--layer-momentum", "layer_01=0.5", "--optimizer", "adam"], "momentum and nesterov")):
        proc = run(["train", "plain", "-x", "x.txt", "-y", "y.txt", "--epochs", "1", *bad], cwd=tmp_path, check=False)
        assert_one_line_error(proc, 2, words)
