"""Levers for a reranker trained without human labels, measured on the dev split (never test).

The ``lce`` recipe's setting on the embedded corpus (the same synthetic pairs, groups, residual
start, dev queries and seed; the cross-encoder in bf16 where the CPU does bf16 natively), one
lever per arm, each 150 steps with a dev check every 50:

  teacher      the LLM's query likelihood as a zero-shot reranker of the dev queries (UPR-style),
               alone and interpolated with the dense scores (z-scored per query): is there
               information the first stage lacks?
  synthetic    the synthetic groups with the hard LCE target (the recipe without train labels)
  soft         the synthetic groups, target (1 - alpha) * one-hot + alpha * softmax(QL), alpha 0.5
  soft1        the same with alpha 1 (the teacher alone)
  unlabelled   human train queries used *without* their labels: 8 documents drawn from the dense
               top 20, target softmax(a * cos + QL) (the residual f learns the LLM's likelihood)
  unlabelled5  the same at learning rate 5e-4

    python tools/reranker_levers.py --out runs/levers teacher synthetic soft soft1 unlabelled unlabelled5

Writes ``results.json`` (dev curves, final losses, the dev comparison of the best checkpoint)
in ``--out``; the LLM's query likelihoods of the groups are kept there too, so a rerun skips
them. With ``COOKBOOK_LLM_CACHE`` pointing at a finished ``lce`` recipe's cache the queries
replay from it.
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import time
from pathlib import Path

import numpy as np
import torch

from cookbook import evaluate, lce
from cookbook.config import SEED, seed_everything
from cookbook.corpus import load_apidocs
from cookbook.recipes import common
from cookbook.recipes.lce import _dev_split

ARMS = ("teacher", "synthetic", "soft", "soft1", "unlabelled", "unlabelled5")


class SoftTargetLCE(lce.LCELoss):
    """LCE over the residual scores with a soft target: ``(1 - alpha) * one-hot(positive) +
    alpha * softmax(label)``, ``label`` the teacher's logits of the group (positive first).
    With ``alpha = 1`` it is the softmax cross-entropy of sentence-transformers' ``ListNetLoss``."""

    def __init__(self, model, alpha: float, **kwargs):
        super().__init__(model, **kwargs)
        self.alpha = alpha

    def forward(self, inputs, labels=None, prompt=None, task=None):
        scores = self.scores(inputs, prompt=prompt, task=task)
        target = torch.zeros_like(scores)
        target[:, 0] = 1.0
        teacher = torch.stack([torch.as_tensor(x, dtype=scores.dtype) for x in labels]).to(scores.device)
        target = (1 - self.alpha) * target + self.alpha * torch.softmax(teacher, dim=1)
        return torch.nn.functional.cross_entropy(scores, target)


