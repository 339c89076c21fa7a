import pytest

from cookbook import beir, retrieval
from cookbook.config import DATA_DIR

FIXTURE = beir.load_beir(DATA_DIR / "fixtures" / "tiny_beir")


def test_bm25_ranks_the_obvious_answer_first():
    run = retrieval.bm25_search(FIXTURE, FIXTURE.queries, k=3)
    assert set(run) == set(FIXTURE.queries)
    assert next(iter(sorted(run["q1"].items(), key=lambda kv: -kv[1])))[0] == "d1"
    assert next(iter(sorted(run["q2"].items(), key=lambda kv: -kv[1])))[0] == "d3"
    assert all(len(docs) <= 3 for docs in run.values())


def test_dense_run_format_and_faiss_matches_exact(tiny_model):
    exact = retrieval.DenseIndex(tiny_model, FIXTURE).search(FIXTURE.queries, k=5)
    flat = retrieval.DenseIndex(tiny_model, FIXTURE, faiss_threshold=0)
    assert flat.faiss_index is not None
    approx = flat.search(FIXTURE.queries, k=5)
    for q in FIXTURE.queries:
        assert len(exact[q]) == 5
        assert list(exact[q]) == list(approx[q])
        for d in exact[q]:
            assert exact[q][d] == pytest.approx(approx[q][d], abs=1e-5)


def test_plain_dicts_and_empty_corpus(tiny_model):
    run = retrieval.bm25_search({"a": "red apples", "b": "green pears"}, {"q": "apples"}, k=1)
    assert list(run["q"]) == ["a"]
    with pytest.raises(ValueError, match="empty corpus"):
        retrieval.BM25Index({})


def test_rrf_prefers_documents_ranked_high_by_both():
    fused = retrieval.fuse_rrf([{"q": {"a": 3, "b": 2, "c": 1}}, {"q": {"b": 9, "a": 1, "c": 0}}])
    assert max(fused["q"], key=fused["q"].get) in {"a", "b"}
    assert fused["q"]["c"] < fused["q"]["a"]


def test_multi_process_pool_encodes_the_same_vectors(tiny_model):
    import numpy as np

    from cookbook import retrieval

    texts = [f"note {i} about the kettle and its fuse" for i in range(40)]
    corpus = {f"d{i}": {"title": "", "text": t} for i, t in enumerate(texts)}
    pool = retrieval.start_pool(tiny_model, processes=2)
    try:
        pooled = retrieval.encode(tiny_model, texts, batch_size=8, pool=pool)
        index = retrieval.DenseIndex(tiny_model, corpus, batch_size=8, cache=False, pool=pool)
    finally:
        tiny_model.stop_multi_process_pool(pool)
    plain = retrieval.encode(tiny_model, texts, batch_size=8)
    assert np.allclose(pooled, plain, atol=1e-5) and np.allclose(index.embeddings, plain, atol=1e-5)


def test_query_and_document_prompts_reach_the_encoder(tiny_model):
    from cookbook import retrieval
    from cookbook.beir import load_beir

    data = load_beir("data/fixtures/tiny_beir")
    plain = retrieval.DenseIndex(tiny_model, data)
    prompted = retrieval.DenseIndex(tiny_model, data, query_prompt="query: ", document_prompt="passage: ")
    assert not (plain.embeddings == prompted.embeddings).all()
    queries = data.split_queries(sorted(data.qrels)[0])
    assert set(prompted.search(queries, k=3)) == set(queries)


def test_embedding_cache_serves_the_same_vectors_and_never_stale_ones(tiny_model, tmp_path, monkeypatch):
    import numpy as np
    from datasets import Dataset
    from sentence_transformers.sentence_transformer import losses

    from cookbook import finetune, models, retrieval
    from cookbook.beir import load_beir

    monkeypatch.setattr("cookbook.config.CACHE_DIR", tmp_path)
    data = load_beir("data/fixtures/binary_beir")
    model = models.tiny_embedder(seed=3)
    first = retrieval.DenseIndex(model, data)
    second = retrieval.DenseIndex(model, data)
    assert not first.cache_hit and second.cache_hit
    assert np.array_equal(first.embeddings, second.embeddings)
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 1
    assert not list((tmp_path / "embeddings").glob("*.tmp*"))  # written to a temporary name, then renamed
    model.max_seq_length = 16
    assert not retrieval.DenseIndex(model, data).cache_hit  # a different length is a different key
    model.max_seq_length = 64
    before = retrieval.model_fingerprint(model)
    pairs = Dataset.from_dict({"anchor": ["kettle leaks", "oven hot"],
                               "positive": [data.doc_text("kettle/leak"), data.doc_text("oven/overheat")]})
    finetune.fit(model, pairs, losses.MultipleNegativesRankingLoss(model), max_steps=1, batch_size=2,
                 learning_rate=1e-2)
    assert retrieval.model_fingerprint(model) != before
    tuned = retrieval.DenseIndex(model, data)
    assert not tuned.cache_hit and not np.allclose(tuned.embeddings, first.embeddings)
    plain = retrieval.DenseIndex(model, data, cache=False)
    assert np.allclose(plain.embeddings, tuned.embeddings, atol=1e-6)
