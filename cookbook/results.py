"""Results tables for people: the README's headline block, ``RESULTS.md`` and one figure.

Every notebook writes ``data/results/<profile>/<notebook>.json`` with
:func:`cookbook.evaluate.save_results`. This module turns those files into

* :func:`headline_table`: at most five rows per notebook (the technique against its
  baseline, the paired difference with its 95% confidence interval and p-value), for the
  README; one profile only (``laptop`` by default), so a smoke run never shows up there;
* :func:`full_report`: every saved number of every profile, grouped per notebook, for
  ``RESULTS.md``;
* :func:`headline_figure`: the headline differences with their intervals as one PNG;
* :func:`times_table`: notebook wall times per profile from ``runs/<profile>/timings.json``.

Numbers are formatted for reading: no exponent notation (``12,345``, ``0.00021``), p-values
below one in a million as ``< 1e-6``.

A notebook saves what it measured in one cell under its "Save for notebook 90 and the README"
heading with :func:`save_notebook`: headline rows as ``(label, comparison or number, baseline,
technique)`` tuples, the metrics as they are (DataFrames and Series included). Without
headline rows, the rows are taken from the comparisons it saved (``evaluate.compare``
dictionaries), else from its system summaries, else from its first plain numbers.

Taught in: notebooks/10_explore_query_document_pairs.ipynb
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from cookbook import evaluate, plotting

PROFILES = ("smoke", "laptop", "full")
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
TIMES_START, TIMES_END = "<!-- times:start -->", "<!-- times:end -->"
GUIDE_START, GUIDE_END = "<!-- guide:start -->", "<!-- guide:end -->"
SYSTEM_METRICS = ("nDCG@10", "R@10", "R@100", "RR@10")


class ResultsError(ValueError):
    """A results file or a headline row is malformed (names the file or the field)."""


# ---------------------------------------------------------------------------
# formatting


def fmt_number(value) -> str:
    """A number as a person writes it: ``12,345``, ``123``, ``0.545``, ``0.0021``, ``0.00012``; never ``e+04``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, (int, float)):
        return str(value)
    x = float(value)
    if math.isnan(x):
        return ""
    if isinstance(value, int) or (x.is_integer() and abs(x) >= 100):
        return f"{int(round(x)):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"
    if x == 0 or abs(x) >= 0.01:
        return f"{x:.3f}"
    import numpy as np

    return np.format_float_positional(x, precision=2, unique=True, fractional=False, trim="-")


def fmt_signed(value) -> str:
    text = fmt_number(value)
    return text if not text or text.startswith("-") else "+" + text


def fmt_p(p) -> str:
    """A p-value: ``< 1e-6`` below one in a million, else two significant digits without exponent."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    p = float(p)
    if p < 1e-6:
        return "< 1e-6"
    if p >= 0.01:
        return f"{p:.2f}"
    import numpy as np

    return np.format_float_positional(p, precision=2, unique=True, fractional=False, trim="-")


def readable(key: str) -> str:
    """A saved key as a label: ``ndcg10_misspecified`` -> ``ndcg10 misspecified``."""
    return str(key).replace("_", " ").strip()


# ---------------------------------------------------------------------------
# headline rows


def is_comparison(value) -> bool:
    return isinstance(value, dict) and {"diff", "ci_low", "ci_high"} <= set(value)


def is_summary(value) -> bool:
    return isinstance(value, dict) and "nDCG@10" in value and not is_comparison(value)


def comparison_row(label: str, cmp: dict, baseline: str = "", technique: str = "") -> dict:
    """A headline row from an :func:`cookbook.evaluate.compare` result (technique B minus baseline A).

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    if not is_comparison(cmp):
        raise ResultsError(f"headline row {label!r}: a comparison needs diff, ci_low and ci_high, got {sorted(cmp)}")
    return {"label": str(label), "metric": cmp.get("metric", ""), "baseline": baseline, "technique": technique,
            "baseline_value": cmp.get("mean_a"), "value": cmp.get("mean_b"), "diff": cmp["diff"],
            "ci_low": cmp["ci_low"], "ci_high": cmp["ci_high"], "p": cmp.get("t_p"),
            "queries": cmp.get("queries")}


