"""Recipe ``lce``: a cross-encoder reranker trained with Localized Contrastive Estimation on
LLM-labelled groups from the dense first stage.

Taught in: notebooks/40_train_reranker_lce.ipynb
"""

from __future__ import annotations

from cookbook import lce as technique
from cookbook.config import SEED, seed_everything
from cookbook.recipes import common
from cookbook.recipes.common import RecipeError


def recipe(data, out_dir, *, embedder=None, llm=None, steps: int | None = None, n_docs: int = 60,
        n_samples: int = 2, group_size: int = 8, label_depth: int = 15, batch_size: int = 4,
        rerank_depth: int = 20, max_length: int = 128, margin: float = 0.0, learning_rate: float = 1e-4,
        seed: int = SEED) -> dict:
    """The whole technique on any ``RetrievalData``; saves the reranker to ``out_dir/"model"``.

    LLM queries for ``n_docs`` sampled documents -> dense first-stage top ``label_depth`` -> LLM
    labels -> localized LCE groups of ``group_size`` -> cross-encoder trained with
    :class:`cookbook.lce.LCELoss` (``batch_size`` groups a step; ``steps=None`` trains one epoch)
    -> the dense top ``rerank_depth`` of the test queries reranked. ``embedder=None`` loads MiniLM
    (first stage and reranker backbone). The report's "before" is the dense first stage.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    seed_everything(seed)
    group_size = min(group_size, len(data.corpus))
    # 1. the dense first stage, measured before training: the system the reranker must beat
    first, llm = common.embedder_or_default(embedder), common.llm_or_default(llm)
    before = common.start(data, first, seed=seed)
    with llm.track() as usage:
        # 2. synthetic queries for sampled documents
        pairs = technique.synthetic_pairs(data, llm, before.index, common.sample_docs(data, n_docs, seed),
                                          n_samples=n_samples, seed=seed)
        if pairs.empty:
            raise RecipeError("no generated query survived the filters: raise n_docs or n_samples")
        # 3. the first stage's top label_depth, labelled by the LLM (query likelihood)
        cands = technique.first_stage_candidates(before.index, pairs, data, depth=label_depth)
        labelled = technique.label_candidates(cands, llm, data, margin=margin)
    # 4. localized groups (one positive, group_size - 1 labelled negatives) and LCE training
    groups = technique.localized_groups(labelled, pairs, data, group_size=group_size, seed=seed)
    steps = steps or max(1, -(-len(groups) // batch_size))
    model = technique.cross_encoder_from(embedder, max_length=max_length, seed=seed)
    trained = technique.train(model, technique.group_dataset(groups, data, seed=seed),
                              technique.LCELoss(model, group_size=group_size), max_steps=steps,
                              batch_size=batch_size, learning_rate=learning_rate, seed=seed)
    # 5. after: the first stage's top rerank_depth reranked; verdict and report
    reranked = None
    if before.run is not None:
        reranked = technique.rerank(model, before.run, data, depth=rerank_depth,
                                    queries=data.split_queries("test"))
    fine = technique.fine_distinction(model, data, "test", seed=seed) if before.fine is not None else None
    return common.finish("lce", before, model, out_dir, after_run=reranked, after_fine=fine, llm_usage=usage,
                         base="the dense first stage", train_pairs=int(len(pairs)), groups=int(len(groups)),
                         group_size=int(group_size), filled_negatives=int(groups["n_filled"].sum()),
                         steps=trained["steps"], train_loss=trained["loss"],
                         pairs_per_second=reranked.pairs_per_second if reranked is not None else None)
