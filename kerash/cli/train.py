"""The training tool."""

import os
import sys
from typing import Annotated, Optional

import typer

from .options import Dtype, Quiet
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


def _opt(*names, help, metavar=None):
    return typer.Option(*names, help=help, metavar=metavar, show_default=False)


@tool("train")
def train(
    model_dir: Annotated[str, typer.Argument(metavar="MODEL", help="Model directory (made by model-init).", show_default=False)],
    data: Annotated[Optional[str], _opt("--data", "-x", metavar="X", help="Training samples, one per row (or (N,C,H,W)).")] = None,
    labels: Annotated[Optional[str], _opt("--labels", "-y", metavar="Y", help="One-hot rows, a column of class indices, or real targets.")] = None,
    epochs: Annotated[Optional[int], _opt("--epochs", "-e", help="Epochs to run now [default: 10].")] = None,
    until_epoch: Annotated[Optional[int], _opt("--until-epoch", help="Train until the model has N epochs in total; do nothing if it has them.")] = None,
    batch_size: Annotated[Optional[int], _opt("--batch-size", "-b", help="Samples per step [default: the model's last, else 32].")] = None,
    batch_growth: Annotated[Optional[str], _opt("--batch-growth", metavar="START:STEP:MAX", help="DyNet's growing batches: START samples per step, STEP more each epoch, at most MAX.")] = None,
    lr: Annotated[Optional[float], _opt("--lr", help="Learning rate [default: 0.01 for sgd/momentum/nesterov, 0.001 for adam/rmsprop].")] = None,
    lr_schedule: Annotated[Optional[str], _opt("--lr-schedule", metavar="SCHEDULE", help="constant, step:EVERY:FACTOR, exponential:GAMMA, cosine:EPOCHS[:MIN_LR] or plateau:PATIENCE:FACTOR (PyTorch's StepLR, ExponentialLR, CosineAnnealingLR, ReduceLROnPlateau) [default: the model's last, else constant].")] = None,
    warmup: Annotated[Optional[int], _opt("--warmup", metavar="N", help="Rise linearly to the rate over the first N epochs, then follow the schedule.")] = None,
    optimizer: Annotated[Optional[str], _opt("--optimizer", help="sgd, momentum, nesterov, adam or rmsprop [default: the model's last, else sgd].")] = None,
    momentum: Annotated[Optional[float], _opt("--momentum", help="Momentum μ [default: 0.9].")] = None,
    beta1: Annotated[Optional[float], _opt("--beta1", help="Adam's β1 [default: 0.9].")] = None,
    beta2: Annotated[Optional[float], _opt("--beta2", help="Adam's β2 [default: 0.999].")] = None,
    eps: Annotated[Optional[float], _opt("--eps", help="ε of adam and rmsprop [default: 1e-8].")] = None,
    rho: Annotated[Optional[float], _opt("--rho", help="RMSprop's ρ [default: 0.9].")] = None,
    weight_decay: Annotated[Optional[float], _opt("--weight-decay", help="L2 decay of the weights (not biases) [default: the model's last, else 0].")] = None,
    clip_norm: Annotated[Optional[float], _opt("--clip-norm", metavar="C", help="Scale the step's gradient down to a global norm of at most C (torch.nn.utils.clip_grad_norm_).")] = None,
    freeze: Annotated[Optional[str], _opt("--freeze", metavar="LAYERS", help="Train all but these: layer_01,layer_03-layer_04 (or node names, or 1-2); their weights stay bit-identical.")] = None,
    workers: Annotated[Optional[int], _opt("--workers", "-w", help=f"Processes sharing each batch [default: {WORKERS_HERE} when a batch is worth splitting (≥ 4 million multiply-adds or their equivalent), else 1].")] = None,
    threads: Annotated[Optional[int], _opt("--threads", help="BLAS threads of each training process [default: 1: the cores go to workers].")] = None,
    engine: Annotated[Optional[str], _opt("--engine", help="local (one process), fork (--workers processes on this machine) or mpi (ranks of mpiexec) [default: mpi under mpiexec, else fork or local].")] = None,
    stall: Annotated[Optional[float], _opt("--stall", help="Report a worker that makes no progress for this many seconds [default: 60].")] = None,
    validation_split: Annotated[Optional[float], _opt("--validation-split", help="Hold out this fraction of the data for validation (fixed by the seed).")] = None,
    val_data: Annotated[Optional[str], _opt("--val-data", metavar="X", help="Separate validation samples.")] = None,
    val_labels: Annotated[Optional[str], _opt("--val-labels", metavar="Y", help="Labels of --val-data.")] = None,
    seed: Annotated[Optional[int], _opt("--seed", help="Seed of the validation split and the shuffles [default: the model's].")] = None,
    dtype: Dtype = None,
    target_loss: Annotated[Optional[float], _opt("--target-loss", help="Stop when the training loss goes below this.")] = None,
    patience: Annotated[Optional[int], _opt("--patience", help="Stop after this many epochs without validation improvement.")] = None,
    restore_best: Annotated[Optional[bool], _opt("--restore-best/--no-restore-best", help="At the end, put back the weights of the best validation loss.")] = None,
    checkpoint_every: Annotated[Optional[int], _opt("--checkpoint-every", help="Keep MODEL/checkpoints/epoch-NNNN every N epochs.")] = None,
    skip_below: Annotated[Optional[float], _opt("--skip-below", help="Skip learning samples whose loss is under this (DyNet).")] = None,
    skip_growth: Annotated[Optional[float], _opt("--skip-growth", help="Per-epoch growth of a skipped sample's assumed loss [default: skip-below/10].")] = None,
    stats: Annotated[Optional[bool], _opt("--stats/--no-stats", help="Append per-layer statistics of weights, gradients and updates to MODEL/stats.tsv each epoch.")] = None,
    restart_epoch: Annotated[Optional[bool], _opt("--restart-epoch", help="Start an interrupted epoch afresh, on purpose, when the data, split, seed or batch size changed.")] = None,
    normalize: Annotated[Optional[bool], _opt("--normalize", help="Standardise each input feature with its mean and deviation on the training part (fitted before the first step, kept in MODEL/normalization/; every tool applies them).")] = None,
    quiet: Quiet = False,
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
    given = {k: v for k, v in locals().items() if v is not None and k not in ("model_dir", "quiet")}
    from ..files import fs, tensorio
    from ..errors import UsageError
    from ..files.labels import read_labels
    from ..training import loop
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
    if data is None or labels is None:
        raise UsageError("give --data and --labels (or data and labels lines in MODEL/params)")
    if (vdata is None) != (vlabels is None):
        raise UsageError("--val-data and --val-labels go together")
    if sum(p == "-" for p in (data, labels, vdata, vlabels)) > 1:
        raise UsageError("only one input can be standard input")
    if sys.stdout is None:
        raise UsageError("standard output is closed (>&-): the epoch table has nowhere to go; use > /dev/null")
    cfg = loop.TrainConfig(**settings)
    silent = loop.uses_mpi(cfg) and _join_mpi_job()  # MPI ranks but 0 say nothing
    quiet = quiet or silent
    # Samples are read straight into the training precision: no second copy of a float64 or text file.
    from ..model import DTYPES, ModelDir, labels_are_names

    dtype = DTYPES.get(cfg.dtype) if cfg.dtype else ModelDir(model_dir).dtype()
    names = labels_are_names(model_dir)  # names such as 1, 2, x: labels are read as names
    x, y = tensorio.read_tensor(data, dtype), read_labels(labels, names)
    val = (tensorio.read_tensor(vdata, dtype), read_labels(vlabels, names)) if vdata is not None else None

    bar = _ProgressBar() if sys.stderr.isatty() and not quiet else None
    from ..training.trace import COLUMNS, format_record

    report = table_printer(COLUMNS, format_record, bar.clear if bar else None)

    def warn(message):
        if not quiet:
            sys.stderr.write(f"train: warning: {message}\n")

    names = tuple(fs.source_name(p) if p else "" for p in (data, labels, vdata, vlabels))
    result = loop.fit(model_dir, x, y, cfg, val, report, bar.update if bar else None, warn, names)
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
        on_error(before=(lambda: time.sleep(1.0)) if rank else None, after=lambda code: os._exit(code))
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
):
    """List the checkpoints of a model (train --checkpoint-every N) with their epoch and losses.

    Tab-separated: name, epoch, loss, accuracy, val_loss, val_accuracy.

    \b
    Example:
      kerash dataset circle -o circle
      printf '2 1 1\\ninput\\ndense 8 tanh\\ndense 2 softmax\\n' > c.model
      model-init c.model -o c --seed 1
      train c -x circle/data.npy -y circle/labels.txt --epochs 4 --checkpoint-every 2 > /dev/null
      kerash checkpoints c
    """
    from ..training.checkpoints import list_checkpoints

    rows = list_checkpoints(model_dir)
    lines = ["name\tepoch\tloss\taccuracy\tval_loss\tval_accuracy"]
    for row in rows:
        lines.append("\t".join(str(v) for v in row))
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
