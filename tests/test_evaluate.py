import json
import math

import pytest

from cookbook import evaluate

QRELS = {"q1": {"a": 3, "b": 2, "c": 1}, "q2": {"x": 3}}


def test_ndcg_matches_a_hand_computation():
    run = {"q1": {"b": 0.9, "z": 0.8, "a": 0.7}, "q2": {"x": 1.0}}
    summary, per_query = evaluate.evaluate(run, QRELS)
    dcg = 2 / math.log2(2) + 0 + 3 / math.log2(4)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert per_query.loc["q1", "nDCG@10"] == pytest.approx(dcg / idcg, abs=1e-4)
    assert per_query.loc["q2", "nDCG@10"] == pytest.approx(1.0)
    assert per_query.loc["q1", "RR@10"] == pytest.approx(1 / 3)  # first grade-3 doc at rank 3
    assert per_query.loc["q1", "R@10"] == pytest.approx(1.0)  # both grade>=2 docs found
    assert summary["nDCG@10"] == pytest.approx(per_query["nDCG@10"].mean())


def test_missing_queries_score_zero_and_bad_measures_fail():
    summary, per_query = evaluate.evaluate({"q2": {"x": 1.0}}, QRELS)
    assert per_query.loc["q1"].eq(0).all() and summary["nDCG@10"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown measure"):
        evaluate.evaluate({}, QRELS, measures=("Precision-ish",))
    with pytest.raises(ValueError, match="qrels are empty"):
        evaluate.evaluate({}, {})


def test_compare_is_paired_and_signed():
    qrels = {f"q{i}": {"good": 3} for i in range(30)}
    worse = {q: {"bad": 1.0, "good": 0.5} if i % 3 else {"good": 1.0} for i, q in enumerate(qrels)}
    better = {q: {"good": 1.0, "bad": 0.5} for q in qrels}
    result = evaluate.compare(worse, better, qrels)
    assert result["diff"] > 0.2 and result["t_p"] < 1e-4
    assert result["ci_low"] <= result["diff"] <= result["ci_high"]
    tie = evaluate.compare(better, better, qrels)
    assert tie["diff"] == 0 and tie["t_p"] == 1.0


def test_save_results_writes_json(tmp_path):
    timer = evaluate.Timer()
    with timer("step"):
        pass
    path = evaluate.save_results("99_test", {"sys": {"nDCG@10": 0.5}}, timer.seconds, results_dir=tmp_path, note="x")
    payload = json.loads(path.read_text())
    assert payload["metrics"]["sys"]["nDCG@10"] == 0.5 and payload["profile"] == "smoke"
    assert "step" in payload["timings"] and payload["note"] == "x"
    assert evaluate.load_results(tmp_path)["99_test"]["notebook"] == "99_test"
    assert path.parent == tmp_path


def test_binary_qrels_perfect_run_scores_one_on_every_measure():
    qrels = {"q1": {"a": 1, "b": 1}, "q2": {"c": 1}, "q3": {"d": 1, "e": 0}}
    perfect = {"q1": {"a": 2.0, "b": 1.0, "z": 0.5}, "q2": {"c": 1.0}, "q3": {"d": 1.0, "e": 0.9}}
    summary, table = evaluate.evaluate(perfect, qrels, measures=tuple(evaluate.MEASURES))
    assert summary.rel == {"max_grade": 1, "recall": 1, "top": 1} == table.attrs["rel"]
    for name, value in summary.items():
        assert value == pytest.approx(1.0), name


def test_graded_thresholds_explicit_rel_and_ir_measures_strings():
    assert evaluate.relevance_thresholds(QRELS) == {"max_grade": 3, "recall": 2, "top": 3}
    run = {"q1": {"c": 1.0, "a": 0.5}, "q2": {"x": 1.0}}
    summary, _ = evaluate.evaluate(run, QRELS, measures=("R@10", "RR@10", "P(rel=1)@2"))
    assert summary["R@10"] == pytest.approx((0.5 + 1) / 2)  # q1 finds a (grade 3) but not b (grade 2)
    assert summary["RR@10"] == pytest.approx((0.5 + 1) / 2)
    assert summary["P(rel=1)@2"] == pytest.approx((1.0 + 0.5) / 2)
    loose, _ = evaluate.evaluate(run, QRELS, measures=("R@10",), rel=1)
    assert loose.rel["recall"] == 1 and loose["R@10"] == pytest.approx((2 / 3 + 1) / 2)
    with pytest.raises(ValueError, match="positive integer"):
        evaluate.evaluate(run, QRELS, rel=0)
    with pytest.raises(ValueError, match="no relevant document"):
        evaluate.evaluate(run, {"q1": {"a": 0}})
