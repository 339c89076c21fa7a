"""Solutions to the exercises of notebooks/21_adapt_to_known_corpus_customir.ipynb.

Run: ``python notebooks/solutions/21_adapt_to_known_corpus_customir.py`` (uses COOKBOOK_PROFILE).
"""

from __future__ import annotations

import time

import pandas as pd

from cookbook import evaluate, models, negatives, querygen, retrieval
from cookbook.config import CACHE_DIR, SEED

RUN_DIR = CACHE_DIR / "runs" / "21_solutions"


def _gain(data, train_set, name) -> float:
    model = querygen.fine_tune(models.load_embedder(), train_set, seed=SEED, output_dir=RUN_DIR / name)
    run = retrieval.dense_search(model, data, data.split_queries("test"))
    return evaluate.evaluate(run, data.qrels["test"])[0]["R@10"]


def exercise_1_lower_window(data, index, generator, pairs, labels) -> pd.DataFrame:
    """False-negative rate and R@10 for two mining windows."""
    rows = {}
    for lo, hi in ((0, 20), (10, 50)):
        checked = negatives.verify(negatives.mine(index, data, pairs, range_min=lo, range_max=hi),
                                   generator, data)
        rows[f"ranks {lo + 1}-{hi}"] = {
            "FN rate": negatives.false_negative_rate(checked, labels),
            "R@10": _gain(data, negatives.triplets(checked, data, pairs), f"w{lo}_{hi}")}
    return pd.DataFrame(rows).T


def exercise_2_margin_sweep(checked: pd.DataFrame, labels, margins=(-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0)) -> pd.DataFrame:
    """Re-threshold the stored QL scores (no new LLM calls): FN rate vs negatives kept."""
    rows = []
    for m in margins:
        kept = checked[checked["ql_neg"] < checked["ql_pos"] - m]
        rows.append({"margin": m, "kept": len(kept) / max(len(checked), 1),
                     "FN rate": negatives.false_negative_rate(kept, labels)})
    return pd.DataFrame(rows)


def exercise_3_two_negatives(data, checked, pairs):
    """A 4-column dataset (anchor, positive, negative_1, negative_2) for MNRL."""
    from datasets import Dataset

    ok = checked[checked["verified"]].sort_values(["pair", "neg_rank"]).groupby("pair").head(2)
    two = ok.groupby("pair")["neg_id"].apply(list)
    two = two[two.map(len) == 2]
    ds = Dataset.from_dict({
        "anchor": [pairs["query"][p] for p in two.index],
        "positive": [data.doc_text(pairs["doc_id"][p]) for p in two.index],
        "negative_1": [data.doc_text(n[0]) for n in two],
        "negative_2": [data.doc_text(n[1]) for n in two]})
    return _gain(data, ds, "two_negatives") if len(ds) >= 2 else float("nan")


def exercise_4_compare_miners(data, index, pairs) -> dict:
    """Our index-based miner vs sentence-transformers' mine_hard_negatives."""
    t = time.perf_counter()
    ours = negatives.mine(index, data, pairs, relative_margin=None, num_negatives=2, range_max=10)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    theirs = negatives.mine_with_sentence_transformers(index.model, data, pairs, relative_margin=None,
                                                       num_negatives=2, range_max=10)
    t_theirs = time.perf_counter() - t
    same = sorted(zip(ours["pair"], ours["neg_id"])) == sorted(zip(theirs["pair"], theirs["neg_id"]))
    return {"same negatives": same, "ours s": t_ours, "sentence-transformers s": t_theirs}


def exercise_5_judge_vs_ql(data, checked, endpoint_llm, labels) -> pd.DataFrame:
    """With an endpoint (COOKBOOK_LLM_BACKEND=http): prompt judge vs query likelihood."""
    judged = negatives.judge(checked, endpoint_llm, data)
    return pd.DataFrame({
        "query likelihood": {"FN rate": negatives.false_negative_rate(judged[judged["verified"]], labels)},
        "prompt judge": {"FN rate": negatives.false_negative_rate(judged[~judged["judge_yes"]], labels)},
    }).T
