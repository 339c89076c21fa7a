"""Recipe ``revela``: a retriever trained through a frozen LM's next-token loss on the corpus
alone (no queries, no labels).

Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
"""

from __future__ import annotations

from cookbook import revela as technique
from cookbook.config import SEED
from cookbook.recipes import common
from cookbook.recipes.common import RecipeError


def recipe(data, out_dir, *, embedder=None, llm=None, steps: int = 20, batch_size: int = 8,
           chunk_tokens: int = 64, tau: float = 0.05, learning_rate: float = 2e-5, max_chunks: int | None = 4000,
           grouping: str = "bm25", strength: float | None = None, normalize: bool | None = None,
           seed: int = SEED) -> dict:
    """Revela on any ``RetrievalData``: train ``embedder`` through the LM for ``steps`` batches
    (at most one pass over the batches), save it, report.

    Needs no queries and no labels (only the corpus). ``embedder=None`` loads MiniLM, ``llm=None``
    the offline SmolLM2 (frozen). ``strength``/``normalize`` left as None are chosen by
    :func:`cookbook.revela.calibrate_strength` on two training batches.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    if grouping not in ("bm25", "random"):
        raise RecipeError(f"grouping={grouping!r}: use 'bm25' or 'random'")
    # 1. the base retriever, measured before training; the frozen reader LM
    tokenizer, lm = technique.lm_pair(llm)
    technique.freeze(lm)
    retriever = common.embedder_or_default(embedder, max_seq_length=chunk_tokens * 2)
    before = common.start(data, retriever, seed=seed)
    # 2. chunks of the corpus, grouped into batches of BM25 neighbours (or at random)
    chunks = technique.chunk_corpus(data, tokenizer, chunk_tokens=chunk_tokens, max_chunks=max_chunks, seed=seed)
    make = technique.bm25_batches if grouping == "bm25" else technique.random_batches
    batches = make(chunks, batch_size=batch_size, seed=seed)[:steps]
    technique.check_no_query_text(chunks, batches, data)
    # 3. the strength of the cross-chunk attention, calibrated on two batches unless given
    if strength is None or normalize is None:
        best = technique.calibrate_strength(lm, tokenizer, chunks, batches[:2], max_length=chunk_tokens).attrs["best"]
        strength = best["strength"] if strength is None else strength
        normalize = best["normalize"] if normalize is None else normalize
    # 4. training: only the LM's next-token loss reaches the retriever
    trained = technique.train(retriever, lm, tokenizer, chunks, batches, tau=tau, learning_rate=learning_rate,
                              max_length=chunk_tokens, normalize=normalize, strength=strength, seed=seed)
    # 5. after, verdict, report
    index, run = common.dense_run(retriever, before)
    return common.finish(
        "revela", before, retriever, out_dir, after_run=run, after_fine=common.fine_distinction(index, data, seed),
        llm_usage={"lm_forward_passes": 2 * trained["steps"],
                   "lm_tokens": 2 * trained["steps"] * batch_size * chunk_tokens},
        train_pairs=0, steps=trained["steps"], chunks=len(chunks), batch_size=batch_size, tau=tau,
        grouping=grouping, strength=strength, normalize=normalize, peak_rss_mb=trained["peak_rss_mb"],
        seconds_per_step=trained["seconds_per_step"], loss_first=trained["loss_first"],
        loss_last=trained["loss_last"], save=technique.save_retriever)
