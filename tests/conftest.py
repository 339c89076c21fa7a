import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("COOKBOOK_PROFILE", "smoke")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def smoke_data():
    """The smoke-size API-docs dataset (built once, then read from the cache)."""
    from cookbook.corpus import load_apidocs

    return load_apidocs("smoke")


@pytest.fixture(scope="session")
def tiny_model():
    from cookbook.models import tiny_embedder

    return tiny_embedder()
