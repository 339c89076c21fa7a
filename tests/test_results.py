"""Results tables for people (cookbook.results): headline rows, formatting, RESULTS.md, the README block."""

import json

import pytest

from cookbook import results

SUMMARY = {"nDCG@10": 0.61, "R@10": 0.59, "R@100": 0.88, "RR@10": 0.63}


def cmp(diff, p=0.003, metric="R@10"):
    return {"metric": metric, "mean_a": 0.5, "mean_b": 0.5 + diff, "diff": diff, "t_p": p, "wilcoxon_p": p,
            "ci_low": diff - 0.01, "ci_high": diff + 0.01, "queries": 444}


@pytest.mark.parametrize("value, text", [
    (10420.0, "10,420"), (1.042e4, "10,420"), (3000, "3,000"), (444, "444"), (0.545, "0.545"),
    (0.0021, "0.0021"), (0.000123, "0.00012"), (2.5, "2.5"), (12.34, "12.3"), (0.0, "0.000"),
    (None, ""), (True, "yes"), ("RotatE", "RotatE"),
])
def test_numbers_are_formatted_for_people(value, text):
    assert results.fmt_number(value) == text
    assert "e+" not in results.fmt_number(value) and "e-" not in results.fmt_number(value)


@pytest.mark.parametrize("p, text", [(0.0, "< 1e-6"), (3e-9, "< 1e-6"), (0.00042, "0.00042"), (0.07, "0.07"),
                                     (0.5, "0.50"), (None, "")])
def test_p_values(p, text):
    assert results.fmt_p(p) == text


def test_explicit_headline_rows_come_first_and_are_capped_at_five():
    rows = [results.comparison_row(f"arm {i}", cmp(0.01 * i), "base", f"arm {i}") for i in range(7)]
    payload = {"notebook": "21_x", "metrics": {"vs base": {"x": cmp(0.5)}}, "headline": rows}
    got = results.headline_rows(payload)
    assert [r["label"] for r in got] == [f"arm {i}" for i in range(5)]
    table = results.headline_table({"21_x": payload})
    assert "| [21](notebooks/21_x.ipynb) | arm 2: arm 2 vs base | R@10 | 0.500 | 0.520 | +0.020 (+0.010 to +0.030) | 0.003 | 444 |" in table


def test_rows_fall_back_to_comparisons_then_systems_then_numbers():
    assert results.headline_rows({"metrics": {"test": {"base": SUMMARY}, "vs base": {"tuned": cmp(0.02)}}})[0][
        "label"] == "vs base / tuned"
    assert results.headline_rows({"metrics": {"test": {"BM25": SUMMARY}}}) == [
        {"label": "test / BM25", "metric": "nDCG@10", "value": 0.61, "note": ""}]
    rows = results.headline_rows({"metrics": {"speedup_vs_loop": 120.5, "model": "RotatE"}})
    assert rows == [{"label": "speedup vs loop", "metric": "", "value": 120.5, "note": ""}]


def test_table_stays_under_forty_rows_for_many_notebooks():
    many = {f"{n}_x": {"metrics": {f"c{i}": cmp(0.01) for i in range(9)}} for n in range(10, 110, 10)}
    table = results.headline_table(many)
    body = table.splitlines()[2:]
    assert len(body) < 40 and len(body) >= 30
    assert all(sum(line.startswith(f"| [{n}]") for line in body) <= 5 for n in range(10, 110, 10))


def test_bad_headline_is_a_clear_error():
    with pytest.raises(results.ResultsError, match="'headline' must be a list"):
        results.headline_rows({"notebook": "x", "headline": [{"no label": 1}]})
    with pytest.raises(results.ResultsError, match="a comparison needs diff"):
        results.comparison_row("x", {"diff": 0.1})
    with pytest.raises(results.ResultsError, match="value must be a number"):
        results.value_row("x", "fast")


def write(folder, profile, name, payload):
    (folder / profile).mkdir(parents=True, exist_ok=True)
    (folder / profile / f"{name}.json").write_text(json.dumps({"notebook": name, "profile": profile, **payload}))


