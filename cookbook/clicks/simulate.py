"""Click models, logging policies and the vectorised click-log simulator.

Taught in: notebooks/70_simulate_click_logs.ipynb
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cookbook.clicks.env import (
    ClickEnv,
    ClickParameterError,
    _as_prob_vector,
    _check_positive_int,
    _check_prob,
)


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
