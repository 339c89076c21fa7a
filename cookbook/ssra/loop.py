"""The collaborative loop (the query model writes, the score model judges, both learn from
the accepted pairs) and the balanced graded training set of the embedding model.

Taught in: notebooks/30_synthesize_graded_relevance.ipynb
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cookbook.config import SEED
from cookbook.finetune import fit
from cookbook.llm.base import Usage
from cookbook.querygen import normalize
from cookbook.ssra.levels import PAIR_COLUMNS, GradedError, assert_no_eval_leak, check_levels
from cookbook.ssra.query_model import accept, clean, generate, level_requests, sft_examples
from cookbook.ssra.score_model import annotate, check_score_model, train_score_model

# torch, peft, datasets and sentence-transformers load in seconds: imported inside the functions that
# train or load models, so importing this module (and the notebook's first cell) stays fast.


@dataclass
class LoopResult:
    """What :func:`collaborate` produced."""

    accepted: pd.DataFrame  # query, doc_id, level, source="ssra", round, via ("generated" or "pool")
    decisions: pd.DataFrame  # every cleaned generation with its annotation and decision, per round
    table: pd.DataFrame  # acceptance per round and requested level
    score_model: object
    query_models: list = field(default_factory=list)
    reports: list = field(default_factory=list)
    pool: pd.DataFrame = field(default_factory=pd.DataFrame)  # annotated first-stage neighbours (pool_depth > 0)
    # the LLM work of query models that are LLMs of their own (LoRA-tuned copies): a prompted
    # query model's calls are counted by its base LLM's ``track()`` instead
    usage: Usage = field(default_factory=Usage)


def acceptance_table(decisions: pd.DataFrame, n_levels: int = 4) -> pd.DataFrame:
    """Per round and requested level: generated (after cleaning), agreed, relabelled, accepted
    and the accepted share.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    rows = []
    for (rnd, lv), g in decisions.groupby(["round", "level"]):
        rows.append({"round": int(rnd), "requested level": int(lv), "generated": len(g),
                     "agree": int((g["decision"] == "agree").sum()),
                     "relabel": int((g["decision"] == "relabel").sum()),
                     "accepted": int(g["accepted"].sum()), "accepted share": float(g["accepted"].mean())})
    columns = ["round", "requested level", "generated", "agree", "relabel", "accepted", "accepted share"]
    return pd.DataFrame(rows, columns=columns).set_index(["round", "requested level"])


