"""The one declaration of train's settings: SETTINGS, and TrainConfig made from it.

Each Setting says its type, TrainConfig's default, the check of its value
alone, its --help text, whether MODEL/params may give it, and which tools
take it.  A setting `batch_size` is the option --batch-size and the params
key batch-size (or batch_size).  Made from SETTINGS: train's options and
model-update's optimiser options (cli/options.py settings_options), the
MODEL/params reader (params_file.py) and TrainConfig, whose check("workers")
checks a value where the run needs it (after the data are read, as before).

The optimiser's hyper-parameters take their defaults and ranges from the
optimiser classes (optimizers.py), which check them when an optimiser is
made: a value given, or the one the model recorded, for the optimiser that
takes it ('--momentum does not apply to the adam optimizer' comes first).
"""

import math
import re

from ..errors import UsageError
from .optimizers import DEFAULT, OPTIMIZERS, POSITIVE, Range

PATH = "path"  # a file name (str): MODEL/params gives it relative to the model directory
TRAIN = ("train",)
TRAIN_AND_UPDATE = ("train", "model-update")  # the optimiser's settings: model-update takes one step


class Check:
    """What a setting's value must satisfy; `message` ends '--OPTION must be …', with {value}."""

    def __init__(self, valid, message):
        self.valid, self.message = valid, message

    def check(self, option, value):
        if not self.valid(value):
            raise UsageError(f"--{option} must be {self.message.format(value=value)}")
        return value


AT_LEAST_ONE = Check(lambda value: value >= 1, "≥ 1, got {value}")
NOT_NEGATIVE = Check(lambda value: value >= 0, "≥ 0, got {value}")
SEED = Check(lambda value: 0 <= value < 2**63, "in [0, 2⁶³), not {value}")
FINITE = Range(-math.inf, math.inf, False, "a finite number")


class Setting:
    """One of train's settings (see SETTINGS), as the tools, MODEL/params and TrainConfig know it."""

    def __init__(self, name, kind, help, default=None, short=None, metavar=None, check=None, negatable=False,
                 params=True, config=True, tools=TRAIN):
        self.name = name  # the Python name: option --NAME-WITH-DASHES, params key NAME-WITH-DASHES
        self.kind = kind  # int, float, str, bool or PATH
        self.help = help  # --help's text; {workers} is this machine's default worker count, filled in by the tool
        self.default = default  # TrainConfig's; None: the run decides (the help says how)
        self.short = short  # '-e'
        self.metavar = metavar
        self.check = check  # a Check (or optimizers.Range) of the value alone: TrainConfig.check(name)
        self.negatable = negatable  # a flag with its --no- form
        self.params = params  # MODEL/params may give it
        self.config = config  # a field of TrainConfig (not: a file the tool reads)
        self.tools = tools

    @property
    def key(self):
        """The option without its dashes: MODEL/params' key."""
        return self.name.replace("_", "-")


def _number(value):
    return f"{value:g}".replace("e-0", "e-").replace("e+0", "e+")  # 1e-8, not 1e-08


def _defaults(key):
    """The optimisers' defaults of hyper-parameter `key`: '0.9', or '0.01 for sgd/momentum, 0.001 for adam'."""
    takers = {}
    for name, cls in OPTIMIZERS.items():
        if key in cls.defaults:
            takers.setdefault(cls.defaults[key], []).append(name)
    if len(takers) == 1:
        return _number(*takers)
    return ", ".join(f"{_number(value)} for {'/'.join(names)}" for value, names in takers.items())


def _listed(names, last):
    """'a, b and c' (last='and')."""
    return f"{', '.join(names[:-1])} {last} {names[-1]}" if len(names) > 1 else names[0]


def _takers(key):
    """The optimisers that take hyper-parameter `key`: 'adam and rmsprop'."""
    return _listed([name for name, cls in OPTIMIZERS.items() if key in cls.defaults], "and")


