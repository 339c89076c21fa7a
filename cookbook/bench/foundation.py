"""Foundation benchmarks: corpus build and cache, BM25, dense encode throughput, evaluation.

Taught in: notebooks/10_explore_query_document_pairs.ipynb (the numbers), README (the table)
"""

from __future__ import annotations

import time

from cookbook import corpus, evaluate, models, retrieval


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(profile_name: str, encode_texts: int = 256, repeat: int = 2) -> list[dict]:
    """Corpus build, BM25 index and query throughput, dense encode throughput, evaluation time."""
    import tempfile


    rows = []
    size = corpus.DEFAULT_MAX_DOCS[profile_name]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        data = corpus.load_apidocs(max_docs=size, cache_dir=tmp)
        build = time.perf_counter() - start
        start = time.perf_counter()
        corpus.load_apidocs(max_docs=size, cache_dir=tmp)
        cached = time.perf_counter() - start
    rows.append({"name": "corpus build (harvest + graph + qrels, no cache)", "value": build, "unit": "s",
                 "note": f"{len(data.corpus)} docs, {len(data.queries)} queries"})
    rows.append({"name": "corpus load from cache", "value": cached, "unit": "s", "note": "checksum verified"})

    queries = data.split_queries("test")
    start = time.perf_counter()
    index = retrieval.BM25Index(data)
    rows.append({"name": "BM25 index", "value": time.perf_counter() - start, "unit": "s",
                 "note": f"{len(data.corpus)} docs"})
    secs = _best(lambda: index.search(queries, k=100), repeat)
    rows.append({"name": "BM25 query throughput", "value": len(queries) / secs, "unit": "queries/s",
                 "note": f"{len(queries)} queries, k=100"})

    model = models.load_embedder(max_seq_length=128)
    texts = [data.doc_text(d) for d in list(data.corpus)[:encode_texts]]
    model.encode(texts[:16], batch_size=64)  # warm-up
    plain = cookbook_path = float("inf")
    for _ in range(repeat):  # interleaved so machine drift hits both equally
        plain = min(plain, _best(lambda: model.encode(texts, batch_size=64), 1))
        cookbook_path = min(cookbook_path, _best(lambda: retrieval.encode(model, texts, batch_size=64), 1))
    rows.append({"name": "dense encode, plain SentenceTransformer.encode", "value": len(texts) / plain,
                 "unit": "passages/s", "note": f"{len(texts)} passages, msl 128, batch 64"})
    rows.append({"name": "dense encode, cookbook.retrieval.encode", "value": len(texts) / cookbook_path,
                 "unit": "passages/s", "note": "same texts, same run"})
    rows.append({"name": "cookbook / plain encode throughput", "value": plain / cookbook_path, "unit": "x",
                 "note": "target >= 0.95"})

    run = index.search(queries, k=100)
    secs = _best(lambda: evaluate.evaluate(run, data.qrels["test"]), repeat)
    rows.append({"name": "evaluate (nDCG@10, R@10, R@100, RR@10)", "value": secs, "unit": "s",
                 "note": f"{len(queries)} queries"})
    return rows
