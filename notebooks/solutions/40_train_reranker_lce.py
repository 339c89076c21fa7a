"""Solutions to the exercises of notebooks/40_train_reranker_lce.ipynb.

Each function takes what the notebook has built (``data``, the first-stage runs, ``pairs``,
``labelled``, the groups) so it can be called from the notebook's last cell, or run as a script:
``python notebooks/solutions/40_train_reranker_lce.py`` (uses COOKBOOK_PROFILE; small sizes).
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from cookbook import evaluate, lce, negatives
from cookbook.config import SEED

MEASURES = ("nDCG@10", "MRR@10", "MAP@10")


def _train_and_rerank(data, group_table, first_run, queries, qrels, *, steps, batch_size,
                      depth=20, max_length=64, temperature=1.0, learning_rate=5e-5, seed=SEED):
    model = lce.cross_encoder_from(None, max_length=max_length, seed=seed)
    group = len(group_table["negatives"].iloc[0]) + 1
    lce.train(model, lce.group_dataset(group_table, data, seed=seed),
                 lce.LCELoss(model, group_size=group, temperature=temperature),
                 max_steps=steps, batch_size=batch_size, learning_rate=learning_rate, seed=seed)
    run = lce.rerank(model, first_run, data, depth=depth, queries=queries)
    return model, run, evaluate.evaluate(run, qrels, MEASURES)[0]


def exercise_1_temperature(data, groups, first_run, queries, qrels, *, temperatures=(0.5, 1.0, 2.0),
                           steps=25, batch_size=2) -> pd.DataFrame:
    """LCE at several temperatures: a low temperature sharpens the softmax over the group
    (the loss focuses on the hardest negatives), a high one flattens it."""
    rows = {}
    for t in temperatures:
        _, _, scores = _train_and_rerank(data, groups, first_run, queries, qrels, steps=steps,
                                         batch_size=batch_size, temperature=t)
        rows[f"t = {t}"] = scores
    return pd.DataFrame(rows).T


def exercise_2_group_size(data, labelled, pairs, first_run, queries, qrels, *, pairs_per_step=16,
                          sizes=(4, 8), steps=25) -> pd.DataFrame:
    """Groups of 4 against groups of 8 at the same number of pairs per step."""
    rows = {}
    for g in sizes:
        table = lce.localized_groups(labelled, pairs, data, group_size=g, seed=SEED)
        _, _, scores = _train_and_rerank(data, table, first_run, queries, qrels, steps=steps,
                                         batch_size=max(1, pairs_per_step // g))
        rows[f"G = {g}"] = scores
    return pd.DataFrame(rows).T


def _z(scores: dict) -> dict:
    values = np.array(list(scores.values()), dtype=float)
    sd = values.std() or 1.0
    return {d: (s - values.mean()) / sd for d, s in scores.items()}


def interpolate(first_run: dict, reranked_scores: dict, a: float, depth: int) -> dict:
    """``a * z(cross-encoder) + (1 - a) * z(first stage)`` over each query's top ``depth``;
    the rest keeps its first-stage order below."""
    out = {}
    for qid, docs in first_run.items():
        ranked = sorted(docs, key=lambda d: -docs[d])
        head = ranked[:depth]
        z_first = _z({d: docs[d] for d in head})
        z_ce = _z({d: reranked_scores[qid][d] for d in head})
        mixed = {d: a * z_ce[d] + (1 - a) * z_first[d] for d in head}
        floor = min(mixed.values()) if mixed else 0.0
        mixed.update({d: floor - i for i, d in enumerate(ranked[depth:], start=1)})
        out[qid] = mixed
    return out


def exercise_3_interpolate(model, data, first_stage, test_first_run, test_scores, test_qrels, *,
                           depth=20, n_dev=60, grid=(0.0, 0.25, 0.5, 0.75, 1.0)) -> dict:
    """Pick ``a`` on dev queries (never test), then report test nDCG@10.

    ``first_stage`` is anything with ``search`` (the dense index); ``test_first_run`` and
    ``test_scores`` are the notebook's dense test run and its reranked run's ``.scores``.
    ``a = 0`` is the first stage alone, ``a = 1`` the reranker alone.
    """
    dev_ids = sorted(data.qrels["dev"])
    dev_ids = sorted(random.Random(SEED).sample(dev_ids, min(n_dev, len(dev_ids))))
    dev_queries = {q: data.queries[q] for q in dev_ids}
    dev_qrels = {q: data.qrels["dev"][q] for q in dev_ids}
    dev_first = first_stage.search(dev_queries, k=100)
    dev_scores = lce.rerank(model, dev_first, data, depth=depth, queries=dev_queries).scores

    def ndcg(first_run, scores, qrels, a):
        return evaluate.evaluate(interpolate(first_run, scores, a, depth), qrels, ("nDCG@10",))[0]["nDCG@10"]

    on_dev = {a: ndcg(dev_first, dev_scores, dev_qrels, a) for a in grid}
    best = max(on_dev, key=on_dev.get)
    return {"dev nDCG@10 per a": on_dev, "chosen a": best,
            "test nDCG@10 at the chosen a": ndcg(test_first_run, test_scores, test_qrels, best),
            "test nDCG@10, reranker alone": ndcg(test_first_run, test_scores, test_qrels, 1.0),
            "test nDCG@10, first stage alone": ndcg(test_first_run, test_scores, test_qrels, 0.0)}


def exercise_4_deeper_negatives(data, index, llm, pairs, *, label_depth=30, skip=10, group_size=8) -> pd.DataFrame:
    """Label the top ``label_depth`` and sample negatives only from ranks ``skip + 1`` on."""
    cands = lce.first_stage_candidates(index, pairs, data, depth=label_depth)
    labelled = lce.label_candidates(cands, llm, data)
    labels = negatives.doc_labels(data, pairs["doc_id"])
    pair_labels = {i: labels[d] for i, d in enumerate(pairs["doc_id"])}
    deep = labelled[labelled["neg_rank"] > skip]
    rows = {}
    for name, table in (("top ranks", labelled[labelled["neg_rank"] <= skip]), (f"ranks > {skip}", deep)):
        ok = table[table["negative"]]
        rows[name] = {"candidates": len(table), "confirmed": len(ok),
                      "FN rate of confirmed": negatives.false_negative_rate(ok, pair_labels)}
    out = pd.DataFrame(rows).T
    out.attrs["deep groups"] = lce.localized_groups(deep, pairs, data, group_size=group_size, seed=SEED)
    return out


def human_train_pairs(data, n: int = 60, seed: int = SEED) -> pd.DataFrame:
    """(query, doc_id) from the train split's human-written queries: their best-graded document."""
    qids = sorted(data.qrels["train"])
    qids = random.Random(seed).sample(qids, min(n, len(qids)))
    return pd.DataFrame({"query": [data.queries[q] for q in qids],
                         "doc_id": [max(data.qrels["train"][q], key=data.qrels["train"][q].get) for q in qids]})


