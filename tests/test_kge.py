"""cookbook.kge on the hand-made toy graph: models, training, link prediction, export."""

import pytest
import torch

from cookbook import graph as G
from cookbook import kge


@pytest.fixture(scope="module")
def split():
    return G.split_edges(graph=G.toy_graph(), eval_pairs={("numpy.std", "numpy.var")},
                         valid_frac=0.15, test_frac=0.15, seed=2)


def test_model_map_has_the_four_models():
    assert set(kge.model_map) == set(kge.MODEL_NAMES) == {"transe", "distmult", "complex", "rotate"}
    with pytest.raises(ValueError, match="unknown KGE model"):
        kge.make_model("node2vec", 10, 2)
    with pytest.raises(ValueError, match="num_nodes"):
        kge.make_model("transe", 1, 1)


@pytest.mark.parametrize("name", kge.MODEL_NAMES)
def test_fast_scores_equal_the_models_forward(name):
    model = kge.make_model(name, 30, 3, dim=8, seed=4)
    h, r, t = torch.randint(30, (5,)), torch.randint(3, (5,)), torch.randint(30, (5,))
    with torch.no_grad():
        tails = kge.score_all(model, h, r, "tail")
        heads = kge.score_all(model, t, r, "head")
        for i in range(5):
            every = torch.arange(30)
            assert torch.allclose(tails[i], model(h[i].expand(30), r[i].expand(30), every), atol=1e-5)
            assert torch.allclose(heads[i], model(every, r[i].expand(30), t[i].expand(30)), atol=1e-5)


def test_make_model_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a = kge.make_model("complex", 20, 2, dim=4, seed=7)
    after = torch.rand(1)
    b = kge.make_model("complex", 20, 2, dim=4, seed=7)
    assert torch.equal(a.node_emb.weight, b.node_emb.weight)
    assert torch.equal(before, after)


def test_training_is_deterministic_and_lowers_the_loss(split):
    runs = [kge.train_kge("transe", split.train, split.num_nodes, split.num_relations, dim=16, epochs=30,
                          batch_size=8, seed=3) for _ in range(2)]
    assert runs[0].losses == runs[1].losses
    assert runs[0].losses[-1] < runs[0].losses[0]
    assert len(runs[0].epoch_seconds) == 30 and runs[0].seconds_per_epoch > 0


def test_link_prediction_matches_model_test_when_unfiltered(split):
    result = kge.train_kge("distmult", split.train, split.num_nodes, split.num_relations, dim=8, epochs=5, seed=1)
    held = split.all_triples()
    ours = kge.evaluate_link_prediction(result.model, held, filtered=False, both_sides=False, ks=(10,))
    _, mrr, hits10 = result.model.test(*held.as_tuple(), batch_size=64, k=10, log=False)
    assert ours["MRR"] == pytest.approx(mrr, abs=1e-5)
    assert ours["Hits@10"] == pytest.approx(hits10, abs=1e-6)
    filtered = kge.evaluate_link_prediction(result.model, held, filter_triples=held, both_sides=False, ks=(10,))
    assert filtered["MRR"] >= ours["MRR"] - 1e-9  # removing other true answers can only help


def test_a_trained_model_beats_chance(split):
    result = kge.train_kge("rotate", split.train, split.num_nodes, split.num_relations, dim=16, epochs=60,
                           batch_size=16, seed=0)
    metrics = kge.evaluate_link_prediction(result.model, split.train, filter_triples=split.all_triples())
    untrained = kge.make_model("rotate", split.num_nodes, split.num_relations, dim=16, seed=0)
    before = kge.evaluate_link_prediction(untrained, split.train, filter_triples=split.all_triples())
    assert metrics["MRR"] > before["MRR"] + 0.1
    assert set(metrics) == {"MR", "MRR", "Hits@1", "Hits@3", "Hits@10"}


def test_validation_history_and_compare_models(split):
    result = kge.train_kge("distmult", split.train, split.num_nodes, split.num_relations, dim=8, epochs=4,
                           valid=split.valid, eval_every=2, filter_triples=split.all_triples())
    assert [h["epoch"] for h in result.valid_history] == [2, 4]
    table, trained = kge.compare_models(split, dim=8, epochs=2, batch_size=16)
    assert list(table.index) == list(kge.MODEL_NAMES) and set(trained) == set(kge.MODEL_NAMES)
    assert ((table["MRR"] > 0) & (table["MRR"] <= 1)).all()


@pytest.mark.parametrize("name,width", [("transe", 8), ("distmult", 8), ("complex", 16), ("rotate", 16)])
def test_embeddings_export_and_round_trip(tmp_path, split, name, width):
    model = kge.make_model(name, split.num_nodes, split.num_relations, dim=8)
    emb = kge.entity_embeddings(model)
    assert emb.shape == (split.num_nodes, width) and not emb.requires_grad
    path = kge.save_embeddings(tmp_path / "e.pt", emb, split.tensors.entities, model=name)
    back, entities, meta = kge.load_embeddings(path)
    assert torch.equal(back, emb) and entities == split.tensors.entities and meta == {"model": name}
    with pytest.raises(ValueError, match="entities"):
        kge.save_embeddings(tmp_path / "bad.pt", emb, entities[:-1])
    with pytest.raises(FileNotFoundError, match="notebooks/50"):
        kge.load_embeddings(tmp_path / "missing.pt")


def test_bad_training_input(split):
    with pytest.raises(ValueError, match="optimizer"):
        kge.train_kge("transe", split.train, split.num_nodes, split.num_relations, epochs=1, optimizer="sgd")
    with pytest.raises(ValueError, match="epochs"):
        kge.train_kge("transe", split.train, split.num_nodes, split.num_relations, epochs=0)
    with pytest.raises(ValueError, match="side"):
        kge.score_all(kge.make_model("transe", 5, 1), torch.tensor([0]), torch.tensor([0]), "middle")
