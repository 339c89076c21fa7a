"""Evaluation of runs with ir_measures, the paired test, the fine-distinction measure, results files.

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
import random
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import ir_measures
import numpy as np
import pandas as pd
from scipy import stats

from cookbook import config
from cookbook.config import RESULTS_DIR, SEED
from cookbook.retrieval import encode

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


def paired_test(a: pd.Series, b: pd.Series, n_boot: int = 2000, seed: int = 0) -> dict:
    """Paired comparison of two per-query score series, B minus A, over the queries both have:
    their means, the mean difference, a paired t-test p-value, a Wilcoxon signed-rank p-value
    and a bootstrap 95% confidence interval of the difference (:func:`bootstrap_ci`).

    The one statistical test of the project: :func:`compare` (two runs), notebook 90's paired
    table and every recipe report use it.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1).dropna()
    diff = (both["b"] - both["a"]).to_numpy()
    out = {"queries": int(len(diff)), "mean_a": float(both["a"].mean()) if len(diff) else 0.0,
           "mean_b": float(both["b"].mean()) if len(diff) else 0.0,
           "diff": float(diff.mean()) if len(diff) else 0.0}
    if len(diff) < 2 or np.allclose(diff, 0):
        return {**out, "t_p": 1.0, "wilcoxon_p": 1.0, "ci_low": out["diff"], "ci_high": out["diff"]}
    low, high = bootstrap_ci(diff, n_boot=n_boot, seed=seed)
    return {**out, "t_p": float(stats.ttest_rel(both["b"], both["a"]).pvalue),
            "wilcoxon_p": float(stats.wilcoxon(diff).pvalue), "ci_low": low, "ci_high": high}


def compare(run_a: dict, run_b: dict, qrels: dict, metric: str = "nDCG@10", n_boot: int = 2000,
            seed: int = 0, rel: int | None = None) -> dict:
    """Paired comparison of two runs on one metric, B minus A (:func:`paired_test` over the
    per-query scores of :func:`evaluate`; a query missing from a run scores 0).

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    _, a = evaluate(run_a, qrels, (metric,), rel=rel)
    _, b = evaluate(run_b, qrels, (metric,), rel=rel)
    return {"metric": metric, **paired_test(a[metric], b[metric], n_boot=n_boot, seed=seed)}


def bootstrap_ci(values, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of a mean of per-query scores."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or np.allclose(values, values[0]):
        return float(values.mean()), float(values.mean())
    res = stats.bootstrap((values,), np.mean, n_resamples=n_boot, random_state=np.random.default_rng(seed),
                          method="percentile")
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def verdict(comparison: dict | None, alpha: float = 0.05) -> str:
    """``"better"``, ``"worse"`` or ``"no significant difference"``: the sign of a
    :func:`compare` / :func:`paired_test` difference when its paired t-test p is below
    ``alpha``; ``"not measured"`` without a comparison.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    if not comparison or not comparison.get("queries"):
        return "not measured"
    if comparison["t_p"] < alpha and comparison["diff"] != 0:
        return "better" if comparison["diff"] > 0 else "worse"
    return "no significant difference"


def comparison_table(comparisons: dict[str, dict]) -> pd.DataFrame:
    """Several :func:`compare` / :func:`paired_test` results as one table: the difference, its
    95% interval, the paired t-test p, the number of queries and the :func:`verdict` per row.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    cols = ["mean_a", "mean_b", "diff", "ci_low", "ci_high", "t_p", "queries"]
    table = pd.DataFrame({name: {k: c.get(k) for k in cols} for name, c in comparisons.items()}).T
    table = table.astype({k: float for k in cols if k != "queries"}).astype({"queries": int})
    table["verdict"] = [verdict(c) for c in comparisons.values()]
    return table


# --------------------------------------------------------------------------------------------
# the fine-distinction measure: does a model order adjacent grades correctly?
# --------------------------------------------------------------------------------------------


class FineDistinctionError(ValueError):
    """The data has no adjacent-grade document pairs to compare (binary labels, a missing split)."""




def distinction_pairs(data, split: str = "test", *, n_zero: int = 5, kinds: Sequence[str] | None = None,
                      seed: int = SEED) -> pd.DataFrame:
    """The document pairs the fine-distinction measure checks: per query of ``split``, every
    (grade g+1, grade g) pair of adjacent grades among its judged documents, with grade-0
    documents drawn at random (``n_zero`` per query) from the unjudged ones. ``kinds`` keeps only
    some (e.g. ``("2>1", "1>0")``). Columns: qid, higher, lower, kind.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    if split not in data.qrels or not data.qrels[split]:
        raise FineDistinctionError(f"data has no {split!r} qrels; available: {sorted(data.qrels)}")
    rng = random.Random(seed)
    doc_ids = sorted(data.corpus)
    rows = []
    for q in sorted(data.qrels[split]):
        judged = data.qrels[split][q]
        by_grade: dict[int, list[str]] = {}
        for d, g in sorted(judged.items()):
            by_grade.setdefault(int(g), []).append(d)
        zeros = [d for d in rng.sample(doc_ids, min(len(doc_ids), n_zero + len(judged))) if d not in judged]
        by_grade.setdefault(0, []).extend(zeros[:n_zero])
        top = max(by_grade)
        for g in range(top):
            if kinds is not None and f"{g + 1}>{g}" not in kinds:
                continue
            for hi in by_grade.get(g + 1, []):
                for lo in by_grade.get(g, []):
                    rows.append({"qid": q, "higher": hi, "lower": lo, "kind": f"{g + 1}>{g}"})
    return pd.DataFrame(rows, columns=["qid", "higher", "lower", "kind"])


