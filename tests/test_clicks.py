"""Click simulators, logging policies and candidate pools (cookbook.clicks)."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cookbook import beir, clicks
from cookbook.config import ROOT


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


def binary_beir(tmp_path):
    """The tiny BEIR fixture with its grades cut to binary labels (grade >= 1 -> 1)."""
    import shutil

    folder = tmp_path / "binary_beir"
    shutil.copytree(ROOT / "data" / "fixtures" / "tiny_beir", folder)
    for tsv in (folder / "qrels").glob("*.tsv"):
        lines = tsv.read_text().splitlines()
        rows = [lines[0]] + ["\t".join(parts[:2] + [str(int(int(parts[2]) > 0))])
                             for parts in (line.split("\t") for line in lines[1:])]
        tsv.write_text("\n".join(rows) + "\n")
    return beir.load_beir(folder)


def test_build_env_on_a_plain_beir_folder_with_binary_labels(tmp_path):
    data = binary_beir(tmp_path)
    assert {g for split in data.qrels.values() for docs in split.values() for g in docs.values()} == {1}
    envs = clicks.apidocs_envs(data, splits=("train", "test"), depth=2)
    env = envs["test"]
    assert env.max_grade == 1  # inferred from the qrels
    assert env.feature_names == ["first_stage", "first_stage_rr", "log_doc_len"]  # no all-zero API-docs columns
    assert env.relevance.max() == 1 and env.relevance[:, 0].min() == 1  # a relevant document is injected first
    assert np.all(env.features.std(axis=(0, 1)) > 0)
    well = clicks.with_grade_features(env)
    assert well.feature_names[-2:] == ["grade_0", "grade_1"]


def test_build_env_takes_document_features_as_a_mapping_or_a_callable(tmp_path):
    data = binary_beir(tmp_path)
    table = {d: [len(doc.get("title", "")), i % 2] for i, (d, doc) in enumerate(sorted(data.corpus.items()))}
    by_map = clicks.apidocs_envs(data, splits=("test",), depth=2, doc_features=table)["test"]
    by_fn = clicks.apidocs_envs(data, splits=("test",), depth=2,
                                doc_features=lambda doc_id, doc: table[doc_id])["test"]
    assert by_map.feature_names[-2:] == ["doc_0", "doc_1"]
    assert np.array_equal(by_map.features, by_fn.features)
    first = by_map.doc_ids[0, 0]
    assert by_map.features[0, 0, -2:].tolist() == table[first]
    with pytest.raises(clicks.ClickParameterError, match="no vector for document"):
        clicks.apidocs_envs(data, splits=("test",), depth=2, doc_features={"d1": [1.0]})
    with pytest.raises(clicks.ClickParameterError, match="max_grade=1 but the qrels hold grade 3"):
        graded = beir.load_beir(ROOT / "data" / "fixtures" / "tiny_beir")
        clicks.build_env(graded, {"q1": {"d1": 1.0, "d2": 0.5}}, split="test", depth=2, max_grade=1)


def test_build_env_keeps_the_api_docs_features_where_the_data_has_them():
    from cookbook.corpus import load_apidocs

    data = load_apidocs("smoke")
    env = clicks.apidocs_envs(data, splits=("train",), depth=10, max_queries=20)["train"]
    assert env.max_grade == 3
    assert "same_module" in env.feature_names and any(n.startswith("kind_") for n in env.feature_names)
    kind = env.feature_index([n for n in env.feature_names if n.startswith("kind_")])
    assert np.allclose(env.features[:, :, kind].sum(axis=2), 1.0)  # one kind per document
