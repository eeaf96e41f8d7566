"""The evolve tool."""

import sys
from typing import Annotated, Optional

import typer

from .runner import table_printer, tool


@tool("evolve")
def evolve(
    data: Annotated[str, typer.Option("--data", "-x", metavar="X", help="Samples, one per row (or (N,C,H,W)).")],
    labels: Annotated[str, typer.Option("--labels", "-y", metavar="Y", help="A column of class indices, one-hot rows, or real targets.")],
    output: Annotated[str, typer.Option("--output", "-o", metavar="BEST_DIR", help="Model directory for the best network (trained).")],
    start: Annotated[Optional[str], typer.Option("--from", metavar="MODEL_FILE", help="Start from this description instead of from scratch.")] = None,
    scratch: Annotated[bool, typer.Option("--scratch", help="Start from input → output only (the default).")] = False,
    population: Annotated[int, typer.Option("--population", "-p", help="Genomes per generation.")] = 6,
    generations: Annotated[int, typer.Option("--generations", "-g", help="Generations after the first.")] = 5,
    epochs_per_eval: Annotated[int, typer.Option("--epochs-per-eval", "-e", help="Training epochs before each fitness measure.")] = 5,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Genomes trained at once, one per forked worker.")] = 1,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of every random choice; the result does not depend on --workers.")] = 0,
    validation_split: Annotated[float, typer.Option("--validation-split", help="Fixed fraction of the data used to measure fitness.")] = 0.2,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Samples per training step.")] = 32,
    optimizer: Annotated[str, typer.Option("--optimizer", help="Optimiser of the genomes' training.")] = "adam",
    lr: Annotated[float, typer.Option("--lr", help="Learning rate of the genomes' training.")] = 0.005,
    normalize: Annotated[bool, typer.Option("--normalize", help="Standardise each input feature with its mean and deviation on the training part; BEST_DIR keeps them, as train --normalize.")] = False,
    fitness: Annotated[str, typer.Option("--fitness", metavar="validation|train", help="Measure each genome's loss on the validation part (a split of X, or --val-data) or on the training part.")] = "validation",
    val_data: Annotated[Optional[str], typer.Option("--val-data", metavar="X", help="Validation samples to measure fitness on, instead of a split of X.", show_default=False)] = None,
    val_labels: Annotated[Optional[str], typer.Option("--val-labels", metavar="Y", help="Their labels.", show_default=False)] = None,
    max_evaluations: Annotated[Optional[int], typer.Option("--max-evaluations", metavar="N", help="Stop when N genomes have been evaluated (the first included).", show_default=False)] = None,
    max_seconds: Annotated[Optional[float], typer.Option("--max-seconds", metavar="S", help="Start no generation after S seconds of search.", show_default=False)] = None,
    union: Annotated[int, typer.Option("--union", metavar="K", help="After the search, unite the best K graphs (MDL) into a supergraph whose alternative paths are mixed by learnable weights (mix merges, DARTS), train it, keep the strongest path and fine-tune it; both are scored like genomes.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace BEST_DIR if it is already a model directory.")] = False,
):
    """Evolve a network topology by mutation and selection; keep the best as a trained model.

    A line-format start evolves as a chain (layers added, removed, resized,
    activations, filter counts); an MDL start as a graph: dense nodes
    inserted (half of them identities: the function kept) or removed, widths
    and activations, branches joined by merges, skip connections, recurrent
    links added or removed, merge ops.  Every child is valid MDL, inherits
    its parent's trained weights node by node, trains --epochs-per-eval more
    epochs and is scored; a description evaluated before is never evaluated
    again.  A population of 1 is a hill-climber (the parent or its child
    survives).  The search ends after --generations, --max-evaluations or
    --max-seconds, whichever comes first.

    One tab-separated line per genome evaluated: generation, genome, parent,
    mutation, layers, parameters, val_loss, val_accuracy, seconds.  The same
    lines are kept in BEST_DIR/evolve.tsv (kerash plot evolution draws it),
    the best description in BEST_DIR/best.mdl (or best.model).  Labels may
    be class names (BEST_DIR/classes.txt keeps them).

    \b
    Example:
      kerash dataset circle -o circle
      evolve -x circle/data.npy -y circle/labels.txt --population 4 --generations 2 -o best --seed 1
      kerash summary best
    """
    import signal

    from .. import evolve as evolution
    from .. import model as modelmod
    from ..errors import UsageError
    from ..files.labels import read_labels
    from ..files.tensorio import read_tensor, source_name

    if start is not None and scratch:
        raise UsageError("give either --from or --scratch, not both")
    if data == "-" and labels == "-":
        raise UsageError("only one input can be standard input")
    text = modelmod.normalised_text(modelmod.read_model_file(start)) if start else None
    if (val_data is None) != (val_labels is None):
        raise UsageError("--val-data and --val-labels go together")
    cfg = evolution.EvolveConfig(population, generations, epochs_per_eval, workers, seed, validation_split, batch_size,
                                 optimizer, lr, normalize, fitness, max_evaluations, max_seconds, union)
    modelmod.check_target(output, force)  # now rather than after the whole search, which would be lost
    x, y = read_tensor(data), read_labels(labels)
    val = (read_tensor(val_data), read_labels(val_labels)) if val_data is not None else None
    report = table_printer(evolution.COLUMNS, evolution.format_row)
    try:
        best, rows, inputs = evolution.evolve(x, y, cfg, text, report, (source_name(data), source_name(labels)), val)
    except evolution.Stopped as e:
        sys.stderr.write(f"evolve: interrupted by {signal.Signals(e.signal).name} before a genome was evaluated; "
                         f"nothing written\n")
        return 128 + e.signal
    if cfg.union_skipped:
        sys.stderr.write(f"evolve: warning: {cfg.union_skipped}\n")
    evolution.write_best(best, output, rows, seed, force, inputs)
    if inputs["stopped"]:
        sys.stderr.write(f"evolve: interrupted by {signal.Signals(inputs['stopped']).name}; the best genome so far, "
                         f"{best.id} (val_loss {best.val_loss:.6g}), written to {output}\n")
        return 128 + inputs["stopped"]
    sys.stderr.write(f"evolve: best genome {best.id} (val_loss {best.val_loss:.6g}) written to {output}\n")
