"""The embedded default corpus: the scientific-Python API reference, harvested at run time.

Each documented public object of numpy, scipy, pandas, networkx, torch and a few standard
library modules becomes a document (title = qualified name, text = its docstring without the
"See Also" section). The objects form a typed graph:

* ``contains``  module -> member, class -> method
* ``see_also``  numpydoc "See Also" entries (source -> target)
* ``inherits``  class -> base class
* ``mentions``  a docstring names another object
* ``same_name`` the same short name in different places (``numpy.mean`` / ``torch.mean``)

Queries are the human-written short descriptions of "See Also" entries
(``average : Weighted average`` gives the query "Weighted average" for ``numpy.average``).
Graded relevance follows from the structure (the rule is in ``data/README.md``):
3 = the target, 2 = its ``see_also`` neighbours and cross-library twins, 1 = same topic.

Taught in: notebooks/10_explore_query_document_pairs.ipynb
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
import shutil
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

from cookbook.beir import RetrievalData, load_beir, normalize_text, write_beir
from cookbook.config import CACHE_DIR, SEED
from cookbook.config import profile as read_profile

HARVEST_VERSION = 5  # 5: queries equal up to punctuation share one split
# Size of the corpus per profile: smoke keeps CI fast, laptop fits a 2-core CPU.
DEFAULT_MAX_DOCS = {"smoke": 400, "laptop": 3000, "full": None}
EDGE_TYPES = ("contains", "see_also", "inherits", "mentions", "same_name")
SPLIT_SHARES = {"test": 0.30, "dev": 0.10}  # the rest is train
MIN_DOC_WORDS = 8
MAX_GRADE1 = 40

MODULES = {
    "numpy": ["numpy", "numpy.linalg", "numpy.fft", "numpy.random", "numpy.ma", "numpy.polynomial"],
    "scipy": [
        "scipy.stats", "scipy.linalg", "scipy.optimize", "scipy.signal", "scipy.sparse",
        "scipy.sparse.linalg", "scipy.sparse.csgraph", "scipy.spatial", "scipy.spatial.distance",
        "scipy.interpolate", "scipy.integrate", "scipy.cluster.hierarchy", "scipy.cluster.vq",
        "scipy.ndimage", "scipy.fft", "scipy.special",
    ],
    "pandas": ["pandas", "pandas.api.types", "pandas.plotting"],
    "networkx": ["networkx", "networkx.algorithms.community", "networkx.algorithms.approximation"],
    "torch": ["torch", "torch.nn", "torch.nn.functional", "torch.linalg", "torch.fft", "torch.special",
              "torch.optim", "torch.distributions", "torch.utils.data"],
    "stdlib": ["statistics", "math", "itertools", "functools", "collections", "heapq", "bisect",
               "random", "re", "json", "os.path", "textwrap", "string", "difflib", "csv", "datetime",
               "pathlib", "fractions", "decimal", "operator"],
}
# Classes whose public methods are documents too (the objects people search most).
EXPAND_CLASSES = [
    "numpy.ndarray", "numpy.random.Generator", "pandas.DataFrame", "pandas.Series", "pandas.Index",
    "networkx.Graph", "networkx.DiGraph", "torch.Tensor", "torch.nn.Module", "collections.Counter",
    "collections.deque", "pathlib.Path", "datetime.datetime", "scipy.sparse.csr_array",
]
ALIASES = {"np": "numpy", "pd": "pandas", "nx": "networkx", "sp": "scipy", "F": "torch.nn.functional"}
SECTION = re.compile(r"^\s*([A-Z][A-Za-z ]+)\s*\n\s*-{3,}\s*$", re.M)
ROLE = re.compile(r":[a-z]+:|[`~]|\(\)$")
DOTTED = re.compile(r"(?<![\w.])((?:np|numpy|scipy|pd|pandas|nx|networkx|torch|F)(?:\.[A-Za-z_]\w*)+)")
# "Equivalent method", "Similar function which ...": pointers, not descriptions of a need
GENERIC = re.compile(r"^(an? |the )?(equivalent|similar|same|alias|analogous|see|refer|corresponding|counterpart|"
                     r"inverse of|opposite)\b", re.I)
BACKTICKED = re.compile(r"(?::[a-z]+:)?`~?([A-Za-z_][\w.]*)(?:\(\))?`")


# --------------------------------------------------------------------------- docstrings


def split_see_also(doc: str) -> tuple[str, str]:
    """Return ``(text_without_see_also, see_also_block)`` of a numpydoc docstring."""
    headers = list(SECTION.finditer(doc))
    for i, match in enumerate(headers):
        if match.group(1).strip().lower() == "see also":
            end = headers[i + 1].start() if i + 1 < len(headers) else len(doc)
            return (doc[: match.start()].rstrip() + "\n\n" + doc[end:].lstrip()).strip(), doc[match.end():end]
    return doc, ""


def parse_see_also(block: str) -> list[tuple[list[str], str]]:
    """Parse a "See Also" block into ``[(names, description), ...]``."""
    lines = [ln for ln in block.splitlines() if ln.strip()]
    if not lines:
        return []
    base = min(len(ln) - len(ln.lstrip()) for ln in lines)
    entries: list[tuple[list[str], list[str]]] = []
    for line in lines:
        indent = len(line) - len(line.lstrip())
        text = line.strip()
        if indent > base and entries:
            entries[-1][1].append(text)
            continue
        names_part, _, desc = text.partition(" : ")
        if not _ and text.endswith(" :"):
            names_part = text[:-2]
        names = [ROLE.sub("", n).strip().rstrip(".") for n in names_part.split(",")]
        entries.append(([n for n in names if n], [desc.strip()] if desc.strip() else []))
    return [(names, " ".join(desc).strip()) for names, desc in entries if names]


def clean_markup(text: str) -> str:
    """Drop reStructuredText roles and backticks: ``:func:`numpy.mean``` -> ``numpy.mean``."""
    text = re.sub(r":[a-z]+:`~?([^`]*)`", r"\1", text)
    return " ".join(text.replace("`", "").split())


def _clean_doc(obj) -> str | None:
    raw = getattr(obj, "__doc__", None)
    if not isinstance(raw, str):
        return None
    doc = inspect.cleandoc(raw).strip()
    return doc if len(doc.split()) >= MIN_DOC_WORDS else None


def _kind(obj) -> str:
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "class"
    return "function"


def _public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if not isinstance(names, (list, tuple)):
        names = dir(module)
    return sorted({n for n in names if isinstance(n, str) and not n.startswith("_")})


# --------------------------------------------------------------------------- harvest


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in ("numpy", "scipy", "pandas", "networkx", "torch"):
        out[name] = importlib.import_module(name).__version__
    return out


def harvest() -> tuple[dict[str, dict], dict[str, str], dict[str, str], list[tuple[str, str, str]]]:
    """Collect documents, aliases, raw "See Also" blocks and structural edges.

    Returns ``(docs, aliases, see_also_blocks, edges)`` where ``docs`` maps a canonical
    qualified name to ``{"title", "text", "package", "kind", "module"}``.
    """
    docs: dict[str, dict] = {}
    aliases: dict[str, str] = {}
    blocks: dict[str, str] = {}
    by_object: dict[int, str] = {}
    keep_alive = []  # ids are only unique while objects live
    edges: list[tuple[str, str, str]] = []

    def add(obj, name: str, package: str, module: str, parent: str | None):
        if id(obj) in by_object:
            aliases.setdefault(name, by_object[id(obj)])
            return None
        doc = _clean_doc(obj)
        if doc is None:
            return None
        text, block = split_see_also(doc)
        docs[name] = {"title": name, "text": text, "package": package, "kind": _kind(obj), "module": module}
        if block:
            blocks[name] = block
        by_object[id(obj)] = name
        keep_alive.append(obj)
        aliases[name] = name
        if parent is not None and parent in docs:
            edges.append((parent, name, "contains"))
        return name

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for package, modules in MODULES.items():
            for module_name in modules:
                try:
                    module = importlib.import_module(module_name)
                except Exception:  # an optional submodule missing in this version
                    continue
                mod_id = add(module, module_name, package, module_name, None) or aliases.get(module_name)
                for attr in _public_names(module):
                    try:
                        obj = getattr(module, attr)
                    except Exception:
                        continue
                    if inspect.ismodule(obj):
                        continue
                    if not (callable(obj) or inspect.isclass(obj)):
                        continue
                    add(obj, f"{module_name}.{attr}", package, module_name, mod_id)
        for class_name in EXPAND_CLASSES:
            class_id = aliases.get(class_name)
            if class_id is None:
                continue
            module_name, _, attr = class_name.rpartition(".")
            cls = getattr(importlib.import_module(module_name), attr)
            package = docs[class_id]["package"]
            for name in sorted(vars(cls)):
                if name.startswith("_"):
                    continue
                member = getattr(cls, name, None)
                if member is None or not callable(member):
                    continue
                add(member, f"{class_id}.{name}", package, module_name, class_id)
        # inheritance between documented classes
        for obj in keep_alive:
            if inspect.isclass(obj):
                for base in obj.__bases__:
                    if id(base) in by_object and by_object[id(base)] != by_object[id(obj)]:
                        edges.append((by_object[id(obj)], by_object[id(base)], "inherits"))
    return docs, aliases, blocks, edges


class _Resolver:
    """Resolve a name written in a docstring to a document id."""

    def __init__(self, docs: dict[str, dict], aliases: dict[str, str]):
        self.docs, self.aliases = docs, aliases
        self.by_short: dict[tuple[str, str], list[str]] = defaultdict(list)
        for alias, doc_id in aliases.items():
            short = alias.rsplit(".", 1)[-1]
            self.by_short[(docs[doc_id]["package"], short)].append(doc_id)

    def __call__(self, name: str, source: str) -> str | None:
        name = name.strip().strip("`").rstrip("()").lstrip("~")
        if not name or not re.fullmatch(r"[A-Za-z_][\w.]*", name):
            return None
        head, _, rest = name.partition(".")
        if head in ALIASES:
            name = ALIASES[head] + ("." + rest if rest else "")
        src = self.docs[source]
        candidates = [name, f"{src['module']}.{name}", f"{source}.{name}",
                      f"{source.rsplit('.', 1)[0]}.{name}"]
        top = src["module"].split(".")[0]
        candidates.append(f"{top}.{name}")
        for candidate in candidates:
            if candidate in self.aliases:
                found = self.aliases[candidate]
                return found if found != source else None
        matches = set(self.by_short.get((src["package"], name.rsplit(".", 1)[-1]), []))
        if "." in name:
            matches = {m for m in matches if m.endswith("." + name)}
        if len(matches) == 1:
            found = matches.pop()
            return found if found != source else None
        return None


def _hash(text: str, seed: int = SEED) -> int:
    return int(hashlib.sha1(f"{seed}:{text}".encode()).hexdigest()[:12], 16)


def _split_of(qid: str, seed: int) -> str:
    share = (_hash(qid, seed) % 10_000) / 10_000
    if share < SPLIT_SHARES["test"]:
        return "test"
    if share < SPLIT_SHARES["test"] + SPLIT_SHARES["dev"]:
        return "dev"
    return "train"


def build_graph_and_queries(docs, aliases, blocks, edges, seed: int = SEED):
    """Typed edges (``see_also``, ``mentions``, ``same_name`` added) and the query table."""
    resolve = _Resolver(docs, aliases)
    typed: set[tuple[str, str, str]] = set(edges)
    raw_queries: list[tuple[str, str, str]] = []  # (source, target, description)
    for source, block in blocks.items():
        for names, description in parse_see_also(block):
            targets = [t for t in (resolve(n, source) for n in names) if t]
            for target in targets:
                typed.add((source, target, "see_also"))
            description = clean_markup(description)
            words = description.split()
            if GENERIC.match(description):
                continue
            if len(targets) == 1 and len(names) == 1 and 2 <= len(words) <= 40:
                raw_queries.append((source, targets[0], description.rstrip(".")))
    for doc_id, doc in docs.items():
        found = {m.group(1) for m in DOTTED.finditer(doc["text"])}
        found |= {m.group(1) for m in BACKTICKED.finditer(doc["text"]) if "." in m.group(1)}
        for name in found:
            target = resolve(name, doc_id)
            if target:
                typed.add((doc_id, target, "mentions"))
    groups: dict[str, list[str]] = defaultdict(list)
    for doc_id, doc in docs.items():
        if doc["kind"] != "module":
            groups[doc_id.rsplit(".", 1)[-1]].append(doc_id)
    for members in groups.values():
        if 2 <= len(members) <= 12 and len({docs[m]["module"] for m in members}) > 1:
            for a in members:
                for b in members:
                    if a != b and docs[a]["module"] != docs[b]["module"]:
                        typed.add((a, b, "same_name"))

    # one query per (description, target); descriptions used for many targets are generic
    normal = lambda s: " ".join(s.lower().split())  # noqa: E731
    targets_of = defaultdict(set)
    for _, target, text in raw_queries:
        targets_of[normal(text)].add(target)
    queries: dict[str, dict] = {}
    for source, target, text in sorted(raw_queries):
        key = normal(text)
        if len(targets_of[key]) > 2:
            continue
        qid = "q" + hashlib.sha1(f"{key}\t{target}".encode()).hexdigest()[:10]
        if qid not in queries:
            queries[qid] = {"text": text, "source": source, "target": target, "sources": [source]}
        else:
            queries[qid]["sources"].append(source)
    # a text shared by two targets goes to one split, so no evaluation text is ever trained on;
    # texts equal up to case and punctuation are one text (the split hash stays on `normal`,
    # so only such twins can move)
    text_split = {}
    for _, q in sorted(queries.items()):
        q["split"] = text_split.setdefault(normalize_text(q["text"]), _split_of(normal(q["text"]), seed))
    return typed, queries


def graded_qrels(target: str, typed_by_node: dict[str, list[tuple[str, str]]], docs) -> dict[str, int]:
    """Grades for one query from the graph around its target (rule in ``data/README.md``)."""
    grades = {target: 3}
    near = {n for n, t in typed_by_node.get(target, []) if t in ("see_also", "same_name")}
    for n in sorted(near):
        grades.setdefault(n, 2)
    topic: list[str] = []
    for n, t in typed_by_node.get(target, []):
        if t in ("mentions", "inherits", "contains"):
            topic.append(n)
    for n in sorted(near):
        topic.extend(m for m, t in typed_by_node.get(n, []) if t == "see_also")
    parents = [n for n, t in typed_by_node.get(target, []) if t == "contains" and docs[n].get("kind") != "function"]
    for parent in parents:
        siblings = [m for m, t in typed_by_node.get(parent, []) if t == "contains"]
        if len(siblings) <= 40:
            topic.extend(siblings)
    added = 0
    for n in topic:
        if n not in grades and added < MAX_GRADE1:
            grades[n] = 1
            added += 1
    return grades


def _subsample(docs, queries, typed_by_node, max_docs: int | None, seed: int) -> set[str]:
    """Choose ``max_docs`` documents so evaluation queries keep their judged neighbourhood."""
    if max_docs is None or max_docs >= len(docs):
        return set(docs)
    chosen: set[str] = set()
    order = sorted(queries, key=lambda q: _hash(q, seed))
    for split, share in (("test", 0.35), ("dev", 0.45), ("train", 0.7)):
        for qid in order:
            q = queries[qid]
            if q["split"] != split:
                continue
            group = {q["target"], q["source"]} | {
                n for n, t in typed_by_node.get(q["target"], []) if t in ("see_also", "same_name")
            }
            if len(chosen | group) > share * max_docs:
                continue
            chosen |= group
    rest = sorted(set(docs) - chosen, key=lambda d: _hash(d, seed))
    chosen |= set(rest[: max_docs - len(chosen)])
    return chosen


def build_apidocs(max_docs: int | None = None, seed: int = SEED) -> RetrievalData:
    """Harvest and assemble the API-docs dataset (no cache; see :func:`load_apidocs`)."""
    import networkx as nx

    started = time.perf_counter()
    docs, aliases, blocks, edges = harvest()
    typed, queries = build_graph_and_queries(docs, aliases, blocks, edges, seed)
    typed_by_node: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for s, t, kind in sorted(typed):
        typed_by_node[s].append((t, kind))
        typed_by_node[t].append((s, kind))
    keep = _subsample(docs, queries, typed_by_node, max_docs, seed)
    corpus = {d: {k: v for k, v in docs[d].items() if k != "module"} for d in sorted(keep)}
    qrels: dict[str, dict[str, dict[str, int]]] = {"train": {}, "dev": {}, "test": {}}
    texts, meta = {}, {}
    for qid, q in sorted(queries.items()):
        if q["target"] not in keep or q["source"] not in keep:
            continue
        grades = {d: g for d, g in graded_qrels(q["target"], typed_by_node, docs).items() if d in keep}
        qrels[q["split"]][qid] = grades
        texts[qid] = q["text"]
        meta[qid] = {"source": q["source"], "target": q["target"], "split": q["split"],
                     "sources": q["sources"]}
    graph = nx.MultiDiGraph()
    for d in corpus:
        graph.add_node(d, kind=corpus[d]["kind"], package=corpus[d]["package"], title=d)
    for s, t, kind in sorted(typed):
        if s in keep and t in keep:
            graph.add_edge(s, t, key=kind, type=kind)
    data = RetrievalData(corpus, texts, qrels, meta, graph, name="apidocs")
    data.manifest = {
        "harvest_version": HARVEST_VERSION,
        "versions": _versions(),
        "config": {"max_docs": max_docs, "seed": seed, "modules": MODULES, "expand": EXPAND_CLASSES},
        "counts": {**data.summary(), "harvested documents": len(docs), "words": sum(
            len(d["text"].split()) for d in corpus.values())},
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    data.manifest["checksum"] = checksum(data)
    assert_no_eval_leak(data)
    return data


def checksum(data: RetrievalData) -> str:
    """SHA-256 over the corpus, queries, qrels and graph edges, in a canonical order."""
    digest = hashlib.sha256()
    for part in (data.corpus, data.queries, data.qrels, data.query_meta):
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False).encode())
    if data.graph is not None:
        digest.update(json.dumps(sorted((s, t, k) for s, t, k in data.graph.edges(keys=True))).encode())
    return digest.hexdigest()


def assert_no_eval_leak(data: RetrievalData) -> None:
    """Fail loudly if an evaluation query or its graph edge could reach training.

    Checks: no query text is shared between train and dev/test; the training graph keeps no
    edge between an evaluation (source, target) pair.
    """
    if not data.qrels.get("train") or not any(data.qrels.get(s) for s in ("dev", "test")):
        import warnings

        warnings.warn(f"dataset {data.name!r} lacks a train or an evaluation split: the query-text "
                      "leak check has nothing to compare", stacklevel=2)
    train_texts = {normalize_text(data.queries[q]) for q in data.qrels.get("train", {})}
    for split in ("dev", "test"):
        for qid in data.qrels.get(split, {}):
            assert normalize_text(data.queries[qid]) not in train_texts, f"{split} query {qid} text is also in train"
    if data.graph is not None:
        graph = data.training_graph()
        for s, t in data.eval_pairs:
            assert not graph.has_edge(s, t) and not graph.has_edge(t, s), f"eval edge {s}->{t} in training graph"


# --------------------------------------------------------------------------- cache


def _cache_key(max_docs: int | None, seed: int) -> str:
    blob = json.dumps([HARVEST_VERSION, _versions(), max_docs, seed, MODULES, EXPAND_CLASSES], sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def load_apidocs(profile: str | None = None, max_docs: int | None = -1, seed: int = SEED,
                 cache_dir: Path | None = None, rebuild: bool = False) -> RetrievalData:
    """The API-docs dataset for a profile, from the cache under ``data/cache`` or built anew.

    ``max_docs=-1`` takes the profile's size (smoke 400, laptop 3000, full: everything).
    The cache folder is a normal BEIR folder plus ``edges.jsonl`` and ``manifest.json``; it is
    rebuilt when package versions, the harvest configuration or its checksum change.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """

    if max_docs == -1:
        max_docs = DEFAULT_MAX_DOCS[read_profile(profile).name]
    folder = Path(cache_dir or CACHE_DIR) / "apidocs" / _cache_key(max_docs, seed)
    if not rebuild and (folder / "manifest.json").exists():
        data = load_beir(folder)  # reads edges.jsonl into data.graph
        data.name = "apidocs"
        if data.manifest.get("checksum") == checksum(data):
            return data
    data = build_apidocs(max_docs, seed)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write_beir(data, tmp)  # corpus, queries, qrels, edges.jsonl, query_meta.jsonl
    (tmp / "manifest.json").write_text(json.dumps(data.manifest, indent=1, sort_keys=True))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return data


def load(source: str = "apidocs", **kwargs) -> RetrievalData:
    """``"apidocs"`` for the built-in corpus, or the path of any BEIR-format folder."""
    if source == "apidocs":
        return load_apidocs(**kwargs)
    return load_beir(source)
