"""Solutions to the exercises of notebooks/50_build_knowledge_graph.ipynb.

Run from the repository root: ``COOKBOOK_PROFILE=smoke python notebooks/solutions/50_build_knowledge_graph.py``.
Each function returns a small table or dict; the ``__main__`` block prints them all.
"""

from __future__ import annotations

import pandas as pd
import torch

from cookbook import graph, kge
from cookbook.config import SEED, profile
from cookbook.corpus import load_apidocs

EPOCHS = profile().pick(smoke=40, laptop=100, full=300)


def exercise_1_inverse_relations(data, epochs: int = EPOCHS) -> pd.DataFrame:
    """TransE with and without ``rev_<type>`` edges (test MRR on the original relations only)."""
    rows = []
    for inverse in (False, True):
        split = graph.split_edges(data, add_inverse=inverse, seed=SEED)
        result = kge.train_kge("transe", split.train, split.num_nodes, split.num_relations, epochs=epochs, seed=SEED)
        original = split.test.subset(torch.nonzero(split.test.rel < len(split.tensors.relations) // (2 if inverse else 1)).view(-1))
        metrics = kge.evaluate_link_prediction(result.model, original, filter_triples=split.all_triples())
        rows.append({"inverse relations": inverse, "train edges": len(split.train), **metrics})
    return pd.DataFrame(rows)


def exercise_2_learning_rate(data, name: str = "distmult", grid=(0.001, 0.003, 0.01), epochs: int = EPOCHS) -> pd.DataFrame:
    """Choose the learning rate on valid, report test only for the choice."""
    split = graph.split_edges(data, seed=SEED)
    known = split.all_triples()
    rows = []
    for lr in grid:
        result = kge.train_kge(name, split.train, split.num_nodes, split.num_relations, epochs=epochs, lr=lr, seed=SEED)
        rows.append({"lr": lr, "valid MRR": kge.evaluate_link_prediction(result.model, split.valid, filter_triples=known)["MRR"],
                     "model": result.model})
    best = max(rows, key=lambda r: r["valid MRR"])
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "model"} for r in rows])
    table["chosen"] = [r is best for r in rows]
    table.attrs["test MRR of the chosen lr"] = kge.evaluate_link_prediction(best["model"], split.test, filter_triples=known)["MRR"]
    return table


def exercise_3_per_relation(data, epochs: int = EPOCHS) -> pd.DataFrame:
    """Test MRR broken down by relation, one column per model."""
    split = graph.split_edges(data, seed=SEED)
    _, trained = kge.compare_models(split, epochs=epochs, seed=SEED)
    out = {}
    for name, result in trained.items():
        per_rel = {}
        for r, rel in enumerate(split.tensors.relations):
            mask = torch.nonzero(split.test.rel == r).view(-1)
            if len(mask):
                per_rel[rel] = kge.evaluate_link_prediction(result.model, split.test.subset(mask),
                                                            filter_triples=split.all_triples())["MRR"]
        out[name] = per_rel
    return pd.DataFrame(out)


def exercise_4_dimension(data, dims=(16, 128), epochs: int = EPOCHS) -> pd.DataFrame:
    """RotatE MRR and seconds per epoch at two sizes."""
    split = graph.split_edges(data, seed=SEED)
    rows = []
    for dim in dims:
        result = kge.train_kge("rotate", split.train, split.num_nodes, split.num_relations, dim=dim, epochs=epochs, seed=SEED)
        metrics = kge.evaluate_link_prediction(result.model, split.test, filter_triples=split.all_triples())
        rows.append({"dim": dim, "MRR": metrics["MRR"], "s/epoch": result.seconds_per_epoch})
    return pd.DataFrame(rows)


def exercise_5_symmetric_see_also(data, epochs: int = EPOCHS) -> pd.DataFrame:
    """MRR on test ``see_also`` edges whose reverse edge is also in the training graph (symmetric ones) vs the rest."""
    split = graph.split_edges(data, seed=SEED)
    see_also = split.tensors.relation_index["see_also"]
    train_pairs = {(h, t) for h, r, t in zip(*(x.tolist() for x in split.train.as_tuple()), strict=True) if r == see_also}
    test = split.test
    sym, other = [], []
    for i, (h, r, t) in enumerate(zip(*(x.tolist() for x in test.as_tuple()), strict=True)):
        if r == see_also:
            (sym if (t, h) in train_pairs else other).append(i)
    _, trained = kge.compare_models(split, epochs=epochs, seed=SEED)
    rows = []
    for name, result in trained.items():
        row = {"model": name}
        for label, idx in (("symmetric", sym), ("one-way", other)):
            if idx:
                row[label] = kge.evaluate_link_prediction(result.model, test.subset(idx), filter_triples=split.all_triples())["MRR"]
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    table.attrs["edges"] = {"symmetric": len(sym), "one-way": len(other)}
    return table


if __name__ == "__main__":
    apidocs = load_apidocs()
    for fn in (exercise_1_inverse_relations, exercise_2_learning_rate, exercise_3_per_relation,
               exercise_4_dimension, exercise_5_symmetric_see_also):
        print(f"\n## {fn.__name__}\n{fn(apidocs)}")
