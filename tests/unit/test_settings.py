"""train's settings are declared once (kerash/training/config.py): train's options, model-update's optimiser
options, the MODEL/params reader and TrainConfig are the same set as the declaration says; its checks are
train's; one registered class per optimiser."""

import numpy as np
import pytest

from conftest import run, savetxt
from helpers import make_model
from kerash.cli.catalog import load
from kerash.cli.runner import build_command
from kerash.errors import UsageError
from kerash.training import config, optimizers
from kerash.training.params_file import PARAMS_FILE, read_params

# Options of the tools that are not train's settings: arguments, --quiet, --version, and model-update's own
# (its --dtype and --seed say what the step is taken in and what it records, not how train runs).
OWN = {"train": {"model_dir", "quiet", "version"},
       "model-update": {"model_dir", "grads", "dtype", "epoch_done", "seed", "no_wait", "version"}}


def options(tool):
    """{name: click parameter} of the tool's settings."""
    return {p.name: p for p in build_command(load(tool), tool).params if p.name not in OWN[tool]}


def test_train_model_update_and_the_params_file_take_the_declared_settings(tmp_path):
    declared = {s.name: s for s in config.SETTINGS}
    train, update = options("train"), options("model-update")
    assert set(train) == {s.name for s in config.SETTINGS if "train" in s.tools} == set(declared)
    assert set(update) == {s.name for s in config.SETTINGS if "model-update" in s.tools}
    assert set(update) == {"optimizer", *optimizers.HYPER_PARAMETERS}  # the optimiser's settings: one step
    for name, param in train.items():
        s = declared[name]
        assert param.opts[0] == "--" + s.key and (s.short in param.opts if s.short else len(param.opts) == 1)
        assert param.secondary_opts == (["--no-" + s.key] if s.negatable else [])
        assert param.default is None  # only what the command line gives is laid over MODEL/params
    for name, param in update.items():
        assert (param.opts, param.help) == (train[name].opts, train[name].help)

    # every key MODEL/params takes, as the declaration says, with dashes or underscores
    value = {int: "3", float: "0.5", str: "adam", bool: "yes", config.PATH: "x.npy"}
    keyed = [s for s in config.SETTINGS if s.params]
    lines = [f"{s.key if i % 2 else s.name} {value[s.kind]}" for i, s in enumerate(keyed)]
    (tmp_path / PARAMS_FILE).write_text("\n".join(lines) + "\n")
    read = read_params(tmp_path)
    assert set(read) == {s.name for s in keyed} == set(train) - {"restart_epoch"}
    assert all(type(read[s.name]) is (str if s.kind == config.PATH else s.kind) for s in keyed)
    assert read["data"] == str(tmp_path / "x.npy")  # relative to the model directory
    (tmp_path / PARAMS_FILE).write_text("restart-epoch yes\n")
    with pytest.raises(UsageError, match="params:1: unknown option 'restart-epoch'"):
        read_params(tmp_path)

    # TrainConfig: every setting but the files the tool reads, with the declared defaults
    fields = vars(config.TrainConfig())
    assert fields == {s.name: s.default for s in config.SETTINGS if s.config}
    # the files the tool reads, and how it reads them (a table's columns)
    assert set(declared) - set(fields) == {"data", "labels", "val_data", "val_labels", "label_column", "columns",
                                           "drop", "lengths", "val_lengths"}
    with pytest.raises(TypeError, match="no setting data"):
        config.TrainConfig(data="x.npy", epochs=1)


# Issue 19: --skip-below nan trained nothing and exited 0, --batch-size 0 meant 32, and --target-loss nan,
# --stall nan and --checkpoint-every -1 were accepted.
BAD = {"epochs": -1, "clip_norm": 0.0, "workers": 0, "shards": 0, "threads": 0, "seed": -1, "batch_size": 0,
       "stall": float("nan"), "target_loss": float("nan"), "checkpoint_every": -1, "skip_below": float("nan"),
       "skip_growth": 0.0, "trace_unit": "layer_01", "layer_lr": "layer_01:0.1", "layer_momentum": "layer_01",
       "impute": "mode", "bptt": 0}


