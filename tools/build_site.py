"""Build the executed site: one HTML page per notebook, with its outputs and plots, offline.

The notebooks are executed once, in the smoke profile, and Sphinx (myst-nb) only renders them:

    .venv/bin/python tools/build_site.py --execute      # execute missing or stale ones, then build
    .venv/bin/python tools/build_site.py                # build from build/nbexec (e.g. after make test)

``make test`` runs nbmake over copies in ``build/nbexec`` (``--overwrite`` keeps their outputs)
and then this script without ``--execute``, so CI builds the site without running the notebooks
twice. An executed copy whose cell sources differ from ``notebooks/`` is stale and refused, so a
page never shows code other than the notebook's. The build fails when a notebook has no page,
or when an executed notebook holds an error output. A summary goes to ``build/site/site-report.json``.

Where ``make run`` left an executed ``laptop`` copy of a notebook (``runs/laptop``, the run a
learner should look at: the smoke pages show tiny slices where several techniques cannot show
their effect) and that copy is current and clean, the page renders it instead of the smoke
copy. Every page says which profile it shows.
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
LAPTOP_RUNS = ROOT / "runs" / "laptop"
BANNERS = {
    "laptop": ("> **This page shows the `laptop` run** of this notebook: the profile `make run` uses, sized "
               "for a 2-core CPU and about 10 minutes, with the numbers the README reports."),
    "smoke": ("> **This page shows the `smoke` run** of this notebook: tiny slices that check the code "
              "in under 2 minutes, too small for several techniques to show their effect. `make run` "
              "writes the `laptop` run, and the site shows it when it is there."),
}


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


def choose(source: Path, executed_dir: Path, preferred: Path | None) -> tuple[Path, str, dict]:
    """The executed copy a page renders and its profile: the ``preferred`` (laptop) copy when it
    is there, current and clean, else the smoke copy in ``executed_dir`` (which must be)."""
    if preferred is not None and (preferred / source.name).exists():
        try:
            return preferred / source.name, "laptop", check_executed(source, preferred / source.name)
        except SiteError:
            pass  # a stale or failed laptop copy: the smoke copy is shown
    return executed_dir / source.name, "smoke", check_executed(source, executed_dir / source.name)


def _with_banner(executed: Path, target: Path, profile: str) -> None:
    """Copy an executed notebook with a note on its profile after its title cell."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    nb.cells.insert(1 if nb.cells else 0, nbformat.v4.new_markdown_cell(BANNERS[profile]))
    nbformat.write(nb, target)


def build(executed_dir: Path, out_dir: Path, paths: list[Path] | None = None,
          preferred: Path | None = None) -> dict:
    """Render the executed notebooks and ``docs/`` into HTML under ``out_dir``; return a report.
    ``preferred``: a folder of executed laptop copies shown instead of the smoke ones."""
    paths = paths if paths is not None else sources()
    if not paths:
        raise SiteError(f"no notebooks in {NOTEBOOKS}")
    # sphinx runs with cwd=src: relative folders (as `make test` passes them) must be absolute
    executed_dir, out_dir = executed_dir.resolve(), out_dir.resolve()
    preferred = preferred.resolve() if preferred is not None else None
    started = time.perf_counter()
    chosen = [choose(p, executed_dir, preferred) for p in paths]
    checked = [{**row, "profile": profile} for _, profile, row in chosen]
    src = out_dir.parent / (out_dir.name + "-src")
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns("__pycache__", "_build"))
    (src / "notebooks").mkdir()
    for p, (executed, profile, _) in zip(paths, chosen):
        _with_banner(executed, src / "notebooks" / p.name, profile)
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
    parser.add_argument("--laptop", type=Path, default=LAPTOP_RUNS,
                        help="executed laptop copies shown where current (default runs/laptop)")
    parser.add_argument("--smoke-only", action="store_true", help="show the smoke copies even where a laptop run exists")
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
        report = build(args.executed, args.out, paths, preferred=None if args.smoke_only else args.laptop)
    except SiteError as err:
        print(f"site: {err}", file=sys.stderr)
        return 1
    for line in report["warnings"]:
        print(line, file=sys.stderr)
    laptop = sum(r["profile"] == "laptop" for r in report["notebooks"])
    print(f"site: {report['notebook_pages']} notebook pages ({laptop} from the laptop run, the rest smoke; "
          f"{report['pages']} pages in all, {report['images']} images) in {report['seconds']} s -> "
          f"{args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
