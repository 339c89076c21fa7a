"""Every notebook follows the house style (shared/STYLE.md) and is committed clean."""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NAME = re.compile(r"^\d\d_[a-z0-9]+(_[a-z0-9]+)+\.ipynb$")


def test_there_are_notebooks():
    assert any(p.name.startswith("10_") for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_style(path):
    assert NAME.match(path.name), f"{path.name}: name must be NN_verb_object.ipynb"
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "opening markdown with an H1 title"
    for part in ("**What you'll build", "**What you'll learn", "**Prerequisites", "**Time", "**Teaches"):
        assert part in first.source, f"opening cell lacks {part}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "first code cell must be tagged 'parameters'"
    assert "profile()" in code[0].source, "the parameters cell reads the run profile"
    for cell in code:
        assert not cell.get("outputs") and cell.get("execution_count") is None, "outputs must be stripped"
        assert not re.search(r"^\s*[!%]pip", cell.source, re.M), "no !pip in notebooks"
        assert "getpass" not in cell.source
        assert not re.search(r"['\"](/work|/home|/root|/tmp|C:\\\\)", cell.source), "no absolute paths"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert re.search(r"^## 1\. ", markdown, re.M), "numbered steps"
    for heading in ("## Recap", "## The recipe in one cell", "## Exercises", "## Next"):
        assert heading in markdown, f"missing {heading}"
    assert "save_results(" in "\n".join(c.source for c in code), "headline metrics go to data/results"
    solution = ROOT / "notebooks" / "solutions" / (path.stem + ".py")
    assert solution.exists(), f"exercise solutions missing: {solution.relative_to(ROOT)}"
