"""Neuro-evolution of topologies (KeraSH's "AutoML"), done for real.

A genome is a model description plus its trained weights.  Each generation
keeps the best genomes as parents (the very best always survives unchanged),
and fills the population with mutants of them:

* add a hidden dense layer (random width, random activation from the registry),
* remove a hidden dense layer,
* resize a hidden layer (or change a convolution's filter count),
* change a hidden layer's activation.

A mutant inherits its parent's trained weights wherever they still fit, then
trains for E more epochs; its fitness is the loss (then the accuracy) on a
fixed validation split.  Genomes are trained in parallel by forked workers,
one genome per worker; every random choice comes from (seed, generation,
index), so the result does not depend on the number of workers.
"""

import json
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field

import numpy as np

from .. import functions, layers
from ..files import fs
from .. import model as modelmod
from ..errors import DataError, KerashError, UsageError
from ..files.labels import WordLabels
from ..model import normalization
from ..model.data import prepare
from ..network import Objective, targets_are_classes
from ..training import batches
from ..training.engines.local import LocalEngine
from ..processes import (die_with_parent, end_child, fork_child, limit_blas_threads, prewarm_blas, tune_allocator,
                        wait_any)
from ..training.optimizers import Optimizer
from ..files.workdir import remove_stale, scratch_dir
from . import graphs, union

# Activations a mutation may pick: all of the registry except the step
# function (its derivative is 0: nothing would learn) and softmax (row-wise,
# meant for outputs).
EXCLUDED_ACTIVATIONS = ("binarystep", "softmax", "sqrt", "reciprocal", "abs", "log", "exp", "square")
WIDTHS = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128)
COLUMNS = ("generation", "genome", "parent", "mutation", "layers", "parameters", "val_loss", "val_accuracy", "seconds")


@dataclass
class EvolveConfig:
    population: int = 6
    generations: int = 5
    epochs_per_eval: int = 5
    workers: int = 1
    seed: int = 0
    validation_split: float = 0.2
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 0.005
    normalize: bool = False  # fit the inputs' statistics on the training part; the best model keeps them
    fitness: str = "validation"  # the loss measured on: validation (a split, or --val-data) or train
    max_evaluations: int = None  # budgets: genomes evaluated, wall-clock seconds (besides the generations)
    max_seconds: float = None
    union: int = 0  # unite the best K graphs into a supergraph, train it, derive and fine-tune (union.py)
    union_skipped: str = None  # why no supergraph was made (fewer than 2 distinct graphs)


@dataclass
class Genome:
    id: str
    parent: str
    mutation: str
    text: str  # normalised description
    params: dict = field(repr=False, default=None)
    epochs: int = 0
    val_loss: float = math.inf
    val_accuracy: float = math.nan
    seconds: float = 0.0

    @property
    def spec(self):
        return modelmod.parse_model(self.text, f"genome {self.id}")

    def fitness(self):
        acc = -self.val_accuracy if not math.isnan(self.val_accuracy) else 0.0
        loss = self.val_loss if math.isfinite(self.val_loss) else math.inf
        return (loss, acc)


# ---------------------------------------------------------------- starting points


def infer_task(x, y):
    """(input line 'W H D', output width, output activation, targets as given) from the data."""
    x = np.asarray(x)
    if x.ndim == 4:
        _, c, h, w = x.shape
        input_line = f"{w} {h} {c}"
    else:
        input_line = f"{x.reshape(x.shape[0], -1).shape[1]} 1 1"
    y = np.asarray(y, dtype=np.float64)
    y = y.reshape(len(y), -1)
    if y.shape[1] == 1:
        values = y[:, 0]
        if np.all(values == np.floor(values)) and values.min() >= 0 and len(np.unique(values)) > 1:
            return input_line, int(values.max()) + 1, "softmax"
        return input_line, 1, "identity"
    if np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1):
        return input_line, y.shape[1], "softmax"
    return input_line, y.shape[1], "identity"


def scratch_text(x, y):
    """KeraSH's evolve_from_scratch: input straight to the output layer."""
    input_line, width, activation = infer_task(x, y)
    return modelmod.normalised_text(modelmod.parse_model(f"{input_line}\ninput\ndense {width} {activation}\n", "scratch"))


