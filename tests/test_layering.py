"""The package stays layered: each module imports only kerash modules of its layer or below."""

import ast

from conftest import ROOT

LAYERS = [
    ("tensor files", ["errors", "tensorio", "textformat", "labels", "workdir"]),
    ("functions", ["functions", "ops", "datasets"]),
    ("layers", ["layers", "network"]),
    ("model", ["model"]),
    ("training", ["training"]),
    ("evolve", ["evolve"]),
    ("pictures", ["plot"]),
    ("cli", ["cli"]),
]
RANK = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}


def _module_name(path):
    rel = path.relative_to(ROOT / "kerash").with_suffix("")
    return rel.parts[0]


def _imported(path):
    """Top-level kerash modules imported by the file (absolute or relative imports)."""
    tree = ast.parse(path.read_text())
    package_depth = len(path.relative_to(ROOT / "kerash").parts) - 1
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(path.relative_to(ROOT / "kerash").parts[:-1])[: package_depth - (node.level - 1)]
                parts = base + (node.module.split(".") if node.module else [])
                if parts:
                    found.add(parts[0])
                else:  # from . import x, y (modules, or the package's own __version__)
                    found.update(alias.name for alias in node.names if not alias.name.startswith("__"))
            elif node.module and node.module.startswith("kerash."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("kerash."):
                    found.add(alias.name.split(".")[1])
    return found


def test_every_module_imports_only_its_layer_or_below():
    files = [p for p in (ROOT / "kerash").rglob("*.py") if p.name != "__init__.py"]
    assert len(files) > 15
    for path in files:
        own = RANK[_module_name(path)]
        for name in _imported(path):
            assert name in RANK, f"{path}: unknown kerash module {name}"
            assert RANK[name] <= own, (
                f"{path.relative_to(ROOT)} ({LAYERS[own][0]}) imports kerash.{name} ({LAYERS[RANK[name]][0]})"
            )