def default_kinds(n_levels: int) -> tuple[str, ...]:
    """The adjacent-grade pairs below the top pair: ("2>1", "1>0") for 4 levels, ("1>0",) for 2."""
    top = n_levels - 1 if n_levels <= 2 else n_levels - 2
    return tuple(f"{g + 1}>{g}" for g in range(top - 1, -1, -1))


def fine_distinction_accuracy(scorer, data, split: str = "test", *, n_zero: int = 5,
                              kinds: Sequence[str] | None = None, batch_size: int = 64,
                              seed: int = SEED) -> dict:
    """Share of adjacent-grade document pairs, (2, 1) and (1, 0) on grades 0-3, that ``scorer``
    orders correctly for the queries of ``split``: a test of sensitivity to subtle differences.

    ``scorer``: a run ``{qid: {doc_id: score}}`` (a document missing from a query's run scores
    below every listed one; two missing ones are a tie), a :class:`cookbook.retrieval.DenseIndex`
    (reuses its document embeddings) or a SentenceTransformer (encodes what it needs). Ties
    count one half. ``kinds`` defaults to :func:`default_kinds` (the middle of the scale).
    Returns ``{kind: accuracy, ..., "all": accuracy, "pairs": {kind: count}, "per_query": Series}``.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    if kinds is None:
        grades = [g for qrels in data.qrels.values() for docs in qrels.values() for g in docs.values()]
        kinds = default_kinds(int(max(grades, default=1)) + 1)
    pairs = distinction_pairs(data, split, n_zero=n_zero, kinds=kinds, seed=seed)
    if pairs.empty:
        raise FineDistinctionError(f"split {split!r} has no adjacent-grade document pairs to compare")
    if isinstance(scorer, Mapping):
        def score(q, d):
            return scorer.get(q, {}).get(d, -np.inf)
    else:
        qids = sorted(pairs["qid"].unique())
        if hasattr(scorer, "embeddings") and hasattr(scorer, "ids"):
            model, pos = scorer.model, {d: i for i, d in enumerate(scorer.ids)}
            doc_emb = scorer.embeddings
        else:
            model = scorer
            needed = sorted(set(pairs["higher"]) | set(pairs["lower"]))
            pos = {d: i for i, d in enumerate(needed)}
            doc_emb = encode(model, [data.doc_text(d) for d in needed], batch_size=batch_size)
        q_emb = encode(model, [data.queries[q] for q in qids], batch_size=batch_size)
        qpos = {q: i for i, q in enumerate(qids)}

        def score(q, d):
            return float(q_emb[qpos[q]] @ doc_emb[pos[d]])
    hi = np.array([score(q, d) for q, d in zip(pairs["qid"], pairs["higher"])])
    lo = np.array([score(q, d) for q, d in zip(pairs["qid"], pairs["lower"])])
    pairs = pairs.assign(correct=np.where(hi > lo, 1.0, np.where(hi == lo, 0.5, 0.0)))
    out: dict = {kind: float("nan") for kind in kinds}  # a kind without pairs stays NaN
    out.update({kind: float(g["correct"].mean()) for kind, g in pairs.groupby("kind")})
    out["all"] = float(pairs["correct"].mean())
    out["pairs"] = {kind: int((pairs["kind"] == kind).sum()) for kind in kinds}
    out["per_query"] = pairs.groupby("qid")["correct"].mean().rename("fine-distinction accuracy")
    return out


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


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
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
    name = config.profile().name
    folder = Path(results_dir) if results_dir else RESULTS_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"notebook": notebook, "profile": name,
               "written": time.strftime("%Y-%m-%dT%H:%M:%S"), "metrics": metrics, "timings": timings, **extra}
    path = folder / f"{notebook}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(jsonable(payload), indent=1, sort_keys=False))
    tmp.replace(path)
    return path


def load_results(results_dir: Path | None = None, profile: str | None = None) -> dict[str, dict]:
    """Every results JSON of one profile (default: the active one), keyed by notebook name."""
    folder = Path(results_dir) if results_dir else RESULTS_DIR / config.profile(profile).name
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