# ---------------------------------------------------------------- mutations


def _hidden_dense(spec):
    """Positions (0-based in spec.layers) of dense layers that are not the output."""
    return [i for i, s in enumerate(spec.layers[:-1]) if s.kind == "dense"]


def _dense_slot(spec):
    """Where dense layers may be inserted: after the last non-dense layer, before the output."""
    start = 0
    for i, s in enumerate(spec.layers):
        if s.kind != "dense":
            start = i + 1
    return list(range(start, len(spec.layers)))


def _random_activation(rng, exclude=None):
    names = [n for n in functions.ACTIVATIONS if n not in EXCLUDED_ACTIVATIONS and n != exclude]
    return functions.get_activation(names[rng.integers(len(names))]).bind()


def _resized(rng, old):
    factor = (0.5, 0.75, 1.5, 2.0)[rng.integers(4)]
    new = max(2, int(round(old * factor)))
    return new if new != old else old + 1


def mutate(parent_text, rng):
    """(child text, description, mapping child layer position -> parent layer position or None)."""
    spec = modelmod.parse_model(parent_text, "parent")
    chain = [node.layer for node in spec.layers]
    mapping = list(range(len(chain)))
    hidden = _hidden_dense(spec)
    convs = [i for i, s in enumerate(chain) if s.kind == "convolution"]
    choices = ["add"]
    if hidden:
        choices += ["remove", "resize", "activation"]
    if convs:
        choices += ["filters"]
    kind = choices[rng.integers(len(choices))]
    if kind == "add":
        slots = _dense_slot(spec)
        at = slots[rng.integers(len(slots))]
        width = int(WIDTHS[rng.integers(len(WIDTHS))])
        act = _random_activation(rng)
        chain.insert(at, layers.Dense(width, act))
        mapping.insert(at, None)
        what = f"add dense {width} {act.name} before layer {at + 1}"
    elif kind == "remove":
        at = hidden[rng.integers(len(hidden))]
        what = f"remove layer {at + 1} ({chain[at].text()})"
        del chain[at]
        del mapping[at]
    elif kind == "resize":
        at = hidden[rng.integers(len(hidden))]
        old = chain[at]
        new = _resized(rng, old.units)
        chain[at] = layers.Dense(new, old.activation)
        what = f"resize layer {at + 1} {old.units}→{new}"
    elif kind == "activation":
        at = hidden[rng.integers(len(hidden))]
        old = chain[at]
        act = _random_activation(rng, exclude=old.activation.name)
        chain[at] = layers.Dense(old.units, act)
        what = f"activation layer {at + 1} {old.activation.name}→{act.name}"
    else:
        at = convs[rng.integers(len(convs))]
        old = chain[at]
        new = _resized(rng, old.filters)
        chain[at] = layers.Convolution(new, old.kh, old.kw, old.stride, old.pad, old.activation)
        what = f"filters layer {at + 1} {old.filters}→{new}"
    child = modelmod.chain_spec(spec, chain)
    # Parsing the text back validates the child (a window that no longer fits, …).
    text = modelmod.normalised_text(child)
    modelmod.parse_model(text, "child")
    return text, what, mapping


def inherit(child_spec, parent_spec, parent_params, mapping, rng):
    """Fresh weights for the child, overwritten by the parent's wherever the shapes overlap."""
    params = modelmod.init_params(child_spec, int(rng.integers(2**63)), np.float32)
    for new_pos, old_pos in enumerate(mapping):
        if old_pos is None:
            continue
        new_key, old_key = child_spec.layers[new_pos].key, parent_spec.layers[old_pos].key
        if new_key not in params or old_key not in parent_params:
            continue
        for name, target in params[new_key].items():
            source = parent_params[old_key][name]
            if source.ndim != target.ndim:
                continue
            overlap = tuple(slice(0, min(a, b)) for a, b in zip(source.shape, target.shape))
            target[overlap] = source[overlap]
    return params


# ---------------------------------------------------------------- evaluation


