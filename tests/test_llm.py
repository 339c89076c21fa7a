"""cookbook.llm: cache replay, kill-and-resume, HTTP backend (fake server and transformers serve)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cookbook import llm as L
from cookbook.llm import precision as P

PROMPTS = [f"Document {i}: something about arrays number {i}.\nQuery:" for i in range(20)]


def _tiny_lm_folder() -> Path:
    """A random two-layer Llama with SmolLM2's tokenizer, saved once (fast mechanics tests)."""
    from cookbook.config import CACHE_DIR
    from cookbook.models import cached_lm_folder

    folder = CACHE_DIR / "models" / "tiny-llama-test"
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(cached_lm_folder("generator")))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=1024, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    LlamaForCausalLM(config).save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    try:
        tmp.rename(folder)
    except OSError:  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _load(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    tok.padding_side = "left"
    return tok, AutoModelForCausalLM.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def tiny_lm():
    return _load(_tiny_lm_folder())


# ---------------------------------------------------------------------------------------------
# parameters and the cache
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0), dict(n=0),
                                 dict(max_new_tokens=0), dict(n=2, temperature=0.0)])
def test_bad_sampling_params_name_the_field(bad):
    with pytest.raises(ValueError, match="SamplingParams"):
        L.SamplingParams(**bad)


def test_greedy_cache_key_ignores_sampling_knobs():
    a = L.SamplingParams(temperature=0, seed=1, top_p=0.5).key()
    b = L.SamplingParams(temperature=0, seed=2, top_p=0.9).key()
    assert a == b
    assert L.SamplingParams(temperature=0.7, seed=1).key() != L.SamplingParams(temperature=0.7, seed=2).key()


def test_cut_at_stop_skips_leading_whitespace():
    assert L.cut_at_stop("\n  numpy mean\nnext", ["\n"]) == "numpy mean"
    assert L.cut_at_stop("abc", []) == "abc"


def test_generate_replays_from_a_persistent_cache(tiny_lm, tmp_path):
    tok, model = tiny_lm
    db = tmp_path / "llm.sqlite"
    llm = L.LocalLLM(tok, model, model_name="tiny", cache=db, batch_size=4, progress=False)
    params = L.SamplingParams(max_new_tokens=6, temperature=0.9, top_p=0.95, top_k=20, n=2,
                              repetition_penalty=1.1, seed=3)
    with llm.track() as first:
        out = llm.generate(PROMPTS[:6], params)
    assert len(out) == 6 and all(len(x) == 2 and all(isinstance(s, str) for s in x) for x in out)
    assert first.calls == 2 and first.items == 6 and first.cache_hits == 0
    assert first.prompt_tokens > 0 and first.seconds > 0

    again = L.LocalLLM(tok, model, model_name="tiny", cache=db, batch_size=4, progress=False)
    t0 = time.perf_counter()
    with again.track() as second:
        replay = again.generate(PROMPTS[:6], params)
    assert replay == out
    assert second.calls == 0 and second.items == 0 and second.cache_hits == 6
    assert second.saved_seconds > 0 and time.perf_counter() - t0 < 1.0

    with again.track() as third:  # a different seed is a different key
        again.generate(PROMPTS[:6], params.replace(seed=4))
    assert third.items == 6


def test_duplicate_prompts_are_computed_once(tiny_lm):
    tok, model = tiny_lm
    llm = L.LocalLLM(tok, model, model_name="tiny", cache=False, batch_size=8, progress=False)
    with llm.track() as u:
        out = llm.generate([PROMPTS[0]] * 3 + [PROMPTS[1]], max_new_tokens=4)
    assert u.items == 2 and out[0] == out[1] == out[2]


def test_scores_do_not_depend_on_batching(tiny_lm):
    tok, model = tiny_lm
    docs = [f"Return the sum of {w} along an axis." for w in ("values", "array elements", "x")]
    queries = ["sum of array", "add up the numbers in an array please", "total"]
    batched = L.LocalLLM(tok, model, model_name="tiny", cache=False, batch_size=3, progress=False)
    single = L.LocalLLM(tok, model, model_name="tiny", cache=False, batch_size=1, progress=False)
    a = batched.query_likelihood(queries, docs, normalize=False)
    b = single.query_likelihood(queries, docs, normalize=False)
    assert a == pytest.approx(b, abs=1e-3)
    assert all(x < 0 for x in a)
    with pytest.raises(ValueError, match="queries"):
        batched.query_likelihood(queries, docs[:2])


