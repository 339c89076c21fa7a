"""The workshop kit: participant copies without solutions, the cache archive, the guide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat
import pytest

from cookbook import workshop

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("*.py"))


def _fake_data(tmp_path: Path) -> Path:
    """A data folder with a small cache: corpus, a model folder, the LLM cache, trained runs."""
    data = tmp_path / "data"
    (data / "cache" / "apidocs" / "k1").mkdir(parents=True)
    (data / "cache" / "apidocs" / "k1" / "manifest.json").write_text('{"counts": {}}')
    (data / "cache" / "models" / "generator-x").mkdir(parents=True)
    (data / "cache" / "models" / "generator-x" / "config.json").write_text("{}")
    (data / "cache" / "llm_cache.sqlite").write_bytes(b"SQLite format 3\0")
    (data / "cache" / "runs" / "20_x").mkdir(parents=True)
    (data / "cache" / "runs" / "20_x" / "model.safetensors").write_bytes(b"0" * 10)
    return data


def _fake_runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    (runs / "smoke").mkdir(parents=True)
    (runs / "smoke" / "timings.json").write_text(json.dumps({"profile": "smoke", "notebooks": [
        {"notebook": "10_explore_query_document_pairs.ipynb", "seconds": 42.0, "ok": True},
        {"notebook": "20_generate_queries_promptagator.ipynb", "seconds": 90.0, "ok": False}]}))
    return runs


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kit")
    data = _fake_data(tmp)
    manifest = workshop.build_kit(tmp / "out", cache_dir=data / "cache", runs_dir=_fake_runs(tmp), prepare=False)
    return tmp / "out", manifest


def test_participant_copies_hold_every_notebook_and_no_solution(kit):
    out, manifest = kit
    part = out / "participant"
    sources = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(p.name for p in (part / "notebooks").glob("*.ipynb")) == sources
    assert len(manifest["participant_notebooks"]) == len(sources)
    assert not (part / "notebooks" / "solutions").exists()
    assert not (part / "tests").exists(), "the tests check the solutions: not for participants"
    assert (part / "cookbook" / "__init__.py").exists() and (part / "pyproject.toml").exists()
    # no solution's code reached the participant tree
    texts = [p.read_text(errors="ignore") for p in part.rglob("*") if p.is_file()]
    for solution in SOLUTIONS:
        for line in solution.read_text().splitlines():
            if line.startswith("def exercise_"):
                assert not any(line in text for text in texts), f"{solution.name}: {line}"


def test_participant_notebooks_are_clean(kit):
    out, _ = kit
    for path in sorted((out / "participant" / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
        text = "\n".join(c.source for c in nb.cells)
        assert "notebooks/solutions/" not in text, path.name
        source = nbformat.read(ROOT / "notebooks" / path.name, as_version=4)
        assert [c.source for c in nb.cells if c.cell_type == "code"] == \
            [c.source for c in source.cells if c.cell_type == "code"], "code cells unchanged"


def test_cache_archive_holds_the_prepared_cache_but_not_trained_runs(kit):
    out, manifest = kit
    with tarfile.open(out / "data-cache.tar.gz") as tar:
        names = tar.getnames()
    assert "data/cache/apidocs/k1/manifest.json" in names
    assert "data/cache/models/generator-x/config.json" in names
    assert "data/cache/llm_cache.sqlite" in names
    assert not any(n.startswith("data/cache/runs") for n in names)
    assert manifest["archive"]["entries"] == ["apidocs", "models", "llm_cache.sqlite"]
    assert len(manifest["archive"]["sha256"]) == 64 and manifest["archive"]["bytes"] > 0
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_instructor_guide_gets_the_measured_times(kit):
    out, _ = kit
    guide = (out / "INSTRUCTOR.md").read_text()
    assert workshop.GUIDE_TIMES not in guide
    assert "| 10_explore_query_document_pairs.ipynb | 0.7 min |" in guide
    assert "1.5 min (failed)" in guide
    assert "## What to show, and where learners get stuck" in guide


def test_guide_says_when_nothing_was_measured(tmp_path):
    assert "No timed runs" in workshop.times_markdown(tmp_path)


def test_kit_refuses_an_empty_cache_and_a_used_folder(tmp_path):
    (tmp_path / "cache").mkdir()
    with pytest.raises(workshop.WorkshopError, match="none of"):
        workshop.build_kit(tmp_path / "a", cache_dir=tmp_path / "cache", prepare=False)
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("keep me")
    with pytest.raises(workshop.WorkshopError, match="not empty"):
        workshop.build_kit(used, cache_dir=tmp_path / "cache", prepare=False)
    assert (used / "x").read_text() == "keep me"


def test_cli_writes_the_kit(tmp_path):
    data = _fake_data(tmp_path)
    env = dict(os.environ, COOKBOOK_DATA=str(data))
    out = tmp_path / "kit"
    done = subprocess.run([sys.executable, "-m", "cookbook", "workshop", "--out", str(out), "--no-prepare",
                           "--no-llm-cache"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "participant notebooks (solutions left out)" in done.stdout
    with tarfile.open(out / "data-cache.tar.gz") as tar:
        assert "data/cache/llm_cache.sqlite" not in tar.getnames()


def test_guide_covers_every_notebook():
    guide = (ROOT / "docs" / "instructor_guide.md").read_text()
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"\n| {path.name[:2]} " in guide, f"docs/instructor_guide.md has no row for {path.name}"
