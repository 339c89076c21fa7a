"""LLM-layer benchmarks: query-likelihood scoring against the machine's matmul rates (number
formats, length bucketing, shared document prefixes), batching, the cache, and the HTTP backend
with 1 vs N requests in flight.

Taught in: notebooks/20_generate_queries_promptagator.ipynb (the numbers), README (the table)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from cookbook import corpus
from cookbook.config import profile
from cookbook.llm import (
    QL_TEMPLATE,
    BaseLLM,
    LLMCache,
    LLMError,
    LocalLLM,
    OpenAIHTTPLLM,
    SamplingParams,
    start_transformers_serve,
)
from cookbook.llm import precision as P
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
    rows: list[dict] = measure_scoring(profile_name)
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
    fast_llm = LocalLLM(tok, model, model_name=name, cache=tmp / "fast.sqlite", batch_size=batch,
                        progress=False, generate_precision="auto")
    if fast_llm.precision == "bf16":  # the lce recipe's default where the CPU does bf16 natively
        fast_s, fast_out = run(fast_llm)
        same = sum(a == b for a, b in zip(fast_out, bat_out)) / n
        rows += [{"name": "llm.generate.batched_bf16", "value": round(n / fast_s, 2), "unit": "prompts/s",
                  "note": f"same {n} prompts and batch in bf16 (generate_precision='auto'); "
                          f"{same:.0%} identical to the fp32 outputs"},
                 {"name": "llm.generate.bf16_speedup", "value": round(bat_s / fast_s, 2), "unit": "x",
                  "note": "batched fp32 seconds / batched bf16 seconds"}]
    else:
        rows.append({"name": "llm.generate.batched_bf16", "value": float("nan"), "unit": "prompts/s",
                     "note": f"not measured: scoring resolved to {fast_llm.precision_note}"})
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


# ---------------------------------------------------------------------------------------------
# query-likelihood scoring against the compute limit
# ---------------------------------------------------------------------------------------------


def matmul_rates(m: int = 1024, k: int = 576, n: int = 1536, repeat: int = 3) -> dict[str, float]:
    """GFLOP/s (GOP/s for int8) of one ``m x k @ k x n`` product in fp32, bf16 (``torch.matmul``)
    and int8 (``torch._int_mm``), best of ``repeat``. The default size is SmolLM2-135M's MLP
    projection over a batch of ~8 prompts of ~130 tokens."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    ops = {"fp32": (torch.matmul, a, b), "bf16": (torch.matmul, a.bfloat16(), b.bfloat16())}
    if hasattr(torch, "_int_mm"):
        ops["int8"] = (torch._int_mm, torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=gen),
                       torch.randint(-128, 128, (k, n), dtype=torch.int8, generator=gen))
    rates = {}
    for name, (fn, x, y) in ops.items():
        try:
            fn(x, y)
        except RuntimeError:  # int8 matmul not built for this CPU
            continue
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            fn(x, y)
            best = min(best, time.perf_counter() - t)
        rates[name] = 2 * m * k * n / best / 1e9
    return rates


def non_embedding_parameters(model) -> int:
    """Parameters that every token multiplies through (all but the token embedding matrix)."""
    emb = model.get_input_embeddings().weight
    return sum(p.numel() for p in model.parameters() if p is not emb)


@dataclass
class ScoringPath:
    """One way to score the same pairs: the ``LocalLLM`` arguments and the format's matmul."""

    name: str
    kwargs: dict
    note: str
    fmt: str = "fp32"


