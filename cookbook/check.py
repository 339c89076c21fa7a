"""Check a data folder before a recipe runs on it: ``python -m cookbook check --data DIR``.

Loads the folder the way every recipe does (:func:`cookbook.beir.load_beir`: a format error
names the file, line and field and the command exits with status 2) and prints what it holds:
the format each file was read as, documents, queries per split, label levels (a grade
histogram per split), graph edges, text lengths in tokens of the default embedder's tokenizer,
empty and duplicate texts. Then which recipes can run on it, and why not, and a rule-of-thumb
suggestion of where to start (notebook 90 measures the same choices on the API-docs corpus and
turns them into the README's decision guide).

Nothing here loads a model: only the embedder's tokenizer is read (whitespace tokens, with a
note, when it is not on this machine).

Taught in: docs/own-data.md (the user's-own-data page of the site)
"""

from __future__ import annotations

import random
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from cookbook import corpus, models
from cookbook.beir import DataFormatError, RetrievalData, load_beir, normalize_text

#: recipe name -> what it needs from the data (every recipe also wants a test split for its
#: before/after metrics). Recipe names as in ``python -m cookbook recipe NAME``.
RECIPE_NEEDS = {
    "promptagator": "a corpus and an LLM; a train split gives few-shot examples (else zero-shot prompts)",
    "customir": "a corpus and an LLM (generated queries, LLM-verified hard negatives)",
    "ssra": "graded judged pairs (3+ levels) in a train split to seed its two models",
    "bixse": "judged pairs in a train split, graded or binary (else zero-shot generated queries)",
    "lce": "a corpus and an LLM that labels first-stage candidates; reranks the test queries",
    "scincl": "a graph over the documents: edges.jsonl (source, target, type)",
    "revela": "a corpus only: no labels and no LLM generation",
}
MAX_SEQ_LENGTH = 128  # what cookbook.models.load_embedder sets (MiniLM itself takes 256)
SAMPLE = 2000  # texts tokenized per part; larger corpora are sampled (seeded)


def load(data_dir) -> RetrievalData:
    """``apidocs`` (the built-in corpus, as ``python -m cookbook recipe`` reads it) or a BEIR folder."""
    if str(data_dir) == "apidocs":

        data = corpus.load_apidocs()
        data.formats = {"(built in)": "API-docs corpus harvested from the installed packages"}
        return data
    folder = Path(data_dir)
    if folder.exists() and not folder.is_dir():
        raise DataFormatError(folder, None, None, "not a folder (expected corpus.jsonl, queries.jsonl "
                              "and qrels/<split>.tsv inside)")
    return load_beir(folder)


def _tokenizer():
    """(tokenize function, description): the default embedder's tokenizer, or whitespace."""
    try:
        from transformers import AutoTokenizer  # heavy: imported only when checking lengths


        path = models.resolve("embedder")
        tok = AutoTokenizer.from_pretrained(path)
        name = f"{models.HUB_IDS['embedder']}, offline copy" if Path(path).exists() else path
        return (lambda texts: [len(ids) for ids in tok(texts, verbose=False)["input_ids"]],
                f"tokens of the default embedder's tokenizer ({name})")
    except (OSError, ValueError, ImportError) as err:  # offline and not installed: still useful
        note = f"whitespace tokens (the embedder's tokenizer is not available here: {type(err).__name__})"
        return (lambda texts: [len(t.split()) for t in texts]), note


def _lengths(tokenize, texts: list[str], seed: int = 0) -> dict:
    sampled = len(texts) > SAMPLE
    if sampled:
        texts = random.Random(seed).sample(texts, SAMPLE)
    n = np.asarray(tokenize(texts) if texts else [0])
    return {"median": int(np.median(n)), "p95": int(np.percentile(n, 95)), "max": int(n.max()),
            "over_max_seq_length": float(np.mean(n > MAX_SEQ_LENGTH)), "sampled": sampled}


