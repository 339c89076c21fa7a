"""KGE training speed and triplet-mining throughput.

Taught in: notebooks/50_build_knowledge_graph.ipynb (the numbers), README (the table)
"""

from __future__ import annotations

import time

from cookbook import scincl
from cookbook.config import SEED, profile
from cookbook.corpus import load_apidocs
from cookbook.graph import split_edges
from cookbook.kge import MODEL_NAMES, train_kge


def measure(profile_name: str) -> list[dict]:
    """KGE seconds per epoch for each model and triplet-mining throughput (anchors/s).

    Used by ``python -m cookbook bench``. Rows have keys ``name``, ``value``, ``unit``,
    ``note``. Runs on the API-docs graph of the given profile.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    prof = profile(profile_name)
    epochs = prof.pick(smoke=2, laptop=5, full=20)
    data = load_apidocs(profile=prof.name)
    split = split_edges(data, seed=SEED)
    note = f"{split.num_nodes} entities, {len(split.train)} train edges, dim 64, batch 1024, 1 torch thread (train_kge default)"
    rows = []
    trained = None
    for name in MODEL_NAMES:
        trained = train_kge(name, split.train, split.num_nodes, split.num_relations, dim=64, epochs=epochs, seed=SEED)
        rows.append({"name": f"kge.{name}.epoch", "value": round(trained.seconds_per_epoch, 4), "unit": "s/epoch", "note": note})
    emb = trained.embeddings()
    texts = {d: data.doc_text(d) for d in data.corpus}
    bands = scincl.Bands.for_graph(split.num_nodes)
    for backend in ("torch", "faiss"):
        if backend == "faiss" and not scincl.faiss_available():
            continue
        start = time.perf_counter()
        mined = scincl.mine_triplets(
            emb, split.tensors.entities, texts, bands=bands, exclude_pairs=data.eval_pairs,
            use_faiss=(backend == "faiss"), seed=SEED,
        )
        seconds = time.perf_counter() - start
        rows.append({
            "name": f"scincl.mine.{backend}", "value": round(mined.stats["anchors_used"] / seconds, 1),
            "unit": "anchors/s", "note": f"{len(mined)} triplets from {split.num_nodes} entities, bands {bands.describe()}",
        })
    return rows
