"""Promptagator-style query generation with a small open LLM, and its filters.

The recipe (Dai et al., "Promptagator: Few-shot Dense Retrieval From 8 Examples", 2022; with
open LLMs of 3B parameters and less: Gwon, Jedidi, Lin, "Study on LLMs for Promptagator-Style
Dense Retriever Training"):

1. a few-shot prompt of up to 8 (document, query) examples taken from the corpus's own
   human-written short descriptions (numpydoc "See Also" lines) of the TRAIN split only;
2. ``k`` sampled queries per document;
3. cleaning: empty, too short or long, only the object's name, a copy of a few-shot example,
   a duplicate;
4. round-trip consistency: keep a query when its source document ranks in the base
   retriever's top-``k``;
5. optionally, query-likelihood reranking: keep the candidates the LLM finds most likely given
   their document.

Every stage reports how many queries survive (:func:`acceptance_table`).

Taught in: notebooks/20_generate_queries_promptagator.ipynb
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cookbook import finetune
from cookbook.beir import normalize_text
from cookbook.config import SEED

INSTRUCTION = "Write a short search query that the documentation entry answers.\n\n"
#: The instruction for any other corpus (``promptagator(instruction=...)`` sets your own).
GENERIC_INSTRUCTION = "Write a short search query that the document answers.\n\n"


def default_instruction(data) -> str:
    """The API-docs instruction for the built-in corpus, a corpus-neutral one for any other."""
    return INSTRUCTION if getattr(data, "name", "") == "apidocs" else GENERIC_INSTRUCTION
normalize = normalize_text  # the package's one text normaliser (cookbook.beir)


def _clip(text: str, words: int) -> str:
    return " ".join(text.split()[:words])


def few_shot_examples(data, k: int = 8, seed: int = SEED, min_words: int = 2,
                      max_words: int = 10, group=lambda doc: doc.get("package", "")) -> list[dict]:
    """Up to ``k`` (doc_id, query) examples from the TRAIN split's human-written queries.

    Never dev or test queries (asserted). One example per target document, spread over the
    groups that ``group(doc)`` names (round robin; API docs: the package) so the prompt shows
    the variety of the corpus. A dataset without a train split has no examples: pass your own
    to :func:`promptagator` (``examples=``) or run it zero-shot.

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    if not 1 <= k <= 8:
        raise ValueError(f"k={k}: Promptagator uses 1 to 8 few-shot examples")
    train = data.qrels.get("train")
    if not train:
        raise ValueError("data.qrels has no 'train' split: few-shot examples come from it only")
    by_package: dict[str, list[dict]] = defaultdict(list)
    seen_docs = set()
    for qid in sorted(train):
        meta = data.query_meta.get(qid, {})
        assert meta.get("split", "train") == "train", f"{qid} is not a train query"
        target = meta.get("target") or max(train[qid], key=train[qid].get)
        text = " ".join(data.queries[qid].split())
        n = len(text.split())
        if target in seen_docs or target not in data.corpus or not min_words <= n <= max_words:
            continue
        if "<" in text or "http" in text or "`" in text:
            continue
        seen_docs.add(target)
        by_package[group(data.corpus[target])].append({"doc_id": target, "query": text})
    rng = random.Random(seed)
    pools = [rng.sample(v, len(v)) for _, v in sorted(by_package.items())]
    rng.shuffle(pools)
    chosen: list[dict] = []
    while len(chosen) < k and any(pools):
        for pool in pools:
            if pool and len(chosen) < k:
                chosen.append(pool.pop())
    eval_texts = {normalize(data.queries[q]) for s in ("dev", "test") for q in data.qrels.get(s, {})}
    assert not any(normalize(e["query"]) in eval_texts for e in chosen), "an evaluation query leaked"
    return chosen


