"""Command line: ``python -m cookbook {build,bench,run-notebooks,results,check,clicklog,recipe,workshop}``.

* ``build``          build (or load) the API-docs corpus for a profile and print its manifest
* ``bench``          print the benchmark table (see :mod:`cookbook.bench`)
* ``run-notebooks``  execute every notebook into ``runs/`` (git-ignored) and time each
* ``results``        print the headline results of a profile (default laptop) from
                     ``data/results/<profile>/*.json``; ``--update-readme`` writes RESULTS.md (every
                     profile), that profile's block in README.md and the times table (see
                     :mod:`cookbook.results`)
* ``check``          validate a data folder (``--data DIR`` or ``apidocs``): what it holds, which
                     recipes can run on it and why not (see :mod:`cookbook.check`)
* ``clicklog``       your own click log (``--log FILE --out DIR``): identifiability, position-bias
                     curve with its band, propensity weights (see :mod:`cookbook.clicklog`)
* ``recipe NAME``    run a training recipe on a BEIR folder: ``--data DIR --out DIR [--set k=v]``
                     writes a loadable model and a report (see :mod:`cookbook.recipes`)
* ``workshop``       participant notebooks, a data/cache archive and the instructor guide

Each command imports its module inside its function, so ``python -m cookbook --help`` and the
light commands start in a fraction of a second without loading the recipes' dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from cookbook.config import ROOT, profile


def _build(args) -> int:
    from cookbook.corpus import load_apidocs

    data = load_apidocs(profile=args.profile, rebuild=args.rebuild)
    print(json.dumps({k: data.manifest[k] for k in ("counts", "checksum", "versions")}, indent=1))
    return 0


def _bench(args) -> int:
    from cookbook import bench

    name = profile(args.profile).name
    rows = bench.run(name, args.part or None)
    print(f"# cookbook bench (profile {name})\n")
    print(bench.format_table(rows))
    return 0


def run_notebooks(paths: list[Path], output: Path, timeout: int = 1800) -> list[dict]:
    """Execute notebooks in order with nbclient; failures are reported, not hidden."""
    import nbformat
    from nbclient import NotebookClient

    output.mkdir(parents=True, exist_ok=True)
    report = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        error = None
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        except Exception as err:  # keep going: one failure should not hide the others
            error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        seconds = round(time.perf_counter() - start, 1)
        nbformat.write(nb, output / path.name)
        report.append({"notebook": path.name, "seconds": seconds, "ok": error is None, "error": error})
        print(f"{'ok ' if error is None else 'FAIL'} {seconds:7.1f}s  {path.name}" + (f"  {error}" if error else ""),
              flush=True)
    return report


def _run_notebooks(args) -> int:
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        paths = [p for p in paths if any(p.name.startswith(o) for o in args.only)]
    if not paths:
        print("no notebooks matched", file=sys.stderr)
        return 2
    os.environ.setdefault("COOKBOOK_PROFILE", profile().name)
    out = Path(args.output)
    report = run_notebooks(paths, out)
    timings = out / "timings.json"
    previous = json.loads(timings.read_text())["notebooks"] if timings.exists() else []
    merged = {r["notebook"]: r for r in previous + report}  # a partial run (--only) keeps the others
    timings.write_text(json.dumps({"profile": profile().name, "notebooks": sorted(merged.values(),
                                   key=lambda r: r["notebook"])}, indent=1))
    return 0 if all(r["ok"] for r in report) else 1


def _results(args) -> int:
    from cookbook import results

    by_profile = results.load_all()
    if not by_profile:
        print("no results yet: run `make run` first", file=sys.stderr)
        return 1
    shown = args.profile or "laptop"
    if shown in by_profile:
        print(results.headline_table(by_profile[shown]))
    else:
        print(f"no {shown} results yet (have: {', '.join(by_profile)}); RESULTS.md lists them", file=sys.stderr)
    if args.update_readme:
        written = results.update_files(ROOT, profile=shown)
        print(f"wrote {', '.join(k for k in ('RESULTS.md', 'readme_results', 'figure', 'times') if written.get(k))}"
              + ("" if written.get("readme_results") else f" (README results block kept: no {shown} results)"),
              file=sys.stderr)
    return 0


def _parse_sets(items: list[str] | None) -> dict:
    """``--set key=value`` pairs; values are read as JSON when they parse (numbers, lists)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _recipe(args) -> int:
    from cookbook import recipes
    from cookbook.beir import DataFormatError

    os.environ.setdefault("COOKBOOK_PROGRESS", "1")  # tqdm bars for encoding and training steps
    try:
        report = recipes.run(args.name, args.data, args.out, **_parse_sets(args.set))
    except (recipes.RecipeError, DataFormatError) as err:
        print(f"cookbook recipe {args.name}: {err}", file=sys.stderr)
        return 2
    print(recipes.report_markdown(report))
    print(f"model: {Path(args.out) / 'model'}\nreport: {Path(args.out) / 'report.json'}", file=sys.stderr)
    return 0


