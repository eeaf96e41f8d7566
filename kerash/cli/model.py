"""Model tools: model-init, predict, backprop, model-update, evaluate, summary, dataset, split, snapshot."""

import sys
from typing import Annotated, List, Optional

import typer

from .options import Columns, Drop, Dtype, Format, LabelColumn, Lengths, Output, Seed, Workers, settings_options
from .runner import tool, warn

ModelArg = Annotated[str, typer.Argument(metavar="MODEL", help="Model directory (made by model-init).", show_default=False)]
Data = Annotated[str, typer.Option("--data", "-x", metavar="X", help="Samples, one per row (or an (N,C,H,W) tensor); '-' is standard input.")]
Labels = Annotated[
    str,
    typer.Option("--labels", "-y", metavar="Y", help="Targets: one-hot rows, one column of class indices, or real values."),
]


def _read(path):
    from ..files.tensorio import read_tensor

    return read_tensor(path)


def _read_labels(path, model_dir):
    """Numeric labels, or class names (WordLabels) that the model maps through its classes.txt."""
    from ..files.labels import read_labels
    from ..model import labels_are_names

    return read_labels(path, names=labels_are_names(model_dir))


def _name(path):
    from ..files.tensorio import source_name

    return source_name(path)


def _check_stdin(*paths):
    from ..errors import UsageError

    if sum(p in (None, "-") for p in paths) > 1:
        raise UsageError("only one input can be standard input")