# ---------------------------------------------------------------------------------------------
# kill -9 half-way, then resume
# ---------------------------------------------------------------------------------------------

CHILD = r"""
import json, os, sys, time
from cookbook import llm as L
from transformers import AutoModelForCausalLM, AutoTokenizer

folder, db, log_path, n_prompts, slow_batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
log = open(log_path, "a", buffering=1)

def write(kind, items):
    log.write(json.dumps([kind, items]) + "\n"); log.flush(); os.fsync(log.fileno())

class LoggingCache(L.LLMCache):
    def put_many(self, rows):
        super().put_many(rows)                      # committed ...
        write("committed", [r["prompt"] for r in rows])   # ... then logged

class CountingLLM(L.LocalLLM):
    calls = 0
    def _generate_batch(self, prompts, params, chat):
        write("start", prompts)
        CountingLLM.calls += 1
        if CountingLLM.calls == slow_batch:
            time.sleep(30)                          # the parent kills us in here
        out = super()._generate_batch(prompts, params, chat)
        write("computed", prompts)
        return out

tok = AutoTokenizer.from_pretrained(folder); tok.padding_side = "left"
model = AutoModelForCausalLM.from_pretrained(folder)
llm = CountingLLM(tok, model, model_name="tiny", cache=LoggingCache(db), batch_size=2, progress=False)
prompts = [f"Document {i}: arrays number {i}.\nQuery:" for i in range(n_prompts)]
out = llm.generate(prompts, max_new_tokens=4, temperature=0.8, seed=5)
write("done", len(out))
"""


def _read_log(path):
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by the kill
            pass
    return lines


