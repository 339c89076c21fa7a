"""LLM access: one protocol, two backends, one persistent cache.

* :class:`LocalLLM` runs a causal LM with transformers on this machine (default: SmolLM2-135M
  from the offline GGUF package): batched generation, greedy or sampled, and batched
  query-likelihood scoring ``log p(query | document)``.
* :class:`OpenAIHTTPLLM` talks to any OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp
  server, ``transformers serve``, a provider) through ``/v1/completions`` or
  ``/v1/chat/completions``; configured by environment variables, with timeouts, retries with
  backoff and clear errors for malformed replies. This is how generation scales past one machine.

Every call goes through :class:`LLMCache`, a SQLite file keyed by
``(backend, model, kind, prompt, parameters)``. Results are committed batch by batch, so a
re-run replays instantly and a run killed half-way (even with SIGKILL) resumes where it
stopped, computing each missing item exactly once. :class:`Usage` counts backend calls,
cache hits, tokens and seconds; ``with llm.track() as usage:`` measures one run.

Environment variables (HTTP backend)::

    COOKBOOK_LLM_BACKEND   local | http          (get_llm default: local)
    COOKBOOK_LLM_BASE_URL  http://127.0.0.1:8000/v1
    COOKBOOK_LLM_MODEL     the model name the server expects
    COOKBOOK_LLM_API_KEY   secret; read from the environment only, never printed or cached
    COOKBOOK_LLM_API       completions | chat    (default: completions)
    COOKBOOK_LLM_TIMEOUT   seconds per request   (default: 60)
    COOKBOOK_LLM_RETRIES   retries per request   (default: 4)
    COOKBOOK_LLM_CONCURRENCY  parallel requests  (default: 4)
    COOKBOOK_LLM_CACHE     the SQLite cache file (default: data/cache/llm_cache.sqlite)

Taught in: notebooks/20_generate_queries_promptagator.ipynb,
notebooks/21_adapt_to_known_corpus_customir.ipynb
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cookbook.config import CACHE_DIR, SEED

DEFAULT_CACHE_PATH = CACHE_DIR / "llm_cache.sqlite"


def default_cache_path() -> Path:
    """``COOKBOOK_LLM_CACHE`` when set (a fresh path measures a first run), else ``data/cache``."""
    return Path(os.environ.get("COOKBOOK_LLM_CACHE") or DEFAULT_CACHE_PATH)

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


# --------------------------------------------------------------------------------------------
# parameters and accounting
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# the cache
# --------------------------------------------------------------------------------------------


def cache_key(backend: str, model: str, kind: str, prompt: Any, params: dict) -> str:
    """A stable hash of everything that determines a result."""
    blob = json.dumps([backend, model, kind, prompt, params], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class LLMCache:
    """A persistent SQLite cache of LLM results.

    One row per (backend, model, kind, prompt, params) key. ``put_many`` commits at once, and
    the database runs in WAL mode, so a process killed at any moment keeps every committed
    batch and never leaves a half-written row. Several processes may share one file.
    ``path=":memory:"`` gives a throw-away cache.

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """

    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS results (
        key TEXT PRIMARY KEY, backend TEXT, model TEXT, kind TEXT, prompt TEXT, params TEXT,
        result TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, seconds REAL, created REAL
    )"""

    def __init__(self, path: str | Path | None = None):
        self.path = default_cache_path() if path is None else path
        if str(self.path) != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            if str(self.path) != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(self._SCHEMA)
            self._conn.commit()

    def get_many(self, keys: Sequence[str]) -> dict[str, dict]:
        """Cached rows for the keys that are present: {key: {"result", "seconds", ...}}."""
        found: dict[str, dict] = {}
        keys = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, result, prompt_tokens, completion_tokens, seconds "
                    f"FROM results WHERE key IN ({marks})", chunk).fetchall()
                for key, result, pt, ct, sec in rows:
                    found[key] = {"result": json.loads(result), "prompt_tokens": pt,
                                  "completion_tokens": ct, "seconds": sec}
        return found

    def put_many(self, rows: Sequence[dict]) -> None:
        """Insert rows (dicts with key, backend, model, kind, prompt, params, result, tokens,
        seconds) in one transaction, committed before returning."""
        now = time.time()
        values = [(r["key"], r["backend"], r["model"], r["kind"],
                   json.dumps(r["prompt"], ensure_ascii=False), json.dumps(r["params"], sort_keys=True),
                   json.dumps(r["result"], ensure_ascii=False), int(r.get("prompt_tokens", 0)),
                   int(r.get("completion_tokens", 0)), float(r.get("seconds", 0.0)), now)
                  for r in rows]
        with self._lock:
            self._conn.executemany(
                "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?)", values)
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def clear(self, backend: str | None = None, model: str | None = None) -> int:
        """Delete rows (all, or those of one backend and/or model); returns how many."""
        where, args = [], []
        if backend is not None:
            where.append("backend = ?")
            args.append(backend)
        if model is not None:
            where.append("model = ?")
            args.append(model)
        sql = "DELETE FROM results" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            n = self._conn.execute(sql, args).rowcount
            self._conn.commit()
        return n

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"LLMCache({str(self.path)!r})"


