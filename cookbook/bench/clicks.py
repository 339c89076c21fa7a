"""Click simulator throughput against the plain loop, and two-tower training time.

Taught in: notebooks/70_simulate_click_logs.ipynb (the numbers), README (the table)
"""

from __future__ import annotations

import math
import time

import numpy as np

from cookbook.clicks import (
    ClickParameterError,
    PositionBasedModel,
    RandPair,
    ScoreRanker,
    arrays_to_frame,
    examination_curve,
    graded_click_probs,
    noisy_oracle_scores,
    simulate_arrays,
    simulate_reference_loop,
    synthetic_env,
)
from cookbook.twotower import fit_two_tower


def measure(profile_name: str, sessions: tuple[int, int] | None = None) -> list[dict]:
    """Simulator throughput vs the plain loop, and two-tower training time.

    Rows ``{"name", "value", "unit", "note"}``.  The vectorised simulator and the plain
    loop (:func:`simulate_reference_loop`) simulate the same setting in the same run, for
    two settings: a deterministic ranker, and the same ranker with RandPair swaps in half
    of the sessions; both on a synthetic environment of 1,000 queries x 20 candidates,
    position-based users, 10 positions.  Vectorised timings are the best of 3.
    ``sessions`` = (vectorised, plain loop) overrides the profile's sizes (the tests use a
    tiny pair).

    Taught in: notebooks/70_simulate_click_logs.ipynb
    """
    sizes = {"smoke": (200_000, 20_000), "laptop": (1_000_000, 100_000), "full": (5_000_000, 300_000)}
    profile_name = str(profile_name).strip().lower()
    if profile_name not in sizes:
        raise ClickParameterError(f"unknown profile {profile_name!r}; choose one of {sorted(sizes)}")
    n_vec, n_loop = sessions or sizes[profile_name]
    env = synthetic_env(n_queries=1000, depth=20, seed=13)
    exam = examination_curve(10)
    cp = graded_click_probs(env.max_grade, noise=0.1)
    scores = noisy_oracle_scores(env, quality=1.0, seed=13)
    model = PositionBasedModel(exam, cp)
    rankings = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    setting = "1000 queries x 20 candidates, 10 positions, position-based users"
    rows = []
    for label, policy, swap in (("deterministic", ScoreRanker(scores), 0.0),
                                ("randpair", RandPair(ScoreRanker(scores), prob=0.5), 0.5)):
        simulate_arrays(env, policy, model, 1000, 10, seed=0)  # warm-up
        best = math.inf
        for rep in range(3):
            t0 = time.perf_counter()
            arr = simulate_arrays(env, policy, model, n_vec, 10, seed=rep)
            best = min(best, time.perf_counter() - t0)
        vec_rate = arr.n_impressions / best
        t0 = time.perf_counter()
        ref = simulate_reference_loop(env, rankings, exam, cp, n_loop, seed=0, swap_prob=swap)
        loop_rate = len(ref) / (time.perf_counter() - t0)
        what = "deterministic ranker" if swap == 0 else "deterministic ranker + RandPair in 50% of sessions"
        suffix = "" if label == "deterministic" else "_randpair"
        rows += [
            {"name": f"clicks.simulator_throughput{suffix}", "value": round(vec_rate), "unit": "impressions/s",
             "note": f"vectorised numpy, {n_vec:,} sessions, best of 3; {what}; {setting}"},
            {"name": f"clicks.reference_loop_throughput{suffix}", "value": round(loop_rate), "unit": "impressions/s",
             "note": f"plain Python per-impression loop, {n_loop:,} sessions, same setting"},
            {"name": f"clicks.speedup_vs_loop{suffix}", "value": round(vec_rate / loop_rate, 1), "unit": "x",
             "note": f"vectorised / plain loop, same run ({what})"},
        ]
    policy = RandPair(ScoreRanker(scores), prob=0.5)
    t0 = time.perf_counter()
    log = arrays_to_frame(env, simulate_arrays(env, policy, model, n_vec // 10, 10, seed=1))
    frame_rate = len(log) / (time.perf_counter() - t0)


    fit_two_tower(log.head(1000), relevance="linear", feature_cols=["feat_f0"], steps=2)  # warm-up (imports)
    t0 = time.perf_counter()
    fit = fit_two_tower(log, relevance="mlp", feature_cols=["feat_f0", "feat_f1"], n_positions=10,
                        steps=100, seed=13)
    train_s = time.perf_counter() - t0
    rows += [
        {"name": "clicks.log_dataframe_throughput", "value": round(frame_rate), "unit": "impressions/s",
         "note": "RandPair simulation plus the pandas DataFrame with features and estimated propensities"},
        {"name": "twotower.train_time", "value": round(train_s, 2), "unit": "s",
         "note": f"MLP relevance tower + position bias tower, {len(log):,} impressions "
                 f"aggregated to {fit.n_rows:,} rows, L-BFGS (<= 100 iterations), 1 thread"},
    ]
    return rows
