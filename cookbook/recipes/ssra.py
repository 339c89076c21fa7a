"""Recipe ``ssra``: graded pairs from two collaborating models (a score model and a
level-conditioned query model), then the embedder trained on a balanced graded set.

Taught in: notebooks/30_synthesize_graded_relevance.ipynb
"""

from __future__ import annotations

import copy

from cookbook import ssra as technique
from cookbook.config import SEED, seed_everything
from cookbook.llm import LocalLLM
from cookbook.recipes import common
from cookbook.recipes.common import RecipeError


def _query_models(llm, human, data, n_levels: int, lora_steps: int, seed: int):
    """(first query model, how to train one per round): LoRA on a local LLM, else prompted."""
    if isinstance(llm, LocalLLM):
        def train(examples, rnd):  # the cache name carries the adapter's fingerprint
            return technique.fine_tune_query_model(examples, steps=lora_steps, learning_rate=2e-3,
                                                   tokenizer=llm.tokenizer, model=llm.model, cache=llm.cache,
                                                   seed=seed + rnd)
        return None, train
    prompted = technique.PromptedQueryModel(llm, technique.few_shot_by_level(human, data, seed=seed), n_levels)
    return prompted, lambda examples, rnd: prompted


def _mapping_text(mapping: dict, n_levels: int, has_train: bool) -> dict:
    """The report's ``level_mapping``: qrel grade -> level, and in words what was done."""
    if n_levels == 2:
        how = "binary labels: runs with two levels (0 = not relevant, 1 = relevant)"
    elif mapping.get(1) == n_levels - 1 and n_levels > 2:
        how = f"binary train labels beside graded ones: a qrel 1 counts as the top level {n_levels - 1}"
    else:
        how = f"graded labels: each grade is its own level (0..{n_levels - 1})"
    if not has_train:
        how += f"; no train split: zero-shot queries at the top level {n_levels - 1}, random documents at level 0"
    return {"qrel grade -> level": {str(k): int(v) for k, v in mapping.items()}, "levels": n_levels, "how": how}


SCORE_KINDS = ("ranking", "embedding", "cross-encoder")


