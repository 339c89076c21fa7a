"""Revela: train a retriever through a language model's next-token loss, with no query-document pairs.

Cai et al., "Revela: Dense Retriever Learning via Language Modeling" (ICLR 2026,
arXiv 2506.16552). Our reading of the mechanism, with stock transformers:

1. the corpus is cut into chunks of a few dozen LM tokens; a **batch** is a group of chunks that
   are BM25 neighbours of each other (:func:`bm25_batches`);
2. the retriever embeds the first half of chunk ``i`` as a query and every chunk ``j`` as a
   document; ``w_ij = softmax_{j != i}(cos(q_i, d_j) / tau)`` (:func:`in_batch_weights`);
3. a causal LM reads every chunk. In each attention layer, besides its causal self-attention,
   chunk ``i`` also attends to the keys and values of every other chunk ``j`` (one softmax per
   chunk, keys and values from a first plain forward pass), and these outputs are added with the
   weights ``w_ij`` (:func:`in_batch_attention`, registered as the attention implementation
   ``"revela"`` through ``AttentionInterface``);
4. the loss is plain next-token cross-entropy (:func:`revela_loss`): the retriever gets gradient
   only through ``w``. It learns to give weight to the chunks that help the LM predict.

With every ``w = 0`` the model computes exactly the stock LM. The LM can stay frozen (default)
or carry LoRA adapters (:func:`add_lora`); the retriever can be any SentenceTransformer, for
example MiniLM or an LM that was never trained for retrieval (:func:`lm_retriever`).

Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
"""

from __future__ import annotations

import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from cookbook import evaluate
from cookbook.beir import normalize_text
from cookbook.config import SEED
from cookbook.models import load_causal_lm, resolve, save_model

ATTN_NAME = "revela"


class RevelaError(ValueError):
    """Bad input to a Revela function (sizes, texts, models)."""


class QueryLeakError(RevelaError):
    """A training batch holds the text of an evaluation query."""


# --------------------------------------------------------------------------- data: chunks and batches


def chunk_corpus(data, tokenizer, chunk_tokens: int = 64, min_tokens: int | None = None,
                 max_chunks: int | None = None, seed: int = SEED) -> list[dict]:
    """Cut every corpus document into windows of ``chunk_tokens`` LM tokens.

    Returns dicts ``{"doc_id", "text", "query"}``: ``query`` is the decoded first half of the
    chunk (what the retriever embeds as the query), ``text`` the whole chunk. Windows shorter
    than ``min_tokens`` (default: a quarter of ``chunk_tokens``) are dropped. ``max_chunks``
    keeps a seeded random sample.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    min_tokens = max(2, chunk_tokens // 4) if min_tokens is None else min_tokens
    if chunk_tokens < 4 or min_tokens < 2:
        raise RevelaError(f"chunk_tokens={chunk_tokens} and min_tokens={min_tokens} are too small")
    if not data.corpus:
        raise RevelaError("the corpus is empty: nothing to chunk")
    doc_ids = sorted(data.corpus)
    ids = tokenizer([data.doc_text(d) for d in doc_ids], add_special_tokens=False)["input_ids"]
    chunks = []
    for doc_id, toks in zip(doc_ids, ids):
        for start in range(0, len(toks), chunk_tokens):
            window = toks[start:start + chunk_tokens]
            if len(window) < min_tokens:
                continue
            chunks.append({"doc_id": doc_id, "text": tokenizer.decode(window).strip(),
                           "query": tokenizer.decode(window[: len(window) // 2]).strip()})
    if max_chunks is not None and len(chunks) > max_chunks:
        chunks = random.Random(seed).sample(chunks, max_chunks)
    if not chunks:
        raise RevelaError(f"no document has {min_tokens} tokens or more: lower min_tokens")
    return chunks


def bm25_batches(chunks: list[dict], batch_size: int = 8, candidates: int = 50,
                 seed: int = SEED) -> list[list[int]]:
    """Group chunks into batches of BM25 neighbours (greedy, each chunk used at most once).

    Seeds are visited in a seeded random order; each seed's batch is itself plus its
    ``batch_size - 1`` best unused BM25 neighbours among the top ``candidates``. A seed whose
    neighbourhood is used up is skipped, so every batch has exactly ``batch_size`` chunks.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    import bm25s

    if batch_size < 2:
        raise RevelaError(f"batch_size={batch_size}: in-batch attention needs at least 2 chunks")
    if len(chunks) < batch_size:
        raise RevelaError(f"{len(chunks)} chunks cannot fill one batch of {batch_size}")
    texts = [c["text"] for c in chunks]
    index = bm25s.BM25()
    index.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    k = min(candidates + 1, len(texts))
    neighbours, _ = index.retrieve(bm25s.tokenize(texts, stopwords="en", show_progress=False),
                                   k=k, show_progress=False, n_threads=1)
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    used, batches = set(), []
    for seed_idx in order:
        if seed_idx in used:
            continue
        group = [seed_idx] + [int(j) for j in neighbours[seed_idx] if int(j) != seed_idx and int(j) not in used]
        group = list(dict.fromkeys(group))[:batch_size]
        if len(group) == batch_size:
            batches.append(group)
            used.update(group)
    return batches


