"""cookbook.scincl: k-NN, bands, miners (with leak checks), fine-tuning and evaluation."""

import pytest
import torch

from cookbook import graph as G
from cookbook import scincl as T
from cookbook.beir import RetrievalData


def clustered(n_clusters=6, per=10, dim=8, seed=0):
    """Embeddings in tight clusters: the nearest neighbours of a node are its cluster mates."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, dim, generator=gen) * 5
    emb = torch.cat([c + 0.1 * torch.randn(per, dim, generator=gen) for c in centres])
    names = [f"c{c}.n{i}" for c in range(n_clusters) for i in range(per)]
    return emb, names


def toy_data():
    g = G.toy_graph()
    corpus = {n: {"title": n, "text": f"Documentation of {n.replace('.', ' ')}."} for n in g.nodes}
    meta = {"q1": {"source": "numpy.mean", "target": "numpy.median", "split": "test"},
            "q2": {"source": "numpy.std", "target": "numpy.var", "split": "test"},
            "q3": {"source": "numpy.average", "target": "numpy.mean", "split": "dev"},
            "q4": {"source": "torch.std", "target": "torch.mean", "split": "train"}}
    queries = {"q1": "middle value", "q2": "variance", "q3": "arithmetic mean", "q4": "mean of a tensor"}
    qrels = {"train": {"q4": {"torch.mean": 3}}, "dev": {"q3": {"numpy.mean": 3}},
             "test": {"q1": {"numpy.median": 3}, "q2": {"numpy.var": 3, "numpy.std": 2}}}
    return RetrievalData(corpus, queries, qrels, meta, g)


def test_knn_matches_brute_force_and_excludes_self():
    emb, _ = clustered()
    scores, idx = T.knn(emb, 5)
    x = torch.nn.functional.normalize(emb, dim=1)
    sim = x @ x.T
    sim.fill_diagonal_(-2)
    best = sim.topk(5, dim=1)
    assert torch.equal(idx, best.indices) and torch.allclose(scores, best.values, atol=1e-6)
    assert not (idx == torch.arange(len(emb)).view(-1, 1)).any()


def test_knn_with_query_and_candidate_subsets():
    emb, _ = clustered()
    scores, idx = T.knn(emb, 3, queries=[0, 15], candidates=list(range(10, 60)))
    assert idx.shape == (2, 3) and (idx >= 10).all()
    assert 15 not in idx[1].tolist()
    with pytest.raises(T.MiningError, match="candidates"):
        T.knn(emb, 60)
    with pytest.raises(T.MiningError, match="metric"):
        T.knn(emb, 3, metric="hamming")


@pytest.mark.skipif(not T.faiss_available(), reason="faiss not installed")
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_faiss_gives_the_same_neighbours(metric):
    emb, _ = clustered(dim=16)
    s1, i1 = T.knn(emb, 7, metric=metric, use_faiss=False)
    s2, i2 = T.knn(emb, 7, metric=metric, use_faiss=True)
    assert (i1 == i2).float().mean() > 0.97  # equal up to float ties
    assert torch.allclose(s1, s2, atol=1e-3)


def test_bands_validation_and_presets():
    assert T.Bands.scincl() == T.Bands((20, 25), 5, (3998, 4000), 2, 3)
    b = T.Bands.for_graph(3000)
    assert b.positive[0] == 1 and b.positive[1] < b.hard_negative[0] < b.hard_negative[1] < 3000
    with pytest.raises(T.MiningError, match="start after"):
        T.Bands((1, 10), 5, (5, 20), 2, 3)
    with pytest.raises(T.MiningError, match="low <= high"):
        T.Bands((5, 1))
    with pytest.raises(T.MiningError, match="too small"):
        T.Bands.for_graph(10)


def test_mine_triplets_uses_the_bands():
    emb, names = clustered()
    texts = {n: f"text of {n}" for n in names}
    bands = T.Bands(positive=(1, 6), n_positive=4, hard_negative=(30, 35), n_hard=2, n_easy=2)
    mined = T.mine_triplets(emb, names, texts, bands, seed=1)
    assert len(mined) == 4 * len(names)
    cluster = lambda n: n.split(".")[0]  # noqa: E731
    frame = mined.to_frame()
    assert (frame["anchor"].map(cluster) == frame["positive"].map(cluster)).all()
    assert (frame["anchor"].map(cluster) != frame["negative"].map(cluster)).all()
    assert set(frame["negative_kind"]) == {"hard", "easy"}
    again = T.mine_triplets(emb, names, texts, bands, seed=1)
    assert again.rows == mined.rows
    ds = mined.to_dataset(limit=10)
    assert ds.column_names == ["anchor", "positive", "negative"] and len(ds) == 10


def test_anchors_without_text_are_skipped_and_counted():
    emb, names = clustered()
    texts = {n: "some text" for n in names[5:]}
    texts[names[5]] = "   "  # blank counts as missing
    mined = T.mine_triplets(emb, names, texts, T.Bands((1, 3), 2, (20, 22), 1, 1))
    assert mined.stats["anchors_without_text"] == 6 and mined.stats["anchors_used"] == len(names) - 6
    used = set(mined.to_frame()[["anchor", "positive", "negative"]].to_numpy().ravel())
    assert not used & set(names[:6])
    with pytest.raises(T.MiningError, match="no entity has a text"):
        T.mine_triplets(emb, names, {}, T.Bands((1, 3), 2, (20, 22), 1, 1))
    with pytest.raises(T.MiningError, match="hard-negative band"):
        T.mine_triplets(emb, names, texts, T.Bands.scincl())


def test_miners_never_pair_an_evaluation_pair():
    emb, names = clustered()
    texts = {n: n for n in names}
    _, nn = T.knn(emb, 3)
    forbidden = {(names[i], names[int(nn[i, 0])]) for i in range(len(names))}  # every nearest neighbour
    mined = T.mine_triplets(emb, names, texts, T.Bands((1, 3), 3, (30, 33), 1, 1), exclude_pairs=forbidden)
    assert mined.stats["excluded_eval_neighbours"] > 0
    G.assert_no_eval_edges(mined.pairs(), forbidden)
    rand = T.random_triplets(names, texts, exclude_pairs=forbidden, n_per_anchor=3, seed=2)
    G.assert_no_eval_edges(rand.pairs(), forbidden)
    assert len(rand) == 3 * len(names)


def test_graph_triplets_take_positives_from_neighbours():
    g = G.toy_graph()
    texts = {n: n for n in g.nodes}
    mined = T.graph_triplets(g, texts, positive_hops=(1, 1), hard_hops=(2, 3), seed=0,
                             exclude_pairs={("numpy.mean", "numpy.average")})
    for row in mined.rows:
        assert g.has_edge(row["anchor"], row["positive"]) or g.has_edge(row["positive"], row["anchor"])
        assert {row["anchor"], row["positive"]} != {"numpy.mean", "numpy.average"}
    with pytest.raises(T.MiningError, match="positive_hops"):
        T.graph_triplets(g, texts, positive_hops=(1, 3), hard_hops=(2, 3))


def test_hop_profile_counts_graph_distance_per_role():
    g = G.toy_graph()
    texts = {n: n for n in g.nodes}
    mined = T.graph_triplets(g, texts, positive_hops=(1, 1), hard_hops=(3, 3), n_easy=0, seed=0)
    prof = mined.hop_profile(g, cutoff=2)
    assert prof.loc["positive", "1 hop"] == 1.0  # graph positives are direct neighbours
    assert prof.loc["hard negative", "<= 2 hops"] == 0.0  # hard ones are exactly 3 hops away
    assert prof.loc["positive", "pairs"] + prof.loc["hard negative", "pairs"] == 2 * len(mined)
    by_hand = T.Triplets([{"anchor": "numpy.mean", "positive": "numpy.average", "negative": "torch",
                           "negative_kind": "easy"}], texts)
    hops = G.undirected_hops(g, "numpy.mean", 2)
    row = by_hand.hop_profile(g, cutoff=2).loc["easy negative"]
    assert row["<= 2 hops"] == float("torch" in hops)
    with pytest.raises(T.MiningError, match="cutoff"):
        mined.hop_profile(g, cutoff=0)


def test_related_object_task_and_searching_with_a_document(tiny_model):
    data = toy_data()
    task = T.related_object_task(data, "test")
    assert task.source == {"rel:numpy.mean": "numpy.mean", "rel:numpy.std": "numpy.std"}
    assert task.qrels["rel:numpy.mean"] == {"numpy.median": 3}
    assert task.queries["rel:numpy.mean"] == data.doc_text("numpy.mean")
    with pytest.raises(ValueError, match="dev"):
        T.related_object_task(data, "train")
    from cookbook.retrieval import DenseIndex

    index = DenseIndex(tiny_model, data)
    first = index.ids[0]
    run = index.search_vectors(["q"], index.vectors([first]), k=2, exclude={"q": first})
    assert first not in run["q"] and len(run["q"]) == 2


def test_finetune_and_evaluate_with_a_tiny_model(tiny_model):
    data = toy_data()
    emb = torch.randn(len(data.graph), 4)
    entities = sorted(data.graph.nodes)
    mined = T.mine_triplets(emb, entities, data.doc_text, T.Bands((1, 2), 2, (6, 8), 1, 1),
                            exclude_pairs=data.eval_pairs, seed=0)
    before = [p.detach().clone() for p in tiny_model.parameters()]
    log = T.finetune_triplets(tiny_model, mined, max_steps=2, batch_size=4, seed=0)
    assert log["steps"] == 2 and log["seconds"] >= 0
    assert any(not torch.equal(a, b) for a, b in zip(before, tiny_model.parameters(), strict=True))
    out = T.evaluate_encoder(tiny_model, data, split="test")
    assert set(out["related"][0]) >= {"nDCG@10", "R@10"} and 0 <= out["related"][0]["nDCG@10"] <= 1
    assert set(out["queries"][1].index) == set(data.qrels["test"])
    assert all("numpy.mean" not in docs for q, docs in out["related"][2].items() if q == "rel:numpy.mean")
    with pytest.raises(T.MiningError, match="distance"):
        T.finetune_triplets(tiny_model, mined, distance="hamming")


def test_candidates_restrict_positives_and_negatives():
    emb, names = clustered()
    texts = {n: n for n in names}
    allowed = names[:30]
    mined = T.mine_triplets(emb, names, texts, T.Bands((1, 3), 2, (10, 12), 1, 1), anchors=allowed,
                            candidates=allowed, seed=0)
    frame = mined.to_frame()
    assert set(frame["positive"]) | set(frame["negative"]) <= set(allowed)
