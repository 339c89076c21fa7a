"""Recipe ``promptagator``: MiniLM fine-tuned on LLM-written queries for sampled documents.

Taught in: notebooks/20_generate_queries_promptagator.ipynb
"""

from __future__ import annotations

from cookbook import querygen
from cookbook.config import SEED
from cookbook.recipes import common
from cookbook.recipes.common import RecipeError


def generated_pairs(data, llm, index, *, docs, n_samples, consistency_k, examples, instruction, seed):
    """Promptagator queries for ``docs`` sampled documents, cleaned and consistency-filtered."""
    res = querygen.promptagator(data, llm, index, common.sample_docs(data, docs, seed), examples=examples,
                                instruction=instruction, n_samples=n_samples,
                                consistency_k=consistency_k, seed=seed)
    pairs = res.final[["query", "doc_id"]].reset_index(drop=True)
    if len(pairs) < 2:
        raise RecipeError(f"only {len(pairs)} generated queries survived the filters "
                          f"({res.stats['queries'].to_dict()}); raise docs= or consistency_k=")
    return res, pairs


def recipe(data, out_dir, *, embedder=None, llm=None, docs: int = 100, n_samples: int = 3,
                 consistency_k: int = 10, epochs: int = 1, batch_size: int = 16,
                 examples: list | None = None, instruction: str | None = None,
                 query_prompt: str | None = None, document_prompt: str | None = None, seed: int = SEED) -> dict:
    """Promptagator-style queries for ``docs`` sampled documents -> filters -> MNRL fine-tune.

    ``query_prompt`` / ``document_prompt`` are for embedders trained with them (e5:
    ``"query: "`` and ``"passage: "``): used for search, evaluation and training alike.

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    # 1. the base model, measured before training; its index also serves the consistency filter
    embedder, llm = common.embedder_or_default(embedder), common.llm_or_default(llm)
    prompts = {"query": query_prompt, "document": document_prompt}
    before = common.start(data, embedder, prompts=prompts, seed=seed)
    # 2. LLM queries for sampled documents, cleaned and round-trip filtered
    with llm.track() as usage:
        res, pairs = generated_pairs(data, llm, before.index, docs=docs, n_samples=n_samples,
                                     consistency_k=consistency_k, examples=examples,
                                     instruction=instruction, seed=seed)
    # 3. MNRL fine-tuning on (query, document) pairs
    train = querygen.to_pairs(pairs, data)
    querygen.fine_tune(embedder, train, epochs=epochs, batch_size=min(batch_size, len(pairs)),
                       prompts=common.train_prompts(prompts, train.column_names), seed=seed)
    # 4. after, verdict, report
    index, run = common.dense_run(embedder, before, prompts)
    return common.finish("promptagator", before, embedder, out_dir, after_run=run,
                         after_fine=common.fine_distinction(index, data, seed), llm_usage=usage,
                         train_pairs=len(pairs), few_shot_examples=len(res.examples),
                         acceptance=res.stats["queries"].to_dict())