def random_batches(chunks: list[dict], batch_size: int = 8, seed: int = SEED) -> list[list[int]]:
    """The ablation: batches of random chunks (no BM25 grouping).

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    if batch_size < 2 or len(chunks) < batch_size:
        raise RevelaError(f"{len(chunks)} chunks, batch_size={batch_size}: need batch_size >= 2 and enough chunks")
    order = list(range(len(chunks)))
    random.Random(seed).shuffle(order)
    return [order[i:i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]


def check_no_query_text(chunks: list[dict], batches: list[list[int]], data,
                        splits=("dev", "test")) -> int:
    """Fail with :class:`QueryLeakError` if a batch holds an evaluation query's text.

    Every batched chunk must come from a corpus document (queries are not documents), and no
    chunk or chunk half may equal a ``splits`` query's text. Returns the number of chunks checked.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """

    eval_texts = {normalize_text(data.queries[q]): q for s in splits for q in data.qrels.get(s, {})}
    checked = 0
    for b, batch in enumerate(batches):
        for i in batch:
            chunk = chunks[i]
            if chunk["doc_id"] not in data.corpus:
                raise QueryLeakError(f"batch {b}: chunk {i} comes from {chunk['doc_id']!r}, not a corpus document")
            for key in ("text", "query"):
                hit = eval_texts.get(normalize_text(chunk[key]))
                if hit is not None:
                    raise QueryLeakError(f"batch {b}: chunk {i} {key} equals evaluation query {hit!r}")
            checked += 1
    return checked


# --------------------------------------------------------------------------- the attention function


@dataclass
class InBatchState:
    """What the ``revela`` attention function needs, passed to the LM's forward as ``revela=``.

    ``mode="record"``: plain causal attention, and keep every layer's keys and values;
    ``mode="mix"``: causal attention plus the in-batch term with ``weights`` (B x B).
    ``key_mask`` (B x T, True on real tokens) hides the other chunks' padding.
    """

    key_mask: object
    weights: object | None = None
    mode: str = "record"
    normalize: bool = False
    keys: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)