def collaborate(data, human: pd.DataFrame, scorer, doc_ids: Sequence[str], *, rounds: int = 2,
                train_query_model: Callable[[list[tuple[str, str]], int], object],
                level_weights: Mapping[int, float] | None = None, threshold: float = 0.5,
                mode: str = "drop", n_samples: int = 1, temperature: float = 0.0,
                score_steps: int | None = None, score_batch_size: int = 16, first_query_model=None,
                retriever=None, pool_depth: int = 0, pool_levels: Sequence[int] | None = None,
                balance_levels: bool = False, n_levels: int | None = None, seed: int = SEED) -> LoopResult:
    """The SSRA-style loop for ``rounds`` rounds.

    Round r: fine-tune the query model on human pairs plus every pair accepted so far
    (``train_query_model(examples, r)``, the examples resampled to even levels with
    ``balance_levels``; round 1 may reuse ``first_query_model``) -> write
    queries for this round's documents at levels drawn with ``level_weights`` (default weighted
    toward the middle levels) -> clean and dedupe -> the score model re-annotates -> accept,
    relabel or drop (:func:`accept`) -> the accepted pairs join both training sets, and the
    score model is retrained on human + accepted pairs before the next round
    (:func:`train_score_model`, ``max_steps=score_steps``: an embedding score model is refitted,
    ``None`` meaning its default epochs; a cross-encoder trains ``score_steps`` more steps). ``doc_ids`` are split evenly over the rounds. ``scorer`` is trained in place.

    With ``retriever`` and ``pool_depth > 0`` the score model also annotates, for every cleaned
    query, the ``pool_depth`` documents the retriever ranks highest (other than the one it was
    written for), as the human annotators labelled the first stage's top ranks; a pair is
    accepted when the score model puts it at one of ``pool_levels`` (default: the middle levels)
    with probability at least ``threshold``. This is our extension, not the paper's: a query
    written for one document is a ready-made middle-level query for its neighbours, and those
    pairs teach the next round's query model what such a query looks like.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    n_levels = n_levels or scorer.num_labels
    check_score_model(scorer, n_levels)
    check_levels(human["level"], n_levels)
    if rounds < 1:
        raise GradedError(f"rounds={rounds}: run at least one round")
    if len(doc_ids) < rounds:
        raise GradedError(f"{len(doc_ids)} documents for {rounds} rounds: need at least one per round")
    assert_no_eval_leak(human, data, "human pairs")
    if level_weights is None:
        level_weights = default_level_weights(n_levels)
    if pool_depth and retriever is None:
        raise GradedError("pool_depth > 0 needs the first-stage retriever whose top ranks are annotated")
    pool_levels = set(range(1, n_levels - 1) if pool_levels is None else pool_levels)
    requests_per_round = round_requests(doc_ids, rounds, level_weights, n_levels, seed=seed)
    seen = {(normalize(q), d) for q, d in zip(human["query"], human["doc_id"])}
    accepted = pd.DataFrame(columns=[*PAIR_COLUMNS, "round", "via"])
    decisions, pools, query_models, reports, usage = [], [], [], [], Usage()
    for rnd in range(1, rounds + 1):
        train_pairs = pd.concat([human[PAIR_COLUMNS], accepted[PAIR_COLUMNS]], ignore_index=True)
        assert_no_eval_leak(train_pairs, data, f"round {rnd} training pairs")
        qm = first_query_model if (rnd == 1 and first_query_model is not None) else \
            train_query_model(sft_examples(train_pairs, data, n_levels, balance=balance_levels, seed=seed + rnd), rnd)
        query_models.append(qm)
        requests = requests_per_round[rnd - 1]
        with (qm.track() if hasattr(qm, "track") else contextlib.nullcontext(Usage())) as used:
            raw = generate(qm, data, requests, n_levels=n_levels, n=n_samples, temperature=temperature,
                           generator=f"round {rnd}", seed=seed + rnd)
        usage += used
        cleaned = clean(raw, data, seen=seen)
        decided = accept(annotate(scorer, cleaned, data), threshold=threshold, mode=mode)
        decided["round"] = rnd
        decisions.append(decided)
        new = decided[decided["accepted"]]
        new = pd.DataFrame({"query": new["query"], "doc_id": new["doc_id"], "level": new["final_level"].astype(int),
                            "source": "ssra", "round": rnd, "via": "generated"})
        report = {"round": rnd, "generated": len(raw), "cleaned": len(cleaned), "accepted": len(new)}
        if pool_depth and len(cleaned):
            near = neighbour_pool(retriever, cleaned, pool_depth, seen)
            near = annotate(scorer, near, data) if len(near) else near.assign(pred=[], p_pred=[])
            near["accepted"] = near["pred"].isin(pool_levels) & (near["p_pred"] >= threshold)
            near["round"] = rnd
            pools.append(near)
            took = near[near["accepted"]]
            new = pd.concat([new, pd.DataFrame({"query": took["query"], "doc_id": took["doc_id"],
                                                "level": took["pred"].astype(int), "source": "ssra", "round": rnd,
                                                "via": "pool"})], ignore_index=True)
            seen |= {(normalize(q), d) for q, d in zip(took["query"], took["doc_id"])}
            report.update({"pool pairs": len(near), "pool accepted": len(took)})
        accepted = pd.concat([accepted, new], ignore_index=True)
        if rnd < rounds and len(accepted):
            pool = pd.concat([human[PAIR_COLUMNS], accepted[PAIR_COLUMNS]], ignore_index=True)
            report["score model"] = train_score_model(scorer, pool, data, max_steps=score_steps,
                                                      batch_size=score_batch_size, seed=seed + rnd)
        reports.append(report)
    decisions_df = pd.concat(decisions, ignore_index=True)
    accepted["level"] = accepted["level"].astype(int)
    assert_no_eval_leak(accepted, data, "accepted synthetic pairs")
    return LoopResult(accepted.reset_index(drop=True), decisions_df, acceptance_table(decisions_df, n_levels),
                      scorer, query_models, reports, pool=pd.concat(pools, ignore_index=True) if pools else pd.DataFrame(),
                      usage=usage)


def neighbour_pool(retriever, generated: pd.DataFrame, depth: int, seen: set | None = None) -> pd.DataFrame:
    """The first stage's top ``depth`` documents of each generated query (columns query, doc_id,
    written_for), leaving out the document it was written for and pairs in ``seen``
    (normalised query, doc_id).

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    seen = seen or set()
    first = generated.drop_duplicates("query")
    queries = {str(i): q for i, q in enumerate(first["query"])}
    run = retriever.search(queries, k=depth + 1)
    rows = []
    for (key, query), own in zip(queries.items(), first["doc_id"]):
        ranked = [d for d, _ in sorted(run.get(key, {}).items(), key=lambda kv: -kv[1]) if d != own][:depth]
        rows += [{"query": query, "doc_id": d, "written_for": own} for d in ranked if (normalize(query), d) not in seen]
    return pd.DataFrame(rows, columns=["query", "doc_id", "written_for"])


