"""Build the executed site: one HTML page per notebook, with its outputs and plots, offline.

The notebooks are executed once, in the smoke profile, and Sphinx (myst-nb) only renders them:

    .venv/bin/python tools/build_site.py --execute      # execute missing or stale ones, then build
    .venv/bin/python tools/build_site.py                # build from build/nbexec (e.g. after make test)

``make test`` runs nbmake over copies in ``build/nbexec`` (``--overwrite`` keeps their outputs)
and then this script without ``--execute``, so CI builds the site without running the notebooks
twice. An executed copy whose cell sources differ from ``notebooks/`` is stale and refused, so a
page never shows code other than the notebook's. The build fails when a notebook has no page,
or when an executed notebook holds an error output. A summary goes to ``build/site/site-report.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
DOCS = ROOT / "docs"


class SiteError(ValueError):
    """The site cannot be built from what is there (missing, stale or failed notebooks)."""


def sources() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _cell_sources(path: Path) -> list[tuple[str, str]]:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return [(c.cell_type, c.source) for c in nb.cells]


def check_executed(source: Path, executed: Path) -> dict:
    """Compare an executed copy with its source; return its output and error counts."""
    import nbformat

    if not executed.exists():
        raise SiteError(f"{executed}: no executed copy of {source.name} "
                        "(run `make test`, or this script with --execute)")
    if _cell_sources(executed) != _cell_sources(source):
        raise SiteError(f"{executed}: stale, its cells differ from {source}; "
                        "execute it again (--execute)")
    nb = nbformat.read(executed, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = [o for c in code for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    if errors:
        raise SiteError(f"{executed}: holds an error output ({errors[0].get('ename')}: "
                        f"{errors[0].get('evalue', '')[:200]})")
    unexecuted = [c for c in code if c.get("execution_count") is None and c.source.strip()]
    if unexecuted:
        raise SiteError(f"{executed}: {len(unexecuted)} code cells were not executed")
    images = sum("image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {}) for o in outputs)
    return {"notebook": source.name, "outputs": len(outputs), "images": images}


def execute(paths: list[Path], executed_dir: Path) -> None:
    """Execute notebooks in the smoke profile into ``executed_dir`` (the cookbook's runner)."""
    env = dict(os.environ, COOKBOOK_PROFILE="smoke", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    prefixes = [p.name[:2] for p in paths]
    subprocess.run([sys.executable, "-m", "cookbook", "run-notebooks", "--output", str(executed_dir),
                    "--only", *prefixes], cwd=ROOT, env=env, check=True)


def build(executed_dir: Path, out_dir: Path, paths: list[Path] | None = None) -> dict:
    """Render the executed notebooks and ``docs/`` into HTML under ``out_dir``; return a report."""
    paths = paths if paths is not None else sources()
    if not paths:
        raise SiteError(f"no notebooks in {NOTEBOOKS}")
    # sphinx runs with cwd=src: relative folders (as `make test` passes them) must be absolute
    executed_dir, out_dir = executed_dir.resolve(), out_dir.resolve()
    started = time.perf_counter()
    checked = [check_executed(p, executed_dir / p.name) for p in paths]
    src = out_dir.parent / (out_dir.name + "-src")
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns("__pycache__", "_build"))
    (src / "notebooks").mkdir()
    for p in paths:
        shutil.copy2(executed_dir / p.name, src / "notebooks" / p.name)
    shutil.rmtree(out_dir, ignore_errors=True)
    result = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", "1",
                             "-d", str(src / "_doctrees"), str(src), str(out_dir)],
                            cwd=src, capture_output=True, text=True)
    if result.returncode != 0:
        raise SiteError(f"sphinx-build failed ({result.returncode}):\n{result.stderr[-4000:]}")
    pages = {p.name: out_dir / "notebooks" / (p.stem + ".html") for p in paths}
    missing = [name for name, page in pages.items() if not page.exists()]
    if missing:
        raise SiteError(f"no page was written for {', '.join(missing)}")
    for row in checked:
        html = pages[row["notebook"]].read_text(encoding="utf-8")
        row["page"] = str(pages[row["notebook"]].relative_to(out_dir))
        row["page_images"] = html.count("<img")
    report = {
        "pages": len(list(out_dir.rglob("*.html"))),
        "notebook_pages": len(pages),
        "images": sum(r["page_images"] for r in checked),
        "seconds": round(time.perf_counter() - started, 1),
        "warnings": [line for line in result.stderr.splitlines() if "WARNING" in line],
        "notebooks": checked,
    }
    (out_dir / "site-report.json").write_text(json.dumps(report, indent=1))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executed", type=Path, default=ROOT / "build" / "nbexec",
                        help="folder of executed notebooks (default build/nbexec)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="HTML output folder")
    parser.add_argument("--execute", action="store_true",
                        help="first execute (smoke) the notebooks whose executed copy is missing or stale")
    parser.add_argument("--force", action="store_true", help="first execute every notebook (smoke)")
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 10 20")
    args = parser.parse_args(argv)
    paths = sources()
    if args.only:
        paths = [p for p in paths if any(p.name.startswith(o) for o in args.only)]
    if args.execute or args.force:
        stale = []
        for p in paths:
            try:
                check_executed(p, args.executed / p.name)
            except SiteError:
                stale.append(p)
        todo = paths if args.force else stale
        if todo:
            print(f"site: executing {len(todo)} notebooks in smoke", flush=True)
            execute(todo, args.executed)
    try:
        report = build(args.executed, args.out, paths)
    except SiteError as err:
        print(f"site: {err}", file=sys.stderr)
        return 1
    for line in report["warnings"]:
        print(line, file=sys.stderr)
    print(f"site: {report['notebook_pages']} notebook pages ({report['pages']} pages in all, "
          f"{report['images']} images) in {report['seconds']} s -> {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