def in_batch_attention(query, key, value, key_mask, weights, scaling: float, normalize: bool = True,
                       eps: float = 1e-6):
    """The in-batch term: ``sum_j w_ij * A_ij V_j`` for every chunk ``i`` (output B x H x T x d).

    ``query`` B x H x T x d (chunk ``i``'s queries), ``key``/``value`` B x H x S x d (every chunk's
    keys and values, grouped-query heads already repeated), ``key_mask`` B x S. ``A_ij`` is a
    softmax over chunk ``j``'s real tokens only (no causal mask across chunks). With
    ``normalize`` each ``A_ij V_j`` is divided by ``A_ij |V_j|`` (the attention-weighted value
    norm), as the authors' code does.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    import torch

    scores = torch.einsum("ihtd,jhsd->ijhts", query, key) * scaling  # B x B x H x T x S
    scores = scores.masked_fill(~key_mask[None, :, None, None, :], torch.finfo(scores.dtype).min)
    probs = scores.softmax(dim=-1)
    mixed = torch.einsum("ijhts,jhsd->ijhtd", probs, value)
    if normalize:
        norms = torch.einsum("ijhts,jhs->ijht", probs, value.norm(dim=-1))
        mixed = mixed / (norms[..., None] + eps)
    return torch.einsum("ij,ijhtd->ihtd", weights.to(mixed.dtype), mixed)


def revela_attention(module, query, key, value, attention_mask, scaling=None, dropout: float = 0.0,
                     revela: InBatchState | None = None, **kwargs):
    """The attention function registered as ``"revela"``: sdpa, plus the in-batch term.

    Without a ``revela=`` state it is exactly transformers' sdpa attention, so a model switched
    to ``"revela"`` computes what the stock model computes.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    out, attn = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                       scaling=scaling, **kwargs)
    if revela is None:
        return out, attn
    layer = module.layer_idx
    if revela.mode == "record":
        revela.keys[layer], revela.values[layer] = key, value
        return out, attn
    if revela.mode != "mix":
        raise RevelaError(f"InBatchState.mode={revela.mode!r}: use 'record' or 'mix'")
    groups = getattr(module, "num_key_value_groups", 1)
    keys = repeat_kv(revela.keys[layer], groups)
    values = repeat_kv(revela.values[layer], groups)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    cross = in_batch_attention(query, keys, values, revela.key_mask, revela.weights, scale,
                               normalize=revela.normalize)
    return out + cross.transpose(1, 2).to(out.dtype), attn


def enable_in_batch_attention(model):
    """Register the ``revela`` attention (and its mask, sdpa's) and switch ``model`` to it.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_NAME, revela_attention)
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if base.config._attn_implementation != ATTN_NAME:
        base.set_attn_implementation(ATTN_NAME)
    if base.config._attn_implementation != ATTN_NAME:
        raise RevelaError(f"{type(base).__name__} does not take attention functions from AttentionInterface")
    return model


def add_lora(model, r: int = 8, alpha: int | None = None, dropout: float = 0.0, target_modules=None):
    """Wrap a transformers model with peft LoRA adapters (attention projections by default)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha or 2 * r, lora_dropout=dropout,
                        target_modules=target_modules or ["q_proj", "k_proj", "v_proj", "o_proj"])
    return get_peft_model(model, config)


# --------------------------------------------------------------------------- retriever and loss


def prompt_of(retriever, name: str) -> str:
    """The retriever's prompt ``name`` (``"query"`` or ``"document"``), or ``""`` when it has none."""
    return (getattr(retriever, "prompts", None) or {}).get(name) or ""


def embed(retriever, texts: list[str], prompt_name: str | None = None):
    """Normalised embeddings of ``texts`` from a SentenceTransformer, with gradients; the
    retriever's prompt ``prompt_name`` (``"query: "`` for the LM retriever) is prepended."""
    import torch

    prefix = prompt_of(retriever, prompt_name) if prompt_name else ""
    features = retriever.preprocess([prefix + t for t in texts])
    device = next(retriever.parameters()).device
    features = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in features.items()}
    return torch.nn.functional.normalize(retriever(features)["sentence_embedding"], dim=-1)


