"""Your own click log: loading with file/line/column errors, the report, the CLI, the fixture."""

import gzip
import sys

import numpy as np
import pandas as pd
import pytest

from cookbook import cli, clicklog
from cookbook.beir import DataFormatError
from cookbook.config import DATA_DIR

FIXTURE = DATA_DIR / "fixtures" / "click_log.csv"
GOOD = "session,query,document,position,click,feat_x\ns1,q1,d1,1,1,0.5\ns1,q1,d2,2,0,0.1\ns2,q1,d2,1,0,0.1\n"


def _write(tmp_path, text, name="log.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_fixture_is_what_its_script_writes(tmp_path):
    sys.path.insert(0, str(FIXTURE.parent))
    try:
        import make_click_log
    finally:
        sys.path.pop(0)
    assert make_click_log.write(tmp_path / "log.csv").read_bytes() == FIXTURE.read_bytes()
    log = clicklog.load_click_log(FIXTURE)
    assert len(log) == 360 and log.attrs["feature_cols"] == ["feat_f0", "feat_f1"]
    assert set(log["click"].unique()) <= {0, 1} and log["position"].between(1, 6).all()


def test_csv_tsv_gzip_parquet_bom_and_aliases_load_alike(tmp_path):
    base = clicklog.load_click_log(_write(tmp_path, GOOD))
    assert list(base.columns[:5]) == ["session", "query", "doc", "position", "click"]
    assert base["position"].tolist() == [1, 2, 1] and base["feat_x"].dtype == np.float64
    tsv = _write(tmp_path, GOOD.replace(",", "\t"), "log.tsv")
    gz = tmp_path / "log.csv.gz"
    gz.write_bytes(gzip.compress(("\ufeff" + GOOD.replace("document", "doc").replace(",1,1,", ",1.0,true,"))
                                 .encode()))
    parquet = tmp_path / "log.parquet"
    base.rename(columns={"doc": "document"}).to_parquet(parquet)
    for path in (tsv, gz, parquet):
        again = clicklog.load_click_log(path)
        pd.testing.assert_frame_equal(again[base.columns].reset_index(drop=True), base, check_dtype=False)


@pytest.mark.parametrize(
    "text, line, column, message",
    [
        ("query,position,click\nq1,1,1\n", 1, "document", "missing column (columns here: query, position, click)"),
        (GOOD.replace("s1,q1,d2,2,", "s1,q1,d2,two,"), 3, "position", "position must be an integer, got 'two'"),
        (GOOD.replace("s1,q1,d2,2,", "s1,q1,d2,2.5,"), 3, "position", "position must be an integer, got 2.5"),
        (GOOD.replace("s2,q1,d2,1,", "s2,q1,d2,0,"), 4, "position", "position must be >= 1"),
        (GOOD.replace("s1,q1,d2,2,0,", "s1,q1,d2,2,2,"), 3, "click", "click must be 0 or 1, got 2"),
        (GOOD.replace("s1,q1,d2,2,0,", "s1,q1,d2,2,yes,"), 3, "click", "click must be 0 or 1, got 'yes'"),
        (GOOD.replace("s2,q1,d2,", "s2,,d2,"), 4, "query", "empty value"),
        (GOOD.replace("0.1\ns2", "abc\ns2"), 3, "feat_x", "expected a number, got 'abc'"),
        (GOOD.replace("s2,q1,d2,1,", "s1,q1,d3,1,"), 4, "position", "session 's1' shows position 1 twice (also on line 2)"),
        (GOOD + "s3,q1,d1,1,1\n", 5, "feat_x", "empty value"),
        (GOOD + "s3,q1,d1,1,1,0.2,extra\n", 5, None, "cannot parse the table (Error tokenizing data"),
        (GOOD.replace("feat_x\n", "propensity\n").replace(",0.5\n", ",1.5\n"), 2, "propensity",
         "a propensity is a probability in (0, 1], got 1.5"),
    ],
)
def test_bad_rows_name_file_line_and_column(tmp_path, text, line, column, message):
    with pytest.raises(DataFormatError) as err:
        clicklog.load_click_log(_write(tmp_path, text))
    assert (err.value.line, err.value.field) == (line, column)
    assert "log.csv" in str(err.value) and message in str(err.value)


def test_unreadable_empty_and_unknown_files(tmp_path):
    cases = {
        "log.csv": ("", "empty file"),
        "header.csv": ("query,document,position,click\n", "no impressions"),
        "log.json": ("{}", "unknown file type"),
        "missing.csv": (None, "file not found"),
    }
    for name, (text, message) in cases.items():
        path = _write(tmp_path, text, name) if text is not None else tmp_path / name
        with pytest.raises(DataFormatError, match=message) as err:
            clicklog.load_click_log(path)
        assert name in str(err.value)
    (tmp_path / "latin.csv").write_bytes(GOOD.replace("d2", "d\u00e9").encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"latin.csv, line 3: not UTF-8 text: byte 0xe9 at byte offset"):
        clicklog.load_click_log(tmp_path / "latin.csv")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataFormatError, match="bad.parquet: not a readable Parquet file"):
        clicklog.load_click_log(tmp_path / "bad.parquet")
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(DataFormatError, match="bad.csv.gz: cannot read the file"):
        clicklog.load_click_log(tmp_path / "bad.csv.gz")
    parquet = tmp_path / "rows.parquet"
    pd.DataFrame({"query": ["q"] * 2, "document": ["a", "b"], "position": [1, -1], "click": [0, 1]}).to_parquet(parquet)
    with pytest.raises(DataFormatError, match=r"rows.parquet, row 2: field 'position': position must be >= 1"):
        clicklog.load_click_log(parquet)


