"""Evaluation of runs with ir_measures, paired significance, and results files.

Default measures: ``nDCG@10`` (graded gains), ``R@10`` and ``R@100`` (recall of the
relevant documents), ``RR@10`` (reciprocal rank of the first top-grade document). What counts
as relevant follows the qrels: with binary labels a document is relevant at grade 1; with the
API-docs grades 0-3 recall counts grade >= 2 and RR the grade-3 target. ``rel=`` sets the
threshold by hand, and any ir_measures measure string (``"P(rel=1)@5"``, ``"AP@100"``) works
too. ir_measures computes them with trec_eval's implementation.

Taught in: notebooks/10_explore_query_document_pairs.ipynb
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from cookbook.config import RESULTS_DIR

# name -> (ir_measures template, which threshold it uses: "recall", "top" or None)
MEASURES = {
    "nDCG@10": ("nDCG@10", None),
    "R@10": ("R(rel={rel})@10", "recall"),
    "R@100": ("R(rel={rel})@100", "recall"),
    "RR@10": ("RR(rel={rel})@10", "top"),
    "MRR@10": ("RR(rel={rel})@10", "recall"),
    "MAP@10": ("AP(rel={rel})@10", "recall"),
}
DEFAULT_MEASURES = ("nDCG@10", "R@10", "R@100", "RR@10")


class Scores(dict):
    """Mean score per measure (a plain dict), plus ``rel``: the thresholds that were used."""

    rel: dict

    def __init__(self, values, rel: dict):
        super().__init__(values)
        self.rel = rel


def relevance_thresholds(qrels: dict, rel: int | None = None) -> dict[str, int]:
    """The grade from which a document counts as relevant, inferred from the qrels.

    ``{"max_grade", "recall", "top"}``: ``recall`` is the threshold of R@k, MRR@10 and MAP@10,
    ``top`` the one of RR@10. Binary qrels give 1 and 1; grades 0-3 give 2 and 3 (half the top
    grade, rounded up, and the top grade). An explicit ``rel`` sets both.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    grades = [g for docs in qrels.values() for g in docs.values()]
    max_grade = max(grades) if grades else 1
    if max_grade < 1:
        raise ValueError("the qrels hold no relevant document (every grade is <= 0)")
    if rel is not None:
        if int(rel) != rel or rel < 1:
            raise ValueError(f"rel={rel!r}: the relevance threshold is a positive integer grade")
        return {"max_grade": int(max_grade), "recall": int(rel), "top": int(rel)}
    return {"max_grade": int(max_grade), "recall": max(1, math.ceil(max_grade / 2)), "top": int(max_grade)}


def _measures(names, thresholds):
    import ir_measures

    out = {}
    for name in names:
        if name in MEASURES:
            template, which = MEASURES[name]
            text = template.format(rel=thresholds[which]) if which else template
        else:
            text = name
        try:
            out[ir_measures.parse_measure(text)] = name
        except (ValueError, NameError, TypeError, SyntaxError, AttributeError) as err:
            raise ValueError(f"unknown measure {name!r}: use one of {list(MEASURES)} or an "
                             f"ir_measures string such as 'P(rel=1)@5' ({err})") from None
    return out


def evaluate(run: dict, qrels: dict, measures=DEFAULT_MEASURES, rel: int | None = None
             ) -> tuple[Scores, pd.DataFrame]:
    """Score ``run`` against ``qrels``: (mean per measure, per-query table).

    Queries of ``qrels`` missing from the run score 0, so a retriever cannot look better by
    skipping hard queries. The relevance thresholds follow the qrels (binary or graded, see
    :func:`relevance_thresholds`) unless ``rel`` is given; the returned means carry them as
    ``.rel`` and the table as ``.attrs["rel"]``.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    import ir_measures

    if not qrels:
        raise ValueError("qrels are empty: nothing to evaluate")
    if isinstance(measures, str):
        measures = (measures,)
    thresholds = relevance_thresholds(qrels, rel)
    wanted = _measures(measures, thresholds)
    table = pd.DataFrame(0.0, index=pd.Index(sorted(qrels), name="qid"), columns=list(wanted.values()))
    table.attrs["rel"] = thresholds
    run = {q: docs for q, docs in run.items() if q in qrels and docs}
    if run:
        for m in ir_measures.iter_calc(list(wanted), qrels, run):
            table.loc[m.query_id, wanted[m.measure]] = m.value
    return Scores({c: float(table[c].mean()) for c in table.columns}, thresholds), table


def compare(run_a: dict, run_b: dict, qrels: dict, metric: str = "nDCG@10", n_boot: int = 2000,
            seed: int = 0, rel: int | None = None) -> dict:
    """Paired comparison of two runs on one metric: B minus A.

    Returns the mean of each, their mean difference, a paired t-test p-value, a Wilcoxon
    signed-rank p-value, and a bootstrap 95% confidence interval of the difference
    (``scipy.stats.bootstrap`` over queries).

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    from scipy import stats

    _, a = evaluate(run_a, qrels, (metric,), rel=rel)
    _, b = evaluate(run_b, qrels, (metric,), rel=rel)
    diff = (b[metric] - a[metric]).to_numpy()
    out = {"metric": metric, "queries": len(diff), "mean_a": float(a[metric].mean()),
           "mean_b": float(b[metric].mean()), "diff": float(diff.mean())}
    if np.allclose(diff, 0):
        out.update(t_p=1.0, wilcoxon_p=1.0, ci_low=0.0, ci_high=0.0)
        return out
    out["t_p"] = float(stats.ttest_rel(b[metric], a[metric]).pvalue)
    out["wilcoxon_p"] = float(stats.wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
    boot = stats.bootstrap((diff,), np.mean, n_resamples=n_boot, confidence_level=0.95,
                           random_state=np.random.default_rng(seed), method="percentile")
    out["ci_low"], out["ci_high"] = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
    return out


def bootstrap_ci(values, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of a mean of per-query scores."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if len(values) < 2 or np.allclose(values, values[0]):
        return float(values.mean()), float(values.mean())
    res = stats.bootstrap((values,), np.mean, n_resamples=n_boot, random_state=np.random.default_rng(seed),
                          method="percentile")
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


class Timer:
    """Collects named wall-clock timings: ``with timer("encode"): ...``; ``timer.seconds``."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return None if math.isnan(v) else round(v, 6)
    if isinstance(value, np.integer):
        return int(value)
    return value


def save_results(notebook: str, metrics: dict, timings: dict, results_dir: Path | None = None, **extra) -> Path:
    """Write a notebook's headline metrics and timings to ``data/results/<profile>/<notebook>.json``.

    The README results table and RESULTS.md are generated from these files, so every number
    they show was computed by a run. One folder per profile: a smoke run never overwrites the
    laptop numbers.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    from cookbook.config import profile

    name = profile().name
    folder = Path(results_dir) if results_dir else RESULTS_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"notebook": notebook, "profile": name,
               "written": time.strftime("%Y-%m-%dT%H:%M:%S"), "metrics": metrics, "timings": timings, **extra}
    path = folder / f"{notebook}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(payload), indent=1, sort_keys=False))
    tmp.replace(path)
    return path


def load_results(results_dir: Path | None = None, profile: str | None = None) -> dict[str, dict]:
    """Every results JSON of one profile (default: the active one), keyed by notebook name."""
    from cookbook.config import profile as active

    folder = Path(results_dir) if results_dir else RESULTS_DIR / active(profile).name
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
