"""A local OpenAI-compatible server (``transformers serve``) for tests, the bench and the notebooks.

Taught in: notebooks/20_generate_queries_promptagator.ipynb
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cookbook.config import CACHE_DIR
from cookbook.llm.base import LLMConfigError, LLMError


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