def build_prompt(document: str, examples: list[tuple[str, str]], doc_words: int = 40,
                 example_words: int = 24, instruction: str = INSTRUCTION) -> str:
    """The few-shot prompt: examples as ``Document: ... / Query: ...`` blocks, then the document.

    All prompts of a run share the instruction and examples, so :class:`cookbook.llm.LocalLLM`
    computes that prefix once (KV cache).

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    shots = "".join(f"Document: {_clip(d, example_words)}\nQuery: {q}\n\n" for d, q in examples)
    return f"{instruction}{shots}Document: {_clip(document, doc_words)}\nQuery:"


def _shot(data, example) -> tuple[str, str]:
    """One few-shot example as (document text, query): a dict with ``doc_id`` (or ``document``)
    and ``query``, or a ``(document text, query)`` pair."""
    if isinstance(example, dict):
        if "query" not in example or not ("doc_id" in example or "document" in example):
            raise ValueError(f"few-shot example {example!r}: give 'query' and 'doc_id' or 'document'")
        if "document" in example:
            return example["document"], example["query"]
        if example["doc_id"] not in data.corpus:
            raise ValueError(f"few-shot example names unknown document {example['doc_id']!r}")
        return data.doc_text(example["doc_id"]), example["query"]
    document, query = example
    return document, query


def promptagator_prompts(data, doc_ids, examples: list, doc_words: int = 40,
                         example_words: int = 24, instruction: str | None = None) -> dict[str, str]:
    """``{doc_id: prompt}`` for the documents to generate queries for (no examples: zero-shot)."""
    shots = [_shot(data, e) for e in examples]
    instruction = default_instruction(data) if instruction is None else instruction
    return {d: build_prompt(data.doc_text(d), shots, doc_words, example_words, instruction) for d in doc_ids}


def generate_queries(llm, prompts: dict[str, str], n: int = 3, temperature: float = 0.8,
                     top_p: float = 0.95, top_k: int = 40, repetition_penalty: float = 1.1,
                     max_new_tokens: int = 24, seed: int = SEED) -> pd.DataFrame:
    """``n`` sampled queries per document: a table (doc_id, sample, query).

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    doc_ids = list(prompts)
    outs = llm.generate([prompts[d] for d in doc_ids], temperature=temperature, top_p=top_p,
                        top_k=top_k, repetition_penalty=repetition_penalty, n=n,
                        max_new_tokens=max_new_tokens, seed=seed, stop=("\n",),
                        desc="generate queries")
    rows = [{"doc_id": d, "sample": j, "query": q}
            for d, qs in zip(doc_ids, outs) for j, q in enumerate(qs)]
    return pd.DataFrame(rows, columns=["doc_id", "sample", "query"])


def _dotted_names(doc_id: str, doc: dict) -> set[str]:
    """The names a query may not merely repeat: title and id, and their last dotted part."""
    title = doc.get("title") or doc_id
    return {title, title.split(".")[-1], doc_id, doc_id.split(".")[-1]}


def clean(df: pd.DataFrame, data, examples: list, min_words: int = 2,
          max_words: int = 16, names=_dotted_names) -> pd.DataFrame:
    """Label each generated query with why it is dropped (``reason``; "" = kept).

    Reasons: ``empty``; ``too short``/``too long``; ``only the name`` (one of
    ``names(doc_id, doc)``: by default the title and id and, for dotted API names, their last
    part); ``copied example`` (a few-shot query); ``evaluation query`` (the text of a dev or
    test query: it would leak into training); ``duplicate`` (a query already kept, for this or
    another document).

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    shots = {normalize(e["query"] if isinstance(e, dict) else e[1]) for e in examples}
    held_out = {normalize(data.queries[q]) for s in ("dev", "test") for q in data.qrels.get(s, {})}
    seen: set[str] = set()
    reasons = []
    for d, q in zip(df["doc_id"], df["query"]):
        norm = normalize(q)
        n = len(norm.split())
        own = {normalize(name) for name in names(d, data.corpus[d])}
        if not norm:
            reason = "empty"
        elif n < min_words and norm not in own:
            reason = "too short"
        elif n > max_words:
            reason = "too long"
        elif norm in own:
            reason = "only the name"
        elif norm in shots:
            reason = "copied example"
        elif norm in held_out:
            reason = "evaluation query"
        elif norm in seen:
            reason = "duplicate"
        else:
            reason = ""
            seen.add(norm)
        reasons.append(reason)
    out = df.copy()
    out["reason"] = reasons
    return out


def consistency_ranks(df: pd.DataFrame, index, depth: int = 100) -> pd.DataFrame:
    """Add ``rank``: where the base retriever ranks each query's source document (1 = top;
    ``depth + 1`` when outside the top ``depth``). ``index`` is a
    :class:`cookbook.retrieval.DenseIndex` (or anything with ``search(queries, k)``).

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    queries = {f"g{i}": q for i, q in enumerate(df["query"])}
    run = index.search(queries, k=depth) if queries else {}
    ranks = []
    for i, d in enumerate(df["doc_id"]):
        ranked = sorted(run.get(f"g{i}", {}).items(), key=lambda kv: -kv[1])
        pos = next((r for r, (doc, _) in enumerate(ranked, start=1) if doc == d), depth + 1)
        ranks.append(pos)
    out = df.copy()
    out["rank"] = ranks
    return out


def ql_scores(df: pd.DataFrame, llm, data, max_doc_words: int = 64) -> pd.DataFrame:
    """Add ``ql``: the LLM's per-token ``log p(query | document)``.

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    out = df.copy()
    out["ql"] = llm.query_likelihood(list(df["query"]), [data.doc_text(d) for d in df["doc_id"]],
                                     max_doc_words=max_doc_words) if len(df) else []
    return out


def top_per_doc(df: pd.DataFrame, column: str, keep: int = 1) -> pd.DataFrame:
    """The ``keep`` highest-``column`` rows of every document."""
    return (df.sort_values(["doc_id", column], ascending=[True, False])
              .groupby("doc_id", sort=False).head(keep).sort_index())


def acceptance_table(stages: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """How many queries (and documents with at least one) survive each stage.

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    rows, first, prev = [], None, None
    for name, df in stages:
        n = len(df)
        first = n if first is None else first
        rows.append({"stage": name, "queries": n, "documents": df["doc_id"].nunique() if n else 0,
                     "kept of previous": n / prev if prev else 1.0,
                     "kept of generated": n / first if first else 0.0})
        prev = n
    return pd.DataFrame(rows).set_index("stage")


