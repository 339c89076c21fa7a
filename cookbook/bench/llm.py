"""LLM-layer benchmarks: batching, the cache, and the HTTP backend with 1 vs N requests in flight.

Taught in: notebooks/20_generate_queries_promptagator.ipynb (the numbers), README (the table)
"""

from __future__ import annotations

import time
from pathlib import Path

from cookbook.config import profile
from cookbook.llm import (
    BaseLLM,
    LLMError,
    LocalLLM,
    OpenAIHTTPLLM,
    SamplingParams,
    start_transformers_serve,
)
from cookbook.models import cached_lm_folder, load_causal_lm, resolve

_BENCH_DOCS = [
    "Return the cumulative sum of the elements along a given axis.",
    "Compute the weighted average of an array along the specified axis.",
    "Split a string into a list of words, using a separator if one is given.",
    "Read a comma-separated values file into a two-dimensional table.",
    "Solve a linear system of equations given a square coefficient matrix.",
    "Return the indices that would sort an array along an axis.",
    "Compute the shortest path lengths between all pairs of nodes in a graph.",
    "Apply a function along an axis of the data frame and collect the results.",
    "Fit a smoothing spline to noisy one-dimensional samples.",
    "Draw random samples from a normal (Gaussian) distribution.",
    "Return the discrete Fourier transform of a real-valued sequence.",
    "Group rows by the values of one or more columns and aggregate each group.",
]


def bench_prompts(n: int) -> list[str]:
    """``n`` short query-writing prompts (deterministic) for throughput measurements."""
    return [f"Documentation: {_BENCH_DOCS[i % len(_BENCH_DOCS)]} (entry {i})\n"
            f"Write a short search query that this documentation answers.\nQuery:"
            for i in range(n)]


def measure(profile_name: str) -> list[dict]:
    """LLM-layer measurements for ``python -m cookbook bench``: rows with name, value, unit, note.

    Same prompts, one run: batched vs one prompt at a time (local transformers), a cached
    re-run, and the HTTP backend (``transformers serve`` on 127.0.0.1) with one request at a
    time and with N in flight, vs local; greedy outputs compared for identity.
    """
    import tempfile


    prof = profile(profile_name)
    n = prof.pick(smoke=8, laptop=24, full=64)
    batch = prof.pick(smoke=8, laptop=8, full=16)
    in_flight = prof.pick(smoke=4, laptop=4, full=16)
    prompts = bench_prompts(n)
    params = SamplingParams(max_new_tokens=16, temperature=0.0, stop=())  # servers cut stops differently
    rows: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="cookbook-llm-bench-"))

    t0 = time.perf_counter()
    tok, model = load_causal_lm("generator")
    load_s = time.perf_counter() - t0
    name = Path(resolve("generator")).name
    rows.append({"name": "llm.load_local", "value": round(load_s, 2), "unit": "s",
                 "note": f"{name} from the cached safetensors folder"})

    def run(llm: BaseLLM) -> tuple[float, list]:
        t = time.perf_counter()
        out = llm.generate(prompts, params, desc="bench")
        return time.perf_counter() - t, out

    seq_llm = LocalLLM(tok, model, model_name=name, cache=tmp / "seq.sqlite", batch_size=1,
                       progress=False)
    seq_s, seq_out = run(seq_llm)
    bat_llm = LocalLLM(tok, model, model_name=name, cache=tmp / "batched.sqlite",
                       batch_size=batch, progress=False)
    bat_s, bat_out = run(bat_llm)
    agree = sum(a == b for a, b in zip(seq_out, bat_out)) / n
    rows += [
        {"name": "llm.generate.one_at_a_time", "value": round(n / seq_s, 2), "unit": "prompts/s",
         "note": f"{n} greedy prompts, 16 new tokens, batch 1"},
        {"name": "llm.generate.batched", "value": round(n / bat_s, 2), "unit": "prompts/s",
         "note": f"same {n} prompts, batch {batch} (left padding); "
                 f"{agree:.0%} identical to batch-1 outputs"},
        {"name": "llm.generate.batch_speedup", "value": round(seq_s / bat_s, 2), "unit": "x",
         "note": "one-at-a-time seconds / batched seconds"},
    ]
    re_s, re_out = run(bat_llm)
    assert re_out == bat_out
    rows.append({"name": "llm.cache.rerun_speedup", "value": round(bat_s / max(re_s, 1e-6), 1),
                 "unit": "x", "note": f"re-run of the batched call from the SQLite cache "
                                      f"({re_s * 1000:.1f} ms vs {bat_s:.1f} s)"})
    sc_llm = LocalLLM(tok, model, model_name=name, cache=tmp / "score.sqlite", batch_size=batch,
                      progress=False)
    t = time.perf_counter()
    sc_llm.query_likelihood(["cumulative sum"] * n, [d.split("\n")[0] for d in prompts])
    sc_s = time.perf_counter() - t
    rows.append({"name": "llm.query_likelihood", "value": round(n / sc_s, 2), "unit": "pairs/s",
                 "note": f"log p(query | document), batch {batch}"})
    try:

        with start_transformers_serve(cached_lm_folder("generator"), startup_timeout=120) as srv:
            http = OpenAIHTTPLLM(srv.base_url, srv.model, cache=tmp / "http.sqlite",
                                 concurrency=1, progress=False, api="completions")
            http_s, http_out = run(http)
            many = OpenAIHTTPLLM(srv.base_url, srv.model, cache=tmp / "http-many.sqlite",
                                 concurrency=in_flight, progress=False, api="completions")
            many_s, many_out = run(many)
            agree = sum(a == b for a, b in zip(http_out, seq_out)) / n
            same = sum(a == b for a, b in zip(many_out, http_out)) / n
            rows += [
                {"name": "llm.http.startup", "value": round(srv.startup_seconds, 1), "unit": "s",
                 "note": "transformers serve on 127.0.0.1 until /health answers"},
                {"name": "llm.http.generate", "value": round(n / http_s, 2), "unit": "prompts/s",
                 "note": f"same {n} prompts over /v1/completions, one request at a time; "
                         f"{agree:.0%} identical to local batch-1 greedy outputs"},
                {"name": f"llm.http.generate_{in_flight}_in_flight", "value": round(n / many_s, 2),
                 "unit": "prompts/s", "note": f"same {n} prompts, {in_flight} requests in flight "
                                              f"(threads); {same:.0%} identical to one at a time"},
                {"name": "llm.http.in_flight_speedup", "value": round(http_s / many_s, 2), "unit": "x",
                 "note": f"one-at-a-time seconds / {in_flight}-in-flight seconds, same server, same run"},
                {"name": "llm.http_vs_local_batched", "value": round(bat_s / http_s, 2),
                 "unit": "x", "note": "HTTP prompts/s divided by local batched prompts/s"},
            ]
    except (LLMError, OSError) as err:
        rows.append({"name": "llm.http.generate", "value": float("nan"), "unit": "prompts/s",
                     "note": f"transformers serve could not be started: {str(err)[:160]}"})
    return rows
