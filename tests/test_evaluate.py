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
        evaluate.evaluate({}, QRELS, measures=("P@3",))
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
