"""Every training recipe as one call on any BEIR folder: ``python -m cookbook recipe NAME``.

``python -m cookbook recipe promptagator --data DIR --out DIR`` reads the folder (binary or
graded qrels, with or without a train split, an optional ``edges.jsonl``), runs the recipe,
writes a model folder that ``SentenceTransformer(out/"model")`` (or ``CrossEncoder`` for the
reranker) loads, and a report: ``report.json`` and a short ``report.md`` with before/after
metrics on the folder's test split when it has one, time and LLM usage.

LLM calls go through the persistent cache, so a killed run started again replays what was
done and continues. Sizes are keyword arguments (``--set docs=200``).

=============  =================================================  ===========================
recipe         what it trains                                     needs
=============  =================================================  ===========================
promptagator   MiniLM on LLM-written queries (notebook 20)         a corpus
customir       + LLM-verified hard negatives (notebook 21)         a corpus
scincl         triplets from graph-embedding bands (notebook 51)   ``edges.jsonl``
graded         graded pairs from two collaborating models (30)     graded or binary qrels
bixse          BCE over graded targets, in-batch negatives (31)    judged pairs (train split)
reranker       cross-encoder with LCE on LLM-labelled groups (40)  a corpus
revela         retriever trained through the LM (notebook 60)      a corpus
=============  =================================================  ===========================

Taught in: notebooks/20_generate_queries_promptagator.ipynb (and each recipe's notebook)
"""

from __future__ import annotations

import importlib
import json
import random
import time
from pathlib import Path

from cookbook.config import SEED


class RecipeError(ValueError):
    """A recipe cannot run on this data (the message says why and what to change)."""


def _index(model, data, prompts: dict | None = None):
    """The dense index of a recipe: the query/document prompts of e5/bge-style models applied."""
    from cookbook import retrieval
    from cookbook.config import show_progress

    prompts = prompts or {}
    return retrieval.DenseIndex(model, data, show_progress_bar=show_progress(),
                                query_prompt=prompts.get("query"), document_prompt=prompts.get("document"))


def _train_prompts(prompts: dict | None, columns=("anchor", "positive", "negative")) -> dict | None:
    """Per-column training prompts for ``finetune.fit``: the query prompt on anchors, the
    document prompt on the other columns (None when the model wants no prompts)."""
    prompts = prompts or {}
    out = {c: prompts.get("query" if c == "anchor" else "document") for c in columns}
    out = {c: p for c, p in out.items() if p}
    return out or None


def _evaluate_index(index, data, split: str = "test"):
    """(summary, run) of a dense index on ``split``, or (None, None) when there is no such split."""
    from cookbook import evaluate

    if not data.qrels.get(split):
        return None, None
    run = index.search(data.split_queries(split), k=100)
    return evaluate.evaluate(run, data.qrels[split])[0], run


def _finish(name: str, data, model, out_dir: Path, before, run_before, started: float,
            prompts: dict | None = None, **extra) -> dict:
    """Save the model, score it after training, and assemble the report."""
    from cookbook import evaluate, models

    out_dir.mkdir(parents=True, exist_ok=True)
    models.save_model(model, out_dir / "model")
    report = {"recipe": name, "data": data.name, **extra}
    if before is not None:
        after, run_after = _evaluate_index(_index(model, data, prompts), data)
        report.update(before=dict(before), after=dict(after), relevance=before.rel,
                      comparison=evaluate.compare(run_before, run_after, data.qrels["test"]))
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _sample_docs(data, n: int, seed: int) -> list[str]:
    ids = sorted(data.corpus)
    random.Random(seed).shuffle(ids)
    return ids[:n]


def default_models(embedder=None, llm=None):
    """The embedder and LLM a recipe uses when it is given none: the offline MiniLM and the
    default LLM backend (``cookbook.llm.get_llm``)."""
    from cookbook import models

    if embedder is None:
        embedder = models.load_embedder()
    if llm is None:
        from cookbook.llm import get_llm

        llm = get_llm()
    return embedder, llm


def _start(data, embedder, llm, prompts: dict | None = None):
    """Clock, default models, the base model's test metrics and its index (shared by the LLM recipes)."""
    started = time.perf_counter()
    embedder, llm = default_models(embedder, llm)
    index = _index(embedder, data, prompts)  # one index: the base model's evaluation and the search
    before, run_before = _evaluate_index(index, data)
    return started, embedder, llm, before, run_before, index


