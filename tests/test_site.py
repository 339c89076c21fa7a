"""The executed site: pages from executed notebooks, refusing stale or failed runs.

``make test`` builds the real site from the notebooks nbmake executed; these tests build a
one-notebook site in a temporary folder (Sphinx and myst-nb, offline, a few seconds).
"""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
# a 1x1 PNG: enough for the page to carry an <img>
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5f0b2ec0000000049454e44ae426082")).decode()


def _tool():
    spec = importlib.util.spec_from_file_location("build_site", ROOT / "tools" / "build_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site():
    pytest.importorskip("myst_nb")
    return _tool()


def _notebook(folder: Path, executed: bool, error: bool = False) -> Path:
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("plot()")
    if executed:
        code.execution_count = 1
        code.outputs = [nbformat.v4.new_output("display_data", {"image/png": PNG, "text/plain": "<Figure>"}),
                        nbformat.v4.new_output("stream", name="stdout", text="forty-two\n")]
        if error:
            code.outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[]))
    nb.cells = [nbformat.v4.new_markdown_cell("# Try a thing\n\nSome prose."), code]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "01_try_thing.ipynb"
    nbformat.write(nb, path)
    return path


def test_site_renders_an_executed_notebook_with_its_plot(site, tmp_path):
    source = _notebook(tmp_path / "src", executed=False)
    _notebook(tmp_path / "exec", executed=True)
    report = site.build(tmp_path / "exec", tmp_path / "site", paths=[source])
    page = (tmp_path / "site" / "notebooks" / "01_try_thing.html").read_text()
    assert "Try a thing" in page and "forty-two" in page and "<img" in page
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "instructor_guide.html").exists()
    assert report["notebook_pages"] == 1 and report["images"] >= 1
    assert json.loads((tmp_path / "site" / "site-report.json").read_text())["notebook_pages"] == 1


def test_site_refuses_missing_stale_and_failed_runs(site, tmp_path):
    source = _notebook(tmp_path / "src", executed=False)
    with pytest.raises(site.SiteError, match="no executed copy"):
        site.build(tmp_path / "none", tmp_path / "site", paths=[source])
    stale = _notebook(tmp_path / "stale", executed=True)
    nb = nbformat.read(stale, as_version=4)
    nb.cells[1].source = "plot(old=True)"
    nbformat.write(nb, stale)
    with pytest.raises(site.SiteError, match="stale"):
        site.build(tmp_path / "stale", tmp_path / "site", paths=[source])
    _notebook(tmp_path / "failed", executed=True, error=True)
    with pytest.raises(site.SiteError, match="error output.*ValueError"):
        site.build(tmp_path / "failed", tmp_path / "site", paths=[source])
    _notebook(tmp_path / "unrun", executed=False)
    with pytest.raises(site.SiteError, match="not executed"):
        site.build(tmp_path / "unrun", tmp_path / "site", paths=[source])


def test_site_builds_from_relative_folders_as_make_passes_them(site, tmp_path, monkeypatch):
    """`make test` passes build/nbexec and build/site relative to the repository root."""
    source = _notebook(tmp_path / "src", executed=False)
    _notebook(tmp_path / "build" / "nbexec", executed=True)
    monkeypatch.chdir(tmp_path)
    report = site.build(Path("build/nbexec"), Path("build/site"), paths=[source])
    assert report["notebook_pages"] == 1
    assert (tmp_path / "build" / "site" / "notebooks" / "01_try_thing.html").exists()


def test_site_shows_a_current_laptop_run_and_says_which_profile(site, tmp_path):
    source = _notebook(tmp_path / "src", executed=False)
    _notebook(tmp_path / "exec", executed=True)
    laptop = _notebook(tmp_path / "laptop", executed=True)
    nb = nbformat.read(laptop, as_version=4)
    nb.cells[1].outputs[1]["text"] = "laptop-numbers\n"
    nbformat.write(nb, laptop)
    report = site.build(tmp_path / "exec", tmp_path / "site", paths=[source], preferred=tmp_path / "laptop")
    page = (tmp_path / "site" / "notebooks" / "01_try_thing.html").read_text()
    assert "laptop-numbers" in page and "forty-two" not in page and "This page shows the" in page
    assert report["notebooks"][0]["profile"] == "laptop"
    # a stale laptop copy (its code differs from the source) falls back to the smoke copy
    nb.cells[1].source = "plot(old=True)"
    nbformat.write(nb, laptop)
    report = site.build(tmp_path / "exec", tmp_path / "site", paths=[source], preferred=tmp_path / "laptop")
    page = (tmp_path / "site" / "notebooks" / "01_try_thing.html").read_text()
    assert "forty-two" in page and "laptop-numbers" not in page and report["notebooks"][0]["profile"] == "smoke"
    assert "smoke" in page and "This page shows the" in page