def test_the_declared_checks_are_the_ones_train_makes(tmp_path):
    assert set(BAD) == {s.name for s in config.SETTINGS if s.check}
    make_model(tmp_path, "2 1 1\ninput\ndense 2 softmax\n")
    savetxt(tmp_path / "x.txt", np.array([[0.0, 1.0], [1.0, 0.0]]))
    savetxt(tmp_path / "y.txt", np.array([[0], [1]]))
    for name, bad in BAD.items():
        with pytest.raises(UsageError) as declared:
            config.TrainConfig(**{name: bad}).check(name)
        config.TrainConfig().check()  # the defaults pass
        option = "--" + config.BY_NAME[name].key
        proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "1", option, str(bad)], cwd=tmp_path,
                   check=False)
        assert (proc.returncode, proc.stderr.decode()) == (2, f"train: error: {declared.value}\n")


def test_one_registered_class_per_optimiser():
    assert list(optimizers.OPTIMIZERS) == ["sgd", "momentum", "nesterov", "adam", "rmsprop"]
    for name, cls in optimizers.OPTIMIZERS.items():
        made = optimizers.Optimizer(name, lr=0.5)
        assert type(made) is cls and made.name == name and made.hyper == {**cls.defaults, "lr": 0.5}
        assert set(cls.defaults) <= set(cls.ranges) and optimizers.SLOTS[name] == cls.slots
        assert made.describe() == {"name": name, **made.hyper, "weight_decay": 0.0, "t": 0}
    assert type(optimizers.Optimizer()) is optimizers.SGD
    assert optimizers.Adam(eps=1e-6).hyper["eps"] == 1e-6
    with pytest.raises(UsageError, match="unknown optimizer 'adamw'; did you mean 'adam'"):
        optimizers.Optimizer("adamw")
    with pytest.raises(UsageError, match="--rho does not apply to the adam optimizer"):
        optimizers.Optimizer("adam", rho=0.5)
    with pytest.raises(UsageError, match=r"--beta2 must be in \[0, 1\), not 1"):
        optimizers.Optimizer("adam", beta2=1)
    # a run continues with the hyper-parameters the model recorded, for the same optimiser only
    recorded = optimizers.Optimizer("momentum", lr=0.3, momentum=0.5, weight_decay=0.1).describe()
    again = optimizers.continued(None, recorded, lr=None, momentum=None, weight_decay=None)
    assert (again.name, again.hyper, again.weight_decay) == ("momentum", {"lr": 0.3, "momentum": 0.5}, 0.1)
    other = optimizers.continued("nesterov", recorded, lr=None, momentum=0.8, weight_decay=None)
    assert (other.hyper, other.weight_decay) == ({"lr": 0.01, "momentum": 0.8}, 0.0)
    # the help text names each optimiser's defaults
    assert "0.01 for sgd/momentum/nesterov, 0.001 for adam/rmsprop" in config.BY_NAME["lr"].help
    assert "[default: 1e-8]" in config.BY_NAME["eps"].help


def test_a_params_file_says_what_it_means(tmp_path):
    """Issue 19: MODEL/params accepted `epochs 1_0` (ten) and refused a byte-order mark."""
    (tmp_path / PARAMS_FILE).write_bytes("\ufeffepochs 3\nlr 0.5\n".encode())
    assert read_params(tmp_path) == {"epochs": 3, "lr": 0.5}
    for text in ("epochs 1_0\n", "lr 0.0_1\n", "epochs \u0661\n"):
        (tmp_path / PARAMS_FILE).write_text(text)
        with pytest.raises(UsageError, match="params:1: (epochs must be a whole number|lr must be a number)"):
            read_params(tmp_path)


def test_thousands_of_workers_are_capped_at_a_few_per_core(tmp_path):
    """Issue 19: --workers 5000 only warned, and forked thousands of processes."""
    from kerash.processes import usable_cores

    make_model(tmp_path, "2 1 1\ninput\ndense 2 softmax\n")
    savetxt(tmp_path / "x.txt", np.array([[0.0, 1.0], [1.0, 0.0]]))
    savetxt(tmp_path / "y.txt", np.array([[0], [1]]))
    proc = run(["train", "m", "-x", "x.txt", "-y", "y.txt", "--epochs", "1", "--workers", "5000"], cwd=tmp_path)
    most = 4 * usable_cores()
    assert f"train: warning: --workers 5000: at most 4 per core; using {most} on {usable_cores()} core(s)" in \
        proc.stderr.decode()
