"""cookbook.lce: exact LCE, training groups, reranking, errors, and the recipe."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from cookbook import lce as R
from cookbook import llm as L
from cookbook import recipes


@pytest.fixture(scope="module")
def tiny_ce(tiny_model):
    return R.cross_encoder_from(tiny_model, max_length=64, seed=0)


class QLStub(L.BaseLLM):
    """log p(q | d) = 0 when the document's title is in the query, else -5; queries end in '?'."""

    backend = "stub"

    def __init__(self):
        super().__init__("stub", cache=False, progress=False)

    def _score_batch(self, contexts, continuations):
        out = []
        for ctx, cont in zip(contexts, continuations):
            title = ctx.split("Passage: ", 1)[1].split(":", 1)[0]
            out.append((0.0 if title.lower() in cont.lower() else -5.0, 1))
        return out

    def _generate_batch(self, prompts, params, chat):  # a query made of the document's words
        out = []
        for p in prompts:
            doc = p.rsplit("Document: ", 1)[1].rsplit("\nQuery:", 1)[0]
            words = doc.replace(":", " ").split()
            out.append(([" ".join(words[j:j + 4]) for j in range(params.n)], 10, 4))
        return out


def test_lce_equals_the_formula_on_fixed_scores():
    scores = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.0, 3.0, 0.1, 0.2]])
    for t in (1.0, 0.5):
        expected = sum(-math.log(math.exp(r[0] / t) / sum(math.exp(x / t) for x in r))
                       for r in scores.tolist()) / 2
        assert R.lce(scores, t).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(R.GroupSizeError):
        R.lce(torch.zeros(3, 1))


def test_lce_loss_scores_the_whole_group_with_the_cross_encoder(tiny_ce):
    queries = ["boil an egg", "bake bread"]
    cols = [["Boil eggs for seven minutes.", "Knead the dough."],
            ["Poach an egg in water.", "Bread needs yeast."],
            ["Salt the pasta water.", "Rice cooks in twenty minutes."]]
    loss_fn = R.LCELoss(tiny_ce, group_size=3)
    tiny_ce.model.eval()
    with torch.no_grad():
        got = loss_fn([queries] + cols, None)
        logits = torch.tensor([[float(tiny_ce.predict([(q, c[i])], activation_fn=torch.nn.Identity())[0])
                                for c in cols] for i, q in enumerate(queries)])
    assert got.item() == pytest.approx(R.lce(logits).item(), rel=1e-4, abs=1e-5)
    with pytest.raises(R.GroupSizeError, match="groups of 3"):
        loss_fn([queries] + cols[:2], None)
    with pytest.raises(R.GroupSizeError, match="at least one negative"):
        R.LCELoss(tiny_ce)([queries, cols[0]], None)
    with pytest.raises(R.GroupSizeError):
        R.LCELoss(tiny_ce, group_size=1)


@pytest.fixture(scope="module")
def labelled(smoke_data):
    docs = sorted(smoke_data.corpus)[:4]
    pairs = pd.DataFrame({"query": [f"{docs[0]} and {docs[1]}", f"about {docs[2]}"],
                          "doc_id": [docs[0], docs[2]]})

    class Ranked:  # ranks the first twelve documents, the positive among them
        def search(self, queries, k):
            ids = sorted(smoke_data.corpus)[:12]
            return {q: {d: 1.0 - j / 100 for j, d in enumerate(ids[:k])} for q in queries}

    cands = R.first_stage_candidates(Ranked(), pairs, smoke_data, depth=7)
    return pairs, R.label_candidates(cands, QLStub(), smoke_data)


def test_candidates_and_labels(smoke_data, labelled):
    pairs, lab = labelled
    assert lab.groupby("pair").size().tolist() == [7, 7]
    assert not (lab["neg_id"] == lab["doc_id"]).any()  # the positive is never its own candidate
    docs = sorted(smoke_data.corpus)
    # docs[1] explains query 0 as well as its positive: the LLM does not confirm it as a negative
    assert not lab[(lab["pair"] == 0) & (lab["neg_id"] == docs[1])]["negative"].any()
    assert lab[(lab["pair"] == 1)]["negative"].all()


