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
