"""Fuzz the loaders: every generated broken folder (or click log) either loads or raises a
``DataFormatError`` that names a file in it; nothing else escapes.

Broken in the ways files break in practice: truncated, a line replaced by other JSON or text,
fields dropped or given the wrong type, unknown ids in the qrels, Latin-1 or UTF-16 text, a
byte-order mark, empty files, gzipped (whole or truncated).
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cookbook import beir, clicklog
from cookbook.config import DATA_DIR

TINY = DATA_DIR / "fixtures" / "tiny_beir"
CLICKS = (DATA_DIR / "fixtures" / "click_log.csv").read_text().splitlines(keepends=True)[:25]
FILES = ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "qrels/train.tsv", "edges.jsonl"]
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=5)
TOKENS = st.sampled_from(["q1", "q2", "d1", "d3", "zz", "0", "1", "2", "1.0", "1.5", "-1", "", "x y", "query-id"])
MUTATIONS = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("replace line"), st.integers(0, 20), JSON.map(json.dumps)),
    st.tuples(st.just("replace line"), st.integers(0, 20),
              st.lists(TOKENS, min_size=1, max_size=5).flatmap(lambda t: st.sampled_from(["\t", " ", ","]).map(
                  lambda sep: sep.join(t)))),
    st.tuples(st.just("drop field"), st.integers(0, 20), st.sampled_from(["_id", "text", "title", "source", "type"])),
    st.tuples(st.just("set field"), st.integers(0, 20), st.sampled_from(["_id", "text", "title", "target"]), JSON),
    st.tuples(st.just("encode"), st.sampled_from(["latin-1", "utf-16", "bom"])),
    st.tuples(st.just("empty"),),
    st.tuples(st.just("gzip"), st.booleans()),
    st.tuples(st.just("bytes"), st.floats(0, 1), st.binary(min_size=1, max_size=4)),
)


def _mutate(path: Path, mutation) -> None:
    data = path.read_bytes()
    kind = mutation[0]
    lines = data.decode("utf-8").splitlines(keepends=True)
    if kind == "truncate":
        path.write_bytes(data[: int(len(data) * mutation[1])])
    elif kind == "replace line" and lines:
        lines[mutation[1] % len(lines)] = mutation[2] + "\n"
        path.write_text("".join(lines), encoding="utf-8")
    elif kind in ("drop field", "set field") and lines and path.suffix == ".jsonl":
        i = mutation[1] % len(lines)
        row = json.loads(lines[i])
        if not isinstance(row, dict):
            return  # an earlier change replaced the line
        if kind == "drop field":
            row.pop(mutation[2], None)
        else:
            row[mutation[2]] = mutation[3]
        lines[i] = json.dumps(row) + "\n"
        path.write_text("".join(lines), encoding="utf-8")
    elif kind == "encode":
        text = data.decode("utf-8").replace("e", "é", 1)
        path.write_bytes(b"\xef\xbb\xbf" + data if mutation[1] == "bom" else text.encode(mutation[1]))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "gzip":
        packed = gzip.compress(data)
        path.with_name(path.name + ".gz").write_bytes(packed[: len(packed) // 2] if mutation[1] else packed)
        path.unlink()
    elif kind == "bytes":
        at = int(len(data) * mutation[1])
        path.write_bytes(data[:at] + mutation[2] + data[at:])


def _edges(folder: Path) -> None:
    ids = [json.loads(line)["_id"] for line in (folder / "corpus.jsonl").read_text().splitlines()]
    rows = [{"source": a, "target": b, "type": "next"} for a, b in zip(ids, ids[1:])]
    (folder / "edges.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(FILES), MUTATIONS), min_size=1, max_size=3))
def test_every_broken_folder_loads_or_names_the_file(changes):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        shutil.copytree(TINY, folder)
        _edges(folder)
        for name, mutation in changes:
            if (folder / name).exists():
                try:
                    _mutate(folder / name, mutation)
                except (UnicodeError, json.JSONDecodeError):
                    pass  # an earlier change already broke the file for this one
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                data = beir.load_beir(folder)
            except beir.DataFormatError as err:
                assert err.path.startswith(str(folder)) and str(err).startswith(err.path), str(err)
                return
        assert data.corpus and data.queries and data.qrels


@settings(max_examples=80, deadline=None)
@given(st.lists(MUTATIONS, min_size=1, max_size=2), st.sampled_from(["log.csv", "log.tsv"]))
def test_every_broken_click_log_loads_or_names_the_file(mutations, name):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        sep = "," if name.endswith(".csv") else "\t"
        path.write_text("".join(CLICKS).replace(",", sep), encoding="utf-8")
        for mutation in mutations:
            if path.exists():
                try:
                    _mutate(path, mutation)
                except (UnicodeError, json.JSONDecodeError):
                    pass
        target = path if path.exists() else path.with_name(name + ".gz")
        try:
            log = clicklog.load_click_log(target)
        except beir.DataFormatError as err:
            assert err.path == str(target) and str(err).startswith(err.path), str(err)
            return
        assert {"query", "doc", "position", "click"} <= set(log.columns) and len(log)
