"""The documents refer only to files a clone has: every relative link and backticked .md path resolves in the repository."""

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