def test_sigkill_half_way_then_resume_loses_and_repeats_nothing(tmp_path):
    folder = _tiny_lm_folder()
    db, log = tmp_path / "cache.sqlite", tmp_path / "calls.log"
    n_prompts, batch, slow_batch = 12, 2, 4  # 6 batches; the 4th is in flight when killed
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    args = [sys.executable, str(script), str(folder), str(db), str(log), str(n_prompts)]

    child = subprocess.Popen(args + [str(slow_batch)], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        starts = [x for x in _read_log(log) if x[0] == "start"]
        if len(starts) >= slow_batch or child.poll() is not None:
            break
        time.sleep(0.05)
    assert child.poll() is None, child.stderr.read().decode()[-2000:]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stderr.close()
    first = _read_log(log)
    committed_before = [p for kind, items in first if kind == "committed" for p in items]
    assert len(committed_before) == (slow_batch - 1) * batch  # killed half-way, not at the end
    assert not any(kind == "done" for kind, _ in first)

    resumed = subprocess.run(args + ["0"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    everything = _read_log(log)
    second = everything[len(first):]
    committed = [p for kind, items in everything if kind == "committed" for p in items]
    computed = [p for kind, items in everything if kind == "computed" for p in items]
    all_prompts = {f"Document {i}: arrays number {i}.\nQuery:" for i in range(n_prompts)}
    assert set(committed) == all_prompts                     # nothing lost
    assert len(committed) == n_prompts                       # nothing committed twice
    assert sorted(computed) == sorted(committed)             # no finished call was repeated
    resumed_starts = [p for kind, items in second if kind == "start" for p in items]
    assert set(resumed_starts).isdisjoint(committed_before)  # the resume only did missing work
    assert len(resumed_starts) == n_prompts - len(committed_before)
    assert ["done", n_prompts] in second

    # and a third run replays everything without one backend call
    third = subprocess.run(args + ["0"], env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    last = _read_log(log)[len(everything):]
    assert [k for k, _ in last] == ["done"]


# ---------------------------------------------------------------------------------------------
# HTTP backend: a scripted fake server for the error paths ...
# ---------------------------------------------------------------------------------------------


class _Script:
    def __init__(self, replies):
        self.replies = list(replies)  # (status, body) in order; the last one repeats
        self.seen: list[dict] = []


def _completion(text):
    return {"choices": [{"index": 0, "text": text}], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}


@pytest.fixture
def fake(json_server):
    def start(*replies):
        script = _Script(replies)

        def reply(request, body):
            script.seen.append({"path": request.path, "auth": request.headers.get("Authorization"),
                                "json": body})
            return script.replies.pop(0) if len(script.replies) > 1 else script.replies[0]

        return script, json_server(reply)

    return start


def test_http_retries_with_backoff_then_succeeds(fake, monkeypatch):
    monkeypatch.setenv("COOKBOOK_LLM_API_KEY", "sk-very-secret-123")
    script, url = fake((503, {"error": "busy"}), (429, {"error": "slow down"}), (200, _completion(" mean of x\nmore")))
    llm = L.OpenAIHTTPLLM(url, "m", backoff=0.01, cache=False, progress=False)
    assert llm.generate(["q:"]) == [["mean of x"]]
    assert llm.requests_sent == 3 and llm.usage.calls == 1 and llm.usage.completion_tokens == 2
    assert script.seen[0]["auth"] == "Bearer sk-very-secret-123"
    assert script.seen[0]["json"]["prompt"] == "q:" and script.seen[0]["path"] == "/v1/completions"
    assert "sk-very-secret" not in repr(llm) and "sk-very-secret" not in str(vars(llm))


def test_http_errors_are_clear_and_never_show_the_key(fake, monkeypatch):
    monkeypatch.setenv("COOKBOOK_LLM_API_KEY", "sk-very-secret-123")
    _, url = fake((400, {"detail": "prompt must be a string."}))
    llm = L.OpenAIHTTPLLM(url, "m", backoff=0.01, cache=False, progress=False)
    with pytest.raises(L.LLMHTTPError, match="HTTP 400.*prompt must be a string") as err:
        llm.generate(["x"])
    assert err.value.status == 400 and "sk-very" not in str(err.value)
    assert llm.requests_sent == 1  # a client error is not retried

    _, url = fake((200, b"<html>not json</html>"))
    with pytest.raises(L.LLMResponseError, match="did not answer JSON"):
        L.OpenAIHTTPLLM(url, "m", cache=False, progress=False).generate(["x"])

    _, url = fake((200, {"id": "x", "object": "text_completion"}))
    with pytest.raises(L.LLMResponseError, match="choices"):
        L.OpenAIHTTPLLM(url, "m", cache=False, progress=False).generate(["x"])

    _, url = fake((200, {"choices": [{"message": {"content": 7}}]}))
    with pytest.raises(L.LLMResponseError, match="expected str"):
        L.OpenAIHTTPLLM(url, "m", api="chat", cache=False, progress=False).generate(["x"])

    _, url = fake((503, {"error": "down"}))
    with pytest.raises(L.LLMHTTPError, match="failed after 3 attempts"):
        L.OpenAIHTTPLLM(url, "m", max_retries=2, backoff=0.01, cache=False, progress=False).generate(["x"])

    _, url = fake((200, _completion("x")))
    with pytest.raises(L.LLMResponseError, match="prompt logprobs"):
        L.OpenAIHTTPLLM(url, "m", cache=False, progress=False).score(["ctx"], [" q"])


def test_http_config_from_env(monkeypatch):
    for var in ("COOKBOOK_LLM_BASE_URL", "COOKBOOK_LLM_MODEL", "COOKBOOK_LLM_API"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="COOKBOOK_LLM_BASE_URL"):
        L.get_llm("http")
    monkeypatch.setenv("COOKBOOK_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="COOKBOOK_LLM_MODEL"):
        L.get_llm("http")
    monkeypatch.setenv("COOKBOOK_LLM_MODEL", "some-model")
    monkeypatch.setenv("COOKBOOK_LLM_API", "chat")
    llm = L.get_llm("http", cache=False)
    assert llm.api == "chat" and llm.base_url == "http://127.0.0.1:9/v1"
    with pytest.raises(ValueError, match="backend"):
        L.get_llm("carrier-pigeon")


def test_http_n_samples_are_separate_seeded_requests(fake):
    script, url = fake((200, _completion("a")))
    llm = L.OpenAIHTTPLLM(url, "m", cache=False, progress=False, concurrency=2)
    out = llm.generate(["p1", "p2"], temperature=0.7, n=3, seed=11)
    assert out == [["a"] * 3] * 2 and len(script.seen) == 6
    assert len({s["json"]["seed"] for s in script.seen}) == 6


# ---------------------------------------------------------------------------------------------
# ... and the real thing: transformers serve on 127.0.0.1 with the cached SmolLM2 folder
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_http_backend_against_transformers_serve(tmp_path):
    pytest.importorskip("fastapi", reason="needs pip install 'transformers[serving]'")
    from cookbook.models import cached_lm_folder, load_causal_lm

    folder = cached_lm_folder("generator")
    prompts = ["The capital of France is", "def add(a, b):\n    return"]
    params = L.SamplingParams(max_new_tokens=8, temperature=0.0, stop=())
    with L.start_transformers_serve(folder, startup_timeout=240) as server:
        http = L.OpenAIHTTPLLM(server.base_url, server.model, cache=tmp_path / "c.sqlite",
                               concurrency=1, progress=False)
        with http.track() as u:
            remote = http.generate(prompts, params)
        assert u.items == 2 and u.prompt_tokens > 0 and u.completion_tokens > 0
        sent = http.requests_sent
        assert http.generate(prompts, params) == remote and http.requests_sent == sent  # replay

        chat = L.OpenAIHTTPLLM(server.base_url, server.model, api="chat", cache=False, progress=False)
        answer = chat.generate(["Name the capital of France in one word."], max_new_tokens=12)
        assert isinstance(answer[0][0], str) and answer[0][0]

        with pytest.raises(L.LLMError):  # the server rejects a batch-shaped prompt: a clear error
            http._post("/completions", {"model": server.model, "prompt": ["a", "b"], "max_tokens": 2})
    assert server.process.poll() is not None  # stopped by the context manager

    tok, model = load_causal_lm("generator")
    local = L.LocalLLM(tok, model, model_name="smol", cache=False, batch_size=1, progress=False)
    assert local.generate(prompts, params) == remote  # same weights, same greedy tokens


@pytest.mark.slow
def test_shared_prefix_cache_gives_the_same_greedy_tokens():
    from cookbook.models import load_causal_lm

    tok, model = load_causal_lm("generator")
    header = "".join(f"Document: numpy.f{i}: compute statistic {i} of an array.\nQuery: statistic {i}\n\n"
                     for i in range(3))
    prompts = [header + f"Document: {d}\nQuery:" for d in
               ("numpy.cumsum: Return the cumulative sum of the elements along a given axis.",
                "pandas.read_csv: Read a comma-separated values file into a DataFrame.")]
    params = L.SamplingParams(max_new_tokens=6, stop=())
    shared = L.LocalLLM(tok, model, model_name="s", cache=False, batch_size=2, progress=False)
    plain = L.LocalLLM(tok, model, model_name="s", cache=False, batch_size=2, progress=False,
                       min_prefix_tokens=10_000)
    assert shared.generate(prompts, params) == plain.generate(prompts, params)


def test_single_long_prompt_uses_the_prefix_path(tiny_lm):
    tok, model = tiny_lm
    long_prompt = "word " * 40 + "\nQuery:"
    one = L.LocalLLM(tok, model, model_name="tiny", cache=False, batch_size=1, progress=False)
    plain = L.LocalLLM(tok, model, model_name="tiny", cache=False, batch_size=1, progress=False,
                       min_prefix_tokens=10_000)
    out = one.generate([long_prompt, long_prompt + " x"], max_new_tokens=3, stop=())
    assert len(out) == 2 and all(isinstance(o[0], str) for o in out)
    assert one.score([long_prompt], [" abc"]) == pytest.approx(plain.score([long_prompt], [" abc"]))


# ---------------------------------------------------------------------------------------------
# scoring speed: precision choice, tolerance, shared document KV cache (issue 27)
# ---------------------------------------------------------------------------------------------

GRID_DOCS = ["Return the cumulative sum of the elements along a given axis of an array.",
             "Read a comma-separated values file into a two-dimensional table.",
             "Solve a linear system of equations given a square coefficient matrix, quickly."]
GRID_QUERIES = ["cumulative sum", "load a csv file into a data frame", "solve linear equations", "x"]


def _grid():
    return ([q for q in GRID_QUERIES for _ in GRID_DOCS], [d for _ in GRID_QUERIES for d in GRID_DOCS])


def test_cpu_flags_and_the_precision_choice(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert {"avx2", "avx512_bf16"} <= P.cpu_flags(info)
    assert P.cpu_flags(tmp_path / "missing") == frozenset()
    assert P.choose_precision(frozenset({"avx2", "avx512_bf16"}))[0] == "bf16"
    assert P.choose_precision(frozenset({"avx512f", "amx_bf16"}))[0] == "bf16"
    choice, reason = P.choose_precision(frozenset({"avx2", "avx512_vnni"}))  # no bf16: exact path
    assert choice == "fp32" and "no native bf16" in reason
    assert P.choose_precision(frozenset({"avx512_bf16"}), device="cuda")[0] == "fp32"
    monkeypatch.setenv("COOKBOOK_LLM_PRECISION", "FP32")
    assert P.requested_precision() == "fp32" and P.requested_precision("int8") == "int8"
    monkeypatch.setenv("COOKBOOK_LLM_PRECISION", "fp8")
    with pytest.raises(ValueError, match="COOKBOOK_LLM_PRECISION"):
        P.requested_precision()


def test_tolerance_measures():
    assert P.max_abs_diff([-1.0, -2.0], [-1.05, -1.9]) == pytest.approx(0.1)
    a, groups = [-1.0, -2.0, -3.0, -1.0, -2.0], ["q1", "q1", "q1", "q2", "q2"]
    assert P.mean_kendall_tau(a, a, groups) == pytest.approx(1.0)
    assert P.mean_kendall_tau(a, [-3.0, -2.0, -1.0, -1.0, -2.0], groups) == pytest.approx(0.0)


def test_auto_precision_follows_the_cpu_and_enters_the_cache_key(tiny_lm, monkeypatch):
    tok, model = tiny_lm
    monkeypatch.delenv("COOKBOOK_LLM_PRECISION", raising=False)
    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    plain = L.LocalLLM(tok, model, model_name="tiny", cache=False, progress=False)
    assert plain.precision == "fp32" and "no native bf16" in plain.precision_note
    assert plain._score_key() == {"v": 1}  # the key of every fp32 score cached before issue 27
    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    fast = L.LocalLLM(tok, model, model_name="tiny", cache=False, progress=False)
    assert fast.precision == "bf16" and "probe" in fast.precision_note
    assert fast._score_key() == {"v": 1, "precision": "bf16"}
    assert next(model.parameters()).dtype.is_floating_point and model.dtype == plain.model.dtype
    assert str(model.dtype) == "torch.float32"  # generation keeps the model as loaded
    # a format whose scores leave the tolerance on the probe pairs falls back to fp32
    monkeypatch.setattr(P, "MAX_ABS_DIFF", -1.0)
    off = L.LocalLLM(tok, model, model_name="tiny", cache=False, progress=False)
    assert off.precision == "fp32" and "differ from fp32" in off.precision_note
    asked = L.LocalLLM(tok, model, model_name="tiny", cache=False, progress=False, precision="fp32")
    assert asked.precision == "fp32" and asked._fast_model is None


def test_precision_is_part_of_the_score_cache_key(tiny_lm, tmp_path):
    tok, model = tiny_lm
    db = tmp_path / "llm.sqlite"
    q, d = _grid()
    exact = L.LocalLLM(tok, model, model_name="tiny", cache=db, progress=False, precision="fp32")
    exact.query_likelihood(q, d)
    bf16 = L.LocalLLM(tok, model, model_name="tiny", cache=db, progress=False, precision="bf16")
    with bf16.track() as u:  # never replays the fp32 answers as bf16 ones
        bf16.query_likelihood(q, d)
    assert u.cache_hits == 0 and u.items == len(q)
    again = L.LocalLLM(tok, model, model_name="tiny", cache=db, progress=False, precision="fp32")
    with again.track() as u:
        again.query_likelihood(q, d)
    assert u.cache_hits == len(q) and u.items == 0


def test_generation_in_bf16_runs_the_bf16_copy_under_its_own_cache_key(tiny_lm, tmp_path):
    tok, model = tiny_lm
    db = tmp_path / "llm.sqlite"
    params = L.SamplingParams(max_new_tokens=5, temperature=0.0, n=1)
    exact = L.LocalLLM(tok, model, model_name="tiny", cache=db, progress=False, precision="bf16")
    assert exact._generation_model() is model  # the default: generation runs the model as loaded
    out = exact.generate(PROMPTS[:3], params)
    fast = L.LocalLLM(tok, model, model_name="tiny", cache=db, progress=False, precision="bf16",
                      generate_precision="auto")
    assert str(next(fast._generation_model().parameters()).dtype) == "torch.bfloat16"
    with fast.track() as u:  # never replays the fp32 generations as bf16 ones
        fast_out = fast.generate(PROMPTS[:3], params)
    assert u.cache_hits == 0 and u.items == 3 and all(len(x) == 1 for x in fast_out)
    fp32_machine = L.LocalLLM(tok, model, model_name="tiny", cache=db, progress=False, precision="fp32",
                              generate_precision="auto")
    with fp32_machine.track() as u:  # auto without bf16 scoring generates in fp32: the fp32 cache entries
        assert fp32_machine.generate(PROMPTS[:3], params) == out
    assert u.cache_hits == 3
    with pytest.raises(L.LLMConfigError, match="generate_precision"):
        L.LocalLLM(tok, model, model_name="tiny", cache=False, generate_precision="int8")


def test_shared_document_cache_gives_the_plain_scores(tiny_lm):
    tok, model = tiny_lm
    q, d = _grid()
    d[-1] = d[-1] + " A longer tail, so that contexts differ in length."
    plain = L.LocalLLM(tok, model, model_name="tiny", cache=False, progress=False, precision="fp32",
                       share_prefix=False, sort_by_length=False, batch_size=5)
    shared = L.LocalLLM(tok, model, model_name="tiny", cache=False, progress=False, precision="fp32",
                        batch_size=5)
    with shared.track() as u:
        got = shared.score([L.QL_TEMPLATE.format(document=x) for x in d], [" " + x for x in q])
    want = plain.score([L.QL_TEMPLATE.format(document=x) for x in d], [" " + x for x in q])
    assert got == pytest.approx(want, abs=1e-4) and u.calls == 3  # 12 pairs in batches of 5
    ids = shared._pair_ids([L.QL_TEMPLATE.format(document=x) for x in d], [" " + x for x in q])
    direct = shared._score_ids_shared(ids, model)
    assert [lp for lp, _ in direct] == pytest.approx(want, abs=1e-4)
    assert [n for _, n in direct] == [len(x) for _, x in ids]


@pytest.mark.slow
def test_real_model_scores_stay_within_the_tolerance(binary_data):
    """SmolLM2-135M on a labelling grid of the binary fixture (4 test queries x their 4 relevant
    documents): the shared cache equals the plain fp32 path, and bf16 (what ``auto`` picks on a
    CPU with native bf16; emulated and slow on others) stays within the stated tolerance."""
    from cookbook.models import load_causal_lm

    queries, qrels = binary_data.split_queries("test"), binary_data.qrels["test"]
    qids = sorted(queries)[:4]
    docs = [binary_data.doc_text(next(iter(qrels[q]))) for q in qids]
    q, d, groups = ([queries[x] for x in qids for _ in docs], [y for _ in qids for y in docs],
                    [x for x in qids for _ in docs])
    tok, model = load_causal_lm("generator")
    kw = dict(model_name="s", cache=False, progress=False)
    exact = L.LocalLLM(tok, model, precision="fp32", share_prefix=False, sort_by_length=False, **kw)
    ref = exact.query_likelihood(q, d)
    shared = L.LocalLLM(tok, model, precision="fp32", **kw).query_likelihood(q, d)
    assert P.max_abs_diff(ref, shared) < 1e-3
    bf16 = L.LocalLLM(tok, model, precision="bf16", **kw).query_likelihood(q, d)
    assert P.max_abs_diff(ref, bf16) <= P.MAX_ABS_DIFF
    assert P.mean_kendall_tau(ref, bf16, groups) >= P.MIN_KENDALL_TAU
