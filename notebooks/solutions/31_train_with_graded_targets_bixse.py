"""Solutions to the exercises of notebooks/31_train_with_graded_targets_bixse.ipynb.

Run: ``python notebooks/solutions/31_train_with_graded_targets_bixse.py`` (uses COOKBOOK_PROFILE).
Each function takes the notebook's ``data`` and ``pairs`` (with ``target_struct``) and trains
MiniLM for ``steps`` steps, like the notebook's arms.
"""

from __future__ import annotations

import pandas as pd

from cookbook import bixse, evaluate, models, retrieval
from cookbook.config import SEED
from cookbook.finetune import fit


def _train(data, dataset, make_loss, *, steps: int, batch_size: int = 16, max_seq_length: int = 64,
           learning_rate: float = 5e-5, seed: int = SEED) -> dict:
    """Fine-tune MiniLM with ``make_loss(model)``; test nDCG@10, fine distinctions and the loss log."""
    model = models.load_embedder(max_seq_length=max_seq_length)
    loss = make_loss(model)
    report = fit(model, dataset, loss, max_steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                 no_duplicates=True, seed=seed, logging_steps=1)
    index = retrieval.DenseIndex(model, data)
    run = index.search(data.split_queries("test"))
    scores = evaluate.evaluate(run, data.qrels["test"], ("nDCG@10", "R@10"))[0]
    fine = evaluate.fine_distinction_accuracy(index, data, kinds=("2>1", "1>0"), seed=seed)
    return {**scores, "2>1": fine["2>1"], "1>0": fine["1>0"],
            "first loss": report["log"][0]["loss"] if report["log"] else None, "final loss": report["loss"],
            "scale": float(loss.scale.detach()), "bias": float(loss.bias.detach())}


def exercise_1_fixed_scale_and_bias(data, pairs, steps: int = 12, **kw) -> pd.DataFrame:
    """Learned (t, b) against fixed t = 10, b = -10: same data, steps and seed."""
    ds = bixse.pairs_dataset(pairs, data, "target_struct")
    return pd.DataFrame({
        "learned": _train(data, ds, bixse.BiXSELoss, steps=steps, **kw),
        "fixed": _train(data, ds, lambda m: bixse.BiXSELoss(m, learn_scale=False, learn_bias=False),
                        steps=steps, **kw),
    }).T


def exercise_2_bias_at_zero(data, pairs, steps: int = 12, **kw) -> pd.DataFrame:
    """Start the bias at 0: the first loss is much higher (every in-batch negative looks relevant)."""
    ds = bixse.pairs_dataset(pairs, data, "target_struct")
    return pd.DataFrame({
        "b0 = -10": _train(data, ds, bixse.BiXSELoss, steps=steps, **kw),
        "b0 = 0": _train(data, ds, lambda m: bixse.BiXSELoss(m, bias=0.0), steps=steps, **kw),
    }).T


def exercise_3_uniform_draw(data, candidates, train_qids, n_candidates: int = 20, seed: int = SEED) -> pd.DataFrame:
    """Grade histograms of the balanced and the uniform draw (the training comparison is the
    notebook's step 5 run on ``pairs_uniform``)."""
    balanced = bixse.draw_labelled_pairs(data, "train", candidates, n_candidates=n_candidates,
                                          qids=train_qids, seed=seed)
    uniform = bixse.draw_labelled_pairs(data, "train", candidates, n_candidates=n_candidates,
                                         qids=train_qids, balance_grades=False, seed=seed)
    out = pd.DataFrame({"balanced": balanced["grade"].value_counts(), "uniform": uniform["grade"].value_counts()})
    out.attrs["InfoNCE positives (grade >= 2)"] = {"balanced": int((balanced["grade"] >= 2).sum()),
                                                   "uniform": int((uniform["grade"] >= 2).sum())}
    return out.fillna(0).astype(int).sort_index()


def exercise_4_hard_targets(data, pairs, steps: int = 12, **kw) -> pd.DataFrame:
    """Soft targets (grade / 3) against hard ones (grade >= 2 -> 1, else 0)."""
    hard = pairs.assign(target_hard=(pairs["grade"] >= 2).astype(float))
    return pd.DataFrame({
        "soft (grade / 3)": _train(data, bixse.pairs_dataset(hard, data, "target_struct"), bixse.BiXSELoss,
                                   steps=steps, **kw),
        "hard (grade >= 2)": _train(data, bixse.pairs_dataset(hard, data, "target_hard"), bixse.BiXSELoss,
                                    steps=steps, **kw),
    }).T


def exercise_5_with_hard_negative(data, pairs, candidates, steps: int = 12, seed: int = SEED, **kw) -> pd.DataFrame:
    """A third column: for each pair, the base model's highest-ranked unjudged candidate (target 0)."""
    from datasets import Dataset

    judged = data.qrels["train"]
    negs = []
    for qid, doc in zip(pairs["qid"], pairs["doc_id"]):
        ranked = sorted(candidates.get(qid, {}).items(), key=lambda kv: -kv[1])
        neg = next((d for d, _ in ranked if d != doc and judged[qid].get(d, 0) == 0), None)
        negs.append(neg)
    keep = pairs.assign(neg=negs).dropna(subset=["neg"])
    three = Dataset.from_dict({"anchor": list(keep["query"]), "positive": [data.doc_text(d) for d in keep["doc_id"]],
                               "negative": [data.doc_text(d) for d in keep["neg"]],
                               "label": keep["target_struct"].astype(float).tolist()})
    return pd.DataFrame({
        "pairs": _train(data, bixse.pairs_dataset(keep, data, "target_struct"), bixse.BiXSELoss,
                        steps=steps, seed=seed, **kw),
        "pairs + hard negative": _train(data, three, bixse.BiXSELoss, steps=steps, seed=seed, **kw),
    }).T


if __name__ == "__main__":
    from cookbook import corpus
    from cookbook.config import profile

    prof = profile()
    data = corpus.load_apidocs(max_docs=prof.pick(smoke=-1, laptop=1000, full=-1))
    steps = prof.pick(smoke=2, laptop=12, full=300)
    base = models.load_embedder(max_seq_length=64)
    qids = sorted(data.qrels["train"])[: prof.pick(smoke=32, laptop=None, full=None)]
    cands = retrieval.DenseIndex(base, data).search({q: data.queries[q] for q in qids}, k=20)
    pairs = bixse.draw_labelled_pairs(data, "train", cands, qids=qids)
    pairs["target_struct"] = pairs["grade"] / 3
    print(exercise_3_uniform_draw(data, cands, qids))
    for exercise in (exercise_1_fixed_scale_and_bias, exercise_2_bias_at_zero, exercise_4_hard_targets):
        print(exercise.__name__, exercise(data, pairs, steps=steps), sep="\n")
    print(exercise_5_with_hard_negative(data, pairs, cands, steps=steps))
