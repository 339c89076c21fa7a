"""Try every kind of input a user brings and print what each gives, as a Markdown table.

Each kind is built in a temporary folder from ``data/fixtures/binary_beir`` (or, for click
logs, from ``data/fixtures/click_log.csv``), loaded with :func:`cookbook.beir.load_beir` or
:func:`cookbook.clicklog.load_click_log`, and reported as "loaded as ..." or the error's
message (paths shown relative to the temporary folder). ``docs/own-data.md`` holds this
script's output; ``tests/test_input_kinds.py`` checks that the page still matches it.

Usage::

    .venv/bin/python tools/input_kinds.py            # print the table
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cookbook import beir, clicklog  # noqa: E402

BINARY = ROOT / "data" / "fixtures" / "binary_beir"
CLICKS = ROOT / "data" / "fixtures" / "click_log.csv"


# --------------------------------------------------------------------------- BEIR folders


def _qrels(folder: Path, transform) -> None:
    path = folder / "qrels" / "test.tsv"
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    path.write_text(transform(rows))


def _lines(folder: Path, name: str, edit) -> None:
    path = folder / name
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(edit(lines)), encoding="utf-8")


def _row(folder: Path, name: str, index: int, change) -> None:
    def edit(lines):
        row = json.loads(lines[index])
        change(row)
        lines[index] = json.dumps(row) + "\n"
        return lines

    _lines(folder, name, edit)


def _gzip(folder: Path, name: str, cut: bool = False) -> None:
    packed = gzip.compress((folder / name).read_bytes())
    (folder / (name + ".gz")).write_bytes(packed[: len(packed) // 3] if cut else packed)
    (folder / name).unlink()


def _bom(folder: Path, name: str) -> None:
    (folder / name).write_bytes(b"\xef\xbb\xbf" + (folder / name).read_bytes())


def _encode(folder: Path, name: str, encoding: str) -> None:
    text = (folder / name).read_text(encoding="utf-8")
    (folder / name).write_bytes(text.replace("oven", "ovén", 1).encode(encoding))


FOLDERS = [
    ("the binary fixture as it is (BEIR: JSONL, TSV qrels with a header)", "qrels/test.tsv", lambda f: None),
    ("qrels without a header line", "qrels/test.tsv",
     lambda f: _qrels(f, lambda rows: "".join("\t".join(r) + "\n" for r in rows))),
    ("TREC qrels `qid 0 docid grade`, tab-separated", "qrels/test.tsv",
     lambda f: _qrels(f, lambda rows: "".join(f"{q}\t0\t{d}\t{g}\n" for q, d, g in rows))),
    ("TREC qrels, space-separated (MS MARCO's files)", "qrels/test.tsv",
     lambda f: _qrels(f, lambda rows: "".join(f"{q} 0 {d} {g}\n" for q, d, g in rows))),
    ("TREC qrels named `qrels/test.txt`", "qrels/test.txt",
     lambda f: (_qrels(f, lambda rows: "".join(f"{q} Q0 {d} {g}\n" for q, d, g in rows)),
                (f / "qrels" / "test.tsv").rename(f / "qrels" / "test.txt"))),
    ("three space-separated columns", "qrels/test.tsv",
     lambda f: _qrels(f, lambda rows: "".join(f"{q} {d} {g}\n" for q, d, g in rows))),
    ("grades written `1.0`", "qrels/test.tsv",
     lambda f: _qrels(f, lambda rows: "".join(f"{q}\t{d}\t{g}.0\n" for q, d, g in rows))),
    ("Windows line endings (CRLF)", "qrels/test.tsv",
     lambda f: [_lines(f, n, lambda ls: [x.replace("\n", "\r\n") for x in ls])
                for n in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")]),
    ("`queries.jsonl` with a UTF-8 byte-order mark", "queries.jsonl", lambda f: _bom(f, "queries.jsonl")),
    ("`corpus.jsonl.gz`", "corpus.jsonl.gz", lambda f: _gzip(f, "corpus.jsonl")),
    ("`qrels/test.tsv.gz`", "qrels/test.tsv.gz", lambda f: _gzip(f, "qrels/test.tsv")),
    ("a document with `\"title\": null`", "corpus.jsonl", lambda f: _row(f, "corpus.jsonl", 0,
                                                                       lambda r: r.update(title=None))),
    ("three documents with empty text", "corpus.jsonl",
     lambda f: [_row(f, "corpus.jsonl", i, lambda r: r.update(text="")) for i in (3, 4, 5)]),
    ("the same, loaded with `strict=True`", "strict",
     lambda f: [_row(f, "corpus.jsonl", i, lambda r: r.update(text="")) for i in (3, 4, 5)]),
    ("grade `1.5`", None, lambda f: _qrels(f, lambda rows: "".join(f"{q}\t{d}\t1.5\n" for q, d, g in rows))),
    ("grade `high`", None, lambda f: _qrels(f, lambda rows: f"{rows[0][0]}\t{rows[0][1]}\thigh\n")),
    ("TREC's negative grade `-1`", None,
     lambda f: _qrels(f, lambda rows: f"{rows[0][0]} 0 {rows[0][1]} -1\n")),
    ("comma-separated qrels", None, lambda f: _qrels(f, lambda rows: "".join(",".join(r) + "\n" for r in rows))),
    ("three- and four-column lines mixed", None,
     lambda f: _qrels(f, lambda rows: "\t".join(rows[0]) + "\n" + f"{rows[1][0]}\t0\t{rows[1][1]}\t1\n")),
    ("a pair judged twice with different grades", None,
     lambda f: _qrels(f, lambda rows: "\t".join(rows[0]) + "\n" + f"{rows[0][0]}\t{rows[0][1]}\t0\n")),
    ("qrels naming an unknown document", None,
     lambda f: _qrels(f, lambda rows: "\t".join(rows[0]) + "\n" + f"{rows[1][0]}\tno-such-doc\t1\n")),
    ("qrels naming an unknown query", None,
     lambda f: _qrels(f, lambda rows: "\t".join(rows[0]) + "\n" + f"q999\t{rows[1][1]}\t1\n")),
    ("qrels file with only a header", None, lambda f: _qrels(f, lambda rows: "query-id\tcorpus-id\tscore\n")),
    ("qrels as `qrels.tsv` next to the corpus", None,
     lambda f: (f / "qrels" / "test.tsv").rename(f / "qrels.tsv")),
    ("`qrels/test.tsv` and `qrels/test.tsv.gz` both", None,
     lambda f: (f / "qrels" / "test.tsv.gz").write_bytes(gzip.compress((f / "qrels" / "test.tsv").read_bytes()))),
    ("`queries.jsonl` in Latin-1", None, lambda f: _encode(f, "queries.jsonl", "latin-1")),
    ("`queries.jsonl` in UTF-16", None, lambda f: _encode(f, "queries.jsonl", "utf-16")),
    ("a truncated `corpus.jsonl.gz`", None, lambda f: _gzip(f, "corpus.jsonl", cut=True)),
    ("`corpus.jsonl` cut off mid-line", None,
     lambda f: (f / "corpus.jsonl").write_bytes((f / "corpus.jsonl").read_bytes()[:-40])),
    ("a document without `text`", None, lambda f: _row(f, "corpus.jsonl", 2, lambda r: r.pop("text"))),
    ("a numeric `_id` (`7`, not `\"7\"`)", None, lambda f: _row(f, "corpus.jsonl", 2, lambda r: r.update(_id=7))),
    ("a numeric `title`", None, lambda f: _row(f, "corpus.jsonl", 2, lambda r: r.update(title=3))),
    ("the same `_id` twice", None, lambda f: _lines(f, "corpus.jsonl", lambda ls: ls + ls[:1])),
    ("a JSON array instead of an object on a line", None,
     lambda f: _lines(f, "queries.jsonl", lambda ls: ls[:1] + ['["q001", "a query"]\n'] + ls[2:])),
    ("the corpus as one JSON array in `corpus.json`", None,
     lambda f: ((f / "corpus.json").write_text(json.dumps([json.loads(x) for x in
                                                            (f / "corpus.jsonl").read_text().splitlines()])),
                (f / "corpus.jsonl").unlink())),
    ("an empty `corpus.jsonl`", None, lambda f: (f / "corpus.jsonl").write_text("")),
    ("an empty `queries.jsonl`", None, lambda f: (f / "queries.jsonl").write_text("")),
    ("`edges.jsonl` naming an unknown document", None,
     lambda f: _row(f, "edges.jsonl", 3, lambda r: r.update(target="no-such-doc"))),
]


# --------------------------------------------------------------------------- click logs


def _log(tmp: Path, name: str, text: str | None = None, data: bytes | None = None) -> Path:
    path = tmp / name
    if data is not None:
        path.write_bytes(data)
    else:
        path.write_text(text if text is not None else CLICKS.read_text(), encoding="utf-8")
    return path


def _parquet(tmp: Path) -> Path:
    import pandas as pd

    pd.read_csv(CLICKS).to_parquet(tmp / "log.parquet")
    return tmp / "log.parquet"


def _header_and(rows: str) -> str:
    return CLICKS.read_text().splitlines()[0] + "\n" + rows


LOGS = [
    ("click log: CSV (the fixture)", lambda t: _log(t, "log.csv")),
    ("click log: TSV", lambda t: _log(t, "log.tsv", CLICKS.read_text().replace(",", "\t"))),
    ("click log: Parquet", _parquet),
    ("click log: gzipped CSV with a BOM, `doc` column, clicks `true`/`false`",
     lambda t: _log(t, "log.csv.gz", data=gzip.compress(
         ("\ufeff" + CLICKS.read_text().replace("document", "doc").replace(",1,0,", ",1,false,")).encode()))),
    ("click log: no `click` column",
     lambda t: _log(t, "log.csv", "query,document,position\nq1,d1,1\n")),
    ("click log: position `0`", lambda t: _log(t, "log.csv", _header_and("s1,q1,d1,0,1,0.1,0.2\n"))),
    ("click log: position `top`", lambda t: _log(t, "log.csv", _header_and("s1,q1,d1,top,1,0.1,0.2\n"))),
    ("click log: click `2`", lambda t: _log(t, "log.csv", _header_and("s1,q1,d1,1,2,0.1,0.2\n"))),
    ("click log: a session showing position 1 twice",
     lambda t: _log(t, "log.csv", _header_and("s1,q1,d1,1,1,0.1,0.2\ns1,q1,d2,1,0,0.1,0.2\n"))),
    ("click log: an empty file", lambda t: _log(t, "log.csv", "")),
    ("click log: `.json`", lambda t: _log(t, "log.json", "{}")),
]


# --------------------------------------------------------------------------- running


def _loaded(data: beir.RetrievalData, focus: str) -> str:
    splits = ", ".join(f"{s} {len(r)}" for s, r in data.qrels.items())
    return (f"loaded: {len(data.corpus)} documents, {len(data.queries)} queries, qrels {splits}; "
            f"`{focus}` read as {data.formats[focus]}")


def try_folder(tmp: Path, build, focus: str | None) -> str:
    folder = tmp / "mydata"
    shutil.copytree(BINARY, folder)
    build(folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = beir.load_beir(folder, strict=focus == "strict")
        except beir.DataFormatError as err:
            return "error: " + str(err).replace(str(tmp) + "/", "")
    text = _loaded(data, focus if focus in data.formats else "qrels/test.tsv")
    for w in caught:
        if issubclass(w.category, beir.EmptyTextWarning):
            text += "; warning: " + str(w.message).replace(str(tmp) + "/", "").split(";")[0]
    return text


def try_log(tmp: Path, build) -> str:
    try:
        log = clicklog.load_click_log(build(tmp))
    except beir.DataFormatError as err:
        return "error: " + str(err).replace(str(tmp) + "/", "")
    return (f"loaded: {len(log)} impressions, {log['query'].nunique()} queries, positions "
            f"1..{log['position'].max()}, features {', '.join(log.attrs['feature_cols']) or 'none'}")


def table() -> str:
    rows = ["| # | input | what it gives |", "|---:|---|---|"]
    kinds = [(name, lambda t, b=build, f=focus: try_folder(t, b, f)) for name, focus, build in FOLDERS]
    kinds += [(name, lambda t, b=build: try_log(t, b)) for name, build in LOGS]
    for number, (name, run) in enumerate(kinds, start=1):
        with tempfile.TemporaryDirectory() as tmp:
            outcome = run(Path(tmp)).replace("|", "\\|")
        rows.append(f"| {number} | {name} | {outcome} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(table(), end="")