SCORING_PATHS = (
    ScoringPath("fp32_one_at_a_time", dict(precision="fp32", score_batch_size=1,
                                           share_prefix=False, sort_by_length=False),
                "fp32, one pair per forward"),
    ScoringPath("fp32_batched", dict(precision="fp32", share_prefix=False, sort_by_length=False),
                "fp32, batches in the caller's order (the path before issue 27)"),
    ScoringPath("fp32_bucketed", dict(precision="fp32", share_prefix=False),
                "fp32, batches sorted by prompt length"),
    ScoringPath("fp32_shared", dict(precision="fp32"),
                "fp32, sorted, each document's KV cache computed once per batch"),
    ScoringPath("bf16_bucketed", dict(precision="bf16", share_prefix=False),
                "bf16 copy of the model, sorted", "bf16"),
    ScoringPath("bf16_shared", dict(precision="bf16"), "bf16, sorted, document KV cache shared",
                "bf16"),
    ScoringPath("int8_shared", dict(precision="int8"),
                "dynamic int8 Linear layers (torch), document KV cache shared", "int8"),
    ScoringPath("default", dict(), "LocalLLM() as it comes: precision auto for this CPU"),
)


def scoring_workload(data, n_queries: int, n_docs: int, max_doc_words: int = 96):
    """(queries, documents, query ids) for a labelling grid: ``n_queries`` test queries, each
    scored against the same ``n_docs`` documents (the top-graded document of each of the first
    ``n_docs`` queries), so every document is shared by ``n_queries`` prompts. Documents are the
    longest-judged ones, cut to ``max_doc_words`` words as ``query_likelihood`` cuts them."""
    queries = data.split_queries("test")
    qrels = data.qrels["test"]
    chosen, docs = [], []
    for qid in sorted(queries):
        judged = sorted(qrels.get(qid, {}).items(), key=lambda kv: -kv[1])
        target = next((d for d, _ in judged if len(data.doc_text(d).split()) >= max_doc_words), None)
        if target is None or target in docs:
            continue
        chosen.append(qid)
        docs.append(target)
        if len(chosen) == max(n_queries, n_docs):
            break
    chosen, docs = chosen[:n_queries], docs[:n_docs]
    q_text, d_text, q_ids = [], [], []
    for qid in chosen:  # query-major: each query's candidates together, as a labelling loop has them
        for d in docs:
            q_text.append(queries[qid])
            d_text.append(data.doc_text(d))
            q_ids.append(qid)
    return q_text, d_text, q_ids


def _count_tokens(model, counter: list):
    """A forward pre-hook that adds the non-padding tokens each forward runs to ``counter[0]``."""

    def hook(module, args, kwargs):
        ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        counter[0] += int(mask[:, -ids.shape[1]:].sum()) if mask is not None else ids.numel()

    return model.register_forward_pre_hook(hook, with_kwargs=True)


