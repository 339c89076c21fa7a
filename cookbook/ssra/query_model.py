"""The query model: writes a query for a document at a requested level, prompted or LoRA
fine-tuned, always through ``cookbook.llm`` (cached).

Taught in: notebooks/30_synthesize_graded_relevance.ipynb
"""

from __future__ import annotations

import copy
import hashlib
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cookbook.config import SEED
from cookbook.llm import LocalLLM
from cookbook.models import load_causal_lm
from cookbook.querygen import normalize
from cookbook.ssra.levels import (
    PAIR_COLUMNS,
    GradedError,
    check_levels,
    eval_query_texts,
    level_texts,
)

# torch, peft, datasets and sentence-transformers load in seconds: imported inside the functions that
# train or load models, so importing this module (and the notebook's first cell) stays fast.


def _clip(text: str, words: int) -> str:
    return " ".join(text.split()[:words])


def instruction(n_levels: int = 4, texts: Mapping[int, str] | None = None) -> str:
    """The instruction line that states what each level means."""
    texts = dict(texts or level_texts(n_levels))
    scale = "; ".join(f"{lv}: {texts[lv]}" for lv in sorted(texts, reverse=True))
    return f"Write a search query for the documentation entry at the requested relevance level ({scale}).\n\n"


def level_prompt(document: str, level: int, *, examples: Sequence[tuple[str, int, str]] = (),
                 n_levels: int = 4, doc_words: int = 24, level_texts_: Mapping[int, str] | None = None,
                 with_instruction: bool = True) -> str:
    """The query model's prompt: the instruction (what each level means), optional few-shot
    (document, level, query) blocks, then the document and the requested level. The fine-tuned
    model learns the levels from its training data, so its prompt (``with_instruction=False``,
    no examples) is short, which keeps LoRA training cheap on a CPU.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    check_levels([level], n_levels)
    head = instruction(n_levels, level_texts_) if with_instruction else ""
    shots = "".join(f"Entry: {_clip(d, doc_words)}\nLevel: {lv}\nQuery: {q}\n\n" for d, lv, q in examples)
    return f"{head}{shots}Entry: {_clip(document, doc_words)}\nLevel: {int(level)}\nQuery:"


def few_shot_by_level(pairs: pd.DataFrame, data, per_level: int = 1, max_words: int = 12,
                      seed: int = SEED) -> list[tuple[str, int, str]]:
    """``per_level`` human (document text, level, query) examples of every level, from the
    given (train) pairs; short queries only. Ordered from the top level down."""
    rng = random.Random(seed)
    out = []
    for lv in sorted(pairs["level"].unique(), reverse=True):
        rows = pairs[(pairs["level"] == lv) & (pairs["query"].str.split().str.len() <= max_words)]
        rows = rows.iloc[rng.sample(range(len(rows)), min(per_level, len(rows)))] if len(rows) else rows
        out += [(data.doc_text(d), int(lv), " ".join(q.split())) for q, d in zip(rows["query"], rows["doc_id"])]
    return out


def sft_examples(pairs: pd.DataFrame, data, n_levels: int = 4, doc_words: int = 24, *, balance: bool = False,
                 seed: int = SEED) -> list[tuple[str, str]]:
    """(prompt, query) training examples of the fine-tuned query model, one per pair (the short
    prompt: no instruction, no examples). ``balance=True`` resamples every level present to the
    size of the largest (rare levels drawn with replacement), so a few LoRA steps see each
    level about as often: with most human pairs at level 0, an unbalanced sample teaches the
    model to write off-topic queries whatever level it is asked for."""
    check_levels(pairs["level"], n_levels)
    if balance and len(pairs):
        most = int(pairs["level"].value_counts().max())
        pairs = pd.concat([g.sample(most, replace=len(g) < most, random_state=seed)
                           for _, g in pairs.groupby("level")]).sample(frac=1.0, random_state=seed)
    return [(level_prompt(data.doc_text(d), int(lv), n_levels=n_levels, doc_words=doc_words,
                          with_instruction=False), " ".join(q.split()))
            for q, d, lv in zip(pairs["query"], pairs["doc_id"], pairs["level"])]


def _lora_fingerprint(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if "lora_" in name:
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:12]


def fine_tune_query_model(examples: Sequence[tuple[str, str]], *, steps: int = 20, batch_size: int = 8,
                          learning_rate: float = 1e-3, r: int = 8, alpha: int = 16,
                          max_tokens: int = 128, role: str = "generator", tokenizer=None, model=None,
                          cache=None, name: str | None = None, generate_precision: str = "fp32", seed: int = SEED):
    """LoRA fine-tuning (``peft``) of the causal LM on (prompt, query) examples; returns a
    :class:`cookbook.llm.LocalLLM` around the merged model.

    The loss covers only the query tokens (and the end-of-sequence token). Sequences are cut to
    ``max_tokens`` from the left. The LLM's cache name carries a fingerprint of the trained
    adapter, so cached generations of the base model and of every fine-tuned model never mix.
    ``tokenizer``/``model`` default to a fresh copy of the ``role`` model (the base is never
    modified). ``generate_precision``: the LLM's (``auto``: generation in bf16 where the CPU does
    bf16 natively, :class:`cookbook.llm.LocalLLM`). Returns the LLM with ``.train_report``
    (steps, seconds, first and last loss).

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    import torch
    from peft import LoraConfig, get_peft_model

    if not examples:
        raise GradedError("no (prompt, query) examples to fine-tune the query model on")
    if any(not q.strip() for _, q in examples):
        raise GradedError("a fine-tuning example has an empty query")
    if steps < 1 or batch_size < 1:
        raise GradedError(f"steps and batch_size must be >= 1 (got {steps}, {batch_size})")
    if (tokenizer is None) != (model is None):
        raise GradedError("pass both tokenizer and model, or neither")
    if model is None:

        tokenizer, model = load_causal_lm(role)
        base_name = role
    else:

        model = copy.deepcopy(model)  # never modify the caller's model
        base_name = Path(str(getattr(model, "name_or_path", "") or "model")).name
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                        task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = []
    for prompt, query in examples:
        p_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        q_ids = tokenizer(" " + query.strip() + "\n", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids, labels = (p_ids + q_ids)[-max_tokens:], ([-100] * len(p_ids) + q_ids)[-max_tokens:]
        encoded.append((ids, labels))
    rng = random.Random(seed)
    order: list[int] = []
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=learning_rate)
    peft_model.train()
    losses, started = [], time.perf_counter()
    for _ in range(steps):
        batch = []
        while len(batch) < min(batch_size, len(encoded)):
            if not order:
                order = rng.sample(range(len(encoded)), len(encoded))
            batch.append(encoded[order.pop()])
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (ids, lab) in enumerate(batch):  # right padding for training
            input_ids[i, :len(ids)], labels[i, :len(lab)], mask[i, :len(ids)] = (
                torch.tensor(ids), torch.tensor(lab), 1)
        loss = peft_model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.item()))
    fingerprint = _lora_fingerprint(peft_model)
    merged = peft_model.merge_and_unload()
    merged.eval()
    llm = LocalLLM(tokenizer, merged, model_name=name or f"{base_name}+lora-{fingerprint}", cache=cache,
                   progress=False, generate_precision=generate_precision)
    llm.train_report = {"steps": steps, "seconds": round(time.perf_counter() - started, 1),
                        "first_loss": round(losses[0], 4), "last_loss": round(float(np.mean(losses[-3:])), 4),
                        "examples": len(encoded), "fingerprint": fingerprint}
    return llm


