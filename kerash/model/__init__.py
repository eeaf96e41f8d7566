"""Models: descriptions (line format and MDL), model directories, data preparation, reports.

description/lines/mdl parse and write descriptions, spec compiles them to a
network, directory keeps model directories, data shapes inputs and targets,
use runs a model on data, reports prints summaries and pictures, classes
maps class names, normalization keeps the inputs' statistics.
"""

from .data import check_finite, prepare_inputs, prepare_targets, read_sequence_data, reads_sequences
from .description import escaped, normalised_text, parse_model, read_model_file
from .lines import chain_spec
from .directory import (DTYPES, MODEL_FILE, STATE_FILE, ModelDir, check_target, copy_tree, flatten_params, new_state,
                        read_json_checked, read_tree, write_tree)
from .spec import ModelSpec, NodeSpec, build_network, count_params, init_params, param_shapes
from .use import Loaded, block_rows, check_workers, class_report, evaluate, held_out, held_out_rows, load, load_network, node_blocks, predict, predict_blocks, predict_loaded
from .classes import (CLASSES_FILE, check_class_count, class_names, class_targets, classes_text, labels_are_names,
                      new_classes, read_classes)

__all__ = [
    "CLASSES_FILE", "Loaded", "check_workers", "read_sequence_data", "reads_sequences", "check_class_count", "class_names", "check_finite", "class_report", "class_targets", "classes_text", "load", "new_classes",
    "labels_are_names", "block_rows", "held_out", "held_out_rows", "node_blocks", "predict_blocks", "predict_loaded", "read_classes",
    "DTYPES", "MODEL_FILE", "chain_spec", "STATE_FILE", "ModelDir", "ModelSpec", "NodeSpec", "build_network", "check_target",
    "copy_tree",
    "count_params", "escaped", "evaluate", "flatten_params", "init_params", "load_network", "new_state",
    "normalised_text", "param_shapes", "parse_model", "predict", "prepare_inputs", "prepare_targets", "read_json_checked",
    "read_model_file", "read_tree", "write_tree",
]
