"""Query-document pairs in the BEIR layout, validated line by line.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/{split}.tsv`` (``query-id``, ``corpus-id``, ``score``; graded
integers allowed). Every recipe in this cookbook takes a :class:`RetrievalData`, so it runs
unchanged on the built-in API-docs corpus, on any BEIR folder and on any Hugging Face dataset
in that layout.

The files users actually have are read as they are: qrels as BEIR TSV (with or without a
header), TREC's four columns ``qid 0 docid grade`` (tab- or space-separated) or three
space-separated columns, grades written ``1.0``; JSONL with or without a UTF-8 byte-order mark;
any file gzipped (``corpus.jsonl.gz``, ``qrels/test.tsv.gz``). What was read is recorded in
``data.formats`` and logged. Bad input raises :class:`DataFormatError`, which names the file,
the line and the field (for text that is not UTF-8, also the byte offset); documents or queries
with empty text are a warning (an error with ``strict=True``).

Taught in: notebooks/10_explore_query_document_pairs.ipynb
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

_WORD = re.compile(r"[a-z0-9]+")
_BOM = b"\xef\xbb\xbf"
log = logging.getLogger(__name__)


def normalize_text(text: str) -> str:
    """Lower-case words only: the one form used for duplicate, copy and leak checks, so
    "The n-dimensional FFT." and "the N-dimensional FFT" count as the same query.

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    return " ".join(_WORD.findall(text.lower()))


class DataFormatError(ValueError):
    """Malformed input; the message names the file, the line and the field."""

    def __init__(self, path, line: int | None, field_name: str | None, problem: str, unit: str = "line"):
        self.path, self.line, self.field = str(path), line, field_name
        where = str(path) + (f", {unit} {line}" if line is not None else "")
        what = f" field {field_name!r}:" if field_name else ""
        super().__init__(f"{where}:{what} {problem}")


@dataclass
class RetrievalData:
    """A corpus, its queries and graded qrels per split (plus, for the API docs, a graph).

    ``corpus``: doc_id -> {"title", "text", ...}; ``queries``: qid -> text;
    ``qrels``: split -> qid -> doc_id -> grade (int; unlisted documents count as 0).
    ``formats``: for data read from files, each file's name -> the format it was read as.
    """

    corpus: dict[str, dict]
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]]
    query_meta: dict[str, dict] = field(default_factory=dict)
    graph: object | None = None
    manifest: dict = field(default_factory=dict)
    name: str = "beir"
    formats: dict[str, str] = field(default_factory=dict)  # file -> the format it was read as

    def split_queries(self, split: str) -> dict[str, str]:
        """The queries that have qrels in ``split``."""
        if split not in self.qrels:
            raise KeyError(f"no split {split!r}; available: {sorted(self.qrels)}")
        return {qid: self.queries[qid] for qid in self.qrels[split]}

    def doc_text(self, doc_id: str) -> str:
        """The text that retrievers index and embed: ``"title: text"``."""
        doc = self.corpus[doc_id]
        title = doc.get("title") or ""
        return f"{title}: {doc['text']}" if title else doc["text"]

    @property
    def eval_pairs(self) -> set[tuple[str, str]]:
        """(source, target) document pairs behind dev and test queries (empty for plain BEIR)."""
        pairs = set()
        if self.graph is not None and not any("source" in m for m in self.query_meta.values()):
            warnings.warn(f"dataset {self.name!r} has a graph but no query_meta with the source of its "
                          "evaluation queries: the leak guard has no edges to block", stacklevel=2)
        for m in self.query_meta.values():
            if m.get("split") in ("dev", "test") and "source" in m:
                # the same description can be written in several docstrings: block every one
                for source in m.get("sources") or [m["source"]]:
                    pairs.add((source, m["target"]))
        return pairs

    def training_graph(self):
        """The graph with every edge between an evaluation pair removed, in both directions."""
        if self.graph is None:
            raise ValueError(f"dataset {self.name!r} has no graph")
        graph = self.graph.copy()
        blocked = self.eval_pairs | {(t, s) for s, t in self.eval_pairs}
        doomed = [(u, v, k) for u, v, k in graph.edges(keys=True) if (u, v) in blocked]
        graph.remove_edges_from(doomed)
        return graph

    def summary(self) -> dict:
        """Counts per part, for a quick look."""
        out = {"documents": len(self.corpus), "queries": len(self.queries)}
        for split, rows in sorted(self.qrels.items()):
            out[f"{split} queries"] = len(rows)
            out[f"{split} judgements"] = sum(len(r) for r in rows.values())
        if self.graph is not None:
            out["graph edges"] = self.graph.number_of_edges()
        return out