def value_row(label: str, value, metric: str = "", note: str = "") -> dict:
    """A headline row that is one measured number (no baseline), e.g. a throughput or an error.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ResultsError(f"headline row {label!r}: value must be a number, got {value!r}")
    return {"label": str(label), "metric": metric, "value": value, "note": note}


def row(label: str, result, baseline_or_metric: str = "", technique_or_note: str = "") -> dict:
    """A headline row from a comparison (:func:`comparison_row`: baseline, technique) or from one
    number (:func:`value_row`: metric, note); a ready row passes through.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    if isinstance(result, dict) and "label" in result:
        return result
    if isinstance(result, dict):
        return comparison_row(label, result, baseline_or_metric, technique_or_note)
    return value_row(label, float(result) if hasattr(result, "item") else result, baseline_or_metric,
                     technique_or_note)


def plain(value):
    """Metrics as JSON-able data: DataFrames by row (``{index: {column: value}}``), Series as dicts."""
    if isinstance(value, pd.DataFrame):
        return {str(k): plain(v) for k, v in value.to_dict(orient="index").items()}
    if isinstance(value, pd.Series):
        return {str(k): plain(v) for k, v in value.to_dict().items()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def save_notebook(notebook: str, headline, *, metrics: dict, timings: dict | None = None, **extra) -> Path:
    """Save a notebook's results for the README and notebook 90 in one call: ``headline`` rows as
    ``(label, comparison or number, baseline or metric, technique or note)`` tuples (:func:`row`),
    ``metrics`` with DataFrames and Series as they are, ``extra`` (sizes, seeds, LLM usage).
    Writes ``data/results/<profile>/<notebook>.json`` (:func:`cookbook.evaluate.save_results`).

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    rows = [r if isinstance(r, dict) else row(*r) for r in headline]
    return evaluate.save_results(notebook, plain(metrics), timings or {}, headline=rows,
                                 **{k: plain(v) for k, v in extra.items()})


def _walk(metrics: dict, prefix: str = ""):
    """(label, value) for every leaf and every comparison/summary dict, nested keys joined by ' / '."""
    for key, value in metrics.items():
        label = f"{prefix} / {key}" if prefix else str(key)
        if is_comparison(value) or is_summary(value):
            yield label, value
        elif isinstance(value, dict):
            yield from _walk(value, label)
        else:
            yield label, value


def headline_rows(payload: dict, limit: int = 5) -> list[dict]:
    """At most ``limit`` headline rows of one notebook's results (see the module docstring)."""
    rows = payload.get("headline")
    if rows:
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "label" in r for r in rows):
            raise ResultsError(f"{payload.get('notebook', '?')}: 'headline' must be a list of rows with a 'label'")
        return rows[:limit]
    leaves = list(_walk(payload.get("metrics", {})))
    cmps = [comparison_row(label, v) for label, v in leaves if is_comparison(v)]
    if cmps:
        return cmps[:limit]
    systems = [(label, v) for label, v in leaves if is_summary(v)]
    if systems:
        return [value_row(label, v["nDCG@10"], "nDCG@10") for label, v in systems[:limit]]
    numbers = [(label, v) for label, v in leaves if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return [value_row(readable(label), v) for label, v in numbers[:limit]]


def _link(notebook: str, link_prefix: str) -> str:
    part = notebook.split("_", 1)[0]
    return f"[{part}]({link_prefix}{notebook}.ipynb)" if link_prefix is not None else part


def headline_table(results: dict[str, dict], limit: int = 5, max_rows: int = 39,
                   link_prefix: str | None = "notebooks/") -> str:
    """Markdown table of every notebook's headline rows (at most ``limit`` each, ``max_rows`` in all).

    When the notebooks together have more rows than ``max_rows``, each keeps fewer (its first
    ones) until the table fits.
    """
    per = {name: headline_rows(res, limit) for name, res in results.items()}
    while limit > 1 and sum(len(r[:limit]) for r in per.values()) > max_rows:
        limit -= 1
    lines = ["| notebook | result | metric | baseline | technique | difference (95% CI) | paired p | queries |",
             "|---|---|---|---:|---:|---|---:|---:|"]
    for name, rows in per.items():
        for row in rows[:limit]:
            label = row["label"]
            if row.get("baseline") or row.get("technique"):
                label = f"{label}: {row.get('technique', '')} vs {row.get('baseline', '')}"
            if "diff" in row:
                diff = f"{fmt_signed(row['diff'])} ({fmt_signed(row['ci_low'])} to {fmt_signed(row['ci_high'])})"
                cells = [fmt_number(row.get("baseline_value")), fmt_number(row.get("value")), diff,
                         fmt_p(row.get("p")), fmt_number(row.get("queries"))]
            else:
                cells = ["", fmt_number(row.get("value")), row.get("note", ""), "", ""]
            lines.append(f"| {_link(name, link_prefix)} | {label} | {row.get('metric', '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# RESULTS.md


def notebook_section(name: str, payload: dict) -> str:
    """Every number one notebook saved: systems, comparisons, then the other numbers."""
    leaves = list(_walk(payload.get("metrics", {})))
    out = [f"### {name} ({payload.get('profile', '?')}, written {payload.get('written', '?')})", ""]
    if payload.get("notes"):
        out += [str(payload["notes"]), ""]
    systems = [(label, v) for label, v in leaves if is_summary(v)]
    if systems:
        # the standard measures first, then any other number the systems carry (e.g. fine distinctions)
        extra = [k for _, v in systems for k, x in v.items()
                 if k not in SYSTEM_METRICS and isinstance(x, (int, float)) and not isinstance(x, bool)]
        columns = [m for m in SYSTEM_METRICS if any(m in v for _, v in systems)] + list(dict.fromkeys(extra))
        out += ["| system | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        out += [f"| {label} | " + " | ".join(fmt_number(v.get(m)) for m in columns) + " |"
                for label, v in systems]
        out.append("")
    cmps = [(label, v) for label, v in leaves if is_comparison(v)]
    if cmps:
        out += ["| comparison (B minus A) | metric | A | B | difference (95% CI) | paired t p | Wilcoxon p | queries |",
                "|---|---|---:|---:|---|---:|---:|---:|"]
        for label, v in cmps:
            out.append(f"| {label} | {v.get('metric', '')} | {fmt_number(v.get('mean_a'))} | "
                       f"{fmt_number(v.get('mean_b'))} | {fmt_signed(v['diff'])} ({fmt_signed(v['ci_low'])} to "
                       f"{fmt_signed(v['ci_high'])}) | {fmt_p(v.get('t_p'))} | {fmt_p(v.get('wilcoxon_p'))} | "
                       f"{fmt_number(v.get('queries'))} |")
        out.append("")
    others = [(label, v) for label, v in leaves if not (is_summary(v) or is_comparison(v))
              and isinstance(v, (int, float, str, bool)) and v is not None]
    if others:
        out += ["| measurement | value |", "|---|---:|"]
        out += [f"| {readable(label)} | {fmt_number(v)} |" for label, v in others]
        out.append("")
    timings = payload.get("timings") or {}
    if timings:
        out += ["Timings (s): " + ", ".join(f"{k} {fmt_number(v)}" for k, v in timings.items()), ""]
    return "\n".join(out)


def full_report(by_profile: dict[str, dict[str, dict]]) -> str:
    """The text of ``RESULTS.md``: headline rows, then every saved number, per profile."""
    out = ["# Results", "",
           "Generated by `python -m cookbook results --update-readme` from `data/results/<profile>/*.json`;",
           "every number was computed by a notebook run. Do not edit by hand.", ""]
    if not by_profile:
        out.append("No results yet: run `make run` (laptop) or `make run PROFILE=smoke`.")
    for prof, results in by_profile.items():
        out += [f"## Profile `{prof}`", "", "Headline rows:", "", headline_table(results, max_rows=10**6,
                                                                                 link_prefix="notebooks/"), ""]
        for name, payload in results.items():
            out.append(notebook_section(name, payload))
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------
# figure, times, files


def headline_figure(results: dict[str, dict], path: Path, limit: int = 5) -> Path | None:
    """One PNG: every headline paired difference with its 95% interval (None if there is none)."""
    rows = [(name.split("_", 1)[0], r) for name, res in results.items() for r in headline_rows(res, limit)
            if "diff" in r]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    plotting.set_style()

    def short(text, width=48):
        return text if len(text) <= width else text[: width - 1] + "…"

    def text(part, r):
        pair = f"{r['technique']} vs {r.get('baseline', '')}" if r.get("technique") else r["label"]
        return f"{part} · {pair} · {r.get('metric', '')}"

    texts = [text(part, r) for part, r in rows]
    # two rows of one notebook that read the same (e.g. one model on two tasks) get their own label first
    labels = [short(f"{part} · {r['label']}: " + t.split(" · ", 1)[1] if texts.count(t) > 1 else t, 64)
              for (part, r), t in zip(rows, texts)]
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.3))
    for i, (_, r) in enumerate(rows):
        ax.errorbar(r["diff"], i, xerr=[[r["diff"] - r["ci_low"]], [r["ci_high"] - r["diff"]]], fmt="o",
                    color="#3182bd", capsize=3)
    ax.axvline(0, color="grey", ls=":")
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    ax.set(xlabel="technique minus baseline, paired (95% CI)", title="Headline paired differences")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def notebook_title(path: Path) -> str:
    """The H1 title of a notebook (its first markdown line), without the leading ``#``."""
    cells = json.loads(Path(path).read_text()).get("cells", [])
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            return source.strip().splitlines()[0].lstrip("# ").strip() if source.strip() else ""
    return ""


