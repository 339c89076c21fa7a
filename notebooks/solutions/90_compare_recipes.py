"""Solutions to the exercises of notebooks/90_compare_recipes.ipynb.

Run: ``python notebooks/solutions/90_compare_recipes.py`` (uses COOKBOOK_PROFILE and the models the
technique notebooks saved in that profile). Each function takes the notebook's ``data`` (the common
corpus) and returns a table.
"""

from __future__ import annotations

import pandas as pd
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from cookbook import bixse, compare, models, retrieval
from cookbook.config import SEED
from cookbook.finetune import fit

# the encoder length each notebook trained with (laptop profile)
TRAINED_LENGTH = {"promptagator": 128, "customir": 64, "ssra": 64, "bixse": 64, "scincl": 64, "revela": 128}


def exercise_1_native_lengths(data, shared_length: int = 64) -> pd.DataFrame:
    """nDCG@10 of every saved embedder at the shared length and at the length it trained with."""
    rows = {}
    for name, s in compare.saved_recipes().items():
        if s.kind != "embedder":
            continue
        row = {}
        for tag, length in (("shared", shared_length), ("trained", TRAINED_LENGTH.get(name, shared_length))):
            scores = compare.evaluate_system(s.label, compare.load_recipe(s, max_seq_length=length), data, seed=SEED)
            row[f"nDCG@10 ({tag} length {length})"] = scores.means()["nDCG@10"]
        rows[s.label] = row
    table = pd.DataFrame(rows).T
    table["rank (shared)"] = table.iloc[:, 0].rank(ascending=False)
    table["rank (trained)"] = table.iloc[:, 1].rank(ascending=False)
    return table


def _union(saved, names):
    parts = {}
    for n in names:
        ds = compare.training_data(saved[n])
        parts[n] = ds.select_columns(["anchor", "positive", "label"] if n == "bixse" else ["anchor", "positive", "negative"])
    return parts


def _train_combined(data, parts, steps, max_seq_length=64, batch_size=16, seed=SEED):
    """As in the notebook: round robin over the parts, BiXSE from notebook 31's start, lr 5e-5."""
    model = models.load_embedder(max_seq_length=max_seq_length)
    saved = compare.saved_recipes()
    loss, mapping = {}, {}
    for n in parts:
        if n == "bixse":
            card = saved[n].card
            loss[n] = bixse.BiXSELoss(model, **card.get("start", {}))
            mapping |= {f"^{n}\\." + p.lstrip("^"): lr
                        for p, lr in loss[n].learning_rate_mapping(card.get("param_lr", 1e-2)).items()}
        else:
            loss[n] = MultipleNegativesRankingLoss(model)
    fit(model, parts, loss, max_steps=steps, batch_size=batch_size, learning_rate=5e-5, warmup=0.1,
        no_duplicates=True, seed=seed, sampling="round_robin", learning_rate_mapping=mapping)
    return compare.evaluate_system("combined", model, data, seed=seed)


def exercise_2_equal_steps(data, names=("customir", "scincl", "bixse"), steps: int = 72) -> pd.DataFrame:
    """The combined recipe at the notebook's steps and at the sum of its parts' steps."""
    saved = compare.saved_recipes()
    names = [n for n in names if n in saved]
    summed = sum(saved[n].card["cost"]["steps"] for n in names)
    out = {}
    for label, k in ((f"{steps} steps", steps), (f"{summed} steps (sum of the parts)", summed)):
        out[label] = _train_combined(data, _union(saved, names), k).means()
    return pd.DataFrame(out).T


def exercise_3_leave_one_out(data, names=("customir", "scincl", "bixse"), steps: int = 72) -> pd.DataFrame:
    """The combined recipe without each part in turn, paired against the full union."""
    saved = compare.saved_recipes()
    names = [n for n in names if n in saved]
    full = _train_combined(data, _union(saved, names), steps)
    rows = {}
    for drop in names:
        rest = [n for n in names if n != drop]
        if len(rest) < 1:
            continue
        scores = _train_combined(data, _union(saved, rest), steps)
        rows[f"without {drop}"] = compare.compare_two(full, scores, "nDCG@10")
    return pd.DataFrame(rows).T[["mean_a", "mean_b", "diff", "t_p"]]


def exercise_4_rerank_best(data, best: str, depth: int = 10) -> pd.DataFrame:
    """The LCE reranker on top of the best single recipe instead of the base model."""
    saved = compare.saved_recipes()
    reranker = compare.load_recipe(saved["lce"], max_seq_length=64)
    embedder = compare.load_recipe(saved[best], max_seq_length=64)
    index = retrieval.DenseIndex(embedder, data)
    alone = compare.evaluate_system(best, embedder, data, index=index)
    on_top = compare.evaluate_system(best + " + LCE", embedder, data, index=index, reranker=reranker, depth=depth)
    return pd.DataFrame({m: compare.compare_two(alone, on_top, m) for m in ("nDCG@10", "fine distinction")}).T


if __name__ == "__main__":
    from cookbook.corpus import load_apidocs

    data = load_apidocs(max_docs=1200)
    print(exercise_1_native_lengths(data))
    print(exercise_3_leave_one_out(data))
