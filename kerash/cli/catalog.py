"""Every tool: its name and the command function behind it ("module:function").

`kerash NAME` looks tools up here; pyproject.toml installs scripts/NAME for
each tool marked True, and scripts/kerash (a test keeps them in step).  Tools
marked False are only reached as `kerash NAME`.  ALIASES are the names of tools
that were renamed because they collide with system commands (Debian's `init`
is systemd's): `kerash init` still works; no script has the old name.
"""

TOOLS = {
    "matrix-mul": ("kerash.cli.matrix:mul", True),
    "matrix-add": ("kerash.cli.matrix:add", True),
    "matrix-sub": ("kerash.cli.matrix:sub", True),
    "matrix-hadamard": ("kerash.cli.matrix:hadamard", True),
    "matrix-scale": ("kerash.cli.matrix:scale", True),
    "matrix-transpose": ("kerash.cli.matrix:transpose", True),
    "matrix-sum": ("kerash.cli.matrix:msum", True),
    "matrix-mean": ("kerash.cli.matrix:mean", True),
    "matrix-create": ("kerash.cli.matrix:create", True),
    "matrix-similar": ("kerash.cli.matrix:similar", True),
    "matrix-apply": ("kerash.cli.matrix:apply", True),
    "tensor-slice": ("kerash.cli.tensor:tslice", True),
    "tensor-flatten": ("kerash.cli.tensor:flatten", True),
    "tensor-reshape": ("kerash.cli.tensor:reshape", True),
    "tensor-rows": ("kerash.cli.tensor:rows", True),
    "tensor-stats": ("kerash.cli.tensor:stats", True),
    "tensor-show": ("kerash.cli.tensor:show", True),
    "conv": ("kerash.cli.tensor:conv", True),
    "maxpool": ("kerash.cli.tensor:maxpool", True),
    "model-init": ("kerash.cli.model:init", True),
    "predict": ("kerash.cli.model:predict", True),
    "backprop": ("kerash.cli.model:backprop", True),
    "model-update": ("kerash.cli.model:update", True),
    "train": ("kerash.cli.train:train", True),
    "evaluate": ("kerash.cli.model:evaluate", True),
    "evolve": ("kerash.cli.evolve:evolve", True),
    "summary": ("kerash.cli.model:summary", False),
    "graph": ("kerash.cli.model:graph", False),
    "dataset": ("kerash.cli.model:dataset", False),
    "split": ("kerash.cli.model:split", False),
    "text": ("kerash.cli.text:text", False),
    "sample": ("kerash.cli.text:sample", False),
    "dynet": ("kerash.cli.model:dynet", False),
    "checkpoints": ("kerash.cli.train:checkpoints", False),
    "restore": ("kerash.cli.train:restore", False),
    "snapshot": ("kerash.cli.model:snapshot", False),
    "batches": ("kerash.cli.train:batches_tool", False),
    "plot": ("kerash.cli.plot:plot", False),
    "warm": ("kerash.warm.control:warm", False),
    "models": ("kerash.cli.examples:models", False),
    "completion": ("kerash.cli.shellfiles:completion", False),
}

ALIASES = {"init": "model-init", "update": "model-update"}


def load(name):
    """The command function of tool `name`."""
    import importlib

    target, _ = TOOLS[name]
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
