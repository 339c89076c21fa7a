"""Solutions to the exercises of notebooks/51_mine_triplets_from_graph_embeddings.ipynb.

Run from the repository root:
``COOKBOOK_PROFILE=smoke python notebooks/solutions/51_mine_triplets_from_graph_embeddings.py``.
Choices are made on the *dev* split; each function returns a small table.
"""

from __future__ import annotations

import pandas as pd

from cookbook import graph, kge, scincl
from cookbook.config import SEED, profile
from cookbook.corpus import load_apidocs
from cookbook.models import load_embedder

PROFILE = profile()
STEPS = PROFILE.pick(smoke=4, laptop=60, full=1000)
EPOCHS = PROFILE.pick(smoke=60, laptop=100, full=300)
MAX_ANCHORS = PROFILE.pick(smoke=150, laptop=None, full=None)
MSL = 64


def kge_embeddings(data, name: str = "rotate", drop_relations: tuple[str, ...] = ()):
    """Train ``name`` on every training-graph edge (optionally without some relations)."""
    train_graph = data.training_graph()
    if drop_relations:
        train_graph.remove_edges_from([(u, v, k) for u, v, k, a in train_graph.edges(keys=True, data=True)
                                       if a["type"] in drop_relations])
    split = graph.split_edges(data, graph=train_graph, valid_frac=0.0, test_frac=0.0, seed=SEED)
    result = kge.train_kge(name, split.train, split.num_nodes, split.num_relations, epochs=EPOCHS, seed=SEED)
    return result.embeddings(), split.tensors.entities


def dev_score(data, mined, loss: str = "triplet", steps: int = STEPS, margin: float = 0.3) -> float:
    """Fine-tune a fresh MiniLM on ``mined`` and return related-object nDCG@10 on dev."""
    model = load_embedder(max_seq_length=MSL)
    if loss == "triplet":
        scincl.finetune_triplets(model, mined, max_steps=steps, margin=margin, seed=SEED)
    else:
        from sentence_transformers import (
            SentenceTransformerTrainer,
            SentenceTransformerTrainingArguments,
        )
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        args = SentenceTransformerTrainingArguments(output_dir="runs/tmp-mnrl", max_steps=steps,
                                                    per_device_train_batch_size=16, learning_rate=2e-5, seed=SEED,
                                                    report_to="none", save_strategy="no", disable_tqdm=True)
        SentenceTransformerTrainer(model=model, args=args, train_dataset=mined.to_dataset(limit=steps * 16, seed=SEED),
                                   loss=MultipleNegativesRankingLoss(model)).train()
    out = scincl.evaluate_encoder(model, data, split="dev", main_queries=False)
    return out["related"][0]["nDCG@10"]


def mine(data, embeddings, entities, bands=None):
    return scincl.mine_triplets(embeddings, entities, data.doc_text, bands or scincl.Bands.for_graph(len(entities)),
                                  exclude_pairs=data.eval_pairs, max_anchors=MAX_ANCHORS, seed=SEED)


def exercise_1_kge_model(data, names=("transe", "rotate")) -> pd.DataFrame:
    """Does a better link predictor give better triplets? (dev related nDCG@10)"""
    return pd.DataFrame([{"kge model": n, "dev related nDCG@10": dev_score(data, mine(data, *kge_embeddings(data, n)))}
                         for n in names])


def exercise_2_hard_band(data, shares=(0.01, 0.03, 0.10)) -> pd.DataFrame:
    """Move the hard-negative band; choose on dev."""
    emb, ents = kge_embeddings(data)
    base = scincl.Bands.for_graph(len(ents))
    rows = []
    for share in shares:
        lo = max(base.positive[1] + 1, int(share * len(ents)))
        bands = scincl.Bands(base.positive, base.n_positive, (lo, lo + 10), base.n_hard, base.n_easy)
        rows.append({"hard band": bands.hard_negative, "dev related nDCG@10": dev_score(data, mine(data, emb, ents, bands))})
    return pd.DataFrame(rows)


def exercise_3_loss(data) -> pd.DataFrame:
    """TripletLoss vs MultipleNegativesRankingLoss on the same triplets and steps."""
    mined = mine(data, *kge_embeddings(data))
    return pd.DataFrame([{"loss": loss, "dev related nDCG@10": dev_score(data, mined, loss)} for loss in ("triplet", "mnrl")])


def exercise_4_faiss(data) -> dict:
    """FAISS and exact torch k-NN give the same triplets (up to float ties)."""
    emb, ents = kge_embeddings(data)
    bands = scincl.Bands.for_graph(len(ents))
    a = scincl.mine_triplets(emb, ents, data.doc_text, bands, exclude_pairs=data.eval_pairs, use_faiss=False, seed=SEED)
    if not scincl.faiss_available():
        return {"faiss": "not installed"}
    b = scincl.mine_triplets(emb, ents, data.doc_text, bands, exclude_pairs=data.eval_pairs, use_faiss=True, seed=SEED)
    same = sum(x == y for x, y in zip(a.rows, b.rows, strict=False))
    return {"triplets": len(a), "identical": same, "share": same / max(len(a), 1)}


def exercise_5_margin(data, margins=(1.0, 0.3)) -> pd.DataFrame:
    """SciNCL's margin 1.0 against 0.3 on unit-length MiniLM embeddings (dev related nDCG@10)."""
    mined = mine(data, *kge_embeddings(data))
    return pd.DataFrame([{"margin": m, "dev related nDCG@10": dev_score(data, mined, margin=m)} for m in margins])


def exercise_6_without_see_also(data) -> pd.DataFrame:
    """Embed the graph without any see_also edge: how much of the gain do the human-written links carry?"""
    rows = []
    for drop in ((), ("see_also",)):
        mined = mine(data, *kge_embeddings(data, drop_relations=drop))
        rows.append({"dropped": ",".join(drop) or "nothing", "dev related nDCG@10": dev_score(data, mined)})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    apidocs = load_apidocs()
    print("base dev related nDCG@10:",
          scincl.evaluate_encoder(load_embedder(max_seq_length=MSL), apidocs, split="dev", main_queries=False)["related"][0]["nDCG@10"])
    for fn in (exercise_4_faiss, exercise_1_kge_model, exercise_2_hard_band, exercise_3_loss, exercise_5_margin,
               exercise_6_without_see_also):
        print(f"\n## {fn.__name__}\n{fn(apidocs)}")
