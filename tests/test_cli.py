import json

from cookbook import bench, cli


def test_results_command_prints_the_laptop_headline_and_keeps_smoke_apart(tmp_path, monkeypatch, capsys):
    from cookbook import evaluate, results

    res = tmp_path / "results"
    (res / "smoke").mkdir(parents=True)
    cmp = {"metric": "nDCG@10", "mean_a": 0.5, "mean_b": 0.55, "diff": 0.05, "t_p": 0.01, "ci_low": 0.01,
           "ci_high": 0.09, "queries": 40}
    (res / "smoke" / "10_x.json").write_text(json.dumps({"notebook": "10_x", "metrics": {"b vs a": cmp}}))
    monkeypatch.setattr(evaluate, "RESULTS_DIR", res)
    assert cli.main(["results"]) == 0
    assert "no laptop results yet (have: smoke)" in capsys.readouterr().err
    assert cli.main(["results", "--profile", "smoke"]) == 0
    assert "| [10](notebooks/10_x.ipynb) | b vs a | nDCG@10 | 0.500 | 0.550 | +0.050 (+0.010 to +0.090) | 0.01 | 40 |" \
        in capsys.readouterr().out
    monkeypatch.setattr(evaluate, "RESULTS_DIR", tmp_path / "none")
    assert cli.main(["results"]) == 1
    assert results.load_all(tmp_path / "none") == {}


def test_bench_table_format():
    text = bench.format_table([{"part": "p", "name": "n", "value": 1234.5, "unit": "x/s", "note": ""}])
    assert "| p | n | 1,234 | x/s |" in text or "| p | n | 1,235 | x/s |" in text


def test_build_command_prints_manifest(capsys):
    assert cli.main(["build", "--profile", "smoke"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["documents"] == 400 and len(out["checksum"]) == 64
