"""The benchmark parts: each measures through the package, rows keep the table's contract."""

import pytest

from cookbook import bench
from cookbook.bench import clicks as clicks_bench
from cookbook.bench import kge as kge_bench
from cookbook.kge import MODEL_NAMES


def test_kge_rows():
    rows = kge_bench.measure("smoke")
    names = {r["name"] for r in rows}
    assert {f"kge.{m}.epoch" for m in MODEL_NAMES} <= names and "scincl.mine.torch" in names
    assert all(set(r) == {"name", "value", "unit", "note"} and r["value"] > 0 for r in rows)


def test_click_rows_have_the_contract_keys():
    rows = clicks_bench.measure("smoke", sessions=(20_000, 2_000))
    names = {r["name"] for r in rows}
    assert {"clicks.simulator_throughput", "clicks.speedup_vs_loop", "twotower.train_time"} <= names
    for r in rows:
        assert set(r) == {"name", "value", "unit", "note"}
    with pytest.raises(ValueError, match="unknown profile"):
        clicks_bench.measure("huge")


def test_unknown_part_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown bench part 'gpu'; known: foundation, speed, llm"):
        bench.run("smoke", ["gpu"])


def test_scoring_bench_pieces(smoke_data):
    from cookbook.bench import llm as llm_bench

    rates = llm_bench.matmul_rates(m=64, k=32, n=48, repeat=1)
    assert {"fp32", "bf16"} <= set(rates) and all(r > 0 for r in rates.values())
    q, d, qids = llm_bench.scoring_workload(smoke_data, n_queries=3, n_docs=4)
    assert len(q) == len(d) == len(qids) == 12
    assert len(set(d)) == 4 and all(d.count(x) == 3 for x in set(d))  # every document shared 3 times
    assert qids[:4] == [qids[0]] * 4  # query-major, as a labelling loop has them
    names = [p.name for p in llm_bench.SCORING_PATHS]
    assert names[:2] == ["fp32_one_at_a_time", "fp32_batched"] and "default" in names


def test_rerank_rows_compare_both_formats_on_the_same_pairs(monkeypatch):
    from cookbook.bench import rerank as rerank_bench

    monkeypatch.setitem(rerank_bench.SIZES, "smoke", (6, 2, 3))
    rows = rerank_bench.measure("smoke", depth=4, max_length=32)
    by = {r["name"]: r for r in rows}
    assert all(set(r) == {"name", "value", "unit", "note"} for r in rows)
    assert by["rerank fp32"]["value"] > 0 and by["rerank bf16 (autocast)"]["value"] > 0
    assert by["LCE training fp32"]["value"] > 0 and by["LCE training bf16 (autocast)"]["value"] > 0
    assert 0 < by["max |score bf16 - fp32|"]["value"] < 1  # the head moved, and bf16 is close
    assert 0 <= by["dev nDCG@10 reranked bf16"]["value"] <= 1
    with pytest.raises(ValueError, match="unknown profile"):
        rerank_bench.measure("huge")