# --------------------------------------------------------------------------- reading


class EmptyTextWarning(UserWarning):
    """Documents or queries whose text is empty (they are embedded as an empty string or a title)."""


_QRELS_HEADER = ("query-id", "qid", "query_id", "queryid", "query", "topic")
_QRELS_SUFFIXES = (".tsv", ".tsv.gz", ".txt", ".txt.gz")


def _label(path: Path) -> str:
    """A file's name as the ``formats`` dict shows it (``qrels/test.tsv`` keeps its folder)."""
    return f"qrels/{path.name}" if path.parent.name == "qrels" else path.name


class _Lines:
    """``(line number, text)`` for each line of a UTF-8 text file, gzipped (``.gz``) or not.

    A UTF-8 byte-order mark is dropped (and noted in :attr:`flags`); a byte that is not UTF-8 is
    a :class:`DataFormatError` naming the line and its byte offset in the (uncompressed) file.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.flags = ["gzip"] if self.path.name.endswith(".gz") else []

    def __iter__(self):
        path, number, offset = self.path, 0, 0
        try:
            handle = gzip.open(path, "rb") if "gzip" in self.flags else path.open("rb")
        except OSError as err:
            raise DataFormatError(path, None, None, f"cannot read the file ({err.strerror or err})") from None
        with handle:
            try:
                for number, raw in enumerate(handle, start=1):
                    if number == 1 and raw.startswith(_BOM):
                        self.flags.append("UTF-8 byte-order mark")
                        raw, offset = raw[len(_BOM):], len(_BOM)
                    elif number == 1 and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                        raise DataFormatError(path, 1, None, "the text is UTF-16 (it starts with a UTF-16 "
                                              "byte-order mark): save the file as UTF-8")
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError as err:
                        packed = " of the uncompressed file" if "gzip" in self.flags else ""
                        raise DataFormatError(
                            path, number, None, f"not UTF-8 text: byte 0x{raw[err.start]:02x} at byte offset "
                            f"{offset + err.start}{packed} (column {err.start + 1} of the line); save the "
                            "file as UTF-8 (it may be Latin-1 or Windows-1252)") from None
                    offset += len(raw)
                    yield number, text
            except (OSError, EOFError, zlib.error) as err:  # a damaged or truncated gzip stream
                raise DataFormatError(path, number + 1, None, f"not a readable gzip file ({err})") from None

    def describe(self, kind: str) -> str:
        return ", ".join([kind, "UTF-8", *self.flags])


def check_utf8(path) -> None:
    """Raise :class:`DataFormatError` naming the line and byte offset of the first byte of
    ``path`` (gzipped or not) that is not UTF-8; return quietly when the whole file is UTF-8.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb (click logs)
    """
    for _ in _Lines(Path(path)):
        pass


def find_file(folder, name: str) -> Path | None:
    """``folder/name`` or its gzipped ``name.gz``; None when neither exists.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    plain, packed = Path(folder) / name, Path(folder) / (name + ".gz")
    if plain.exists() and packed.exists():
        raise DataFormatError(packed, None, None, f"both {name} and {name}.gz exist: keep one")
    return plain if plain.exists() else packed if packed.exists() else None


def _not_found(folder: Path, name: str) -> DataFormatError:
    """A missing file, with the look-alike files that are there (``corpus.json``, ``corpus.tsv``)."""
    if not folder.is_dir():
        return DataFormatError(folder / name, None, None, f"file not found (no folder {folder})")
    stem = name.split(".")[0]
    near = sorted(p.name for p in folder.glob(stem + "*"))
    hint = f" (found {', '.join(near)}: expected {name} or {name}.gz, one JSON object per line)" if near else ""
    return DataFormatError(folder / name, None, None, "file not found" + hint)


