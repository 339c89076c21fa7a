"""Graded evaluation of runs with ir_measures, paired significance, and results files.

Default measures: ``nDCG@10`` (graded gains 0-3), ``R@10`` and ``R@100`` (a document counts
as relevant at grade >= 2), ``RR@10`` (reciprocal rank of the first grade-3 document, that is
the object a query describes). ir_measures computes them with trec_eval's implementation.

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

MEASURES = {
    "nDCG@10": "nDCG@10",
    "R@10": "R(rel=2)@10",
    "R@100": "R(rel=2)@100",
    "RR@10": "RR(rel=3)@10",
}


def _measures(names):
    import ir_measures

    unknown = [n for n in names if n not in MEASURES]
    if unknown:
        raise ValueError(f"unknown measure(s) {unknown}; known: {list(MEASURES)}")
    return {ir_measures.parse_measure(MEASURES[n]): n for n in names}


def evaluate(run: dict, qrels: dict, measures=tuple(MEASURES)) -> tuple[dict[str, float], pd.DataFrame]:
    """Score ``run`` against graded ``qrels``: (mean per measure, per-query table).

    Queries of ``qrels`` missing from the run score 0, so a retriever cannot look better by
    skipping hard queries.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    import ir_measures

    if not qrels:
        raise ValueError("qrels are empty: nothing to evaluate")
    wanted = _measures(measures)
    table = pd.DataFrame(0.0, index=pd.Index(sorted(qrels), name="qid"), columns=list(wanted.values()))
    run = {q: docs for q, docs in run.items() if q in qrels and docs}
    if run:
        for m in ir_measures.iter_calc(list(wanted), qrels, run):
            table.loc[m.query_id, wanted[m.measure]] = m.value
    return {c: float(table[c].mean()) for c in table.columns}, table


def compare(run_a: dict, run_b: dict, qrels: dict, metric: str = "nDCG@10", n_boot: int = 2000,
            seed: int = 0) -> dict:
    """Paired comparison of two runs on one metric: B minus A.

    Returns the mean of each, their mean difference, a paired t-test p-value, a Wilcoxon
    signed-rank p-value, and a bootstrap 95% confidence interval of the difference
    (``scipy.stats.bootstrap`` over queries).

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    from scipy import stats

    _, a = evaluate(run_a, qrels, (metric,))
    _, b = evaluate(run_b, qrels, (metric,))
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
    """Write a notebook's headline metrics and timings to ``data/results/<notebook>.json``.

    The README results table and notebook 90 are generated from these files, so every number
    they show was computed by a run. The profile is recorded with the numbers.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    from cookbook.config import profile

    folder = Path(results_dir or RESULTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"notebook": notebook, "profile": profile().name,
               "written": time.strftime("%Y-%m-%dT%H:%M:%S"), "metrics": metrics, "timings": timings, **extra}
    path = folder / f"{notebook}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(payload), indent=1, sort_keys=False))
    tmp.replace(path)
    return path


def load_results(results_dir: Path | None = None) -> dict[str, dict]:
    """Every results JSON under ``data/results``, keyed by notebook name."""
    folder = Path(results_dir or RESULTS_DIR)
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