def level_requests(doc_ids: Sequence[str], level_weights: Mapping[int, float], n_levels: int = 4,
                   seed: int = SEED) -> pd.DataFrame:
    """One (doc_id, level) request per document, levels drawn with ``level_weights``."""
    check_levels(level_weights, n_levels)
    if not doc_ids:
        raise GradedError("no documents to write queries for")
    levels = sorted(level_weights)
    weights = [float(level_weights[lv]) for lv in levels]
    if min(weights) < 0 or sum(weights) <= 0:
        raise GradedError(f"level_weights must be non-negative with a positive sum: {dict(level_weights)}")
    rng = random.Random(seed)
    return pd.DataFrame({"doc_id": list(doc_ids), "level": rng.choices(levels, weights, k=len(doc_ids))})


def generate(llm, data, requests: pd.DataFrame, *, examples: Sequence[tuple[str, int, str]] = (),
             n_levels: int = 4, n: int = 1, temperature: float = 0.0, top_p: float = 0.95,
             max_new_tokens: int = 24, doc_words: int = 24, generator: str = "",
             fine_tuned: bool | None = None, seed: int = SEED) -> pd.DataFrame:
    """Queries for (doc_id, level) requests through ``cookbook.llm`` (every call cached):
    greedy when ``temperature == 0`` (then ``n`` must be 1), else ``n`` samples each.
    ``fine_tuned`` (default: no ``examples`` given and ``llm`` made by
    :func:`fine_tune_query_model`) selects the short prompt the fine-tuned model was trained on.
    Columns: doc_id, level, sample, query, generator.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    if len(requests) == 0:
        raise GradedError("no (doc_id, level) requests")
    check_levels(requests["level"], n_levels)
    missing = [d for d in requests["doc_id"] if d not in data.corpus]
    if missing:
        raise GradedError(f"{len(missing)} requested document(s) are not in the corpus, e.g. {missing[:3]}")
    if fine_tuned is None:
        fine_tuned = not examples and hasattr(llm, "train_report")
    prompts = [level_prompt(data.doc_text(d), int(lv), examples=examples, n_levels=n_levels, doc_words=doc_words,
                            with_instruction=not fine_tuned)
               for d, lv in zip(requests["doc_id"], requests["level"])]
    params = dict(max_new_tokens=max_new_tokens, stop=("\n",), seed=seed, repetition_penalty=1.1)
    if temperature > 0:
        params.update(temperature=temperature, top_p=top_p, top_k=40, n=n)
    elif n != 1:
        raise GradedError("greedy decoding (temperature=0) gives one query per request: use n=1")
    outs = llm.generate(prompts, desc="graded queries", **params)
    rows = [{"doc_id": d, "level": int(lv), "sample": j, "query": q, "generator": generator}
            for d, lv, qs in zip(requests["doc_id"], requests["level"], outs) for j, q in enumerate(qs)]
    return pd.DataFrame(rows, columns=["doc_id", "level", "sample", "query", "generator"])


def clean(generated: pd.DataFrame, data, *, seen: set[str] | None = None, min_words: int = 2,
          max_words: int = 16) -> pd.DataFrame:
    """Keep usable generated queries: drop empty, too short or long ones, copies of a dev/test
    query (never allowed into training) and duplicates (of each other, or of ``seen`` texts);
    ``seen`` is updated with what is kept. Raises :class:`GradedError` when every generation is
    empty (the model or its prompt is broken)."""
    if len(generated) and not any(q.strip() for q in generated["query"]):
        raise GradedError(f"all {len(generated)} generated queries are empty: check the query model "
                          "and its prompt (stop strings, max_new_tokens)")
    blocked = eval_query_texts(data)
    seen = set() if seen is None else seen
    keep = []
    for q, d in zip(generated["query"], generated["doc_id"]):
        norm = normalize(q)
        ok = min_words <= len(norm.split()) <= max_words and norm not in blocked and (norm, d) not in seen
        if ok:
            seen.add((norm, d))
        keep.append(ok)
    return generated[keep].reset_index(drop=True)


def agreement(annotated: pd.DataFrame, n_levels: int = 4) -> pd.Series:
    """How often the score model places a generated query at the level it was requested for.

    Per requested level (0..n-1) the share it places there (argmax ``pred``), then four summaries:
    "macro", the mean over the requested levels (when every level is requested, a query model
    that ignores the level scores ``1 / n_levels`` on it whatever the judge does, so that is its
    chance line); "all", the share
    over every request, whose chance line depends on how the requests and the judge's labels are
    spread: "chance (all)" is the share a level-blind model with the same outputs would get,
    ``sum_L share requested(L) * share judged(L)``; and "kappa", Cohen's kappa, ``all`` corrected
    for that chance (0: level-blind; 1: always followed).

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    asked, judged = annotated["level"].astype(int), annotated["pred"].astype(int)
    hit = judged == asked
    out = {lv: (float(hit[asked == lv].mean()) if (asked == lv).any() else np.nan) for lv in range(n_levels)}
    per_level = [v for v in out.values() if not np.isnan(v)]
    out["macro"] = float(np.mean(per_level)) if per_level else np.nan
    out["all"] = float(hit.mean()) if len(hit) else np.nan
    chance = (float(sum(asked.eq(lv).mean() * judged.eq(lv).mean() for lv in range(n_levels)))
              if len(hit) else np.nan)
    out["chance (all)"] = chance
    out["kappa"] = (out["all"] - chance) / (1 - chance) if len(hit) and chance < 1 else np.nan
    return pd.Series(out, name="agreement")


