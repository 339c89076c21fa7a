"""Recipe ``lce``: a cross-encoder reranker trained with Localized Contrastive Estimation on
synthetic groups from the dense first stage, started *at* the first stage (residual scoring).

Taught in: notebooks/40_train_reranker_lce.ipynb
"""

from __future__ import annotations

import random

import pandas as pd

from cookbook import evaluate
from cookbook import lce as technique
from cookbook.config import SEED, seed_everything
from cookbook.recipes import common
from cookbook.recipes.common import RecipeError


def recipe(data, out_dir, *, embedder=None, llm=None, steps: int | None = None, n_docs: int = 800,
        n_samples: int = 2, group_size: int = 8, label_depth: int = 30, batch_size: int = 4,
        rerank_depth: int = 20, max_length: int = 128, learning_rate: float = 1e-4, dev_every: int = 75,
        dev_queries: int = 100, verify: bool = False, margin: float = 0.0, train_labels: bool = True,
        precision: str = "auto", seed: int = SEED) -> dict:
    """The whole technique on any ``RetrievalData``; saves the reranker to ``out_dir/"model"``.

    LLM queries for ``n_docs`` sampled documents (round-trip consistency filter) -> groups of
    ``group_size``: the positive and negatives sampled from the dense first stage's top
    ``label_depth`` (``verify=True`` keeps only those the LLM's query likelihood confirms),
    plus, with ``train_labels=True``, one group per train query of the folder's own qrels when
    it has them (the best-graded document the positive, the query's other relevant documents
    never a negative; on the embedded corpus these are the data that moved the dev check,
    notebook 40) -> the residual reranker ``s = a * cos + f`` (``f``'s output layer at zero, so
    step 0 is the first stage exactly) trained with :class:`cookbook.lce.LCELoss` (``batch_size`` groups a
    step; ``steps=None``: at most two passes over the groups, at most 150 steps) -> the
    checkpoint with the best dev nDCG@10 (the folder's ``dev`` split, else 15% of the synthetic
    pairs held out); **if that checkpoint does not beat the first stage on the dev check
    (paired t-test, p < 0.05), f = 0 and the reranker keeps the first stage's order** ->
    the dense top ``rerank_depth`` of the test queries reranked (while ``f = 0`` the
    cross-encoder is not run: the order is the first stage's exactly). ``precision="auto"``
    trains and scores the cross-encoder in bf16 (autocast) where the CPU does bf16 natively
    (:func:`cookbook.lce.reranker_precision`). Measured with the defaults on the embedded corpus
    (about 4,800 documents, 2 CPU cores with native bf16, an empty LLM cache, the first stage's
    corpus embeddings cached): 12.5 minutes, of which 6.7 are the LLM writing 1,600 queries (2.0
    prompts/s) and the rest the first stage, the groups and 150 training steps with their dev
    checks (83 pairs/s); the dev check kept the first stage there, so the test rerank and the
    fine-distinction pass did not run (about 19,000 more pairs, some 4 minutes at that rate, when
    a checkpoint is kept). The same run in fp32 took 16 minutes. ``n_docs=400`` halves the
    generation.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    seed_everything(seed)
    group_size = min(group_size, len(data.corpus))
    # the cross-encoder trains and scores in bf16 (autocast) where the CPU does bf16 natively
    precision, precision_reason = technique.reranker_precision(precision)
    # 1. the dense first stage, measured before training: the system the reranker must beat
    # the default local LLM writes the queries in bf16 where the CPU does bf16 natively (about 1.5x
    # faster), 16 prompts a call (1.2x faster than 8 in a 64-prompt micro-benchmark on 2 cores)
    first = common.embedder_or_default(embedder)
    llm = common.llm_or_default(llm, generate_precision="auto", batch_size=16)
    before = common.start(data, first, seed=seed)
    with llm.track() as usage:
        # 2. synthetic queries for sampled documents (round-trip consistency filter)
        pairs = technique.synthetic_pairs(data, llm, before.index, common.sample_docs(data, n_docs, seed),
                                          n_samples=n_samples, seed=seed)
        if pairs.empty:
            raise RecipeError("no generated query survived the filters: raise n_docs or n_samples")
        # 3. negatives from the first stage's top label_depth (optionally LLM-verified)
        cands = technique.first_stage_candidates(before.index, pairs, data, depth=label_depth)
        labelled = (technique.label_candidates(cands, llm, data, margin=margin) if verify
                    else cands.assign(negative=True))
    groups = technique.localized_groups(labelled, pairs, data, group_size=group_size, seed=seed)
    n_synthetic, n_labelled = len(groups), 0
    human, exclude = technique.labelled_pairs(data, "train") if train_labels else (pd.DataFrame(), {})
    if len(human):  # the folder's own train labels, when it has them
        human_groups = technique.localized_groups(
            technique.first_stage_candidates(before.index, human, data, depth=label_depth).assign(negative=True),
            human, data, group_size=group_size, seed=seed, exclude=exclude)
        groups = pd.concat([groups, human_groups.assign(pair=human_groups["pair"] + len(pairs))], ignore_index=True)
        n_labelled = len(human_groups)
    # 4. the dev check: the folder's dev split, else held-out training groups (never test queries)
    dev_name, dev_q, dev_qrels, groups = _dev_split(data, groups, dev_queries, seed)
    if groups.empty:
        raise RecipeError("every synthetic group went to the dev check: raise n_docs")
    dev_run = before.index.search(dev_q, k=rerank_depth) if dev_qrels else {}
    # 5. the residual reranker, trained with LCE; the checkpoint with the best dev score
    scale = technique.residual_scale(before.index.search(dict(zip(map(str, range(len(pairs))), pairs["query"])),
                                                         k=label_depth), depth=label_depth)
    model = technique.residual_reranker(embedder, scale=scale, max_length=max_length, seed=seed)
    prior = technique.FirstStagePrior(before.index, data, scale)
    steps = steps or max(1, min(150, -(-2 * len(groups) // batch_size)))
    trained = technique.train(model, technique.group_dataset(groups, data, seed=seed),
                              technique.LCELoss(model, group_size=group_size, prior=prior), max_steps=steps,
                              batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                              dev=technique.dev_check(dev_run, dev_qrels, data, depth=rerank_depth, queries=dev_q,
                                                      precision=precision)
                              if dev_qrels else None, dev_every=dev_every, bf16=precision == "bf16")
    dev_cmp = evaluate.compare(dev_run, trained["best_run"], dev_qrels, "nDCG@10") if dev_qrels else None
    kept_first_stage = dev_cmp is None or evaluate.verdict(dev_cmp) != "better"
    if kept_first_stage:  # no gain on the dev check: f = 0, the first stage's order exactly
        technique.keep_first_stage(model)
    # 6. after: the first stage's top rerank_depth reranked; verdict and report
    reranked = None
    if before.run is not None:
        reranked = technique.rerank(model, before.run, data, depth=rerank_depth,
                                    queries=data.split_queries("test"), precision=precision)
    fine = (technique.fine_distinction(model, data, "test", seed=seed, first_stage=before.index,
                                       precision=precision)
            if before.fine is not None else None)
    decision = ("kept the first stage's order (f = 0): too few groups for a dev check" if dev_cmp is None else
                "kept the first stage's order (f = 0): the best checkpoint did not beat it on the dev check"
                if kept_first_stage else f"kept the checkpoint of step {trained['best_step']} (best on the dev check)")
    return common.finish("lce", before, model, out_dir, after_run=reranked, after_fine=fine, llm_usage=usage,
                         dev={"name": dev_name, "comparison": dev_cmp} if dev_cmp else None,
                         base="the dense first stage",
                         decision=decision, train_pairs=int(len(groups)),
                         groups={"synthetic": int(n_synthetic), "train labels": int(n_labelled)},
                         group_size=int(group_size), residual_scale=round(scale, 3),
                         positive_below_top1=round(float((cands.groupby("pair")["pos_rank"].first() > 1).mean()), 3)
                         if len(cands) else None,
                         filled_negatives=int(groups["n_filled"].sum()), steps=trained["steps"],
                         dev_curve=trained.get("dev_curve"), best_step=trained.get("best_step"),
                         train_loss=trained["loss"], final_loss=trained["final_loss"],
                         first_stage_loss=round(technique.prior_loss(groups, data, prior), 4),
                         pairs_per_second=_throughput(reranked, trained),
                         precision=f"{precision} ({precision_reason})")


def _throughput(reranked, trained) -> float | None:
    """The cross-encoder's pairs per second: on the test rerank, or (f = 0 there, so it did not
    run) on the dev checks."""
    if reranked is not None and reranked.model_pairs:
        return round(reranked.pairs_per_second, 1)
    return trained.get("dev_pairs_per_second")


def _dev_split(data, groups, n_queries: int, seed: int):
    """``(name, queries, qrels, training groups)``: up to ``n_queries`` queries of the folder's dev
    split, else 15% of the synthetic groups held out (their positive as the one relevant document)."""
    if data.qrels.get("dev"):
        ids = sorted(data.qrels["dev"])
        ids = sorted(random.Random(seed).sample(ids, min(n_queries, len(ids))))
        return ("the dev split", {q: data.queries[q] for q in ids},
                {q: data.qrels["dev"][q] for q in ids}, groups)
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    held = sorted(order[:max(1, min(n_queries, round(0.15 * len(groups))))]) if len(groups) > 2 else []
    dev = groups.iloc[held]
    queries = {f"dev{i}": q for i, q in zip(dev["pair"], dev["query"])}
    qrels = {f"dev{i}": {d: 1} for i, d in zip(dev["pair"], dev["doc_id"])}
    return "held-out synthetic queries", queries, qrels, groups.drop(index=groups.index[held]).reset_index(drop=True)