def in_batch_weights(q, d, tau: float):
    """``w_ij = softmax_{j != i}(cos(q_i, d_j) / tau)`` for normalised ``q``, ``d`` (B x dim).

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    import torch

    if tau <= 0:
        raise RevelaError(f"tau={tau}: the temperature must be positive")
    sims = q @ d.T / tau
    eye = torch.eye(len(q), dtype=torch.bool, device=sims.device)
    return sims.masked_fill(eye, float("-inf")).softmax(dim=-1)


def lm_inputs(tokenizer, texts: list[str], max_length: int):
    """Right-padded LM inputs and next-token labels (padding ignored by the loss)."""
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt", padding_side="right", add_special_tokens=False)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return enc["input_ids"], enc["attention_mask"], labels


def revela_lm_loss(lm, tokenizer, texts: list[str], weights, max_length: int = 64,
                   normalize: bool = False, strength: float = 1.0):
    """Next-token loss of the LM reading ``texts`` with in-batch attention weighted by ``weights``.

    Two passes: a plain one records every layer's keys and values (with gradients only when
    the LM has trainable parameters), then a second one adds the in-batch term weighted by
    ``strength * weights``. The paper adds it at full strength and adapts the LM with LoRA; a
    frozen LM reads best with a smaller ``strength`` (see :func:`calibrate_strength`).

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    import torch

    input_ids, attention_mask, labels = lm_inputs(tokenizer, texts, max_length)
    device = next(lm.parameters()).device
    input_ids, attention_mask, labels = input_ids.to(device), attention_mask.to(device), labels.to(device)
    state = InBatchState(key_mask=attention_mask.bool(), normalize=normalize)
    trainable = any(p.requires_grad for p in lm.parameters())
    with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
        lm(input_ids=input_ids, attention_mask=attention_mask, revela=state, use_cache=False, logits_to_keep=1)
    state.mode, state.weights = "mix", weights * strength
    return lm(input_ids=input_ids, attention_mask=attention_mask, labels=labels, revela=state,
              use_cache=False).loss


def revela_loss(retriever, lm, tokenizer, batch: list[dict], tau: float, max_length: int = 64,
                normalize: bool = False, strength: float = 1.0):
    """The whole Revela objective on one batch of chunks: ``(loss, w)``.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    q = embed(retriever, [c["query"] for c in batch], "query")
    d = embed(retriever, [c["text"] for c in batch], "document")
    w = in_batch_weights(q, d, tau)
    return revela_lm_loss(lm, tokenizer, [c["text"] for c in batch], w, max_length, normalize, strength), w


def calibrate_strength(lm, tokenizer, chunks: list[dict], batches: list[list[int]], *,
                       strengths=(1.0, 0.3, 0.1, 0.03), normalize_options=(True, False),
                       max_length: int = 64):
    """How well the LM reads the in-batch term: its loss with uniform ``w`` per setting.

    Runs on training batches only (chunks of the corpus, no query). Returns a pandas table with
    the stock loss (``strength`` 0) and one row per (``normalize``, ``strength``); its
    ``attrs["best"]`` is the non-zero setting with the lowest loss. A frozen LM that reads the other
    chunks at a useful strength predicts its own chunk better than alone.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    import pandas as pd
    import torch

    if not batches:
        raise RevelaError("calibrate_strength needs at least one batch")
    enable_in_batch_attention(lm)
    rows = []
    with torch.no_grad():
        for b, batch in enumerate(batches):
            input_ids, attention_mask, labels = lm_inputs(tokenizer, [chunks[i]["text"] for i in batch], max_length)
            n = len(batch)
            uniform = torch.full((n, n), 1.0 / (n - 1)).fill_diagonal_(0.0)
            state = InBatchState(key_mask=attention_mask.bool())
            lm(input_ids=input_ids, attention_mask=attention_mask, revela=state, use_cache=False, logits_to_keep=1)
            state.mode = "mix"  # the recorded keys and values serve every setting below
            settings = [(False, 0.0)] + [(nm, st) for nm in normalize_options for st in strengths]
            for normalize, strength in settings:
                state.normalize, state.weights = normalize, uniform * strength
                loss = lm(input_ids=input_ids, attention_mask=attention_mask, labels=labels, revela=state,
                          use_cache=False).loss
                rows.append({"batch": b, "normalize": normalize, "strength": strength, "loss": float(loss)})
    table = pd.DataFrame(rows).groupby(["normalize", "strength"], as_index=False)["loss"].mean()
    mixed = table[table["strength"] > 0]  # strength 0 is the stock LM: no gradient reaches w
    best = mixed.loc[mixed["loss"].idxmin()]
    table.attrs["best"] = {"normalize": bool(best["normalize"]), "strength": float(best["strength"])}
    table.attrs["stock_loss"] = float(table.loc[table["strength"] == 0, "loss"].iloc[0])
    return table


def freeze(model):
    """Turn off gradients of every parameter of ``model`` (the LM when it is not adapted)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def reset_peak_rss() -> bool:
    """Reset the peak-memory counter of this process (Linux ``clear_refs``); False elsewhere."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_mb() -> float:
    """Resident memory of this process now, in MB (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_rss_mb() -> float:
    """Peak resident memory of this process since the last :func:`reset_peak_rss`, in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # lifetime peak (KB on Linux)


