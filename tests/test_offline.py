"""Prove that the test workload attempts no network connection."""

import os
import subprocess
import sys
from pathlib import Path

GUARD = Path(__file__).parent / "netguard"

WORKLOAD = """
from cookbook import corpus, evaluate, models, retrieval
data = corpus.load_apidocs("smoke")
model = models.load_embedder(max_seq_length=32)
queries = dict(list(data.split_queries("test").items())[:5])
run = retrieval.dense_search(model, {d: data.corpus[d] for d in list(data.corpus)[:50]}, queries, k=5)
models.load_causal_lm()
print("WORKLOAD_OK")
"""


def _run(code, log):
    env = {**os.environ, "COOKBOOK_NETGUARD": "1", "COOKBOOK_NETGUARD_LOG": str(log),
           "PYTHONPATH": str(GUARD), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)


def test_guard_catches_an_outside_connection(tmp_path):
    log = tmp_path / "net.log"
    code = "import socket\ntry:\n    socket.create_connection(('203.0.113.7', 80), timeout=1)\nexcept OSError as e:\n    print(e)"
    result = _run(code, log)
    assert "network access is blocked" in result.stdout
    assert "203.0.113.7" in log.read_text()


def test_models_corpus_and_retrieval_run_without_network(tmp_path):
    log = tmp_path / "net.log"
    result = _run(WORKLOAD, log)
    assert "WORKLOAD_OK" in result.stdout, result.stderr[-2000:]
    assert not log.exists() or log.read_text() == "", log.read_text()
