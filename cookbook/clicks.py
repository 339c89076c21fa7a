"""Simulated click logs for unbiased learning to rank (part 70).

Users do not judge documents, they click on them, and what they click depends on
where the search engine put each document.  This module simulates that process on
the cookbook's real queries and graded relevance labels, fast enough to produce
millions of impressions per second on a laptop CPU:

* **candidate pools** (:class:`ClickEnv`): for each query, the documents a logging
  policy may show, their true relevance grade and the query-document features a
  ranker can see (BM25 and dense scores, document statistics);
* **logging policies**: a deterministic production ranker (:class:`ScoreRanker`,
  with :func:`noisy_oracle_scores` of tunable quality, or BM25/dense scores),
  a stochastic :class:`PlackettLuce` ranker with a temperature, and randomised
  swaps on top of any policy (:class:`RandPair`, :class:`RandTopK`);
* **click models**: the position-based model with click noise
  (:class:`PositionBasedModel`) and the cascade model (:class:`CascadeModel`);
* **the log** (:func:`simulate_click_log`): one row per impression (query, doc,
  position, click, features, estimated logging propensity) as a pandas DataFrame.

The diagnostics that read such a log before a model is trained on it (the rank graph,
identifiability, inverse-propensity sample weights) live in :mod:`cookbook.ultr`.

Everything stochastic takes ``seed=``.  The method follows
Hager, Zoeter and de Rijke, "Unidentified and Confounded? Understanding Two-Tower
Models for Unbiased Learning to Rank" (ICTIR 2025).

Taught in: notebooks/70_simulate_click_logs.ipynb and
notebooks/71_two_tower_identifiability_and_confounding.ipynb
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "ClickParameterError",
    "ClickEnv",
    "synthetic_env",
    "with_grade_features",
    "build_env",
    "apidocs_envs",
    "graded_click_probs",
    "examination_curve",
    "PositionBasedModel",
    "CascadeModel",
    "noisy_oracle_scores",
    "ScoreRanker",
    "PlackettLuce",
    "RandPair",
    "RandTopK",
    "ClickArrays",
    "simulate_arrays",
    "simulate_click_log",
    "simulate_reference_loop",
    "estimate_propensities",
    "ctr_by_position",
]


_MOVED_TO_ULTR = ("propensity_weights", "IdentifiabilityReport", "rank_graph", "identifiability")


def __getattr__(name: str):
    """Old names of the ULTR diagnostics, now in :mod:`cookbook.ultr` (kept working, with a warning)."""
    if name in _MOVED_TO_ULTR:
        import warnings

        from cookbook import ultr

        warnings.warn(f"cookbook.clicks.{name} moved to cookbook.ultr.{name}", DeprecationWarning, stacklevel=2)
        return getattr(ultr, name)
    raise AttributeError(f"module 'cookbook.clicks' has no attribute {name!r}")


class ClickParameterError(ValueError):
    """A click-simulation parameter is out of range (a ``ValueError``).

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """


# ---------------------------------------------------------------------------
# validation helpers


def _as_prob_vector(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ClickParameterError(f"{name} must be a non-empty 1-D sequence of probabilities, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0) | (arr > 1))
    if bad.size:
        i = int(bad[0])
        raise ClickParameterError(f"{name}[{i}] = {float(arr[i])!r} is not a probability in [0, 1]")
    return arr


def _check_prob(value: float, name: str) -> float:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and 0.0 <= float(value) <= 1.0):
        raise ClickParameterError(f"{name} = {value!r} is not a probability in [0, 1]")
    return float(value)


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ClickParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------
# candidate pools


@dataclass
class ClickEnv:
    """Candidate pools: what a logging policy may show for each query.

    ``doc_ids[q, j]`` is the j-th candidate of query ``qids[q]``; every query has the
    same number of candidates (``depth``).  ``relevance`` holds the true graded
    label (0 = not relevant ... ``max_grade``); ``features[q, j]`` the
    query-document features a ranker can see, named by ``feature_names``.

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """

    qids: list
    doc_ids: np.ndarray
    relevance: np.ndarray
    features: np.ndarray
    feature_names: list = field(default_factory=list)
    max_grade: int = 3

    def __post_init__(self):
        self.doc_ids = np.asarray(self.doc_ids, dtype=object)
        self.relevance = np.asarray(self.relevance)
        self.features = np.asarray(self.features, dtype=np.float32)
        if len(self.qids) == 0:
            raise ClickParameterError("ClickEnv needs at least one query; got an empty list of queries")
        if self.doc_ids.ndim != 2 or self.doc_ids.shape[1] == 0:
            raise ClickParameterError(
                f"doc_ids must be a (queries, depth) array with depth >= 1 (empty rankings are not allowed), got shape {self.doc_ids.shape}"
            )
        if self.doc_ids.shape[0] != len(self.qids):
            raise ClickParameterError(f"doc_ids has {self.doc_ids.shape[0]} rows but there are {len(self.qids)} qids")
        if self.relevance.shape != self.doc_ids.shape:
            raise ClickParameterError(f"relevance shape {self.relevance.shape} != doc_ids shape {self.doc_ids.shape}")
        if self.relevance.min() < 0 or self.relevance.max() > self.max_grade:
            raise ClickParameterError(f"relevance grades must lie in 0..{self.max_grade}, got {self.relevance.min()}..{self.relevance.max()}")
        self.relevance = self.relevance.astype(np.int8)
        if self.features.ndim == 2:
            self.features = self.features[:, :, None]
        if self.features.shape[:2] != self.doc_ids.shape:
            raise ClickParameterError(f"features shape {self.features.shape} does not start with {self.doc_ids.shape}")
        if not self.feature_names:
            self.feature_names = [f"f{i}" for i in range(self.features.shape[2])]
        if len(self.feature_names) != self.features.shape[2]:
            raise ClickParameterError(f"{len(self.feature_names)} feature_names for {self.features.shape[2]} features")

    @property
    def n_queries(self) -> int:
        return len(self.qids)

    @property
    def depth(self) -> int:
        return int(self.doc_ids.shape[1])

    def subset(self, query_indices) -> ClickEnv:
        """The pools of some queries only (for train/test splits)."""
        idx = np.asarray(query_indices, dtype=np.int64)
        return ClickEnv([self.qids[i] for i in idx], self.doc_ids[idx], self.relevance[idx],
                        self.features[idx], list(self.feature_names), self.max_grade)

    def qrels(self) -> dict:
        """The graded labels as ``{qid: {doc_id: grade}}`` (grades > 0 only)."""
        out = {}
        for qi, qid in enumerate(self.qids):
            row = {str(d): int(g) for d, g in zip(self.doc_ids[qi], self.relevance[qi]) if g > 0}
            out[qid] = row
        return out

    def feature_index(self, names) -> list[int]:
        missing = [n for n in names if n not in self.feature_names]
        if missing:
            raise ClickParameterError(f"unknown feature(s) {missing}; available: {self.feature_names}")
        return [self.feature_names.index(n) for n in names]


def with_grade_features(env: ClickEnv) -> ClickEnv:
    """A copy of ``env`` with one-hot true-grade features ``grade_0 .. grade_G`` appended.

    A relevance tower that sees them can represent user behaviour exactly: the
    *well-specified* tower of notebook 71.  Real systems never have them; they are
    the simulation's way to say "the model captures what users respond to".

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """
    onehot = np.eye(env.max_grade + 1, dtype=np.float32)[env.relevance]
    names = list(env.feature_names) + [f"grade_{g}" for g in range(env.max_grade + 1)]
    return ClickEnv(list(env.qids), env.doc_ids, env.relevance, np.concatenate([env.features, onehot], axis=2),
                    names, env.max_grade)


def synthetic_env(n_queries: int = 200, depth: int = 20, n_features: int = 4,
                  grade_probs=(0.6, 0.25, 0.1, 0.05), seed: int = 13) -> ClickEnv:
    """A small synthetic environment: random grades and features that carry signal.

    Feature ``f0`` is a noisy copy of the grade, the others are noise or weakly
    informative; used by the tests and the bench, and as a fallback when the
    apidocs corpus is not built.

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """
    n_queries = _check_positive_int(n_queries, "n_queries")
    depth = _check_positive_int(depth, "depth")
    p = _as_prob_vector(grade_probs, "grade_probs")
    rng = np.random.default_rng(seed)
    rel = rng.choice(len(p), size=(n_queries, depth), p=p / p.sum())
    feats = rng.normal(size=(n_queries, depth, n_features)).astype(np.float32)
    feats[..., 0] += rel
    if n_features > 1:
        feats[..., 1] += 0.5 * rel
    docs = np.array([[f"q{q}-d{j}" for j in range(depth)] for q in range(n_queries)], dtype=object)
    return ClickEnv([f"q{q}" for q in range(n_queries)], docs, rel, feats,
                    [f"f{i}" for i in range(n_features)], max_grade=len(p) - 1)


def _minmax_rows(x: np.ndarray) -> np.ndarray:
    lo = x.min(axis=1, keepdims=True)
    hi = x.max(axis=1, keepdims=True)
    return (x - lo) / np.where(hi > lo, hi - lo, 1.0)


def _all_grades_max(data) -> int:
    grades = [int(g) for split in data.qrels.values() for docs in split.values() for g in docs.values()]
    return max(grades) if grades else 0


def _apidocs_doc_features(data):
    """The default per-pair features: API-docs signals, only those the data actually carries.

    ``kind_<k>`` one-hot columns for the document kinds present in the corpus (module, class,
    function, method in the API-docs corpus) and ``same_module`` (the document lives in the
    module of the page the query came from) when ``data.query_meta`` names dotted sources.
    A plain BEIR folder has neither, so it gets no such columns (rather than all-zero ones).
    Returns ``(names, fn(qid, doc_id) -> list[float])``.
    """
    kinds = [k for k in ("module", "class", "function", "method")
             if any(doc.get("kind") == k for doc in data.corpus.values())]
    meta = getattr(data, "query_meta", None) or {}

    def source_module(qid):
        src = str((meta.get(qid) or {}).get("source", "") or "")
        return src.rsplit(".", 1)[0] if "." in src else ""

    has_source = any(source_module(q) for q in meta)
    names = [f"kind_{k}" for k in kinds] + (["same_module"] if has_source else [])

    def fn(qid, doc_id):
        doc = data.corpus[doc_id]
        row = [float(doc.get("kind") == k) for k in kinds]
        if has_source:
            mod = source_module(qid)
            row.append(float(bool(mod) and str(doc_id).startswith(mod + ".")))
        return row

    return names, fn


def _user_doc_features(data, doc_features):
    """``(names, fn(qid, doc_id))`` for a mapping ``doc_id -> vector`` or a callable ``(doc_id, doc) -> vector``."""
    if callable(doc_features):
        def raw(doc_id):
            return doc_features(doc_id, data.corpus[doc_id])
    elif isinstance(doc_features, dict):
        def raw(doc_id):
            if doc_id not in doc_features:
                raise ClickParameterError(f"doc_features has no vector for document {doc_id!r}")
            return doc_features[doc_id]
    else:
        raise ClickParameterError("doc_features must be None, a mapping doc_id -> feature vector or a "
                                  f"callable (doc_id, doc) -> feature vector, got {type(doc_features).__name__}")
    width = {}

    def fn(qid, doc_id):
        vec = np.asarray(raw(doc_id), dtype=np.float64).ravel()
        if not np.isfinite(vec).all():
            raise ClickParameterError(f"doc_features of document {doc_id!r} is not finite: {vec.tolist()}")
        if width.setdefault("n", vec.size) != vec.size:
            raise ClickParameterError(f"doc_features of document {doc_id!r} has {vec.size} values, "
                                      f"others have {width['n']}")
        return vec.tolist()

    first = next(iter(data.corpus))
    names = [f"doc_{i}" for i in range(len(fn(None, first)))]
    return names, fn


def build_env(data, run: dict, split: str = "train", depth: int = 20, extra_runs: dict | None = None,
              max_queries: int | None = None, inject_min_grade: int | None = None, seed: int = 13,
              doc_features=None, max_grade: int | None = None) -> ClickEnv:
    """Candidate pools from a first-stage run over the corpus's real queries.

    For each query of ``split``: its judged documents of grade >= ``inject_min_grade``
    (default: the relevance threshold of the qrels, 2 for grades 0-3 and 1 for binary labels;
    at most ``depth // 2``, best grades first) are injected, the run's top documents fill the
    remaining slots (their grades come from ``data.qrels``, 0 when unjudged). Queries whose
    pool cannot be filled are skipped.

    Features per pair: the run score (per-query min-max), its reciprocal rank, each
    ``extra_runs`` score the same way (for example ``{"dense": run}``), the document length
    (log words), then the document features.  ``doc_features=None`` uses the API-docs
    signals the data carries (``kind_*`` one-hot, ``same_module``; a plain BEIR folder has
    none, so no column is made for them); a mapping ``doc_id -> vector`` or a callable
    ``(doc_id, doc) -> vector`` gives your own (columns ``doc_0``, ``doc_1``, ...).

    ``max_grade`` (the top label of the click model and of ``with_grade_features``) is the
    largest grade in ``data.qrels`` (every split, so train and test pools agree) when None.

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """
    from cookbook.evaluate import relevance_thresholds

    depth = _check_positive_int(depth, "depth")
    if split not in data.qrels:
        raise ClickParameterError(f"split {split!r} not in data.qrels (have {sorted(data.qrels)})")
    observed_max = _all_grades_max(data)
    if max_grade is None:
        max_grade = max(1, observed_max)
    max_grade = _check_positive_int(max_grade, "max_grade")
    if observed_max > max_grade:
        raise ClickParameterError(f"max_grade={max_grade} but the qrels hold grade {observed_max}")
    if inject_min_grade is None:
        all_qrels = {f"{s}/{q}": docs for s, split_qrels in data.qrels.items() for q, docs in split_qrels.items()}
        inject_min_grade = relevance_thresholds(all_qrels)["recall"] if observed_max >= 1 else 1
    qrels = data.qrels[split]
    extra_runs = extra_runs or {}
    rng = np.random.default_rng(seed)
    qids = sorted(q for q in qrels if q in run and len(run[q]) > 0)
    if max_queries is not None and len(qids) > max_queries:
        qids = sorted(rng.choice(qids, size=max_queries, replace=False).tolist())
    if doc_features is None:
        doc_names, doc_fn = _apidocs_doc_features(data)
    else:
        doc_names, doc_fn = _user_doc_features(data, doc_features)
    names = ["first_stage", "first_stage_rr"] + [str(k) for k in extra_runs] + ["log_doc_len"] + doc_names
    keep_q, rows_d, rows_r, rows_f = [], [], [], []
    for qid in qids:
        ranked = sorted(run[qid].items(), key=lambda kv: -kv[1])
        judged = sorted(((d, g) for d, g in qrels[qid].items() if g >= inject_min_grade and d in data.corpus),
                        key=lambda kv: -kv[1])[: depth // 2]
        chosen = [d for d, _ in judged]
        seen = set(chosen)
        for d, _ in ranked:
            if len(chosen) >= depth:
                break
            if d not in seen and d in data.corpus:
                chosen.append(d)
                seen.add(d)
        if len(chosen) < depth:
            continue
        rank_of = {d: r for r, (d, _) in enumerate(ranked)}
        floor = min(v for _, v in ranked)
        cols = [np.array([run[qid].get(d, floor) for d in chosen], dtype=np.float64),
                np.array([1.0 / (1 + rank_of[d]) if d in rank_of else 0.0 for d in chosen])]
        for extra in extra_runs.values():
            er = extra.get(qid, {})
            fill = min(er.values()) if er else 0.0
            cols.append(np.array([er.get(d, fill) for d in chosen], dtype=np.float64))
        cols.append(np.array([math.log1p(len(str(data.corpus[d].get("text", "")).split())) for d in chosen]))
        per_doc = np.array([doc_fn(qid, d) for d in chosen], dtype=np.float64).reshape(len(chosen), len(doc_names))
        feats = np.column_stack(cols + list(per_doc.T))
        keep_q.append(qid)
        rows_d.append(chosen)
        rows_r.append([max(0, int(qrels[qid].get(d, 0))) for d in chosen])  # negative labels count as 0
        rows_f.append(feats)
    if not keep_q:
        raise ClickParameterError(f"no {split!r} query has {depth} candidates in the run; lower depth")
    features = np.stack(rows_f).astype(np.float64)
    n_score = 2 + len(extra_runs)
    features[:, :, :n_score] = np.stack([_minmax_rows(features[:, :, j]) for j in range(n_score)], axis=2)
    return ClickEnv(keep_q, np.array(rows_d, dtype=object), np.array(rows_r), features, names, max_grade)


def _cached_dense_run(data, model, queries: dict, k: int) -> dict:
    """``dense_search`` once per (corpus checksum, model, queries, k), cached as JSON under data/cache/clicks."""
    import hashlib
    import json

    from cookbook.config import CACHE_DIR
    from cookbook.retrieval import dense_search

    try:
        name = str(model[0].auto_model.config._name_or_path)
    except Exception:  # noqa: BLE001 - any model object: fall back to its class name
        name = type(model).__name__
    manifest = getattr(data, "manifest", None) or {}
    key = hashlib.sha1(json.dumps([manifest.get("checksum", ""), name, sorted(queries), k,
                                   len(data.corpus)]).encode()).hexdigest()[:16]
    path = CACHE_DIR / "clicks" / f"dense_run_{key}.json"
    if manifest.get("checksum") and path.exists():
        return json.loads(path.read_text())
    run = dense_search(model, data.corpus, queries, k=k)
    if manifest.get("checksum"):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(run))
        tmp.replace(path)
    return run


def apidocs_envs(data, splits=("train", "test"), depth: int = 20, dense_model=None, k: int = 100,
                 max_queries: int | None = None, seed: int = 13, doc_features=None,
                 max_grade: int | None = None) -> dict:
    """BM25 (and optionally dense) runs over the corpus, then :func:`build_env` per split.

    ``dense_model``: a SentenceTransformer (for example ``cookbook.models.load_embedder()``)
    adds a ``dense`` feature; ``None`` keeps BM25 only (fast).  The dense run is cached
    under ``data/cache/clicks`` (keyed by the corpus checksum, model and queries), so only
    the first call embeds the corpus.  ``doc_features`` and ``max_grade`` go to
    :func:`build_env`, so any :class:`~cookbook.beir.RetrievalData` works (a plain BEIR folder
    with binary labels included).  Returns ``{split: ClickEnv}``.

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """
    from cookbook.retrieval import bm25_search

    queries = {q: t for s in splits for q, t in data.split_queries(s).items()}
    if not queries:
        raise ClickParameterError(f"no queries in splits {splits}")
    bm25 = bm25_search(data.corpus, queries, k=k)
    extra = {}
    if dense_model is not None:
        extra["dense"] = _cached_dense_run(data, dense_model, queries, k)
    return {s: build_env(data, bm25, split=s, depth=depth, extra_runs=extra, max_queries=max_queries, seed=seed,
                         doc_features=doc_features, max_grade=max_grade)
            for s in splits}


# ---------------------------------------------------------------------------
# click models


def graded_click_probs(max_grade: int = 3, noise: float = 0.1) -> np.ndarray:
    """P(click | examined, grade): ``noise + (1 - noise) * (2**g - 1) / (2**max_grade - 1)``.

    ``noise`` is the click probability of an irrelevant document that was examined
    (users misclick and explore); the grade-to-probability map is the usual
    exponential gain used in ULTR simulations.

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """
    noise = _check_prob(noise, "noise")
    g = np.arange(max_grade + 1, dtype=np.float64)
    return np.clip(noise + (1 - noise) * (2.0 ** g - 1) / (2.0 ** max_grade - 1), 0.0, 1.0)


def examination_curve(n_positions: int = 10, eta: float = 1.0) -> np.ndarray:
    """P(examined | position k) = (1 / k) ** eta, positions 1..n.

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """
    n_positions = _check_positive_int(n_positions, "n_positions")
    if not np.isfinite(eta) or eta < 0:
        raise ClickParameterError(f"eta must be a non-negative number, got {eta!r}")
    return (1.0 / np.arange(1, n_positions + 1)) ** eta


@dataclass
class PositionBasedModel:
    """Position-based click model: P(click | k, d) = examination[k] * click_prob[grade(d)].

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """

    examination: np.ndarray
    click_prob: np.ndarray

    def __post_init__(self):
        self.examination = _as_prob_vector(self.examination, "examination")
        self.click_prob = _as_prob_vector(self.click_prob, "click_prob")

    @property
    def n_positions(self) -> int:
        return int(self.examination.size)

    def click_probabilities(self, grades: np.ndarray) -> np.ndarray:
        grades = np.asarray(grades)
        if grades.ndim != 2 or grades.shape[1] == 0:
            raise ClickParameterError(f"grades must be a non-empty (sessions, positions) array, got shape {grades.shape}")
        if grades.shape[1] > self.n_positions:
            raise ClickParameterError(f"rankings show {grades.shape[1]} documents but examination covers {self.n_positions} positions")
        return self.examination[: grades.shape[1]] * np.take(self.click_prob, grades)

    def simulate(self, grades: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        grades = np.asarray(grades)
        self.click_probabilities(grades[:1])  # validates shapes cheaply
        exam = self.examination[: grades.shape[1]].astype(np.float32)
        p = np.take(self.click_prob.astype(np.float32), grades) * exam
        return (rng.random(p.shape, dtype=np.float32) < p).view(np.int8)


@dataclass
class CascadeModel:
    """Cascade model: the user scans top-down, clicks an examined document with
    ``click_prob[grade]`` and, after a click, stops with probability ``stop_prob``
    (1.0 = the classic cascade model: at most one click).

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """

    click_prob: np.ndarray
    stop_prob: float = 1.0

    def __post_init__(self):
        self.click_prob = _as_prob_vector(self.click_prob, "click_prob")
        self.stop_prob = _check_prob(self.stop_prob, "stop_prob")

    def simulate(self, grades: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        grades = np.asarray(grades)
        if grades.ndim != 2 or grades.shape[1] == 0:
            raise ClickParameterError(f"grades must be a non-empty (sessions, positions) array, got shape {grades.shape}")
        attract = self.click_prob[grades]
        u = rng.random(grades.shape, dtype=np.float32)
        stop_u = rng.random(grades.shape, dtype=np.float32)
        clicks = np.zeros(grades.shape, dtype=np.int8)
        examining = np.ones(grades.shape[0], dtype=bool)
        for k in range(grades.shape[1]):
            c = examining & (u[:, k] < attract[:, k])
            clicks[:, k] = c
            examining &= ~(c & (stop_u[:, k] < self.stop_prob))
        return clicks


# ---------------------------------------------------------------------------
# logging policies: each returns (sessions, n_shown) indices into the query's pool


def noisy_oracle_scores(env: ClickEnv, quality: float, seed: int = 13) -> np.ndarray:
    """Scores of a production ranker of tunable quality: ``quality * grade + N(0, 1)``.

    The noise is drawn once per query-document pair (the ranker is deterministic):
    ``quality = 0`` is a fixed random order, large ``quality`` sorts by true grade.

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """
    if not np.isfinite(quality) or quality < 0:
        raise ClickParameterError(f"quality must be a non-negative number, got {quality!r}")
    rng = np.random.default_rng(seed)
    return quality * env.relevance.astype(np.float64) + rng.normal(size=env.relevance.shape)


def _check_scores(env: ClickEnv, scores) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != env.doc_ids.shape:
        raise ClickParameterError(f"scores shape {s.shape} does not match the pools {env.doc_ids.shape}")
    if not np.all(np.isfinite(s)):
        raise ClickParameterError("scores contain NaN or infinite values")
    return s


def _check_shown(env: ClickEnv, n_shown: int) -> int:
    n_shown = _check_positive_int(n_shown, "n_shown")
    if n_shown > env.depth:
        raise ClickParameterError(f"n_shown={n_shown} exceeds the pool depth {env.depth}")
    return n_shown


def _grades_of(env: ClickEnv, query_idx: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """True grades of the shown documents (flat gather)."""
    flat = query_idx.astype(np.int64)[:, None] * env.depth + pool
    return np.take(env.relevance.ravel(), flat)


class _Policy:
    """Shared interface: ``sample`` returns (pool indices, grades), both (sessions, n_shown).

    Both arrays are new (owned by the caller), so wrappers such as :class:`RandPair`
    may modify them in place.
    """

    def sample(self, env: ClickEnv, query_idx: np.ndarray, n_shown: int, rng):
        pool = self.rankings(env, query_idx, n_shown, rng)
        return pool, _grades_of(env, query_idx, pool)

    def rankings(self, env: ClickEnv, query_idx: np.ndarray, n_shown: int, rng) -> np.ndarray:
        return self.sample(env, query_idx, n_shown, rng)[0]


@dataclass
class ScoreRanker(_Policy):
    """Deterministic logging policy: show the top ``n_shown`` by ``scores`` (ties by pool order).

    Use :func:`noisy_oracle_scores` for a ranker of tunable quality, or a feature
    column such as ``env.features[:, :, env.feature_index(["first_stage"])[0]]`` for
    the BM25/dense production ranker.

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """

    scores: np.ndarray
    name: str = "deterministic"

    def per_query(self, env: ClickEnv, n_shown: int):
        """The fixed top-``n_shown`` of every query: (pool indices, grades)."""
        n_shown = _check_shown(env, n_shown)
        s = _check_scores(env, self.scores)
        order = np.argsort(-s, axis=1, kind="stable")[:, :n_shown]
        dtype = np.int16 if env.depth < 2**15 else np.int32
        return order.astype(dtype), np.take_along_axis(env.relevance, order, axis=1)

    def sample(self, env: ClickEnv, query_idx: np.ndarray, n_shown: int, rng):
        order, grades = self.per_query(env, n_shown)
        return np.take(order, query_idx, axis=0), np.take(grades, query_idx, axis=0)


@dataclass
class PlackettLuce(_Policy):
    """Stochastic logging policy: Plackett-Luce over ``scores / temperature``.

    Sampled with the Gumbel-top-k trick (add Gumbel noise, take the top k), fully
    vectorised.  ``temperature=inf`` is uniform random; a small temperature
    approaches the deterministic ranker.

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """

    scores: np.ndarray
    temperature: float = 1.0
    name: str = "plackett-luce"

    def __post_init__(self):
        if not (self.temperature > 0):
            raise ClickParameterError(f"temperature must be > 0 (use inf for uniform), got {self.temperature!r}")

    def rankings(self, env: ClickEnv, query_idx: np.ndarray, n_shown: int, rng) -> np.ndarray:
        n_shown = _check_shown(env, n_shown)
        s = _check_scores(env, self.scores)
        logits = np.zeros_like(s) if np.isinf(self.temperature) else s / self.temperature
        u = rng.random((len(query_idx), env.depth))
        keys = np.take(logits, query_idx, axis=0) - np.log(-np.log(u + 1e-300))
        if n_shown < env.depth:
            top = np.argpartition(-keys, n_shown - 1, axis=1)[:, :n_shown]
        else:
            top = np.broadcast_to(np.arange(env.depth), keys.shape)
        order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1)


def _swap_rows(arrays, rows, i, j):
    """Swap columns i[r] and j[r] of row rows[r], in place, in every (C-contiguous) array."""
    width = arrays[0].shape[1]
    fi = rows * width + i
    fj = rows * width + j
    for a in arrays:
        flat = a.reshape(-1)
        tmp = flat[fi]
        flat[fi] = flat[fj]
        flat[fj] = tmp


@dataclass
class RandPair(_Policy):
    """Randomised swap on top of a policy: with probability ``prob`` swap two positions.

    ``anchor=None`` swaps a uniformly random pair; ``anchor=1`` swaps position 1
    with a uniformly random other position (the RandPair intervention of
    Joachims et al., 2017).

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """

    base: object
    prob: float = 1.0
    anchor: int | None = None
    name: str = "randpair"

    def __post_init__(self):
        self.prob = _check_prob(self.prob, "prob")

    def sample(self, env: ClickEnv, query_idx: np.ndarray, n_shown: int, rng):
        pool, grades = self.base.sample(env, query_idx, n_shown, rng)  # fresh arrays: swap in place
        n, k = pool.shape
        if k < 2:
            return pool, grades
        if self.anchor is not None and not 1 <= self.anchor <= k:
            raise ClickParameterError(f"anchor={self.anchor} is not a position in 1..{k}")
        rows = np.flatnonzero(rng.random(n, dtype=np.float32) < self.prob)
        m = rows.size
        i = rng.integers(0, k, m) if self.anchor is None else np.full(m, self.anchor - 1)
        j = (i + rng.integers(1, k, m)) % k
        pool, grades = np.ascontiguousarray(pool), np.ascontiguousarray(grades)
        _swap_rows((pool, grades), rows, i, j)
        return pool, grades


@dataclass
class RandTopK(_Policy):
    """Randomised swap on top of a policy: with probability ``prob`` shuffle the top ``k``.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """

    base: object
    k: int = 3
    prob: float = 1.0
    name: str = "randtopk"

    def __post_init__(self):
        self.k = _check_positive_int(self.k, "k")
        self.prob = _check_prob(self.prob, "prob")

    def sample(self, env: ClickEnv, query_idx: np.ndarray, n_shown: int, rng):
        pool, grades = self.base.sample(env, query_idx, n_shown, rng)  # fresh arrays: shuffle in place
        k = min(self.k, pool.shape[1])
        rows = np.flatnonzero(rng.random(pool.shape[0]) < self.prob)
        perm = np.argsort(rng.random((rows.size, k)), axis=1)
        for a in (pool, grades):
            a[rows, :k] = np.take_along_axis(a[rows, :k], perm, axis=1)
        return pool, grades


# ---------------------------------------------------------------------------
# simulation


@dataclass
class ClickArrays:
    """A click log as arrays: ``query_idx`` (sessions,), ``pool_idx``/``grades``/``clicks``
    (sessions, n_shown); column k is position k + 1.

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """

    query_idx: np.ndarray
    pool_idx: np.ndarray
    grades: np.ndarray
    clicks: np.ndarray

    @property
    def n_impressions(self) -> int:
        return int(self.clicks.size)


def _sample_queries(env: ClickEnv, n_sessions: int, rng, query_weights=None) -> np.ndarray:
    if query_weights is None:
        return rng.integers(0, env.n_queries, n_sessions, dtype=np.int32 if env.n_queries < 2**31 else np.int64)
    w = np.asarray(query_weights, dtype=np.float64)
    if w.shape != (env.n_queries,) or np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise ClickParameterError(f"query_weights must be {env.n_queries} non-negative numbers with a positive sum")
    return rng.choice(env.n_queries, size=n_sessions, p=w / w.sum())


def simulate_arrays(env: ClickEnv, policy, click_model, n_sessions: int, n_shown: int = 10,
                    seed: int = 13, query_weights=None) -> ClickArrays:
    """Vectorised simulation: sample queries, rank with ``policy``, click with ``click_model``.

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """
    n_sessions = _check_positive_int(n_sessions, "n_sessions")
    n_shown = _check_shown(env, n_shown)
    rng = np.random.default_rng(seed)
    q = _sample_queries(env, n_sessions, rng, query_weights)
    if hasattr(policy, "per_query") and isinstance(click_model, PositionBasedModel):
        # deterministic policy + position-based users: every query's page and click
        # probabilities are fixed, so compute them once per query and gather rows
        order, grades_q = policy.per_query(env, n_shown)
        p_q = click_model.click_probabilities(grades_q).astype(np.float32)
        pool, grades, p = (np.take(a, q, axis=0) for a in (order, grades_q, p_q))
        clicks = (rng.random(p.shape, dtype=np.float32) < p).view(np.int8)
        return ClickArrays(q, pool, grades, clicks)
    pool, grades = policy.sample(env, q, n_shown, rng)
    clicks = click_model.simulate(grades, rng)
    return ClickArrays(q, pool, grades, clicks)


def estimate_propensities(query_idx: np.ndarray, pool_idx: np.ndarray, n_queries: int, depth: int) -> np.ndarray:
    """P̂(policy shows pool doc j at position k | query q), estimated from the log.

    ``count(q, j, k) / count(q)`` for every impression, returned with the shape of
    ``pool_idx``.  A deterministic policy gives 1.0 everywhere.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """
    query_idx = np.asarray(query_idx, dtype=np.int64)
    pool_idx = np.asarray(pool_idx, dtype=np.int64)
    n, k = pool_idx.shape
    key = (query_idx[:, None] * depth + pool_idx) * k + np.arange(k)
    counts = np.bincount(key.ravel(), minlength=n_queries * depth * k)
    per_query = np.bincount(query_idx, minlength=n_queries)
    return counts[key] / per_query[query_idx][:, None]


def simulate_click_log(env: ClickEnv, policy, click_model, n_sessions: int, n_shown: int = 10,
                       seed: int = 13, query_weights=None, with_features: bool = True) -> pd.DataFrame:
    """Simulate search sessions and return the click log, one row per impression.

    Columns: ``session``, ``query`` (qid), ``doc``, ``position`` (1-based),
    ``click`` (0/1), ``relevance`` (the true grade: hidden from a learner, kept for
    evaluation), ``q_index``/``pool_index`` (indices into ``env``), the features
    (``feat_<name>``) and ``propensity``: the estimated probability that the
    logging policy shows this document at this position for this query
    (:func:`estimate_propensities`).

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """
    arr = simulate_arrays(env, policy, click_model, n_sessions, n_shown, seed, query_weights)
    return arrays_to_frame(env, arr, with_features=with_features)


def arrays_to_frame(env: ClickEnv, arr: ClickArrays, with_features: bool = True) -> pd.DataFrame:
    """The DataFrame form of a :class:`ClickArrays` log (see :func:`simulate_click_log`).

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """
    n, k = arr.pool_idx.shape
    q = np.repeat(arr.query_idx.astype(np.int64), k)
    j = arr.pool_idx.ravel().astype(np.int64)
    flat_doc = q * env.depth + j
    doc_codes, doc_uniques = pd.factorize(env.doc_ids.ravel())
    cols = {
        "session": np.repeat(np.arange(n, dtype=np.int64), k),
        "query": pd.Categorical.from_codes(q, categories=pd.Index(env.qids)),
        "doc": pd.Categorical.from_codes(doc_codes[flat_doc], categories=pd.Index(doc_uniques)),
        "position": np.tile(np.arange(1, k + 1, dtype=np.int16), n),
        "click": arr.clicks.ravel(),
        "relevance": arr.grades.ravel(),
        "q_index": q.astype(np.int32),
        "pool_index": j.astype(np.int32),
    }
    if with_features:
        f = env.features[q, j]
        for i, name in enumerate(env.feature_names):
            cols[f"feat_{name}"] = f[:, i]
    cols["propensity"] = estimate_propensities(arr.query_idx, arr.pool_idx, env.n_queries, env.depth).ravel()
    return pd.DataFrame(cols)


def simulate_reference_loop(env: ClickEnv, rankings_per_query, examination, click_prob,
                            n_sessions: int, seed: int = 13, swap_prob: float = 0.0) -> list[tuple]:
    """Plain-Python reference: one impression at a time, position-based clicks.

    ``rankings_per_query[q]`` is the (deterministic) list of pool indices shown for
    query ``q``; with ``swap_prob`` a uniformly random pair of positions is swapped
    (RandPair).  Returns ``[(session, q, pool_index, position, click), ...]``.  Slow
    on purpose: it is the readable definition that the vectorised
    :func:`simulate_arrays` must agree with (tests) and beat (bench).

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """
    exam = [float(x) for x in _as_prob_vector(examination, "examination")]
    cp = [float(x) for x in _as_prob_vector(click_prob, "click_prob")]
    swap_prob = _check_prob(swap_prob, "swap_prob")
    rel = env.relevance.tolist()
    ranks = [list(map(int, r)) for r in rankings_per_query]
    if any(len(r) == 0 for r in ranks):
        raise ClickParameterError("rankings_per_query contains an empty ranking")
    if any(len(r) > len(exam) for r in ranks):
        raise ClickParameterError("a ranking is longer than the examination curve")
    rnd = random.Random(seed)
    log = []
    for s in range(n_sessions):
        q = rnd.randrange(env.n_queries)
        shown = list(ranks[q])
        if swap_prob and rnd.random() < swap_prob and len(shown) > 1:
            i, j = rnd.sample(range(len(shown)), 2)
            shown[i], shown[j] = shown[j], shown[i]
        for pos, d in enumerate(shown):
            p = exam[pos] * cp[rel[q][d]]
            log.append((s, q, d, pos + 1, 1 if rnd.random() < p else 0))
    return log


def ctr_by_position(log: pd.DataFrame) -> pd.Series:
    """Click-through rate per position of a click log.

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """
    return log.groupby("position", observed=True)["click"].mean()
