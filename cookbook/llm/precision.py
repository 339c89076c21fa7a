"""The number format of local query-likelihood scoring, chosen for the CPU it runs on.

A 135M model scoring ~130-token prompts in fp32 already runs near the CPU's fp32 matmul rate,
so the remaining lever is the number format. It only pays where the CPU does it natively:

* ``bf16``: fast on CPUs with ``avx512_bf16`` or AMX (``amx_bf16``); elsewhere torch emulates
  it, and a bf16 matmul on an AVX2 CPU runs ~100x *slower* than fp32.
* ``int8`` (dynamic quantisation of the Linear layers, weights per channel): uses the CPU's
  integer dot products (VNNI, or AVX2's slower ones); offered, never chosen automatically
  (its scores drift further from fp32 than bf16's on SmolLM2; ``python -m cookbook bench
  --part llm`` measures both).
* ``fp32``: the exact path, and what every other CPU (and any non-CPU device) gets.

``precision="auto"`` (the default, or ``COOKBOOK_LLM_PRECISION``) picks ``bf16`` from the CPU
flags, then checks it once on :data:`PROBE_PAIRS` against fp32: if the per-token
log-likelihoods differ by more than :data:`MAX_ABS_DIFF` it falls back to fp32. The choice and
its reason are logged (logger ``cookbook.llm``) and kept on ``LocalLLM.precision_note``.

Taught in: notebooks/21_adapt_to_known_corpus_customir.ipynb
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path

log = logging.getLogger("cookbook.llm")

PRECISIONS = ("auto", "fp32", "bf16", "int8")

#: The largest |log p(query | document)| difference per query token (nats) a lower-precision
#: path may show against fp32 on the probe pairs and the test fixture, and the smallest Kendall
#: tau of its per-query rankings: bf16 on SmolLM2-135M stays near 0.04 nats (issue 27).
MAX_ABS_DIFF = 0.1
MIN_KENDALL_TAU = 0.98

#: Flags that mean native bf16 matmuls (AVX-512 BF16 or AMX tiles).
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: Flags that mean fast int8 dot products (reported by the bench; int8 is never auto-chosen).
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})

#: Document and query pairs scored in fp32 and in the chosen format when ``auto`` picks one.
PROBE_PAIRS = (
    ("Return the cumulative sum of the elements along a given axis of an array.",
     "cumulative sum of an array"),
    ("Return the cumulative sum of the elements along a given axis of an array.",
     "read a csv file"),
    ("Read a comma-separated values file into a two-dimensional table with labelled columns.",
     "load csv into a table"),
    ("Read a comma-separated values file into a two-dimensional table with labelled columns.",
     "sum along an axis"),
)


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags (Linux ``/proc/cpuinfo``); empty where that file does not exist."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def requested_precision(precision: str | None = None) -> str:
    """``precision``, else ``COOKBOOK_LLM_PRECISION``, else ``auto``; checked against
    :data:`PRECISIONS`."""
    name = (precision or os.environ.get("COOKBOOK_LLM_PRECISION") or "auto").lower()
    if name not in PRECISIONS:
        from cookbook.llm.base import LLMConfigError

        raise LLMConfigError(f"precision={name!r} (argument or COOKBOOK_LLM_PRECISION); "
                             f"choose one of {', '.join(PRECISIONS)}")
    return name


def choose_precision(flags: frozenset[str] | None = None, device: str = "cpu") -> tuple[str, str]:
    """``(precision, reason)`` for ``auto`` on this machine: ``bf16`` where the CPU has native
    bf16 matmuls, else ``fp32`` (never slower than today's path).

    Taught in: notebooks/21_adapt_to_known_corpus_customir.ipynb
    """
    if device != "cpu":
        return "fp32", f"model on {device}: kept as loaded"
    flags = cpu_flags() if flags is None else frozenset(flags)
    native = sorted(BF16_FLAGS & flags)
    if native:
        return "bf16", f"CPU has {', '.join(native)}"
    return "fp32", "CPU has no native bf16 (no avx512_bf16 / amx_bf16): bf16 would be emulated"


def lower_precision_copy(model, precision: str):
    """A copy of ``model`` for scoring in ``precision`` (``bf16`` or ``int8``); the original is
    left as it is, because generation and other callers keep using it in fp32.

    ``int8`` quantises every Linear layer but the vocabulary projection (torch dynamic
    quantisation: int8 weights per channel, activations quantised per batch).
    """
    import torch

    if precision == "bf16":
        return copy.deepcopy(model).to(torch.bfloat16).eval()
    if precision == "int8":
        quantizable = {name for name, m in model.named_modules()
                       if isinstance(m, torch.nn.Linear) and not name.endswith("lm_head")}
        with warnings.catch_warnings():  # torch.ao's deprecation notices, not ours to act on
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), quantizable,
                                                          dtype=torch.qint8).eval()
    raise ValueError(f"no lower-precision copy for {precision!r}")


def max_abs_diff(a, b) -> float:
    """The largest absolute difference between two equally long lists of scores."""
    return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)


def mean_kendall_tau(a, b, groups) -> float:
    """Mean over groups (e.g. queries) of the Kendall tau between the scores ``a`` and ``b`` of
    the group's items; groups with fewer than two items are skipped."""
    from scipy.stats import kendalltau

    by_group: dict = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    taus = []
    for idx in by_group.values():
        if len(idx) >= 2:
            tau = kendalltau([a[i] for i in idx], [b[i] for i in idx]).statistic
            taus.append(1.0 if tau != tau else float(tau))  # nan: constant scores, same order
    return sum(taus) / len(taus) if taus else 1.0


def log_choice(note: str) -> None:
    log.info("LocalLLM scoring precision: %s", note)