def test_update_files_keeps_profiles_apart(tmp_path):
    res = tmp_path / "data" / "results"
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold numbers\n<!-- results:end -->\nafter\n")
    write(res, "smoke", "10_x", {"metrics": {"test": {"BM25": SUMMARY}, "dense vs BM25": cmp(-0.02, 1e-8)}})
    written = results.update_files(tmp_path, profile="laptop", results_dir=res, runs_dir=tmp_path / "runs")
    assert "readme_results" not in written and "old numbers" in readme.read_text()  # smoke never replaces laptop
    report = (tmp_path / "RESULTS.md").read_text()
    assert "## Profile `smoke`" in report and "< 1e-6" in report and "| BM25 | 0.610 |" in report.replace(
        "test / BM25", "BM25")
    write(res, "laptop", "10_x", {"metrics": {"dense vs BM25": cmp(0.03)}, "timings": {"encode": 12.5}})
    written = results.update_files(tmp_path, profile="laptop", results_dir=res, runs_dir=tmp_path / "runs")
    text = readme.read_text()
    assert written["readme_results"] == "laptop" and "old numbers" not in text and text.endswith("after\n")
    assert "1 headline rows of 1 notebooks" in text and "[RESULTS.md](RESULTS.md)" in text
    assert "+0.030 (+0.020 to +0.040)" in (tmp_path / "RESULTS.md").read_text()
    assert written["figure"] == "docs/img/results.png" and (tmp_path / "docs" / "img" / "results.png").stat().st_size > 0
    assert "## Profile `laptop`" in (tmp_path / "RESULTS.md").read_text()
    (tmp_path / "notebooks").mkdir()
    for name in ("10_x", "20_y"):
        (tmp_path / "notebooks" / f"{name}.ipynb").write_text("{}")
    results.update_files(tmp_path, profile="laptop", results_dir=res, runs_dir=tmp_path / "runs")
    assert "No `laptop` results yet for: `20_y`" in readme.read_text()


def test_the_readme_block_is_short_and_readable():
    from cookbook.config import ROOT

    text = (ROOT / "README.md").read_text()
    block = text.split(results.README_START, 1)[1].split(results.README_END, 1)[0]
    assert "[RESULTS.md](RESULTS.md)" in block and "![" in block  # the figure and the link, no long table
    assert not [line for line in block.splitlines() if line.startswith("| ")]


def test_learning_path_titles_are_short():
    from cookbook.config import ROOT

    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert len(results.notebook_title(path).split()) <= 15, path.name


def test_times_table_reads_run_timings(tmp_path):
    for profile, secs in (("laptop", 300.0), ("smoke", 60.0)):
        (tmp_path / profile).mkdir()
        (tmp_path / profile / "timings.json").write_text(json.dumps(
            {"profile": profile, "notebooks": [{"notebook": "10_x.ipynb", "seconds": secs, "ok": True}]}))
    table = results.times_table(tmp_path)
    assert "| notebook | laptop | smoke |" in table and "| 10_x.ipynb | 5.0 min | 1.0 min |" in table
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    (nbs / "10_x.ipynb").write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": ["# Explore x\n", "more"]}]}))
    (nbs / "20_y.ipynb").write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": "# Train y"}]}))
    table = results.times_table(tmp_path, nbs)
    assert "| [10](notebooks/10_x.ipynb) | Explore x | 5.0 min | 1.0 min |" in table
    assert "| [20](notebooks/20_y.ipynb) | Train y |  |  |" in table  # not run yet: listed, no time


def test_guide_block_renders_notebook_90s_table_or_says_how_to_make_it():
    from cookbook import results

    payload = {"queries": 252, "decision_guide": [
        {"you have": "graded labels", "start with": "BiXSE", "nDCG@10 difference": 0.0174, "95% CI": "(0.0045, 0.031)",
         "p": 0.0096},
        {"you have": "click logs", "start with": "two-tower (70-71)", "nDCG@10 difference": None, "95% CI": "None",
         "p": None}]}
    block = results.guide_block(payload, "laptop")
    assert "on 252 test queries" in block
    assert "| graded labels | BiXSE | +0.017 | 0.0096 |" in block
    assert "| click logs | two-tower (70-71) |  |  |" in block
    assert "No `smoke` decision guide yet" in results.guide_block(None, "smoke")
    payload["decision_guide"][0]["why"] = "BiXSE: +0.017, the largest significant gain"
    payload["data_curves"] = {"BiXSE": [{"examples": 100, "unit": "labelled pairs", "diff": 0.01, "ci_low": -0.002,
                                         "ci_high": 0.02, "p": 0.1}]}
    block = results.guide_block(payload, "laptop")
    assert "| graded labels | BiXSE | +0.017 | 0.0096 | BiXSE: +0.017, the largest significant gain |" in block
    assert "- BiXSE: 100 labelled pairs: +0.010 (-0.002 to +0.020, p 0.10)" in block
    text = "a\n<!-- guide:start -->\nold\n<!-- guide:end -->\nb"
    new = results.replace_block(text, results.GUIDE_START, results.GUIDE_END, block)
    assert "old" not in new and "| graded labels | BiXSE |" in new and new.endswith("b")
