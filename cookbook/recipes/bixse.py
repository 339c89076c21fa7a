"""Recipe ``bixse``: BCE over graded targets with in-batch negatives, one labelled pair per query.

Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
"""

from __future__ import annotations

import copy

from cookbook import bixse as technique
from cookbook import querygen
from cookbook.config import SEED, seed_everything
from cookbook.finetune import fit
from cookbook.llm import Usage
from cookbook.recipes import common
from cookbook.recipes.common import RecipeError


def _labelled_pairs(data, index, *, n_candidates, targets, llm, seed):
    """With a train split: one judged or retrieved document per train query, target grade / top."""
    cands = index.search(data.split_queries("train"), k=n_candidates)
    pairs = technique.draw_labelled_pairs(data, "train", cands, n_candidates=n_candidates, seed=seed)
    top = max(g for rows in data.qrels.values() for docs in rows.values() for g in docs.values())
    pairs["target"] = technique.GradeTargets(max(int(top), 1))(pairs["grade"].astype(float))
    usage = Usage()
    if targets == "llm":
        llm = common.llm_or_default(llm)
        with llm.track() as usage:
            pairs["target"], _ = technique.llm_targets(llm, data, pairs)
    return pairs, usage


def _generated_pairs(data, index, *, llm, n_docs, n_samples, consistency_k, seed):
    """Without a train split: zero-shot generated queries, each with its document at target 1."""
    llm = common.llm_or_default(llm)
    with llm.track() as usage:
        gen = querygen.promptagator(data, llm, index, common.sample_docs(data, n_docs, seed), examples=[],
                                    n_samples=n_samples, consistency_k=consistency_k, seed=seed)
    pairs = gen.final[["query", "doc_id"]].reset_index(drop=True)
    if len(pairs) < 2:
        raise RecipeError(f"only {len(pairs)} generated query survived the filters: raise n_docs or n_samples")
    pairs["grade"], pairs["target"] = 1, 1.0
    return pairs, usage


def recipe(data, out_dir, *, embedder=None, llm=None, steps: int | None = None, n_candidates: int = 20,
          batch_size: int = 16, learning_rate: float = 5e-5, targets: str = "structural", n_docs: int = 40,
          n_samples: int = 2, consistency_k: int = 10, max_seq_length: int | None = None,
          seed: int = SEED) -> dict:
    """The whole technique on any ``RetrievalData``; saves the bi-encoder to ``out_dir/"model"``.

    With a train split: one labelled pair per train query (:func:`cookbook.bixse.draw_labelled_pairs`,
    pool = judged documents + the base model's top ``n_candidates``), targets ``grade / top grade``
    (``targets="structural"``) or the LLM's calibrated query likelihood (``targets="llm"``), then
    :class:`cookbook.bixse.BiXSELoss`. Without one: zero-shot generated queries for ``n_docs``
    documents, each with its source document as a target-1 pair. ``steps=None`` trains one epoch.

    Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
    """
    if targets not in ("structural", "llm"):
        raise RecipeError(f"targets={targets!r}: choose 'structural' or 'llm'")
    seed_everything(seed)
    # 1. the base model, measured before training
    base = common.embedder_or_default(embedder)
    if max_seq_length is not None:
        base.max_seq_length = max_seq_length
    before = common.start(data, base, seed=seed)
    # 2. labelled pairs with targets in [0, 1]
    if data.qrels.get("train"):
        pairs, usage = _labelled_pairs(data, before.index, n_candidates=n_candidates, targets=targets,
                                       llm=llm, seed=seed)
        source = "train split"
    else:
        pairs, usage = _generated_pairs(data, before.index, llm=llm, n_docs=n_docs, n_samples=n_samples,
                                        consistency_k=consistency_k, seed=seed)
        source, targets = "generated queries (no train split)", "1.0"
    # 3. BiXSE: BCE over every (query, document) pair of the batch
    model = copy.deepcopy(base)
    steps = steps or max(1, -(-len(pairs) // batch_size))
    loss = technique.BiXSELoss(model)
    trained = fit(model, technique.pairs_dataset(pairs, data, "target"), loss, max_steps=steps,
                  batch_size=batch_size, learning_rate=learning_rate, no_duplicates=True, seed=seed)
    # 4. after, verdict, report
    index, run = common.dense_run(model, before)
    return common.finish("bixse", before, model, out_dir, after_run=run,
                         after_fine=common.fine_distinction(index, data, seed), llm_usage=usage,
                         source=source, targets=targets, train_pairs=int(len(pairs)),
                         grades={str(k): int(v) for k, v in pairs["grade"].value_counts().sort_index().items()},
                         steps=trained["steps"], train_loss=trained["loss"],
                         scale=round(float(loss.scale.detach()), 4), bias=round(float(loss.bias.detach()), 4))
