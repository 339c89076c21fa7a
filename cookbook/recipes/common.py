"""The one flow every recipe follows: before -> train -> after -> verdict.

A recipe file (``cookbook/recipes/<name>.py``) is a short list of numbered steps over these
functions:

1. :func:`start`: the clock, the base model's index (reused for the recipe's own search) and
   its run on the test split, measured *before* anything is trained;
2. the recipe's own steps (data, loss, training), from the technique's module;
3. :func:`finish`: the model saved to ``out_dir/"model"``, the trained system's test run scored
   with the same measures, the paired test against the base model, and the report.

Every report has the same shape: the ``verdict`` first (better, no significant difference or
worse than the base model on the test split, and on the recipe's dev check when it has one),
the dataset's name, ``before`` / ``after`` on :data:`MEASURES` (plus the fine-distinction
accuracy on graded data), the paired comparison on nDCG@10, the time, LLM usage, and the
recipe's own details. A model that got worse is also said on stderr.

Taught in: notebooks/20_generate_queries_promptagator.ipynb (the recipe command)
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cookbook import beir, evaluate, models, retrieval
from cookbook.beir import DataFormatError, RetrievalData
from cookbook.config import show_progress
from cookbook.corpus import load_apidocs
from cookbook.llm import LocalLLM, Usage, get_llm

#: the measures of every recipe report (``evaluate.DEFAULT_MEASURES``), on the test split
MEASURES = evaluate.DEFAULT_MEASURES
FINE = "fine distinction"


class RecipeError(ValueError):
    """A recipe cannot run on this data or with these settings (the message says why and what to change)."""


# ------------------------------------------------------------------------------------ inputs


def load_data(data_dir) -> RetrievalData:
    """A BEIR folder, or ``"apidocs"`` for the built-in corpus; a bad folder is a clear error."""
    if str(data_dir) == "apidocs":
        return load_apidocs()
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataFormatError(folder, None, None, "not a folder (expected corpus.jsonl, "
                              "queries.jsonl and qrels/<split>.tsv inside)")
    data = beir.load_beir(folder)
    if not data.corpus:
        raise DataFormatError(folder / "corpus.jsonl", None, None, "the corpus is empty")
    return data


def embedder_or_default(embedder=None, max_seq_length: int = 128):
    """``embedder`` itself, or the offline MiniLM (``models.load_embedder``)."""
    return embedder if embedder is not None else models.load_embedder(max_seq_length=max_seq_length)


def llm_or_default(llm=None, *, generate_precision: str = "fp32", batch_size: int | None = None):
    """``llm`` itself, or the default LLM backend (``cookbook.llm.get_llm``); a local default
    generates with ``generate_precision`` (``auto``: in bf16 where the CPU does bf16 natively)
    and ``batch_size`` prompts a call (None: the backend's default)."""
    if llm is not None:
        return llm
    llm = get_llm(generate_precision=generate_precision)
    if batch_size and isinstance(llm, LocalLLM):
        llm.batch_size = batch_size
    return llm


def dense_index(model, data, prompts: dict | None = None):
    """The dense index of a recipe, with the query/document prompts of e5/bge-style models."""
    prompts = prompts or {}
    return retrieval.DenseIndex(model, data, show_progress_bar=show_progress(),
                                query_prompt=prompts.get("query"), document_prompt=prompts.get("document"))


def train_prompts(prompts: dict | None, columns=("anchor", "positive", "negative")) -> dict | None:
    """Per-column training prompts for ``finetune.fit``: the query prompt on anchors, the
    document prompt on the other columns (None when the model wants no prompts)."""
    prompts = prompts or {}
    out = {c: prompts.get("query" if c == "anchor" else "document") for c in columns}
    out = {c: p for c, p in out.items() if p}
    return out or None


def sample_docs(data, n: int, seed: int) -> list[str]:
    """``n`` document ids drawn at random (seeded)."""
    ids = sorted(data.corpus)
    random.Random(seed).shuffle(ids)
    return ids[:n]


# ----------------------------------------------------------------------------------- the flow


@dataclass
class Before:
    """What :func:`start` measured before training: the base model's index and its test run."""

    data: RetrievalData
    started: float
    index: object
    run: dict | None
    fine: float | None
    k: int


def has_test(data) -> bool:
    return bool(data.qrels.get("test"))


def _graded(data) -> bool:
    return max((g for q in data.qrels.values() for d in q.values() for g in d.values()), default=0) >= 2


def report_measures(data) -> tuple[str, ...]:
    """The measures a report carries for ``data``: :data:`MEASURES`, plus the fine-distinction
    accuracy when the labels are graded (three levels or more)."""
    return MEASURES + ((FINE,) if has_test(data) and _graded(data) else ())


def fine_distinction(scorer, data, seed: int) -> float | None:
    """The fine-distinction accuracy on the test split, or None on binary labels."""
    if not has_test(data) or not _graded(data):
        return None
    try:
        return evaluate.fine_distinction_accuracy(scorer, data, "test", seed=seed)["all"]
    except evaluate.FineDistinctionError:
        return None


def start(data, embedder, *, prompts: dict | None = None, k: int = 100, seed: int = 0) -> Before:
    """Step 1 of every recipe: the clock, the base model's index and its run on the test split."""
    started = time.perf_counter()
    index = dense_index(embedder, data, prompts)
    run = index.search(data.split_queries("test"), k=k) if has_test(data) else None
    return Before(data, started, index, run, fine_distinction(index, data, seed), k)


def dense_run(model, before: Before, prompts: dict | None = None):
    """The trained embedder's index and its test run (same depth as the base model's)."""
    index = dense_index(model, before.data, prompts)
    run = index.search(before.data.split_queries("test"), k=before.k) if has_test(before.data) else None
    return index, run


def verdict_line(report: dict) -> str:
    """The report's first line: better / no significant difference / worse than the base model."""
    c = report.get("comparison")
    what = report.get("base", "the base model")
    if not c:
        line = f"not measured: `{report.get('data', '')}` has no test split"
    else:
        word = evaluate.verdict(c)
        line = (f"{word} than {what}" if word != "no significant difference" else f"{word} from {what}") + (
            f" on the test split ({c['metric']} {c['diff']:+.4f}, 95% CI {c['ci_low']:+.4f} to "
            f"{c['ci_high']:+.4f}, paired t p={c['t_p']:.2g}, {c['queries']} queries)")
    dev = report.get("dev")
    if dev and dev.get("comparison"):
        d = dev["comparison"]
        word = evaluate.verdict(d)
        line += (f"; {word}{' than' if word != 'no significant difference' else ' from'} it on the dev check "
                 f"({dev.get('name', 'dev')}: {d['diff']:+.4f}, p={d['t_p']:.2g})")
    decision = str(report.get("decision", ""))
    if decision.startswith(("kept the base model", "kept the first stage")):  # what the recipe saved
        line += f"; {decision.split(':')[0]}"
    return line


def finish(name: str, before: Before, model, out_dir, *, after_run: dict | None, after_fine: float | None = None,
           llm_usage: Usage | dict | None = None, dev: dict | None = None, base: str = "the base model",
           save=models.save_model, **details) -> dict:
    """The last step of every recipe: save ``model`` (with ``save``), score ``after_run`` against
    the base model's run on the same measures, and assemble the report (verdict first)."""
    data = before.data
    path = save(model, Path(out_dir) / "model")
    report: dict = {"verdict": "", "recipe": name, "data": data.name, "base": base}
    if before.run is not None and after_run is not None:
        qrels = data.qrels["test"]
        b, _ = evaluate.evaluate(before.run, qrels, MEASURES)
        a, _ = evaluate.evaluate(after_run, qrels, MEASURES)
        report["before"], report["after"], report["relevance"] = dict(b), dict(a), b.rel
        if before.fine is not None and after_fine is not None:
            report["before"][FINE], report["after"][FINE] = before.fine, after_fine
        report["comparison"] = evaluate.compare(before.run, after_run, qrels, "nDCG@10")
    if dev is not None:
        report["dev"] = dev
    usage = llm_usage.as_dict() if isinstance(llm_usage, Usage) else dict(llm_usage or {})
    report.update(details, llm_usage=usage, model=str(path),
                  seconds=round(time.perf_counter() - before.started, 1))
    report["verdict"] = verdict_line(report)
    if report["verdict"].startswith("worse") or "worse than it on the dev check" in report["verdict"]:
        print(f"cookbook recipe {name} on {data.name}: the trained model is WORSE: {report['verdict']}",
              file=sys.stderr)
    return report


def report_markdown(report: dict) -> str:
    """``report.md``: the verdict first, then before/after per measure and the recipe's details."""
    lines = [f"**Verdict: {report['verdict']}**", "",
             f"# Recipe `{report['recipe']}` on `{report.get('data', '')}`", ""]
    if "before" in report:
        lines += ["| measure | before | after | difference |", "|---|---:|---:|---:|"]
        for m, b in report["before"].items():
            a = report["after"].get(m)
            if isinstance(b, (int, float)) and isinstance(a, (int, float)):
                lines.append(f"| {m} | {b:.4f} | {a:.4f} | {a - b:+.4f} |")
        rel = report.get("relevance", {})
        lines += ["", f"Before: {report.get('base', 'the base model')}. Relevant from grade {rel.get('recall')} "
                      f"(top grade {rel.get('max_grade')}); paired test over the test queries."]
    else:
        lines.append("No test split in the data: no before/after metrics.")
    lines.append("")
    skip = {"verdict", "recipe", "data", "base", "before", "after", "relevance", "comparison", "dev"}
    for key, value in report.items():
        if key not in skip:
            lines.append(f"- {key}: {value}")
    return "\n".join(lines) + "\n"
