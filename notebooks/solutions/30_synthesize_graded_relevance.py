"""Solutions to the exercises of notebooks/30_synthesize_graded_relevance.ipynb.

Run: ``python notebooks/solutions/30_synthesize_graded_relevance.py`` (uses COOKBOOK_PROFILE; a
small end-to-end pass over exercises 2 to 4 on the profile's corpus).
"""

from __future__ import annotations

import pandas as pd

from cookbook import evaluate, ssra
from cookbook.config import SEED


def exercise_1_relabel_counts(decisions: pd.DataFrame, threshold: float = 0.4) -> pd.DataFrame:
    """Re-decide the stored annotations with ``mode="drop"`` and ``mode="relabel"`` (no new LLM
    or model calls): pairs kept per final level under each rule."""
    rows = {}
    for mode in ("drop", "relabel"):
        decided = ssra.accept(decisions.drop(columns=["accepted", "final_level", "decision"], errors="ignore"),
                                threshold=threshold, mode=mode)
        kept = decided[decided["accepted"]]
        rows[mode] = ssra.level_histogram(kept.assign(level=kept["final_level"]))
    return pd.DataFrame(rows).T


def exercise_2_threshold_sweep(decisions: pd.DataFrame, judged: pd.DataFrame,
                               thresholds=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8)) -> pd.DataFrame:
    """Accepted pairs and their agreement with a fixed judge, per threshold. ``decisions``: the
    loop's annotated generations; ``judged``: the same rows annotated by the judge (same order)."""
    rows = []
    for t in thresholds:
        decided = ssra.accept(decisions.drop(columns=["accepted", "final_level", "decision"], errors="ignore"),
                                threshold=t, mode="drop")
        mask = decided["accepted"].to_numpy()
        agree = (judged["pred"].to_numpy() == judged["level"].to_numpy())[mask]
        rows.append({"threshold": t, "accepted": int(mask.sum()),
                     "judge agreement": float(agree.mean()) if mask.any() else float("nan")})
    return pd.DataFrame(rows)


def exercise_3_unbalanced_score_model(data, human: pd.DataFrame, dev_pool: pd.DataFrame, steps: int = 50,
                                      per_level: int = 200, seed: int = SEED) -> pd.DataFrame:
    """Per-level dev recall of a score model trained on a level-balanced sample against one
    trained on a random sample of the same size (the natural, imbalanced histogram)."""
    balanced = ssra.balanced_sample(human, per_level, seed=seed)
    natural = human.sample(len(balanced), random_state=seed)
    rows = {}
    for name, sample in (("balanced", balanced), ("natural", natural)):
        model = ssra.score_model(4, seed=seed)
        ssra.train_score_model(model, sample, data, max_steps=steps, seed=seed)
        report = ssra.score_report(model, dev_pool, data)
        rows[name] = {"accuracy": report["accuracy"], **{f"recall {k}": v for k, v in report["recall"].items()}}
    return pd.DataFrame(rows).T


def exercise_4_binary_view(data, scorers: dict, min_grade: int = 2, seed: int = SEED) -> pd.DataFrame:
    """Fine-distinction accuracy on the 4-level qrels against the binary view (grade >=
    ``min_grade`` relevant): the binary view only checks relevant above non-relevant, so the
    (2, 1) and (1, 0) distinctions vanish from it."""
    from cookbook.beir import RetrievalData

    binary = {q: {d: 1 for d, g in docs.items() if g >= min_grade} for q, docs in data.qrels["test"].items()}
    binary = {q: docs for q, docs in binary.items() if docs}
    view = RetrievalData(data.corpus, data.queries, {"test": binary})
    rows = {}
    for name, scorer in scorers.items():
        four = evaluate.fine_distinction_accuracy(scorer, data, "test", seed=seed)
        two = evaluate.fine_distinction_accuracy(scorer, view, "test", seed=seed)
        rows[name] = {"4 levels: 2>1": four["2>1"], "4 levels: 1>0": four["1>0"], "binary: relevant>rest": two["1>0"]}
    return pd.DataFrame(rows).T


def exercise_5_more_rounds(data, human, scorer, doc_ids, train_query_model, rounds: int = 3, **kwargs) -> pd.DataFrame:
    """Run the loop for more rounds and return the accepted share per (round, level)."""
    loop = ssra.collaborate(data, human, scorer, doc_ids, rounds=rounds, train_query_model=train_query_model, **kwargs)
    return loop.table["accepted share"].unstack("requested level")


def exercise_6_endpoint_generator(data, requests: pd.DataFrame, judge, examples, **kwargs) -> pd.Series:
    """Further research: the prompted generator served by an OpenAI-compatible endpoint
    (``COOKBOOK_LLM_BACKEND=http`` and the ``COOKBOOK_LLM_*`` variables), judged per level."""
    from cookbook.llm import get_llm

    remote = get_llm("http")
    gen = ssra.clean(ssra.generate(remote, data, requests, examples=examples, **kwargs), data)
    return ssra.agreement(ssra.annotate(judge, gen, data))


if __name__ == "__main__":
    from cookbook import corpus, models, retrieval

    data = corpus.load_apidocs()
    index = retrieval.DenseIndex(models.load_embedder(max_seq_length=64), data)
    human = ssra.human_pairs(data, "train", retriever=index, max_queries=60, seed=SEED)
    dev_pool = ssra.human_pairs(data, "dev", retriever=index, seed=SEED)
    print(exercise_3_unbalanced_score_model(data, human, dev_pool, steps=20))
    print(exercise_4_binary_view(data, {"base MiniLM": index}))