def _duplicates(texts: dict[str, str]) -> tuple[int, list[str]]:
    """How many texts repeat an earlier one (after :func:`normalize_text`), and a few of their ids."""
    seen, dup = set(), []
    for key, text in texts.items():
        norm = normalize_text(text)
        if norm and norm in seen:
            dup.append(key)
        seen.add(norm)
    return len(dup), dup[:3]


def inspect(data: RetrievalData, tokenize=None) -> dict:
    """What a folder holds, as plain numbers (the ``check`` command prints them).

    Taught in: docs/own-data.md
    """
    tokenize, token_note = (tokenize, "tokens") if tokenize else _tokenizer()
    doc_texts = {d: data.doc_text(d) for d in data.corpus}
    grades = {split: Counter(g for docs in rows.values() for g in docs.values())
              for split, rows in sorted(data.qrels.items())}
    levels = sorted({g for c in grades.values() for g in c})
    graph = {}
    if data.graph is not None:
        graph = dict(Counter(k for _, _, k in data.graph.edges(keys=True)).most_common())
    return {
        "name": data.name, "formats": dict(data.formats),
        "documents": len(data.corpus),
        "titled": sum(bool(doc.get("title")) for doc in data.corpus.values()),
        "empty_documents": sum(not doc["text"].strip() for doc in data.corpus.values()),
        "duplicate_documents": _duplicates({d: doc["text"] for d, doc in data.corpus.items()}),
        "queries": len(data.queries),
        "queries_per_split": {s: len(rows) for s, rows in sorted(data.qrels.items())},
        "empty_queries": sum(not t.strip() for t in data.queries.values()),
        "duplicate_queries": _duplicates(data.queries),
        "grades": {s: dict(sorted(c.items())) for s, c in grades.items()},
        "levels": levels,
        "graph": graph,
        "token_note": token_note,
        "document_tokens": _lengths(tokenize, list(doc_texts.values())),
        "query_tokens": _lengths(tokenize, list(data.queries.values())),
    }


def _graded(stats: dict) -> bool:
    """More than one relevant level (grades 1 and 2, or more): what the graded recipes need."""
    return bool(stats["levels"]) and max(stats["levels"]) >= 2


def recipe_fit(stats: dict) -> list[tuple[str, str, str]]:
    """``(recipe, "yes" | "partly" | "no", why)`` for every recipe of :data:`RECIPE_NEEDS`.

    Taught in: docs/own-data.md
    """
    splits = stats["queries_per_split"]
    train, test = splits.get("train", 0) > 0, splits.get("test", 0) > 0
    graded = _graded(stats)
    fit = {
        "promptagator": ("yes", "few-shot examples from the train split") if train else
        ("yes", "zero-shot prompts (no train split; pass examples= to give a few)"),
        "customir": ("yes", "needs only the corpus (and an LLM)"),
        "ssra": ("yes", f"graded train labels (grades up to {max(stats['levels'])})") if train and graded else
        ("partly", "binary labels: no middle levels to synthesize") if train else
        ("partly", "no train split: it starts from zero-shot LLM queries, not your judgements"),
        "bixse": ("yes", f"{'graded' if graded else 'binary'} targets from the train split") if train else
        ("partly", "no train split: it trains on generated queries, not your judgements"),
        "lce": ("yes", "reranks the dense top-k with LLM-labelled training groups"),
        "scincl": ("yes", f"{sum(stats['graph'].values()):,} graph edges") if stats["graph"] else
        ("no", "no graph: add edges.jsonl (source, target, type) linking related documents"),
        "revela": ("yes", "needs only the corpus"),
    }
    rows = []
    for name in RECIPE_NEEDS:
        status, why = fit[name]
        if not test and status != "no":
            status, why = "partly", why + "; no test split, so no before/after metrics"
        rows.append((name, status, why))
    return rows


