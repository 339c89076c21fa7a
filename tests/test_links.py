"""Every relative link in the notebooks' markdown and in the README resolves to a file, every
notebook ends with a "Next" section that links to an existing notebook, and its "recipe in one
cell" is a code cell (so nbmake executes it), not a markdown code block."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DOCS = [ROOT / "README.md"] + [p for p in (ROOT / "RESULTS.md", ROOT / "data" / "README.md") if p.exists()] + sorted(
    (ROOT / "docs").glob("*.md"))
# [text](target) and ![alt](target); the target stops at whitespace or ")" (an optional "title" follows)
LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
EXTERNAL = ("http://", "https://", "mailto:", "#")


def markdown_of(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in cells if c["cell_type"] == "markdown"]


def strip_code(text: str) -> str:
    """Drop fenced blocks and inline code: a link written as code is an example, not a link."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def relative_links(text: str) -> list[str]:
    return [m["target"] for m in LINK.finditer(strip_code(text)) if not m["target"].startswith(EXTERNAL)]


def broken(source: Path, text: str) -> list[str]:
    out = []
    for target in relative_links(text):
        path = target.split("#", 1)[0]
        if path and not (source.parent / path).exists():
            out.append(target)
    return out


def test_the_link_pattern_reads_links_and_skips_code():
    text = "[a](x.ipynb) ![img](docs/i.png \"t\") [web](https://e.org) [anchor](#top) `[code](no.md)`\n```\n[f](no2.md)\n```"
    assert relative_links(text) == ["x.ipynb", "docs/i.png"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_links_resolve(notebook):
    missing = [t for md in markdown_of(notebook) for t in broken(notebook, md)]
    assert not missing, f"{notebook.name} links to missing files: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_document_links_resolve(doc):
    missing = broken(doc, doc.read_text())
    assert not missing, f"{doc.relative_to(ROOT)} links to missing files: {missing}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_next_is_a_link_to_an_existing_notebook(notebook):
    cells = markdown_of(notebook)
    nexts = [md.split("## Next", 1)[1] for md in cells if "## Next" in md]
    assert nexts, f"{notebook.name} has no '## Next' section"
    targets = [t for t in relative_links(nexts[-1]) if t.endswith(".ipynb")]
    if notebook == NOTEBOOKS[-1] and not targets:
        return  # the last notebook of the path may point back to the README instead
    assert targets, f"{notebook.name}: its Next section names no notebook as a markdown link"
    assert all((notebook.parent / t).exists() for t in targets), f"{notebook.name}: Next links to {targets}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_the_recipe_in_one_cell_is_executed_code(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    at = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
          and "## The recipe in one cell" in "".join(c["source"])]
    assert at, f"{notebook.name} has no 'The recipe in one cell' section"
    heading = "".join(cells[at[0]]["source"]).split("## The recipe in one cell", 1)[1]
    assert "```python" not in heading, f"{notebook.name}: the recipe is a markdown block, not a code cell"
    following = cells[at[0] + 1] if at[0] + 1 < len(cells) else None
    assert following is not None and following["cell_type"] == "code", \
        f"{notebook.name}: the cell after 'The recipe in one cell' must be code"


def test_the_readme_is_short_and_links_its_reference_pages():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 180
    first_screen = "\n".join(text.splitlines()[:20])
    assert "make run" in first_screen and "make test" in first_screen
    index = (ROOT / "docs" / "index.md").read_text()
    for page in ("building_blocks", "scaling", "contributing"):
        assert f"docs/{page}.md" in text, f"README does not link docs/{page}.md"
        assert f"\n{page}\n" in index, f"docs/index.md does not list {page}"