@tool("model-init")
def init(
    model_file: Annotated[str, typer.Argument(metavar="MODEL_FILE", help="Model description (e.g. models/xor.model).", show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", metavar="MODEL_DIR", help="The model directory to create.")],
    seed: Seed = None,
    dtype: Dtype = None,
    force: Annotated[bool, typer.Option("--force", help="Replace MODEL_DIR if it is already a model directory.")] = False,
    data: Annotated[Optional[str], typer.Option("--data", "-x", metavar="X", help="Samples the model will read: a description that leaves its input size out takes it from them (a row's values, or (N,C,H,W) images).", show_default=False)] = None,
    input_size: Annotated[Optional[str], typer.Option("--input-size", metavar="W[,H,D]", help="The input size of a description that leaves it out: width, and height and depth for images.", show_default=False)] = None,
    functions: Annotated[Optional[str], typer.Option("--functions", metavar="FILE", help="Activations of your own that the description uses: lines 'NAME(x) = expression' and \"NAME'(x) = expression\" (its derivative, of x and y = NAME(x)); kept as MODEL_DIR/functions.txt.", show_default=False)] = None,
    label_column: Annotated[Optional[str], typer.Option("--label-column", metavar="NAME|N", help="--data is a table: this column holds the labels, not a feature.", show_default=False)] = None,
    columns: Columns = None,
    drop: Drop = None,
    categorical: Annotated[Optional[str], typer.Option("--categorical", metavar="A,B,…", help="--data is a table: these columns of numeric codes are categories too (columns of words always are).", show_default=False)] = None,
    vocabulary: Annotated[Optional[str], typer.Option("--vocabulary", metavar="FILE", help="The vocabulary of the token ids the model reads (kerash text encode -v FILE): kept as MODEL_DIR/vocabulary.txt, for kerash sample.", show_default=False)] = None,
):
    """Create a model directory with fresh weights from a model description.

    With --data a table (a spreadsheet's CSV; --label-column, --columns,
    --drop choose its columns), each feature column of words — and each
    named by --categorical — becomes one 0/1 input per category (one-hot),
    with the sorted categories of --data kept as MODEL_DIR/categories.tsv:
    give the training part.  The input size is the width after encoding;
    every tool encodes that model's tables alike, and a category it has not
    seen is all zeros, with a warning.

    With --functions FILE, the description may use activations defined
    there by expressions of x — numbers, + - * / ^, exp, log, sqrt, abs,
    tanh, sin, cos, max(a,b), … and the built-in activations as functions —
    each with its derivative, checked against finite differences when read:
      modsig(x)  = sigmoid(x) + 0.01 * x
      modsig'(x) = sigmoid(x) * (1 - sigmoid(x)) + 0.01
    Every tool that reads the model defines them from MODEL_DIR/functions.txt.

    The description is in the line format (KeraSH's) or NeuroMorph's MDL
    (branches, merges, recurrence), recognised from the text.  The directory
    holds the normalised description (MODEL_DIR/model) and, for each layer
    with parameters, MODEL_DIR/layer_NN/W.npy and b.npy (line format: NN is
    the layer's line position, input = 00; MDL: layer nodes in text order).
    They are ordinary tensor files.

    \b
    Example:
      printf '2 1 1\\ninput\\ndense 10 sigmoid\\ndense 1 sigmoid\\n' > xor.model
      model-init xor.model -o xor --seed 1
      matrix-mul xor/layer_01/W.npy xor/layer_02/W.npy
    """
    from .. import model

    categories_found = None
    if any(o is not None for o in (label_column, columns, drop, categorical)):
        if data is None:
            from ..errors import UsageError

            raise UsageError("--label-column, --columns, --drop and --categorical choose the columns of --data: give it")
        from ..files import columns as tables

        table = tables.read_table(data, label_column, columns, drop)
        categories_found = tables.fit_vocabulary(table, categorical)
        order = [table.key(k) for k in table.keep] if table.names else None
        size = (len(tables.feature_names(table, categories_found)), 1, 1)
    text = None
    if functions is not None:
        from ..functions.expressions import define_file

        text = define_file(functions, _name(functions))
    size = size if categories_found is not None and input_size is None else _input_size(data, input_size)
    spec = model.read_model_file(model_file, size)
    if size is not None:
        d, h, w = spec.input_shape if len(spec.input_shape) == 3 else (1, 1, spec.input_shape[0])
        if (w * h * d) != size[0] * size[1] * size[2] or (len(spec.input_shape) == 3 and (w, h, d) != size):
            from ..errors import UsageError

            given = "×".join(map(str, size))
            raise UsageError(f"{model_file} gives the input size {w}×{h}×{d}, but {'the data' if data else '--input-size'}"
                             f" {given}: leave the size out of the description, or give data that fits it")
    _warn(spec)
    model.check_target(output, force)
    if dtype is not None and dtype not in model.DTYPES:
        from ..errors import UsageError

        raise UsageError(f"--dtype must be float32 or float64, not {dtype!r}")
    if seed is None:
        import numpy as np

        seed = int(np.random.SeedSequence().entropy % (2**63))
    dt = model.DTYPES[dtype or "float32"]
    params = model.init_params(spec, seed, dt)
    files = None
    if vocabulary is not None:  # token ids: checked, and kept for kerash sample
        from ..files import tensorio
        from ..files import vocabulary as vocab

        tokens = vocab.parse(tensorio.read_bytes(vocabulary, limit=1 << 28).decode("utf-8", "replace"), vocabulary)
        first = spec.nodes[1].layer
        if first is not None and first.kind == "embedding" and first.vocabulary != len(tokens):
            from ..errors import UsageError

            raise UsageError(f"--vocabulary {vocabulary} holds {len(tokens)} tokens, but the embedding reads "
                             f"{first.vocabulary}")
        files = {"vocabulary.txt": vocab.text_of(tokens)}
    if categories_found:
        from ..files.columns import vocabulary_text
        from ..model.categories import FILE

        files = dict(files or {}, **{FILE: vocabulary_text(categories_found)})
    if categories_found is not None and order:  # a table with a header: its columns are found by name later
        from ..model.categories import COLUMNS_FILE

        files = dict(files or {}, **{COLUMNS_FILE: "".join(name + "\n" for name in order)})
    model.ModelDir.create(output, spec, params, model.new_state(seed, dt), origin=model_file, force=force,
                          functions=text, files=files)


def _input_size(data, text):
    """(W, H, D) from --data (a row's values, or (N,C,H,W) images) or --input-size 'W[,H,D]'; None without both."""
    from ..errors import UsageError

    if data is not None and text is not None:
        raise UsageError("give --data or --input-size, not both")
    if text is not None:
        try:
            dims = [int(v) for v in text.replace("x", ",").replace("×", ",").split(",")]
        except ValueError:
            dims = []
        if not 1 <= len(dims) <= 3 or min(dims) < 1:
            raise UsageError(f"--input-size takes W, W,H or W,H,D: positive whole numbers, not {text!r}")
        return tuple(dims + [1] * (3 - len(dims)))
    if data is None:
        return None
    shape = _read(data).shape
    if len(shape) == 4:  # (N, C, H, W) images
        return (shape[3], shape[2], shape[1])
    if len(shape) == 3:  # sequences (N, T, I): a step's inputs
        return (shape[2], 1, 1)
    return (shape[-1] if len(shape) else 1, 1, 1)


@tool("predict")
def predict(
    model_dir: ModelArg,
    input: Annotated[str, typer.Argument(metavar="[INPUT]", help="Samples, one per row; '-' or omitted: standard input.")] = "-",
    classes: Annotated[bool, typer.Option("--classes", help="Print the predicted class instead of the outputs: its name when the model has classes.txt, else its index.")] = False,
    columns: Columns = None,
    drop: Drop = None,
    label_column: Annotated[Optional[str], typer.Option("--label-column", metavar="NAME|N", help="A column of labels in the data, left out of the features.", show_default=False)] = None,
    nodes: Annotated[Optional[List[str]], typer.Option("--node", metavar="NAME", help="Write the values of this node instead of the outputs: a layer folder (layer_01), an MDL node's name, or input. Repeat for several, side by side.", show_default=False)] = None,
    lengths: Lengths = None,
    workers: Workers = None,
    dtype: Dtype = None,
    output: Output = None,
    fmt: Format = None,
):
    """Run the model forward: one output row per input sample (N×T×K for sequences N×T×I).

    With --node NAME, the values of that node (a hidden layer, an MDL node,
    the input as the network reads it) instead: N×K, images N×C×H×W,
    sequences N×T×…; several --node give each sample's values flattened
    (C, H, W order) and side by side in the order given.  `kerash summary`
    lists the nodes.

    With --classes, one class per sample, or a row of T classes per sequence
    (tab-separated names when the model has MODEL/classes.txt); for lstm,
    gru and tdnn models answering at every step, a block of classes (a row
    per step) per sequence.  A model
    with lstm or gru layers reads sequences of different lengths (blocks of
    rows between blank lines, or --lengths) and answers in kind: a row per
    sequence when it returns the last step, else a block of rows per
    sequence (a row per step), blank lines between.  Inputs are
    raw data: a model trained with --normalize applies its statistics.
    Text from a pipe (or a file over 256 MB) is read, predicted and written
    a block of thousands of rows at a time: a stream of any length takes
    bounded memory, and the first outputs come before it ends.

    \b
    Example:
      printf '2 1 1\\ninput\\ndense 4 tanh\\ndense 1 sigmoid\\n' > m.model
      model-init m.model -o m --seed 1
      printf '0 0\\n0 1\\n1 0\\n1 1\\n' | predict m
      printf '0 0\\n0 1\\n' | predict m --classes
    """
    from .. import model
    from ..files.tensorio import read_row_blocks, resolve_format, source_name

    loaded = model.load(model_dir, dtype, workers)
    fmt = resolve_format(fmt, output)
    if nodes and classes:
        from ..errors import UsageError

        raise UsageError("--node writes a node's values; --classes the predicted classes: give one of them")
    if nodes and workers is not None:
        from ..errors import UsageError

        raise UsageError("--node values are computed in this process: --workers applies to the outputs")
    for name in nodes or ():
        loaded.net.node_index(name)  # an unknown name is refused before any input is read
    if classes and loaded.classes is not None and fmt != "text":
        from ..errors import UsageError

        raise UsageError(f"{model_dir} names its classes: --classes prints text (the names in "
                         f"{model_dir}/classes.txt), not {fmt}")
    # A stream is read, predicted and written a block at a time: any length takes bounded memory.
    rows = model.block_rows(loaded.net)
    from ..model import categories

    if categories.uses_table(model_dir, columns, drop, label_column):  # a spreadsheet's table: read whole
        blocks = [categories.read_data(model_dir, input, label_column, columns, drop, warn=warn)[0]]
    elif model.reads_sequences(loaded.md.spec, lengths):
        blocks = [model.read_sequence_data(loaded.md.spec, input, lengths=lengths)[0]]
        if loaded.net.whole and loaded.net.timed[-1]:
            _write_sequences(loaded, blocks[0], nodes, classes, fmt, output)
            return
    else:
        blocks = read_row_blocks(input, rows, where=source_name(input))
    if nodes:
        results = ((values, None) for values in model.node_blocks(loaded, blocks, nodes, source_name(input)))
    else:
        results = model.predict_blocks(loaded, blocks, source_name(input))
    _write_predictions(results, loaded, classes, fmt, output, rows)


def _read_samples(model_dir, data, labels, lengths=None):
    """(samples, labels) for the model: sequences (model.reads_sequences) or tensors as they come."""
    from .. import model

    spec = model.ModelDir(model_dir).spec
    if not model.reads_sequences(spec, lengths):
        return _read(data), _read_labels(labels, model_dir)
    return model.read_sequence_data(spec, data, labels, model.labels_are_names(model_dir), lengths)


def _write_sequences(loaded, x, nodes, classes, fmt, output):
    """Outputs of every step of sequences of different lengths: a block of rows per sequence (text), or (N, T, K)
    with the padding nan (npy)."""
    import numpy as np

    from .. import model
    from ..files import sequences
    from ..files.tensorio import tensor_chunks, write_chunks

    if nodes:
        values = next(model.node_blocks(loaded, [x], nodes, "input"))
    else:
        values, predicted = model.predict_loaded(loaded, x)
        if classes:
            values = predicted[..., None]
    steps = x.shape[1] - np.isnan(x.reshape(x.shape[0], x.shape[1], -1)).all(axis=2).sum(axis=1)
    if fmt != "text":
        if classes:
            values = np.where(np.arange(x.shape[1])[None, :, None] < steps[:, None, None], values, -1)
        write_chunks(tensor_chunks(values, fmt), output, binary=fmt == "npy")
        return
    if classes and loaded.classes is not None:
        text = "\n".join("".join(loaded.classes[int(c)] + "\n" for c in values[k, :steps[k], 0])
                         for k in range(len(values))).encode("utf-8")
    else:
        text = sequences.text_blocks(values, steps)
    write_chunks([text], output)


def _write_predictions(results, loaded, classes, fmt, output, block):
    """Write predict's blocks of results as they come: text rows `block` rows at a time, however they were
    computed (the same bytes from a stream and from a file); a format with a header that counts the rows (npy,
    KeraSH, text of sequences) once all are in."""
    import numpy as np

    from ..files import textformat
    from ..files.tensorio import tensor_chunks, write_chunks

    def rows(out, predicted):
        if not classes:
            return out
        # a row per sample (none for none); a column per step of a sequence
        return predicted.reshape(len(predicted), -1) if len(predicted) else predicted.reshape(0, 1)

    def named(table):
        names = loaded.classes
        return "".join("\t".join(names[c] for c in row) + "\n" for row in table.tolist()).encode("utf-8")

    def text_blocks():
        empty = np.zeros((0, loaded.net.output_width if not classes else 1), loaded.net.dtype if not classes else int)
        for out, predicted in results:
            table = rows(out, predicted)
            if table.ndim != 2:
                yield from _whole(table, results)
                return
            empty = table if not len(table) else None
            for start in range(0, len(table), block):
                piece = table[start : start + block]
                yield named(piece) if classes and loaded.classes is not None else b"".join(textformat.text_chunks(piece))
        if empty is not None and not (classes and loaded.classes is not None):
            yield from textformat.text_chunks(empty)  # no samples: the shape says how wide the rows would be

    def _whole(first, rest):
        tables = [first] + [rows(*r) for r in rest]
        yield from tensor_chunks(np.concatenate(tables) if len(tables) > 1 else tables[0], "text")

    if fmt == "text":
        write_chunks(text_blocks(), output)
        return
    tables = [rows(out, predicted) for out, predicted in results] or [np.zeros((0, loaded.net.output_width))]
    table = np.concatenate(tables) if len(tables) > 1 else tables[0]
    write_chunks(tensor_chunks(table, fmt), output, binary=fmt == "npy")


@tool("backprop")
def backprop(
    model_dir: ModelArg,
    inputs: Annotated[str, typer.Option("--inputs", "--data", "-x", metavar="X", help="Samples, one per row; '-' is standard input.")],
    labels: Labels,
    output: Annotated[str, typer.Option("--output", "-o", metavar="GRADS", help="Gradient folder to write.")],
    rows: Annotated[Optional[str], typer.Option("--rows", metavar="ROWS", help="Use only these 0-based rows of X and Y ('3 17 5'), e.g. a shard printed by `kerash batches`.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of dropout masks, as train's --seed [default: the model's].")] = None,
    epoch: Annotated[Optional[int], typer.Option("--epoch", help="Epoch of dropout masks [default: the model's next].")] = None,
    dtype: Dtype = None,
):
    """Write the gradient sums of the per-sample losses over the given samples.

    GRADS gets the model directory's layout, GRADS/layer_NN/W.npy and b.npy,
    and GRADS/stats.json with loss_sum, samples and correct.  Sums, so the
    folders of several processes merge by addition (see model-update).

    \b
    Example:
      printf '2 1 1\\ninput\\ndense 4 tanh\\ndense 1 sigmoid\\n' > m.model
      model-init m.model -o m --seed 1
      printf '0 0\\n0 1\\n1 0\\n1 1\\n' > x.txt; printf '0\\n1\\n1\\n0\\n' > y.txt
      backprop m --inputs x.txt --labels y.txt -o grads
      model-update m grads --lr 0.5
    """
    from ..training.steps import backprop as run_backprop

    from .. import ops

    from ..files.labels import WordLabels

    _check_stdin(inputs, labels)
    x, y = _read_samples(model_dir, inputs, labels)
    picked = None
    if rows is not None:
        picked = ops.parse_indices(rows)
        samples = len(x)
        x = ops.take_rows(x, picked)
        y = y.take(picked, samples) if isinstance(y, WordLabels) else ops.take_rows(y, picked)
    run_backprop(model_dir, x, y, output, dtype, names=(_name(inputs), _name(labels)), ids=picked, seed=seed, epoch=epoch)


@tool("model-update")
@settings_options("model-update", after="grads")  # the optimiser's settings, as train's
def update(
    model_dir: ModelArg,
    grads: Annotated[List[str], typer.Argument(metavar="GRADS...", help="Gradient folders written by backprop.", show_default=False)],
    dtype: Annotated[Optional[str], typer.Option("--dtype", metavar="float32|float64", help="Take the step in this type and keep the weights in it, as train --dtype does.")] = None,
    epoch_done: Annotated[Optional[int], typer.Option("--epoch-done", metavar="E", help="This step ends epoch E: the model records E epochs, so train continues after it.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="Record the seed of the shuffles the steps follow, for train to continue them.")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Fail at once (exit 2) when another process trains or updates MODEL, instead of waiting.")] = False,
    **optimizer,
):
    """Merge gradient folders and take one optimiser step on MODEL, atomically.

    The partial sums are added, divided by their total sample count, and
    applied; optimiser state (momentum, Adam's moments) lives in the model
    directory, so a bash loop of backprop and model-update trains like train does.
    While another process trains or updates MODEL, model-update says so on
    standard error and waits its turn (or, with --no-wait, exits 2).

    \b
    Example:
      printf '2 1 1\\ninput\\ndense 4 tanh\\ndense 1 sigmoid\\n' > m.model
      model-init m.model -o m --seed 1
      printf '0 0\\n0 1\\n' > a.txt; printf '0\\n1\\n' > ya.txt
      printf '1 0\\n1 1\\n' > b.txt; printf '1\\n0\\n' > yb.txt
      backprop m -x a.txt -y ya.txt -o g1 & backprop m -x b.txt -y yb.txt -o g2; wait
      model-update m g1 g2 --lr 0.5
    """
    from ..training.steps import update as run_update

    def waiting(message):
        sys.stderr.write(f"model-update: {message}\n")
        sys.stderr.flush()

    run_update(model_dir, grads, dtype=dtype, wait=not no_wait, on_wait=waiting, epoch_done=epoch_done, seed=seed,
               **optimizer)


@tool("evaluate")
def evaluate(
    model_dir: ModelArg,
    data: Data,
    labels: Annotated[Optional[str], typer.Option("--labels", "-y", metavar="Y", help="One-hot rows, a column of class indices or names, or real targets; '-' is standard input.", show_default=False)] = None,
    label_column: LabelColumn = None,
    columns: Columns = None,
    drop: Drop = None,
    validation_of: Annotated[Optional[str], typer.Option("--validation-of", metavar="MODEL", help="Score only the rows of the data that train --validation-split held out of MODEL (MODEL/validation-rows.txt).", show_default=False)] = None,
    lengths: Lengths = None,
    confusion: Annotated[bool, typer.Option("--confusion", help="Also print the confusion matrix (rows: true class, columns: predicted).")] = False,
    report: Annotated[bool, typer.Option("--report", help="Also print each class's precision, recall, F1 and support, with their averages (scikit-learn's classification report).")] = False,
    workers: Workers = None,
    dtype: Dtype = None,
):
    """Print the loss and accuracy of the model on labelled data, and its confusion matrix.

    Targets that are values (regression) get mse, rmse, mae and r2 (R², as
    scikit-learn's r2_score) instead of an accuracy.
    Output lines are 'name<TAB>value'; the confusion matrix and the report
    each follow a '#' line.  Labels may be class names when the model has
    MODEL/classes.txt (train made it from named labels); the matrix and the
    report then name the classes.  Inputs are raw data: a model trained with
    --normalize applies its statistics.

    \b
    Example:
      printf '2 1 1\\ninput\\ndense 4 tanh\\ndense 1 sigmoid\\n' > m.model
      model-init m.model -o m --seed 1
      printf '0 0\\n0 1\\n1 0\\n1 1\\n' > x.txt; printf '0\\n1\\n1\\n0\\n' > y.txt
      evaluate m --data x.txt --labels y.txt --confusion --report
    """
    from .. import model
    from ..files.tensorio import tensor_chunks

    _check_stdin(data, labels)
    model.check_workers(workers)
    if (labels is None) == (label_column is None):
        from ..errors import UsageError

        raise UsageError("give --labels Y, or --label-column NAME|N of the data (not both)")
    from ..model import categories

    if categories.uses_table(model_dir, label_column, columns, drop):
        x, y, _ = categories.read_data(model_dir, data, label_column, columns, drop, warn=warn)
        y = y if label_column is not None else _read_labels(labels, model_dir)
    else:
        x, y = _read_samples(model_dir, data, labels, lengths)
    if validation_of is not None:
        x, y = model.held_out(validation_of, x, y, _name(labels or data))
    result = model.evaluate(model_dir, x, y, dtype, (_name(data), _name(labels or data)), workers)
    lines = [f"loss\t{result['loss']:.6g}"]
    scores = result["regression"]
    if scores is not None:  # targets that are values: scikit-learn's regression metrics, not an accuracy
        lines += [f"{name}\t{scores[name]:.6g}" for name in ("mse", "rmse", "mae", "r2")]
    else:
        lines.append(f"accuracy\t{result['accuracy']:.4f}")
    lines.append(f"samples\t{result['samples']}")
    if result["correct"] is not None:
        lines.append(f"correct\t{result['correct']}")
    out = sys.stdout
    out.write("\n".join(lines) + "\n")
    matrix, names = result["confusion"], result["classes"]
    if (confusion or report) and matrix is None:
        out.write("# no confusion matrix: the targets are not classes\n")
        return
    if confusion and names is None:
        out.write("# confusion matrix: rows are true classes 0..K-1, columns predicted classes\n")
        out.flush()
        for chunk in tensor_chunks(matrix, "text"):
            sys.stdout.buffer.write(chunk)
    elif confusion:
        out.write("# confusion matrix: rows are true classes, columns predicted classes (MODEL/classes.txt)\n")
        out.write("true\\predicted\t" + "\t".join(names) + "\n")
        for name, row in zip(names, matrix.tolist()):
            out.write(name + "\t" + "\t".join(map(str, row)) + "\n")
    if report:
        table = model.class_report(matrix)
        named = names or [str(k) for k in range(len(matrix))]
        out.write("# report: precision, recall, F1 and support per class, as scikit-learn's classification_report\n")
        out.write("class\tprecision\trecall\tf1-score\tsupport\n")
        for k, precision, recall, f1, support in table["rows"]:
            out.write(f"{named[k]}\t{precision:.4f}\t{recall:.4f}\t{f1:.4f}\t{support}\n")
        total = table["macro"][3]
        out.write(f"accuracy\t\t\t{table['accuracy']:.4f}\t{total}\n")
        for label, key in (("macro avg", "macro"), ("weighted avg", "weighted")):
            p, r, f, n = table[key]
            out.write(f"{label}\t{p:.4f}\t{r:.4f}\t{f:.4f}\t{n}\n")


@tool("snapshot")
def snapshot(
    model_dir: ModelArg,
    command: Annotated[Optional[List[str]], typer.Argument(metavar="[-- COMMAND [ARG...]]", help="Run this with the version pinned; {} stands for its folder.", show_default=False)] = None,
):
    """Run a command on one version of MODEL that no save changes or removes until the command ends.

    A save (train, model-update, restore) writes a new version folder and switches
    to it; separate tools reading MODEL/layer_NN/*.npy meanwhile could mix
    two versions.  COMMAND gets the folder of the current version,
    MODEL/.versions/N (layer_NN/W.npy, b.npy, state.json), as every argument
    that is {} and as $KERASH_SNAPSHOT; every model tool also takes it as
    MODEL.  The version stays pinned as long as COMMAND, or any process it
    starts, runs; the exit status is COMMAND's.  Without COMMAND, the folder
    is printed unpinned: it stays complete only until the second save after.

    \b
    Example:
      printf '2 1 1\\ninput\\ndense 1 sigmoid\\n' > m.model; model-init m.model -o m --seed 1
      printf '0 1\\n1 1\\n' > x.txt
      kerash snapshot m -- sh -c 'matrix-mul x.txt "$KERASH_SNAPSHOT"/layer_01/W.npy | matrix-add - "$KERASH_SNAPSHOT"/layer_01/b.npy'
      kerash snapshot m -- predict {} x.txt
    """
    import os

    from ..model import ModelDir

    md = ModelDir(model_dir)
    if not command:
        typer.echo(os.path.join(md.path, ".versions", os.path.basename(md.version_dir())) if not md.frozen else md.path)
        return
    fd, folder = md.pin()
    os.set_inheritable(fd, True)  # the pin lives in this open file, which COMMAND inherits
    args = [folder if a == "{}" else a for a in command]
    sys.stdout.flush()
    # Python ignores SIGPIPE and SIGXFSZ, and exec keeps ignored signals: COMMAND gets the defaults,
    # as from a shell (`yes | head -1` would spin for ever), as subprocess's restore_signals does.
    import signal

    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvpe(args[0], args, dict(os.environ, KERASH_SNAPSHOT=folder))
    except OSError as e:
        from ..errors import KerashError

        error = KerashError(f"cannot run {args[0]}: {e.strerror}")
        error.exit_code = 127 if isinstance(e, FileNotFoundError) else 126  # as shells and env(1)
        raise error from None


def _description(path, frozen=None):
    """(spec, name) of a model directory or a description file; the file's warnings go to standard error.

    With a list as `frozen`, the directory's frozen parameter folders are added to it.
    """
    import os

    from .. import model as modelmod

    if os.path.isdir(path):
        md = modelmod.ModelDir(path)
        spec = md.spec
        if frozen is not None:
            frozen += md.read_state().get("frozen") or []
    else:
        spec = modelmod.read_model_file(path)
        _warn(spec)
    name = os.path.basename(os.path.normpath(path))
    for suffix in (".model", ".mdl"):
        name = name[: -len(suffix)] if name.endswith(suffix) and len(name) > len(suffix) else name
    return spec, name


def _warn(spec):
    from .runner import warn

    for message in spec.warnings:
        warn(message)


@tool("summary")
def summary(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A model directory or a model description file.", show_default=False)],
):
    """Show each layer with its output shape and parameter count, as Keras's model.summary().

    Graph models (MDL) get a "Connected to" column; recurrent links, which
    read the previous time step, are marked [t-1].

    \b
    Example:
      printf '8 8 1\\ninput\\nconvolution relu 8 1 1 3 3\\nmax_pooling - 2 0 2 2\\nflatten -\\ndense 10 softmax\\n' > cnn.model
      kerash summary cnn.model
    """
    from ..model.reports import summary_text

    frozen = []
    spec, name = _description(model, frozen)
    typer.echo(summary_text(spec, name, frozen), nl=False)


@tool("graph")
def graph(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A model directory or a model description file.", show_default=False)],
    steps: Annotated[bool, typer.Option("--steps", help="Print the forward pass as shell steps of kerash tools instead (a network without recurrence; forward-pipeline runs them): $model names the model's folder, $work a folder for the nodes' files, and the input comes from standard input.")] = False,
):
    """Print the model as a Graphviz DOT graph: layers, merges, splits; recurrent links dashed.

    \b
    Example:
      printf '(input, 2)\\n{h, out, concatenate}\\n(out, 3, <tanh>, <mse>)\\n' > elman.mdl
      kerash graph elman.mdl > elman.dot     # then: dot -Tsvg elman.dot > elman.svg
      grep -c -- '->' elman.dot
    """
    from ..model.reports import forward_steps, graph_dot

    spec, name = _description(model)
    if steps:
        import os

        normalized = os.path.isdir(model) and os.path.exists(os.path.join(model, "normalization", "mean.npy"))
        typer.echo("\n".join(forward_steps(spec, normalized)))
        return
    typer.echo(graph_dot(spec, name), nl=False)


@tool("split")
def split(
    files: Annotated[List[str], typer.Argument(metavar="FILE...", help="The data set's files, split alike: samples, labels, any other column; text, CSV or .npy, with the same rows.", show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", metavar="DIR", help="Folder to write: DIR/PART/FILE for each part and file.")],
    fractions: Annotated[Optional[str], typer.Option("--fractions", metavar="F,F,…", help="Share of the rows in each part, adding up to 1 [default: 0.8,0.1,0.1].", show_default=False)] = None,
    counts: Annotated[Optional[str], typer.Option("--counts", metavar="N,N,…", help="Rows in each part instead (rows left over are dropped).", show_default=False)] = None,
    names: Annotated[str, typer.Option("--names", metavar="NAME,…", help="The parts' folder names, one per fraction or count.")] = "train,val,test",
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the shuffle: the same seed, the same parts.")] = 0,
    stratify: Annotated[bool, typer.Option("--stratify", help="Keep each class's share in every part; the classes are the rows of the last FILE (its labels), or of --label-column.")] = False,
    label_column: Annotated[Optional[str], typer.Option("--label-column", metavar="NAME|N", help="With --stratify: the classes are this column of the first FILE (a table of samples and labels).", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace DIR when kerash split wrote it.")] = False,
):
    """Split a data set into training, validation and test parts, every file alike.

    The rows are shuffled with --seed and cut by --fractions or --counts;
    each part keeps the rows in file order.  Text and CSV files are cut line
    by line, as they are: a header row (names) and the comments above the
    rows go to every part, values and word labels are left untouched.  .npy
    files are cut along their first axis.  Every file must hold the same
    rows (a header row aside).  Prints each part, its rows and its files.

    \b
    Example:
      kerash dataset digits -o digits
      kerash split digits/data.npy digits/labels.txt -o parts --seed 1 --stratify
      wc -l parts/*/labels.txt      # then: train MODEL -x parts/train/data.npy -y parts/train/labels.txt …
    """
    import os

    from ..errors import UsageError
    from ..files.tensorio import read_table
    from ..model import split as splitting

    part_names = [n.strip() for n in names.split(",")]
    if len(set(part_names)) != len(part_names) or not all(n and n not in (".", "..") and "/" not in n
                                                          for n in part_names):
        raise UsageError(f"--names must be distinct folder names, not {names!r}")
    if len(set(os.path.basename(os.path.normpath(f)) for f in files)) != len(files):
        raise UsageError("the files must have different names: each part holds one file of each name")

    def numbers(text, option):
        try:
            return [(float if option == "--fractions" else int)(v) for v in text.split(",")]
        except ValueError:
            raise UsageError(f"{option} takes numbers separated by commas, not {text!r}") from None

    wanted = numbers(fractions, "--fractions") if fractions is not None else None
    given = numbers(counts, "--counts") if counts is not None else None
    if wanted is None and given is None:
        wanted = [0.8, 0.1, 0.1][: len(part_names)] if len(part_names) == 3 else None
        if wanted is None:
            raise UsageError("give --fractions or --counts for other than three parts")
    if len(wanted or given) != len(part_names):
        raise UsageError(f"{len(wanted or given)} parts asked for but {len(part_names)} names (--names)")
    loaded = [splitting.RowsFile(f) for f in files]
    # The samples: the rows of the first file that reads as numbers (a header row of names aside)
    samples = None
    for f in loaded:
        if f.array is not None:
            samples = f.rows
            break
        try:
            samples = len(read_table(f.path).array)
            break
        except Exception:  # words: a labels file; its rows count only when no file holds numbers
            continue
    if samples is None:  # words only (a table with a column of names, or labels): a header row of names aside
        samples = loaded[0].rows - splitting.has_header(loaded[0])
    headers = []
    for f in loaded:
        if f.rows not in (samples, samples + 1) or (f.array is not None and f.rows != samples):
            raise UsageError(f"{f.path} has {f.rows} rows but {files[0]} has {samples} samples")
        headers.append(f.rows == samples + 1)
    sizes = splitting.part_sizes(samples, wanted, given)
    classes = None
    if stratify and label_column is not None:
        from ..files.columns import labels_of, read_table
        from ..files.labels import WordLabels

        labels = labels_of(read_table(files[0], label_column))  # the labels alone: features may be words
        classes = labels.codes if isinstance(labels, WordLabels) else labels
        if len(classes) != samples:
            raise UsageError(f"{files[0]} has {len(classes)} rows of labels but {samples} samples")
    elif stratify:
        classes = loaded[-1].classes(headers[-1])
    elif label_column is not None:
        raise UsageError("--label-column goes with --stratify")
    parts = splitting.split_rows(samples, sizes, seed, classes)
    splitting.write_split(output, loaded, part_names, parts, headers, force)
    for name, rows in zip(part_names, parts):
        typer.echo("\t".join([name, f"{len(rows)} rows"] + [os.path.join(output, name, f.name) for f in loaded]))


@tool("dataset")
def dataset(
    name: Annotated[str, typer.Argument(metavar="NAME", help="digits, circle, echo, parity or adding.", show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", metavar="DIR", help="Folder for the files.")],
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Hold out this fraction as val-data.npy / val-labels.txt.")] = 0.0,
    samples: Annotated[Optional[int], typer.Option("--samples", help="Number of points or sequences (default 1000; not digits).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Sequence length T (echo, parity: 20; adding: 50).")] = None,
    delay: Annotated[int, typer.Option("--delay", help="How many steps back echo repeats a bit.")] = 5,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed of the generated data and of the held-out split.")] = 0,
):
    """Write a data set as DIR/data.npy (one sample or sequence per row) and DIR/labels.txt.

    digits: 1797 handwritten 8×8 digits, pixels scaled to [0, 1], 10 classes
    (UCI optdigits, CC BY 4.0).  circle: points in the unit square, class 1
    outside the circle of area ½ (the mini-framework problem of seed 003).
    Sequences, data N×T×I: echo (labels N×T: the bit of --delay steps
    before), parity (labels N×T: parity so far), adding (labels N×1: the sum
    of the two marked values, scored at the last step).  With
    --val-fraction F, a random fraction F goes to DIR/val-data.npy and
    DIR/val-labels.txt instead.

    \b
    Example:
      kerash dataset digits -o digits --val-fraction 0.2 --seed 1
      wc -l digits/labels.txt digits/val-labels.txt
      kerash dataset adding -o adding --samples 100 --steps 50 --seed 1
    """
    import os

    from ..model import datasets
    from ..files.tensorio import write_tensor
    from ..training.batches import split

    data, labels = datasets.load(name, samples, seed, steps, delay)
    keep, held = split(len(data), val_fraction, seed)
    os.makedirs(output, exist_ok=True)
    labels = labels.reshape(len(labels), -1)
    write_tensor(data[keep], os.path.join(output, "data.npy"))
    write_tensor(labels[keep], os.path.join(output, "labels.txt"))
    if len(held):
        write_tensor(data[held], os.path.join(output, "val-data.npy"))
        write_tensor(labels[held], os.path.join(output, "val-labels.txt"))


@tool("dynet")
def dynet(
    net: Annotated[str, typer.Argument(metavar="NETFILE", help="A network in DyNet's ASCII format (units, inputs, outputs, connections); '-' is standard input.", show_default=False)],
    output: Output = None,
    no_bias: Annotated[bool, typer.Option("--no-bias", help="Input unit 0 is data, not DyNet's bias unit (always 1).")] = False,
):
    """Read a DyNet network description (Waibel's connection list) as a kerash model file (MDL).

    Units go into layers by depth, each a `connect` node of sigmoid units
    in which only the listed connections exist; a third column on a
    connection names its weight, and connections naming the same weight
    share it.  Input unit 0 is the bias unless --no-bias.  The output layer
    has the mse loss.  `kerash summary` counts the model as DyNet's initnet
    did.

    \b
    Example:
      printf '6 units\\n3 inputs\\n0 1 2\\n1 outputs\\n5\\n9 conns\\n0 3\\n1 3\\n2 3\\n0 4\\n1 4\\n2 4\\n0 5\\n3 5\\n4 5\\n' > xor.net
      kerash dynet xor.net -o xor.mdl
      model-init xor.mdl -o xor --seed 1 && kerash summary xor
    """
    from ..files.tensorio import read_bytes, source_name, write_chunks
    from ..model.dynet import read_net

    text = read_net(read_bytes(net).decode("utf-8", "replace"), source_name(net), bias=not no_bias)
    write_chunks([text.encode()], output)
