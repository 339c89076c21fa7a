"""``python -m cookbook check``: what a folder holds, which recipes run on it, exit codes."""

import shutil

import pytest

from cookbook import beir, check, cli
from cookbook.config import DATA_DIR

BINARY = DATA_DIR / "fixtures" / "binary_beir"
TINY = DATA_DIR / "fixtures" / "tiny_beir"


def _words(texts):
    return [len(t.split()) for t in texts]


def test_binary_fixture_is_checked_with_the_embedder_tokenizer(capsys):
    assert cli.main(["check", "--data", str(BINARY)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# binary_beir: loadable")
    assert "qrels/test.tsv: qrels (query-id corpus-id score), tab-separated, a header, UTF-8" in out
    assert "documents: 240 (240 with a title); empty texts: 0; duplicate texts: 0" in out
    assert "label levels: [1] (binary" in out and "  test: grade 1: 60" in out
    assert "graph edges: 720 (same_device 480, same_symptom 240)" in out
    assert "tokens of the default embedder's tokenizer" in out or "whitespace tokens" in out
    assert "  scincl        yes     720 graph edges" in out
    assert "  bixse         partly  no train split" in out
    assert set(check.RECIPE_NEEDS) == {"promptagator", "customir", "ssra", "bixse", "lce", "scincl", "revela"}


def test_graded_folder_with_train_split_and_no_graph(tmp_path):
    shutil.copytree(TINY, tmp_path / "tiny")
    (tmp_path / "tiny" / "corpus.jsonl").open("a").write('{"_id": "blank", "title": "", "text": " "}\n')
    with pytest.warns(beir.EmptyTextWarning):
        stats = check.inspect(check.load(tmp_path / "tiny"), tokenize=_words)
    fit = {name: (status, why) for name, status, why in check.recipe_fit(stats)}
    assert stats["levels"] == [1, 2, 3] and stats["empty_documents"] == 1 and stats["queries_per_split"]
    assert fit["ssra"][0] == fit["bixse"][0] == "yes"
    assert fit["scincl"] == ("no", "no graph: add edges.jsonl (source, target, type) linking related documents")
    assert check.suggest(stats)[0].startswith("graded labels with a train split: start with bixse")
    text = check.format_report(stats, warned=["corpus.jsonl: 1 documents with empty text"])
    assert "graph edges: none (no edges.jsonl)" in text and "warnings:\n  corpus.jsonl: 1 documents" in text


def test_no_test_split_makes_every_recipe_partial(tmp_path):
    shutil.copytree(TINY, tmp_path / "tiny")
    (tmp_path / "tiny" / "qrels" / "test.tsv").unlink()
    stats = check.inspect(check.load(tmp_path / "tiny"), tokenize=_words)
    assert {status for _, status, _ in check.recipe_fit(stats)} == {"partly", "no"}
    assert check.suggest(stats)[0].startswith("no test split")


def test_broken_folder_exits_2_naming_file_line_and_field(tmp_path, capsys):
    shutil.copytree(BINARY, tmp_path / "broken")
    (tmp_path / "broken" / "qrels" / "test.tsv").write_text("q000\toven/leak\t1\nq001\toven/overheat\thigh\n")
    assert cli.main(["check", "--data", str(tmp_path / "broken")]) == 2
    err = capsys.readouterr().err
    assert "qrels/test.tsv, line 2: field 'score': grade must be an integer, got 'high'" in err
    assert cli.main(["check", "--data", str(tmp_path / "nowhere")]) == 2
    assert "corpus.jsonl: file not found" in capsys.readouterr().err
    assert cli.main(["check", "--data", str(BINARY / "corpus.jsonl")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_whitespace_fallback_when_no_tokenizer(monkeypatch):
    from cookbook import models

    def unavailable(role):
        raise OSError("not here")

    monkeypatch.setattr(models, "resolve", unavailable)
    tokenize, note = check._tokenizer()
    assert note.startswith("whitespace tokens") and tokenize(["a b c"]) == [3]


def test_apidocs_is_the_built_in_corpus(smoke_data, monkeypatch):
    from cookbook import corpus

    monkeypatch.setattr(corpus, "load_apidocs", lambda: smoke_data)
    data = check.load("apidocs")
    stats = check.inspect(data, tokenize=_words)
    assert stats["formats"] == {"(built in)": "API-docs corpus harvested from the installed packages"}
    assert stats["graph"] and {"train", "test"} <= set(stats["queries_per_split"])
