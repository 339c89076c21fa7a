"""The table of input kinds in docs/own-data.md is what tools/input_kinds.py gives today."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_docs_table_matches_a_fresh_run():
    spec = importlib.util.spec_from_file_location("input_kinds", ROOT / "tools" / "input_kinds.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    table = tool.table()
    rows = table.splitlines()[2:]
    assert len(rows) >= 25
    assert all("| loaded: " in r or "| error: " in r for r in rows)
    assert table in (ROOT / "docs" / "own-data.md").read_text(encoding="utf-8"), \
        "docs/own-data.md is stale: paste the output of tools/input_kinds.py"
