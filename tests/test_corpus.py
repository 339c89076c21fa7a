import json
import shutil

import pytest

from cookbook import corpus

DOC = """Compute the arithmetic mean.

Parameters
----------
a : array_like
    Values.

See Also
--------
average : Weighted average
:func:`std`, var
numpy.nanmean : Mean that ignores NaNs,
    a second line of description.

Notes
-----
Nothing here.
"""


def test_see_also_is_split_off_and_parsed():
    text, block = corpus.split_see_also(DOC)
    assert "See Also" not in text and "Weighted average" not in text
    assert "Notes" in text and "Parameters" in text
    assert corpus.parse_see_also(block) == [
        (["average"], "Weighted average"),
        (["std", "var"], ""),
        (["numpy.nanmean"], "Mean that ignores NaNs, a second line of description."),
    ]


def test_markup_is_cleaned_from_queries():
    assert corpus.clean_markup("Like :func:`~numpy.mean` but `nan`-aware") == "Like numpy.mean but nan-aware"


def test_every_query_has_one_answer_graded_three(smoke_data):
    for split, rows in smoke_data.qrels.items():
        assert rows, f"split {split} is empty"
        for qid, grades in rows.items():
            assert [d for d, g in grades.items() if g == 3] == [smoke_data.query_meta[qid]["target"]]
            assert set(grades.values()) <= {1, 2, 3}
            assert set(grades) <= set(smoke_data.corpus)


def test_graph_has_every_edge_type_and_only_corpus_nodes(smoke_data):
    kinds = {k for _, _, k in smoke_data.graph.edges(keys=True)}
    assert {"contains", "see_also", "mentions", "same_name"} <= kinds <= set(corpus.EDGE_TYPES)
    assert set(smoke_data.graph.nodes) == set(smoke_data.corpus)


def test_no_evaluation_query_or_edge_reaches_training(smoke_data):
    norm = lambda s: " ".join(s.lower().split())  # noqa: E731
    train = {norm(smoke_data.queries[q]) for q in smoke_data.qrels["train"]}
    evaluation = {q for s in ("dev", "test") for q in smoke_data.qrels[s]}
    assert evaluation and not any(norm(smoke_data.queries[q]) in train for q in evaluation)
    graph = smoke_data.training_graph()
    pairs = smoke_data.eval_pairs
    assert pairs
    for s, t in pairs:
        assert not graph.has_edge(s, t) and not graph.has_edge(t, s)
        if s in smoke_data.graph and t in smoke_data.graph:
            assert smoke_data.graph.has_edge(s, t)  # the full graph does hold it
    # every docstring the description was written in is blocked, not only the first
    multi = [m for m in smoke_data.query_meta.values() if m["split"] != "train" and len(m["sources"]) > 1]
    assert all((s, m["target"]) in pairs for m in multi for s in m["sources"])
    # the "See Also" sections the queries were copied from are gone from every document
    for doc in smoke_data.corpus.values():
        assert corpus.split_see_also(doc["text"])[1] == ""


def test_leak_check_fails_on_a_leak(smoke_data):
    import copy

    leaky = copy.copy(smoke_data)
    leaky.qrels = dict(smoke_data.qrels)
    train_qid = next(iter(smoke_data.qrels["train"]))
    test_qid = next(iter(smoke_data.qrels["test"]))
    leaky.queries = {**smoke_data.queries, train_qid: smoke_data.queries[test_qid]}
    with pytest.raises(AssertionError, match="also in train"):
        corpus.assert_no_eval_leak(leaky)


def test_manifest_and_deterministic_splits(smoke_data):
    m = smoke_data.manifest
    assert m["checksum"] == corpus.checksum(smoke_data)
    assert set(m["versions"]) >= {"numpy", "scipy", "pandas", "networkx", "torch", "python"}
    assert len(smoke_data.corpus) == corpus.DEFAULT_MAX_DOCS["smoke"]


def test_cache_is_rebuilt_when_its_contents_change(tmp_path):
    first = corpus.load_apidocs(max_docs=120, cache_dir=tmp_path)
    folder = next((tmp_path / "apidocs").iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["checksum"] == first.manifest["checksum"]
    # tamper with a document: the checksum no longer matches, so the cache is rebuilt
    lines = (folder / "corpus.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row["text"] = "tampered"
    (folder / "corpus.jsonl").write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    again = corpus.load_apidocs(max_docs=120, cache_dir=tmp_path)
    assert again.corpus == first.corpus and again.qrels == first.qrels
    assert "tampered" not in (folder / "corpus.jsonl").read_text()
    shutil.rmtree(tmp_path / "apidocs")


def test_full_harvest_is_a_realistic_size():
    docs, aliases, blocks, edges = corpus.harvest()
    assert {"contains", "inherits"} <= {kind for _, _, kind in edges}
    assert len(docs) > 3000
    assert sum(len(d["text"].split()) for d in docs.values()) > 500_000
    assert len(blocks) > 0.3 * sum(d["package"] != "stdlib" for d in docs.values()) * 0.5
