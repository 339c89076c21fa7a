"""Candidate pools for click simulation: the queries, the documents a logging policy may show,
their true grades and the features a ranker sees (:class:`ClickEnv`, :func:`build_env`).

Taught in: notebooks/70_simulate_click_logs.ipynb
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cookbook.config import CACHE_DIR
from cookbook.evaluate import relevance_thresholds
from cookbook.retrieval import bm25_search, dense_search


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
