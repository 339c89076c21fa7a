"""Solutions to the exercises of notebooks/20_generate_queries_promptagator.ipynb.

Run: ``python notebooks/solutions/20_generate_queries_promptagator.py`` (uses COOKBOOK_PROFILE;
the LLM calls are cached, so the parts that reuse the notebook's settings are fast).
"""

from __future__ import annotations

import random

import pandas as pd

from cookbook import evaluate, llm, models, querygen, retrieval
from cookbook.config import CACHE_DIR, SEED

RUN_DIR = CACHE_DIR / "runs" / "20_solutions"


def _gen_docs(data, n):
    order = sorted(data.corpus)
    random.Random(SEED).shuffle(order)
    return order[:n]


def _train_and_eval(data, df, name):
    model = querygen.fine_tune(models.load_embedder(), querygen.to_pairs(df, data), seed=SEED,
                               output_dir=RUN_DIR / name)
    run = retrieval.dense_search(model, data, data.split_queries("test"))
    return run, evaluate.evaluate(run, data.qrels["test"])[0]


def exercise_1_consistency_k(data, ranked: pd.DataFrame, ks=(1, 3, 10, 50)) -> pd.DataFrame:
    """Kept queries and test nDCG@10 per consistency depth (``ranked`` from consistency_ranks)."""
    rows = []
    for k in ks:
        kept = ranked[ranked["rank"] <= k]
        if len(kept) < 2:
            rows.append({"k": k, "kept": len(kept), "nDCG@10": float("nan")})
            continue
        _, summary = _train_and_eval(data, kept, f"k{k}")
        rows.append({"k": k, "kept": len(kept), "nDCG@10": summary["nDCG@10"]})
    return pd.DataFrame(rows)


def exercise_2_ql_vs_consistency(data, generator, ranked: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """Best candidate per document by query likelihood vs the consistency filter, equal size."""
    consistent = ranked[ranked["rank"] <= k]
    by_ql = querygen.top_per_doc(querygen.ql_scores(ranked, generator, data), "ql", 1)
    by_ql = by_ql.sort_values("ql", ascending=False).head(len(consistent))
    return pd.DataFrame({"consistency": _train_and_eval(data, consistent, "cons")[1],
                         "QL top-1": _train_and_eval(data, by_ql, "ql")[1]}).T


def exercise_3_fewer_examples(data, generator, index, n_docs: int = 40) -> pd.DataFrame:
    """2 vs 8 few-shot examples: copy rate and acceptance."""
    rows = {}
    for k in (2, 8):
        res = querygen.promptagator(data, generator, index, _gen_docs(data, n_docs), n_examples=k)
        reasons = res.cleaned["reason"].value_counts(normalize=True)
        rows[f"{k} examples"] = {"copied example": reasons.get("copied example", 0.0),
                                 **res.stats["kept of generated"].to_dict()}
    return pd.DataFrame(rows).T


def exercise_4_temperature(data, generator, index, n_docs: int = 40) -> pd.DataFrame:
    """Diversity (unique queries per document) and acceptance at three temperatures."""
    rows = {}
    for t in (0.3, 0.8, 1.2):
        res = querygen.promptagator(data, generator, index, _gen_docs(data, n_docs), temperature=t)
        unique = res.raw.groupby("doc_id")["query"].nunique().mean()
        rows[t] = {"unique per doc": unique, "kept of generated": res.stats["kept of generated"].iloc[-1]}
    return pd.DataFrame(rows).T


def exercise_5_http_equals_local(prompts: list[str]) -> bool:
    """Greedy outputs over transformers serve equal the local ones (same weights)."""
    params = llm.SamplingParams(max_new_tokens=12, stop=())
    local = llm.LocalLLM(cache=False).generate(prompts, params)
    with llm.start_transformers_serve() as server:
        remote = llm.OpenAIHTTPLLM(server.base_url, server.model, cache=False).generate(prompts, params)
    return local == remote


def exercise_6_two_round_filter(data, generator, index, n_docs: int = 60):
    """Promptagator's own recipe: a round-1 retriever trained on unfiltered queries filters them."""
    res = querygen.promptagator(data, generator, index, _gen_docs(data, n_docs), consistency_k=10)
    kept = res.cleaned[res.cleaned["reason"] == ""]
    round1 = querygen.fine_tune(models.load_embedder(), querygen.to_pairs(kept, data), seed=SEED,
                                output_dir=RUN_DIR / "round1")
    ranked = querygen.consistency_ranks(kept, retrieval.DenseIndex(round1, data), depth=100)
    filtered = ranked[ranked["rank"] <= 1]  # Promptagator keeps top-1 agreement
    return {"base-model filter": _train_and_eval(data, res.consistent, "base_filter")[1],
            "round-1 filter": _train_and_eval(data, filtered, "round1_filter")[1]}


if __name__ == "__main__":
    from cookbook import corpus

    data = corpus.load_apidocs()
    generator = llm.get_llm()
    index = retrieval.DenseIndex(models.load_embedder(), data)
    print(exercise_3_fewer_examples(data, generator, index, n_docs=16))
