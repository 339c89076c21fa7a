"""The LLM protocol, sampling parameters, usage counters, errors, and the shared cached machinery.

Taught in: notebooks/20_generate_queries_promptagator.ipynb
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cookbook.config import SEED
from cookbook.llm.cache import LLMCache, _open_cache, cache_key

#: The query-likelihood prompt (after UPR, Sachan et al. 2022): the score of a (query, document)
#: pair is the log-probability of the query tokens given this context.
QL_TEMPLATE = "Passage: {document}\nPlease write a search query for this passage.\nQuery:"


class LLMError(RuntimeError):
    """Something went wrong talking to a language model."""


class LLMConfigError(LLMError, ValueError):
    """A backend is misconfigured (missing URL or model, bad parameter)."""


class LLMResponseError(LLMError, ValueError):
    """An endpoint answered, but not with what the OpenAI protocol promises."""


class LLMHTTPError(LLMError):
    """An endpoint refused a request (non-retryable status) or kept failing after retries."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SamplingParams:
    """How to decode. ``temperature=0`` is greedy; then ``top_p``, ``top_k`` and ``seed`` are
    irrelevant and left out of the cache key, so greedy calls share cache entries.

    ``n`` completions are returned per prompt; ``stop`` strings end a completion (the stop
    string itself is cut off); ``top_k=0`` disables top-k.
    """

    max_new_tokens: int = 32
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    n: int = 1
    seed: int = SEED
    stop: tuple[str, ...] = ("\n",)

    def __post_init__(self):
        if isinstance(self.stop, str) or isinstance(self.stop, list):
            object.__setattr__(self, "stop", (self.stop,) if isinstance(self.stop, str) else tuple(self.stop))
        checks = [
            ("max_new_tokens", isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1, ">= 1"),
            ("temperature", self.temperature >= 0, ">= 0"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("top_k", isinstance(self.top_k, int) and self.top_k >= 0, "an int >= 0"),
            ("repetition_penalty", self.repetition_penalty > 0, "> 0"),
            ("n", isinstance(self.n, int) and self.n >= 1, "an int >= 1"),
            ("seed", isinstance(self.seed, int), "an int"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise LLMConfigError(f"SamplingParams.{name}={getattr(self, name)!r} must be {rule}")
        if self.n > 1 and self.temperature == 0:
            raise LLMConfigError("SamplingParams.n > 1 needs temperature > 0 (greedy decoding "
                                 "returns the same completion n times)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def key(self) -> dict:
        """The parameters that change the result (what the cache key includes)."""
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        if self.greedy:
            for name in ("temperature", "top_p", "top_k", "seed"):
                d.pop(name)
        return d

    def replace(self, **changes) -> SamplingParams:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise LLMConfigError(f"unknown sampling parameter(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)


@dataclass
class Usage:
    """What a backend did: calls, cache hits, tokens and seconds.

    ``calls`` counts backend invocations (a batch for the local model, a request over HTTP),
    ``items`` the prompts they computed, ``cache_hits`` the prompts replayed from the cache and
    ``saved_seconds`` the backend time those replays would have cost.
    """

    calls: int = 0
    items: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    saved_seconds: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                        for f in dataclasses.fields(self)})

    def __sub__(self, other: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) - getattr(other, f.name)
                        for f in dataclasses.fields(self)})

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["seconds"] = round(d["seconds"], 3)
        d["saved_seconds"] = round(d["saved_seconds"], 3)
        d["items_per_second"] = round(self.items / self.seconds, 3) if self.seconds else None
        return d

    def __str__(self) -> str:
        rate = f", {self.items / self.seconds:.2f} items/s" if self.seconds else ""
        return (f"{self.items} computed in {self.calls} backend calls ({self.seconds:.1f} s{rate}), "
                f"{self.cache_hits} from cache (saved {self.saved_seconds:.1f} s), "
                f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens")


@runtime_checkable
class LLM(Protocol):
    """What every backend offers (see :class:`BaseLLM` for the arguments)."""

    backend: str
    model_name: str
    usage: Usage

    def generate(self, prompts: Sequence[str] | str, params: SamplingParams | None = None, *,
                 chat: bool = False, **overrides) -> list[list[str]]: ...

    def score(self, contexts: Sequence[str], continuations: Sequence[str], *,
              normalize: bool = False) -> list[float]: ...


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` at the first stop string after any leading whitespace, and strip it."""
    text = text.lstrip()
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut].strip()


def _stable_int(*parts: Any) -> int:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little")


class BaseLLM:
    """Cache, batching, progress and accounting shared by every backend.

    A backend implements ``_generate_batch(prompts, params, chat) -> list[(texts, pt, ct)]``
    and ``_score_batch(contexts, continuations) -> list[(logprob, n_tokens)]``; everything
    else (cache look-up, commit per batch, tqdm, :class:`Usage`) happens here.
    """

    backend = "base"

    def __init__(self, model_name: str, *, cache: LLMCache | str | Path | bool | None = None,
                 batch_size: int = 8, progress: bool = True):
        if batch_size < 1:
            raise LLMConfigError(f"batch_size={batch_size!r} must be >= 1")
        self.model_name = model_name
        self.cache = _open_cache(cache)
        self.batch_size = batch_size
        self.progress = progress
        self.usage = Usage()

    # ---- accounting ------------------------------------------------------------------------
    @contextlib.contextmanager
    def track(self) -> Iterator[Usage]:
        """``with llm.track() as u:`` fills ``u`` with the usage of the block (one run)."""
        before = dataclasses.replace(self.usage)
        result = Usage()
        try:
            yield result
        finally:
            for f in dataclasses.fields(result):
                setattr(result, f.name, getattr(self.usage - before, f.name))

    def reset_usage(self) -> None:
        self.usage = Usage()

    def _generate_key(self) -> dict:
        """What, besides the sampling parameters, decides a backend's generations (cache key)."""
        return {}

    # ---- the cached loop ------------------------------------------------------------------
    def _cached_map(self, kind: str, prompts: list, params_key: dict, compute, desc: str,
                    batch_size: int) -> list:
        """Results for ``prompts`` from the cache, computing the missing ones batch by batch.

        ``compute(list_of_prompts) -> list of (result, prompt_tokens, completion_tokens)``.
        Each batch is committed to the cache before the next one starts.
        """
        keys = [cache_key(self.backend, self.model_name, kind, p, params_key) for p in prompts]
        cached = self.cache.get_many(keys)
        results: dict[str, Any] = {k: row["result"] for k, row in cached.items()}
        n_hits = sum(1 for k in keys if k in cached)
        self.usage.cache_hits += n_hits
        self.usage.saved_seconds += sum(cached[k]["seconds"] for k in keys if k in cached)
        todo: dict[str, Any] = {}
        for k, p in zip(keys, prompts):
            if k not in results and k not in todo:
                todo[k] = p
        if todo:
            from tqdm.auto import tqdm

            items = self._order(kind, list(todo.items()))
            bar = tqdm(total=len(items), desc=f"{desc} ({self.backend})", unit="prompt",
                       disable=not self.progress or len(items) <= batch_size, leave=False)
            try:
                for start in range(0, len(items), batch_size):
                    chunk = items[start:start + batch_size]
                    t0 = time.perf_counter()
                    out = compute([p for _, p in chunk])
                    dt = time.perf_counter() - t0
                    if len(out) != len(chunk):
                        raise LLMResponseError(
                            f"{self.backend} returned {len(out)} results for {len(chunk)} prompts")
                    rows = []
                    for (k, p), (res, pt, ct) in zip(chunk, out):
                        results[k] = res
                        rows.append({"key": k, "backend": self.backend, "model": self.model_name,
                                     "kind": kind, "prompt": p, "params": params_key, "result": res,
                                     "prompt_tokens": pt, "completion_tokens": ct,
                                     "seconds": dt / len(chunk)})
                        self.usage.prompt_tokens += pt
                        self.usage.completion_tokens += ct
                    self.cache.put_many(rows)  # committed: a kill after this loses nothing
                    self.usage.calls += 1
                    self.usage.items += len(chunk)
                    self.usage.seconds += dt
                    bar.update(len(chunk))
            finally:
                bar.close()
        return [results[k] for k in keys]

    # ---- public API -----------------------------------------------------------------------
    def generate(self, prompts: Sequence[str] | str, params: SamplingParams | None = None, *,
                 chat: bool = False, desc: str = "generate", **overrides) -> list[list[str]]:
        """``n`` completions for every prompt: a list (one per prompt) of lists of strings.

        ``chat=True`` wraps each prompt as one user message in the model's chat template
        (``/v1/chat/completions`` over HTTP); otherwise the prompt is continued as plain text.
        Keyword overrides change single fields: ``generate(p, temperature=0.8, n=4)``.

        Taught in: notebooks/20_generate_queries_promptagator.ipynb
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts)
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise LLMConfigError(f"prompt {i} is {type(p).__name__}, expected str")
        params = (params or SamplingParams()).replace(**overrides) if overrides else (params or SamplingParams())
        key = dict(params.key(), chat=chat, **self._generate_key())

        def compute(batch):
            return [(texts, pt, ct) for texts, pt, ct in self._generate_batch(batch, params, chat)]

        return self._cached_map("generate", prompts, key, compute, desc, self._gen_batch_size())

    def score(self, contexts: Sequence[str], continuations: Sequence[str], *,
              normalize: bool = False, desc: str = "score") -> list[float]:
        """``log p(continuation | context)`` for each pair, summed over the continuation's
        tokens (``normalize=True``: averaged per token, which compares texts of unequal length).

        Taught in: notebooks/21_adapt_to_known_corpus_customir.ipynb
        """
        contexts, continuations = list(contexts), list(continuations)
        if len(contexts) != len(continuations):
            raise LLMConfigError(f"score() got {len(contexts)} contexts but "
                                 f"{len(continuations)} continuations")
        for i, c in enumerate(continuations):
            if not isinstance(c, str) or not c.strip():
                raise LLMConfigError(f"continuation {i} is empty or not a string: {c!r}")
        pairs = [[c, x] for c, x in zip(contexts, continuations)]

        def compute(batch):
            return [((lp, n), 0, 0) for lp, n in self._score_batch([b[0] for b in batch],
                                                                    [b[1] for b in batch])]

        out = self._cached_map("score", pairs, self._score_key(), compute, desc,
                               self._score_batch_size())
        return [lp / max(n, 1) if normalize else lp for lp, n in out]

    def query_likelihood(self, queries: Sequence[str], documents: Sequence[str], *,
                         template: str = QL_TEMPLATE, max_doc_words: int = 96,
                         normalize: bool = True, desc: str = "query likelihood") -> list[float]:
        """Query likelihood ``log p(query | document)`` under the prompt ``template``.

        The verifier that works even at 135M parameters (a yes/no judge does not): a higher
        value means the document explains the query better. Documents are cut to
        ``max_doc_words`` words; ``normalize`` averages over query tokens.

        Taught in: notebooks/21_adapt_to_known_corpus_customir.ipynb
        """
        queries, documents = list(queries), list(documents)
        if len(queries) != len(documents):
            raise LLMConfigError(f"query_likelihood() got {len(queries)} queries but "
                                 f"{len(documents)} documents")
        contexts = [template.format(document=" ".join(d.split()[:max_doc_words])) for d in documents]
        return self.score(contexts, [" " + q.strip() for q in queries], normalize=normalize, desc=desc)

    # ---- backend hooks --------------------------------------------------------------------
    def _score_key(self) -> dict:
        """The parameters of a score that are part of its cache key."""
        return {"v": 1}

    def _order(self, kind: str, items: list) -> list:
        """The order in which the missing ``(key, prompt)`` items are computed (a backend may
        sort them into cheaper batches); results are returned in the caller's order anyway."""
        return items

    def _gen_batch_size(self) -> int:
        return self.batch_size

    def _score_batch_size(self) -> int:
        return self.batch_size

    def _generate_batch(self, prompts: list[str], params: SamplingParams, chat: bool):
        raise NotImplementedError

    def _score_batch(self, contexts: list[str], continuations: list[str]):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model_name!r}, cache={self.cache!r})"