def train_genome(genome, x, y, train_idx, val_idx, cfg, seed, keep_best=False):
    """Train a genome for cfg.epochs_per_eval epochs from its weights; set its fitness.

    `keep_best`: score after every epoch (and before the first) and keep the
    weights of the best score — a derived graph's fine-tuning (union.py),
    which otherwise over-fits what the supergraph taught it.
    """
    start = time.monotonic()
    spec = genome.spec
    net = modelmod.build_network(spec, np.float32)
    net.set_params(genome.params)
    objective = Objective(spec.loss, net)
    objective.adapt_to_targets(y)
    engine = LocalEngine(net, objective, x, y, Optimizer(cfg.optimizer, lr=cfg.lr), None)
    scored = train_idx if cfg.fitness == "train" else val_idx
    classes = targets_are_classes(y)

    def score():
        loss_sum, correct, _ = net.evaluate(objective, x[scored], y[scored])
        loss = loss_sum / len(scored)
        steps = objective.scored_steps(x[scored], y[scored])
        return (loss if math.isfinite(loss) else math.inf), (correct / (len(scored) * steps) if classes else math.nan)

    best = (score(), {k: {n: a.copy() for n, a in d.items()} for k, d in net.get_params().items()}) if keep_best \
        else None
    diverged = False
    for epoch in range(1, cfg.epochs_per_eval + 1):
        for idx in batches.epoch_batches(train_idx, cfg.batch_size, seed, epoch):
            if not engine.step(idx, 1.0 / len(idx)).finite:
                diverged = True
                break
        if diverged:
            break
        if keep_best:
            now = score()
            if now[0] < best[0][0]:
                best = (now, {k: {n: a.copy() for n, a in d.items()} for k, d in net.get_params().items()})
    genome.epochs += cfg.epochs_per_eval
    if keep_best:
        (genome.val_loss, genome.val_accuracy), genome.params = best
    elif diverged:
        genome.val_loss, genome.val_accuracy = math.inf, math.nan
        genome.params = net.get_params()
    else:
        genome.val_loss, genome.val_accuracy = score()
        genome.params = net.get_params()
    genome.seconds = time.monotonic() - start
    return genome


def _save_result(folder, genome):
    os.mkdir(folder)  # not makedirs: a run folder removed meanwhile (the search ended) is not made again
    modelmod.write_tree(folder, modelmod.flatten_params(genome.params))
    with open(os.path.join(folder, "result.json"), "w") as f:
        json.dump({"val_loss": genome.val_loss if math.isfinite(genome.val_loss) else None,
                   "val_accuracy": None if math.isnan(genome.val_accuracy) else genome.val_accuracy,
                   "seconds": genome.seconds, "epochs": genome.epochs}, f)


def _load_result(folder, genome):
    with open(os.path.join(folder, "result.json")) as f:
        r = json.load(f)
    genome.val_loss = math.inf if r["val_loss"] is None else r["val_loss"]
    genome.val_accuracy = math.nan if r["val_accuracy"] is None else r["val_accuracy"]
    genome.seconds, genome.epochs = r["seconds"], r["epochs"]
    spec = genome.spec
    from ..files.tensorio import read_tensor

    genome.params = {
        key: {name: read_tensor(os.path.join(folder, key, name + ".npy")) for name in shapes}
        for key, shapes in modelmod.param_shapes(spec).items()
    }


