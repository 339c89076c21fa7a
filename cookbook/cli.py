"""Command line: ``python -m cookbook {build,bench,run-notebooks,results}``.

* ``build``          build (or load) the API-docs corpus for a profile and print its manifest
* ``bench``          print the benchmark table (see :mod:`cookbook.bench`)
* ``run-notebooks``  execute every notebook into ``runs/`` (git-ignored) and time each
* ``results``        print the results table from ``data/results/*.json``; ``--update-readme``
                     writes it between the markers in README.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from cookbook.config import ROOT, profile

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
TIMES_START, TIMES_END = "<!-- times:start -->", "<!-- times:end -->"


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


def _is_summary(value) -> bool:
    return isinstance(value, dict) and "nDCG@10" in value


def _is_comparison(value) -> bool:
    return isinstance(value, dict) and {"diff", "t_p", "ci_low", "ci_high"} <= set(value)


def _system_rows(metrics: dict) -> list[tuple[str, dict]]:
    """(system, summary) pairs: top-level summaries, and summaries grouped one level down
    (``{"test": {"BM25": {...}, ...}}``)."""
    rows = []
    for key, value in metrics.items():
        if _is_summary(value):
            rows.append((key, value))
        elif isinstance(value, dict) and value and all(_is_summary(v) for v in value.values()):
            rows.extend(value.items())
    return rows


def results_table(results: dict[str, dict]) -> str:
    """Markdown table of every notebook's headline metrics (one row per system)."""
    lines = ["| notebook | profile | system | nDCG@10 | R@10 | R@100 | RR@10 | notes |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for name, res in results.items():
        notes = res.get("notes", "")
        for system, metrics in _system_rows(res.get("metrics", {})):
            cells = [f"{metrics[m]:.3f}" if isinstance(metrics.get(m), (int, float)) else "" for m in
                     ("nDCG@10", "R@10", "R@100", "RR@10")]
            lines.append(f"| {name} | {res.get('profile', '')} | {system} | " + " | ".join(cells) + f" | {notes} |")
    return "\n".join(lines)


def _comparison_item(label: str, value: dict) -> tuple[str, str]:
    return (f"{label}: {value.get('metric', '')} difference",
            f"{value['diff']:+.4f} (95% CI {value['ci_low']:+.4f} to {value['ci_high']:+.4f}; "
            f"paired t p={value['t_p']:.2g}; {value.get('queries', '?')} queries)")


def other_numbers_table(results: dict[str, dict]) -> str:
    """Markdown table of every other number a notebook saved (flat metrics, nested one level)."""
    lines = ["| notebook | profile | measurement | value |", "|---|---|---|---:|"]
    for name, res in results.items():
        for key, value in res.get("metrics", {}).items():
            items = []
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                items = [(key, value)]
            elif _is_comparison(value):
                items = [_comparison_item(key, value)]
            elif isinstance(value, dict) and value and all(_is_comparison(v) for v in value.values()):
                items = [_comparison_item(f"{key} / {k}", v) for k, v in value.items()]
            elif isinstance(value, dict) and not _is_summary(value):
                items = [(f"{key} / {k}", v) for k, v in value.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)]
            for label, number in items:
                shown = f"{number:.4g}" if isinstance(number, (int, float)) else number
                lines.append(f"| {name} | {res.get('profile', '')} | {label} | {shown} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def times_table(runs_dir: Path) -> str:
    """Markdown table of notebook wall times per profile, from ``runs/<profile>/timings.json``."""
    seen: dict[str, dict[str, str]] = {}
    profiles = []
    for path in sorted(runs_dir.glob("*/timings.json")):
        report = json.loads(path.read_text())
        profiles.append(report["profile"])
        for row in report["notebooks"]:
            cell = f"{row['seconds'] / 60:.1f} min" + ("" if row["ok"] else " (failed)")
            seen.setdefault(row["notebook"], {})[report["profile"]] = cell
    lines = ["| notebook | " + " | ".join(profiles) + " |", "|---|" + "---:|" * len(profiles)]
    for name in sorted(seen):
        lines.append(f"| {name} | " + " | ".join(seen[name].get(p, "") for p in profiles) + " |")
    return "\n".join(lines)


def _replace_block(text: str, start: str, end: str, body: str) -> str:
    if start not in text or end not in text:
        raise SystemExit(f"README.md has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + start + "\n" + body + "\n" + end + tail


def _results(args) -> int:
    from cookbook.evaluate import load_results

    results = load_results()
    if not results:
        print("no results yet: run `make run` first", file=sys.stderr)
        return 1
    table = results_table(results)
    others = other_numbers_table(results)
    if others:
        table += "\n\nOther headline numbers (comparisons, link prediction, click-model studies):\n\n" + others
    print(table)
    if args.update_readme:
        readme = ROOT / "README.md"
        text = _replace_block(readme.read_text(), README_START, README_END, table)
        times = times_table(ROOT / "runs")
        print(times)
        text = _replace_block(text, TIMES_START, TIMES_END, times)
        readme.write_text(text)
        print("README.md updated", file=sys.stderr)
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
    p.add_argument("--part", action="append", help="foundation, llm, kge, clicks (repeatable)")
    p.set_defaults(func=_bench)
    p = sub.add_parser("run-notebooks", help="execute every notebook into a folder")
    p.add_argument("--output", default=str(ROOT / "runs"))
    p.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 10 20")
    p.set_defaults(func=_run_notebooks)
    p = sub.add_parser("results", help="print the results table")
    p.add_argument("--update-readme", action="store_true")
    p.set_defaults(func=_results)
    args = parser.parse_args(argv)
    return args.func(args)