def measure_scoring(profile_name: str, *, repeat: int | None = None,
                    paths: tuple[ScoringPath, ...] = SCORING_PATHS) -> list[dict]:
    """Rows for the scoring half of ``python -m cookbook bench --part llm``.

    Every path scores the same query-likelihood pairs (the project's prompt, API-docs documents
    of ~120 tokens, a grid of test queries x documents) in one process, interleaved ``repeat``
    times (best time kept). Each row gives items/s, the GFLOP/s achieved (2 x non-embedding
    parameters x tokens run) as a share of the same format's matmul rate measured here, the
    largest per-token log-likelihood difference from fp32 and the mean per-query Kendall tau.
    A format this CPU only emulates is timed once on a subset (it runs far slower).
    """

    prof = profile(profile_name)
    n_q, n_d = prof.pick(smoke=(4, 6), laptop=(8, 8), full=(8, 16))
    repeat = repeat or prof.pick(smoke=1, laptop=2, full=3)
    data = corpus.load_apidocs(profile=profile_name)
    queries, docs, qids = scoring_workload(data, n_q, n_d)
    tok, model = load_causal_lm("generator")
    name = Path(resolve("generator")).name
    params = non_embedding_parameters(model)
    flags = P.cpu_flags()
    native = {"fp32": True, "bf16": bool(P.BF16_FLAGS & flags), "int8": True}
    rates = matmul_rates()
    prompt_tokens = [len(tok(QL_TEMPLATE.format(document=" ".join(d.split()[:96])))["input_ids"])
                     + len(tok(" " + q, add_special_tokens=False)["input_ids"])
                     for q, d in zip(queries, docs)]
    # an emulated format is timed on 2 queries x 3 documents (queries are rows of n_d items)
    subset = [i for i in range(len(queries)) if i // n_d in (0, n_q - 1) and i % n_d < 3]

    def timed(path: ScoringPath, idx: list[int]) -> tuple[float, list[float], int, LocalLLM]:
        llm = LocalLLM(tok, model, model_name=name, cache=False, progress=False, **path.kwargs)
        llm.query_likelihood(queries[:1], docs[:1])  # resolves the format, builds its copy
        counter = [0]
        handle = _count_tokens(llm._scoring_model(), counter)
        try:
            llm.cache = LLMCache(":memory:")
            t = time.perf_counter()
            out = llm.query_likelihood([queries[i] for i in idx], [docs[i] for i in idx])
            return time.perf_counter() - t, out, counter[0], llm
        finally:
            handle.remove()

    everything = list(range(len(queries)))
    best: dict[str, tuple] = {}
    for _ in range(repeat):  # interleaved, so a busy moment of a shared machine hits every path
        for path in paths:
            slow = not native[path.fmt]
            if slow and path.name in best:
                continue
            idx = subset if slow else everything
            secs, out, ran, llm = timed(path, idx)
            if path.name not in best or secs < best[path.name][0]:
                best[path.name] = (secs, out, ran, idx, llm.precision_note)
    ref = best["fp32_one_at_a_time"][1]
    rows = [{"name": f"matmul.{fmt}", "value": round(rate, 1), "unit": "GFLOP/s" if fmt != "int8" else "GOP/s",
             "note": f"torch {'_int_mm' if fmt == 'int8' else 'matmul'} 1024x576 @ 576x1536, best of 3"
                     + ("" if native[fmt] else "; emulated on this CPU")}
            for fmt, rate in rates.items()]
    cpu = ", ".join(sorted((P.BF16_FLAGS | P.INT8_FLAGS | {"avx2", "avx512f"}) & flags)) or "none"
    rows.append({"name": "llm.ql.workload", "value": len(queries), "unit": "items",
                 "note": f"{n_q} test queries x {n_d} API-docs documents (each document shared by "
                         f"{n_q} prompts), ~{sum(prompt_tokens) / len(prompt_tokens):.0f} tokens per "
                         f"prompt, {params / 1e6:.1f}M non-embedding parameters; CPU flags: {cpu}"})
    for path in paths:
        secs, out, ran, idx, note = best[path.name]
        gflops = 2 * params * ran / secs / 1e9
        effective = 2 * params * sum(prompt_tokens[i] for i in idx) / secs / 1e9
        fmt = path.fmt if path.name != "default" else note.split()[0]
        rate = rates.get(fmt)
        share = f" ({gflops / rate:.0%} of the {fmt} matmul rate)" if rate else ""
        ref_sub = [ref[i] for i in idx]
        rows.append({
            "name": f"llm.ql.{path.name}", "value": round(len(idx) / secs, 2), "unit": "items/s",
            "note": f"{path.note}; {gflops:.0f} GFLOP/s run{share}, {effective:.0f} GFLOP/s of "
                    f"unshared prompts; max |dlogp| {P.max_abs_diff(ref_sub, out):.3g}/token, "
                    f"Kendall tau {P.mean_kendall_tau(ref_sub, out, [qids[i] for i in idx]):.3f}"
                    + (f"; {len(idx)} items, once (emulated format)" if len(idx) < len(queries) else "")
                    + (f"; chose {note}" if path.name == "default" else ""),
        })
    rate = {p.name: len(best[p.name][3]) / best[p.name][0] for p in paths}
    if "default" in rate:
        for base in ("fp32_one_at_a_time", "fp32_batched"):
            rows.append({"name": f"llm.ql.default_vs_{base}", "value": round(rate["default"] / rate[base], 2),
                         "unit": "x", "note": "items/s of the default path / items/s of " + base})
    return rows
