"""The persistent LLM cache: SQLite rows keyed by backend, model, kind, prompt and parameters.

Results are committed batch by batch, so a re-run replays instantly and a run killed half-way
resumes where it stopped. ``COOKBOOK_LLM_CACHE`` moves the file (a fresh path measures a first run).

Taught in: notebooks/20_generate_queries_promptagator.ipynb
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cookbook.config import CACHE_DIR

DEFAULT_CACHE_PATH = CACHE_DIR / "llm_cache.sqlite"


def default_cache_path() -> Path:
    """``COOKBOOK_LLM_CACHE`` when set (a fresh path measures a first run), else ``data/cache``."""
    return Path(os.environ.get("COOKBOOK_LLM_CACHE") or DEFAULT_CACHE_PATH)


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
