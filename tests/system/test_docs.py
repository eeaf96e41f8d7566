"""The documents match the repository: every relative link, anchor, backticked .md path and path into the
repository's folders resolves, and the module maps (the README's "Code layout", the package docstring) are
the layering table of test_layering.py, in order."""

import re

from conftest import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def references(text):
    """Relative link targets (without their #anchor) and backticked paths ending in .md."""
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    found = [link.split("#")[0] for link in links if not re.match(r"[a-z]+:|#", link)]
    return found + re.findall(r"`([^`\s]+\.md)`", text)


def test_every_reference_resolves_inside_the_repository():
    assert len(DOCUMENTS) >= 4
    checked = 0
    for document in DOCUMENTS:
        for target in references(document.read_text()):
            path = (document.parent / target).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), f"{document.relative_to(ROOT)}: {target}"
            checked += 1
    assert checked >= 3


def test_references_are_found():
    text = "see [a](docs/a.md#x), [web](https://x.org/b.md), [here](#top) and `../shared/C.md`"
    assert references(text) == ["docs/a.md", "../shared/C.md"]


def slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_anchor_names_a_heading_of_its_document():
    checked = 0
    for document in DOCUMENTS:
        for link in re.findall(r"\]\(([^)\s]*#[^)\s]+)\)", document.read_text()):
            target, _, anchor = link.partition("#")
            if re.match(r"[a-z]+:", target):
                continue
            path = (document.parent / target) if target else document
            headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M)
            assert anchor in {slug(h) for h in headings}, f"{document.relative_to(ROOT)}: {link}"
            checked += 1
    assert checked >= 3
    assert slug("Graph models: branches, merges and memory") == "graph-models-branches-merges-and-memory"


def test_every_path_into_the_repository_exists():
    """A backticked path that starts with one of the repository's folders (`bench/memory.py`, `tests/unit/`)
    names a file or folder that exists; paths with a placeholder in capitals (`scripts/NAME`) aside."""
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")}
    checked = 0
    for document in DOCUMENTS:
        for path in re.findall(r"`([^`\s]+/[^`\s]*)`", document.read_text()):
            parts = path.rstrip("/").split("/")
            if parts[0] not in folders or any(part.isupper() for part in parts):
                continue
            assert (ROOT / path).exists(), f"{document.relative_to(ROOT)}: {path}"
            checked += 1
    assert checked >= 20


# ---------------------------------------------------------------- the module maps


def layering_table():
    """[(layer, [module, …])] of tests/system/test_layering.py, the one table of the package's layers."""
    from test_layering import LAYERS

    return [(name, list(modules)) for name, modules in LAYERS]


def readme_layout():
    """[(layer, [module, …], what)] of the README's "Code layout" table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Code layout\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # after the header
    table = []
    for row in rows:
        layer, modules, what = (cell.strip() for cell in row.strip().strip("|").split(" | "))
        table.append((layer, [re.sub(r"(\.py|/)$", "", m) for m in re.findall(r"`([^`]+)`", modules)], what))
    return table


def test_the_readme_lists_the_layers_and_their_modules_in_order():
    readme = readme_layout()
    assert [(layer, modules) for layer, modules, _ in readme] == layering_table()
    # and the files it names in each layer are there
    for layer, modules, what in readme:
        folders = [ROOT / "kerash" / m for m in modules if (ROOT / "kerash" / m).is_dir()] or [ROOT / "kerash"]
        for name in re.findall(r"`([\w.]+(?:\.py|/))`", what):
            assert any((folder / name).exists() for folder in folders), f"README, {layer}: {name} is not in {modules}"


def test_the_package_docstring_lists_the_layers_and_their_modules_in_order():
    import kerash

    rows = re.findall(r"^    (\S.*?)\s{2,}(\S.*)$", kerash.__doc__, flags=re.M)
    assert [(layer, modules.split(", ")) for layer, modules in rows] == layering_table()


def test_every_module_of_the_package_is_in_the_table():
    listed = {m for _, modules in layering_table() for m in modules}
    found = {p.stem if p.is_file() else p.name for p in (ROOT / "kerash").iterdir()
             if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()}
    assert found == listed