def round_requests(doc_ids: Sequence[str], rounds: int, level_weights: Mapping[int, float],
                   n_levels: int = 4, seed: int = SEED) -> list[pd.DataFrame]:
    """The (doc_id, level) requests of every round: ``doc_ids`` split evenly over the rounds,
    levels drawn with ``level_weights`` (round r uses seed ``seed + r``). :func:`collaborate`
    uses exactly these, so a baseline can write queries for the same requests."""
    chunks = np.array_split(np.arange(len(doc_ids)), rounds)
    ids = list(doc_ids)
    return [level_requests([ids[i] for i in chunk], level_weights, n_levels, seed=seed + r)
            for r, chunk in enumerate(chunks, start=1)]


def default_level_weights(n_levels: int = 4) -> dict[int, float]:
    """Weights of the requested levels: the middle levels twice the extremes (4 levels:
    0.1, 0.4, 0.4, 0.1); for 2 levels, even."""
    if n_levels <= 2:
        return {lv: 1.0 for lv in range(n_levels)}
    w = {lv: (2.0 if 0 < lv < n_levels - 1 else 0.5) for lv in range(n_levels)}
    total = sum(w.values())
    return {lv: v / total for lv, v in w.items()}



# the balanced graded training set and the embedding model
# --------------------------------------------------------------------------------------------


def balance(human: pd.DataFrame, synthetic: pd.DataFrame | None, target: Mapping[int, int], *,
            seed: int = SEED) -> pd.DataFrame:
    """Sample a training set to the ``target`` histogram ``{level: pairs}``: human pairs first,
    synthetic pairs fill what the human pool lacks at each level (a level short of both stays
    short). Columns: query, doc_id, level, source.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    parts = []
    synthetic = synthetic if synthetic is not None else pd.DataFrame(columns=PAIR_COLUMNS)
    for lv, want in sorted(target.items()):
        h = human[human["level"] == lv][PAIR_COLUMNS]
        h = h.sample(min(len(h), int(want)), random_state=seed)
        s = synthetic[synthetic["level"] == lv][PAIR_COLUMNS]
        s = s.sample(min(len(s), int(want) - len(h)), random_state=seed)
        parts += [h, s]
    out = pd.concat(parts, ignore_index=True)
    return out.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def embedding_dataset(pairs: pd.DataFrame, data, n_levels: int = 4):
    """A ``datasets.Dataset`` (anchor, positive, score = level / top level) for CoSENT."""
    from datasets import Dataset

    check_levels(pairs["level"], n_levels)
    return Dataset.from_dict({"anchor": list(pairs["query"]),
                              "positive": [data.doc_text(d) for d in pairs["doc_id"]],
                              "score": [float(lv) / (n_levels - 1) for lv in pairs["level"]]})


EMBEDDER_LOSSES = ("cosent", "listwise")


def train_embedder(model, pairs: pd.DataFrame, data, *, max_steps: int, batch_size: int = 16,
                   learning_rate: float = 2e-5, n_levels: int = 4, loss: str = "cosent",
                   seed: int = SEED) -> dict:
    """Fine-tune a bi-encoder on graded pairs, ``max_steps`` steps of about ``batch_size`` pairs.

    ``loss="cosent"``: CoSENT over ``level / top level`` through :func:`cookbook.finetune.fit`;
    it ranks every pair of pairs in a batch by their grades, across queries too (a grade-1 pair
    of one query must score above a grade-0 pair of another). ``loss="listwise"``: the
    per-query loss of :func:`train_listwise`, which only compares documents for the same query.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    if loss not in EMBEDDER_LOSSES:
        raise GradedError(f"loss={loss!r}: use one of {EMBEDDER_LOSSES}")
    assert_no_eval_leak(pairs, data, "embedding training pairs")
    if loss == "listwise":
        return train_listwise(model, pairs, data, max_steps=max_steps, batch_size=batch_size,
                              learning_rate=learning_rate, seed=seed)
    try:
        from sentence_transformers.sentence_transformer.losses import CoSENTLoss
    except ImportError:  # older sentence-transformers
        from sentence_transformers.losses import CoSENTLoss

    return fit(model, embedding_dataset(pairs, data, n_levels), CoSENTLoss(model), max_steps=max_steps,
               batch_size=batch_size, learning_rate=learning_rate, seed=seed)