def _json_objects(path: Path, lines: _Lines | None = None):
    """``(line number, object)`` for each non-empty line of a JSONL file, validated as JSON objects."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, None, None, "file not found")
    for number, line in lines or _Lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            hint = "; the line holds NUL bytes: is the file UTF-16?" if "\x00" in line else ""
            raise DataFormatError(path, number, None, f"invalid JSON ({err.msg}: column {err.colno}){hint}") from None
        if not isinstance(row, dict):
            raise DataFormatError(path, number, None, f"expected a JSON object, got {type(row).__name__}")
        yield number, row


def _read_jsonl(path: Path, required: tuple[str, ...], formats: dict | None = None) -> list[tuple[int, dict]]:
    path = Path(path)
    rows, seen, lines = [], {}, _Lines(path)
    for number, row in _json_objects(path, lines):
        for name in required:
            if name not in row:
                raise DataFormatError(path, number, name, "missing")
            if not isinstance(row[name], str):
                raise DataFormatError(path, number, name, f"expected a string, got {row[name]!r}")
        if row["_id"] == "":
            raise DataFormatError(path, number, "_id", "empty id")
        if row["_id"] in seen:
            raise DataFormatError(
                path, number, "_id", f"duplicate id {row['_id']!r} (first on line {seen[row['_id']]})"
            )
        seen[row["_id"]] = number
        rows.append((number, row))
    if formats is not None:
        formats[_label(path)] = lines.describe("JSONL")
    return rows


def _check_empty_texts(path: Path, rows: list[tuple[int, dict]], what: str, strict: bool) -> None:
    """Warn about (or, with ``strict``, refuse) rows whose ``text`` is empty or blank."""
    empty = [(number, row["_id"]) for number, row in rows if not row["text"].strip()]
    if not empty:
        return
    if strict:
        raise DataFormatError(path, empty[0][0], "text", f"empty text ({len(empty)} {what} in all)")
    first = ", ".join(repr(i) for _, i in empty[:5]) + (", ..." if len(empty) > 5 else "")
    warnings.warn(f"{path}: {len(empty)} {what} with empty text (first: {first}); they are embedded as "
                  "an empty string (documents: as their title); load with strict=True to refuse them",
                  EmptyTextWarning, stacklevel=4)  # the caller of load_beir


def read_corpus(path, strict: bool = False, formats: dict | None = None) -> dict[str, dict]:
    """Read ``corpus.jsonl`` (or ``.jsonl.gz``); ``title`` is optional, ``_id`` and ``text`` are required.

    Documents with empty text are a :class:`EmptyTextWarning` (an error with ``strict``).
    """
    path = Path(path)
    rows = _read_jsonl(path, ("_id", "text"), formats)
    if not rows:
        raise DataFormatError(path, None, None, "empty corpus: no documents")
    corpus = {}
    for number, row in rows:
        if row.get("title") is not None and not isinstance(row["title"], str):
            raise DataFormatError(path, number, "title", f"expected a string or null, got {row['title']!r}")
        doc = {k: v for k, v in row.items() if k != "_id"}
        doc["title"] = doc.get("title") or ""
        corpus[row["_id"]] = doc
    _check_empty_texts(path, rows, "documents", strict)
    return corpus


def read_queries(path, strict: bool = False, formats: dict | None = None) -> dict[str, str]:
    """Read ``queries.jsonl`` (or ``.jsonl.gz``; ``_id``, ``text``); empty texts as in :func:`read_corpus`."""
    path = Path(path)
    rows = _read_jsonl(path, ("_id", "text"), formats)
    if not rows:
        raise DataFormatError(path, None, None, "no queries")
    _check_empty_texts(path, rows, "queries", strict)
    return {row["_id"]: row["text"] for _, row in rows}


def _grade(text: str, path: Path, number: int) -> tuple[int, bool]:
    """An integer grade and whether it was written as a float (``1.0``)."""
    try:
        return int(text), False
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise DataFormatError(path, number, "score", f"grade must be an integer, got {text!r}") from None
    if not value.is_integer():
        raise DataFormatError(path, number, "score", f"grade must be an integer, got {text!r} "
                              "(not a whole number: map your scores to integer levels first)")
    return int(value), True


def read_qrels(path, corpus: dict | None = None, queries: dict | None = None, formats: dict | None = None):
    """Read a qrels file (optionally gzipped) with integer grades; optionally check ids exist.

    Accepted: BEIR TSV ``query-id corpus-id score`` with or without a header line, TREC's
    ``query-id iteration corpus-id score`` (tab- or space-separated: MS MARCO's and TREC's own
    qrels files), three space-separated columns, and grades written as integral floats (``1.0``).
    One file holds one layout: the first judgement fixes the number of columns.
    """
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, None, None, "file not found")
    qrels: dict[str, dict[str, int]] = {}
    first_line: dict[tuple[str, str], int] = {}
    lines, layout, header, floats = _Lines(path), None, False, False
    for number, line in lines:
        text = line.strip()
        if not text:
            continue
        separator = "\t" if "\t" in text else None
        row = [c.strip() for c in text.split(separator)]
        if layout is None and not header and row[0].lower() in _QRELS_HEADER:
            header = True
            continue
        if len(row) not in (3, 4):
            hint = "; it holds commas, but qrels are tab- or space-separated" if "," in text else ""
            raise DataFormatError(path, number, None, f"expected 3 columns (query-id corpus-id score) or 4 "
                                  f"(TREC: query-id 0 corpus-id score), got {len(row)}{hint}")
        if layout is None:
            layout = (len(row), "tab" if separator else "space", number)
        elif len(row) != layout[0]:
            raise DataFormatError(path, number, None, f"{len(row)} columns, but line {layout[2]} has "
                                  f"{layout[0]}: one file holds one layout")
        qid, doc_id, grade_text = (row[0], row[2], row[3]) if len(row) == 4 else row
        grade, as_float = _grade(grade_text, path, number)
        floats |= as_float
        if grade < 0:
            raise DataFormatError(path, number, "score", f"grade must be >= 0, got {grade} (TREC's negative "
                                  "grades mean not relevant: map them to 0)")
        if corpus is not None and doc_id not in corpus:
            raise DataFormatError(path, number, "corpus-id", f"unknown document {doc_id!r}")
        if queries is not None and qid not in queries:
            raise DataFormatError(path, number, "query-id", f"unknown query {qid!r}")
        if (qid, doc_id) in first_line and qrels[qid][doc_id] != grade:
            raise DataFormatError(path, number, "score", f"{qid!r}, {doc_id!r} judged twice: grade {grade} "
                                  f"here, {qrels[qid][doc_id]} on line {first_line[qid, doc_id]}")
        first_line.setdefault((qid, doc_id), number)
        qrels.setdefault(qid, {})[doc_id] = grade
    if layout is None:
        raise DataFormatError(path, None, None, "no judgements" + (" (only a header line)" if header else ""))
    if formats is not None:
        kind = "TREC qrels (query-id iteration corpus-id score)" if layout[0] == 4 else \
            "qrels (query-id corpus-id score)"
        formats[_label(path)] = lines.describe(f"{kind}, {layout[1]}-separated, "
                                               f"{'a' if header else 'no'} header"
                                               + (", grades written as floats (1.0)" if floats else ""))
    return qrels


def qrels_files(folder, splits: tuple[str, ...] | None = None) -> dict[str, Path]:
    """split -> qrels file under ``folder/qrels`` (``{split}.tsv``, ``.txt``, either gzipped).

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    folder = Path(folder)
    qdir, found = folder / "qrels", {}
    for path in sorted(qdir.iterdir()) if qdir.is_dir() else []:
        suffix = next((s for s in _QRELS_SUFFIXES if path.name.endswith(s)), None)
        if suffix is None or not path.is_file():
            continue
        split = path.name[: -len(suffix)]
        if split in found:
            raise DataFormatError(path, None, None, f"two qrels files for split {split!r}: "
                                  f"{found[split].name} and {path.name}")
        found[split] = path
    if splits is not None:
        missing = [s for s in splits if s not in found]
        if missing:
            raise DataFormatError(qdir / f"{missing[0]}.tsv", None, None,
                                  f"file not found (qrels splits here: {', '.join(sorted(found)) or 'none'})")
        found = {s: found[s] for s in splits}
    if not found:
        loose = sorted(p.name for p in folder.glob("qrels*") if p.is_file())
        hint = f" (found {', '.join(loose)}: move it to qrels/test.tsv)" if loose else ""
        raise DataFormatError(qdir, None, None, "no qrels/*.tsv file" + hint)
    return found