RUN_PREFIX = "kerash-evolve"
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(Exception):
    """A signal (SIGINT, SIGTERM, SIGHUP) stopped the search; `signal` is its number."""

    def __init__(self, signum):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signal = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def evaluate_all(jobs, x, y, train_idx, val_idx, cfg):
    """Train every (genome, seed) of jobs, in order, with up to cfg.workers forked workers."""
    if cfg.workers <= 1 or len(jobs) <= 1:
        return [train_genome(g, x, y, train_idx, val_idx, cfg, s) for g, s in jobs]
    remove_stale(RUN_PREFIX)
    run_dir = scratch_dir(RUN_PREFIX)
    running = {}
    try:
        pending = list(enumerate(jobs))
        while pending or running:
            while pending and len(running) < cfg.workers:
                i, (genome, seed) = pending.pop(0)
                folder = os.path.join(run_dir, f"job-{i}")

                def job(genome=genome, seed=seed, folder=folder, parent=os.getpid()):
                    die_with_parent(parent)  # a killed search takes its workers with it
                    for sig in STOPPING:  # the search stops; its workers end when it ends them
                        signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.SIG_IGN)
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)  # held while it was forked
                    limit_blas_threads(1)
                    train_genome(genome, x, y, train_idx, val_idx, cfg, seed)
                    _save_result(folder, genome)

                # A signal between the fork and this record would leave a child nobody ends: held until then.
                blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING)
                try:
                    running[fork_child(job)] = (i, genome, folder)
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            pid, status = wait_any(running)
            i, genome, folder = running.pop(pid)
            if os.waitstatus_to_exitcode(status) != 0:
                raise DataError(f"the worker training genome {genome.id} failed (status {os.waitstatus_to_exitcode(status)})")
            _load_result(folder, genome)
    finally:
        for pid in running:
            end_child(pid)
        shutil.rmtree(run_dir, ignore_errors=True)
    return [g for g, _ in jobs]


# ---------------------------------------------------------------- the search


def summary_row(generation, g):
    spec = g.spec
    if spec.format == "mdl":
        described = graphs.one_line(g.text)
    else:
        described = ", ".join(node.layer.text() for node in spec.layers)
    return {
        "generation": generation,
        "genome": g.id,
        "parent": g.parent or "-",
        "mutation": g.mutation,
        "layers": described,
        "parameters": modelmod.count_params(spec),
        "val_loss": g.val_loss,
        "val_accuracy": g.val_accuracy,
        "seconds": g.seconds,
    }


def format_row(row):
    out = []
    for col in COLUMNS:
        v = row[col]
        if col in ("val_loss", "val_accuracy"):
            out.append("nan" if isinstance(v, float) and math.isnan(v) else ("inf" if v == math.inf else f"{v:.6g}" if col == "val_loss" else f"{v:.4f}"))
        elif col == "seconds":
            out.append(f"{v:.2f}")
        else:
            out.append(str(v))
    return "\t".join(out)


def evolve(x, y, cfg, start_text=None, report=None, names=("data", "labels"), val=None):
    """Run the search; returns (best genome, all rows).  `names` name x and y in messages; `val`: (samples,
    labels) to measure fitness on instead of a split of x."""
    if cfg.population < 1 or cfg.generations < 0 or cfg.epochs_per_eval < 1:
        raise UsageError("--population and --epochs-per-eval must be ≥ 1, --generations ≥ 0")
    if cfg.fitness not in ("train", "validation"):
        raise UsageError(f"--fitness must be train or validation, not {cfg.fitness!r}")
    if cfg.union == 1 or cfg.union < 0:
        raise UsageError(f"--union unites K ≥ 2 graphs (0: none), not {cfg.union}")
    for name, value in (("--max-evaluations", cfg.max_evaluations), ("--max-seconds", cfg.max_seconds)):
        if value is not None and not value > 0:
            raise UsageError(f"{name} must be > 0, not {value}")
    report = report or (lambda row: None)
    limit_blas_threads(1)
    tune_allocator()
    x = np.asarray(x)
    classes = None
    if isinstance(y, WordLabels):
        # Named classes, sorted, become class indices; the best model keeps the names (classes.txt).
        samples = len(x) if x.ndim >= 2 else 1
        codes, _ = y.codes_for(samples)
        classes = sorted({y.names[c] for c in np.unique(codes)})
        y = modelmod.class_targets(y, classes, samples, "the data")
    modelmod.check_finite(np.asarray(y, dtype=np.float64), names[1])
    text = start_text or scratch_text(x, y)
    spec = modelmod.parse_model(text, "start")
    if cfg.union and spec.format != "mdl":
        raise UsageError("--union unites graphs: start from an MDL description (--from FILE.mdl)")
    if classes is not None:
        modelmod.check_class_count(spec, classes, names[1])
    xs, ys = prepare(spec, x, y, dtype=np.float32, names=names)
    if val is not None:  # separate validation data: after the training samples, scored alone
        vx, vy = val
        if isinstance(vy, WordLabels):
            vy = modelmod.class_targets(vy, classes, len(vx), "the validation data")
        vxs, vys = prepare(spec, vx, vy, dtype=np.float32, names=("validation data", "validation labels"))
        if vxs.shape[1:] != xs.shape[1:]:
            raise UsageError(f"the validation data's samples are {vxs.shape[1:]}, the data's {xs.shape[1:]}")
        train_idx, val_idx = np.arange(len(xs)), np.arange(len(xs), len(xs) + len(vxs))
        xs, ys = np.concatenate([xs, vxs]), np.concatenate([ys, vys])
    else:
        train_idx, val_idx = batches.split(xs.shape[0], cfg.validation_split, cfg.seed)
    if len(val_idx) == 0 and cfg.fitness == "validation":
        raise UsageError("evolve needs a validation split > 0 or --val-data (or --fitness train)")
    stats = normalization.fit(xs, spec, train_idx) if cfg.normalize else None
    if stats is not None:
        if np.may_share_memory(xs, x):
            xs = xs.copy()  # the caller's array stays raw
        normalization.apply(xs, stats, spec)
    prewarm_blas(np.float32)
    rows = []
    # A signal ends the search where it is (ending the workers, removing their folder): the best genome
    # evaluated so far is still the result.
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in STOPPING if signal.getsignal(sig) != signal.SIG_IGN}
    population, stopped = [], 0
    try:
        population, stopped = _search(spec, xs, ys, train_idx, val_idx, cfg, rows, report, population)
        if cfg.union > 1 and spec.format == "mdl":
            population = population + _unite(population, xs, ys, train_idx, val_idx, cfg, rows, report)
    except Stopped as e:
        stopped = e.signal
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not population:
        raise Stopped(stopped)
    best = sorted(population, key=lambda g: (g.fitness(), g.id))[0]
    return best, rows, {"classes": classes, "normalization": stats, "stopped": stopped}


