"""Recipe ``customir``: generated queries plus base-model hard negatives that the LLM verifies.

Taught in: notebooks/21_adapt_to_known_corpus_customir.ipynb
"""

from __future__ import annotations

from cookbook import negatives, querygen
from cookbook.config import SEED
from cookbook.recipes import common
from cookbook.recipes.promptagator import generated_pairs


def recipe(data, out_dir, *, embedder=None, llm=None, docs: int = 100, n_samples: int = 3,
             consistency_k: int = 10, range_max: int = 30, epochs: int = 1, batch_size: int = 16,
             examples: list | None = None, instruction: str | None = None,
             query_prompt: str | None = None, document_prompt: str | None = None, seed: int = SEED) -> dict:
    """CustomIR-style: generated queries + hard negatives from the base model that the LLM
    verifies (query likelihood) -> MNRL with one hard negative per query. Prompts as in
    :func:`cookbook.recipes.promptagator.recipe`.

    Taught in: notebooks/21_adapt_to_known_corpus_customir.ipynb
    """
    # 1. the base model, measured before training; its index also mines the negatives
    embedder, llm = common.embedder_or_default(embedder), common.llm_or_default(llm)
    prompts = {"query": query_prompt, "document": document_prompt}
    before = common.start(data, embedder, prompts=prompts, seed=seed)
    with llm.track() as usage:
        # 2. generated queries, as in promptagator
        _, pairs = generated_pairs(data, llm, before.index, docs=docs, n_samples=n_samples,
                                   consistency_k=consistency_k, examples=examples,
                                   instruction=instruction, seed=seed)
        # 3. hard negatives from the base model, verified by query likelihood
        mined = negatives.mine(before.index, data, pairs, range_max=min(range_max, len(data.corpus) - 1))
        checked = negatives.verify(mined, llm, data)
    # 4. MNRL with one verified hard negative per query
    train = negatives.triplets(checked, data, pairs, seed=seed)
    querygen.fine_tune(embedder, train, epochs=epochs, batch_size=min(batch_size, len(train)),
                       prompts=common.train_prompts(prompts, train.column_names), seed=seed)
    # 5. after, verdict, report
    index, run = common.dense_run(embedder, before, prompts)
    return common.finish("customir", before, embedder, out_dir, after_run=run,
                         after_fine=common.fine_distinction(index, data, seed), llm_usage=usage,
                         train_pairs=len(train), mined_negatives=len(mined),
                         verified_negatives=int(checked["verified"].sum()) if len(checked) else 0)