def read_edges(path, corpus: dict, formats: dict | None = None):
    """Read an ``edges.jsonl`` (``source``, ``target``, ``type``) into a networkx ``MultiDiGraph``.

    Every corpus document is a node (with its ``title`` and, when present, ``kind`` and
    ``package``); an edge naming an unknown document is an error. This is the graph that the
    knowledge-graph notebooks (50, 51) read, so the graph recipes run on a user's own graph.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import networkx as nx

    path = Path(path)
    graph = nx.MultiDiGraph()
    for doc_id, doc in corpus.items():
        attrs = {k: doc[k] for k in ("kind", "package") if k in doc}
        graph.add_node(doc_id, title=doc.get("title") or doc_id, **attrs)
    lines = _Lines(path)
    for number, row in _json_objects(path, lines):
        for name in ("source", "target", "type"):
            if not isinstance(row.get(name), str) or not row[name]:
                raise DataFormatError(path, number, name, "missing or not a non-empty string")
        for name in ("source", "target"):
            if row[name] not in corpus:
                raise DataFormatError(path, number, name, f"unknown document {row[name]!r}")
        graph.add_edge(row["source"], row["target"], key=row["type"], type=row["type"])
    if formats is not None:
        formats[_label(path)] = lines.describe("JSONL")
    return graph


def load_beir(folder, splits: tuple[str, ...] | None = None, strict: bool = False) -> RetrievalData:
    """Load a BEIR-format folder; every qrels file found under ``qrels/`` becomes a split.

    Any file may be gzipped (``corpus.jsonl.gz``); qrels may be BEIR TSV or TREC (see
    :func:`read_qrels`). ``data.formats`` records what each file was read as (also logged at
    INFO level). Empty document or query texts are a warning, or with ``strict=True`` a
    :class:`DataFormatError`. An optional ``edges.jsonl`` (``source``, ``target``, ``type``)
    becomes ``data.graph``; an optional ``query_meta.jsonl`` holds per-query fields (the
    API-docs corpus keeps the source and target of each description there, which the leak
    guards read).

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    folder = Path(folder)
    formats: dict[str, str] = {}
    paths = {}
    for name in ("corpus.jsonl", "queries.jsonl"):
        paths[name] = find_file(folder, name)
        if paths[name] is None:
            raise _not_found(folder, name)
    corpus = read_corpus(paths["corpus.jsonl"], strict, formats)
    queries = read_queries(paths["queries.jsonl"], strict, formats)
    qrels = {split: read_qrels(path, corpus, queries, formats)
             for split, path in qrels_files(folder, splits).items()}
    meta = {}
    if (path := find_file(folder, "query_meta.jsonl")) is not None:
        meta = {row["_id"]: {k: v for k, v in row.items() if k != "_id"}
                for _, row in _read_jsonl(path, ("_id",), formats)}
    manifest = {}
    if (folder / "manifest.json").exists():
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataFormatError(folder / "manifest.json", getattr(err, "lineno", None), None,
                                  f"invalid JSON ({err})") from None
    path = find_file(folder, "edges.jsonl")
    graph = read_edges(path, corpus, formats) if path is not None else None
    for name, kind in formats.items():
        log.info("%s: read %s as %s", folder, name, kind)
    return RetrievalData(corpus, queries, qrels, meta, graph, manifest, name=folder.name, formats=formats)