@dataclass
class QueryGenResult:
    """Everything a Promptagator run produced (see :func:`promptagator`)."""

    examples: list[dict]
    raw: pd.DataFrame
    cleaned: pd.DataFrame
    consistent: pd.DataFrame
    final: pd.DataFrame
    stats: pd.DataFrame
    usage: dict = field(default_factory=dict)


def promptagator(data, llm, index, doc_ids, *, examples: list | None = None,
                 instruction: str | None = None, n_examples: int = 8, n_samples: int = 3,
                 consistency_k: int = 10, ql_keep: int | None = None, temperature: float = 0.8,
                 top_p: float = 0.95, top_k: int = 40, max_new_tokens: int = 24,
                 seed: int = SEED) -> QueryGenResult:
    """The whole recipe: examples -> prompts -> sampled queries -> clean -> round-trip
    consistency (source doc in the base retriever's top ``consistency_k``) -> optional QL
    reranking (keep the ``ql_keep`` most likely per document).

    ``examples``: your own few-shot pairs (dicts with ``query`` and ``doc_id`` or ``document``,
    or ``(document, query)`` tuples); ``[]`` runs zero-shot. ``None`` takes up to ``n_examples``
    from the train split, or runs zero-shot (with a warning) when the data has none.
    ``instruction``: the prompt's first line (default: :func:`default_instruction`).

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    if examples is None:
        if data.qrels.get("train"):
            examples = few_shot_examples(data, n_examples, seed=seed)
        else:
            import warnings

            warnings.warn(f"dataset {data.name!r} has no train split: generating zero-shot "
                          "(pass examples=[...] to give few-shot pairs)", stacklevel=2)
            examples = []
    prompts = promptagator_prompts(data, doc_ids, examples, instruction=instruction)
    with llm.track() as usage:
        raw = generate_queries(llm, prompts, n=n_samples, temperature=temperature, top_p=top_p,
                               top_k=top_k, max_new_tokens=max_new_tokens, seed=seed)
        cleaned = clean(raw, data, examples)
        kept = cleaned[cleaned["reason"] == ""]
        ranked = consistency_ranks(kept, index, depth=max(consistency_k, 10))
        consistent = ranked[ranked["rank"] <= consistency_k]
        stages = [("generated", raw), ("cleaned", kept), (f"consistent@{consistency_k}", consistent)]
        final = consistent
        if ql_keep:
            final = top_per_doc(ql_scores(consistent, llm, data), "ql", ql_keep)
            stages.append((f"QL top-{ql_keep}/doc", final))
    return QueryGenResult(examples, raw, cleaned, consistent, final, acceptance_table(stages),
                          usage.as_dict())


def to_pairs(df: pd.DataFrame, data):
    """A ``datasets.Dataset`` with (anchor, positive) columns for sentence-transformers."""
    from datasets import Dataset

    return Dataset.from_dict({"anchor": list(df["query"]),
                              "positive": [data.doc_text(d) for d in df["doc_id"]]})


def fine_tune(model, train_dataset, *, output_dir: str | Path | None = None, epochs: int = 1,
              batch_size: int = 16, learning_rate: float = 2e-5, warmup_ratio: float = 0.0,
              max_steps: int = -1, cached: bool = False, mini_batch_size: int = 16,
              prompts: dict | None = None, seed: int = SEED):
    """Fine-tune a bi-encoder with MultipleNegativesRankingLoss (InfoNCE with in-batch
    negatives; a third ``negative`` column adds one hard negative per query) through
    :func:`cookbook.finetune.fit`. ``cached=True`` uses the cached variant (GradCache), which
    allows large batches in little memory. ``prompts`` (per column, e.g. ``{"anchor": "query: ",
    "positive": "passage: "}``) are for e5/bge-style models. Returns the trained model, with
    :func:`cookbook.finetune.fit`'s report as ``model.train_report`` (steps, seconds, loss).

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    from sentence_transformers.sentence_transformer import losses


    if len(train_dataset) < 2:
        raise ValueError(f"train_dataset has {len(train_dataset)} rows; MNRL needs at least 2")
    loss = (losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini_batch_size)
            if cached else losses.MultipleNegativesRankingLoss(model))
    model.train_report = finetune.fit(model, train_dataset, loss, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                             learning_rate=learning_rate, warmup=warmup_ratio, no_duplicates=True, seed=seed,
                             output_dir=str(output_dir) if output_dir else None, prompts=prompts)
    return model
