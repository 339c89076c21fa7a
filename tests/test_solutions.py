"""Exercise solutions compile, and the cheap ones run on the smoke corpus."""

import importlib.util
import py_compile
from pathlib import Path

import pytest

SOLUTIONS = sorted((Path(__file__).resolve().parent.parent / "notebooks" / "solutions").glob("*.py"))


def _load(path):
    spec = importlib.util.spec_from_file_location("solution_" + path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_compiles(path):
    py_compile.compile(str(path), doraise=True)


def test_notebook_10_solutions(smoke_data):
    from cookbook import evaluate, retrieval

    sol = _load(next(p for p in SOLUTIONS if p.name.startswith("10_")))
    table = sol.exercise_1_tune_bm25(smoke_data, grid=((1.2, 0.75), (1.5, 0.75)))
    assert table["chosen"].sum() == 1 and 0 < table.attrs["test nDCG@10 of the chosen setting"] <= 1
    run = retrieval.bm25_search(smoke_data, smoke_data.split_queries("test"))
    recalls = sol.exercise_2_recall_thresholds(smoke_data, run)
    assert recalls["R@10, grade>=1"] <= recalls["R@10, grade>=2"]  # more relevant documents, lower recall
    regraded = sol.exercise_5_regrade_twins(smoke_data)
    assert sum(g == 2 for r in regraded.values() for g in r.values()) <= sum(
        g == 2 for r in smoke_data.qrels["test"].values() for g in r.values())
    assert evaluate.evaluate(run, regraded)[0]["nDCG@10"] > 0
