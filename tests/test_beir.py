import json

import pytest

from cookbook import beir
from cookbook.config import DATA_DIR

FIXTURE = DATA_DIR / "fixtures" / "tiny_beir"


def _folder(tmp_path, corpus_lines, queries_lines=None, qrels_text=None):
    (tmp_path / "qrels").mkdir(exist_ok=True)
    (tmp_path / "corpus.jsonl").write_text("\n".join(corpus_lines) + "\n")
    (tmp_path / "queries.jsonl").write_text("\n".join(queries_lines or ['{"_id": "q1", "text": "eggs"}']) + "\n")
    (tmp_path / "qrels" / "test.tsv").write_text(qrels_text or "query-id\tcorpus-id\tscore\nq1\td1\t2\n")
    return tmp_path


GOOD_DOC = '{"_id": "d1", "title": "t", "text": "boil eggs"}'


def test_fixture_loads_with_graded_splits():
    data = beir.load_beir(FIXTURE)
    assert len(data.corpus) == 8 and set(data.qrels) == {"test", "train"}
    assert data.qrels["test"]["q1"] == {"d1": 3, "d2": 1}
    assert data.doc_text("d1").startswith("Boiling an egg: ")


def test_round_trip_through_files_and_datasets(tmp_path):
    data = beir.load_beir(FIXTURE)
    again = beir.load_beir(beir.write_beir(data, tmp_path / "copy"))
    assert (again.corpus, again.queries, again.qrels) == (data.corpus, data.queries, data.qrels)
    hf = beir.to_hf(data)
    back = beir.from_hf(hf["corpus"], hf["queries"], {s: hf[f"qrels-{s}"] for s in data.qrels})
    assert back.qrels == data.qrels and back.queries == data.queries
    assert {k: v["text"] for k, v in back.corpus.items()} == {k: v["text"] for k, v in data.corpus.items()}


@pytest.mark.parametrize(
    "corpus_lines, line, field, message",
    [
        ([GOOD_DOC, '{"_id": "d2", "text": '], 2, None, "invalid JSON"),
        ([GOOD_DOC, '{"title": "x", "text": "y"}'], 2, "_id", "missing"),
        ([GOOD_DOC, '{"_id": "d2", "title": "x"}'], 2, "text", "missing"),
        ([GOOD_DOC, GOOD_DOC], 2, "_id", "duplicate id 'd1' (first on line 1)"),
        ([GOOD_DOC, '{"_id": 7, "text": "y"}'], 2, "_id", "expected a string"),
        ([GOOD_DOC, "[1, 2]"], 2, None, "expected a JSON object"),
    ],
)
def test_bad_corpus_names_file_line_and_field(tmp_path, corpus_lines, line, field, message):
    folder = _folder(tmp_path, corpus_lines)
    with pytest.raises(beir.DataFormatError) as err:
        beir.load_beir(folder)
    assert err.value.line == line and err.value.field == field
    assert "corpus.jsonl" in str(err.value) and f"line {line}" in str(err.value) and message in str(err.value)


def test_empty_corpus(tmp_path):
    folder = _folder(tmp_path, [""])
    with pytest.raises(beir.DataFormatError, match="corpus.jsonl: empty corpus"):
        beir.load_beir(folder)


@pytest.mark.parametrize(
    "qrels, line, field, message",
    [
        ("query-id\tcorpus-id\tscore\nq1\td1\thigh\n", 2, "score", "grade must be an integer, got 'high'"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1.5\n", 2, "score", "grade must be an integer"),
        ("q1\td1\t1\nq1\td9\t1\n", 2, "corpus-id", "unknown document 'd9'"),
        ("q1\td1\t1\nq7\td1\t1\n", 2, "query-id", "unknown query 'q7'"),
        ("q1\td1\n", 1, None, "expected 3 tab-separated columns"),
        ("q1\td1\t-1\n", 1, "score", "grade must be >= 0"),
    ],
)
def test_bad_qrels_name_file_line_and_field(tmp_path, qrels, line, field, message):
    folder = _folder(tmp_path, [GOOD_DOC], qrels_text=qrels)
    with pytest.raises(beir.DataFormatError) as err:
        beir.load_beir(folder)
    assert err.value.line == line and err.value.field == field
    assert "test.tsv" in str(err.value) and message in str(err.value)


def test_bad_queries_and_missing_files(tmp_path):
    folder = _folder(tmp_path, [GOOD_DOC], queries_lines=['{"_id": "q1", "text": "a"}', '{"_id": "q1", "text": "b"}'])
    with pytest.raises(beir.DataFormatError, match=r"queries.jsonl, line 2: field '_id': duplicate id"):
        beir.load_beir(folder)
    with pytest.raises(beir.DataFormatError, match="file not found"):
        beir.load_beir(tmp_path / "nowhere")


def test_hf_rows_are_validated_too():
    from datasets import Dataset

    corpus = Dataset.from_list([{"_id": "d1", "title": "", "text": "x"}])
    queries = Dataset.from_list([{"_id": "q1", "text": "y"}])
    bad = Dataset.from_list([{"query-id": "q1", "corpus-id": "d1", "score": "very"}])
    with pytest.raises(beir.DataFormatError, match="qrels-test, line 1: field 'score'"):
        beir.from_hf(corpus, queries, {"test": bad})
    ok = Dataset.from_list([{"query-id": "q1", "corpus-id": "d1", "score": 2}])
    assert beir.from_hf(corpus, queries, {"test": ok}).qrels == {"test": {"q1": {"d1": 2}}}


def test_query_meta_round_trips(tmp_path, smoke_data):
    folder = beir.write_beir(smoke_data, tmp_path / "apidocs")
    again = beir.load_beir(folder)
    assert again.query_meta == json.loads(json.dumps(smoke_data.query_meta))
    assert again.eval_pairs == smoke_data.eval_pairs


def test_edges_jsonl_becomes_the_graph_and_leak_guards_warn_when_blind(tmp_path):
    import shutil
    import warnings

    from cookbook.beir import DataFormatError, load_beir, write_beir
    from cookbook.corpus import assert_no_eval_leak

    data = load_beir("data/fixtures/binary_beir")
    assert data.graph.number_of_edges() == 720
    assert {k for _, _, k in data.graph.edges(keys=True)} == {"same_device", "same_symptom"}
    with pytest.warns(UserWarning, match="leak guard has no edges to block"):
        assert data.eval_pairs == set()
    with pytest.warns(UserWarning, match="nothing to compare"):
        assert_no_eval_leak(data)
    copy = write_beir(data, tmp_path / "copy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = load_beir(copy)
    assert sorted(again.graph.edges(keys=True)) == sorted(data.graph.edges(keys=True))
    broken = tmp_path / "broken"
    shutil.copytree("data/fixtures/binary_beir", broken)
    (broken / "edges.jsonl").write_text('{"source": "kettle/leak", "type": "x"}\n')
    with pytest.raises(DataFormatError, match="edges.jsonl, line 1: field 'target': missing"):
        load_beir(broken)