def test_groups_have_the_right_size_and_never_hold_the_positive(smoke_data, labelled):
    pairs, lab = labelled
    for g in (2, 4, 8):
        for groups in (R.localized_groups(lab, pairs, smoke_data, group_size=g, seed=1),
                       R.random_groups(pairs, smoke_data, group_size=g, seed=1)):
            assert len(groups) == len(pairs)
            for pos, negs in zip(groups["doc_id"], groups["negatives"]):
                assert len(negs) == g - 1 and len(set(negs)) == g - 1 and pos not in negs
    local = R.localized_groups(lab, pairs, smoke_data, group_size=8, seed=1)
    confirmed = set(zip(lab[lab["negative"]]["pair"], lab[lab["negative"]]["neg_id"]))
    for p, negs, n_rank, n_fill in zip(local["pair"], local["negatives"], local["n_from_ranking"],
                                       local["n_filled"]):
        assert all((p, n) in confirmed for n in negs[:n_rank]) and n_rank + n_fill == 7
    assert local["n_filled"].tolist() == [1, 0]  # pair 0 lost one candidate to the LLM check
    ds = R.group_dataset(local, smoke_data)
    assert ds.column_names == ["query", "positive"] + [f"negative_{j}" for j in range(1, 8)]
    pw = R.pointwise_dataset(local, smoke_data)
    assert len(pw) == 16 and sum(pw["label"]) == 2
    with pytest.raises(R.GroupSizeError):
        R.localized_groups(lab, pairs, smoke_data, group_size=1)
    with pytest.raises(R.GroupSizeError):
        R.random_groups(pairs, smoke_data, group_size=0)
    with pytest.raises(R.UnknownDocumentError):
        R.random_groups(pd.DataFrame({"query": ["q"], "doc_id": ["no.such.doc"]}), smoke_data)


def test_rerank_orders_by_cross_encoder_score_and_keeps_the_tail(smoke_data):
    docs = sorted(smoke_data.corpus)[:5]

    class Fake:  # scores a pair by how many characters the document has
        def predict(self, pairs, **kwargs):
            return [float(len(d)) for _, d in pairs]

    qid = next(iter(smoke_data.qrels["test"]))
    run = {qid: {d: 1.0 - j / 10 for j, d in enumerate(docs)}}
    out = R.rerank(Fake(), run, smoke_data, depth=3)
    head = sorted(docs[:3], key=lambda d: -len(smoke_data.doc_text(d)))
    ranked = sorted(out[qid], key=lambda d: -out[qid][d])
    assert ranked == head + docs[3:] and out.pairs == 3 and out.pairs_per_second > 0
    assert R.at_depth(run, out.scores, 2)[qid].keys() == run[qid].keys()
    with pytest.raises(R.UnknownDocumentError, match="not in the corpus"):
        R.rerank(Fake(), {qid: {"no.such.doc": 1.0}}, smoke_data)
    with pytest.raises(R.UnknownDocumentError, match="query"):
        R.rerank(Fake(), {"no-such-query": {docs[0]: 1.0}}, smoke_data)
    with pytest.raises(ValueError, match="smaller depth"):
        R.at_depth(run, out.scores, 5)


def test_split_by_group_defaults_to_the_package(smoke_data):
    docs = sorted(smoke_data.corpus)
    pairs = pd.DataFrame({"query": ["a", "b"], "doc_id": docs[:2]})
    pkg = smoke_data.corpus[docs[0]]["package"]
    inside, other = R.split_pairs_by_group(pairs, smoke_data, {pkg})
    assert docs[0] in set(inside["doc_id"]) and len(inside) + len(other) == 2
    inside, other = R.split_pairs_by_group(pairs, smoke_data, {"x"}, group_of=lambda d: "x")
    assert len(inside) == 2 and other.empty


@pytest.mark.parametrize("with_train", [True, False])
def test_recipe_on_tiny_beir_saves_a_loadable_reranker(tmp_path, tiny_model, with_train):
    from sentence_transformers import CrossEncoder

    from cookbook.beir import load_beir

    data = load_beir("data/fixtures/tiny_beir")
    if not with_train:
        data.qrels.pop("train")
    report = recipes.lce.recipe(data, tmp_path, embedder=tiny_model, llm=QLStub(), steps=2, n_docs=8,
                      group_size=3, label_depth=4, batch_size=2, max_length=48)
    assert report["recipe"] == "lce" and report["steps"] == 2 and report["train_pairs"] > 0
    labelled = report["groups"]["train labels"]  # the folder's own train qrels become groups too
    assert (labelled == len(R.labelled_pairs(data, "train")[0]) > 0) if with_train else labelled == 0
    assert tuple(report["before"]) == tuple(report["after"]) == recipes.common.report_measures(data)
    assert report["comparison"]["queries"] == len(data.qrels["test"])
    loaded = CrossEncoder(str(tmp_path / "model"))
    pairs = [("boil an egg", data.doc_text("d1"))]
    assert loaded.predict(pairs).shape == (1,)


