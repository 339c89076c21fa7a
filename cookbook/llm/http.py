"""The OpenAI-compatible HTTP backend (vLLM, Ollama, llama.cpp server, transformers serve, a provider).

Requests run N in flight (``concurrency``, ``COOKBOOK_LLM_CONCURRENCY``); results are cached like
the local backend's, so the same run can move between machines.

Taught in: notebooks/21_adapt_to_known_corpus_customir.ipynb
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cookbook.config import SEED
from cookbook.llm.base import (
    BaseLLM,
    LLMConfigError,
    LLMHTTPError,
    LLMResponseError,
    SamplingParams,
    _stable_int,
    cut_at_stop,
)
from cookbook.llm.cache import LLMCache

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
