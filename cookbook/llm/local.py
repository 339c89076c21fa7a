"""The local transformers backend: batched generation and query-likelihood scoring.

Taught in: notebooks/20_generate_queries_promptagator.ipynb
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cookbook.llm import precision as P
from cookbook.llm.base import (
    QL_TEMPLATE,
    BaseLLM,
    LLMConfigError,
    SamplingParams,
    _stable_int,
    cut_at_stop,
)
from cookbook.llm.cache import LLMCache


class _StopAfterContent:
    """Stop a row once its new text, leading whitespace ignored, contains a stop string.

    (transformers' own ``stop_strings`` would also stop on a newline that comes before any
    content, which small models often emit first.)
    """

    def __init__(self, tokenizer, prompt_len: int, stop: Sequence[str]):
        self.tokenizer, self.prompt_len, self.stop = tokenizer, prompt_len, [s for s in stop if s]

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        done = [any(s in t.lstrip() for s in self.stop) for t in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class LocalLLM(BaseLLM):
    """A causal LM run with transformers on this machine (default: the ``generator`` role,
    SmolLM2-135M-Instruct from the offline GGUF package).

    Pass ``tokenizer`` and ``model`` to use any loaded pair; then ``model_name`` (part of the
    cache key) defaults to the model's folder name. Prompts longer than ``max_prompt_tokens``
    lose their beginning (the document and the final cue are at the end of our prompts).

    Prompts of one batch that share a prefix of at least ``min_prefix_tokens`` tokens (the
    few-shot block of a Promptagator prompt) have it computed once and reused through the KV
    cache, which makes few-shot generation several times cheaper on a CPU.

    Scoring (``score``, ``query_likelihood``) is ordered by context length (``sort_by_length``:
    little padding per batch), and pairs of a batch that share their context (one document,
    several queries: the query comes last in the prompt) have the context's KV cache computed
    once (``share_prefix``). ``precision`` (``auto``, ``fp32``, ``bf16``, ``int8``; default
    ``COOKBOOK_LLM_PRECISION`` or ``auto``) is the number format of scoring: ``auto`` takes bf16
    on a CPU with native bf16 and fp32 elsewhere (:mod:`cookbook.llm.precision`); a format other
    than fp32 is part of the cache key. ``generate_precision`` is generation's: ``fp32`` (the
    default: the model as loaded), or ``auto``, which generates with the same lower-precision
    copy as scoring where ``precision`` resolved to ``bf16`` (about 1.5x faster on a 2-core CPU with
    native bf16; other texts than fp32's, so bf16 generations have their own cache key).

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """

    backend = "transformers"

    def __init__(self, tokenizer=None, model=None, *, role: str = "generator",
                 model_name: str | None = None, cache: LLMCache | str | Path | bool | None = None,
                 batch_size: int = 8, score_batch_size: int | None = None,
                 max_prompt_tokens: int = 1024, min_prefix_tokens: int = 16,
                 precision: str | None = None, share_prefix: bool = True,
                 sort_by_length: bool = True, progress: bool = True, generate_precision: str = "fp32"):
        if (tokenizer is None) != (model is None):
            raise LLMConfigError("pass both tokenizer and model, or neither (then role= loads them)")
        if tokenizer is None:
            from cookbook.models import load_causal_lm, resolve

            source = resolve(role)
            tokenizer, model = load_causal_lm(role)
            default_name = Path(source).name if Path(source).exists() else source
        else:
            default_name = Path(str(getattr(model, "name_or_path", "") or "model")).name
        super().__init__(model_name or default_name, cache=cache, batch_size=batch_size,
                         progress=progress)
        self.tokenizer, self.model = tokenizer, model
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_prompt_tokens = max_prompt_tokens
        self.min_prefix_tokens = min_prefix_tokens
        self._prefix_memo = None
        self.score_batch_size = score_batch_size or batch_size
        self.share_prefix, self.sort_by_length = share_prefix, sort_by_length
        self.requested_precision = P.requested_precision(precision)
        if generate_precision not in ("fp32", "auto"):
            raise LLMConfigError(f"generate_precision={generate_precision!r}: choose fp32 or auto")
        self.generate_precision = generate_precision
        self._precision: str | None = None  # resolved at the first score() call
        self.precision_note = ""
        self._fast_model = None
        self.model.eval()

    def _score_batch_size(self) -> int:
        return self.score_batch_size

    def _token_ids(self, prompts: list[str], chat: bool) -> list[list[int]]:
        tok = self.tokenizer
        if chat:
            prompts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for p in prompts]
        ids = tok(prompts, add_special_tokens=not chat)["input_ids"]
        return [x[-self.max_prompt_tokens:] for x in ids]  # keep the end (document and cue)

    def _prefix_cache(self, prefix: list[int], model):
        """The KV cache of a shared prompt prefix (the few-shot block), computed once per model."""
        import copy

        import torch
        from transformers import DynamicCache

        key = (tuple(prefix), id(model))
        if self._prefix_memo is None or self._prefix_memo[0] != key:
            cache = DynamicCache(config=model.config)
            with torch.inference_mode():
                model(input_ids=torch.tensor([prefix]), cache=cache, use_cache=True, logits_to_keep=1)
            self._prefix_memo = (key, cache)
        return copy.deepcopy(self._prefix_memo[1])

    def _generate_batch(self, prompts: list[str], params: SamplingParams, chat: bool):
        import torch
        from transformers import StoppingCriteriaList

        model = self._generation_model()
        ids = self._token_ids(prompts, chat)
        # Rows: prompt i, sample j at i * n + j. Prompts that share a long prefix (few-shot
        # examples) get it computed once and reused through the KV cache: the layout is
        # [prefix][left padding][suffix], and positions skip the padding, so the result is the
        # same as running each prompt alone.
        lcp = 0
        shortest = min(len(x) for x in ids)
        while lcp < shortest - 1 and len({x[lcp] for x in ids}) == 1:
            lcp += 1
        if lcp < self.min_prefix_tokens:
            lcp = 0
        rows = [x[lcp:] for x in ids for _ in range(params.n)]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), lcp + width), pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for i, r in enumerate(rows):
            input_ids[i, :lcp] = torch.tensor(ids[0][:lcp], dtype=torch.long)
            mask[i, :lcp] = 1
            input_ids[i, lcp + width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, lcp + width - len(r):] = 1
        kwargs: dict[str, Any] = dict(
            max_new_tokens=params.max_new_tokens, pad_token_id=pad,
            repetition_penalty=params.repetition_penalty, do_sample=not params.greedy,
        )
        if params.greedy:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(temperature=params.temperature, top_p=params.top_p,
                          top_k=params.top_k or None)
        if params.stop:
            kwargs["stopping_criteria"] = StoppingCriteriaList(
                [_StopAfterContent(self.tokenizer, input_ids.shape[1], params.stop)])
        # Prefill once per prompt (not once per sample): the shared prefix comes from its memo,
        # the suffixes are run for the batch's prompts, then the cache is repeated n times.
        base_rows = [x[lcp:] for x in ids]
        full = input_ids[::params.n]
        full_mask = mask[::params.n]
        if full.shape[1] > 1:
            from transformers import DynamicCache

            cache = self._prefix_cache(ids[0][:lcp], model) if lcp else DynamicCache(config=model.config)
            if lcp:
                cache.batch_repeat_interleave(len(base_rows))
            if full.shape[1] - 1 > lcp:  # else the prefix already covers all but the last token
                positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
                with torch.inference_mode():
                    model(input_ids=full[:, lcp:-1], attention_mask=full_mask[:, :-1],
                               position_ids=positions[:, lcp:-1], cache=cache, use_cache=True,
                               logits_to_keep=1)
            if params.n > 1:
                cache.batch_repeat_interleave(params.n)
            kwargs["cache"] = cache
        # One seed per batch, derived from the run seed and the batch's prompts: a re-run of the
        # same batch repeats exactly (and the cache makes every re-run exact anyway).
        torch.manual_seed(_stable_int(params.seed, prompts))
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        new = out[:, input_ids.shape[1]:]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        n_new = (new != pad).sum(dim=1).tolist()
        results = []
        for i in range(len(prompts)):
            span = range(i * params.n, (i + 1) * params.n)
            results.append(([cut_at_stop(texts[r], params.stop) for r in span],
                             len(ids[i]), int(sum(n_new[r] for r in span))))
        return results

    # ---- scoring --------------------------------------------------------------------------
    @property
    def precision(self) -> str:
        """The number format scoring runs in (``auto`` resolved on first use)."""
        if self._precision is None:
            self._resolve_precision()
        return self._precision

    def _resolve_precision(self) -> None:
        import torch

        wanted = self.requested_precision
        device = next(self.model.parameters()).device.type
        if wanted != "auto":
            self._precision, self.precision_note = wanted, f"{wanted} (asked for)"
        else:
            choice, reason = P.choose_precision(device=device)
            self._precision = choice
            self.precision_note = f"{choice} (auto: {reason})"
            if choice != "fp32":  # check the format on the probe pairs before trusting it
                ctx = [QL_TEMPLATE.format(document=d) for d, _ in P.PROBE_PAIRS]
                ids = self._pair_ids(ctx, [" " + q for _, q in P.PROBE_PAIRS])
                ref = [lp / n for lp, n in self._score_ids(ids, self.model)]
                got = [lp / n for lp, n in self._score_ids(ids, self._scoring_model())]
                diff = P.max_abs_diff(ref, got)
                if diff > P.MAX_ABS_DIFF or not all(map(torch.isfinite, torch.tensor(got))):
                    self._precision, self._fast_model = "fp32", None
                    self.precision_note = (f"fp32 (auto: {choice} scores differ from fp32 by "
                                           f"{diff:.3f} > {P.MAX_ABS_DIFF} on the probe pairs)")
                else:
                    self.precision_note += f"; probe max |dlogp| per token {diff:.3f} <= {P.MAX_ABS_DIFF}"
        P.log_choice(self.precision_note)

    def _scoring_model(self):
        """The model scoring runs: the loaded one in fp32, else a lower-precision copy."""
        if self._precision in (None, "fp32"):
            return self.model
        if self._fast_model is None:
            self._fast_model = P.lower_precision_copy(self.model, self._precision)
        return self._fast_model

    def _generation_model(self):
        """The model generation runs: the loaded one, or scoring's bf16 copy (``generate_precision="auto"``)."""
        if self.generate_precision == "auto" and self.precision == "bf16":
            return self._scoring_model()
        return self.model

    def _generate_key(self) -> dict:
        return {"precision": "bf16"} if self._generation_model() is not self.model else {}

    def _score_key(self) -> dict:
        # fp32 keeps the old key (its cache entries stay valid); another format is another key,
        # so bf16 scores are never replayed as fp32 ones or the other way round
        return {"v": 1} if self.precision == "fp32" else {"v": 1, "precision": self.precision}

    def _order(self, kind: str, items: list) -> list:
        """Score items sorted by context length, then context: batches of similar length (little
        padding) in which the pairs of one document sit together (its KV cache is shared)."""
        if kind != "score" or not self.sort_by_length:
            return items
        contexts = list(dict.fromkeys(p[0] for _, p in items))
        lengths = dict(zip(contexts, map(len, self.tokenizer(contexts)["input_ids"])))
        return sorted(items, key=lambda kp: (lengths[kp[1][0]], kp[1][0]))

    def _pair_ids(self, contexts: list[str], continuations: list[str]) -> list[tuple[list, list]]:
        tok = self.tokenizer
        c_all = tok(list(contexts), add_special_tokens=True)["input_ids"]
        x_all = tok(list(continuations), add_special_tokens=False)["input_ids"]
        pairs = []
        for cont, c_ids, x_ids in zip(continuations, c_all, x_all):
            if not x_ids:
                raise LLMConfigError(f"continuation {cont!r} has no tokens")
            pairs.append((c_ids[-max(self.max_prompt_tokens - len(x_ids), 1):], x_ids))
        return pairs

    def _score_batch(self, contexts: list[str], continuations: list[str]):
        model = self._scoring_model()
        ids = self._pair_ids(contexts, continuations)
        if self.share_prefix and len({tuple(c) for c, _ in ids}) < len(ids):
            return self._score_ids_shared(ids, model)
        return self._score_ids(ids, model)

    def _score_ids(self, pairs: list[tuple[list, list]], model):
        """``(log p, n tokens)`` per (context ids, continuation ids), one left-padded batch."""
        import torch

        ids = [c + x for c, x in pairs]
        lengths = [len(x) for _, x in pairs]
        width, tail = max(len(x) for x in ids), max(lengths)
        input_ids = torch.full((len(ids), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for i, x in enumerate(ids):  # left padding: every continuation ends at the last column
            input_ids[i, width - len(x):] = torch.tensor(x, dtype=torch.long)
            mask[i, width - len(x):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            # only the last `tail + 1` positions need the (large) vocabulary projection
            logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                           logits_to_keep=tail + 1).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)  # predicts the last `tail` tokens
        targets = input_ids[:, -tail:]
        token_lp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return [(float(token_lp[i, tail - n:].sum().item()), int(n)) for i, n in enumerate(lengths)]

    def _score_ids_shared(self, pairs: list[tuple[list, list]], model):
        """The same scores, each distinct context computed once.

        1. The batch's distinct contexts run once (left-padded), filling a KV cache and giving
           the distribution of each continuation's first token.
        2. The cache rows are repeated per pair (``batch_select_indices``) and the
           continuations run on top, right-padded: a causal model never looks at the padding
           that follows a token, and positions continue from each context's length.
        """
        import torch
        from transformers import DynamicCache

        groups: dict[tuple, int] = {}
        row_group = [groups.setdefault(tuple(c), len(groups)) for c, _ in pairs]
        contexts = list(groups)
        width = max(len(c) for c in contexts)
        pad = self.tokenizer.pad_token_id
        ctx_ids = torch.full((len(contexts), width), pad, dtype=torch.long)
        ctx_mask = torch.zeros_like(ctx_ids)
        for g, c in enumerate(contexts):
            ctx_ids[g, width - len(c):] = torch.tensor(c, dtype=torch.long)
            ctx_mask[g, width - len(c):] = 1
        cache = DynamicCache(config=model.config)
        with torch.inference_mode():
            first = model(input_ids=ctx_ids, attention_mask=ctx_mask,
                          position_ids=(ctx_mask.cumsum(-1) - 1).clamp(min=0), cache=cache,
                          use_cache=True, logits_to_keep=1).logits[:, -1].float()
        first_lp = torch.log_softmax(first, dim=-1)
        lengths = [len(x) for _, x in pairs]
        tail = max(lengths)
        x_ids = torch.full((len(pairs), tail), pad, dtype=torch.long)
        x_mask = torch.zeros_like(x_ids)
        for i, (_, x) in enumerate(pairs):
            x_ids[i, :len(x)] = torch.tensor(x, dtype=torch.long)
            x_mask[i, :len(x)] = 1
        rows = torch.tensor(row_group, dtype=torch.long)
        totals = first_lp[rows, x_ids[:, 0]]
        if tail > 1:
            cache.batch_select_indices(rows)
            ctx_len = ctx_mask.sum(-1)[rows]
            with torch.inference_mode():
                logits = model(input_ids=x_ids[:, :-1], cache=cache, use_cache=True,
                               attention_mask=torch.cat([ctx_mask[rows], x_mask[:, :-1]], dim=1),
                               position_ids=ctx_len[:, None] + torch.arange(tail - 1)).logits.float()
            token_lp = torch.log_softmax(logits, dim=-1).gather(-1, x_ids[:, 1:, None]).squeeze(-1)
            totals = totals + (token_lp * x_mask[:, 1:]).sum(-1)
        return [(float(totals[i].item()), int(n)) for i, n in enumerate(lengths)]