# In train's --help order.
SETTINGS = [
    Setting("data", PATH, "Training samples, one per row (or (N,C,H,W)).", short="-x", metavar="X", config=False),
    Setting("labels", PATH, "One-hot rows, a column of class indices, or real targets.", short="-y", metavar="Y",
            config=False),
    Setting("label_column", str, "Take the labels from this column of X (its name in the header row, or its number "
            "from 1, as cut): numbers, or words that name classes; then no --labels.", metavar="NAME|N", config=False),
    Setting("columns", str, "Use only these columns of X as features: names or numbers from 1, comma-separated.",
            metavar="A,B,…", config=False),
    Setting("drop", str, "Leave these columns of X out: names or numbers from 1, comma-separated.", metavar="A,B,…",
            config=False),
    Setting("epochs", int, "Epochs to run now [default: 10].", short="-e", check=NOT_NEGATIVE),
    Setting("until_epoch", int, "Train until the model has N epochs in total; do nothing if it has them."),
    Setting("batch_size", int, "Samples per step [default: the model's last, else 32].", short="-b",
            check=AT_LEAST_ONE),
    Setting("batch_growth", str, "DyNet's growing batches: START samples per step, STEP more each epoch, at most MAX.",
            metavar="START:STEP:MAX"),
    Setting("lr", float, f"Learning rate [default: {_defaults('lr')}].", tools=TRAIN_AND_UPDATE),
    Setting("lr_schedule", str, "constant, step:EVERY:FACTOR, exponential:GAMMA, cosine:EPOCHS[:MIN_LR] or "
            "plateau:PATIENCE:FACTOR (PyTorch's StepLR, ExponentialLR, CosineAnnealingLR, ReduceLROnPlateau) "
            "[default: the model's last, else constant].", metavar="SCHEDULE"),
    Setting("warmup", int, "Rise linearly to the rate over the first N epochs, then follow the schedule.", metavar="N"),
    Setting("optimizer", str, f"{_listed(list(OPTIMIZERS), 'or')} [default: the model's last, else {DEFAULT}].",
            tools=TRAIN_AND_UPDATE),
    Setting("momentum", float, f"Momentum μ of {_takers('momentum')} [default: {_defaults('momentum')}].",
            tools=TRAIN_AND_UPDATE),
    Setting("beta1", float, f"Adam's β1 [default: {_defaults('beta1')}].", tools=TRAIN_AND_UPDATE),
    Setting("beta2", float, f"Adam's β2 [default: {_defaults('beta2')}].", tools=TRAIN_AND_UPDATE),
    Setting("eps", float, f"ε of {_takers('eps')} [default: {_defaults('eps')}].", tools=TRAIN_AND_UPDATE),
    Setting("rho", float, f"RMSprop's ρ [default: {_defaults('rho')}].", tools=TRAIN_AND_UPDATE),
    Setting("weight_decay", float, "L2 decay of the weights (not biases) [default: the model's last, else 0].",
            tools=TRAIN_AND_UPDATE),
    Setting("clip_norm", float, "Scale the step's gradient down to a global norm of at most C "
            "(torch.nn.utils.clip_grad_norm_).", metavar="C", check=POSITIVE),
    Setting("freeze", str, "Train all but these: layer_01,layer_03-layer_04 (or node names, or 1-2); their weights "
            "stay bit-identical.", metavar="LAYERS"),
    Setting("workers", int, "Processes that take the shards of each batch [default: {workers}, one per core, at most "
            "one per shard; of them the engine wakes as many as pay on the machine as it is (trace.tsv's processes)]. "
            "The result does not depend on it.", short="-w", check=AT_LEAST_ONE),
    Setting("shards", int, "Logical shards of each batch, whose gradients are added in order [default: from the "
            "model and the batch size, so that one process computing them all loses at most 10%]. The result "
            "depends on it, never on --workers.", metavar="S", check=AT_LEAST_ONE),
    Setting("threads", int, "BLAS threads of each training process [default: 1: the cores go to workers; a busy "
            "machine makes threads wait for each other].", check=AT_LEAST_ONE),
    Setting("engine", str, "local (one process), fork (--workers processes on this machine) or mpi (ranks of "
            "mpiexec) [default: mpi under mpiexec, else fork or local]."),
    Setting("verbose", bool, "Say on standard error how the run is set up (processes, shards) and why.",
            default=False, short="-v"),
    Setting("stall", float, "Report a worker that makes no progress for this many seconds [default: 60].", check=POSITIVE,
            default=60.0),
    Setting("validation_split", float, "Hold out this fraction of the data for validation (fixed by the seed).",
            default=0.0),
    Setting("bptt", int, "Truncated back-propagation through time over long streams: the training sequences "
            "read as one stream, cut into --batch-size streams side by side and those into windows of K steps, "
            "taken in order; lstm and gru states carry from one window to the next within an epoch (zeros at its "
            "start), gradients flow back K steps. Targets are every step's (the next token).", metavar="K",
            check=AT_LEAST_ONE),
    Setting("val_data", PATH, "Separate validation samples.", metavar="X", config=False),
    Setting("val_labels", PATH, "Labels of --val-data.", metavar="Y", config=False),
    Setting("lengths", PATH, "Sequences of different lengths: one length per sequence, for X holding every "
            "sequence's steps one after another (or (N, T, I) with padding after each length). Text with blank "
            "lines between blocks of rows needs none: a block is a sequence.", metavar="FILE", config=False),
    Setting("val_lengths", PATH, "The lengths of --val-data's sequences (see --lengths).", metavar="FILE",
            config=False),
    Setting("seed", int, "Seed of the validation split and the shuffles [default: the model's].", check=SEED),
    Setting("dtype", str, "Floating-point type of the computation.", metavar="float32|float64"),
    Setting("target_loss", float, "Stop when the training loss goes below this.", check=FINITE),
    Setting("patience", int, "Stop after this many epochs without validation improvement."),
    Setting("restore_best", bool, "At the end, put back the weights of the best validation loss.", default=False,
            negatable=True),
    Setting("checkpoint_every", int, "Keep MODEL/checkpoints/epoch-NNNN every N epochs.", default=0,
            check=NOT_NEGATIVE),
    Setting("skip_below", float, "Skip learning samples whose loss is under this (DyNet).", check=POSITIVE),
    Setting("skip_growth", float, "Per-epoch growth of a skipped sample's assumed loss [default: skip-below/10].",
            check=POSITIVE),
    Setting("stats", bool, "Append per-layer statistics of weights, gradients and updates to MODEL/stats.tsv each "
            "epoch.", default=False, negatable=True),
    Setting("layer_lr", str, "Learning rates of single layers: NODE=RATE,… (layer_01=0.01, an MDL node's name); "
            "the others take --lr, and a schedule scales them all alike.  Recorded in MODEL/state.json and kept by "
            "later runs unless given again ('none' drops them).", metavar="NODE=RATE,…",
            check=Check(lambda value: value == "none" or all(re.fullmatch(r"[^=,\s]+=[0-9.eE+-]+", u.strip())
                                                             for u in value.split(",")),
                        "NODE=RATE[,NODE=RATE…] (layer_01=0.01) or none, not {value!r}")),
    Setting("layer_momentum", str, "Momentum of single layers (optimizers momentum and nesterov): NODE=M,…; the "
            "others take --momentum.  Recorded and kept as --layer-lr.", metavar="NODE=M,…",
            check=Check(lambda value: value == "none" or all(re.fullmatch(r"[^=,\s]+=[0-9.eE+-]+", u.strip())
                                                             for u in value.split(",")),
                        "NODE=M[,NODE=M…] (layer_01=0.5) or none, not {value!r}")),
    Setting("trace_unit", str, "Record units' activations each epoch in MODEL/units.tsv — mean, deviation, min and "
            "max over the training part, as DyNet's unit trace: NODE:INDEX (layer_01:3, an MDL node's name, or input; "
            "INDEX counts the node's values in C, H, W order), several separated by commas.", metavar="NODE:INDEX",
            check=Check(lambda value: all(re.fullmatch(r"[^:,\s]+:[0-9]+", u.strip()) for u in value.split(",")),
                        "NODE:INDEX[,NODE:INDEX…] (layer_01:3), not {value!r}")),
    Setting("restart_epoch", bool, "Start an interrupted epoch afresh, on purpose, when the data, split, seed or "
            "batch size changed.", default=False, params=False),
    Setting("normalize", bool, "Standardise each input feature with its mean and deviation on the training part "
            "(fitted before the first step, kept in MODEL/normalization/; every tool applies them).", default=False),
    Setting("impute", str, "Fill missing input values (nan; NA, ? or an empty cell in a table) of each feature "
            "with its mean, median or most frequent value on the training part (fitted before the first step, kept "
            "in MODEL/imputation/; every tool fills its inputs with them), as scikit-learn's SimpleImputer.",
            metavar="mean|median|most-frequent",
            check=Check(lambda value: value in ("mean", "median", "most-frequent"),
                        "mean, median or most-frequent, not {value!r}")),
    Setting("normalize_minmax", bool, "Bring each input feature to [-1, 1] by its min and max on the training part "
            "(DyNet's renormalisation), kept and applied as --normalize's statistics: centre (min+max)/2 as mean, "
            "half-range (max-min)/2 as std.", default=False),
]
BY_NAME = {s.name: s for s in SETTINGS}


def for_tool(tool):
    """The settings tool `tool` ('train', 'model-update') takes, in SETTINGS' order."""
    return [s for s in SETTINGS if tool in s.tools]


class TrainConfig:
    """train's settings: those of SETTINGS that are not files; TrainConfig(epochs=3), the others take their defaults."""

    def __init__(self, **given):
        unknown = set(given) - set(_FIELDS)
        if unknown:
            raise TypeError(f"TrainConfig has no setting {', '.join(sorted(unknown))}")
        for name, default in _FIELDS.items():
            setattr(self, name, given.get(name, default))

    def __repr__(self):
        return f"TrainConfig({', '.join(f'{name}={value!r}' for name, value in vars(self).items())})"

    def check(self, *names):
        """Check the values of the settings named (all when none are) alone: a UsageError names the first wrong one."""
        for s in [BY_NAME[name] for name in names] if names else SETTINGS:
            value = getattr(self, s.name) if s.config and s.check else None
            if value is not None:
                s.check.check(s.key, value)


_FIELDS = {s.name: s.default for s in SETTINGS if s.config}