def score_tensor_mb(batch_size: int, heads: int, tokens: int, bytes_per: int = 4) -> float:
    """Size of one layer's in-batch attention scores, B x B x H x T x T, in MB."""
    return batch_size * batch_size * heads * tokens * tokens * bytes_per / 2**20


def schedule(batches: list[list[int]], steps: int | None = None) -> list[list[int]]:
    """The batches of ``steps`` optimizer steps: one pass for ``None``, the first ``steps`` batches
    when there are enough, else the batches again in the same order (more than one epoch).
    Never fewer steps than asked.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    if not batches:
        raise RevelaError("no batches to train on")
    steps = len(batches) if steps is None else int(steps)
    if steps < 1:
        raise RevelaError(f"steps={steps}: train at least one step")
    return [batches[s % len(batches)] for s in range(steps)]


def train(retriever, lm, tokenizer, chunks: list[dict], batches: list[list[int]], *,
          steps: int | None = None, tau: float = 0.05, learning_rate: float = 2e-5, max_length: int = 64,
          normalize: bool = False, strength: float = 1.0, max_grad_norm: float = 1.0,
          check=None, check_at=(), seed: int = SEED, progress: bool = False) -> dict:
    """Train ``retriever`` (and the LM's trainable parameters, if any) for ``steps`` batches, in place.

    One optimizer step per batch; the only loss is the LM's next-token cross-entropy. ``steps``
    (default: one pass) cycles over ``batches`` when it asks for more (:func:`schedule`): the
    number of steps is always the one asked for, and ``epochs`` says how many passes it took.
    ``check(retriever) -> float`` (e.g. :func:`dev_score`) is called before training when 0 is
    in ``check_at`` and after every step listed there: the learning curve, with the mean LM loss
    of the steps since the previous point.

    Returns ``{"steps", "epochs", "seconds", "seconds_per_step", "loss_first", "loss_last",
    "rss_before_mb", "peak_rss_mb", "log", "curve"}`` (``log``: loss, mean largest weight and
    seconds per step; the process's resident memory when training starts and its peak during
    training; ``seconds`` leaves out the time of ``check``).

    Why not ``cookbook.finetune.fit``: the loss needs the LM and fixed BM25 groups as batches,
    which the sentence-transformers trainer (it shuffles rows) does not provide.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    import torch

    plan = schedule(batches, steps)
    torch.manual_seed(seed)
    enable_in_batch_attention(lm)
    params = [p for p in retriever.parameters() if p.requires_grad]
    params += [p for p in lm.parameters() if p.requires_grad]
    if not any(p.requires_grad for p in retriever.parameters()):
        raise RevelaError("the retriever has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=learning_rate)
    check_at = set(check_at or ())
    curve, checking = [], 0.0

    def point(step, losses):
        nonlocal checking
        t0 = time.perf_counter()
        retriever.eval()
        with torch.no_grad():
            value = float(check(retriever))
        retriever.train()
        checking += time.perf_counter() - t0
        curve.append({"step": step, "dev": value,
                      "LM loss": sum(losses) / len(losses) if losses else None})

    reset_peak_rss()
    rss_before = rss_mb()
    log, started = [], time.perf_counter()
    if check is not None and 0 in check_at:
        point(0, [])
    retriever.train()
    lm.train()
    iterator = plan
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(plan, desc="revela")
    since = []
    for step, batch in enumerate(iterator, start=1):
        t0 = time.perf_counter()
        loss, w = revela_loss(retriever, lm, tokenizer, [chunks[i] for i in batch], tau, max_length,
                              normalize, strength)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        log.append({"loss": float(loss.detach()), "max_w": float(w.detach().max(dim=-1).values.mean()),
                    "seconds": time.perf_counter() - t0})
        since.append(log[-1]["loss"])
        if check is not None and step in check_at:
            point(step, since)
            since = []
    retriever.eval()
    lm.eval()
    seconds = time.perf_counter() - started - checking
    return {"steps": len(log), "epochs": round(len(log) / len(batches), 2), "seconds": round(seconds, 1),
            "seconds_per_step": round(seconds / len(log), 2), "loss_first": log[0]["loss"],
            "loss_last": log[-1]["loss"], "rss_before_mb": round(rss_before, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1), "log": log, "curve": curve}


# --------------------------------------------------------------------------- the label-free dev check


def split_dev(chunks: list[dict], n_dev: int, seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """Hold ``n_dev`` chunks out of training (seeded): ``(train_chunks, dev_chunks)``.

    The dev chunks are the label-free check of :func:`dev_run`; they never enter a batch.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    if n_dev < 2 or n_dev >= len(chunks):
        raise RevelaError(f"n_dev={n_dev} of {len(chunks)} chunks: hold out at least 2 and leave some to train on")
    order = list(range(len(chunks)))
    random.Random(seed + 1).shuffle(order)
    dev = set(order[:n_dev])
    return [c for i, c in enumerate(chunks) if i not in dev], [c for i, c in enumerate(chunks) if i in dev]


def dev_run(retriever, dev_chunks: list[dict], k: int = 10, batch_size: int = 32) -> tuple[dict, dict]:
    """The label-free dev check: the first half of every held-out chunk (the query Revela trains
    on) searches all held-out chunks; its own chunk is the one relevant document.

    Returns ``(run, qrels)`` for :func:`cookbook.evaluate.evaluate` / :func:`~cookbook.evaluate.compare`
    (query ``c<i>`` -> chunk ``c<i>``). The retriever's ``"query"``/``"document"`` prompts are used.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    import numpy as np

    ids = [f"c{i}" for i in range(len(dev_chunks))]
    opts = {"batch_size": batch_size, "normalize_embeddings": True, "convert_to_numpy": True,
            "show_progress_bar": False}
    q = retriever.encode([prompt_of(retriever, "query") + c["query"] for c in dev_chunks], **opts)
    d = retriever.encode([prompt_of(retriever, "document") + c["text"] for c in dev_chunks], **opts)
    sims = q @ d.T
    top = np.argsort(-sims, axis=1)[:, :k]
    run = {qid: {ids[j]: float(sims[i, j]) for j in top[i]} for i, qid in enumerate(ids)}
    return run, {qid: {qid: 1} for qid in ids}


def dev_score(retriever, dev_chunks: list[dict], metric: str = "nDCG@10") -> float:
    """The dev check as one number (mean ``metric`` of :func:`dev_run`): a learning-curve point.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """

    run, qrels = dev_run(retriever, dev_chunks)
    return float(evaluate.evaluate(run, qrels, (metric,))[0][metric])


def cosine_spread(retriever, chunks: list[dict]) -> dict:
    """How far apart the retriever's cosines are: query half of chunk ``i`` against its own chunk
    and against every other chunk. A retriever whose cosines all sit near one value (a spread
    near 0) gives nearly uniform ``w`` at any useful ``tau``.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    import numpy as np

    opts = {"normalize_embeddings": True, "convert_to_numpy": True, "show_progress_bar": False}
    q = retriever.encode([prompt_of(retriever, "query") + c["query"] for c in chunks], **opts)
    d = retriever.encode([prompt_of(retriever, "document") + c["text"] for c in chunks], **opts)
    sims = q @ d.T
    off = sims[~np.eye(len(chunks), dtype=bool)]
    own = np.diag(sims)
    return {"mean cosine (other chunks)": float(off.mean()), "std cosine (other chunks)": float(off.std()),
            "min cosine": float(sims.min()), "max cosine": float(sims.max()),
            "mean cosine (own chunk)": float(own.mean()),
            "own minus other, in stds": float((own.mean() - off.mean()) / (off.std() + 1e-12))}


# --------------------------------------------------------------------------- starting retrievers


#: the paper's prefixes for the LM retriever (Revela's code: "query: " / "passage: ")
PAPER_PROMPTS = {"query": "query: ", "document": "passage: "}


def append_eos(tokenizer) -> None:
    """Make ``tokenizer`` end every encoded text with its EOS token (a template post-processor,
    saved with the tokenizer): what last-token pooling reads, as in the paper's EOS pooling.
    Truncation keeps room for it, so the EOS is always the last real token."""
    from tokenizers.processors import TemplateProcessing

    eos = tokenizer.eos_token
    if eos is None:
        raise RevelaError("the tokenizer has no EOS token to append")
    tokenizer._tokenizer.post_processor = TemplateProcessing(
        single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, tokenizer.eos_token_id)])


def lm_retriever(source: str | None = None, max_seq_length: int = 64, pooling: str = "lasttoken",
                 eos: bool = True, prompts: dict | None = PAPER_PROMPTS, lora_r: int | None = 16,
                 text_only: bool = True, seed: int = SEED):
    """A SentenceTransformer on a causal LM's backbone (default: the offline SmolLM2-135M).

    The LM was never trained for retrieval: this is the "from scratch" starting point. The
    defaults follow the paper: ``pooling="lasttoken"`` reads the hidden state of an EOS token
    appended to every text (``eos``), and ``prompts`` puts ``"query: "`` before queries and
    ``"passage: "`` before documents (stored in the model: pass them to ``encode(prompt_name=...)``
    or to ``retrieval.DenseIndex(query_prompt=..., document_prompt=...)``). ``pooling="mean"``,
    ``eos=False``, ``prompts=None`` is the plain mean-pooled bi-encoder. ``text_only=False`` lets
    sentence-transformers 6 wrap every text in the instruct LM's chat template (its default; a
    system prompt of ~30 tokens then fills most of a short ``max_seq_length``). With ``lora_r`` only
    LoRA adapters train (merged back by :func:`save_retriever`).

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    import torch
    from sentence_transformers import SentenceTransformer


    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import (
            Normalize,
            Pooling,
            Transformer,
        )
    except ImportError:  # older releases
        from sentence_transformers.models import Normalize, Pooling, Transformer

    torch.manual_seed(seed)
    # text only: sentence-transformers 6 otherwise wraps every text in the chat template of an
    # instruct LM (a system prompt of ~30 tokens that fills a short max_seq_length)
    text = {"modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
            "module_output_name": "token_embeddings"} if text_only else {}
    transformer = Transformer(source or resolve("generator"), max_seq_length=max_seq_length, **text)
    if transformer.tokenizer.pad_token is None:
        transformer.tokenizer.pad_token = transformer.tokenizer.eos_token
    transformer.tokenizer.padding_side = "right"
    if eos:
        append_eos(transformer.tokenizer)
    dim = transformer.get_embedding_dimension() if hasattr(transformer, "get_embedding_dimension") \
        else transformer.get_word_embedding_dimension()
    model = SentenceTransformer(modules=[transformer, Pooling(dim, pooling_mode=pooling), Normalize()],
                                device="cpu", prompts=dict(prompts or {}))
    if lora_r:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0,
                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
        transformer.model = get_peft_model(transformer.model, config)
    return model


def save_retriever(retriever, path) -> Path:
    """Save ``retriever`` so that ``SentenceTransformer(str(path))`` loads it (LoRA merged first)."""

    path = Path(path)
    first = retriever[0]
    inner = getattr(first, "model", None)
    if inner is not None and hasattr(inner, "merge_and_unload"):
        first.model = inner.merge_and_unload()
    return save_model(retriever, path)


# --------------------------------------------------------------------------- the reader LM


def lm_pair(llm=None):
    """The reader LM as (tokenizer, model): the offline SmolLM2 for ``None``, a pair as it is, or
    the ``.tokenizer`` and ``.model`` of a :class:`cookbook.llm.LocalLLM`.

    Taught in: notebooks/60_learn_retriever_by_language_modeling_revela.ipynb
    """
    if llm is None:

        return load_causal_lm("generator")
    if isinstance(llm, tuple) and len(llm) == 2:
        return llm
    if hasattr(llm, "tokenizer") and hasattr(llm, "model"):
        return llm.tokenizer, llm.model
    raise RevelaError("llm must be None, a (tokenizer, model) pair or an object with .tokenizer and .model "
                      f"(a cookbook.llm.LocalLLM); got {type(llm).__name__}")
