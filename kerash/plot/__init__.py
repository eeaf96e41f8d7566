"""Pictures of models and runs: training curves, confusion, regression, decision regions, activations, weights,
evolution.

`tables` reads the files the other tools leave (trace.tsv, stats.tsv,
evolve.tsv, layer folders) with numpy alone; `figures` draws PNG or SVG
files with matplotlib, an optional extra imported only there; `terminal`
draws training curves with Unicode braille characters and needs nothing more.
"""

KINDS = ("curves", "confusion", "regression", "boundary", "activations", "weights", "evolution")


def check_request(kind, sources, data=None, labels=None, grads=None, node=None, held_out=None, label_column=None):
    """Refuse a KIND with the wrong operands or options before any work is done."""
    from ..errors import UsageError, close_matches

    if kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}{close_matches(kind, KINDS)}; choose {', '.join(KINDS)}")
    if kind != "curves" and len(sources) != 1:
        raise UsageError(f"{kind} draws one {'EVOLVE_DIR' if kind == 'evolution' else 'MODEL'}, not {len(sources)}")
    needs_data = kind in ("confusion", "regression", "boundary")
    if needs_data and (data is None or (labels is None) == (label_column is None)):
        raise UsageError(f"{kind} needs --data X and --labels Y (or --label-column of the data, not both)")
    if kind == "activations" and data is None:
        raise UsageError("activations needs --data X (and --labels Y to group the samples by class)")
    if not needs_data and kind != "activations" and (data is not None or labels is not None):
        raise UsageError(f"{kind} takes no --data or --labels")
    if (node is not None) != (kind == "activations"):
        raise UsageError("activations needs --node NAME" if node is None else "--node goes with activations only")
    if held_out is not None and kind not in ("confusion", "regression", "boundary"):
        raise UsageError("--validation-of goes with confusion, regression and boundary")
    if grads is not None and kind != "weights":
        raise UsageError("--grads goes with weights only")
    if data == "-" and labels == "-":
        raise UsageError("only one input can be standard input")
