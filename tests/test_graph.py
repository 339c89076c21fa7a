"""cookbook.graph on a hand-made graph: tensors, statistics, drawing, leak-free splits."""

import matplotlib

matplotlib.use("Agg")

import networkx as nx
import pytest
import torch

from cookbook import graph as G


@pytest.fixture()
def toy():
    return G.toy_graph()


def test_to_tensors_round_trips_every_edge(toy):
    kg = G.to_tensors(toy)
    assert kg.num_nodes == toy.number_of_nodes()
    assert kg.num_edges == toy.number_of_edges()
    assert kg.edge_index.shape == (2, kg.num_edges) and kg.edge_index.dtype == torch.long
    assert kg.relations == sorted({"contains", "see_also", "same_name", "mentions", "inherits"})
    head, rel, tail = (x.tolist() for x in kg.triples().as_tuple())
    decoded = {kg.decode(h, r, t) for h, r, t in zip(head, rel, tail, strict=True)}
    assert decoded == {(u, a["type"], v) for u, v, a in toy.edges(data=True)}
    assert kg.to_pyg().num_nodes == kg.num_nodes


def test_vocabulary_is_deterministic_and_can_be_fixed(toy):
    a, b = G.to_tensors(toy), G.to_tensors(toy.copy())
    assert a.entities == b.entities and torch.equal(a.edge_index, b.edge_index)
    extra = G.to_tensors(toy, nodes=list(toy.nodes) + ["isolated.doc"])
    assert extra.num_nodes == toy.number_of_nodes() + 1 and "isolated.doc" in extra.entity_index


def test_inverse_relations_double_the_edges(toy):
    kg = G.to_tensors(toy, add_inverse=True)
    assert kg.num_edges == 2 * toy.number_of_edges()
    assert "rev_see_also" in kg.relations and kg.num_relations == 10


def test_bad_graphs_get_clear_errors(toy):
    g = toy.copy()
    g.add_edge("numpy", "torch")  # no type
    with pytest.raises(G.GraphError, match="no 'type'"):
        G.to_tensors(g)
    with pytest.raises(G.GraphError, match="not in `nodes`"):
        G.to_tensors(toy, nodes=["numpy"])
    with pytest.raises(G.GraphError, match="not in relations"):
        G.to_tensors(toy, relations=["contains"])
    with pytest.raises(G.GraphError, match="None"):
        G.to_tensors(None)
    with pytest.raises(G.GraphError, match="not in the graph"):
        G.neighbourhood(toy, "nope")


def test_statistics(toy):
    counts = G.relation_counts(toy)
    assert counts.sum() == toy.number_of_edges() and counts.index[0] == "contains"
    degrees = G.degree_table(toy)
    assert degrees.iloc[0]["node"] in {"numpy", "numpy.mean"}
    assert (degrees["degree"] == degrees["in_degree"] + degrees["out_degree"]).all()
    stats = G.graph_stats(toy)
    assert stats["nodes"] == 15 and stats["relation_types"] == 5 and stats["weak_components"] == 1


def test_neighbourhood_is_seeded_and_bounded(toy):
    a = G.neighbourhood(toy, "numpy.mean", radius=2, max_nodes=6, seed=1)
    b = G.neighbourhood(toy, "numpy.mean", radius=2, max_nodes=6, seed=1)
    assert set(a) == set(b) and len(a) == 6 and "numpy.mean" in a
    one_hop = G.neighbourhood(toy, "numpy.mean", radius=1, max_nodes=100)
    assert set(one_hop) == {"numpy.mean"} | set(nx.all_neighbors(toy, "numpy.mean"))


def test_drawing_helpers_return_axes(toy):
    import matplotlib.pyplot as plt

    for ax in (G.draw_neighbourhood(toy, "numpy.mean", radius=1), G.plot_degree_distribution(toy),
               G.plot_relation_counts(toy)):
        assert isinstance(ax, matplotlib.axes.Axes)
    plt.close("all")


def test_split_edges_never_contains_an_eval_pair(toy):
    eval_pairs = {("numpy.mean", "numpy.average"), ("numpy.std", "numpy.var")}
    split = G.split_edges(graph=toy, eval_pairs=eval_pairs, valid_frac=0.2, test_frac=0.2, seed=3)
    names = split.tensors.entities
    seen = set()
    for part in (split.train, split.valid, split.test):
        pairs = {(names[h], names[t]) for h, t in part.pairs()}
        for a, b in eval_pairs:
            assert (a, b) not in pairs and (b, a) not in pairs
        seen |= {(h, r, t) for h, r, t in zip(*(x.tolist() for x in part.as_tuple()), strict=True)}
    # four edges join the two eval pairs (both directions); everything else is in exactly one split
    assert sum(split.sizes().values()) == toy.number_of_edges() - 4 == len(seen)
    assert len(split.valid) + len(split.test) > 0
    # held-out edges only touch entities seen in training
    train_nodes = set(split.train.head.tolist()) | set(split.train.tail.tolist())
    for part in (split.valid, split.test):
        assert set(part.head.tolist()) | set(part.tail.tolist()) <= train_nodes


def test_split_is_seeded(toy):
    a = G.split_edges(graph=toy, eval_pairs=set(), valid_frac=0.2, test_frac=0.2, seed=5)
    b = G.split_edges(graph=toy, eval_pairs=set(), valid_frac=0.2, test_frac=0.2, seed=5)
    assert torch.equal(a.test.head, b.test.head) and torch.equal(a.train.tail, b.train.tail)
    with pytest.raises(ValueError, match="valid_frac"):
        G.split_edges(graph=toy, valid_frac=0.6, test_frac=0.6)


def test_split_uses_the_training_graph_of_a_dataset(toy):
    from cookbook.beir import RetrievalData

    corpus = {n: {"title": n, "text": f"docs of {n}"} for n in toy.nodes}
    meta = {"q1": {"source": "numpy.mean", "target": "numpy.median", "split": "test"},
            "q2": {"source": "numpy.std", "target": "numpy.var", "split": "train"}}
    data = RetrievalData(corpus, {"q1": "middle value", "q2": "variance"},
                         {"train": {"q2": {"numpy.var": 3}}, "dev": {}, "test": {"q1": {"numpy.median": 3}}},
                         meta, toy)
    split = G.split_edges(data, valid_frac=0.1, test_frac=0.1)
    names = split.tensors.entities
    every = {(names[h], names[t]) for h, t in split.all_triples().pairs()}
    assert ("numpy.mean", "numpy.median") not in every and ("numpy.median", "numpy.mean") not in every
    assert ("numpy.std", "numpy.var") in every  # a train pair stays


def test_assert_no_eval_edges_raises():
    with pytest.raises(G.EvalLeakError, match="evaluation pair"):
        G.assert_no_eval_edges([("b", "a")], {("a", "b")})
    assert G.assert_no_eval_edges([("a", "c")], {("a", "b")}) == 1
