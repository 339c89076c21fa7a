"""The cross-encoder reranker in fp32 and in bf16 (autocast), side by side: training seconds per
LCE step, reranking pairs per second, how far the scores move and the dev nDCG@10 of both.

The reranker is the ``lce`` recipe's (the residual MiniLM cross-encoder over the dense first
stage), trained a few steps on groups from the corpus's human train queries so that ``f`` is
not zero; both formats train from the same start and seed, and rerank the same dev pairs.

Taught in: notebooks/40_train_reranker_lce.ipynb (the reranker), README (the table)
"""

from __future__ import annotations

import random

import numpy as np

from cookbook import corpus, evaluate, lce, models, retrieval
from cookbook.config import SEED

#: (train queries, LCE steps, dev queries) per profile
SIZES = {"smoke": (16, 2, 8), "laptop": (200, 16, 100), "full": (800, 60, 400)}


def measure(profile_name: str, group_size: int = 8, depth: int = 20, batch_size: int = 4,
            max_length: int = 128) -> list[dict]:
    """Rows for ``python -m cookbook bench --part rerank``."""
    if profile_name not in SIZES:
        raise ValueError(f"unknown profile {profile_name!r}; known: {', '.join(SIZES)}")
    n_train, steps, n_dev = SIZES[profile_name]
    data = corpus.load_apidocs(profile=profile_name)
    index = retrieval.DenseIndex(models.load_embedder(max_seq_length=max_length), data)
    pairs, exclude = lce.labelled_pairs(data, "train")
    keep = sorted(random.Random(SEED).sample(range(len(pairs)), min(n_train, len(pairs))))
    exclude = {i: exclude.get(j, set()) for i, j in enumerate(keep)}
    pairs = pairs.iloc[keep].reset_index(drop=True)
    cands = lce.first_stage_candidates(index, pairs, data, depth=30).assign(negative=True)
    groups = lce.localized_groups(cands, pairs, data, group_size=group_size, seed=SEED, exclude=exclude)
    scale = lce.residual_scale({p: dict(zip(g["neg_id"], g["first_score"])) for p, g in cands.groupby("pair")})
    prior = lce.FirstStagePrior(index, data, scale)
    dataset = lce.group_dataset(groups, data, seed=SEED)
    split = "dev" if data.qrels.get("dev") else "test"
    dev_ids = sorted(random.Random(SEED).sample(sorted(data.qrels[split]), min(n_dev, len(data.qrels[split]))))
    dev_q = {q: data.queries[q] for q in dev_ids}
    dev_qrels = {q: data.qrels[split][q] for q in dev_ids}
    run = index.search(dev_q, k=depth)

    trained, reports = {}, {}
    for fmt in ("fp32", "bf16"):  # the same start, data and seed
        model = lce.residual_reranker(None, scale=scale, max_length=max_length, seed=SEED)
        reports[fmt] = lce.train(model, dataset, lce.LCELoss(model, group_size=group_size, prior=prior),
                                 max_steps=steps, batch_size=batch_size, learning_rate=1e-4, seed=SEED,
                                 bf16=fmt == "bf16")
        trained[fmt] = model
    model = trained["fp32"]  # one model, scored both ways
    lce.rerank(model, {q: run[q] for q in dev_ids[:2]}, data, depth=depth, queries=dev_q)  # warm-up
    reranked = {}
    for fmt in ("fp32", "bf16", "fp32", "bf16"):  # interleaved: machine drift hits both; best of two
        out = lce.rerank(model, run, data, depth=depth, queries=dev_q, precision=fmt)
        if fmt not in reranked or out.pairs_per_second > reranked[fmt].pairs_per_second:
            reranked[fmt] = out
    keys = [(q, d) for q in dev_ids for d in reranked["fp32"].scores[q]]
    fp32, bf16 = (np.array([reranked[fmt].scores[q][d] for q, d in keys]) for fmt in ("fp32", "bf16"))
    f = fp32 - scale * np.array([run[q][d] for q, d in keys])  # the trained part of s = a * cos + f
    diff = float(np.abs(fp32 - bf16).max())
    cmp = evaluate.compare(reranked["fp32"], reranked["bf16"], dev_qrels, "nDCG@10")
    auto, reason = lce.reranker_precision("auto")
    pairs_note = f"{reranked['fp32'].pairs} pairs ({len(dev_ids)} {split} queries x top {depth}), best of 2"
    step_note = f"{steps} steps of {batch_size} groups of {group_size}, max length {max_length}"
    return [
        {"name": "LCE training fp32", "value": reports["fp32"]["seconds_per_step"], "unit": "s/step",
         "note": step_note},
        {"name": "LCE training bf16 (autocast)", "value": reports["bf16"]["seconds_per_step"], "unit": "s/step",
         "note": f"same data and seed; final loss {reports['bf16']['final_loss']} vs fp32 "
                 f"{reports['fp32']['final_loss']}"},
        {"name": "training speed-up bf16 / fp32", "value": reports["fp32"]["seconds"] / reports["bf16"]["seconds"],
         "unit": "x", "note": f"auto picks {auto} here ({reason})"},
        {"name": "rerank fp32", "value": reranked["fp32"].pairs_per_second, "unit": "pairs/s", "note": pairs_note},
        {"name": "rerank bf16 (autocast)", "value": reranked["bf16"].pairs_per_second, "unit": "pairs/s",
         "note": "same model and pairs"},
        {"name": "rerank speed-up bf16 / fp32",
         "value": reranked["bf16"].pairs_per_second / reranked["fp32"].pairs_per_second, "unit": "x", "note": ""},
        {"name": "max |score bf16 - fp32|", "value": diff, "unit": "logit",
         "note": f"residual scores a*cos + f: the spread (std) of the scores {float(fp32.std()):.3g}, "
                 f"of the trained part f {float(f.std()):.3g}"},
        {"name": "max |score bf16 - fp32| / spread of f", "value": diff / max(float(f.std()), 1e-12),
         "unit": "", "note": "the difference against what training has moved so far"},
        {"name": f"{split} nDCG@10 reranked fp32", "value": cmp["mean_a"], "unit": "",
         "note": f"{cmp['queries']} queries"},
        {"name": f"{split} nDCG@10 reranked bf16", "value": cmp["mean_b"], "unit": "",
         "note": f"difference {cmp['diff']:+.4f} (paired t p={cmp['t_p']:.2g})"},
    ]
