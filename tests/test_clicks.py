"""Click simulators, logging policies, identifiability and weights (cookbook.clicks)."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cookbook import clicks


def one_query_env(grades):
    grades = np.asarray([grades])
    depth = grades.shape[1]
    docs = np.array([[f"d{j}" for j in range(depth)]], dtype=object)
    return clicks.ClickEnv(["q0"], docs, grades, np.zeros((1, depth, 1)), ["f0"])


def in_order(env):
    """A deterministic policy that shows the pool in its stored order."""
    return clicks.ScoreRanker(-np.arange(env.depth, dtype=float)[None, :].repeat(env.n_queries, 0))


@settings(max_examples=15, deadline=None)
@given(
    exam=st.lists(st.floats(0.05, 1.0), min_size=2, max_size=6),
    noise=st.floats(0.0, 0.5),
    data=st.data(),
)
def test_ctr_per_position_matches_examination_times_click_prob(exam, noise, data):
    grades = data.draw(st.lists(st.integers(0, 3), min_size=len(exam), max_size=len(exam)))
    env = one_query_env(grades)
    cp = clicks.graded_click_probs(3, noise=noise)
    n = 20_000
    arr = clicks.simulate_arrays(env, in_order(env), clicks.PositionBasedModel(exam, cp), n, len(exam), seed=1)
    ctr = arr.clicks.mean(axis=0)
    expected = np.asarray(exam) * cp[np.asarray(grades)]
    tol = 5 * np.sqrt(expected * (1 - expected) / n) + 2e-3
    assert np.all(np.abs(ctr - expected) <= tol)


def test_vectorised_agrees_with_reference_loop():
    env = clicks.synthetic_env(n_queries=30, depth=8, seed=3)
    exam = clicks.examination_curve(5)
    cp = clicks.graded_click_probs(env.max_grade, 0.1)
    scores = clicks.noisy_oracle_scores(env, 1.0, seed=2)
    ranks = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    n = 40_000
    ref = pd.DataFrame(clicks.simulate_reference_loop(env, ranks, exam, cp, n, seed=1, swap_prob=0.5),
                       columns=["session", "q", "d", "position", "click"])
    log = clicks.simulate_click_log(env, clicks.RandPair(clicks.ScoreRanker(scores), prob=0.5),
                                    clicks.PositionBasedModel(exam, cp), n, 5, seed=1)
    a = ref.groupby("position")["click"].mean().to_numpy()
    b = clicks.ctr_by_position(log).to_numpy()
    assert np.allclose(a, b, atol=0.012)


def test_log_columns_and_propensities():
    env = clicks.synthetic_env(n_queries=20, depth=6, n_features=2, seed=0)
    user = clicks.PositionBasedModel(clicks.examination_curve(4), clicks.graded_click_probs(3))
    det = clicks.simulate_click_log(env, in_order(env), user, 500, 4, seed=0)
    for col in ["session", "query", "doc", "position", "click", "relevance", "feat_f0", "feat_f1", "propensity"]:
        assert col in det.columns
    assert len(det) == 500 * 4 and det["position"].min() == 1
    assert np.allclose(det["propensity"], 1.0)  # deterministic policy
    pl = clicks.simulate_click_log(env, clicks.PlackettLuce(env.relevance, 1.0), user, 2000, 4, seed=0)
    # per query and position, the estimated propensities of the shown docs sum to 1
    first = pl.drop_duplicates(["query", "doc", "position"])
    sums = first.groupby(["query", "position"], observed=True)["propensity"].sum()
    assert np.allclose(sums, 1.0)


def test_uniform_plackett_luce_spreads_documents():
    env = clicks.synthetic_env(n_queries=1, depth=5, seed=0)
    arr = clicks.simulate_arrays(env, clicks.PlackettLuce(env.relevance, np.inf),
                                 clicks.PositionBasedModel([1.0] * 5, [0.5] * 4), 50_000, 5, seed=0)
    freq = np.bincount(arr.pool_idx[:, 0], minlength=5) / 50_000
    assert np.allclose(freq, 0.2, atol=0.01)
    assert (np.sort(arr.pool_idx, axis=1) == np.arange(5)).all()  # a permutation every time


@settings(max_examples=20, deadline=None)
@given(prob=st.floats(0, 1), k=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_swaps_permute_the_base_ranking(prob, k, seed):
    env = clicks.synthetic_env(n_queries=10, depth=8, seed=1)
    base = clicks.ScoreRanker(clicks.noisy_oracle_scores(env, 2.0, seed=1))
    q = np.arange(10).repeat(20)
    rng = np.random.default_rng(seed)
    b_pool, b_grades = base.sample(env, q, 6, rng)
    for policy in (clicks.RandPair(base, prob=prob), clicks.RandTopK(base, k=k, prob=prob)):
        pool, grades = policy.sample(env, q, 6, np.random.default_rng(seed))
        assert (np.sort(pool, axis=1) == np.sort(b_pool, axis=1)).all()
        assert (np.take_along_axis(env.relevance[q], pool.astype(int), axis=1) == grades).all()
    pool, _ = clicks.RandTopK(base, k=k, prob=prob).sample(env, q, 6, np.random.default_rng(seed))
    assert (pool[:, k:] == b_pool[:, k:]).all()


def test_cascade_has_at_most_one_click():
    env = one_query_env([3, 3, 0, 3])
    arr = clicks.simulate_arrays(env, in_order(env), clicks.CascadeModel([0.1, 0.2, 0.4, 0.8]), 20_000, 4, seed=0)
    assert arr.clicks.sum(axis=1).max() == 1
    assert abs(arr.clicks[:, 0].mean() - 0.8) < 0.02
    assert abs(arr.clicks[:, 1].mean() - 0.2 * 0.8) < 0.02


def hand_log(rows):
    return pd.DataFrame(rows, columns=["query", "doc", "position", "click", "feat_x"])


def test_rank_graph_connects_positions_sharing_a_pair():
    log = hand_log([("q", "a", 1, 1, 0.1), ("q", "a", 2, 0, 0.1), ("q", "b", 2, 0, 0.5),
                    ("q", "b", 3, 1, 0.5), ("r", "c", 4, 0, 0.9)])
    rep = clicks.identifiability(log, n_positions=4, by="pair")
    assert rep.components == [[1, 2, 3], [4]] and not rep.connected
    assert "NOT identifiable" in rep.verdict
    log.loc[len(log)] = ("r", "c", 3, 0, 0.9)
    rep = clicks.identifiability(log, n_positions=4, by="pair")
    assert rep.connected and rep.verdict.startswith("identifiable")


def test_rank_graph_feature_overlap_is_a_second_route():
    # different pairs, same feature value at positions 1 and 3: no pair edge, one feature edge
    log = hand_log([("q", "a", 1, 1, 0.5), ("r", "b", 3, 0, 0.5), ("s", "c", 2, 0, 0.7), ("t", "d", 1, 0, 0.7)])
    assert len(clicks.identifiability(log, 3, by="pair").components) == 3
    feat = clicks.identifiability(log, 3, by="features", feature_cols=["feat_x"])
    assert feat.connected
    assert clicks.rank_graph(log, 3, by="both").number_of_edges() == 2


def test_unseen_positions_are_isolated_nodes():
    log = hand_log([("q", "a", 1, 1, 0.1), ("q", "a", 2, 0, 0.1)])
    rep = clicks.identifiability(log, n_positions=5)
    assert rep.components == [[1, 2], [3], [4], [5]]


def test_propensity_weights_clip_and_normalise():
    log = pd.DataFrame({"propensity": [1.0, 0.5, 0.01, 0.25]})
    w = clicks.propensity_weights(log, clip=10, normalise=False)
    assert np.allclose(w, [1, 2, 10, 4])
    assert np.isclose(clicks.propensity_weights(log, clip=10).mean(), 1.0)


@pytest.mark.parametrize("make, message", [
    (lambda: clicks.PositionBasedModel([0.5, -0.1], [0.1, 0.9]), r"examination\[1\] = -0.1"),
    (lambda: clicks.PositionBasedModel([0.5, 0.2], [0.1, 1.5]), r"click_prob\[1\] = 1.5"),
    (lambda: clicks.PositionBasedModel([], [0.1, 0.9]), "non-empty"),
    (lambda: clicks.CascadeModel([0.1, 0.2], stop_prob=-1), "stop_prob"),
    (lambda: clicks.graded_click_probs(3, noise=2.0), "noise"),
    (lambda: clicks.ClickEnv(["q"], np.empty((1, 0), dtype=object), np.empty((1, 0)), np.empty((1, 0, 1))), "empty rankings"),
    (lambda: clicks.ClickEnv([], np.empty((0, 3), dtype=object), np.empty((0, 3)), np.empty((0, 3, 1))), "at least one query"),
    (lambda: one_query_env([0, 5]), "grades must lie in 0..3"),
    (lambda: clicks.PlackettLuce(np.zeros((1, 3)), temperature=0), "temperature"),
    (lambda: clicks.noisy_oracle_scores(one_query_env([0, 1]), -1), "quality"),
    (lambda: clicks.RandPair(None, prob=1.5), "prob"),
    (lambda: clicks.simulate_reference_loop(one_query_env([0, 1]), [[]], [1.0], [0.1, 0.5, 0.7, 1.0], 5), "empty ranking"),
    (lambda: clicks.propensity_weights(pd.DataFrame({"propensity": [0.0]})), "probabilities"),
    (lambda: clicks.propensity_weights(pd.DataFrame({"propensity": [0.5]}), clip=0.5), "clip"),
    (lambda: clicks.identifiability(hand_log([])), "empty"),
    (lambda: clicks.rank_graph(hand_log([("q", "a", 1, 0, 0.0)]), by="docs"), "by must be"),
])
def test_bad_parameters_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_simulation_requests():
    env = one_query_env([0, 1, 2])
    user = clicks.PositionBasedModel([1.0, 0.5, 0.3], clicks.graded_click_probs(3))
    with pytest.raises(ValueError, match="n_shown=4 exceeds the pool depth 3"):
        clicks.simulate_arrays(env, in_order(env), user, 10, n_shown=4)
    with pytest.raises(ValueError, match="n_sessions"):
        clicks.simulate_arrays(env, in_order(env), user, 0, n_shown=2)
    short = clicks.PositionBasedModel([1.0], clicks.graded_click_probs(3))
    with pytest.raises(ValueError, match="examination covers 1 positions"):
        clicks.simulate_arrays(env, in_order(env), short, 10, n_shown=2)


def test_bench_rows_have_the_contract_keys():
    rows = clicks.run_bench("smoke", sessions=(20_000, 2_000))
    names = {r["name"] for r in rows}
    assert {"clicks.simulator_throughput", "clicks.speedup_vs_loop", "twotower.train_time"} <= names
    for r in rows:
        assert set(r) == {"name", "value", "unit", "note"}
    with pytest.raises(ValueError, match="unknown profile"):
        clicks.run_bench("huge")
