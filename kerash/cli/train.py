"""The training tool."""

import os
import sys
from typing import Annotated, Optional, Tuple

import typer

from .options import Quiet, settings_options
from .runner import table_printer, tool


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


CORES = _cores()
# --help names this machine's default; a man page (written once for every machine) says how it is chosen.
WORKERS_HERE = f"{min(CORES, 8)} on this {CORES}-core machine"
WORKERS_ANYWHERE = "the cores this process may use, at most 8,"


@tool("train")
@settings_options("train", after="model_dir", workers=WORKERS_HERE)
def train(
    model_dir: Annotated[str, typer.Argument(metavar="MODEL", help="Model directory (made by model-init).", show_default=False)],
    quiet: Quiet = False,
    **options,
):
    """Train a model: one tab-separated line per epoch on standard output.

    Columns: epoch, samples (learned this epoch), loss, accuracy, val_loss,
    val_accuracy, seconds (empty where there is no such value).  The same
    lines, plus the learning rate and batch size in force and an event
    (start, restore), are appended to MODEL/trace.tsv.  MODEL/params, if present, gives defaults
    ('option value' lines); the command line wins.  Ctrl-C or SIGTERM saves a
    consistent state and exits 130 or 143; running train again continues
    exactly where it stopped.  Labels may be class names (one per line, or a
    spreadsheet column under its name): a fresh model maps them, sorted, to
    classes and keeps them in MODEL/classes.txt.

    \b
    Example:
      kerash dataset digits -o digits
      printf '64 1 1\\ninput\\ndense 32 relu\\ndense 10 softmax\\n' > mlp.model
      model-init mlp.model -o mlp --seed 1
      train mlp --data digits/data.npy --labels digits/labels.txt --epochs 3 --lr 0.1 --validation-split 0.2
    """
    # Only what the command line sets, to be laid over MODEL/params.
    given = {k: v for k, v in options.items() if v is not None}
    from ..files import fs, tensorio
    from ..errors import UsageError
    from ..files.labels import read_labels
    from ..training.fit import fit, uses_mpi
    from ..training.config import TrainConfig
    from ..training.params_file import read_params

    for a, b in (("epochs", "until_epoch"), ("val_data", "validation_split")):
        if a in given and b in given:
            raise UsageError(f"give either --{a.replace('_', '-')} or --{b.replace('_', '-')}, not both")
    settings = read_params(model_dir)
    overrides = {
        "epochs": ("until_epoch",),
        "until_epoch": ("epochs",),
        "val_data": ("validation_split",),
        "validation_split": ("val_data", "val_labels"),
    }
    for a, dropped in overrides.items():
        if a in given:
            for b in dropped:
                settings.pop(b, None)
    settings.update(given)
    data, labels = settings.pop("data", None), settings.pop("labels", None)
    vdata, vlabels = settings.pop("val_data", None), settings.pop("val_labels", None)
    lengths, val_lengths = settings.pop("lengths", None), settings.pop("val_lengths", None)
    table = {key: settings.pop(key, None) for key in ("label_column", "columns", "drop")}
    if table["label_column"] is not None and labels is not None:
        raise UsageError("give --labels or --label-column, not both")
    if data is None or (labels is None and table["label_column"] is None):
        raise UsageError("give --data and --labels, or --label-column (or data and labels lines in MODEL/params)")
    if (vdata is None) != (vlabels is None) and table["label_column"] is None:
        raise UsageError("--val-data and --val-labels go together")
    if sum(p == "-" for p in (data, labels, vdata, vlabels)) > 1:
        raise UsageError("only one input can be standard input")
    if sys.stdout is None:
        raise UsageError("standard output is closed (>&-): the epoch table has nowhere to go; use > /dev/null")
    cfg = TrainConfig(**settings)
    silent = uses_mpi(cfg) and _join_mpi_job()  # MPI ranks but 0 say nothing
    quiet = quiet or silent
    # Samples are read straight into the training precision: no second copy of a float64 or text file.
    from ..model import DTYPES, ModelDir, labels_are_names, read_sequence_data, reads_sequences

    dtype = DTYPES.get(cfg.dtype) if cfg.dtype else ModelDir(model_dir).dtype()
    names = labels_are_names(model_dir)  # names such as 1, 2, x: labels are read as names
    from ..model import categories

    if categories.uses_table(model_dir, *table.values()):
        # a spreadsheet's table: the labels and the features chosen from its columns, categories one-hot
        def read(path):
            return categories.read_data(model_dir, path, table["label_column"], table["columns"], table["drop"],
                                        dtype, None if quiet else lambda m: sys.stderr.write(f"train: warning: {m}\n"))

        x, y, _ = read(data)
        y = y if table["label_column"] is not None else read_labels(labels, names)
        val = None
        if vdata is not None:
            vx, vy, _ = read(vdata)
            val = (vx, vy if table["label_column"] is not None else read_labels(vlabels, names))
    elif reads_sequences(ModelDir(model_dir).spec, lengths):
        # sequences: blocks of rows between blank lines, --lengths, or a ragged .npz (files/sequences.py)
        spec = ModelDir(model_dir).spec
        x, y = read_sequence_data(spec, data, labels, names, lengths, dtype)
        val = read_sequence_data(spec, vdata, vlabels, names, val_lengths, dtype) if vdata is not None else None
    else:
        x, y = tensorio.read_tensor(data, dtype), read_labels(labels, names)
        val = (tensorio.read_tensor(vdata, dtype), read_labels(vlabels, names)) if vdata is not None else None

    bar = _ProgressBar() if sys.stderr.isatty() and not quiet else None
    from ..training.trace import COLUMNS, format_record

    report = table_printer(COLUMNS, format_record, bar.clear if bar else None)

    def warn(message):
        if not quiet:
            sys.stderr.write(f"train: warning: {message}\n")

    names = tuple(fs.source_name(p) if p else "" for p in (data, labels or data, vdata, vlabels or vdata))
    def note(message):
        if cfg.verbose:
            sys.stderr.write(f"train: {message}\n")

    result = fit(model_dir, x, y, cfg, val, report, bar.update if bar else None, warn, names, note)
    if bar:
        bar.clear()
    if result.status == "nothing":
        if not quiet:
            sys.stderr.write(f"train: {result.message}; nothing to do\n")
        return 0
    if result.status == "nan":
        from ..errors import TrainingError

        raise TrainingError(result.message)
    if result.status == "interrupted":
        if not silent:
            sys.stderr.write(f"train: {result.message}\n")
        return 128 + result.signal
    if result.message and not quiet:
        sys.stderr.write(f"train: {result.message}\n")
    return 0