# --------------------------------------------------------------------------- writing


def write_beir(data: RetrievalData, folder) -> Path:
    """Write ``data`` as a BEIR folder (plus ``edges.jsonl`` and ``query_meta.jsonl`` when present)."""
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for doc_id, doc in data.corpus.items():
            out.write(json.dumps({"_id": doc_id, **doc}, ensure_ascii=False) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as out:
        for qid, text in data.queries.items():
            out.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    for split, rows in data.qrels.items():
        with (folder / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as out:
            out.write("query-id\tcorpus-id\tscore\n")
            for qid, docs in rows.items():
                for doc_id, grade in docs.items():
                    out.write(f"{qid}\t{doc_id}\t{int(grade)}\n")
    if data.graph is not None:
        with (folder / "edges.jsonl").open("w", encoding="utf-8") as out:
            for source, target, kind in sorted(data.graph.edges(keys=True)):
                out.write(json.dumps({"source": source, "target": target, "type": kind}) + "\n")
    if data.query_meta:
        with (folder / "query_meta.jsonl").open("w", encoding="utf-8") as out:
            for qid, meta in data.query_meta.items():
                out.write(json.dumps({"_id": qid, **meta}, ensure_ascii=False) + "\n")
    return folder


# --------------------------------------------------------------------------- Hugging Face


def to_hf(data: RetrievalData):
    """A ``datasets.DatasetDict`` with ``corpus``, ``queries`` and one ``qrels-<split>`` each."""
    from datasets import Dataset, DatasetDict

    corpus = Dataset.from_list([{"_id": k, "title": v.get("title", ""), "text": v["text"]}
                                for k, v in data.corpus.items()])
    queries = Dataset.from_list([{"_id": k, "text": v} for k, v in data.queries.items()])
    parts = {"corpus": corpus, "queries": queries}
    for split, rows in data.qrels.items():
        parts[f"qrels-{split}"] = Dataset.from_list(
            [{"query-id": q, "corpus-id": d, "score": int(g)} for q, docs in rows.items() for d, g in docs.items()]
        )
    return DatasetDict(parts)


def from_hf(corpus, queries, qrels: dict, name: str = "hf") -> RetrievalData:
    """Build :class:`RetrievalData` from Hugging Face datasets in the BEIR layout.

    ``corpus`` and ``queries`` are ``datasets.Dataset`` objects (for example the ``corpus`` and
    ``queries`` configs of a BEIR dataset on the hub); ``qrels`` maps a split name to a dataset
    with ``query-id``, ``corpus-id`` and ``score`` columns. Rows are validated like files are;
    the "line" in an error is the row number.
    """
    docs: dict[str, dict] = {}
    for number, row in enumerate(corpus, start=1):
        for name_ in ("_id", "text"):
            if row.get(name_) is None:
                raise DataFormatError(f"{name}:corpus", number, name_, "missing")
        doc_id = str(row["_id"])
        if doc_id in docs:
            raise DataFormatError(f"{name}:corpus", number, "_id", f"duplicate id {doc_id!r}")
        docs[doc_id] = {"title": row.get("title") or "", "text": row["text"]}
    if not docs:
        raise DataFormatError(f"{name}:corpus", None, None, "empty corpus: no documents")
    texts = {}
    for number, row in enumerate(queries, start=1):
        if row.get("_id") is None or row.get("text") is None:
            raise DataFormatError(f"{name}:queries", number, "_id" if row.get("_id") is None else "text", "missing")
        texts[str(row["_id"])] = row["text"]
    graded: dict[str, dict[str, dict[str, int]]] = {}
    for split, table in qrels.items():
        rows: dict[str, dict[str, int]] = {}
        for number, row in enumerate(table, start=1):
            where = f"{name}:qrels-{split}"
            qid, doc_id, score = str(row.get("query-id")), str(row.get("corpus-id")), row.get("score")
            if isinstance(score, bool) or not isinstance(score, int):
                try:
                    score = int(str(score)) if float(str(score)) == int(float(str(score))) else None
                except ValueError:
                    score = None
                if score is None:
                    raise DataFormatError(where, number, "score", f"grade must be an integer, got {row.get('score')!r}")
            if doc_id not in docs:
                raise DataFormatError(where, number, "corpus-id", f"unknown document {doc_id!r}")
            if qid not in texts:
                raise DataFormatError(where, number, "query-id", f"unknown query {qid!r}")
            rows.setdefault(qid, {})[doc_id] = score
        graded[split] = rows
    return RetrievalData(docs, texts, graded, name=name)