def recipe(data, out_dir, *, embedder=None, llm=None, steps: int | None = None, n_docs: int = 120,
         n_samples: int = 2, rounds: int = 2, threshold: float = 0.4, mode: str = "relabel",
         score_kind: str = "ranking", score_steps: int | None = None, lora_steps: int = 30,
         neighbours: int = 5, per_level: int = 200, batch_size: int = 16, depth: int = 10,
         max_queries: int = 300, max_length: int = 128, loss: str = "listwise", seed: int = SEED) -> dict:
    """The whole technique on any ``RetrievalData``; saves the bi-encoder to ``out_dir/"model"``.

    Human pool (train split; without one, zero-shot top-level queries from ``llm`` plus random
    level-0 documents; binary train labels beside graded test labels map 1 to the top level,
    binary labels everywhere run with two levels: the report's ``level_mapping`` says which)
    -> score model (``score_kind``: "ranking", a small softmax head on the cosine of the frozen
    base embedder, BM25 and term-overlap features and the pair's rank in the corpus, the
    loop's best score model in notebook 30; "embedding", the same with the embedding vectors
    instead of the ranking features; or "cross-encoder"; ``score_steps`` defaults to the head's
    epochs, 40 for a cross-encoder) -> LoRA query model (``lora_steps`` on examples resampled to
    even levels; a non-local ``llm`` is prompted instead) -> ``rounds`` of the collaborative loop
    (``n_docs`` documents, ``n_samples`` queries a request, ``threshold``, ``mode``; with more
    than two levels the score model also labels the first stage's top ``neighbours`` documents
    of every generated query and keeps those it places at a middle level) -> a balanced set of
    ``per_level`` pairs a level -> the embedder fine-tuned with ``loss`` (the per-query
    "listwise", which scored above "cosent" on the dev split in notebook 30's laptop runs, or
    "cosent"; ``steps=None``: one epoch).

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    if score_kind not in SCORE_KINDS:
        raise RecipeError(f"score_kind={score_kind!r}: choose one of {SCORE_KINDS}")
    if loss not in technique.EMBEDDER_LOSSES:
        raise RecipeError(f"loss={loss!r}: choose one of {technique.EMBEDDER_LOSSES}")
    seed_everything(seed)
    # 1. the base model, measured before training
    base, llm = common.embedder_or_default(embedder), common.llm_or_default(llm)
    before = common.start(data, base, seed=seed)
    n_levels = technique.n_levels_of(data)
    mapping = technique.level_mapping(data, "train") if data.qrels.get("train") else {0: 0, 1: n_levels - 1}
    doc_ids = common.sample_docs(data, n_docs, seed)
    with llm.track() as usage:
        # 2. the human pool (or zero-shot pairs without a train split)
        if data.qrels.get("train"):
            human = technique.human_pairs(data, "train", retriever=before.index, depth=depth,
                                          max_queries=max_queries, mapping=mapping, seed=seed)
        else:
            human = technique.zero_shot_pairs(data, llm, doc_ids, n_levels, seed, n_samples)
        if human.empty:
            raise RecipeError("no human or zero-shot pairs to start from")
        # 3. the score model on the human pool (a frozen copy of the base: the base is trained below)
        if score_steps is None and score_kind == "cross-encoder":
            score_steps = 40
        if score_kind in ("ranking", "embedding"):
            texts = [data.doc_text(d) for d in data.corpus]
            compact = score_kind == "ranking"  # no embedding vectors: a dozen features, a small head
            scorer = technique.score_model(n_levels, kind="embedding", embedder=copy.deepcopy(base), seed=seed,
                                           lexical_corpus=texts, ranking_corpus=texts if compact else None,
                                           vectors=not compact)
            score_train = human  # the head weighs the levels itself (class weights)
        else:
            scorer = technique.score_model(n_levels, kind=score_kind, embedder=embedder, max_length=max_length,
                                           seed=seed)
            score_train = technique.balanced_sample(human, per_level, seed)
        technique.train_score_model(scorer, score_train, data, max_steps=score_steps, batch_size=batch_size,
                                    seed=seed)
        # 4. the collaborative loop: the query model writes, the score model judges, both learn
        first, train_query_model = _query_models(llm, human, data, n_levels, lora_steps, seed)
        loop = technique.collaborate(data, human, scorer, doc_ids, rounds=rounds,
                                     train_query_model=train_query_model, first_query_model=first,
                                     threshold=threshold, mode=mode, n_samples=n_samples, temperature=0.8,
                                     score_steps=score_steps if score_kind != "cross-encoder" else max(1, score_steps // 2),
                                     retriever=before.index, pool_depth=neighbours if n_levels > 2 else 0,
                                     balance_levels=True, seed=seed)
    if isinstance(llm, LocalLLM):  # the LoRA query models are LLMs of their own: their work counts too
        usage = usage + loop.usage
    # 5. a balanced graded training set, and the embedder trained on it with `loss`
    train_set = technique.balance(human, loop.accepted, {lv: per_level for lv in range(n_levels)}, seed=seed)
    batch_size = min(batch_size, len(train_set))
    steps = steps or max(1, -(-len(train_set) // batch_size))
    trained = technique.train_embedder(base, train_set, data, max_steps=steps, batch_size=batch_size,
                                       n_levels=n_levels, loss=loss, seed=seed)
    # 6. after, verdict, report
    index, run = common.dense_run(base, before)
    histogram = technique.level_histogram
    return common.finish(
        "ssra", before, base, out_dir, after_run=run, after_fine=common.fine_distinction(index, data, seed),
        llm_usage=usage, n_levels=n_levels, level_mapping=_mapping_text(mapping, n_levels, bool(data.qrels.get("train"))),
        human_pairs=int(len(human)),
        synthetic_accepted=int(len(loop.accepted)),
        synthetic_from_neighbours=int((loop.accepted["via"] == "pool").sum()) if len(loop.accepted) else 0,
        synthetic_share={str(lv): round(float((g["source"] != "human").mean()), 3)
                         for lv, g in train_set.groupby("level")},
        train_pairs=int(len(train_set)), score_model=score_kind, loss=loss,
        histogram_before={str(k): v for k, v in histogram(human, n_levels).items()},
        histogram_after={str(k): v for k, v in histogram(train_set, n_levels).items()},
        acceptance={f"round {r} level {lv}": float(v) for (r, lv), v in loop.table["accepted share"].items()}
        if len(loop.table) else {},
        steps=trained["steps"], train_loss=trained["loss"])
