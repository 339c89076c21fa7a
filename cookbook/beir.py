"""Query-document pairs in the BEIR layout, validated line by line.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/{split}.tsv`` (``query-id``, ``corpus-id``, ``score``; graded
integers allowed). Every recipe in this cookbook takes a :class:`RetrievalData`, so it runs
unchanged on the built-in API-docs corpus, on any BEIR folder and on any Hugging Face dataset
in that layout.

Bad input raises :class:`DataFormatError`, which names the file, the line and the field.

Taught in: notebooks/10_explore_query_document_pairs.ipynb
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

_WORD = re.compile(r"[a-z0-9]+")


def normalize_text(text: str) -> str:
    """Lower-case words only: the one form used for duplicate, copy and leak checks, so
    "The n-dimensional FFT." and "the N-dimensional FFT" count as the same query.

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    return " ".join(_WORD.findall(text.lower()))


class DataFormatError(ValueError):
    """Malformed input; the message names the file, the line and the field."""

    def __init__(self, path, line: int | None, field_name: str | None, problem: str):
        self.path, self.line, self.field = str(path), line, field_name
        where = str(path) + (f", line {line}" if line is not None else "")
        what = f" field {field_name!r}:" if field_name else ""
        super().__init__(f"{where}:{what} {problem}")


@dataclass
class RetrievalData:
    """A corpus, its queries and graded qrels per split (plus, for the API docs, a graph).

    ``corpus``: doc_id -> {"title", "text", ...}; ``queries``: qid -> text;
    ``qrels``: split -> qid -> doc_id -> grade (int; unlisted documents count as 0).
    """

    corpus: dict[str, dict]
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]]
    query_meta: dict[str, dict] = field(default_factory=dict)
    graph: object | None = None
    manifest: dict = field(default_factory=dict)
    name: str = "beir"

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
            import warnings

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


def _json_objects(path: Path):
    """``(line number, object)`` for each non-empty line of a JSONL file, validated as JSON objects."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, None, None, "file not found")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(path, number, None, f"invalid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataFormatError(path, number, None, "expected a JSON object")
            yield number, row


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict]]:
    rows, seen = [], {}
    for number, row in _json_objects(path):
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
    return rows


def read_corpus(path) -> dict[str, dict]:
    """Read ``corpus.jsonl``; ``title`` is optional, ``_id`` and ``text`` are required."""
    rows = _read_jsonl(Path(path), ("_id", "text"))
    if not rows:
        raise DataFormatError(path, None, None, "empty corpus: no documents")
    corpus = {}
    for _, row in rows:
        doc = {k: v for k, v in row.items() if k != "_id"}
        doc.setdefault("title", "")
        corpus[row["_id"]] = doc
    return corpus


def read_queries(path) -> dict[str, str]:
    """Read ``queries.jsonl`` (``_id``, ``text``)."""
    return {row["_id"]: row["text"] for _, row in _read_jsonl(Path(path), ("_id", "text"))}


def read_qrels(path, corpus: dict | None = None, queries: dict | None = None):
    """Read a ``qrels/{split}.tsv`` with integer grades; optionally check ids exist."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, None, None, "file not found")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        for number, row in enumerate(reader, start=1):
            if not row or not "".join(row).strip():
                continue
            if number == 1 and row[0].strip().lower() in ("query-id", "qid", "query_id"):
                continue
            if len(row) != 3:
                raise DataFormatError(path, number, None, f"expected 3 tab-separated columns, got {len(row)}")
            qid, doc_id, grade_text = (c.strip() for c in row)
            try:
                grade = int(grade_text)
            except ValueError:
                raise DataFormatError(path, number, "score", f"grade must be an integer, got {grade_text!r}") from None
            if grade < 0:
                raise DataFormatError(path, number, "score", f"grade must be >= 0, got {grade}")
            if corpus is not None and doc_id not in corpus:
                raise DataFormatError(path, number, "corpus-id", f"unknown document {doc_id!r}")
            if queries is not None and qid not in queries:
                raise DataFormatError(path, number, "query-id", f"unknown query {qid!r}")
            qrels.setdefault(qid, {})[doc_id] = grade
    return qrels


def read_edges(path, corpus: dict):
    """Read an ``edges.jsonl`` (``source``, ``target``, ``type``) into a networkx ``MultiDiGraph``.

    Every corpus document is a node (with its ``title`` and, when present, ``kind`` and
    ``package``); an edge naming an unknown document is an error. This is the graph that the
    knowledge-graph notebooks (50, 51) read, so the graph recipes run on a user's own graph.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import networkx as nx

    graph = nx.MultiDiGraph()
    for doc_id, doc in corpus.items():
        attrs = {k: doc[k] for k in ("kind", "package") if k in doc}
        graph.add_node(doc_id, title=doc.get("title") or doc_id, **attrs)
    for number, row in _json_objects(path):
        for name in ("source", "target", "type"):
            if not isinstance(row.get(name), str) or not row[name]:
                raise DataFormatError(path, number, name, "missing or not a non-empty string")
        for name in ("source", "target"):
            if row[name] not in corpus:
                raise DataFormatError(path, number, name, f"unknown document {row[name]!r}")
        graph.add_edge(row["source"], row["target"], key=row["type"], type=row["type"])
    return graph


def load_beir(folder, splits: tuple[str, ...] | None = None) -> RetrievalData:
    """Load a BEIR-format folder; every qrels file found under ``qrels/`` becomes a split.

    An optional ``edges.jsonl`` (``source``, ``target``, ``type``) becomes ``data.graph``;
    an optional ``query_meta.jsonl`` holds per-query fields (the API-docs corpus keeps the
    source and target of each description there, which the leak guards read).

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    folder = Path(folder)
    corpus = read_corpus(folder / "corpus.jsonl")
    queries = read_queries(folder / "queries.jsonl")
    files = sorted((folder / "qrels").glob("*.tsv"))
    if splits is not None:
        files = [folder / "qrels" / f"{s}.tsv" for s in splits]
    if not files:
        raise DataFormatError(folder / "qrels", None, None, "no qrels/*.tsv file")
    qrels = {f.stem: read_qrels(f, corpus, queries) for f in files}
    meta = {}
    if (folder / "query_meta.jsonl").exists():
        meta = {row["_id"]: {k: v for k, v in row.items() if k != "_id"}
                for _, row in _read_jsonl(folder / "query_meta.jsonl", ("_id",))}
    manifest = {}
    if (folder / "manifest.json").exists():
        manifest = json.loads((folder / "manifest.json").read_text())
    graph = read_edges(folder / "edges.jsonl", corpus) if (folder / "edges.jsonl").exists() else None
    return RetrievalData(corpus, queries, qrels, meta, graph, manifest, name=folder.name)


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
