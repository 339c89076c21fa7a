"""Recipe ``revela``: a retriever trained through a frozen LM's next-token loss on the corpus
alone (no queries, no labels), checked on held-out chunks.

Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
"""

from __future__ import annotations

from cookbook import evaluate
from cookbook import revela as technique
from cookbook.config import SEED
from cookbook.recipes import common
from cookbook.recipes.common import RecipeError


def recipe(data, out_dir, *, embedder=None, llm=None, steps: int = 20, batch_size: int = 8,
           chunk_tokens: int = 64, tau: float = 0.05, learning_rate: float = 2e-5, max_chunks: int | None = 4000,
           dev_chunks: int = 200, grouping: str = "bm25", strength: float | None = None,
           normalize: bool | None = None, keep_base_without_gain: bool = True, seed: int = SEED) -> dict:
    """Revela on any ``RetrievalData``: train ``embedder`` through the LM for exactly ``steps``
    batches (cycling over the batches when there are fewer), save it, report.

    Needs no queries and no labels (only the corpus). ``embedder=None`` loads MiniLM, ``llm=None``
    the offline SmolLM2 (frozen). ``strength``/``normalize`` left as None are chosen by
    :func:`cookbook.revela.calibrate_strength` on two training batches. The dev check needs no
    labels either: up to ``dev_chunks`` held-out chunks (a fifth of the chunks at most) whose
    first half must retrieve their own chunk, before and after (:func:`cookbook.revela.dev_run`);
    the report's first line gives its verdict beside the test split's. With
    ``keep_base_without_gain=True`` (default) the recipe does no harm it can see without labels:
    **when the trained model does not beat the base model on the dev check (paired t-test,
    p < 0.05), the base model's weights are what it saves and evaluates**, and the report says
    so (``decision``) with the trained model's test nDCG@10 beside it, for information only.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    if grouping not in ("bm25", "random"):
        raise RecipeError(f"grouping={grouping!r}: use 'bm25' or 'random'")
    if steps < 1:
        raise RecipeError(f"steps={steps}: train at least one step")
    # 1. the base retriever, measured before training; the frozen reader LM
    tokenizer, lm = technique.lm_pair(llm)
    technique.freeze(lm)
    retriever = common.embedder_or_default(embedder, max_seq_length=chunk_tokens * 2)
    before = common.start(data, retriever, seed=seed)
    # 2. chunks of the corpus: held-out chunks for the dev check, the rest in batches of BM25 neighbours
    chunks = technique.chunk_corpus(data, tokenizer, chunk_tokens=chunk_tokens, max_chunks=max_chunks, seed=seed)
    chunks, held_out = technique.split_dev(chunks, min(dev_chunks, max(2, len(chunks) // 5)), seed=seed)
    make = technique.bm25_batches if grouping == "bm25" else technique.random_batches
    batches = make(chunks, batch_size=batch_size, seed=seed)
    technique.check_no_query_text(chunks, batches, data)
    dev_before, dev_qrels = technique.dev_run(retriever, held_out)
    base_state = {k: v.detach().clone() for k, v in retriever.state_dict().items()}
    # 3. the strength of the cross-chunk attention, calibrated on two batches unless given
    if strength is None or normalize is None:
        best = technique.calibrate_strength(lm, tokenizer, chunks, batches[:2], max_length=chunk_tokens).attrs["best"]
        strength = best["strength"] if strength is None else strength
        normalize = best["normalize"] if normalize is None else normalize
    # 4. training, exactly `steps` batches: only the LM's next-token loss reaches the retriever
    trained = technique.train(retriever, lm, tokenizer, chunks, batches, steps=steps, tau=tau,
                              learning_rate=learning_rate, max_length=chunk_tokens, normalize=normalize,
                              strength=strength, seed=seed)
    # 5. the dev check decides which weights the recipe keeps; then the test split (when there is one)
    dev_after, _ = technique.dev_run(retriever, held_out)
    dev = {"name": "held-out chunks", "chunks": len(held_out),
           "comparison": evaluate.compare(dev_before, dev_after, dev_qrels, "nDCG@10")}
    decision, not_kept = "kept the trained model", {}
    if keep_base_without_gain and evaluate.verdict(dev["comparison"]) != "better":
        if common.has_test(data):  # what the discarded model would have scored, for the report only
            _, trained_run = common.dense_run(retriever, before)
            trained_ndcg = evaluate.evaluate(trained_run, data.qrels["test"], ("nDCG@10",))[0]["nDCG@10"]
            not_kept = {"trained_model_test_ndcg10": round(float(trained_ndcg), 4)}
        retriever.load_state_dict(base_state)
        decision = ("kept the base model: the trained model did not beat it on the dev check "
                    "(keep_base_without_gain=False keeps the trained one)")
    index, run = common.dense_run(retriever, before)
    return common.finish(
        "revela", before, retriever, out_dir, after_run=run, after_fine=common.fine_distinction(index, data, seed),
        dev=dev, decision=decision, **not_kept, llm_usage={"lm_forward_passes": 2 * trained["steps"],
                            "lm_tokens": 2 * trained["steps"] * batch_size * chunk_tokens},
        train_pairs=0, steps=trained["steps"], batches=len(batches), epochs=trained["epochs"],
        chunks=len(chunks), batch_size=batch_size, tau=tau, grouping=grouping, strength=strength,
        normalize=normalize, peak_rss_mb=trained["peak_rss_mb"], seconds_per_step=trained["seconds_per_step"],
        loss_first=trained["loss_first"], loss_last=trained["loss_last"], save=technique.save_retriever)
