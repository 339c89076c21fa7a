"""Workshop kit: participant copies of the notebooks and a pre-built ``data/cache`` archive.

``python -m cookbook workshop --out build/workshop`` (or ``make workshop``) writes::

    build/workshop/
      participant/              the repository as participants get it: package, notebooks
                                (outputs stripped), fixtures, Makefile (`make install`, `make lab`);
                                the exercise solutions (notebooks/solutions/), the tests and CI
                                are left out
      data-cache.tar.gz         data/cache prepared here (corpus for smoke and laptop, the
                                converted SmolLM2 folder, KGE checkpoints, the LLM cache), to
                                unpack in a participant's checkout: tar -xzf data-cache.tar.gz
      INSTRUCTOR.md             docs/instructor_guide.md plus the measured notebook times
                                (from runs/<profile>/timings.json, when such runs exist)
      manifest.json             what is in the kit: files, sizes, SHA-256 of the archive, versions

With the archive unpacked, a participant's first run needs no corpus build and no model
conversion, and replays the LLM calls the instructor's runs made (same prompts and settings).

Taught in: docs/instructor_guide.md (the kit is for instructors, not a notebook step)
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from cookbook import corpus, models
from cookbook.config import CACHE_DIR, ROOT
from cookbook.results import times_table

# data/cache entries that go into the archive; `runs` holds models trained by notebooks, which
# participants train themselves, so it is left out.
CACHE_ENTRIES = ("apidocs", "models", "kge", "llm_cache.sqlite")
# A participant copy is for learning, not for developing the cookbook: the exercise solutions go,
# and with them the test suite and CI (which check the solutions and run every notebook).
LEFT_OUT = ("notebooks/solutions/", "tests/", ".ci/")
SOLUTIONS_LINE = re.compile(r"^Solutions:.*notebooks/solutions/.*$", re.M)
PARTICIPANT_SOLUTIONS_NOTE = "Solutions: your instructor has them; try each exercise first."
GUIDE_TIMES = "<!-- workshop:times -->"


class WorkshopError(ValueError):
    """The kit cannot be written as asked (a missing source, an output folder in the way)."""


def prepare_cache(profiles: tuple[str, ...] = ("smoke", "laptop")) -> list[str]:
    """Build what a first run would build: the corpus per profile and the converted generator."""

    done = []
    for name in profiles:
        corpus.load_apidocs(profile=name)
        done.append(f"apidocs ({name})")
    try:
        done.append(str(models.cached_lm_folder("generator").relative_to(CACHE_DIR)))
    except FileNotFoundError:  # no offline generator package: participants use the hub id
        pass
    return done


def _tracked_files(root: Path) -> list[str]:
    """Files of the checkout that git does not ignore (every file outside caches when it is not one)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root, capture_output=True, check=True)
        files = [f for f in out.stdout.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        skip = (".git/", ".venv/", "data/cache/", "data/results/", "runs/", "build/")
        files = [str(p.relative_to(root)) for p in root.rglob("*")
                 if p.is_file() and not str(p.relative_to(root)).startswith(skip)]
    return sorted(f for f in files if (root / f).is_file())


def participant_notebook(text: str) -> str:
    """A notebook for participants: outputs stripped, the pointer to the solutions replaced,
    and any cell tagged ``solution`` removed."""
    import nbformat

    nb = nbformat.reads(text, as_version=4)
    nb.cells = [c for c in nb.cells if "solution" not in c.metadata.get("tags", [])]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        elif cell.cell_type == "markdown":
            cell.source = SOLUTIONS_LINE.sub(PARTICIPANT_SOLUTIONS_NOTE, cell.source)
    return nbformat.writes(nb) + "\n"


def write_participant_tree(out: Path, root: Path = ROOT) -> list[str]:
    """Copy the repository's tracked files into ``out``, without the exercise solutions."""
    written = []
    for rel in _tracked_files(root):
        if rel.startswith(LEFT_OUT):
            continue
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.startswith("notebooks/") and rel.endswith(".ipynb"):
            target.write_text(participant_notebook((root / rel).read_text(encoding="utf-8")), encoding="utf-8")
        else:
            shutil.copy2(root / rel, target)
        written.append(rel)
    return written


def write_cache_archive(path: Path, cache_dir: Path = CACHE_DIR, entries=CACHE_ENTRIES,
                        compresslevel: int = 1) -> list[str]:
    """Archive the chosen ``data/cache`` entries as ``data/cache/...`` paths (gzip, fast level:
    model weights barely compress)."""
    present = [e for e in entries if (cache_dir / e).exists()]
    if not present:
        raise WorkshopError(f"{cache_dir}: none of {', '.join(entries)} exists; run `make workshop` "
                            "(it prepares the cache) or a notebook first")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=compresslevel) as tar:
        for entry in present:
            tar.add(cache_dir / entry, arcname=f"data/cache/{entry}",
                    filter=lambda info: None if info.name.endswith((".tmp", ".lock")) else info)
    tmp.rename(path)
    return present


def times_markdown(runs_dir: Path) -> str:
    """Measured wall time per notebook and profile, or a sentence saying none were measured."""

    if not list(Path(runs_dir).glob("*/timings.json")):
        return ("No timed runs were found in `runs/` when this kit was written: run `make run` "
                "(laptop) and `make run PROFILE=smoke` on the workshop machine, then `make workshop` again.")
    return ("Wall time to execute each notebook, measured on the machine that wrote this kit "
            "(`runs/<profile>/timings.json`):\n\n" + times_table(runs_dir))


def write_guide(path: Path, guide: Path, runs_dir: Path) -> None:
    text = guide.read_text(encoding="utf-8")
    times = times_markdown(runs_dir)
    text = text.replace(GUIDE_TIMES, times) if GUIDE_TIMES in text else text + "\n\n" + times + "\n"
    path.write_text(text, encoding="utf-8")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_kit(out: Path, *, root: Path = ROOT, cache_dir: Path = CACHE_DIR, runs_dir: Path | None = None,
              prepare: bool = True, include_llm_cache: bool = True, include_models: bool = True,
              overwrite: bool = False) -> dict:
    """Write the workshop kit into ``out`` and return its manifest (also saved as manifest.json)."""
    out = Path(out)
    guide = root / "docs" / "instructor_guide.md"
    if not guide.exists():
        raise WorkshopError(f"{guide}: the instructor guide is missing")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise WorkshopError(f"{out}: exists and is not empty (pass overwrite=True / --overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    prepared = prepare_cache() if prepare else []
    entries = tuple(e for e in CACHE_ENTRIES if (include_llm_cache or e != "llm_cache.sqlite")
                    and (include_models or e != "models"))
    files = write_participant_tree(out / "participant", root)
    archive = out / "data-cache.tar.gz"
    archived = write_cache_archive(archive, cache_dir, entries)
    write_guide(out / "INSTRUCTOR.md", guide, runs_dir or root / "runs")
    import importlib.metadata as md

    versions = {}
    for name in ("torch", "transformers", "sentence-transformers", "jupyterlab"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    manifest = {
        "participant_files": len(files),
        "participant_notebooks": sorted(f for f in files if f.startswith("notebooks/") and f.endswith(".ipynb")),
        "left_out": list(LEFT_OUT),
        "prepared": prepared,
        "archive": {"path": archive.name, "entries": archived, "bytes": archive.stat().st_size,
                    "sha256": _sha256(archive), "unpack": "tar -xzf data-cache.tar.gz  # in the checkout"},
        "versions": versions,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest
