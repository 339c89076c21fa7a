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
        ("q1\td1\n", 1, None, "expected 3 columns (query-id corpus-id score) or 4"),
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


# --------------------------------------------------------------------------- the formats users have


@pytest.mark.parametrize(
    "qrels, kind",
    [
        ("query-id\tcorpus-id\tscore\nq1\td1\t2\n", "qrels (query-id corpus-id score), tab-separated, a header"),
        ("q1\td1\t2\n", "qrels (query-id corpus-id score), tab-separated, no header"),
        ("q1 0 d1 2\n", "TREC qrels (query-id iteration corpus-id score), space-separated, no header"),
        ("q1\t0\td1\t2\n", "TREC qrels (query-id iteration corpus-id score), tab-separated, no header"),
        ("q1 d1 2\n", "qrels (query-id corpus-id score), space-separated, no header"),
        ("q1\td1\t2.0\n", "grades written as floats (1.0)"),
        ("\n\nqid\tdocid\trel\r\nq1\td1\t2\r\n\n", "a header"),
    ],
)
def test_qrels_layouts_users_have_load_and_are_recorded(tmp_path, qrels, kind, caplog):
    folder = _folder(tmp_path, [GOOD_DOC], qrels_text=qrels)
    with caplog.at_level("INFO", logger="cookbook.beir"):
        data = beir.load_beir(folder)
    assert data.qrels == {"test": {"q1": {"d1": 2}}}
    assert kind in data.formats["qrels/test.tsv"] and data.formats["corpus.jsonl"] == "JSONL, UTF-8"
    assert "read qrels/test.tsv as" in caplog.text


def test_bom_and_gzip_are_read_transparently(tmp_path):
    import gzip

    folder = _folder(tmp_path, [GOOD_DOC])
    (folder / "queries.jsonl").write_bytes(b"\xef\xbb\xbf" + (folder / "queries.jsonl").read_bytes())
    for name in ("corpus.jsonl", "qrels/test.tsv"):
        (folder / (name + ".gz")).write_bytes(gzip.compress((folder / name).read_bytes()))
        (folder / name).unlink()
    data = beir.load_beir(folder)
    assert data.queries == {"q1": "eggs"} and data.qrels == {"test": {"q1": {"d1": 2}}}
    assert data.formats["queries.jsonl"] == "JSONL, UTF-8, UTF-8 byte-order mark"
    assert data.formats["corpus.jsonl.gz"] == "JSONL, UTF-8, gzip"
    assert data.formats["qrels/test.tsv.gz"].endswith("a header, UTF-8, gzip")
    (folder / "corpus.jsonl").write_text(GOOD_DOC + "\n")
    with pytest.raises(beir.DataFormatError, match="both corpus.jsonl and corpus.jsonl.gz exist"):
        beir.load_beir(folder)


def test_text_that_is_not_utf8_names_file_line_and_byte_offset(tmp_path):
    import gzip

    folder = _folder(tmp_path, [GOOD_DOC])
    (folder / "queries.jsonl").write_bytes('{"_id": "q0", "text": "ok"}\n{"_id": "q1", "text": "café"}\n'
                                           .encode("latin-1"))
    with pytest.raises(beir.DataFormatError) as err:
        beir.load_beir(folder)
    assert err.value.line == 2 and "queries.jsonl, line 2" in str(err.value)
    assert "not UTF-8 text: byte 0xe9 at byte offset 54 (column 27" in str(err.value)  # 28 + 26 bytes
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "eggs"}\n', encoding="utf-16")
    with pytest.raises(beir.DataFormatError, match="queries.jsonl, line 1: the text is UTF-16"):
        beir.load_beir(folder)
    (folder / "queries.jsonl").unlink()
    (folder / "queries.jsonl.gz").write_bytes(gzip.compress(b'{"_id": "q1", "text": "eggs"}\n' * 50)[:40])
    with pytest.raises(beir.DataFormatError, match=r"queries.jsonl.gz, line \d+: not a readable gzip file \(Compressed"):
        beir.load_beir(folder)
    (folder / "queries.jsonl.gz").write_bytes(b"plain text, not gzip\n")
    with pytest.raises(beir.DataFormatError, match="queries.jsonl.gz, line 1: not a readable gzip file"):
        beir.load_beir(folder)


