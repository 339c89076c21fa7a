"""Run profiles, seeds and paths.

Every notebook reads the profile in its first code cell (tagged ``parameters``)::

    from cookbook.config import profile
    PROFILE = profile()                                    # COOKBOOK_PROFILE=smoke|laptop|full
    N_DOCS = PROFILE.pick(smoke=300, laptop=2000, full=None)

``smoke`` is for CI (real models, tiny slices), ``laptop`` (the default) shows each
technique's effect on a 2-core CPU in under ten minutes, ``full`` is GPU scale.

Taught in: notebooks/10_explore_query_document_pairs.ipynb
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

PROFILES = ("smoke", "laptop", "full")
DEFAULT_PROFILE = "laptop"
SEED = 13


def _repo_root() -> Path:
    """The checkout that holds this package, or the working directory for a wheel install."""
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd()


ROOT = _repo_root()
DATA_DIR = Path(os.environ.get("COOKBOOK_DATA", ROOT / "data"))
CACHE_DIR = DATA_DIR / "cache"
RESULTS_DIR = DATA_DIR / "results"


@dataclass(frozen=True)
class Profile:
    """The active run profile; ``pick`` chooses a value per profile."""

    name: str

    def pick(self, *, smoke, laptop, full):
        """Return the argument named after the active profile."""
        return {"smoke": smoke, "laptop": laptop, "full": full}[self.name]

    @property
    def is_smoke(self) -> bool:
        return self.name == "smoke"


def profile(name: str | None = None) -> Profile:
    """Read ``COOKBOOK_PROFILE`` (or ``name``); an unknown value is a clear error.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    value = name if name is not None else os.environ.get("COOKBOOK_PROFILE", DEFAULT_PROFILE)
    value = value.strip().lower()
    if value not in PROFILES:
        raise ValueError(
            f"COOKBOOK_PROFILE={value!r} is not a profile; choose one of {', '.join(PROFILES)}"
        )
    return Profile(value)


def seed_everything(seed: int = SEED) -> None:
    """Seed Python, NumPy and torch (when imported) so runs repeat."""
    random.seed(seed)
    import numpy as np

    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.manual_seed(seed)


def show_progress() -> bool:
    """Whether long steps show tqdm bars by default (``COOKBOOK_PROGRESS=1``; the recipe command
    sets it, notebooks leave it off)."""
    return os.environ.get("COOKBOOK_PROGRESS") == "1"


def device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
