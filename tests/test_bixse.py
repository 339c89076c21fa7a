"""cookbook.bixse: the BiXSE loss, its targets, its data helpers, its measures and its recipe."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from cookbook import bixse as X
from cookbook import llm as L
from cookbook import recipes
from cookbook.beir import RetrievalData, load_beir
from cookbook.config import DATA_DIR

TINY = DATA_DIR / "fixtures" / "tiny_beir"


def scratch_bixse(q, d, y, t=10.0, b=-10.0):
    """The loss written out element by element: mean over i, j of BCE(t cos(q_i, d_j) + b, y_ij)."""
    total, n = 0.0, 0
    for i in range(len(q)):
        for j in range(len(d)):
            cos = float(np.dot(q[i], d[j]) / (np.linalg.norm(q[i]) * np.linalg.norm(d[j])))
            p = 1 / (1 + math.exp(-(t * cos + b)))
            target = y[i] if i == j else 0.0
            total += -(target * math.log(p) + (1 - target) * math.log(1 - p))
            n += 1
    return total / n


def test_loss_equals_a_from_scratch_computation():
    g = torch.Generator().manual_seed(0)
    q, d = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    y = torch.tensor([1.0, 2 / 3, 1 / 3, 0.0, 0.5])
    loss = X.BiXSELoss(model=None, scale=7.0, bias=-3.0)
    ours = float(loss.compute_loss_from_embeddings([q, d], y).detach())
    assert ours == pytest.approx(scratch_bixse(q.numpy(), d.numpy(), y.numpy(), 7.0, -3.0), rel=1e-5)
    neg = torch.randn(5, 8, generator=g)  # an extra negative column: more documents, target 0
    ours3 = float(loss.compute_loss_from_embeddings([q, d, neg], y).detach())
    assert ours3 == pytest.approx(scratch_bixse(q.numpy(), torch.cat([d, neg]).numpy(), y.numpy(), 7.0, -3.0), rel=1e-5)


def test_grade_targets_map_integer_labels():
    g = torch.Generator().manual_seed(1)
    q, d = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    grades = torch.tensor([3, 2, 1, 0])
    mapped = X.BiXSELoss(None, targets=X.GradeTargets(3)).compute_loss_from_embeddings([q, d], grades)
    direct = X.BiXSELoss(None).compute_loss_from_embeddings([q, d], grades / 3)
    assert float(mapped) == pytest.approx(float(direct))


def test_scale_and_bias_get_gradients_unless_fixed():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(4, 6, generator=g, requires_grad=True)
    d = torch.randn(4, 6, generator=g)
    loss = X.BiXSELoss(None)
    loss.compute_loss_from_embeddings([q, d], torch.tensor([1.0, 0.0, 0.5, 1.0])).backward()
    assert loss.log_scale.grad is not None and loss.log_scale.grad.abs() > 0
    assert loss.bias.grad is not None and loss.bias.grad.abs() > 0
    assert q.grad is not None
    assert float(loss.scale) == pytest.approx(10.0) and float(loss.bias) == pytest.approx(-10.0)
    fixed = X.BiXSELoss(None, learn_scale=False, learn_bias=False)
    assert not any(p.requires_grad for p in fixed.parameters())


@pytest.mark.parametrize("labels, match", [
    (torch.tensor([1.0, 1.5, 0.0]), "outside"),
    (torch.tensor([1.0, -0.1, 0.0]), "outside"),
    (torch.tensor([1.0, float("nan"), 0.0]), "NaN"),
    (torch.tensor([3.0, 2.0, 1.0]), "GradeTargets"),
    (None, "label"),
])
def test_bad_labels_are_clear_errors(labels, match):
    q, d = torch.randn(3, 4), torch.randn(3, 4)
    with pytest.raises(X.BiXSEInputError, match=match):
        X.BiXSELoss(None).compute_loss_from_embeddings([q, d], labels)


def test_dataset_checks_name_the_problem():
    from datasets import Dataset

    with pytest.raises(X.BiXSEInputError, match="no label column"):
        X.validate_dataset(Dataset.from_dict({"anchor": ["a", "b"], "positive": ["c", "d"]}))
    with pytest.raises(X.BiXSEInputError, match="outside"):
        X.validate_dataset(Dataset.from_dict({"anchor": ["a", "b"], "positive": ["c", "d"], "label": [1.0, 2.0]}))
    assert X.validate_dataset(Dataset.from_dict({"anchor": ["a"], "positive": ["c"], "score": [0.5]})) == "score"


def test_trainer_updates_scale_and_bias_and_rejects_missing_labels(tiny_model):
    from datasets import Dataset

    from cookbook.finetune import fit

    texts = [f"document number {i} about topic {i % 3}" for i in range(8)]
    ds = Dataset.from_dict({"anchor": [f"topic {i % 3} query {i}" for i in range(8)], "positive": texts,
                            "label": [1.0, 0.0, 2 / 3, 1 / 3] * 2})
    loss = X.BiXSELoss(tiny_model, scale=8.0, bias=-2.0)
    mapping = loss.learning_rate_mapping(0.05)
    assert mapping == {"^log_scale$": 0.05, "^bias$": 0.05}
    report = fit(tiny_model, ds, loss, max_steps=3, batch_size=4, learning_rate=1e-5, no_duplicates=True,
                 learning_rate_mapping=mapping)
    assert report["steps"] == 3 and len(loss.history) == 3
    # their own learning rate moves them by about 0.05 a step (Adam), far more than the encoder's 1e-5
    assert abs(float(loss.bias.detach()) + 2.0) > 0.02
    assert abs(float(loss.scale.detach()) - 8.0) > 0.1
    with pytest.raises(X.BiXSEInputError, match="label"):
        fit(tiny_model, ds.remove_columns("label"), X.BiXSELoss(tiny_model), max_steps=1, batch_size=4)


def test_starting_values_put_positives_high_and_in_batch_pairs_low():
    labelled = np.array([0.6, 0.5, 0.2, 0.55])
    in_batch = np.array([0.1, 0.15, 0.05, 0.1, 0.2, 0.1])
    target = np.array([1.0, 2 / 3, 0.0, 1 / 3])
    sv = X.starting_values(labelled, in_batch, target, p_positive=0.9)
    assert sv["c_neg"] < sv["c_star"] < sv["c_pos"]
    assert sv["bias"] == pytest.approx(-sv["scale"] * sv["c_star"])
    assert sv["p_max"] > 0.99 and sv["p_min"] < 0.01  # both ends of [0, 1] reachable
    probs = X.start_probabilities([sv["c_pos"]], [sv["c_neg"]], [1.0], sv["scale"], sv["bias"])
    assert probs["labelled, target 1.00"] == pytest.approx(0.9)
    assert probs["in-batch (target 0)"] == pytest.approx(0.1)
    # SigLIP's start: nothing above 0.5
    assert max(X.start_probabilities(labelled, in_batch, target, 10.0, -10.0).values()) < 0.5
    with pytest.raises(X.BiXSEInputError, match="not closer"):
        X.starting_values(in_batch[:4], labelled, target)


def test_fitted_start_is_the_loss_minimum_of_the_frozen_model():
    rng = np.random.default_rng(1)
    labelled = rng.normal(0.55, 0.1, 64)
    target = np.clip((labelled - 0.3) * 2, 0, 1)
    in_batch = rng.normal(0.15, 0.1, 64 * 15)
    sv = X.starting_values(labelled, in_batch, target, rule="fit")
    assert sv["scale"] > 0 and sv["bias"] == pytest.approx(-sv["scale"] * sv["c_star"])

    def bce(t, b):  # the loss's mean BCE over labelled and in-batch pairs with the encoder frozen
        c = np.concatenate([labelled, in_batch])
        y = np.concatenate([target, np.zeros(len(in_batch))])
        z = t * c + b
        return float(np.mean(np.logaddexp(0, z) - y * z))

    best = bce(sv["scale"], sv["bias"])
    for dt, db in ((1, 0), (-1, 0), (0, 0.5), (0, -0.5)):
        assert bce(sv["scale"] + dt, sv["bias"] + db) > best
    with pytest.raises(X.BiXSEInputError, match="unknown rule"):
        X.starting_values(labelled, in_batch, target, rule="siglip")


def test_fit_logistic_recovers_a_known_curve():
    rng = np.random.default_rng(0)
    x = rng.normal(-2, 1.5, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(1.5 * x + 2.0)))).astype(float)
    slope, intercept = X.fit_logistic(x, y, l2=0.0)
    assert slope == pytest.approx(1.5, abs=0.2) and intercept == pytest.approx(2.0, abs=0.3)
    a, c = X.fit_logistic(np.array([0.0, 1.0]), np.array([1.0, 1.0]))  # one class only: still finite
    assert math.isfinite(a) and math.isfinite(c)


class QLStub(L.BaseLLM):
    """log p(q | d): minus the number of query words missing from the document."""

    backend = "stub"

    def __init__(self):
        super().__init__("stub", cache=False, progress=False)

    def _score_batch(self, contexts, continuations):
        return [(-float(sum(w not in ctx for w in c.split())), 1) for ctx, c in zip(contexts, continuations)]

    def _generate_batch(self, prompts, params, chat):  # zero-shot queries: the document's first words
        out = []
        for p in prompts:
            words = p.rsplit("Document: ", 1)[1].split()
            out.append(([" ".join(words[k:k + 4]) for k in range(params.n)], 10, 4))
        return out


def test_llm_targets_are_calibrated_probabilities():
    data = load_beir(TINY)
    pairs = pd.DataFrame({"query": ["boil an egg", "boil an egg", "green tea", "bread"],
                          "doc_id": ["d1", "d3", "d5", "d1"], "grade": [3, 0, 3, 0]})
    targets, fit = X.llm_targets(QLStub(), data, pairs)
    assert ((targets >= 0) & (targets <= 1)).all() and fit["threshold"] == 2
    order = np.argsort(fit["ql"].to_numpy())
    assert np.all(np.diff(targets.to_numpy()[order]) >= -1e-12) == (fit["slope"] >= 0)


def test_draw_labelled_pairs_one_per_query_all_grades(smoke_data):
    run = {q: {d: 1.0 / (k + 1) for k, d in enumerate(sorted(smoke_data.corpus)[:30])}
           for q in smoke_data.qrels["train"]}
    pairs = X.draw_labelled_pairs(smoke_data, "train", run, seed=3)
    assert pairs["qid"].is_unique and len(pairs) == len(smoke_data.qrels["train"])
    assert set(pairs["grade"]) == {0, 1, 2, 3}
    for qid, doc, grade in zip(pairs["qid"], pairs["doc_id"], pairs["grade"]):
        assert smoke_data.qrels["train"][qid].get(doc, 0) == grade
    assert pairs.equals(X.draw_labelled_pairs(smoke_data, "train", run, seed=3))
    assert not set(pairs["qid"]) & set(smoke_data.qrels["test"])


def test_corrupt_labels_keeps_the_histogram():
    pairs = pd.DataFrame({"grade": [0, 1, 2, 3] * 25, "t": np.linspace(0, 1, 100)})
    noisy = X.corrupt_labels(pairs, 0.4, columns=("grade", "t"), seed=0)
    assert noisy["corrupted"].sum() == 40
    assert sorted(noisy["grade"]) == sorted(pairs["grade"])
    assert (noisy.loc[~noisy["corrupted"], "grade"] == pairs.loc[~noisy["corrupted"], "grade"]).all()
    moved = noisy["t"] != pairs["t"]
    assert moved.sum() > 20 and (noisy["grade"] != pairs["grade"])[~noisy["corrupted"]].sum() == 0
    with pytest.raises(X.BiXSEInputError):
        X.corrupt_labels(pairs, 1.5)


def test_pair_scores_cover_every_judged_pair_and_sampled_zeros():
    data = RetrievalData({f"d{i}": {"title": "", "text": f"text {i}"} for i in range(6)}, {"q": "query"},
                         {"test": {"q": {"d0": 3, "d1": 2, "d2": 2, "d3": 1}}})
    run = {"q": {"d0": 4.0, "d1": 3.0, "d2": 2.5, "d3": 2.0, "d4": 1.0}}
    table = X.pair_scores(run, data, n_unjudged=2, seed=0)
    assert sorted(table["grade"]) == [0, 0, 1, 2, 2, 3]
    assert set(table.loc[table["grade"] == 0, "doc_id"]) <= {"d4", "d5"}
    assert table.set_index("doc_id").loc["d2", "score"] == 2.5
    if "d5" in set(table["doc_id"]):  # not in the run: scored below everything
        assert table.set_index("doc_id").loc["d5", "score"] == -np.inf
    with pytest.raises(X.BiXSEInputError, match="no split"):
        X.pair_scores(run, data, "dev")


def test_recipe_on_tiny_beir_graded_and_binary_without_train(tmp_path, tiny_model):
    from sentence_transformers import SentenceTransformer

    data = load_beir(TINY)
    report = recipes.bixse.recipe(data, tmp_path / "graded", embedder=tiny_model, steps=2, batch_size=2)
    assert report["recipe"] == "bixse" and report["train_pairs"] == 2 and report["steps"] == 2
    assert tuple(report["before"]) == tuple(report["after"]) == recipes.common.report_measures(data)
    assert {"diff", "t_p", "wilcoxon_p"} <= set(report["comparison"])
    assert SentenceTransformer(str(tmp_path / "graded" / "model")).encode(["egg"]).shape[1] == 32
    binary = RetrievalData(data.corpus, data.queries,
                           {"test": {q: {d: int(g > 0) for d, g in docs.items()} for q, docs in data.qrels["test"].items()}})
    report = recipes.bixse.recipe(binary, tmp_path / "binary", embedder=tiny_model, llm=QLStub(), steps=1, n_docs=4)
    assert report["source"].startswith("generated") and report["train_pairs"] >= 2
    assert report["llm_usage"]["items"] > 0 and "after" in report
    assert SentenceTransformer(str(tmp_path / "binary" / "model")).encode(["egg"]).shape[1] == 32
    with pytest.raises(recipes.RecipeError, match="targets='grades'"):
        recipes.bixse.recipe(data, tmp_path / "x", embedder=tiny_model, targets="grades")


def test_recipe_with_infonce_baseline_reports_both(tmp_path, tiny_model):
    data = load_beir(TINY)
    binary = RetrievalData(data.corpus, data.queries,
                           {"test": {q: {d: int(g > 0) for d, g in docs.items()} for q, docs in data.qrels["test"].items()}})
    report = recipes.bixse.recipe(binary, tmp_path / "b", embedder=tiny_model, llm=QLStub(), steps=1, n_docs=4,
                                  baseline="infonce")
    assert list(report)[0] == "verdict" and "; BiXSE vs InfoNCE on the same pairs: " in report["verdict"]
    base = report["baseline"]
    assert base["name"] == "infonce" and base["train_pairs"] == report["train_pairs"]
    assert tuple(base["after"]) == tuple(report["after"])
    assert {"diff", "ci_low", "ci_high", "t_p"} <= set(base["bixse minus infonce"])
    assert {"scale", "bias"} <= set(report["start"])
    with pytest.raises(recipes.RecipeError, match="baseline='mnrl'"):
        recipes.bixse.recipe(data, tmp_path / "x", embedder=tiny_model, baseline="mnrl")