def _search(spec, xs, ys, train_idx, val_idx, cfg, rows, report, population):
    """The generations; `population` (a list) holds the last evaluated one, also when a signal stops them.

    A population of P keeps the best and makes max(1, P − 1) children a
    generation (P = 1 is a hill-climber); a child whose description was
    evaluated before is drawn again.  The search ends after the generations,
    or when a budget (evaluations, seconds) would be passed.
    """
    start = time.monotonic()
    graph = spec.format == "mdl"

    def rng_for(generation, index):
        return np.random.default_rng([cfg.seed, generation, index])

    initial = Genome("g0-0", "", "initial", modelmod.normalised_text(spec))
    initial.params = modelmod.init_params(spec, int(rng_for(0, 0).integers(2**63)), np.float32)
    population[:] = evaluate_all([(initial, int(rng_for(0, 0).integers(2**63)))], xs, ys, train_idx, val_idx, cfg)
    seen = {initial.text}
    evaluations = 1
    for g in population:
        rows.append(summary_row(0, g))
        report(rows[-1])
    for generation in range(1, cfg.generations + 1):
        if cfg.max_seconds is not None and time.monotonic() - start >= cfg.max_seconds:
            break
        ranked = sorted(population, key=lambda g: (g.fitness(), g.id))
        parents = ranked[: max(1, (cfg.population + 1) // 2)]
        elite = ranked[0]
        count = max(1, cfg.population - 1)
        if cfg.max_evaluations is not None:
            count = min(count, cfg.max_evaluations - evaluations)
        if count <= 0:
            break
        jobs = []
        for index in range(1, count + 1):
            rng = rng_for(generation, index)
            parent = parents[int(rng.integers(len(parents)))]
            try:
                child = _child(parent, generation, index, rng, seen, graph)
            except KerashError:
                continue  # no new valid child of this parent: one fewer this generation
            seen.add(child.text)
            jobs.append((child, int(rng.integers(2**63))))
        children = evaluate_all(jobs, xs, ys, train_idx, val_idx, cfg)
        evaluations += len(children)
        for g in children:
            rows.append(summary_row(generation, g))
            report(rows[-1])
        population[:] = sorted([elite] + children, key=lambda g: (g.fitness(), g.id))[:max(cfg.population, 1)]
    return population, 0


def _unite(population, xs, ys, train_idx, val_idx, cfg, rows, report):
    """The supergraph of the best cfg.union graphs, trained, and the graph derived from it, fine-tuned."""
    ranked, texts = [], set()
    for g in sorted(population, key=lambda g: (g.fitness(), g.id)):
        if g.text not in texts and math.isfinite(g.val_loss):
            ranked.append(g)
            texts.add(g.text)
    parents = ranked[:cfg.union]
    if len(parents) < 2:  # said (evolve warns), rather than silently nothing
        cfg.union_skipped = f"--union {cfg.union}: the last population holds {len(parents)} distinct graph; no supergraph"
        return []
    generation = (int(rows[-1]["generation"]) if rows else 0) + 1
    rng = np.random.default_rng([cfg.seed, generation, 0])
    texts = [g.text for g in parents]
    specs = [g.spec for g in parents]
    text, ends = union.union(texts)
    ids = ", ".join(g.id for g in parents)
    supergraph = Genome(f"g{generation}-union", parents[0].id, f"union of {ids}", text,
                        epochs=max(g.epochs for g in parents))
    supergraph.params = union.inherit(supergraph.spec, specs, [g.params for g in parents], ends, rng)
    train_genome(supergraph, xs, ys, train_idx, val_idx, cfg, int(rng.integers(2**63)))
    rows.append(summary_row(generation, supergraph))
    report(rows[-1])
    k, weights, derived_text, params = union.derive(supergraph.spec, supergraph.params, texts,
                                                    [g.params for g in parents], ends)
    shares = " ".join(f"{g.id} {w:.2f}" for g, w in zip(parents, weights))
    derived = Genome(f"g{generation}-derived", supergraph.id, f"derived: the body of {parents[k].id} (mixing {shares})",
                     derived_text, params, epochs=supergraph.epochs)
    train_genome(derived, xs, ys, train_idx, val_idx, cfg, int(rng.integers(2**63)), keep_best=True)
    rows.append(summary_row(generation, derived))
    report(rows[-1])
    return [supergraph, derived]


def _child(parent, generation, index, rng, seen, graph):
    """A mutant of `parent` whose description is new, with the weights it inherits."""
    if graph:
        text, what, fresh = graphs.mutate(parent.text, rng, seen)
        child = Genome(f"g{generation}-{index}", parent.id, what, text, epochs=parent.epochs)
        child.params = graphs.inherit(child.spec, parent.spec, parent.params, fresh, rng)
        return child
    for _ in range(graphs.TRIES):
        text, what, mapping = mutate(parent.text, rng)
        if text not in seen:
            child = Genome(f"g{generation}-{index}", parent.id, what, text, epochs=parent.epochs)
            child.params = inherit(child.spec, parent.spec, parent.params, mapping, rng)
            return child
    raise KerashError("no new child")


def write_best(best, out_dir, rows, seed, force=False, inputs=None):
    """The best genome as a normal, trained model directory, with the evolution log.

    `inputs` (from evolve) gives the class names and input statistics the model keeps.
    """
    spec = best.spec
    state = modelmod.new_state(seed, np.float32)
    state["epochs"] = best.epochs
    state["evolved"] = {"genome": best.id, "val_loss": best.val_loss, "val_accuracy": None if math.isnan(best.val_accuracy) else best.val_accuracy}
    inputs = inputs or {}
    files = {modelmod.CLASSES_FILE: modelmod.classes_text(inputs["classes"])} if inputs.get("classes") else None
    md = modelmod.ModelDir.create(out_dir, spec, best.params, state, origin=f"evolve (genome {best.id})", force=force,
                                  extra=normalization.arrays(inputs.get("normalization")), files=files)
    with fs.atomic_file(os.path.join(md.path, "evolve.tsv")) as f:
        f.write(("\t".join(COLUMNS) + "\n" + "".join(format_row(r) + "\n" for r in rows)).encode())
    # the best description on its own, to model-init or draw (kerash graph BEST_DIR)
    with fs.atomic_file(os.path.join(md.path, "best.mdl" if spec.format == "mdl" else "best.model")) as f:
        f.write(best.text.encode())
    return md
