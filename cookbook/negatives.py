"""Hard negatives for (query, positive) pairs, mined from a base retriever and verified by an LLM.

CustomIR ("CustomIR: Unsupervised Fine-Tuning of Dense Embeddings for Known Document Corpora")
adapts a small embedding model to a known corpus with LLM-written queries plus hard negatives
that an LLM checks, so that documents which actually answer the query (false negatives) are not
pushed away. It reports gains of up to 2.3 points Recall@10 for small models.

1. :func:`mine` ranks the corpus with the base model and takes negatives from a rank window,
   with a margin below the positive's score (the knobs of sentence-transformers'
   ``util.mine_hard_negatives``: ``range_min``, ``range_max``, ``relative_margin``,
   ``num_negatives``; :func:`mine_with_sentence_transformers` calls that function itself).
2. :func:`verify` scores ``log p(query | negative)`` and ``log p(query | positive)`` with the LLM
   and drops a negative that explains the query almost as well as the positive. With an
   OpenAI-compatible endpoint and a capable model, :func:`judge` asks the model directly.
3. :func:`false_negative_rate` measures, against the corpus's structure-derived graded labels,
   how many negatives were in fact relevant, before and after verification.

Taught in: notebooks/21_adapt_to_known_corpus_customir.ipynb
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cookbook.config import SEED
from cookbook.corpus import graded_qrels
from cookbook.retrieval import encode


def mine(index, data, pairs: pd.DataFrame, *, range_min: int = 0, range_max: int = 30,
         relative_margin: float | None = 0.05, num_negatives: int = 3,
         exclude: dict[int, set[str]] | None = None) -> pd.DataFrame:
    """Hard negatives from the base model's ranking: one row per (pair, negative).

    ``pairs`` has columns ``query`` and ``doc_id`` (the positive). ``index`` is a
    :class:`cookbook.retrieval.DenseIndex` over ``data`` (its embeddings are reused, so the
    corpus is not encoded again). Candidates are the documents ranked
    ``range_min + 1 .. range_max`` (the positive removed); a candidate is skipped when its score
    is above ``(1 - relative_margin) * positive score`` (too close to be a safe negative); the
    ``num_negatives`` highest remaining are kept (sentence-transformers' "top" strategy).
    ``exclude[i]`` lists more documents never to use as negatives for row ``i``.
    Output columns: pair, query, doc_id, neg_id, neg_rank, pos_score, neg_score.

    Taught in: notebooks/21_adapt_to_known_corpus_customir.ipynb
    """

    if range_max <= range_min:
        raise ValueError(f"range_max={range_max} must be larger than range_min={range_min}")
    if num_negatives < 1:
        raise ValueError(f"num_negatives={num_negatives} must be >= 1")
    missing = set(pairs["doc_id"]) - set(index.ids)
    if missing:
        raise ValueError(f"positives not in the index: {sorted(missing)[:5]}")
    position = {d: i for i, d in enumerate(index.ids)}
    q = encode(index.model, list(pairs["query"]), batch_size=index.batch_size)
    scores = q @ index.embeddings.T
    rows = []
    for i, (query, pos) in enumerate(zip(pairs["query"], pairs["doc_id"])):
        pos_score = float(scores[i, position[pos]])
        order = np.argsort(-scores[i], kind="stable")
        ranked = [index.ids[j] for j in order[: range_max + 1] if index.ids[j] != pos][:range_max]
        banned = (exclude or {}).get(i, set())
        found = 0
        for rank, neg in enumerate(ranked, start=1):
            if rank <= range_min or neg in banned:
                continue
            neg_score = float(scores[i, position[neg]])
            if relative_margin is not None and neg_score > (1 - relative_margin) * pos_score:
                continue
            rows.append({"pair": i, "query": query, "doc_id": pos, "neg_id": neg, "neg_rank": rank,
                         "pos_score": pos_score, "neg_score": neg_score})
            found += 1
            if found == num_negatives:
                break
    return pd.DataFrame(rows, columns=["pair", "query", "doc_id", "neg_id", "neg_rank",
                                       "pos_score", "neg_score"])


def mine_with_sentence_transformers(model, data, pairs: pd.DataFrame, *, range_min: int = 0,
                                    range_max: int = 30, relative_margin: float | None = 0.05,
                                    num_negatives: int = 3, batch_size: int = 64) -> pd.DataFrame:
    """The same mining with ``sentence_transformers.util.mine_hard_negatives`` (it encodes the
    corpus itself); negatives are mapped back from texts to document ids.

    Taught in: notebooks/21_adapt_to_known_corpus_customir.ipynb
    """
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    ids = list(data.corpus)
    texts = [data.doc_text(d) for d in ids]
    by_text = {}
    for d, t in zip(ids, texts):
        by_text.setdefault(t, d)
    ds = Dataset.from_dict({"query": list(pairs["query"]),
                            "positive": [data.doc_text(d) for d in pairs["doc_id"]]})
    mined = mine_hard_negatives(ds, model, corpus=texts, range_min=range_min, range_max=range_max,
                                relative_margin=relative_margin, num_negatives=num_negatives,
                                sampling_strategy="top", output_format="labeled-pair",
                                batch_size=batch_size, verbose=False)
    query_row = {}
    for i, qtext in enumerate(pairs["query"]):
        query_row.setdefault(qtext, i)
    rows = []
    for r in mined:
        if r["label"] == 1:
            continue
        i = query_row[r["query"]]
        rows.append({"pair": i, "query": r["query"], "doc_id": pairs["doc_id"].iloc[i],
                     "neg_id": by_text[r["positive"]]})
    return pd.DataFrame(rows, columns=["pair", "query", "doc_id", "neg_id"])


def verify(negatives: pd.DataFrame, llm, data, *, margin: float = 0.0,
           max_doc_words: int = 48) -> pd.DataFrame:
    """Add ``ql_pos``, ``ql_neg`` (per-token ``log p(query | doc)``) and ``verified``.

    A negative is kept (``verified=True``) when the LLM finds the query clearly less likely
    given the negative than given the positive: ``ql_neg < ql_pos - margin``. Otherwise the
    negative may well answer the query too (a false negative) and training should not push it
    away. Every score goes through the LLM cache.

    Taught in: notebooks/21_adapt_to_known_corpus_customir.ipynb
    """
    out = negatives.copy()
    if out.empty:
        return out.assign(ql_pos=[], ql_neg=[], verified=[])
    pos_pairs = out[["query", "doc_id"]].drop_duplicates()
    pos_ql = llm.query_likelihood(list(pos_pairs["query"]),
                                  [data.doc_text(d) for d in pos_pairs["doc_id"]],
                                  max_doc_words=max_doc_words, desc="QL positives")
    pos_map = dict(zip(zip(pos_pairs["query"], pos_pairs["doc_id"]), pos_ql))
    out["ql_pos"] = [pos_map[(q, d)] for q, d in zip(out["query"], out["doc_id"])]
    out["ql_neg"] = llm.query_likelihood(list(out["query"]), [data.doc_text(d) for d in out["neg_id"]],
                                         max_doc_words=max_doc_words, desc="QL negatives")
    out["verified"] = out["ql_neg"] < out["ql_pos"] - margin
    return out


JUDGE_PROMPT = ("Query: {query}\nDocument: {document}\n\nDoes the document answer the query? "
                "Answer yes or no.")


def judge(negatives: pd.DataFrame, llm, data, *, max_doc_words: int = 96) -> pd.DataFrame:
    """Add ``judge_yes``: a chat model's yes/no verdict on each (query, negative).

    Meant for an OpenAI-compatible endpoint serving a capable model; at 135M parameters the
    answers are close to random, which is why :func:`verify` uses query likelihood instead.
    A negative judged relevant ("yes") should be dropped.

    Taught in: notebooks/21_adapt_to_known_corpus_customir.ipynb
    """
    prompts = [JUDGE_PROMPT.format(query=q, document=" ".join(data.doc_text(d).split()[:max_doc_words]))
               for q, d in zip(negatives["query"], negatives["neg_id"])]
    answers = llm.generate(prompts, chat=True, max_new_tokens=3, temperature=0.0, desc="judge")
    out = negatives.copy()
    out["judge_yes"] = [a[0].strip().lower().startswith("yes") for a in answers]
    return out


def false_negative_rate(negatives: pd.DataFrame, labels: dict[int, dict[str, int]],
                        min_grade: int = 2) -> float:
    """Share of negatives whose graded label for their query is at least ``min_grade``.

    ``labels[pair]`` maps doc ids to grades (for a human query: its qrels; for a generated
    query: :func:`doc_labels` of its source document).

    Taught in: notebooks/21_adapt_to_known_corpus_customir.ipynb
    """
    if negatives.empty:
        return float("nan")
    hits = [labels.get(p, {}).get(n, 0) >= min_grade for p, n in zip(negatives["pair"], negatives["neg_id"])]
    return float(np.mean(hits))


#: edge types of the API-docs graph whose rule made its graded qrels (``corpus.graded_qrels``)
APIDOCS_EDGE_TYPES = frozenset({"see_also", "same_name"})


def doc_labels(data, doc_ids, *, from_graph: bool | None = None) -> dict[str, dict[str, int]]:
    """Graded labels around each document, to label generated queries by their source.

    From the graph (the API docs): the structure-derived grades of the rule that made the qrels
    (3 the document, 2 its see_also neighbours and same-name twins, 1 same topic), computed on
    the training graph (evaluation edges removed). From the qrels (a plain BEIR folder, or a
    folder whose own ``edges.jsonl`` follows another rule): the document itself at the top grade
    of the qrels, plus every document that a judged query of any split marks relevant together
    with it, at the lower of the two grades. ``from_graph=None`` uses the graph rule only when the
    graph has the API-docs edge types (``see_also`` or ``same_name``). Used to *measure* false
    negatives only; no label from here reaches a training set.

    Taught in: notebooks/21_adapt_to_known_corpus_customir.ipynb
    """
    from collections import defaultdict

    wanted = list(dict.fromkeys(doc_ids))
    if from_graph is None:
        from_graph = data.graph is not None and any(
            kind in APIDOCS_EDGE_TYPES for _, _, kind in data.graph.edges(keys=True))
    if from_graph and data.graph is None:
        raise ValueError(f"dataset {data.name!r} has no graph: use from_graph=False (labels from the qrels)")
    if not from_graph:
        top = max((g for rows in data.qrels.values() for docs in rows.values() for g in docs.values()),
                  default=1)
        out = {d: {d: top} for d in wanted}
        for rows in data.qrels.values():
            for docs in rows.values():
                relevant = {d: g for d, g in docs.items() if g > 0}
                for d in relevant.keys() & out.keys():
                    for other, g in relevant.items():
                        if other != d:
                            out[d][other] = max(out[d].get(other, 0), min(g, relevant[d]))
        return out


    typed: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for s, t, kind in sorted(data.training_graph().edges(keys=True)):
        typed[s].append((t, kind))
        typed[t].append((s, kind))
    return {d: {n: g for n, g in graded_qrels(d, typed, data.corpus).items() if n in data.corpus}
            for d in wanted}


def triplets(verified: pd.DataFrame, data, pairs: pd.DataFrame | None = None, *,
             only_verified: bool = True, seed: int = SEED):
    """A ``datasets.Dataset`` (anchor, positive, negative) for MNRL with hard negatives: the
    hardest (verified) negative of each pair. With ``pairs`` (the full query, doc_id table that
    ``verified`` was mined from), every pair gets a row: one left without a usable negative gets a
    random document instead, so training sets compared in an ablation have the same size.

    Taught in: notebooks/21_adapt_to_known_corpus_customir.ipynb
    """
    import random

    from datasets import Dataset

    rows = (verified[verified["verified"].astype(bool)] if only_verified and "verified" in verified
            else verified)
    rows = rows.sort_values(["pair", "neg_rank"] if "neg_rank" in rows else ["pair"])
    first = rows.groupby("pair", sort=True).head(1)
    best = dict(zip(first["pair"], first["neg_id"]))
    if pairs is None:
        order = sorted(best)
        queries = dict(zip(verified["pair"], verified["query"]))
        positives = dict(zip(verified["pair"], verified["doc_id"]))
    else:
        order = list(range(len(pairs)))
        queries = dict(enumerate(pairs["query"]))
        positives = dict(enumerate(pairs["doc_id"]))
        rng = random.Random(seed)
        ids = sorted(data.corpus)
        for p in order:
            while p not in best or best[p] == positives[p]:
                best[p] = rng.choice(ids)
    ds = Dataset.from_dict({"anchor": [queries[p] for p in order],
                            "positive": [data.doc_text(positives[p]) for p in order],
                            "negative": [data.doc_text(best[p]) for p in order]})
    return ds.shuffle(seed=seed)