def times_table(runs_dir: Path, notebooks_dir: Path | None = None) -> str:
    """Notebook wall times per profile, from ``runs/<profile>/timings.json``. With
    ``notebooks_dir``: the README's learning path, each notebook linked with what you learn (its
    title), every notebook listed even before it has run.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    seen: dict[str, dict[str, str]] = {}
    profiles = []
    for path in sorted(Path(runs_dir).glob("*/timings.json")):
        report = json.loads(path.read_text())
        profiles.append(report["profile"])
        for row in report["notebooks"]:
            cell = f"{row['seconds'] / 60:.1f} min" + ("" if row["ok"] else " (failed)")
            seen.setdefault(row["notebook"], {})[report["profile"]] = cell
    titled = notebooks_dir is not None
    if titled:
        for path in sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb")):
            seen.setdefault(path.name, {})
    head = "| notebook | what you learn | " if titled else "| notebook | "
    lines = [head + " | ".join(profiles) + " |", "|---|" + ("---|" if titled else "") + "---:|" * len(profiles)]
    for name in sorted(seen):
        cells = [seen[name].get(p, "") for p in profiles]
        nb = Path(notebooks_dir) / name if titled else None
        if nb is not None and nb.exists():
            lines.append(f"| [{name[:2]}](notebooks/{name}) | {notebook_title(nb)} | " + " | ".join(cells) + " |")
        elif titled:
            lines.append(f"| {name} |  | " + " | ".join(cells) + " |")
        else:
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_all(results_dir: Path | None = None) -> dict[str, dict[str, dict]]:
    """``{profile: {notebook: payload}}`` for every profile folder under ``data/results``."""

    root = Path(results_dir) if results_dir else evaluate.RESULTS_DIR  # read at call time (tests point it elsewhere)
    out = {}
    for folder in sorted(p for p in root.glob("*") if p.is_dir()):
        results = {}
        for path in sorted(folder.glob("*.json")):
            try:
                results[path.stem] = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise ResultsError(f"{path}: not valid JSON ({err})") from None
        if results:
            out[folder.name] = results
    order = {p: i for i, p in enumerate(("laptop", "full", "smoke"))}
    return dict(sorted(out.items(), key=lambda kv: order.get(kv[0], 9)))


def replace_block(text: str, start: str, end: str, body: str) -> str:
    if start not in text or end not in text:
        raise ResultsError(f"README.md has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + start + "\n" + body + "\n" + end + tail


def readme_block(results: dict[str, dict], profile: str, figure: str | None, expected=()) -> str:
    """The README's results block: the figure of one profile's headline rows, a link to the full
    tables in RESULTS.md, and the notebooks that have no results yet (so a partial run says so
    instead of looking complete)."""
    rows = sum(len(headline_rows(payload)) for payload in results.values())
    body = [f"Profile `{profile}`: {rows} headline rows of {len(results)} notebooks, each a measured difference "
            "with its 95% interval. The tables, with every number of every profile, are in [RESULTS.md](RESULTS.md)."]
    missing = [name for name in expected if name not in results]
    if missing:
        body += ["", f"No `{profile}` results yet for: " + ", ".join(f"`{m}`" for m in missing)
                 + " (run them with `make run`, or `python -m cookbook run-notebooks --only NN`)."]
    if figure:
        body += ["", f"![Headline paired differences with 95% confidence intervals]({figure})"]
    return "\n".join(body)


def guide_block(payload: dict | None, profile: str) -> str:
    """The README's decision guide: notebook 90's table of one profile (with the measured reason
    for each row when the run saved one) and its data curves, or how to make it."""
    rows = (payload or {}).get("decision_guide") or []
    if not rows:
        return (f"No `{profile}` decision guide yet: run notebook 90 after the technique notebooks "
                "(`make run` runs them in order).")
    metric = next((k for k in rows[0] if k.endswith(" difference")), None)
    why = any(r.get("why") for r in rows)
    lines = [f"Profile `{profile}`, computed by [notebooks/90_compare_recipes.ipynb](notebooks/90_compare_recipes.ipynb) "
             f"on {payload.get('queries', '?')} test queries (difference from the base MiniLM, paired t-test):", "",
             f"| you have | start with | {metric or 'difference'} | p |" + (" why |" if why else ""),
             "|---|---|---:|---:|" + ("---|" if why else "")]
    for r in rows:
        lines.append(f"| {r['you have']} | {r['start with']} | {fmt_signed(r.get(metric)) if metric else ''} "
                     f"| {fmt_p(r.get('p'))} |" + (f" {r.get('why') or ''} |" if why else ""))
    curves = payload.get("data_curves") or {}
    if curves:
        lines += ["", "How much data? Each recipe retrained on shares of its own training data "
                  "(same settings, same test queries; nDCG@10 difference from the base MiniLM, 95% CI, p):", ""]
        for recipe, points in curves.items():
            unit = points[0].get("unit", "examples") if points else "examples"
            parts = [f"{p['examples']} {unit}: {fmt_signed(p['diff'])} ({fmt_signed(p['ci_low'])} to "
                     f"{fmt_signed(p['ci_high'])}, p {fmt_p(p['p'])})" for p in points]
            lines.append(f"- {recipe}: " + "; ".join(parts))
    return "\n".join(lines)


def update_files(root: Path, profile: str = "laptop", results_dir: Path | None = None,
                 runs_dir: Path | None = None) -> dict:
    """Write ``RESULTS.md`` (every profile), the README results block (``profile`` only) and times.

    The README block and the figure change only when ``profile`` has results: a smoke run
    never replaces the laptop numbers. Returns what was written.
    """
    root = Path(root)
    by_profile = load_all(results_dir)
    written = {"profiles": list(by_profile)}
    (root / "RESULTS.md").write_text(full_report(by_profile))
    written["RESULTS.md"] = True
    readme = root / "README.md"
    text = readme.read_text()
    if profile in by_profile:
        fig = headline_figure(by_profile[profile], root / "docs" / "img" / "results.png")
        rel = str(fig.relative_to(root)) if fig else None
        expected = [p.stem for p in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
        text = replace_block(text, README_START, README_END,
                             readme_block(by_profile[profile], profile, rel, expected))
        written["readme_results"] = profile
        written["figure"] = rel
        if GUIDE_START in text:
            text = replace_block(text, GUIDE_START, GUIDE_END,
                                 guide_block(by_profile[profile].get("90_compare_recipes"), profile))
            written["guide"] = profile
    runs = Path(runs_dir) if runs_dir else root / "runs"
    if TIMES_START in text and any(runs.glob("*/timings.json")):
        text = replace_block(text, TIMES_START, TIMES_END, times_table(runs, root / "notebooks"))
        written["times"] = True
    readme.write_text(text)
    return written
