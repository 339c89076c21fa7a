"""Benchmarks: one table, measured side by side in one run (``python -m cookbook bench``).

Each part is a module here with a ``measure(profile_name) -> list[dict]`` function; rows are
dicts with ``name``, ``value``, ``unit`` and ``note``. The domain modules hold no benchmark
code: a part calls them as a user would.

=============  ======================================================================
part           what it measures
=============  ======================================================================
foundation     corpus build and cache, BM25, dense encode throughput, evaluation
speed          fp32 vs int8 encode (same texts, nDCG@10 of both), embedding cache load vs encode
llm            query-likelihood scoring paths vs the fp32/bf16/int8 matmul rates; batched vs
               one-at-a-time generation, the cache, HTTP with 1 vs N in flight
rerank         the LCE reranker in fp32 vs bf16 autocast: training s/step, rerank pairs/s,
               score difference, dev nDCG@10 of both
kge            seconds per epoch of each KGE model, triplet mining throughput
clicks         click simulator vs the plain loop, two-tower training time
=============  ======================================================================

Taught in: notebooks/10_explore_query_document_pairs.ipynb (the numbers), README (the table)
"""

from __future__ import annotations

import importlib

PARTS = ("foundation", "speed", "llm", "rerank", "kge", "clicks")


def run(profile_name: str, parts: list[str] | None = None) -> list[dict]:
    """Measure every part (or the ``parts`` named) and return the rows, tagged with their part."""
    rows: list[dict] = []
    for part in parts or PARTS:
        if part not in PARTS:
            raise ValueError(f"unknown bench part {part!r}; known: {', '.join(PARTS)}")
        module = importlib.import_module(f"cookbook.bench.{part}")
        rows += [{"part": part, **r} for r in module.measure(profile_name)]
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table of bench rows."""
    lines = ["| part | measurement | value | unit | note |", "|---|---|---:|---|---|"]
    for r in rows:
        value = r["value"]
        shown = f"{value:,.3g}" if isinstance(value, float) and abs(value) < 100 else (
            f"{value:,.0f}" if isinstance(value, (int, float)) else str(value))
        lines.append(f"| {r.get('part', '')} | {r['name']} | {shown} | {r['unit']} | {r.get('note', '')} |")
    return "\n".join(lines)
