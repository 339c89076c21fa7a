"""Solutions to the exercises of notebooks/31_train_with_graded_targets_bixse.ipynb, and the dev-split
choice of the notebook's starting values (:func:`dev_choice`).

Run: ``python notebooks/solutions/31_train_with_graded_targets_bixse.py`` (uses COOKBOOK_PROFILE);
``... --dev-choice`` runs only the dev-split comparison of starting values.
Each function takes the notebook's ``data`` and ``pairs`` (with ``target_struct``) and trains
MiniLM for ``steps`` steps, like the notebook's arms (warmup 10%, scale and bias at their own
learning rate).
"""

from __future__ import annotations

import sys

import pandas as pd
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from cookbook import bixse, evaluate, models, retrieval
from cookbook.config import SEED
from cookbook.finetune import fit

PARAM_LR = 1e-2


def _train(data, dataset, make_loss, *, steps: int, batch_size: int = 16, max_seq_length: int = 64,
           learning_rate: float = 5e-5, seed: int = SEED, split: str = "test") -> dict:
    """Fine-tune MiniLM with ``make_loss(model)``; nDCG@10 on ``split``, fine distinctions, the loss log."""
    model = models.load_embedder(max_seq_length=max_seq_length)
    loss = make_loss(model)
    mapping = loss.learning_rate_mapping(PARAM_LR) if isinstance(loss, bixse.BiXSELoss) else None
    report = fit(model, dataset, loss, max_steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                 warmup=0.1, no_duplicates=True, seed=seed, logging_steps=1, learning_rate_mapping=mapping)
    index = retrieval.DenseIndex(model, data)
    run = index.search(data.split_queries(split))
    scores = evaluate.evaluate(run, data.qrels[split], ("nDCG@10", "R@10"))[0]
    fine = evaluate.fine_distinction_accuracy(index, data, split, kinds=("2>1", "1>0"), seed=seed)
    out = {**scores, "2>1": fine["2>1"], "1>0": fine["1>0"],
           "first loss": report["log"][0]["loss"] if report["log"] else None, "final loss": report["loss"]}
    if isinstance(loss, bixse.BiXSELoss):
        out.update(scale=float(loss.scale.detach()), bias=float(loss.bias.detach()))
    return out


def _start(data, pairs, p_positive: float = 0.9, batch_size: int = 16, rule: str = "midpoint") -> dict:
    """The notebook's measured start (step 4) for these pairs."""
    base = models.load_embedder(max_seq_length=64)
    table = pairs.assign(target=pairs["target_struct"])
    return bixse.starting_values(*bixse.batch_cosines(base, table, data, batch_size=batch_size),
                                 p_positive=p_positive, rule=rule)


def _measured(data, pairs, **kw):
    start = _start(data, pairs)
    return lambda m: bixse.BiXSELoss(m, start["scale"], start["bias"], **kw)


def exercise_1_fixed_scale_and_bias(data, pairs, steps: int = 12, **kw) -> pd.DataFrame:
    """Learned (t, b) against (t, b) fixed at the measured start: same data, steps and seed."""
    ds = bixse.pairs_dataset(pairs, data, "target_struct")
    return pd.DataFrame({
        "learned": _train(data, ds, _measured(data, pairs), steps=steps, **kw),
        "fixed": _train(data, ds, _measured(data, pairs, learn_scale=False, learn_bias=False), steps=steps, **kw),
    }).T


def exercise_2_siglip_start(data, pairs, steps: int = 12, **kw) -> pd.DataFrame:
    """SigLIP's start (t = 10, b = -10) against the measured one: the SigLIP run's first loss is low
    (every probability near 0) and its learned t and b stay near the start."""
    ds = bixse.pairs_dataset(pairs, data, "target_struct")
    return pd.DataFrame({
        "measured start": _train(data, ds, _measured(data, pairs), steps=steps, **kw),
        "t0 = 10, b0 = -10": _train(data, ds, lambda m: bixse.BiXSELoss(m, 10.0, -10.0), steps=steps, **kw),
    }).T


def dev_choice(data, pairs, steps: int = 80, seed: int = SEED, **kw) -> pd.DataFrame:
    """The notebook's choice of the start, on the **dev** split: InfoNCE, and BiXSE (grade/3)
    started by the logistic fit (``rule="fit"``), at the midpoint with p_positive 0.75 and 0.9,
    and at SigLIP's values, one seed, ``steps`` steps each. Every setting tried is a row."""
    ds = bixse.pairs_dataset(pairs, data, "target_struct")
    rows = {"InfoNCE": _train(data, bixse.pairs_dataset(pairs[pairs["grade"] >= 2], data),
                              MultipleNegativesRankingLoss, steps=steps, seed=seed, split="dev", **kw)}
    starts = {"BiXSE, fitted start": _start(data, pairs, rule="fit"),
              **{f"BiXSE, midpoint, p_positive {p}": _start(data, pairs, p_positive=p) for p in (0.75, 0.9)}}
    for name, start in starts.items():
        rows[name] = _train(data, ds, lambda m, s=start: bixse.BiXSELoss(m, s["scale"], s["bias"]), steps=steps,
                            seed=seed, split="dev", **kw)
    rows["BiXSE, t0 = 10, b0 = -10"] = _train(data, ds, lambda m: bixse.BiXSELoss(m, 10.0, -10.0), steps=steps,
                                              seed=seed, split="dev", **kw)
    return pd.DataFrame(rows).T


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
        "soft (grade / 3)": _train(data, bixse.pairs_dataset(hard, data, "target_struct"), _measured(data, pairs),
                                   steps=steps, **kw),
        "hard (grade >= 2)": _train(data, bixse.pairs_dataset(hard, data, "target_hard"), _measured(data, pairs),
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
        "pairs": _train(data, bixse.pairs_dataset(keep, data, "target_struct"), _measured(data, pairs),
                        steps=steps, seed=seed, **kw),
        "pairs + hard negative": _train(data, three, _measured(data, pairs), steps=steps, seed=seed, **kw),
    }).T


if __name__ == "__main__":
    from cookbook import corpus
    from cookbook.config import profile

    prof = profile()
    data = corpus.load_apidocs(max_docs=prof.pick(smoke=-1, laptop=1000, full=-1))
    steps = prof.pick(smoke=2, laptop=12, full=300)
    base = models.load_embedder(max_seq_length=64)
    evaluation = {data.queries[q].strip().lower() for s in ("dev", "test") for q in data.qrels[s]}
    qids = sorted(q for q in data.qrels["train"] if data.queries[q].strip().lower() not in evaluation)
    qids = qids[: prof.pick(smoke=32, laptop=None, full=None)]
    cands = retrieval.DenseIndex(base, data).search({q: data.queries[q] for q in qids}, k=20)
    pairs = bixse.draw_labelled_pairs(data, "train", cands, qids=qids)
    pairs["target_struct"] = pairs["grade"] / 3
    if "--dev-choice" in sys.argv:
        print(dev_choice(data, pairs, steps=prof.pick(smoke=2, laptop=80, full=300)).round(4).to_string())
        raise SystemExit(0)
    print(exercise_3_uniform_draw(data, cands, qids))
    for exercise in (exercise_1_fixed_scale_and_bias, exercise_2_siglip_start, exercise_4_hard_targets):
        print(exercise.__name__, exercise(data, pairs, steps=steps), sep="\n")
    print(exercise_5_with_hard_negative(data, pairs, cands, steps=steps))
