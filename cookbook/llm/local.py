"""The local transformers backend: batched generation and query-likelihood scoring.

Taught in: notebooks/20_generate_queries_promptagator.ipynb
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cookbook.llm.base import BaseLLM, LLMConfigError, SamplingParams, _stable_int, cut_at_stop
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

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """

    backend = "transformers"

    def __init__(self, tokenizer=None, model=None, *, role: str = "generator",
                 model_name: str | None = None, cache: LLMCache | str | Path | bool | None = None,
                 batch_size: int = 8, score_batch_size: int | None = None,
                 max_prompt_tokens: int = 1024, min_prefix_tokens: int = 16,
                 progress: bool = True):
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

    def _prefix_cache(self, prefix: list[int]):
        """The KV cache of a shared prompt prefix (the few-shot block), computed once."""
        import copy

        import torch
        from transformers import DynamicCache

        key = tuple(prefix)
        if self._prefix_memo is None or self._prefix_memo[0] != key:
            cache = DynamicCache(config=self.model.config)
            with torch.inference_mode():
                self.model(input_ids=torch.tensor([prefix]), cache=cache, use_cache=True,
                           logits_to_keep=1)
            self._prefix_memo = (key, cache)
        return copy.deepcopy(self._prefix_memo[1])

    def _generate_batch(self, prompts: list[str], params: SamplingParams, chat: bool):
        import torch
        from transformers import StoppingCriteriaList

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

            cache = self._prefix_cache(ids[0][:lcp]) if lcp else DynamicCache(config=self.model.config)
            if lcp:
                cache.batch_repeat_interleave(len(base_rows))
            if full.shape[1] - 1 > lcp:  # else the prefix already covers all but the last token
                positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
                with torch.inference_mode():
                    self.model(input_ids=full[:, lcp:-1], attention_mask=full_mask[:, :-1],
                               position_ids=positions[:, lcp:-1], cache=cache, use_cache=True,
                               logits_to_keep=1)
            if params.n > 1:
                cache.batch_repeat_interleave(params.n)
            kwargs["cache"] = cache
        # One seed per batch, derived from the run seed and the batch's prompts: a re-run of the
        # same batch repeats exactly (and the cache makes every re-run exact anyway).
        torch.manual_seed(_stable_int(params.seed, prompts))
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        new = out[:, input_ids.shape[1]:]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        n_new = (new != pad).sum(dim=1).tolist()
        results = []
        for i in range(len(prompts)):
            span = range(i * params.n, (i + 1) * params.n)
            results.append(([cut_at_stop(texts[r], params.stop) for r in span],
                             len(ids[i]), int(sum(n_new[r] for r in span))))
        return results

    def _score_batch(self, contexts: list[str], continuations: list[str]):
        import torch

        tok = self.tokenizer
        ids, lengths = [], []
        for ctx, cont in zip(contexts, continuations):
            c_ids = tok(ctx, add_special_tokens=True)["input_ids"]
            x_ids = tok(cont, add_special_tokens=False)["input_ids"]
            if not x_ids:
                raise LLMConfigError(f"continuation {cont!r} has no tokens")
            c_ids = c_ids[-max(self.max_prompt_tokens - len(x_ids), 1):]
            ids.append(c_ids + x_ids)
            lengths.append(len(x_ids))
        width, tail = max(len(x) for x in ids), max(lengths)
        input_ids = torch.full((len(ids), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for i, x in enumerate(ids):  # left padding: every continuation ends at the last column
            input_ids[i, width - len(x):] = torch.tensor(x, dtype=torch.long)
            mask[i, width - len(x):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            # only the last `tail + 1` positions need the (large) vocabulary projection
            logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                logits_to_keep=tail + 1).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)  # predicts the last `tail` tokens
        targets = input_ids[:, -tail:]
        token_lp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return [(float(token_lp[i, tail - n:].sum().item()), int(n)) for i, n in enumerate(lengths)]