def test_solution_interpolation_spans_first_stage_and_reranker():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "notebooks" / "solutions" / "40_train_reranker_lce.py"
    spec = importlib.util.spec_from_file_location("solution_40", path)
    sol = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sol)
    first = {"q": {"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.5}}
    ce = {"q": {"a": -1.0, "b": 0.0, "c": 2.0}}

    def order(run):
        return sorted(run["q"], key=lambda d: -run["q"][d])

    assert order(sol.interpolate(first, ce, 0.0, depth=3)) == ["a", "b", "c", "d"]
    assert order(sol.interpolate(first, ce, 1.0, depth=3)) == order(R.at_depth(first, ce, 3)) == ["c", "b", "a", "d"]


def test_residual_reranker_starts_exactly_at_its_first_stage(tiny_model, smoke_data):
    from cookbook import retrieval

    index = retrieval.DenseIndex(tiny_model, smoke_data, cache=False)
    qids = sorted(smoke_data.qrels["test"])[:3]
    queries = {q: smoke_data.queries[q] for q in qids}
    run = index.search(queries, k=8)
    scale = R.residual_scale(run, depth=8)
    assert scale > 0
    model = R.residual_reranker(tiny_model, scale=scale, max_length=48, seed=0)
    assert R.residual_of(model) == pytest.approx(scale)
    out = R.rerank(model, run, smoke_data, depth=8, queries=queries)
    for q in qids:  # f = 0 at step 0: the reranked scores are a * first-stage scores
        assert out.scores[q] == pytest.approx({d: scale * s for d, s in run[q].items()}, abs=1e-5)
        assert sorted(out[q], key=lambda d: -out[q][d]) == sorted(run[q], key=lambda d: -run[q][d])
    # f = 0 exactly, so the cross-encoder did not run; once the head moves it does, and adds raw logits
    assert R.residual_is_zero(model) and out.model_pairs == 0 and np.isnan(out.pairs_per_second)
    with torch.no_grad():
        R.output_layer(model).weight.fill_(0.05)
    moved = R.rerank(model, run, smoke_data, depth=8, queries=queries)
    assert not R.residual_is_zero(model) and moved.model_pairs == moved.pairs == 24 and moved.pairs_per_second > 0
    q, d = qids[0], next(iter(run[qids[0]]))
    logit = float(model.predict([(queries[q], smoke_data.doc_text(d))], activation_fn=torch.nn.Identity())[0])
    assert moved.scores[q][d] == pytest.approx(scale * run[q][d] + logit, abs=1e-4)
    R.keep_first_stage(model)
    assert R.residual_is_zero(model)
    # the prior gives the same first-stage scores inside an LCE batch
    prior = R.FirstStagePrior(index, smoke_data, scale)
    docs = list(run[qids[0]])[:3]
    got = prior([queries[qids[0]]], [[smoke_data.doc_text(d)] for d in docs])
    assert got[0].tolist() == pytest.approx([scale * run[qids[0]][d] for d in docs], abs=1e-4)
    pairs = pd.DataFrame({"query": [queries[q] for q in qids], "doc_id": [docs[0]] * 3})
    groups = R.localized_groups(pd.DataFrame(), pairs, smoke_data, group_size=3, seed=0)
    loss_fn = R.LCELoss(model, group_size=3, prior=prior)
    ds = R.group_dataset(groups, smoke_data, seed=0)[:3]
    with torch.no_grad():
        assert loss_fn(list(ds.values())).item() == pytest.approx(R.prior_loss(groups, smoke_data, prior), rel=1e-4)


def test_dev_check_keeps_the_best_checkpoint_and_step_zero_on_no_gain(tiny_model, smoke_data):
    from cookbook import retrieval

    index = retrieval.DenseIndex(tiny_model, smoke_data, cache=False)
    dev_ids = sorted(smoke_data.qrels["dev"])[:4] if smoke_data.qrels.get("dev") else sorted(smoke_data.qrels["test"])[:4]
    split = "dev" if smoke_data.qrels.get("dev") else "test"
    queries = {q: smoke_data.queries[q] for q in dev_ids}
    run = index.search(queries, k=5)
    model = R.residual_reranker(tiny_model, scale=R.residual_scale(run), max_length=32, seed=0)
    pairs = pd.DataFrame({"query": ["a b", "c d"], "doc_id": sorted(smoke_data.corpus)[:2]})
    groups = R.localized_groups(pd.DataFrame(), pairs, smoke_data, group_size=3, seed=0)
    calls = []

    def dev(m):  # a dev check that only step 0 passes: the weights of step 0 come back
        calls.append(1)
        return (1.0 if len(calls) == 1 else 0.0), {}

    rep = R.train(model, R.group_dataset(groups, smoke_data), R.LCELoss(model, group_size=3,
                  prior=R.FirstStagePrior(index, smoke_data, 1.0)), max_steps=2, batch_size=2,
                  learning_rate=1e-2, dev=dev, dev_every=1)
    assert [c["step"] for c in rep["dev_curve"]] == [0, 1, 2] and rep["best_step"] == 0
    assert float(R.output_layer(model).weight.detach().abs().sum()) == 0.0
    real = R.dev_check(run, {q: smoke_data.qrels[split][q] for q in dev_ids}, smoke_data, depth=5, queries=queries)
    score, reranked = real(model)
    assert 0.0 <= score <= 1.0 and set(reranked) == set(dev_ids)


def test_bf16_training_and_scoring_come_back_in_the_asked_precision(tiny_model, smoke_data, monkeypatch):
    from cookbook.llm import precision as P

    with pytest.raises(ValueError, match="precision='fp16'; choose one of auto, fp32, bf16"):
        R.reranker_precision("fp16")
    assert R.reranker_precision("bf16") == ("bf16", "as asked")
    monkeypatch.setattr(P, "cpu_flags", lambda path="/proc/cpuinfo": frozenset({"avx2"}))
    assert R.reranker_precision("auto")[0] == "fp32"  # bf16 would be emulated there: slower
    monkeypatch.setattr(P, "cpu_flags", lambda path="/proc/cpuinfo": frozenset({"avx512_bf16"}))
    assert R.reranker_precision("auto") == ("bf16", "CPU has avx512_bf16")

    qids = sorted(smoke_data.qrels["test"])[:2]
    queries = {q: smoke_data.queries[q] for q in qids}
    run = {q: {d: 1.0 / (i + 1) for i, d in enumerate(sorted(smoke_data.corpus)[:4])} for q in qids}
    model = R.residual_reranker(tiny_model, scale=1.0, max_length=32, seed=0)
    pairs = pd.DataFrame({"query": ["a b", "c d"], "doc_id": sorted(smoke_data.corpus)[:2]})
    groups = R.localized_groups(pd.DataFrame(), pairs, smoke_data, group_size=3, seed=0)
    rep = R.train(model, R.group_dataset(groups, smoke_data), R.LCELoss(model, group_size=3), max_steps=2,
                  batch_size=2, learning_rate=1e-2, bf16=True)
    assert rep["steps"] == 2 and not R.residual_is_zero(model)
    # the autocast wrapper of bf16 training is gone: fp32 scoring is fp32 again, and bf16 differs a little
    assert "_original_forward" not in vars(model)
    assert all(p.dtype == torch.float32 for p in model.model.parameters())
    fp32 = R.rerank(model, run, smoke_data, depth=4, queries=queries, precision="fp32")
    bf16 = R.rerank(model, run, smoke_data, depth=4, queries=queries, precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    a = np.array([fp32.scores[q][d] for q in qids for d in run[q]])
    b = np.array([bf16.scores[q][d] for q in qids for d in run[q]])
    assert not np.array_equal(a, b) and np.abs(a - b).max() < 0.05 * max(1.0, np.abs(a).max())
    # under a bf16 autocast the first stage's part is still added in fp32: 10.01 would be 10.0 in bf16
    loss_fn = R.LCELoss(model, group_size=3, prior=lambda queries, columns: torch.full((len(queries), len(columns)), 10.01))
    rows = list(R.group_dataset(groups, smoke_data)[:2].values())
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        scores = loss_fn.scores(rows)
    f = R.LCELoss(model, group_size=3).scores(rows).detach()
    assert scores.dtype == torch.float32 and torch.allclose(scores - 10.01, f, atol=0.05)
