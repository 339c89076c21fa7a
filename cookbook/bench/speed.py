"""Encoding speed on a CPU: fp32 vs int8 (ONNX Runtime) on the same texts, their nDCG@10 on the
profile's test split, and the embedding cache (load vs encode).

Taught in: notebooks/10_explore_query_document_pairs.ipynb (the numbers), README (the table)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from cookbook import corpus, evaluate, models, retrieval
from cookbook.quantize import QuantizeError, int8_encoder


def measure(profile_name: str, texts: int = 512, repeat: int = 2) -> list[dict]:
    """Rows for ``python -m cookbook bench --part speed``."""
    import numpy as np


    data = corpus.load_apidocs(profile=profile_name)
    model = models.load_embedder(max_seq_length=128)
    sample = [data.doc_text(d) for d in list(data.corpus)[:texts]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        fresh = retrieval.DenseIndex(model, data, cache=False)
        encode_s = time.perf_counter() - started
        retrieval.cached_encode(model, [data.doc_text(d) for d in fresh.ids], cache_dir=Path(tmp))
        started = time.perf_counter()
        _, hit = retrieval.cached_encode(model, [data.doc_text(d) for d in fresh.ids], cache_dir=Path(tmp))
        load_s = time.perf_counter() - started
    rows += [
        {"name": "corpus index, encode (no cache)", "value": encode_s, "unit": "s",
         "note": f"{len(fresh.ids)} docs, MiniLM fp32, msl 128"},
        {"name": "corpus index, from the embedding cache", "value": load_s, "unit": "s",
         "note": f"same docs; includes hashing the weights and texts (hit={hit})"},
        {"name": "cache speed-up", "value": encode_s / load_s, "unit": "x", "note": "encode / cached load"},
    ]
    try:
        quant = int8_encoder(model)
    except QuantizeError as err:
        return rows + [{"name": "int8 encode", "value": float("nan"), "unit": "", "note": str(err)}]
    retrieval.encode(quant, sample[:16])
    fp32_s = int8_s = float("inf")
    for _ in range(repeat):  # interleaved, so machine drift hits both
        t = time.perf_counter()
        a = retrieval.encode(model, sample)
        fp32_s = min(fp32_s, time.perf_counter() - t)
        t = time.perf_counter()
        b = retrieval.encode(quant, sample)
        int8_s = min(int8_s, time.perf_counter() - t)
    queries, qrels = data.split_queries("test"), data.qrels["test"]
    run32 = fresh.search(queries, k=100)
    run8 = retrieval.DenseIndex(quant, data).search(queries, k=100)
    cmp = evaluate.compare(run32, run8, qrels)
    # the other route: torch's dynamic int8 (per channel) on the Linear layers, same texts
    torch8 = torch_int8(model)
    retrieval.encode(torch8, sample[:16])
    t = time.perf_counter()
    c = retrieval.encode(torch8, sample)
    torch8_s = time.perf_counter() - t
    cmp_torch = evaluate.compare(run32, retrieval.DenseIndex(torch8, data, cache=False).search(queries, k=100), qrels)
    rows += [
        {"name": "encode fp32 (SentenceTransformer)", "value": len(sample) / fp32_s, "unit": "passages/s",
         "note": f"{len(sample)} docs, msl 128, best of {repeat}"},
        {"name": "encode int8 (ONNX Runtime, per channel)", "value": len(sample) / int8_s, "unit": "passages/s",
         "note": "same texts, same run"},
        {"name": "int8 / fp32 throughput", "value": fp32_s / int8_s, "unit": "x", "note": "target >= 1.35"},
        {"name": "mean cosine int8 vs fp32", "value": float(np.mean(np.sum(a * b, axis=1))), "unit": "",
         "note": "same texts"},
        {"name": "nDCG@10 fp32", "value": cmp["mean_a"], "unit": "", "note": f"{cmp['queries']} test queries"},
        {"name": "nDCG@10 int8", "value": cmp["mean_b"], "unit": "",
         "note": f"difference {cmp['diff']:+.4f} (95% CI {cmp['ci_low']:+.4f} to {cmp['ci_high']:+.4f}, "
                 f"paired t p={cmp['t_p']:.2g}); target within 0.005"},
        {"name": "torch dynamic int8 / fp32 throughput", "value": fp32_s / torch8_s, "unit": "x",
         "note": "per-channel quantize_dynamic on the Linear layers, same texts (one timed pass)"},
        {"name": "mean cosine torch int8 vs fp32", "value": float(np.mean(np.sum(a * c, axis=1))), "unit": "",
         "note": "same texts"},
        {"name": "nDCG@10 torch dynamic int8", "value": cmp_torch["mean_b"], "unit": "",
         "note": f"difference {cmp_torch['diff']:+.4f} (95% CI {cmp_torch['ci_low']:+.4f} to "
                 f"{cmp_torch['ci_high']:+.4f}, paired t p={cmp_torch['t_p']:.2g})"},
    ]
    return rows


def torch_int8(model):
    """A copy of ``model`` whose Linear layers run torch's dynamic int8 (one scale per output channel)."""
    import copy

    import torch

    quant = copy.deepcopy(model)
    first = quant[0]
    hf = first.model if getattr(first, "model", None) is not None else first.auto_model
    spec = {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
    qmodel = torch.ao.quantization.quantize_dynamic(hf, qconfig_spec=spec, dtype=torch.qint8)
    if getattr(first, "model", None) is not None:  # sentence-transformers 6 keeps the HF model here
        first.model = qmodel
    else:
        first.auto_model = qmodel
    return quant
