"""Two-tower click models (cookbook.twotower)."""

import warnings

import numpy as np
import pandas as pd
import pytest

from cookbook import clicks, twotower

N_SHOWN = 5


@pytest.fixture(scope="module")
def world():
    env = clicks.with_grade_features(clicks.synthetic_env(n_queries=60, depth=8, n_features=2, seed=4))
    exam = clicks.examination_curve(N_SHOWN)
    user = clicks.PositionBasedModel(exam, clicks.graded_click_probs(env.max_grade, 0.1))
    base = clicks.ScoreRanker(clicks.noisy_oracle_scores(env, 1.0, seed=4))
    det = clicks.simulate_click_log(env, base, user, 20_000, N_SHOWN, seed=1)
    swap = clicks.simulate_click_log(env, clicks.RandPair(base, 1.0), user, 20_000, N_SHOWN, seed=1)
    return env, exam, det, swap


GRADE = [f"feat_grade_{g}" for g in range(4)]


def test_well_specified_tower_recovers_the_examination_curve(world):
    env, exam, det, swap = world
    fit = twotower.fit_two_tower(swap, relevance="linear", feature_cols=GRADE, n_positions=N_SHOWN, steps=100)
    assert twotower.examination_error(fit.examination(), exam) < 0.03
    assert twotower.ndcg_at_10(env, twotower.relevance_scores(fit, env)) > 0.99
    assert fit.n_rows < fit.n_impressions  # impressions were aggregated


def test_deterministic_log_cannot_tell_curves_apart(world):
    _, exam, det, swap = world
    gaps = {}
    for name, log in {"det": det, "swap": swap}.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", twotower.UnidentifiedPositionsWarning)  # the point of the det log
            free = twotower.fit_two_tower(log, relevance="id", n_positions=N_SHOWN, steps=150)
        flat = twotower.fit_two_tower(log, relevance="id", n_positions=N_SHOWN, steps=150,
                                      fixed_examination=np.ones(N_SHOWN))
        gaps[name] = flat.losses[-1] - free.losses[-1]
    assert abs(gaps["det"]) < 1e-3
    assert gaps["swap"] > 5e-3


def test_sample_weights_change_the_fit_and_are_validated(world):
    env, _, _, swap = world
    w = np.linspace(0.5, 1.5, len(swap))
    a = twotower.fit_two_tower(swap, relevance="linear", feature_cols=["feat_f0"], steps=50)
    b = twotower.fit_two_tower(swap, relevance="linear", feature_cols=["feat_f0"], steps=50, sample_weight=w)
    assert not np.allclose(a.examination(), b.examination())
    with pytest.raises(ValueError, match="sample_weight has 3 values"):
        twotower.fit_two_tower(swap, relevance="linear", feature_cols=["feat_f0"], sample_weight=[1, 2, 3])


def test_scores_have_the_pool_shape(world):
    env, _, det, _ = world
    for relevance, cols in (("id", None), ("linear", ["feat_f0"]), ("mlp", ["feat_f0", "feat_f1"])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", twotower.UnidentifiedPositionsWarning)
            fit = twotower.fit_two_tower(det, relevance=relevance, feature_cols=cols, steps=5, optimizer="adam")
        assert twotower.relevance_scores(fit, env).shape == env.doc_ids.shape


def test_examination_error_is_relative_to_position_one():
    assert twotower.examination_error([2, 1, 0.5], [1, 0.5, 0.25]) == 0
    assert np.isclose(twotower.examination_error([1, 1], [1, 0.5]), 0.5)


def test_ndcg_of_the_true_grades_is_one(world):
    env = world[0]
    assert twotower.ndcg_at_10(env, env.relevance.astype(float)) == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(relevance="tree"), "relevance must be"),
    (dict(combine="max"), "combine must be"),
    (dict(optimizer="sgd"), "optimizer must be"),
    (dict(feature_cols=["feat_missing"]), "no column"),
    (dict(n_positions=2), "n_positions=2"),
    (dict(fixed_examination=[1.0, 0.5]), "fixed_examination must hold"),
    (dict(fixed_examination=[1.0, 0.5, 0.3, 0.2, 0.1], combine="additive"), "combine='product'"),
])
def test_bad_arguments(world, kwargs, message):
    log = world[2]
    with pytest.raises(ValueError, match=message):
        twotower.fit_two_tower(log, **{"relevance": "linear", "feature_cols": ["feat_f0"], **kwargs})


def test_empty_log_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        twotower.fit_two_tower(pd.DataFrame({"position": [], "click": []}))


def test_fit_warns_and_marks_positions_the_log_cannot_identify(world):
    _, exam, det, swap = world
    with pytest.warns(twotower.UnidentifiedPositionsWarning, match=r"position\(s\) \[2, 3, 4, 5\]"):
        fit = twotower.fit_two_tower(det, relevance="id", n_positions=N_SHOWN, steps=20)
    assert fit.identified.tolist() == [True, False, False, False, False]
    assert np.isnan(fit.examination(identified_only=True)[1:]).all()
    assert fit.examination(identified_only=True)[0] == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", twotower.UnidentifiedPositionsWarning)
        ok = twotower.fit_two_tower(swap, relevance="id", n_positions=N_SHOWN, steps=20)  # swaps connect them
        # overlapping features connect a deterministic log too (the grade one-hot repeats across positions)
        feat = twotower.fit_two_tower(det, relevance="linear", feature_cols=GRADE, n_positions=N_SHOWN, steps=20)
        pinned = twotower.fit_two_tower(det, relevance="id", n_positions=N_SHOWN, steps=5, fixed_examination=exam)
    assert ok.identified.all() and feat.identified.all() and pinned.identified is None


def test_scores_run_feeds_a_paired_comparison(world):
    from cookbook import evaluate

    env = world[0]
    truth, qrels = twotower.scores_run(env, env.relevance.astype(float))
    noisy, _ = twotower.scores_run(env, clicks.noisy_oracle_scores(env, 0.5, seed=1))
    cmp = evaluate.compare(noisy, truth, qrels)
    assert cmp["mean_b"] == pytest.approx(twotower.ndcg_at_10(env, env.relevance.astype(float)))
    assert cmp["diff"] > 0 and cmp["queries"] == len(qrels)
    with pytest.raises(ValueError, match="scores shape"):
        twotower.scores_run(env, np.zeros((2, 2)))
