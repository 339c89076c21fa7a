"""Notebook metadata is what JupyterLab itself writes, so opening a notebook does not modify it.

The normaliser (``tools/normalize_notebooks.py``) writes it; this file checks every committed
notebook and the normaliser's behaviour on small notebooks built here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
# COOKBOOK_NOTEBOOKS_DIR checks a normalised copy before the real folder is rewritten.
NOTEBOOKS = sorted(Path(os.environ.get("COOKBOOK_NOTEBOOKS_DIR", ROOT / "notebooks")).glob("*.ipynb"))
TOOL = ROOT / "tools" / "normalize_notebooks.py"


def _tool():
    spec = importlib.util.spec_from_file_location("normalize_notebooks", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool():
    return _tool()


@pytest.fixture(scope="module")
def lab(tool):
    return tool.lab_metadata()


def test_lab_metadata_is_the_python3_kernel(lab):
    # What Lab 4 wrote when it opened and saved a notebook here (display name from the
    # kernelspec, language_info from ipykernel's kernel_info reply).
    assert lab["kernelspec"] == {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    info = lab["language_info"]
    assert {k: v for k, v in info.items() if k != "version"} == {
        "codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
        "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3"}
    assert info["version"] == ".".join(map(str, sys.version_info[:3]))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_lab_metadata(path, tool, lab):
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    assert nb["metadata"].get("kernelspec") == lab["kernelspec"], \
        f"{path.name}: kernelspec is not Lab's; run .venv/bin/python tools/normalize_notebooks.py"
    info = nb["metadata"].get("language_info", {})
    assert {k: v for k, v in info.items() if k != "version"} == \
        {k: v for k, v in lab["language_info"].items() if k != "version"}, \
        f"{path.name}: language_info is not Lab's; run .venv/bin/python tools/normalize_notebooks.py"
    # Lab records the kernel's Python version; a different patch release changes that line only.
    assert re.fullmatch(rf"{sys.version_info[0]}\.\d+\.\d+", info.get("version", "")), info
    assert "jupytext" not in nb["metadata"], f"{path.name}: conversion metadata left in the notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_in_the_servers_byte_layout(path, tool):
    """Saving from Lab (``nbformat.write``) gives back the same bytes: no outputs, no churn."""
    text = path.read_text(encoding="utf-8")
    info = json.loads(text)["metadata"].get("language_info", {})
    lab_here = tool.lab_metadata()
    lab_here["language_info"]["version"] = info.get("version", lab_here["language_info"]["version"])
    assert tool.normalize(text, lab_here, name=path.name) == text, \
        f"{path.name}: not normalised; run .venv/bin/python tools/normalize_notebooks.py"


def _messy_notebook() -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"jupytext": {"main_language": "python"}, "kernelspec": {"name": "python3",
                   "display_name": "Python 3", "language": "python"}, "language_info": {"name": "python"}}
    cell = nbformat.v4.new_code_cell("1 + 1", execution_count=3, outputs=[
        nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=3)])
    cell.metadata = {"tags": ["parameters"], "scrolled": True, "execution": {"iopub.status.busy": "x"}}
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), cell]
    return json.dumps(nb, indent=2)  # not the server's layout either


def test_normalise_writes_lab_metadata_and_strips_outputs(tool, lab):
    out = tool.normalize(_messy_notebook(), lab)
    nb = json.loads(out)
    assert nb["metadata"] == lab
    code = nb["cells"][1]
    assert code["outputs"] == [] and code["execution_count"] is None
    assert code["metadata"] == {"tags": ["parameters"]}, "tags stay, run-state metadata goes"
    assert all(c.get("id") for c in nb["cells"]) and nb["nbformat_minor"] >= 5
    assert out == nbformat.writes(nbformat.reads(out, as_version=4)) + "\n", "server byte layout"
    assert tool.normalize(out, lab) == out, "idempotent"


def test_normalise_gives_a_missing_kernelspec(tool, lab):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    assert json.loads(tool.normalize(nbformat.writes(nb), lab))["metadata"]["kernelspec"] == lab["kernelspec"]


def test_normalise_rejects_a_file_that_is_not_a_notebook(tool, lab):
    with pytest.raises(ValueError, match="broken.ipynb: not a readable notebook"):
        tool.normalize("{not json", lab, name="broken.ipynb")


def test_check_mode_reports_and_fixes(tmp_path):
    path = tmp_path / "a.ipynb"
    messy = _messy_notebook()
    path.write_text(messy)
    check = subprocess.run([sys.executable, str(TOOL), "--check", str(path)], capture_output=True, text=True)
    assert check.returncode == 1 and "would change" in check.stdout
    assert path.read_text() == messy, "--check changes nothing"
    assert subprocess.run([sys.executable, str(TOOL), str(path)], capture_output=True).returncode == 0
    again = subprocess.run([sys.executable, str(TOOL), "--check", str(path)], capture_output=True, text=True)
    assert again.returncode == 0, again.stdout


def test_contributors_keep_outputs_out_of_git():
    """The standard configurations exist: a pre-commit hook and a git diff driver."""
    config = (ROOT / ".pre-commit-config.yaml").read_text()
    assert "nbstripout" in config and "tools/normalize_notebooks.py" in config
    assert "*.ipynb" in (ROOT / ".gitattributes").read_text()