def exercise_5_human_queries(data, index, llm, first_run, queries, qrels, *, n=60, steps=25,
                             label_depth=9, group_size=8) -> dict:
    """The same recipe with human train queries instead of synthetic ones."""
    pairs = human_train_pairs(data, n)
    labelled = lce.label_candidates(lce.first_stage_candidates(index, pairs, data, depth=label_depth),
                                       llm, data)
    table = lce.localized_groups(labelled, pairs, data, group_size=group_size, seed=SEED)
    _, _, scores = _train_and_rerank(data, table, first_run, queries, qrels, steps=steps, batch_size=2)
    return scores


def exercise_6_judge_labels(data, candidates, endpoint_llm, pairs) -> pd.DataFrame:
    """With an endpoint (COOKBOOK_LLM_BACKEND=http): query likelihood alone against QL + judge."""
    labels = negatives.doc_labels(data, pairs["doc_id"])
    pair_labels = {i: labels[d] for i, d in enumerate(pairs["doc_id"])}
    ql = lce.label_candidates(candidates, endpoint_llm, data, judge=False)
    both = lce.label_candidates(candidates, endpoint_llm, data, judge=True)
    return pd.DataFrame({
        name: {"confirmed": int(t["negative"].sum()),
               "FN rate": negatives.false_negative_rate(t[t["negative"]], pair_labels)}
        for name, t in (("query likelihood", ql), ("QL + chat judge", both))}).T


if __name__ == "__main__":
    from cookbook import corpus, models, retrieval

    data = corpus.load_apidocs()
    index = retrieval.DenseIndex(models.load_embedder(max_seq_length=64), data)
    ids = sorted(random.Random(SEED).sample(sorted(data.qrels["test"]), 40))
    queries = {q: data.queries[q] for q in ids}
    qrels = {q: data.qrels["test"][q] for q in ids}
    first_run = index.search(queries, k=100)
    from cookbook import llm as L

    print(exercise_5_human_queries(data, index, L.get_llm(), first_run, queries, qrels, n=30, steps=10))