def test_propensity_is_count_of_pair_at_position_over_query_at_position():
    log = pd.DataFrame({"query": ["q"] * 4, "doc": ["a", "b", "b", "a"], "position": [1, 2, 1, 2],
                        "click": [0] * 4})
    assert clicklog.estimate_propensity(log).tolist() == [0.5] * 4
    det = pd.concat([log.iloc[:2]] * 3, ignore_index=True)
    assert clicklog.estimate_propensity(det).tolist() == [1.0] * 6


def test_report_on_the_fixture_writes_verdict_curve_figure_and_weights(tmp_path):
    result = clicklog.report(FIXTURE, tmp_path / "out", n_boot=4, steps=50)
    first = result.files["report"].read_text().splitlines()[0]
    assert result.connected and first == result.verdict and first.startswith("identifiable: all 6 positions")
    curve = pd.read_csv(result.files["table"])
    assert curve["position"].tolist() == list(range(1, 7)) and curve["examination"].iloc[0] == 1.0
    assert (curve["95% low"] <= curve["95% high"]).all() and curve["impressions"].sum() == 360
    weights = pd.read_csv(result.files["weights"])
    assert weights["impressions"].sum() == 360 and (weights["weight"] > 0).all()
    assert result.files["figure"].read_bytes()[:4] == b"\x89PNG"


def test_report_on_a_deterministic_log_without_features_says_not_identifiable(tmp_path):
    rows = [(f"s{s}", f"q{s % 3}", f"d{s % 3}-{k}", k, int(k == 1)) for s in range(12) for k in (1, 2, 3)]
    log = pd.DataFrame(rows, columns=["session", "query", "document", "position", "click"])
    log.to_csv(tmp_path / "det.csv", index=False)
    result = clicklog.report(tmp_path / "det.csv", tmp_path / "out", n_boot=2, steps=20)
    text = result.files["report"].read_text()
    assert text.startswith("NOT identifiable: 3 disconnected groups") and not result.connected
    assert "Warning: the click log does not identify" in text
    assert pd.read_csv(result.files["table"])["examination"].iloc[1:].isna().all()
    assert (pd.read_csv(result.files["weights"])["weight"] == 1.0).all()  # deterministic: weight 1


def test_clicklog_command(tmp_path, capsys):
    assert cli.main(["clicklog", "--log", str(FIXTURE), "--out", str(tmp_path / "r"), "--boot", "2"]) == 0
    assert capsys.readouterr().out.startswith("identifiable: all 6 positions are connected")
    bad = _write(tmp_path, "query,document,position\nq,d,1\n")
    assert cli.main(["clicklog", "--log", str(bad), "--out", str(tmp_path / "r2")]) == 2
    assert "log.csv, line 1: field 'click': missing column" in capsys.readouterr().err
