import json

from cookbook import bench, cli


def test_results_table_reads_results_files():
    table = cli.results_table({"10_x": {"profile": "laptop", "metrics": {
        "BM25": {"nDCG@10": 0.5, "R@10": 0.6, "R@100": 0.9, "RR@10": 0.4}, "cmp": {"diff": 0.1}}}})
    assert "| 10_x | laptop | BM25 | 0.500 | 0.600 | 0.900 | 0.400 |" in table
    assert "cmp" not in table


def test_bench_table_format():
    text = bench.format_table([{"part": "p", "name": "n", "value": 1234.5, "unit": "x/s", "note": ""}])
    assert "| p | n | 1,234 | x/s |" in text or "| p | n | 1,235 | x/s |" in text


def test_build_command_prints_manifest(capsys):
    assert cli.main(["build", "--profile", "smoke"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["documents"] == 400 and len(out["checksum"]) == 64


def test_times_table_reads_run_timings(tmp_path):
    for profile, secs in (("laptop", 300.0), ("smoke", 60.0)):
        (tmp_path / profile).mkdir()
        (tmp_path / profile / "timings.json").write_text(json.dumps(
            {"profile": profile, "notebooks": [{"notebook": "10_x.ipynb", "seconds": secs, "ok": True}]}))
    table = cli.times_table(tmp_path)
    assert "| notebook | laptop | smoke |" in table and "| 10_x.ipynb | 5.0 min | 1.0 min |" in table


def test_other_numbers_table_compacts_comparisons():
    table = cli.other_numbers_table({"71_x": {"profile": "smoke", "metrics": {
        "exam_error": 0.0413, "cmp": {"metric": "nDCG@10", "diff": 0.05, "t_p": 0.01, "ci_low": 0.01,
                                      "ci_high": 0.09, "queries": 40}}}})
    assert "| 71_x | smoke | exam_error | 0.0413 |" in table
    assert "+0.0500 (95% CI +0.0100 to +0.0900; paired t p=0.01; 40 queries)" in table


def test_tables_read_systems_and_comparisons_grouped_one_level_down():
    summary = {"nDCG@10": 0.61, "R@10": 0.59, "R@100": 0.88, "RR@10": 0.63}
    cmp = {"metric": "R@10", "diff": 0.02, "t_p": 0.03, "ci_low": 0.001, "ci_high": 0.04, "queries": 444}
    results = {"21_x": {"profile": "laptop", "metrics": {"test": {"base": summary, "tuned": summary},
                                                        "vs base": {"tuned": cmp}}}}
    table = cli.results_table(results)
    assert "| 21_x | laptop | base | 0.610 |" in table and "| 21_x | laptop | tuned | 0.610 |" in table
    other = cli.other_numbers_table(results)
    assert "| 21_x | laptop | vs base / tuned: R@10 difference | +0.0200 (95% CI +0.0010 to +0.0400" in other
    assert "base" not in other.replace("vs base", "")