def test_empty_texts_warn_with_count_and_ids_or_fail_when_strict(tmp_path):
    docs = [GOOD_DOC] + [f'{{"_id": "e{i}", "title": "", "text": " "}}' for i in range(7)]
    folder = _folder(tmp_path, docs)
    with pytest.warns(beir.EmptyTextWarning, match=r"7 documents with empty text \(first: 'e0', 'e1', "
                                                   r"'e2', 'e3', 'e4', \.\.\.\)"):
        data = beir.load_beir(folder)
    assert len(data.corpus) == 8
    with pytest.raises(beir.DataFormatError) as err:
        beir.load_beir(folder, strict=True)
    assert (err.value.line, err.value.field) == (2, "text") and "empty text (7 documents in all)" in str(err.value)
    folder = _folder(tmp_path, [GOOD_DOC], queries_lines=['{"_id": "q1", "text": ""}'])
    with pytest.warns(beir.EmptyTextWarning, match="1 queries with empty text"):
        beir.load_beir(folder)


@pytest.mark.parametrize(
    "qrels, line, field, message",
    [
        ("q1\t0\td1\t1.5\n", 1, "score", "grade must be an integer, got '1.5' (not a whole number"),
        ("q1 0 d1 1\nq1 d1 1\n", 2, None, "3 columns, but line 1 has 4: one file holds one layout"),
        ("q1\td1\t1\nq1\td1\t2\n", 2, "score", "'q1', 'd1' judged twice: grade 2 here, 1 on line 1"),
        ("q1,d1,1\n", 1, None, "it holds commas"),
        ("q1\td1\tnan\n", 1, "score", "grade must be an integer, got 'nan'"),
        ("q1 0 d1 -2\n", 1, "score", "TREC's negative grades"),
        ("query-id\tcorpus-id\tscore\n", None, None, "no judgements (only a header line)"),
        ("", None, None, "no judgements"),
    ],
)
def test_bad_qrels_layouts_name_file_line_and_field(tmp_path, qrels, line, field, message):
    folder = _folder(tmp_path, [GOOD_DOC])
    (folder / "qrels" / "test.tsv").write_text(qrels)
    with pytest.raises(beir.DataFormatError) as err:
        beir.load_beir(folder)
    assert (err.value.line, err.value.field) == (line, field)
    assert "qrels/test.tsv" in str(err.value) and message in str(err.value)


def test_missing_and_misplaced_files_say_what_is_there(tmp_path):
    folder = _folder(tmp_path, [GOOD_DOC])
    (folder / "corpus.jsonl").rename(folder / "corpus.json")
    with pytest.raises(beir.DataFormatError, match=r"corpus.jsonl: file not found \(found corpus.json: "):
        beir.load_beir(folder)
    (folder / "corpus.json").rename(folder / "corpus.jsonl")
    (folder / "qrels" / "test.tsv").rename(folder / "qrels.tsv")
    with pytest.raises(beir.DataFormatError, match=r"qrels: no qrels/\*.tsv file \(found qrels.tsv: move it"):
        beir.load_beir(folder)
    (folder / "qrels.tsv").rename(folder / "qrels" / "test.tsv")
    (folder / "qrels" / "test.txt").write_text("q1 0 d1 1\n")
    with pytest.raises(beir.DataFormatError, match="two qrels files for split 'test': test.tsv and test.txt"):
        beir.load_beir(folder)
    (folder / "qrels" / "test.txt").unlink()
    with pytest.raises(beir.DataFormatError, match=r"qrels/dev.tsv: file not found \(qrels splits here: test\)"):
        beir.load_beir(folder, splits=("dev",))
    (folder / "manifest.json").write_text("{oops")
    with pytest.raises(beir.DataFormatError, match="manifest.json, line 1: invalid JSON"):
        beir.load_beir(folder)


def test_wrong_types_empty_and_unreadable_files(tmp_path):
    folder = _folder(tmp_path, [GOOD_DOC, '{"_id": "d2", "title": 3, "text": "y"}'])
    with pytest.raises(beir.DataFormatError, match="corpus.jsonl, line 2: field 'title': expected a string or null"):
        beir.load_beir(folder)
    folder = _folder(tmp_path, [GOOD_DOC, '{"_id": "d2", "title": null, "text": "y"}'])
    assert beir.load_beir(folder).corpus["d2"]["title"] == ""
    (folder / "queries.jsonl").write_text("\n")
    with pytest.raises(beir.DataFormatError, match="queries.jsonl: no queries"):
        beir.load_beir(folder)
    (folder / "queries.jsonl").unlink()
    (folder / "queries.jsonl").mkdir()
    with pytest.raises(beir.DataFormatError, match="queries.jsonl: cannot read the file"):
        beir.load_beir(folder)
    (folder / "queries.jsonl").rmdir()
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "eggs"}\n"just a string"\n')
    with pytest.raises(beir.DataFormatError, match="queries.jsonl, line 2: expected a JSON object, got str"):
        beir.load_beir(folder)
