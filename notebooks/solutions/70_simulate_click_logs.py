"""Solutions to the exercises of notebooks/70_simulate_click_logs.ipynb.

Run from the repository root: ``COOKBOOK_PROFILE=smoke python notebooks/solutions/70_simulate_click_logs.py``.
Each function returns a small table; the ``__main__`` block prints them all.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cookbook import clicks, corpus
from cookbook.config import SEED

N_SESSIONS = 20_000
N_SHOWN = 10


def load_env():
    return clicks.apidocs_envs(corpus.load_apidocs(), splits=("train",), seed=SEED)["train"]


def bm25_ranker(env):
    return clicks.ScoreRanker(env.features[:, :, env.feature_index(["first_stage"])[0]])


def exercise_1(env) -> pd.DataFrame:
    """CTR at position 10 for eta in {0.5, 1, 2}, BM25 vs uniform policy."""
    cp = clicks.graded_click_probs(3, 0.1)
    uniform = clicks.PlackettLuce(env.relevance.astype(float), temperature=np.inf)
    rows = []
    for eta in (0.5, 1.0, 2.0):
        user = clicks.PositionBasedModel(clicks.examination_curve(N_SHOWN, eta), cp)
        for name, policy in {"BM25": bm25_ranker(env), "uniform": uniform}.items():
            log = clicks.simulate_click_log(env, policy, user, N_SESSIONS, N_SHOWN, seed=SEED, with_features=False)
            rows.append({"eta": eta, "policy": name, "CTR@10": clicks.ctr_by_position(log).loc[10]})
    # Steeper examination (eta=2) starves position 10 whatever the policy. At every eta the
    # uniform policy's position 10 gets more clicks than BM25's: BM25 moves relevant docs up.
    return pd.DataFrame(rows).pivot(index="eta", columns="policy", values="CTR@10")


def exercise_2(env) -> pd.Series:
    """Clicks per session as the noisy oracle's quality grows."""
    user = clicks.PositionBasedModel(clicks.examination_curve(N_SHOWN), clicks.graded_click_probs(3, 0.1))
    out = {}
    for quality in (0.0, 0.5, 1.0, 2.0, 4.0):
        policy = clicks.ScoreRanker(clicks.noisy_oracle_scores(env, quality, seed=SEED))
        arr = clicks.simulate_arrays(env, policy, user, N_SESSIONS, N_SHOWN, seed=SEED)
        out[quality] = arr.clicks.sum() / N_SESSIONS
    # More clicks, with diminishing returns: once the relevant documents are on the page,
    # reordering them only moves clicks between positions.
    return pd.Series(out, name="clicks per session").rename_axis("quality")


def exercise_3(env) -> pd.DataFrame:
    """Cascade with stop_prob 1.0 vs 0.5."""
    cp = clicks.graded_click_probs(3, 0.1)
    cols = {}
    for stop in (1.0, 0.5):
        log = clicks.simulate_click_log(env, bm25_ranker(env), clicks.CascadeModel(cp, stop_prob=stop),
                                        N_SESSIONS, N_SHOWN, seed=SEED, with_features=False)
        cols[f"stop_prob={stop}"] = clicks.ctr_by_position(log)
    # The extra clicks land below the first click: users who continue scanning.
    return pd.DataFrame(cols).round(3)


def exercise_4(env) -> pd.DataFrame:
    """Where does each RandPair variant spread documents? Mean propensity by position."""
    user = clicks.PositionBasedModel(clicks.examination_curve(N_SHOWN), clicks.graded_click_probs(3, 0.1))
    out = {}
    for name, policy in {"RandPair()": clicks.RandPair(bm25_ranker(env)),
                         "RandPair(anchor=1)": clicks.RandPair(bm25_ranker(env), anchor=1)}.items():
        log = clicks.simulate_click_log(env, policy, user, N_SESSIONS, N_SHOWN, seed=SEED, with_features=False)
        out[name] = log.groupby("position")["propensity"].mean()
    # anchor=1 moves position 1's document everywhere and every other document only to
    # position 1, so propensities stay high at positions 2..10 and drop at position 1.
    return pd.DataFrame(out).round(3)


def exercise_5(env) -> pd.DataFrame:
    """Two user types with different examination curves and a context column."""
    cp = clicks.graded_click_probs(3, 0.1)
    logs = []
    for user_type, eta in ((0, 0.5), (1, 2.0)):
        user = clicks.PositionBasedModel(clicks.examination_curve(N_SHOWN, eta), cp)
        log = clicks.simulate_click_log(env, clicks.RandPair(bm25_ranker(env)), user, N_SESSIONS // 2, N_SHOWN,
                                        seed=SEED + user_type)
        logs.append(log.assign(ctx_mobile=float(user_type)))
    log = pd.concat(logs, ignore_index=True)
    # notebook 71: twotower.fit_two_tower(log, context_cols=["ctx_mobile"], ...) gives the bias
    # tower a per-context shift; a full per-context curve needs position x context features.
    return log.groupby(["ctx_mobile", "position"])["click"].mean().unstack(0).round(3)


if __name__ == "__main__":
    env = load_env()
    for fn in (exercise_1, exercise_2, exercise_3, exercise_4, exercise_5):
        print(f"\n== {fn.__name__}: {fn.__doc__}")
        print(fn(env))
