"""cookbook.negatives: mining window and margin, LLM verification, false-negative rate."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from cookbook import llm as L
from cookbook import negatives as N
from cookbook import retrieval


@pytest.fixture(scope="module")
def small(smoke_data, tiny_model):
    docs = sorted(smoke_data.corpus)[:80]
    index = retrieval.DenseIndex(tiny_model, {d: smoke_data.corpus[d] for d in docs})
    pairs = pd.DataFrame({"query": [smoke_data.doc_text(d)[:60] for d in docs[:10]], "doc_id": docs[:10]})
    return index, pairs


def test_mine_respects_window_margin_and_exclusions(smoke_data, small):
    index, pairs = small
    neg = N.mine(index, smoke_data, pairs, range_min=2, range_max=20, relative_margin=0.05,
                 num_negatives=3)
    assert set(neg.columns) >= {"pair", "query", "doc_id", "neg_id", "neg_rank", "pos_score", "neg_score"}
    assert (neg["neg_id"] != neg["doc_id"]).all()
    assert neg["neg_rank"].between(3, 20).all()
    assert (neg["neg_score"] <= 0.95 * neg["pos_score"] + 1e-6).all()
    assert neg.groupby("pair").size().max() <= 3
    banned = {0: set(neg[neg["pair"] == 0]["neg_id"])}
    again = N.mine(index, smoke_data, pairs, range_min=2, range_max=20, num_negatives=3, exclude=banned)
    assert not set(again[again["pair"] == 0]["neg_id"]) & banned[0]
    with pytest.raises(ValueError, match="range_max"):
        N.mine(index, smoke_data, pairs, range_min=5, range_max=5)
    with pytest.raises(ValueError, match="not in the index"):
        N.mine(index, smoke_data, pd.DataFrame({"query": ["x"], "doc_id": ["nope"]}))


def test_same_negatives_as_sentence_transformers(smoke_data, small, tiny_model):
    index, pairs = small
    sub = type(smoke_data)({d: smoke_data.corpus[d] for d in index.ids}, {}, {}, {}, None)
    ours = N.mine(index, sub, pairs, range_min=0, range_max=10, relative_margin=None, num_negatives=2)
    theirs = N.mine_with_sentence_transformers(tiny_model, sub, pairs, range_min=0, range_max=10,
                                               relative_margin=None, num_negatives=2)
    assert sorted(zip(ours["pair"], ours["neg_id"])) == sorted(zip(theirs["pair"], theirs["neg_id"]))


class QLStub(L.BaseLLM):
    """log p(q | d) = 0 when the document's title is in the query, else -5."""

    backend = "stub"

    def __init__(self):
        super().__init__("stub", cache=False, progress=False)

    def _score_batch(self, contexts, continuations):
        out = []
        for ctx, cont in zip(contexts, continuations):
            title = ctx.split("Passage: ", 1)[1].split(":", 1)[0]
            out.append((0.0 if title in cont else -5.0, 1))
        return out


def test_verify_drops_negatives_the_llm_finds_as_likely(smoke_data):
    docs = sorted(smoke_data.corpus)[:3]
    neg = pd.DataFrame({"pair": [0, 0], "query": [f"{docs[0]} and {docs[1]}"] * 2,
                        "doc_id": [docs[0]] * 2, "neg_id": [docs[1], docs[2]], "neg_rank": [1, 2]})
    out = N.verify(neg, QLStub(), smoke_data)
    assert list(out["verified"]) == [False, True]  # docs[1] explains the query as well: dropped
    labels = {0: {docs[0]: 3, docs[1]: 2}}
    assert N.false_negative_rate(out, labels) == 0.5
    assert N.false_negative_rate(out[out["verified"]], labels) == 0.0
    trip = N.triplets(out, smoke_data)
    assert trip.column_names == ["anchor", "positive", "negative"] and len(trip) == 1
    assert trip[0]["negative"] == smoke_data.doc_text(docs[2])


def test_doc_labels_follow_the_qrels_rule(smoke_data):
    qid = next(iter(smoke_data.qrels["train"]))
    target = smoke_data.query_meta[qid]["target"]
    labels = N.doc_labels(smoke_data, [target])[target]
    assert labels[target] == 3 and set(labels.values()) <= {1, 2, 3}
    assert set(labels) <= set(smoke_data.corpus)
    near = {d for d, g in smoke_data.qrels["train"][qid].items() if g == 2}
    assert {d for d, g in labels.items() if g == 2} <= near | set(smoke_data.corpus)


def test_triplets_keep_every_pair_with_a_fallback(smoke_data):
    docs = sorted(smoke_data.corpus)[:4]
    pairs = pd.DataFrame({"query": ["a", "b"], "doc_id": docs[:2]})
    neg = pd.DataFrame({"pair": [0], "query": ["a"], "doc_id": [docs[0]], "neg_id": [docs[2]],
                        "neg_rank": [1], "verified": [False]})
    full = N.triplets(neg, smoke_data, pairs)
    assert len(full) == 2 and smoke_data.doc_text(docs[2]) not in full["negative"]
    assert all(n != p for n, p in zip(full["negative"], full["positive"]))
    assert len(N.triplets(neg, smoke_data, pairs, only_verified=False)) == 2


def test_prompt_judge_over_an_openai_compatible_chat_endpoint(smoke_data, json_server):
    """negatives.judge sends one chat request per (query, negative) and reads yes/no."""
    docs = sorted(smoke_data.corpus)[:3]
    seen = []

    def reply(request, body):  # says "Yes." when the document contains the query's last word
        seen.append((request.path, body))
        query, document = body["messages"][0]["content"].split("\n")[:2]
        answer = "Yes." if query.removeprefix("Query: ").split()[-1] in document else "no"
        return 200, {"choices": [{"message": {"role": "assistant", "content": answer}}]}

    llm = L.OpenAIHTTPLLM(json_server(reply), "judge", cache=False, progress=False, concurrency=1)
    word = smoke_data.doc_text(docs[1]).split()[0]
    neg = pd.DataFrame({"pair": [0, 0], "query": [f"about {word}"] * 2, "doc_id": [docs[0]] * 2,
                        "neg_id": [docs[1], docs[2]], "neg_rank": [1, 2]})
    out = N.judge(neg, llm, smoke_data)
    expected = [word in " ".join(smoke_data.doc_text(d).split()[:96]) for d in (docs[1], docs[2])]
    assert list(out["judge_yes"]) == expected and expected[0]
    assert len(seen) == 2 and all(path == "/v1/chat/completions" for path, _ in seen)
    assert all(body["max_tokens"] == 3 and body["temperature"] == 0.0 for _, body in seen)


def test_doc_labels_on_a_folder_with_its_own_graph_follow_the_qrels(binary_data):
    """A user's edges.jsonl follows its own rule: labels come from the qrels, never grade 3 on binary data."""
    assert binary_data.graph is not None and binary_data.graph.number_of_edges() > 0
    qid, judged = sorted(binary_data.qrels["test"].items())[0]
    (a,) = judged
    assert N.doc_labels(binary_data, [a]) == {a: {a: 1}}  # its own edges do not make it grade 3
    b = next(d for d in sorted(binary_data.corpus) if d != a)
    both = dataclasses.replace(binary_data, qrels={"test": {**binary_data.qrels["test"], qid: {a: 1, b: 1}}})
    assert N.doc_labels(both, [a]) == {a: {a: 1, b: 1}}  # judged relevant together for one query
    with pytest.raises(ValueError, match="no graph"):
        N.doc_labels(dataclasses.replace(binary_data, graph=None), [a], from_graph=True)