def soft_dataset(queries, docs, teacher, data):
    """``query, positive, negative_1..`` (the group's documents, first one in ``positive``) and
    ``label`` (the teacher's logits in the same order), shuffled."""
    from datasets import Dataset

    columns = {"query": list(queries), "positive": [data.doc_text(d[0]) for d in docs]}
    for j in range(1, len(docs[0])):
        columns[f"negative_{j}"] = [data.doc_text(d[j]) for d in docs]
    columns["label"] = [list(map(float, row)) for row in teacher]
    return Dataset.from_dict(columns).shuffle(seed=SEED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("arms", nargs="+", choices=ARMS)
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(SEED)
    data = load_apidocs()
    index = common.dense_index(common.embedder_or_default(None), data)
    llm = common.llm_or_default(None, generate_precision="auto", batch_size=16)
    precision = lce.reranker_precision("auto")[0]
    # the recipe's synthetic pairs and groups (n_docs 800, 2 samples, consistency filter, top 30)
    pairs = lce.synthetic_pairs(data, llm, index, common.sample_docs(data, 800, SEED), n_samples=2, seed=SEED)
    cands = lce.first_stage_candidates(index, pairs, data, depth=30)
    groups = lce.localized_groups(cands.assign(negative=True), pairs, data, group_size=8, seed=SEED)
    _, dev_q, dev_qrels, _ = _dev_split(data, groups, 100, SEED)  # the recipe's own dev queries
    dev_run = index.search(dev_q, k=20)
    scale = lce.residual_scale(index.search(dict(zip(map(str, range(len(pairs))), pairs["query"])), k=30))
    prior = lce.FirstStagePrior(index, data, scale)
    path = out / "results.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    res.update({"dense dev nDCG@10": evaluate.evaluate(dev_run, dev_qrels, ("nDCG@10",))[0]["nDCG@10"],
                "residual scale": scale, "synthetic groups": len(groups), "precision": precision})

    def keep(key, value):
        res[key] = value
        path.write_text(json.dumps(res, indent=1, default=float))
        print(key, value, flush=True)

    def brief(c):
        return {k: c[k] for k in ("queries", "mean_a", "mean_b", "diff", "ci_low", "ci_high", "t_p")}

    def ql(name, queries, docs):
        cached = out / f"ql_{name}.pkl"
        if cached.exists():
            return pickle.loads(cached.read_bytes())
        started = time.perf_counter()
        flat = llm.query_likelihood([q for q, ds in zip(queries, docs) for _ in ds],
                                    [data.doc_text(d) for ds in docs for d in ds], max_doc_words=32, desc=name)
        values = np.asarray(flat, dtype=float).reshape(len(docs), -1)
        keep(f"{name}: query-likelihood seconds", time.perf_counter() - started)
        cached.write_bytes(pickle.dumps(values))
        return values

    def train(name, dataset, loss_class, lr=1e-4, **loss_args):
        model = lce.residual_reranker(None, scale=scale, max_length=128, seed=SEED)
        rep = lce.train(model, dataset, loss_class(model, group_size=8, prior=prior, **loss_args), max_steps=150,
                        batch_size=4, learning_rate=lr, seed=SEED, bf16=precision == "bf16", dev_every=50,
                        dev=lce.dev_check(dev_run, dev_qrels, data, depth=20, queries=dev_q, precision=precision))
        keep(name, {"dev curve": [(r["step"], round(r["dev"], 4)) for r in rep["dev_curve"]],
                    "best step": rep["best_step"], "final loss": rep["final_loss"], "seconds": rep["seconds"],
                    "best vs dense (dev)": brief(evaluate.compare(dev_run, rep["best_run"], dev_qrels, "nDCG@10"))})

    if "teacher" in args.arms:
        upr = lce.query_likelihood_rerank(llm, dev_run, data, depth=20, queries=dev_q, max_doc_words=32)
        keep("teacher: UPR vs dense (dev)", brief(evaluate.compare(dev_run, upr, dev_qrels, "nDCG@10")))

        def z(scores):
            v = np.array(list(scores.values()))
            return {d: (x - v.mean()) / (v.std() + 1e-9) for d, x in scores.items()}

        for w in (0.25, 0.5, 0.75):
            mix = {q: {d: (1 - w) * z(dev_run[q])[d] + w * z(upr.scores[q])[d] for d in dev_run[q]} for q in dev_run}
            keep(f"teacher: (1 - {w}) z(dense) + {w} z(QL) vs dense (dev)",
                 brief(evaluate.compare(dev_run, mix, dev_qrels, "nDCG@10")))
    if "synthetic" in args.arms:
        train("synthetic, hard LCE target", lce.group_dataset(groups, data, seed=SEED), lce.LCELoss)
    syn_docs = [[d, *n] for d, n in zip(groups["doc_id"], groups["negatives"])]
    for arm, alpha in (("soft", 0.5), ("soft1", 1.0)):
        if arm in args.arms:
            teacher = ql("synthetic groups", groups["query"], syn_docs)
            keep("synthetic groups: QL ranks the positive first", float((teacher.argmax(1) == 0).mean()))
            train(f"synthetic, soft target alpha={alpha} on softmax(QL)",
                  soft_dataset(groups["query"], syn_docs, teacher, data), SoftTargetLCE, alpha=alpha)
    if {"unlabelled", "unlabelled5"} & set(args.arms):
        rng = random.Random(SEED)
        train_ids = sorted(rng.sample(sorted(data.qrels["train"]), min(450, len(data.qrels["train"]))))
        run = index.search({q: data.queries[q] for q in train_ids}, k=20)
        docs = [rng.sample(sorted(run[q], key=lambda d: -run[q][d]), 8) for q in train_ids]
        queries = [data.queries[q] for q in train_ids]
        likelihood = ql("unlabelled train queries", queries, docs)
        cos = np.array([[run[q][d] for d in ds] for q, ds in zip(train_ids, docs)])
        grade = np.array([[data.qrels["train"][q].get(d, 0) for d in ds] for q, ds in zip(train_ids, docs)])
        for name, s in (("dense", cos), ("QL", likelihood), ("a * cos + QL", scale * cos + likelihood)):
            # how good each ordering's top document is, by the human grades the training never sees
            keep(f"unlabelled train queries: top-1 of {name} has grade >= 2",
                 float((grade[np.arange(len(docs)), s.argmax(1)] >= 2).mean()))
        dataset = soft_dataset(queries, docs, scale * cos + likelihood, data)
        for arm, lr in (("unlabelled", 1e-4), ("unlabelled5", 5e-4)):
            if arm in args.arms:
                train(f"unlabelled train queries, target softmax(a * cos + QL), lr {lr:g}", dataset,
                      SoftTargetLCE, lr=lr, alpha=1.0)


if __name__ == "__main__":
    main()
