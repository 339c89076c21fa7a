"""LLM access: one protocol, two backends, one persistent cache.

* :class:`LocalLLM` runs a causal LM with transformers on this machine (default: SmolLM2-135M
  from the offline GGUF package): batched generation, greedy or sampled, and batched
  query-likelihood scoring ``log p(query | document)`` (length-sorted batches, one KV cache per
  document shared by its queries, the number format chosen for the CPU).
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

Environment variable (local backend)::

    COOKBOOK_LLM_PRECISION auto | fp32 | bf16 | int8   number format of scoring (default: auto,
                           bf16 on a CPU with native bf16, else fp32; see cookbook.llm.precision)

Taught in: notebooks/20_generate_queries_promptagator.ipynb,
notebooks/21_adapt_to_known_corpus_customir.ipynb
"""

from cookbook.llm.base import (
    LLM,
    QL_TEMPLATE,
    BaseLLM,
    LLMConfigError,
    LLMError,
    LLMHTTPError,
    LLMResponseError,
    SamplingParams,
    Usage,
    cut_at_stop,
)
from cookbook.llm.cache import DEFAULT_CACHE_PATH, LLMCache, cache_key, default_cache_path
from cookbook.llm.http import OpenAIHTTPLLM
from cookbook.llm.local import LocalLLM
from cookbook.llm.server import LocalServer, free_port, start_transformers_serve

__all__ = ["LLM", "QL_TEMPLATE", "BaseLLM", "LLMConfigError", "LLMError", "LLMHTTPError",
           "LLMResponseError", "SamplingParams", "Usage", "cut_at_stop", "DEFAULT_CACHE_PATH",
           "LLMCache", "cache_key", "default_cache_path", "OpenAIHTTPLLM", "LocalLLM",
           "LocalServer", "free_port", "start_transformers_serve", "get_llm"]


import os  # noqa: E402


def get_llm(backend: str | None = None, *, generate_precision: str = "fp32", **kwargs) -> BaseLLM:
    """The backend named by ``backend`` or ``COOKBOOK_LLM_BACKEND``: ``local`` (default) or
    ``http`` (an OpenAI-compatible endpoint from the ``COOKBOOK_LLM_*`` variables).
    ``generate_precision`` is the local backend's (:class:`LocalLLM`); a server picks its own.

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    name = (backend or os.environ.get("COOKBOOK_LLM_BACKEND") or "local").lower()
    if name in ("local", "transformers"):
        return LocalLLM(generate_precision=generate_precision, **kwargs)
    if name in ("http", "openai", "openai-http"):
        return OpenAIHTTPLLM(**kwargs)
    raise LLMConfigError(f"unknown LLM backend {name!r} (argument or COOKBOOK_LLM_BACKEND); choose local or http")
