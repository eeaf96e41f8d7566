"""The package stays layered: each module imports only kerash modules of its layer or below."""

import ast

from conftest import ROOT

LAYERS = [
    ("tensor files", ["errors", "processes", "files"]),
    ("functions", ["functions", "ops"]),
    ("layers", ["layers"]),
    ("network", ["network"]),
    ("model", ["model"]),
    ("training", ["training"]),
    ("evolve", ["evolve"]),
    ("python API", ["api"]),
    ("pictures", ["plot"]),
    ("tools", ["cli"]),
    ("entrance", ["warm"]),
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


def _module_of(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path):
    """(module, names) of every kerash import in the file, resolved to absolute module names."""
    tree = ast.parse(path.read_text())
    package = _module_of(path) if path.name == "__init__.py" else _module_of(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] == "kerash":
                yield module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "kerash":
                    yield alias.name, []


def test_no_import_circles_between_modules():
    modules = {_module_of(p): p for p in (ROOT / "kerash").rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        found = set()
        for module, names in _imports(path):
            for n in names:  # from package import module
                if f"{module}.{n}" in modules:
                    found.add(f"{module}.{n}")
                    break
            else:
                if module in modules:
                    found.add(module)
        # A package's __init__ re-exporting its own modules is not a circle with them.
        edges[name] = {m for m in found if m != name and not (path.name == "__init__.py" and m.startswith(name + "."))}
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                raise AssertionError("import circle: " + " → ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
def test_no_private_name_is_imported_from_another_module():
    for path in (ROOT / "kerash").rglob("*.py"):
        for module, names in _imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{path.relative_to(ROOT)} imports {', '.join(private)} from {module}"