def _check(args) -> int:
    from cookbook import check

    return check.main(args.data)


def _clicklog(args) -> int:
    from cookbook import clicklog

    return clicklog.main(args.log, args.out, n_boot=args.boot)


def _workshop(args) -> int:
    from cookbook import workshop

    try:
        manifest = workshop.build_kit(Path(args.out), prepare=not args.no_prepare,
                                      include_llm_cache=not args.no_llm_cache,
                                      include_models=not args.no_models, overwrite=args.overwrite)
    except workshop.WorkshopError as err:
        print(f"workshop: {err}", file=sys.stderr)
        return 1
    archive = manifest["archive"]
    print(f"{args.out}: {len(manifest['participant_notebooks'])} participant notebooks (solutions left out), "
          f"{archive['path']} ({archive['bytes'] / 1e6:.0f} MB: {', '.join(archive['entries'])}), INSTRUCTOR.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cookbook", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="build or load the API-docs corpus")
    p.add_argument("--profile", default=None)
    p.add_argument("--rebuild", action="store_true")
    p.set_defaults(func=_build)
    p = sub.add_parser("bench", help="print the benchmark table")
    p.add_argument("--profile", default=None)
    p.add_argument("--part", action="append", help="foundation, speed, llm, rerank, kge, clicks (repeatable; see cookbook.bench)")
    p.set_defaults(func=_bench)
    p = sub.add_parser("run-notebooks", help="execute every notebook into a folder")
    p.add_argument("--output", default=str(ROOT / "runs"))
    p.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 10 20")
    p.set_defaults(func=_run_notebooks)
    p = sub.add_parser("results", help="print the headline results table")
    p.add_argument("--profile", default=None, help="the profile the README shows (default laptop)")
    p.add_argument("--update-readme", action="store_true", help="write RESULTS.md and the README blocks")
    p.set_defaults(func=_results)
    p = sub.add_parser("workshop", help="write participant notebooks and a data/cache archive")
    p.add_argument("--out", default=str(ROOT / "build" / "workshop"))
    p.add_argument("--overwrite", action="store_true", help="replace an existing kit")
    p.add_argument("--no-prepare", action="store_true", help="archive data/cache as it is")
    p.add_argument("--no-llm-cache", action="store_true", help="leave the LLM cache out")
    p.add_argument("--no-models", action="store_true", help="leave the converted models out")
    p.set_defaults(func=_workshop)
    p = sub.add_parser("recipe", help="run a training recipe on a BEIR folder and save the model")
    p.add_argument("name", help="promptagator, customir, ssra, bixse, lce, scincl, revela")
    p.add_argument("--data", required=True, help="a BEIR folder (or 'apidocs' for the built-in corpus)")
    p.add_argument("--out", required=True, help="where the model folder and the report go")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a recipe size, e.g. docs=200")
    p.set_defaults(func=_recipe)
    p = sub.add_parser("check", help="validate a data folder and say which recipes can run on it")
    p.add_argument("--data", required=True, help="a BEIR folder (or 'apidocs' for the built-in corpus)")
    p.set_defaults(func=_check)
    p = sub.add_parser("clicklog", help="ULTR diagnostics of your own click log, written as a report")
    p.add_argument("--log", required=True, help="CSV/TSV (optionally .gz) or Parquet: query, document, "
                   "position, click[, session, feat_*]")
    p.add_argument("--out", required=True, help="the report folder")
    p.add_argument("--boot", type=int, default=20, help="bootstrap refits for the band (default 20)")
    p.set_defaults(func=_clicklog)
    args = parser.parse_args(argv)
    return args.func(args)