def accept(annotated: pd.DataFrame, *, threshold: float = 0.5, mode: str = "drop") -> pd.DataFrame:
    """Decide each annotated generation: ``accepted`` when the score model's level equals the
    requested one with probability >= ``threshold``; with ``mode="relabel"`` a confident
    disagreement (p_pred >= threshold) is kept under the score model's level instead.
    Adds ``accepted`` (bool), ``final_level`` and ``decision`` (agree / relabel / drop).

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    if mode not in ("drop", "relabel"):
        raise GradedError(f"mode={mode!r}: use 'drop' or 'relabel'")
    if not 0 <= threshold <= 1:
        raise GradedError(f"threshold={threshold!r} must be in [0, 1]")
    out = annotated.copy()
    agree = (out["pred"] == out["level"]) & (out["p_pred"] >= threshold)
    relabel = (mode == "relabel") & ~agree & (out["p_pred"] >= threshold)
    out["decision"] = np.where(agree, "agree", np.where(relabel, "relabel", "drop"))
    out["accepted"] = agree | relabel
    out["final_level"] = np.where(agree, out["level"], out["pred"]).astype(int)
    return out


class PromptedQueryModel:
    """A remote or scripted LLM used as the query model without fine-tuning: every level prompt
    gets few-shot examples of every level (``shots``: (document, level, query) triples).

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """

    def __init__(self, llm, shots: Sequence[tuple[str, int, str]], n_levels: int = 4):
        self.llm, self.shots, self.n_levels = llm, list(shots), n_levels

    def generate(self, prompts, **kw):
        head = instruction(self.n_levels)
        block = "".join(f"Entry: {_clip(d, 24)}\nLevel: {lv}\nQuery: {q}\n\n" for d, lv, q in self.shots)
        return self.llm.generate([p.replace(head, head + block, 1) for p in prompts], **kw)


def zero_shot_pairs(data, llm, doc_ids, n_levels: int, seed: int, n_samples: int = 2) -> pd.DataFrame:
    """Without a train split: sampled top-level queries from the prompted model (zero-shot) for
    some documents, each also paired with a random other document at level 0.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    requests = pd.DataFrame({"doc_id": list(doc_ids), "level": n_levels - 1})
    gen = clean(generate(llm, data, requests, n_levels=n_levels, n=n_samples, temperature=0.8,
                         generator="zero-shot", seed=seed), data, min_words=1, max_words=32)
    rng = random.Random(seed)
    others = sorted(data.corpus)
    rows = []
    for i, (q, d) in enumerate(zip(gen["query"], gen["doc_id"])):
        rows.append({"qid": f"zs{i}", "query": q, "doc_id": d, "level": n_levels - 1, "source": "zero-shot"})
        neg = rng.choice([x for x in others if x != d])
        rows.append({"qid": f"zs{i}", "query": q, "doc_id": neg, "level": 0, "source": "zero-shot"})
    return pd.DataFrame(rows, columns=["qid", *PAIR_COLUMNS])

