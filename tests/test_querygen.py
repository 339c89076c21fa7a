"""cookbook.querygen: few-shot examples from train only, filters, acceptance statistics."""

from __future__ import annotations

import pandas as pd
import pytest

from cookbook import llm as L
from cookbook import querygen as Q


class ScriptedLLM(L.BaseLLM):
    """Returns canned completions: copies, names, duplicates and good queries."""

    backend = "scripted"

    def __init__(self, data, examples):
        super().__init__("scripted", cache=False, progress=False)
        self.data, self.examples = data, examples

    def _generate_batch(self, prompts, params, chat):
        out = []
        for p in prompts:
            doc = p.rsplit("Document: ", 1)[1]
            title = doc.split(":")[0]
            words = doc.split(":", 1)[1].split()[:6]
            texts = [" ".join(words), self.examples[0]["query"], title, ""][: params.n]
            out.append((texts, 10, 5))
        return out

    def _score_batch(self, contexts, continuations):
        return [(-float(len(c)), len(c.split())) for c in continuations]


@pytest.fixture(scope="module")
def examples(smoke_data):
    return Q.few_shot_examples(smoke_data, k=8, seed=1)


def test_examples_come_from_train_only(smoke_data, examples):
    assert 1 <= len(examples) <= 8
    eval_q = {Q.normalize(smoke_data.queries[q]) for s in ("dev", "test") for q in smoke_data.qrels[s]}
    train_q = {Q.normalize(smoke_data.queries[q]) for q in smoke_data.qrels["train"]}
    for e in examples:
        assert Q.normalize(e["query"]) in train_q and Q.normalize(e["query"]) not in eval_q
        assert e["doc_id"] in smoke_data.corpus
    assert len({e["doc_id"] for e in examples}) == len(examples)
    assert examples == Q.few_shot_examples(smoke_data, k=8, seed=1)  # seeded
    with pytest.raises(ValueError, match="1 to 8"):
        Q.few_shot_examples(smoke_data, k=9)


def test_prompt_ends_with_the_document_and_cue(smoke_data, examples):
    doc = next(iter(smoke_data.corpus))
    prompt = Q.promptagator_prompts(smoke_data, [doc], examples)[doc]
    assert prompt.endswith("\nQuery:") and prompt.count("Query:") == len(examples) + 1
    assert f"Document: {doc}" in prompt


def test_clean_labels_every_failure(smoke_data, examples):
    docs = list(smoke_data.corpus)[:3]
    llm = ScriptedLLM(smoke_data, examples)
    raw = Q.generate_queries(llm, Q.promptagator_prompts(smoke_data, docs, examples), n=4,
                             temperature=0.7)
    assert list(raw.columns) == ["doc_id", "sample", "query"] and len(raw) == 12
    cleaned = Q.clean(raw, smoke_data, examples)
    by_sample = cleaned.groupby("sample")["reason"].apply(set).to_dict()
    assert by_sample[1] <= {"copied example", "duplicate"}
    assert by_sample[2] == {"only the name"}
    assert by_sample[3] == {"empty"}
    dup = pd.concat([raw.iloc[[0]], raw.iloc[[0]]])
    assert list(Q.clean(dup, smoke_data, examples)["reason"]) [1] == "duplicate"


def test_consistency_ranks_and_acceptance_table(smoke_data, examples):
    class Oracle:  # ranks the doc named in the query first
        def search(self, queries, k):
            return {q: {text.split("|")[0]: 1.0, "other": 0.5} for q, text in queries.items()}

    df = pd.DataFrame({"doc_id": ["a", "b", "c"], "sample": 0,
                       "query": ["a|x", "zzz|y", "c|z"]})
    ranked = Q.consistency_ranks(df, Oracle(), depth=10)
    assert list(ranked["rank"]) == [1, 11, 1]
    stats = Q.acceptance_table([("generated", df), ("consistent", ranked[ranked["rank"] <= 1])])
    assert stats.loc["consistent", "queries"] == 2
    assert stats.loc["consistent", "kept of generated"] == pytest.approx(2 / 3)


def test_promptagator_end_to_end_with_stub_index(smoke_data):
    class Oracle:
        def search(self, queries, k):
            return {q: {d: 1.0} for q, d in zip(queries, docs * 10)}

    docs = list(smoke_data.corpus)[:4]
    examples = Q.few_shot_examples(smoke_data, k=4)
    llm = ScriptedLLM(smoke_data, examples)
    res = Q.promptagator(smoke_data, llm, Oracle(), docs, n_examples=4, n_samples=2,
                         consistency_k=5, ql_keep=1)
    assert list(res.stats.index) == ["generated", "cleaned", "consistent@5", "QL top-1/doc"]
    assert res.stats["queries"].is_monotonic_decreasing
    assert res.final.groupby("doc_id").size().max() == 1
    pairs = Q.to_pairs(res.final, smoke_data)
    assert pairs.column_names == ["anchor", "positive"] and len(pairs) == len(res.final)


class RecordingLLM(ScriptedLLM):
    """ScriptedLLM that keeps the prompts it was sent."""

    def __init__(self, data, examples):
        super().__init__(data, examples)
        self.prompts: list[str] = []

    def _generate_batch(self, prompts, params, chat):
        self.prompts.extend(prompts)
        return super()._generate_batch(prompts, params, chat)


def test_promptagator_on_a_binary_folder_zero_shot_and_with_your_examples(binary_data):
    """No train split: zero-shot with a warning; your own examples and instruction go into the prompt."""

    class Oracle:
        def search(self, queries, k):
            return {q: {d: 1.0} for q, d in zip(queries, docs * 10)}

    docs = sorted(binary_data.corpus)[:3]
    assert "train" not in binary_data.qrels
    llm = RecordingLLM(binary_data, [{"query": "unused"}])
    with pytest.warns(UserWarning, match="no train split"):
        res = Q.promptagator(binary_data, llm, Oracle(), docs, n_samples=2, consistency_k=5)
    assert res.examples == [] and len(llm.prompts) == len(docs)
    assert all(p.count("Document: ") == 1 for p in llm.prompts)  # zero-shot: only the target document

    mine = [{"query": "why does my kettle click off early", "doc_id": docs[-1]}]
    llm = RecordingLLM(binary_data, mine)
    res = Q.promptagator(binary_data, llm, Oracle(), docs[:2], examples=mine,
                         instruction="Write the question a customer would type.", n_samples=2, consistency_k=5)
    assert res.examples == mine
    assert all(p.startswith("Write the question a customer would type.") for p in llm.prompts)
    assert all("why does my kettle click off early" in p and p.count("Document: ") == 2 for p in llm.prompts)
    kept = res.cleaned[res.cleaned["reason"] == ""]["query"].str.lower()
    assert "why does my kettle click off early" not in set(kept)  # a copied example is dropped
