"""Solutions to the exercises of notebooks/60_learn_retriever_by_language_modeling_revela.ipynb.

Run: ``python notebooks/solutions/60_learn_retriever_by_language_modeling_revela.py`` (uses
COOKBOOK_PROFILE; the laptop profile takes several minutes per exercise on 2 cores).
"""

from __future__ import annotations

import copy

import pandas as pd

from cookbook import evaluate, models, recipes, retrieval, revela
from cookbook.config import CACHE_DIR, SEED

RUN_DIR = CACHE_DIR / "runs" / "60_solutions"


def _ndcg(model, data) -> float:
    run = retrieval.dense_search(model, data, data.split_queries("test"))
    return evaluate.evaluate(run, data.qrels["test"])[0]["nDCG@10"]


def _train(model, lm, tokenizer, chunks, batches, **options) -> dict:
    report = revela.train(model, lm, tokenizer, chunks, batches, **options)
    return {"loss first": report["loss_first"], "loss last": report["loss_last"],
            "seconds per step": report["seconds_per_step"]}


def exercise_1_paper_setting(data, lm, tokenizer, chunks, batches, calibrated: dict, tau=0.05,
                             max_length=64) -> pd.DataFrame:
    """MiniLM trained with the calibrated in-batch term vs the paper's (normalised, strength 1)."""
    rows = {}
    for name, setting in {"calibrated": calibrated, "paper (normalised, strength 1)":
                          {"normalize": True, "strength": 1.0}}.items():
        model = models.load_embedder()
        rows[name] = _train(model, lm, tokenizer, chunks, batches, tau=tau, max_length=max_length,
                            seed=SEED, **setting)
        rows[name]["nDCG@10"] = _ndcg(model, data)
    rows["before"] = {"nDCG@10": _ndcg(models.load_embedder(), data)}
    return pd.DataFrame(rows).T


def _ndcg_prompted(model, data) -> float:
    """nDCG@10 with the model's own query/document prompts (none for the mean-pooled variant)."""
    prompts = model.prompts or {}
    index = retrieval.DenseIndex(model, data, query_prompt=prompts.get("query"), document_prompt=prompts.get("document"))
    return evaluate.evaluate(index.search(data.split_queries("test"), k=100), data.qrels["test"])[0]["nDCG@10"]


def exercise_2_pooling(data, lm, tokenizer, chunks, batches, setting: dict, tau=0.05, max_length=64,
                       learning_rate=1e-3) -> pd.DataFrame:
    """The SmolLM2 retriever with mean pooling (no EOS, no prefixes) vs last-token pooling on an
    appended EOS with the paper's prefixes, both on plain text: before and after Revela."""
    rows = {}
    variants = {"mean": {"pooling": "mean", "eos": False, "prompts": None},
                "last token (EOS), prefixes": {}}
    for name, options in variants.items():
        model = revela.lm_retriever(max_seq_length=max_length + 16, seed=SEED, **options)
        before = _ndcg_prompted(model, data)
        _train(model, lm, tokenizer, chunks, batches, tau=tau, max_length=max_length,
               learning_rate=learning_rate, seed=SEED, **setting)
        revela.save_retriever(model, RUN_DIR / f"pooling-{options.get('pooling', 'lasttoken')}")
        rows[name] = {"before": before, "after": _ndcg_prompted(model, data)}
    return pd.DataFrame(rows).T


def exercise_3_batch_size(data, lm, tokenizer, chunks, setting: dict, steps=12, sizes=(4, 8),
                          tau=0.05, max_length=64) -> pd.DataFrame:
    """MiniLM after the same number of steps with BM25 batches of different sizes."""
    rows = {}
    for size in sizes:
        batches = revela.bm25_batches(chunks, batch_size=size, seed=SEED)[:steps]
        model = models.load_embedder()
        rows[size] = _train(model, lm, tokenizer, chunks, batches, tau=tau, max_length=max_length,
                            seed=SEED, **setting)
        rows[size]["nDCG@10"] = _ndcg(model, data)
    return pd.DataFrame(rows).T.rename_axis("batch size")


def exercise_4_adapt_the_reader(data, lm, tokenizer, chunks, batches, tau=0.05, max_length=64,
                                lora_r=8) -> pd.DataFrame:
    """The paper's setup: the reader LM carries LoRA adapters and trains with the retriever, at
    full strength. Compare the loss curve and nDCG@10 with a frozen reader at the same strength."""
    rows = {}
    for name in ("frozen reader", "LoRA reader"):
        reader = revela.freeze(copy.deepcopy(lm))
        if name == "LoRA reader":
            reader = revela.add_lora(reader, r=lora_r)
        model = models.load_embedder()
        rows[name] = _train(model, reader, tokenizer, chunks, batches, tau=tau, max_length=max_length,
                            normalize=True, strength=1.0, learning_rate=2e-5, seed=SEED)
        rows[name]["nDCG@10"] = _ndcg(model, data)
    return pd.DataFrame(rows).T


def exercise_5_random_grouping(data, out_dir=RUN_DIR / "recipe", llm=None, steps=4, **options) -> pd.DataFrame:
    """``revela.recipe`` with BM25 and random grouping on the same data."""
    rows = {}
    for grouping in ("bm25", "random"):
        report = recipes.revela.recipe(data, out_dir / grouping, llm=llm, steps=steps, grouping=grouping,
                               seed=SEED, **options)
        rows[grouping] = {"before": report["before"]["nDCG@10"], "after": report["after"]["nDCG@10"],
                          "t_p": report["comparison"]["t_p"]}
    return pd.DataFrame(rows).T


# Exercise 6 (further research) is a run of the notebook with COOKBOOK_PROFILE=full on a GPU;
# compare its results JSON (data/results/full/) with the laptop one.


if __name__ == "__main__":
    from cookbook.beir import load_beir
    from cookbook.config import DATA_DIR, profile

    PROFILE = profile()
    from cookbook import corpus

    data = corpus.load_apidocs(max_docs=PROFILE.pick(smoke=150, laptop=400, full=None))
    tokenizer, lm = models.load_causal_lm("generator")
    revela.freeze(lm)
    chunk_tokens = PROFILE.pick(smoke=32, laptop=48, full=128)
    chunks = revela.chunk_corpus(data, tokenizer, chunk_tokens=chunk_tokens, max_chunks=4000, seed=SEED)
    steps = PROFILE.pick(smoke=2, laptop=12, full=2000)
    batches = revela.bm25_batches(chunks, batch_size=PROFILE.pick(smoke=4, laptop=8, full=16), seed=SEED)[:steps]
    best = revela.calibrate_strength(lm, tokenizer, chunks, batches[:2], max_length=chunk_tokens).attrs["best"]
    print(exercise_1_paper_setting(data, lm, tokenizer, chunks, batches, best, max_length=chunk_tokens))
    print(exercise_2_pooling(data, lm, tokenizer, chunks, batches, best, max_length=chunk_tokens))
    print(exercise_3_batch_size(data, lm, tokenizer, chunks, best, steps=steps, max_length=chunk_tokens))
    print(exercise_4_adapt_the_reader(data, lm, tokenizer, chunks, batches, max_length=chunk_tokens))
    print(exercise_5_random_grouping(load_beir(DATA_DIR / "fixtures" / "tiny_beir"), llm=(tokenizer, lm),
                                     steps=2, batch_size=2, chunk_tokens=32))