def _open_cache(cache: LLMCache | str | Path | bool | None) -> LLMCache:
    if isinstance(cache, LLMCache):
        return cache
    if cache is False:
        return LLMCache(":memory:")
    if cache is None or cache is True:
        return LLMCache(default_cache_path())
    return LLMCache(cache)


# --------------------------------------------------------------------------------------------
# the protocol and the shared machinery
# --------------------------------------------------------------------------------------------


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

            items = list(todo.items())
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
        key = dict(params.key(), chat=chat)

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

        out = self._cached_map("score", pairs, {"v": 1}, compute, desc, self._score_batch_size())
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


# --------------------------------------------------------------------------------------------
# local transformers backend
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP backend
# --------------------------------------------------------------------------------------------


_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class _Secret:
    """Holds an API key so that repr(), vars() and tracebacks never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "<secret>" if self._value else "<none>"

    __str__ = __repr__


class OpenAIHTTPLLM(BaseLLM):
    """Any OpenAI-compatible endpoint: ``/v1/completions`` (``api="completions"``, plain-text
    continuation like :class:`LocalLLM`) or ``/v1/chat/completions`` (``api="chat"``).

    Arguments left as None come from the ``COOKBOOK_LLM_*`` environment variables (see the
    module docstring). The API key is only ever read from the environment (or passed in), sent
    in the Authorization header, and never printed, cached or put into error messages.
    ``n > 1`` is sent as ``n`` separate requests with seeds ``seed, seed+1, ...`` because many
    servers ignore ``n``. Requests of one batch run ``concurrency`` at a time.

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """

    backend = "openai-http"

    def __init__(self, base_url: str | None = None, model: str | None = None, *,
                 api_key: str | None = None, api: str | None = None, timeout: float | None = None,
                 max_retries: int | None = None, backoff: float = 0.5,
                 concurrency: int | None = None, cache: LLMCache | str | Path | bool | None = None,
                 progress: bool = True):
        env = os.environ
        base_url = base_url or env.get("COOKBOOK_LLM_BASE_URL")
        model = model or env.get("COOKBOOK_LLM_MODEL")
        if not base_url:
            raise LLMConfigError("no endpoint: pass base_url= or set COOKBOOK_LLM_BASE_URL "
                                 "(for example http://127.0.0.1:8000/v1)")
        if not base_url.startswith(("http://", "https://")):
            raise LLMConfigError(f"base URL {base_url!r} must start with http:// or https://")
        if not model:
            raise LLMConfigError("no model name: pass model= or set COOKBOOK_LLM_MODEL")
        api = (api or env.get("COOKBOOK_LLM_API") or "completions").lower()
        if api not in ("completions", "chat"):
            raise LLMConfigError(f"COOKBOOK_LLM_API={api!r}; choose completions or chat")
        try:
            self.timeout = float(timeout if timeout is not None else env.get("COOKBOOK_LLM_TIMEOUT", 60))
            self.max_retries = int(max_retries if max_retries is not None
                                   else env.get("COOKBOOK_LLM_RETRIES", 4))
            concurrency = int(concurrency if concurrency is not None
                              else env.get("COOKBOOK_LLM_CONCURRENCY", 4))
        except ValueError as err:
            raise LLMConfigError(f"bad COOKBOOK_LLM_TIMEOUT/RETRIES/CONCURRENCY value: {err}") from None
        if concurrency < 1:
            raise LLMConfigError(f"concurrency={concurrency} must be >= 1")
        super().__init__(model, cache=cache, batch_size=concurrency, progress=progress)
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.api = api
        self.backoff = backoff
        self.concurrency = concurrency
        self._api_key = _Secret(api_key if api_key is not None else (
            env.get("COOKBOOK_LLM_API_KEY") or env.get("OPENAI_API_KEY") or ""))
        self.requests_sent = 0  # HTTP requests including retries
        self._rng = random.Random(SEED)

    @classmethod
    def from_env(cls, **kwargs) -> OpenAIHTTPLLM:
        """Build from the ``COOKBOOK_LLM_*`` environment variables."""
        return cls(**kwargs)

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return (f"OpenAIHTTPLLM(base_url={self.base_url!r}, model={self.model_name!r}, "
                f"api={self.api!r}, api_key=<{key}>)")

    # ---- one request with retries -------------------------------------------------------
    def _post(self, path: str, payload: dict) -> dict:
        url = self.base_url + path
        body = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = "Bearer " + self._api_key.reveal()
        last = ""
        for attempt in range(self.max_retries + 1):
            wait = self.backoff * (2 ** attempt) * (1 + 0.25 * self._rng.random())
            self.requests_sent += 1
            try:
                req = urllib.request.Request(url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as err:
                detail = err.read()[:300].decode("utf-8", "replace")
                if err.code not in _RETRY_STATUS:
                    raise LLMHTTPError(f"{url} answered HTTP {err.code}: {detail}", err.code) from None
                last = f"HTTP {err.code}: {detail}"
                retry_after = err.headers.get("Retry-After") if err.headers else None
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    wait = max(wait, float(retry_after))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                last = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            else:
                try:
                    data = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise LLMResponseError(f"{url} did not answer JSON: {raw[:200]!r}") from None
                if not isinstance(data, dict):
                    raise LLMResponseError(f"{url} answered {type(data).__name__}, expected an object")
                return data
            if attempt < self.max_retries:
                time.sleep(wait)
        raise LLMHTTPError(f"{url} failed after {self.max_retries + 1} attempts; last error: {last}")

    @staticmethod
    def _field(data: dict, url: str, *path):
        cur: Any = data
        for step in path:
            try:
                cur = cur[step]
            except (KeyError, IndexError, TypeError):
                where = "".join(f"[{s!r}]" for s in path)
                raise LLMResponseError(f"reply from {url} has no {where}: "
                                       f"{json.dumps(data)[:300]}") from None
        return cur

    def _one_completion(self, prompt: str, params: SamplingParams, chat: bool, seed: int):
        payload: dict[str, Any] = {"model": self.model_name, "max_tokens": params.max_new_tokens,
                                   "temperature": params.temperature}
        if not params.greedy:
            payload.update(top_p=params.top_p, seed=seed)
            if params.top_k:
                payload["top_k"] = params.top_k  # vLLM/llama.cpp extension; others ignore it
        if params.repetition_penalty != 1.0:
            payload["repetition_penalty"] = params.repetition_penalty
        if params.stop:
            payload["stop"] = list(params.stop)
        if chat or self.api == "chat":
            payload["messages"] = [{"role": "user", "content": prompt}]
            path, text_path = "/chat/completions", ("choices", 0, "message", "content")
        else:
            payload["prompt"] = prompt
            path, text_path = "/completions", ("choices", 0, "text")
        data = self._post(path, payload)
        text = self._field(data, self.base_url + path, *text_path)
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise LLMResponseError(f"reply from {self.base_url + path}: text is "
                                   f"{type(text).__name__}, expected str")
        usage = data.get("usage") or {}
        return cut_at_stop(text, params.stop), int(usage.get("prompt_tokens") or 0), \
            int(usage.get("completion_tokens") or 0)

    def _generate_batch(self, prompts: list[str], params: SamplingParams, chat: bool):
        jobs = [(i, j) for i in range(len(prompts)) for j in range(params.n)]
        seeds = {(i, j): _stable_int(params.seed, prompts[i]) + j for i, j in jobs}
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            outs = list(pool.map(lambda ij: self._one_completion(prompts[ij[0]], params, chat,
                                                                 seeds[ij]), jobs))
        results = []
        for i in range(len(prompts)):
            mine = outs[i * params.n:(i + 1) * params.n]
            results.append(([o[0] for o in mine], mine[0][1] if mine else 0,
                             sum(o[2] for o in mine)))
        return results

    def _score_batch(self, contexts: list[str], continuations: list[str]):
        def one(pair):
            ctx, cont = pair
            url = self.base_url + "/completions"
            data = self._post("/completions", {"model": self.model_name, "prompt": ctx + cont,
                                               "max_tokens": 1, "echo": True, "logprobs": 1,
                                               "temperature": 0})
            lp = self._field(data, url, "choices", 0).get("logprobs")
            if not lp or "token_logprobs" not in lp or "text_offset" not in lp:
                raise LLMResponseError(
                    f"{url} returned no prompt logprobs (echo=true, logprobs=1); query-likelihood "
                    f"scoring needs them (vLLM provides them, transformers serve does not): use "
                    f"LocalLLM for scoring")
            total, n = 0.0, 0
            for off, value in zip(lp["text_offset"], lp["token_logprobs"]):
                if len(ctx) <= off < len(ctx) + len(cont) and value is not None:
                    total += float(value)
                    n += 1
            return total, n

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(one, zip(contexts, continuations)))


# --------------------------------------------------------------------------------------------
# factory and a local server for tests, the bench and the notebooks
# --------------------------------------------------------------------------------------------


def get_llm(backend: str | None = None, **kwargs) -> BaseLLM:
    """The backend named by ``backend`` or ``COOKBOOK_LLM_BACKEND``: ``local`` (default) or
    ``http`` (an OpenAI-compatible endpoint from the ``COOKBOOK_LLM_*`` variables).

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    name = (backend or os.environ.get("COOKBOOK_LLM_BACKEND") or "local").lower()
    if name in ("local", "transformers"):
        return LocalLLM(**kwargs)
    if name in ("http", "openai", "openai-http"):
        return OpenAIHTTPLLM(**kwargs)
    raise LLMConfigError(f"unknown LLM backend {name!r} (argument or COOKBOOK_LLM_BACKEND); choose local or http")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalServer:
    """A ``transformers serve`` process on 127.0.0.1 (use as a context manager)."""

    process: subprocess.Popen
    base_url: str
    model: str
    log_path: Path
    startup_seconds: float = 0.0
    _log: Any = field(default=None, repr=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_transformers_serve(model_dir: str | Path | None = None, *, port: int | None = None,
                             startup_timeout: float = 180.0, log_path: str | Path | None = None,
                             extra_args: Sequence[str] = ()) -> LocalServer:
    """Start ``transformers serve`` (an OpenAI-compatible server, needs
    ``transformers[serving]``) on 127.0.0.1 with a local model folder (default: the cached
    SmolLM2 folder) and wait until ``/health`` answers. Offline: HF_HUB_OFFLINE=1.

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    if model_dir is None:
        from cookbook.models import cached_lm_folder

        model_dir = cached_lm_folder("generator")
    model_dir = str(model_dir)
    if not Path(model_dir).exists():
        raise LLMConfigError(f"model folder {model_dir} does not exist")
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise LLMConfigError("transformers serve needs the serving extras: "
                             "pip install 'transformers[serving]'") from None
    port = port or free_port()
    log_path = Path(log_path) if log_path else CACHE_DIR / "logs" / f"transformers-serve-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [sys.executable, "-c", "from transformers.cli.transformers import main; main()",
           "serve", model_dir, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
           *extra_args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = LocalServer(proc, f"http://127.0.0.1:{port}/v1", model_dir, log_path, _log=log)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            server.stop()
            tail = log_path.read_text(errors="replace")[-1500:]
            raise LLMError(f"transformers serve exited with code {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    server.startup_seconds = time.perf_counter() - t0
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    server.stop()
    raise LLMError(f"transformers serve did not answer /health within {startup_timeout:.0f} s "
                   f"(log: {log_path})")
