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

The package in two rooms: ``env`` (candidate pools) and ``simulate`` (click models, policies,
the simulator); every public name is re-exported here.

Taught in: notebooks/70_simulate_click_logs.ipynb and
notebooks/71_two_tower_identifiability_and_confounding.ipynb
"""

from cookbook.clicks.env import (
    ClickEnv,
    ClickParameterError,
    apidocs_envs,
    build_env,
    synthetic_env,
    with_grade_features,
)
from cookbook.clicks.simulate import (
    CascadeModel,
    ClickArrays,
    PlackettLuce,
    PositionBasedModel,
    RandPair,
    RandTopK,
    ScoreRanker,
    arrays_to_frame,
    ctr_by_position,
    estimate_propensities,
    examination_curve,
    graded_click_probs,
    noisy_oracle_scores,
    simulate_arrays,
    simulate_click_log,
    simulate_reference_loop,
)

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
    "arrays_to_frame",
    "simulate_reference_loop",
    "estimate_propensities",
    "ctr_by_position",
]