def _join_mpi_job():
    """Under mpiexec: a failing rank ends the whole job (one message, never a hang); True on ranks but 0."""
    import time

    from ..processes import mpi_size
    from ..training.engines.mpi import rank_from_environment
    from .runner import on_error

    rank = rank_from_environment()
    if mpi_size() > 1:
        from ..training.engines.mpi import world

        world()  # MPI is started now, so that mpiexec ends every rank when one fails
        # Errors that every rank meets (bad data) are told once, by rank 0, whose exit
        # makes mpiexec stop the others; a rank failing alone tells its own a moment later.
        # (3 s: on a loaded machine mpiexec took more than 1 s to end the others, which then told it too)
        on_error(before=(lambda: time.sleep(3.0)) if rank else None, after=lambda code: os._exit(code))
    return rank != 0


class _ProgressBar:
    """A one-line bar on a terminal's standard error."""

    def __init__(self):
        self.shown = False

    def update(self, epoch, batch, total):
        width = 30
        done = width * batch // max(total, 1)
        sys.stderr.write(f"\repoch {epoch} [{'=' * done}{'.' * (width - done)}] {batch}/{total}")
        sys.stderr.flush()
        self.shown = True

    def clear(self):
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.shown = False


@tool("checkpoints")
def checkpoints(
    model_dir: Annotated[str, typer.Argument(metavar="MODEL", help="Model directory.", show_default=False)],
    evaluate: Annotated[Optional[Tuple[str, str]], typer.Option("--evaluate", metavar="X Y", help="Also score every checkpoint on samples X and labels Y, as evaluate does.", show_default=False)] = None,
):
    """List the checkpoints of a model (train --checkpoint-every N) with their epoch and losses.

    Tab-separated: name, epoch, loss, accuracy, val_loss, val_accuracy as
    training recorded them; with --evaluate X Y, each checkpoint's loss and
    accuracy on X and Y (R² for targets that are values) as two more
    columns.  A checkpoint folder, MODEL/checkpoints/NAME, is a model every
    reading tool takes: predict, evaluate, kerash plot.

    \b
    Example:
      kerash dataset circle -o circle
      printf '2 1 1\\ninput\\ndense 8 tanh\\ndense 2 softmax\\n' > c.model
      model-init c.model -o c --seed 1
      train c -x circle/data.npy -y circle/labels.txt --epochs 4 --checkpoint-every 2 > /dev/null
      kerash checkpoints c
    """
    import os

    from ..training.checkpoints import list_checkpoints

    rows = list_checkpoints(model_dir)
    header = ["name", "epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    scores = {}
    if evaluate is not None:
        from .. import model
        from ..files.labels import read_labels
        from ..files.tensorio import read_tensor, source_name

        x_path, y_path = evaluate
        if x_path == "-" and y_path == "-":
            from ..errors import UsageError

            raise UsageError("only one input can be standard input")
        x, y = read_tensor(x_path), read_labels(y_path, names=model.labels_are_names(model_dir))
        names = (source_name(x_path), source_name(y_path))
        values = False  # targets that are values: R² in place of the accuracy
        for row in rows:
            result = model.evaluate(os.path.join(model_dir, "checkpoints", row[0]), x, y, names=names)
            values = result["regression"] is not None
            second = result["regression"]["r2"] if values else result["accuracy"]
            scores[row[0]] = (f"{result['loss']:.6g}", f"{second:.4f}")
        header += ["eval_loss", "eval_r2" if values else "eval_accuracy"]
    lines = ["\t".join(header)]
    for row in rows:
        lines.append("\t".join([str(v) for v in row] + list(scores.get(row[0], ()))))
    typer.echo("\n".join(lines))


@tool("restore")
def restore(
    model_dir: Annotated[str, typer.Argument(metavar="MODEL", help="Model directory.", show_default=False)],
    name: Annotated[str, typer.Argument(metavar="CHECKPOINT", help="A name listed by `kerash checkpoints`, e.g. epoch-0005.", show_default=False)],
):
    """Make a checkpoint the model's current state (weights, optimiser state, epochs).

    \b
    Example:
      kerash dataset circle -o circle
      printf '2 1 1\\ninput\\ndense 8 tanh\\ndense 2 softmax\\n' > c.model
      model-init c.model -o c --seed 1
      train c -x circle/data.npy -y circle/labels.txt --epochs 4 --checkpoint-every 2 > /dev/null
      kerash restore c epoch-0002
    """
    from ..training.checkpoints import restore_checkpoint

    restore_checkpoint(model_dir, name)


@tool("batches")
def batches_tool(
    samples: Annotated[Optional[int], typer.Option("--samples", "-n", help="Number of samples in the data.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", "-x", metavar="X", help="Count the samples of this data file instead.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Samples per batch.")] = 32,
    seed: Annotated[int, typer.Option("--seed", help="The training seed.")] = 0,
    epoch: Annotated[int, typer.Option("--epoch", "-e", help="Epoch number (1 is the first).")] = 1,
    validation_split: Annotated[float, typer.Option("--validation-split", help="Leave out the validation part, as train does.")] = 0.0,
    shards: Annotated[int, typer.Option("--shards", help="Split each batch into this many contiguous shards, separated by tabs.")] = 1,
):
    """Print the sample indices of each batch of an epoch, one batch per line, in train's order.

    train uses the same function: with the same --seed, --batch-size and
    --validation-split, line k lists the samples of train's k-th step.  With
    --shards K each line holds K tab-separated shards, as train --workers K
    splits its batches.

    \b
    Example:
      kerash batches --samples 10 --batch-size 4 --seed 1 --epoch 1
      kerash batches --samples 10 --batch-size 4 --seed 1 --shards 2
    """
    from ..errors import UsageError
    from ..training import batches

    if (samples is None) == (data is None):
        raise UsageError("give either --samples or --data")
    if data is not None:
        from ..files.tensorio import read_tensor

        samples = read_tensor(data).shape[0]
    if samples < 1 or shards < 1 or epoch < 1:
        raise UsageError("--samples, --shards and --epoch must be ≥ 1")
    train_idx, _ = batches.split(samples, validation_split, seed)
    out = []
    for idx in batches.epoch_batches(train_idx, batch_size, seed, epoch):
        parts = [idx[s:e] for s, e in batches.shard_bounds(0, len(idx), shards)]
        out.append("\t".join(" ".join(map(str, p.tolist())) for p in parts))
    sys.stdout.write("\n".join(out) + "\n")
