"""Relevance levels and the human pool: what each level means, the pairs an annotator would
see, histograms, and the guard that keeps dev and test queries out of every training set.

Taught in: notebooks/30_synthesize_graded_relevance.ipynb
"""

from __future__ import annotations

import random

import pandas as pd

from cookbook.config import SEED
from cookbook.querygen import normalize

#: What each level means, stated to the query model (the API-docs rule of data/README.md).
LEVEL_TEXT_4 = {
    3: "the entry answers the query exactly",
    2: "the entry is a close alternative (a related or twin object)",
    1: "the entry is on the same topic only",
    0: "the entry is unrelated to the query",
}
PAIR_COLUMNS = ["query", "doc_id", "level", "source"]


class GradedError(ValueError):
    """Bad input to the graded-synthesis recipe (the message names what is wrong)."""


class EvalLeakError(AssertionError):
    """A dev or test query (or pair) reached a training set."""


def n_levels_of(data) -> int:
    """Number of relevance levels of ``data``: its largest grade plus one (4 for grades 0-3,
    2 for binary labels)."""
    grades = [g for split in data.qrels.values() for docs in split.values() for g in docs.values()]
    if not grades or max(grades) < 1:
        raise GradedError("the qrels hold no relevant document: levels cannot be inferred")
    return int(max(grades)) + 1


def level_mapping(data, split: str = "train") -> dict[int, int]:
    """How the grades of ``split`` map to the levels of the data (``{grade: level}``).

    Identity, except when ``split`` has binary labels (grades 0 and 1) while another split is
    graded (``n_levels_of(data) > 2``): a binary 1 then means "relevant", which is the *top*
    level, not the "same topic only" level 1, so 1 maps to ``n_levels - 1``. Binary data
    everywhere runs with two levels (0 and 1).

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    n_levels = n_levels_of(data)
    grades = sorted({int(g) for docs in data.qrels.get(split, {}).values() for g in docs.values()} | {0})
    if n_levels > 2 and max(grades) == 1:
        return {0: 0, 1: n_levels - 1}
    return {g: g for g in grades}


def cap_levels(pairs: pd.DataFrame, caps: dict[int, int], seed: int = SEED) -> pd.DataFrame:
    """At most ``caps[level]`` pairs of each capped level (a seeded sample); other levels keep
    every pair. This makes the paper's setting, where the middle levels are rare, on data whose
    annotators labelled many middle pairs.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    keep = []
    for lv, group in pairs.groupby("level", sort=True):
        cap = caps.get(int(lv))
        keep.append(group if cap is None or len(group) <= cap else group.sample(int(cap), random_state=seed))
    out = pd.concat(keep) if keep else pairs
    return out.sort_index().reset_index(drop=True)


def level_texts(n_levels: int) -> dict[int, str]:
    """The level descriptions used in prompts: the API-docs rule for 4 levels, a generic scale
    otherwise (0 = not relevant ... top = answers it exactly)."""
    if n_levels == 4:
        return dict(LEVEL_TEXT_4)
    top = n_levels - 1
    return {lv: ("the entry answers the query exactly" if lv == top else
                 "the entry is unrelated to the query" if lv == 0 else
                 f"the entry is partly relevant (level {lv} of {top})") for lv in range(n_levels)}


def check_levels(levels, n_levels: int) -> None:
    """Raise :class:`GradedError` when a level is not an integer in ``0 .. n_levels - 1``."""
    for lv in levels:
        if isinstance(lv, bool) or int(lv) != lv or not 0 <= int(lv) < n_levels:
            raise GradedError(f"level {lv!r} is outside 0..{n_levels - 1} "
                              f"(this data has {n_levels} relevance levels)")