def train_listwise(model, pairs: pd.DataFrame, data, *, max_steps: int, batch_size: int = 16,
                   learning_rate: float = 2e-5, scale: float = 20.0, seed: int = SEED) -> dict:
    """A per-query listwise loss (ListNet-style) for many graded pairs per query.

    Each step takes whole queries (in a seeded, shuffled order) until it holds about
    ``batch_size`` labelled pairs. For query ``i`` the candidates are every document of the
    batch: its own labelled documents with their levels, the other queries' documents at level 0
    (in-batch negatives, so a synthetic query with one document still has a list). The target
    is the gain ``2**level - 1`` normalised over the candidates; the loss is the cross-entropy
    between it and the softmax of ``scale * cosine`` (queries with no gain are skipped). Unlike
    CoSENT, grades are only compared within a query. Returns ``{"steps", "seconds", "loss"}``.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    import torch

    if max_steps < 1 or batch_size < 1:
        raise GradedError(f"max_steps and batch_size must be >= 1 (got {max_steps}, {batch_size})")
    groups: dict[str, dict[str, int]] = {}
    for q, d, lv in zip(pairs["query"], pairs["doc_id"], pairs["level"]):
        groups.setdefault(q, {})[d] = max(int(lv), groups.get(q, {}).get(d, 0))
    queries = [q for q, docs in groups.items() if max(docs.values()) > 0]
    if len(queries) < 2:
        raise GradedError("listwise training needs at least 2 queries with a relevant document")
    rng, order = random.Random(seed), []
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    losses, started = [], time.perf_counter()

    def embed(texts):
        prepare = getattr(model, "preprocess", None) or model.tokenize  # renamed in newer sentence-transformers
        features = {k: (v.to(model.device) if hasattr(v, "to") else v) for k, v in prepare(texts).items()}
        return torch.nn.functional.normalize(model(features)["sentence_embedding"], dim=-1)

    for _ in range(max_steps):
        batch, n_pairs = [], 0
        while n_pairs < batch_size and len(batch) < len(queries):
            if not order:
                order = rng.sample(queries, len(queries))
            q = order.pop()
            if q not in batch:
                batch.append(q)
                n_pairs += len(groups[q])
        doc_ids = sorted({d for q in batch for d in groups[q]})
        gains = torch.tensor([[2.0 ** groups[q].get(d, 0) - 1.0 for d in doc_ids] for q in batch])
        target = gains / gains.sum(dim=1, keepdim=True)
        scores = scale * embed(batch) @ embed([data.doc_text(d) for d in doc_ids]).T
        loss = -(target * torch.log_softmax(scores, dim=1)).sum(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.item()))
    model.eval()
    return {"steps": max_steps, "seconds": round(time.perf_counter() - started, 1),
            "loss": round(float(np.mean(losses[-5:])), 4), "first_loss": round(losses[0], 4)}