def _generated_pairs(data, llm, index, *, docs, n_samples, consistency_k, examples, instruction, seed):
    from cookbook import querygen

    res = querygen.promptagator(data, llm, index, _sample_docs(data, docs, seed), examples=examples,
                                instruction=instruction, n_samples=n_samples,
                                consistency_k=consistency_k, seed=seed)
    pairs = res.final[["query", "doc_id"]].reset_index(drop=True)
    if len(pairs) < 2:
        raise RecipeError(f"only {len(pairs)} generated queries survived the filters "
                          f"({res.stats['queries'].to_dict()}); raise docs= or consistency_k=")
    return res, pairs


def promptagator(data, out_dir, *, embedder=None, llm=None, docs: int = 100, n_samples: int = 3,
                 consistency_k: int = 10, epochs: int = 1, batch_size: int = 16,
                 examples: list | None = None, instruction: str | None = None,
                 query_prompt: str | None = None, document_prompt: str | None = None, seed: int = SEED) -> dict:
    """Promptagator-style queries for ``docs`` sampled documents -> filters -> MNRL fine-tune.

    ``query_prompt`` / ``document_prompt`` are for embedders trained with them (e5:
    ``"query: "`` and ``"passage: "``): used for search, evaluation and training alike.

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    from cookbook import querygen

    prompts = {"query": query_prompt, "document": document_prompt}
    started, embedder, llm, before, run_before, index = _start(data, embedder, llm, prompts)
    with llm.track() as usage:
        res, pairs = _generated_pairs(data, llm, index, docs=docs, n_samples=n_samples,
                                      consistency_k=consistency_k, examples=examples,
                                      instruction=instruction, seed=seed)
    train = querygen.to_pairs(pairs, data)
    querygen.fine_tune(embedder, train, epochs=epochs, batch_size=min(batch_size, len(pairs)),
                       prompts=_train_prompts(prompts, train.column_names), seed=seed)
    return _finish("promptagator", data, embedder, Path(out_dir), before, run_before, started, prompts=prompts,
                   train_pairs=len(pairs), few_shot_examples=len(res.examples),
                   acceptance=res.stats["queries"].to_dict(), llm_usage=usage.as_dict())


def customir(data, out_dir, *, embedder=None, llm=None, docs: int = 100, n_samples: int = 3,
             consistency_k: int = 10, range_max: int = 30, epochs: int = 1, batch_size: int = 16,
             examples: list | None = None, instruction: str | None = None,
             query_prompt: str | None = None, document_prompt: str | None = None, seed: int = SEED) -> dict:
    """CustomIR-style: generated queries + hard negatives from the base model that the LLM
    verifies (query likelihood) -> MNRL with one hard negative per query. Prompts as in
    :func:`promptagator`.

    Taught in: notebooks/21_adapt_to_known_corpus_customir.ipynb
    """
    from cookbook import negatives, querygen

    prompts = {"query": query_prompt, "document": document_prompt}
    started, embedder, llm, before, run_before, index = _start(data, embedder, llm, prompts)
    with llm.track() as usage:
        _, pairs = _generated_pairs(data, llm, index, docs=docs, n_samples=n_samples,
                                    consistency_k=consistency_k, examples=examples,
                                    instruction=instruction, seed=seed)
        mined = negatives.mine(index, data, pairs, range_max=min(range_max, len(data.corpus) - 1))
        checked = negatives.verify(mined, llm, data)
    train = negatives.triplets(checked, data, pairs, seed=seed)
    querygen.fine_tune(embedder, train, epochs=epochs, batch_size=min(batch_size, len(train)),
                       prompts=_train_prompts(prompts, train.column_names), seed=seed)
    return _finish("customir", data, embedder, Path(out_dir), before, run_before, started, prompts=prompts,
                   train_pairs=len(train), mined_negatives=len(mined),
                   verified_negatives=int(checked["verified"].sum()) if len(checked) else 0,
                   llm_usage=usage.as_dict())


def scincl(data, out_dir, *, embedder=None, llm=None, kge_model: str = "rotate", epochs: int = 50,
           steps: int = 32, batch_size: int = 16, max_anchors: int | None = 2000, margin: float = 0.3,
           seed: int = SEED) -> dict:
    """SciNCL-style: a KGE over the folder's ``edges.jsonl`` -> k-NN bands -> triplet fine-tune.

    Taught in: notebooks/51_mine_triplets_from_graph_embeddings.ipynb
    """
    from cookbook import graph, kge, models, triplets

    if data.graph is None or data.graph.number_of_edges() == 0:
        raise RecipeError(f"dataset {data.name!r} has no graph: the scincl recipe needs an edges.jsonl "
                          "(source, target, type) next to corpus.jsonl")
    started = time.perf_counter()
    embedder = embedder or models.load_embedder()
    before, run_before = _evaluate_index(_index(embedder, data), data)
    split = graph.split_edges(data, valid_frac=0, test_frac=0, seed=seed)
    emb = kge.train_kge(kge_model, split.train, split.num_nodes, split.num_relations,
                        epochs=epochs, seed=seed).embeddings()
    train_graph = data.training_graph()
    entities = split.tensors.entities
    connected = [e for e in entities if e in data.corpus and train_graph.degree(e) > 0]
    mined = triplets.mine_triplets(emb, entities, data.doc_text, triplets.Bands.for_graph(len(connected)),
                                   anchors=connected, candidates=connected, exclude_pairs=data.eval_pairs,
                                   max_anchors=max_anchors, seed=seed)
    log = triplets.finetune_triplets(embedder, mined, max_steps=steps, batch_size=batch_size,
                                     margin=margin, seed=seed)
    return _finish("scincl", data, embedder, Path(out_dir), before, run_before, started,
                   triplets=len(mined), steps=log["steps"], train_edges=len(split.train))


#: recipe name -> "module:function"; the technique modules own their recipes.
RECIPES = {
    "promptagator": "cookbook.recipes:promptagator",
    "customir": "cookbook.recipes:customir",
    "scincl": "cookbook.recipes:scincl",
    "graded": "cookbook.graded:recipe",
    "bixse": "cookbook.losses:recipe",
    "reranker": "cookbook.rerank:recipe",
    "revela": "cookbook.revela:recipe",
}


def get(name: str):
    """The recipe function called ``name``; an unknown name is a clear error."""
    if name not in RECIPES:
        raise RecipeError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    module, func = RECIPES[name].split(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as err:
        raise RecipeError(f"recipe {name!r} is not available in this install ({err})") from None


def report_markdown(report: dict) -> str:
    """A short Markdown table of a recipe report (before/after per measure, the paired test)."""
    lines = [f"# Recipe `{report['recipe']}` on `{report.get('data', '')}`", ""]
    if "before" in report:
        lines += ["| measure | before | after | difference |", "|---|---:|---:|---:|"]
        for m, b in report["before"].items():
            a = report["after"].get(m)
            if isinstance(b, (int, float)) and isinstance(a, (int, float)):
                lines.append(f"| {m} | {b:.4f} | {a:.4f} | {a - b:+.4f} |")
        c = report.get("comparison") or {}
        if "diff" in c:
            lines += ["", f"{c['metric']} difference {c['diff']:+.4f} (95% CI {c.get('ci_low', 0):+.4f} to "
                          f"{c.get('ci_high', 0):+.4f}; paired t p={c.get('t_p', 1):.2g}; {c['queries']} queries)"]
        if "relevance" in report:
            lines.append(f"Relevant from grade {report['relevance']['recall']} (top grade {report['relevance']['max_grade']}).")
    else:
        lines.append("No test split in the data: no before/after metrics.")
    lines.append("")
    for key in ("seconds", "train_pairs", "triplets", "steps", "llm_usage"):
        if key in report:
            lines.append(f"- {key}: {report[key]}")
    return "\n".join(lines) + "\n"


def run(name: str, data_dir, out_dir, **sizes) -> dict:
    """Load ``data_dir`` (a BEIR folder, or ``apidocs``), run recipe ``name``, write the model
    and ``report.json`` / ``report.md`` into ``out_dir``. Returns the report.

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    from cookbook import beir, corpus

    recipe = get(name)
    if str(data_dir) == "apidocs":
        data = corpus.load_apidocs()
    else:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise beir.DataFormatError(folder, None, None, "not a folder (expected corpus.jsonl, "
                                       "queries.jsonl and qrels/<split>.tsv inside)")
        data = beir.load_beir(folder)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = recipe(data, out, **sizes)
    (out / "report.json").write_text(json.dumps(_jsonable(report), indent=1))
    (out / "report.md").write_text(report_markdown(report))
    return report


def _jsonable(value):
    from cookbook.evaluate import _jsonable as plain

    return plain(value)
