"""Run by ``torchrun --nproc_per_node 2``: the package's fine-tuning helper under DDP (gloo, CPU).

Each process trains on its shard of the binary fixture's pairs; rank 0 saves the model and a
small JSON with what the trainer saw. ``tests/test_recipes.py`` starts it and loads the result.
"""

import json
import os
import sys
from pathlib import Path

from datasets import Dataset
from sentence_transformers.sentence_transformer import losses

from cookbook import beir, finetune, models

out = Path(sys.argv[1])
data = beir.load_beir(Path(__file__).resolve().parent.parent / "data" / "fixtures" / "binary_beir")
pairs = [(data.queries[q], data.doc_text(d)) for q, docs in sorted(data.qrels["test"].items()) for d in docs]
dataset = Dataset.from_dict({"anchor": [q for q, _ in pairs], "positive": [p for _, p in pairs]})
model = models.load_embedder(max_seq_length=32)
report = finetune.fit(model, dataset, losses.MultipleNegativesRankingLoss(model), max_steps=3,
                      batch_size=4, no_duplicates=True, seed=0)
import torch.distributed as dist  # noqa: E402

world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
if int(os.environ.get("RANK", "0")) == 0:
    model.save(str(out / "model"))
    (out / "ddp.json").write_text(json.dumps({"world_size": world, "steps": report["steps"]}))
