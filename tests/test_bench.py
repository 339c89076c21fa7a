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
