"""Recipe ``scincl``: triplets from k-NN bands of graph embeddings (needs ``edges.jsonl``).

Taught in: notebooks/51_mine_triplets_from_graph_embeddings.ipynb
"""

from __future__ import annotations

from cookbook import graph, kge
from cookbook import scincl as technique
from cookbook.config import SEED
from cookbook.recipes import common
from cookbook.recipes.common import RecipeError


def recipe(data, out_dir, *, embedder=None, kge_model: str = "rotate", epochs: int = 50, steps: int = 32,
           batch_size: int = 16, max_anchors: int | None = 2000, margin: float = 0.3, seed: int = SEED) -> dict:
    """SciNCL-style: a KGE over the folder's ``edges.jsonl`` -> k-NN bands -> triplet fine-tune.

    Taught in: notebooks/51_mine_triplets_from_graph_embeddings.ipynb
    """
    if data.graph is None or data.graph.number_of_edges() == 0:
        raise RecipeError(f"dataset {data.name!r} has no graph: the scincl recipe needs an edges.jsonl "
                          "(source, target, type) next to corpus.jsonl")
    # 1. the base model, measured before training
    embedder = common.embedder_or_default(embedder)
    before = common.start(data, embedder, seed=seed)
    # 2. a knowledge-graph embedding of the training graph (evaluation edges held out)
    split = graph.split_edges(data, valid_frac=0, test_frac=0, seed=seed)
    emb = kge.train_kge(kge_model, split.train, split.num_nodes, split.num_relations,
                        epochs=epochs, seed=seed).embeddings()
    # 3. triplets from its k-NN bands (positives near, hard negatives a little further)
    train_graph = data.training_graph()
    entities = split.tensors.entities
    connected = [e for e in entities if e in data.corpus and train_graph.degree(e) > 0]
    mined = technique.mine_triplets(emb, entities, data.doc_text, technique.Bands.for_graph(len(connected)),
                                    anchors=connected, candidates=connected, exclude_pairs=data.eval_pairs,
                                    max_anchors=max_anchors, seed=seed)
    # 4. triplet fine-tuning
    log = technique.finetune_triplets(embedder, mined, max_steps=steps, batch_size=batch_size,
                                      margin=margin, seed=seed)
    # 5. after, verdict, report
    index, run = common.dense_run(embedder, before)
    return common.finish("scincl", before, embedder, out_dir, after_run=run,
                         after_fine=common.fine_distinction(index, data, seed),
                         triplets=len(mined), steps=log["steps"], train_edges=len(split.train))