def human_pairs(data, split: str = "train", *, retriever=None, depth: int = 10, n_random: int = 1,
                max_queries: int | None = None, mapping: dict[int, int] | None = None,
                seed: int = SEED) -> pd.DataFrame:
    """The human-labelled pool of ``split``: what an annotator of search results would see.

    Per query: the ``depth`` documents the base ``retriever`` ranks highest, each with its grade
    from the qrels (0 when unjudged; ``mapping`` turns grades into levels, see
    :func:`level_mapping`); every top-grade document (the clean example, added when the
    retriever missed it); ``n_random`` random unjudged documents at level 0. Without a retriever,
    every judged document instead. Columns: qid, query, doc_id, level, source ("human").

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    if split not in data.qrels or not data.qrels[split]:
        raise GradedError(f"data has no {split!r} qrels; available: {sorted(data.qrels)}")
    qrels = data.qrels[split]
    qids = sorted(qrels)
    rng = random.Random(seed)
    if max_queries is not None and len(qids) > max_queries:
        qids = sorted(rng.sample(qids, max_queries))
    run = retriever.search({q: data.queries[q] for q in qids}, k=depth) if retriever is not None else {}
    doc_ids = sorted(data.corpus)
    top = max(g for docs in qrels.values() for g in docs.values())
    mapping = mapping or {}
    rows = []
    for q in qids:
        judged = qrels[q]
        if retriever is not None:
            ranked = [d for d, _ in sorted(run.get(q, {}).items(), key=lambda kv: -kv[1])][:depth]
            chosen = ranked + [d for d, g in sorted(judged.items()) if g == top and d not in ranked]
        else:
            chosen = [d for d, g in sorted(judged.items()) if g > 0]
        taken = set(chosen)
        for _ in range(n_random):
            for _try in range(20):
                d = rng.choice(doc_ids)
                if d not in judged and d not in taken:
                    chosen.append(d)
                    taken.add(d)
                    break
        rows += [{"qid": q, "query": data.queries[q], "doc_id": d,
                  "level": int(mapping.get(int(judged.get(d, 0)), judged.get(d, 0))),
                  "source": "human"} for d in chosen]
    return pd.DataFrame(rows, columns=["qid", *PAIR_COLUMNS])


def level_histogram(pairs: pd.DataFrame, n_levels: int = 4) -> pd.Series:
    """How many pairs each level has (every level listed, zeros included)."""
    counts = pairs["level"].value_counts() if len(pairs) else pd.Series(dtype=int)
    return pd.Series({lv: int(counts.get(lv, 0)) for lv in range(n_levels)}, name="pairs").rename_axis("level")


def eval_query_texts(data) -> set[str]:
    """Normalised texts of every dev and test query (what no training set may contain)."""
    return {normalize(data.queries[q]) for s in ("dev", "test") for q in data.qrels.get(s, {})}


def assert_no_eval_leak(pairs: pd.DataFrame, data, what: str = "training pairs") -> None:
    """Raise :class:`EvalLeakError` when a dev/test query id, query text or (query, document)
    pair of the qrels occurs in ``pairs`` (columns query, doc_id and optionally qid).

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    eval_ids = {q for s in ("dev", "test") for q in data.qrels.get(s, {})}
    if "qid" in pairs.columns:
        bad = set(pairs["qid"].dropna()) & eval_ids
        if bad:
            raise EvalLeakError(f"{what}: {len(bad)} dev/test query id(s) leaked, e.g. {sorted(bad)[:3]}")
    texts = eval_query_texts(data)
    leaked = [q for q in pairs["query"] if normalize(q) in texts]
    if leaked:
        raise EvalLeakError(f"{what}: {len(leaked)} dev/test query text(s) leaked, e.g. {leaked[:2]}")
    eval_pairs = {(normalize(data.queries[q]), d) for s in ("dev", "test")
                  for q, docs in data.qrels.get(s, {}).items() for d in docs}
    if any((normalize(q), d) in eval_pairs for q, d in zip(pairs["query"], pairs["doc_id"])):
        raise EvalLeakError(f"{what}: a dev/test (query, document) pair leaked")
