"""Every recipe through the CLI on a plain BEIR folder: binary labels, no train split, a graph."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cookbook import beir, cli, evaluate, models, recipes

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "data" / "fixtures" / "binary_beir"

# Sizes that make each recipe run in seconds with the tiny random models. The tiny embedder
# ranks at random, so round-trip consistency is opened to the whole corpus.
TINY = {
    "promptagator": {"docs": 16, "n_samples": 2, "consistency_k": 300, "batch_size": 4},
    "customir": {"docs": 16, "n_samples": 2, "consistency_k": 300, "range_max": 5, "batch_size": 4},
    "scincl": {"epochs": 2, "steps": 2, "batch_size": 4, "max_anchors": 40},
    "ssra": {"n_docs": 8, "rounds": 1, "score_steps": 2, "lora_steps": 1, "per_level": 8,
               "batch_size": 4, "max_queries": 16},
    "bixse": {"n_docs": 12, "n_samples": 2, "consistency_k": 300, "batch_size": 4},
    "lce": {"n_docs": 8, "n_samples": 2, "group_size": 4, "label_depth": 6, "batch_size": 2,
                 "rerank_depth": 5, "max_length": 64},
    "revela": {"steps": 2, "batch_size": 4, "chunk_tokens": 32, "max_chunks": 64},
}


@pytest.fixture
def tiny_models(monkeypatch, tmp_path):
    monkeypatch.setenv("COOKBOOK_MODEL_EMBEDDER", str(models.tiny_embedder_folder()))
    monkeypatch.setenv("COOKBOOK_MODEL_GENERATOR", str(models.tiny_causal_lm()))
    monkeypatch.setenv("COOKBOOK_LLM_CACHE", str(tmp_path / "llm.sqlite"))


def test_fixture_is_what_its_script_writes(tmp_path):
    sys.path.insert(0, str(FIXTURE.parent))
    try:
        import make_binary_beir
    finally:
        sys.path.pop(0)
    fresh = make_binary_beir.write(tmp_path / "binary_beir")
    for path in sorted(FIXTURE.rglob("*.*")):
        if path.suffix in (".jsonl", ".tsv"):
            assert path.read_bytes() == (fresh / path.relative_to(FIXTURE)).read_bytes(), path.name
    data = beir.load_beir(FIXTURE)
    assert set(data.qrels) == {"test"} and len(data.corpus) >= 200
    assert {g for docs in data.qrels["test"].values() for g in docs.values()} == {1}
    assert data.graph.number_of_edges() > 0 and set(data.graph.nodes) == set(data.corpus)


@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_every_recipe_runs_on_the_binary_folder_through_the_cli(name, tiny_models, tmp_path, capsys):
    out = tmp_path / name
    sets = [f"{k}={json.dumps(v)}" for k, v in TINY[name].items()]
    code = cli.main(["recipe", name, "--data", str(FIXTURE), "--out", str(out),
                     *[a for s in sets for a in ("--set", s)]])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["recipe"] == name and report["data"] == "binary_beir"
    # one report format: the verdict first, the same measures before and after, time, LLM usage
    assert list(report)[0] == "verdict"
    assert report["verdict"].split(" than ")[0].split(" from ")[0] in (
        "better", "worse", "no significant difference")
    assert tuple(report["before"]) == tuple(report["after"]) == recipes.common.MEASURES  # binary labels
    assert all(0.0 <= v <= 1.0 for v in report["after"].values())
    assert report["comparison"]["metric"] == "nDCG@10" and report["comparison"]["queries"] > 0
    assert report["seconds"] > 0 and isinstance(report["llm_usage"], dict)
    md = (out / "report.md").read_text()
    assert md.startswith(f"**Verdict: {report['verdict']}**") and f"# Recipe `{name}` on `binary_beir`" in md
    assert ("WORSE" in capsys.readouterr().err) == ("worse than" in report["verdict"])  # test split or dev check
    if name == "ssra":  # binary labels: two levels, said in the report
        assert report["n_levels"] == 2 and report["level_mapping"]["qrel grade -> level"] == {"0": 0, "1": 1}
        assert report["level_mapping"]["how"].startswith("binary labels")
    if name == "lce":
        from sentence_transformers import CrossEncoder

        scores = CrossEncoder(str(out / "model")).predict([("kettle leaks", "A kettle that leaks water")])
        assert len(scores) == 1
    else:
        from sentence_transformers import SentenceTransformer

        assert SentenceTransformer(str(out / "model")).encode(["kettle leaks"]).shape[0] == 1


def test_recipe_report_on_binary_labels_uses_threshold_one(tiny_models, tmp_path):
    report = recipes.run("promptagator", FIXTURE, tmp_path / "p", **TINY["promptagator"])
    assert report["relevance"] == {"max_grade": 1, "recall": 1, "top": 1}
    assert report["train_pairs"] >= 2 and report["few_shot_examples"] == 0  # zero-shot: no train split
    assert report["llm_usage"]["calls"] > 0


def test_bad_input_gets_a_clear_error_and_keeps_what_was_computed(tiny_models, tmp_path, capsys):
    assert cli.main(["recipe", "nonsense", "--data", str(FIXTURE), "--out", str(tmp_path / "x")]) == 2
    assert "unknown recipe 'nonsense'; choose one of promptagator" in capsys.readouterr().err
    assert cli.main(["recipe", "promptagator", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "not a folder" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(FIXTURE, broken)
    with (broken / "qrels" / "test.tsv").open("a") as handle:
        handle.write("q001\tkettle/leak\tvery\n")
    assert cli.main(["recipe", "promptagator", "--data", str(broken), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "test.tsv, line 62: field 'score': grade must be an integer, got 'very'" in err
    (broken / "qrels" / "test.tsv").write_text((FIXTURE / "qrels" / "test.tsv").read_text())
    (broken / "edges.jsonl").write_text('{"source": "kettle/leak", "target": "nowhere", "type": "x"}\n')
    assert cli.main(["recipe", "scincl", "--data", str(broken), "--out", str(tmp_path / "x")]) == 2
    assert "edges.jsonl, line 1: field 'target': unknown document 'nowhere'" in capsys.readouterr().err
    (broken / "edges.jsonl").unlink()
    assert cli.main(["recipe", "scincl", "--data", str(broken), "--out", str(tmp_path / "x")]) == 2
    assert "has no graph: the scincl recipe needs an edges.jsonl" in capsys.readouterr().err


def test_old_recipe_names_still_run_and_say_the_new_name(tiny_models, tmp_path):
    for old, new in recipes.OLD_NAMES.items():
        with pytest.warns(FutureWarning, match=f"recipe '{old}' is now called '{new}'"):
            assert recipes.get(old) is recipes.RECIPES[new]
    with pytest.warns(FutureWarning):
        report = recipes.run("kge", FIXTURE, tmp_path / "k", **TINY["scincl"])
    assert report["recipe"] == "scincl"


def test_an_unknown_size_lists_the_recipe_sizes(tmp_path, capsys):
    assert cli.main(["recipe", "lce", "--data", str(FIXTURE), "--out", str(tmp_path / "x"),
                     "--set", "stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "recipe 'lce' has no size(s) ['stepz']" in err and "rerank_depth" in err
    assert not (tmp_path / "x").exists()  # refused before any work


def test_the_verdict_line_follows_the_paired_test(capsys):
    def cmp(diff, p):
        return {"metric": "nDCG@10", "diff": diff, "ci_low": diff - 0.01, "ci_high": diff + 0.01,
                "t_p": p, "queries": 50}

    line = recipes.common.verdict_line
    assert line({"comparison": cmp(0.03, 0.001)}).startswith("better than the base model on the test split")
    assert line({"comparison": cmp(-0.03, 0.001)}).startswith("worse than the base model")
    assert line({"comparison": cmp(0.03, 0.4)}).startswith("no significant difference from the base model")
    assert line({"data": "x"}).startswith("not measured: `x` has no test split")
    dev = {"name": "held-out chunks", "comparison": cmp(-0.02, 0.01)}
    assert "worse than it on the dev check (held-out chunks: -0.0200" in line(
        {"comparison": cmp(0.0, 1.0), "dev": dev})


def test_a_worse_model_is_said_on_stderr_too(tiny_models, tmp_path, capsys):
    data = recipes.load_data(FIXTURE)
    embedder = models.load_embedder()
    before = recipes.common.start(data, embedder)
    # the "trained" system: the base run reversed, a sure loss
    worse = {q: {d: -s for d, s in docs.items()} for q, docs in before.run.items()}
    report = recipes.common.finish("promptagator", before, embedder, tmp_path / "w", after_run=worse)
    assert report["verdict"].startswith("worse than the base model")
    assert "the trained model is WORSE" in capsys.readouterr().err


def test_a_second_run_replays_the_llm_cache(tiny_models, tmp_path):
    first = recipes.run("promptagator", FIXTURE, tmp_path / "a", **TINY["promptagator"])
    again = recipes.run("promptagator", FIXTURE, tmp_path / "b", **TINY["promptagator"])
    assert again["llm_usage"]["cache_hits"] == first["llm_usage"]["items"] > 0
    assert again["llm_usage"]["items"] == 0
    assert again["train_pairs"] == first["train_pairs"]


def test_two_process_torchrun_fine_tune_loads(tmp_path, tiny_models):
    """The same fine-tuning helper under DistributedDataParallel: 2 CPU processes, gloo."""
    out = tmp_path / "ddp"
    script = ROOT / "tests" / "ddp_fine_tune.py"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((out / "ddp.json").read_text())
    assert info["world_size"] == 2 and info["steps"] == 3
    from sentence_transformers import SentenceTransformer

    emb = SentenceTransformer(str(out / "model")).encode(["kettle leaks"])
    assert emb.shape == (1, 32)


def test_binary_evaluation_of_a_perfect_run_through_load_beir():
    data = beir.load_beir(FIXTURE)
    perfect = {q: {d: 1.0 for d in docs} for q, docs in data.qrels["test"].items()}
    summary, _ = evaluate.evaluate(perfect, data.qrels["test"], measures=tuple(evaluate.MEASURES))
    assert all(v == pytest.approx(1.0) for v in summary.values())


def test_prompts_for_e5_style_models_reach_search_and_training(tiny_models, tmp_path, monkeypatch):
    """query_prompt / document_prompt: every index the recipe builds and its training use them."""
    from cookbook import finetune, retrieval

    assert recipes.common.train_prompts({"query": "query: ", "document": "passage: "}) == {
        "anchor": "query: ", "positive": "passage: ", "negative": "passage: "}
    assert recipes.common.train_prompts({"query": None, "document": None}) is None
    seen = {"index": set(), "fit": []}
    index_init, fit = retrieval.DenseIndex.__init__, finetune.fit

    def recording_init(self, model, corpus, *args, **kwargs):
        seen["index"].add((kwargs.get("query_prompt"), kwargs.get("document_prompt")))
        index_init(self, model, corpus, *args, **kwargs)

    def recording_fit(*args, **kwargs):
        seen["fit"].append(kwargs.get("prompts"))
        return fit(*args, **kwargs)

    monkeypatch.setattr(retrieval.DenseIndex, "__init__", recording_init)
    monkeypatch.setattr(finetune, "fit", recording_fit)
    report = recipes.run("promptagator", FIXTURE, tmp_path / "p", query_prompt="query: ",
                         document_prompt="passage: ", **TINY["promptagator"])
    assert seen["index"] == {("query: ", "passage: ")}
    assert seen["fit"] == [{"anchor": "query: ", "positive": "passage: "}]  # the columns the pairs have
    assert "nDCG@10" in report["after"]