def suggest(stats: dict) -> list[str]:
    """A rule of thumb for where to start on this folder (the measured guide is notebook 90's).

    Taught in: docs/own-data.md
    """
    splits = stats["queries_per_split"]
    train, test = splits.get("train", 0) > 0, splits.get("test", 0) > 0
    out = []
    if not test:
        out.append("no test split: move some judged queries to qrels/test.tsv first, or no recipe can "
                   "show whether it helped")
    if train and _graded(stats):
        out.append("graded labels with a train split: start with bixse (graded targets); add ssra when "
                   "the middle levels are rare")
    elif train:
        out.append("binary labels with a train split: bixse on your pairs, or promptagator / customir "
                   "with them as few-shot examples")
    else:
        out.append("no training labels: promptagator or customir (an LLM writes the queries); revela "
                   "when there is no budget for LLM generation")
    if stats["graph"]:
        out.append("a graph over the documents: try scincl too (triplets from graph-embedding "
                   "neighbourhoods)")
    out.append("latency to spare at query time: put lce, a reranker, on top of the best of them")
    return out


def _percent(x: float) -> str:
    return f"{100 * x:.0f}%" if x == 0 or x >= 0.01 else "<1%"


def format_report(stats: dict, fit=None, advice=None, warned: list[str] | None = None) -> str:
    """The ``check`` command's text: what the folder holds, recipes, suggestion.

    Taught in: docs/own-data.md
    """
    fit = fit if fit is not None else recipe_fit(stats)
    advice = advice if advice is not None else suggest(stats)
    dup_docs, dup_queries = stats["duplicate_documents"], stats["duplicate_queries"]
    lines = [f"# {stats['name']}: loadable", "", "files:"]
    lines += [f"  {name}: {kind}" for name, kind in stats["formats"].items()]
    lines += ["", f"documents: {stats['documents']:,} ({stats['titled']:,} with a title); "
                  f"empty texts: {stats['empty_documents']}; duplicate texts: {dup_docs[0]}"
                  + (f" (e.g. {', '.join(dup_docs[1])})" if dup_docs[0] else ""),
              f"queries: {stats['queries']:,}; with qrels per split: "
              + ", ".join(f"{s} {n:,}" for s, n in stats["queries_per_split"].items())
              + f"; empty texts: {stats['empty_queries']}; duplicate texts: {dup_queries[0]}"
              + (f" (e.g. {', '.join(dup_queries[1])})" if dup_queries[0] else ""),
              f"label levels: {stats['levels']} ({'graded' if _graded(stats) else 'binary'}; "
              "documents not listed count as 0)"]
    for split, hist in stats["grades"].items():
        lines.append(f"  {split}: " + ", ".join(f"grade {g}: {n:,}" for g, n in hist.items()))
    edges = stats["graph"]
    lines.append(f"graph edges: {sum(edges.values()):,} (" + ", ".join(f"{k} {n:,}" for k, n in edges.items())
                 + ")" if edges else "graph edges: none (no edges.jsonl)")
    lines.append(f"text lengths in {stats['token_note']}:")
    for part, key in (("documents", "document_tokens"), ("queries", "query_tokens")):
        t = stats[key]
        lines.append(f"  {part}: median {t['median']}, 95th percentile {t['p95']}, max {t['max']}; "
                     f"over {MAX_SEQ_LENGTH} (truncated when embedded): {_percent(t['over_max_seq_length'])}"
                     + (f" (a sample of {SAMPLE:,})" if t["sampled"] else ""))
    if warned:
        lines += ["", "warnings:"] + [f"  {w}" for w in warned]
    lines += ["", "recipes (python -m cookbook recipe NAME --data DIR --out DIR):"]
    width = max(len(n) for n, _, _ in fit)
    lines += [f"  {name:<{width}}  {status:<6}  {why}" for name, status, why in fit]
    lines += ["", "where to start:"] + [f"  - {line}" for line in advice]
    return "\n".join(lines) + "\n"


def main(data_dir, out=None, err=None) -> int:
    """Check ``data_dir`` and print the report; 0 when it loads, 2 on a format error.

    Taught in: docs/own-data.md
    """
    out, err = out or sys.stdout, err or sys.stderr
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = load(data_dir)
        except DataFormatError as error:
            print(f"cookbook check: {error}", file=err)
            return 2
    warned = sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)})
    stats = inspect(data)
    print(format_report(stats, warned=warned), file=out, end="")
    return 0
