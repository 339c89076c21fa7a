from pathlib import Path

import numpy as np
import pytest

from cookbook import models


def test_unknown_role_names_the_known_roles():
    with pytest.raises(ValueError, match="unknown model role 'reranker'.*embedder, generator"):
        models.resolve("reranker")


def test_roles_resolve_to_offline_packages():
    assert Path(models.resolve("embedder")).exists()
    assert models.is_offline_available("generator")


def test_environment_override(monkeypatch):
    monkeypatch.setenv("COOKBOOK_MODEL_EMBEDDER", "BAAI/bge-small-en-v1.5")
    assert models.resolve("embedder") == "BAAI/bge-small-en-v1.5"


def test_tiny_embedder_is_small_and_deterministic():
    a = models.tiny_embedder(seed=1).encode(["a query about arrays"])
    b = models.tiny_embedder(seed=1).encode(["a query about arrays"])
    assert a.shape == (1, 32)
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_real_embedder_gives_unit_vectors():
    model = models.load_embedder(max_seq_length=64)
    emb = model.encode(["weighted average", "compute the mean"], normalize_embeddings=True)
    assert emb.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert emb[0] @ emb[1] > 0.3  # related phrases land close


def test_cached_generator_loads_as_safetensors_and_generates():
    tokenizer, model = models.load_causal_lm()
    folder = models.cached_lm_folder()
    assert (folder / "model.safetensors").exists()
    assert tokenizer.padding_side == "left"
    batch = tokenizer(["numpy.mean computes the"], return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape[1] > batch["input_ids"].shape[1]


def test_save_model_replaces_a_folder_whole_and_leaves_no_temporary(tmp_path, tiny_model):
    from sentence_transformers import SentenceTransformer

    path = models.save_model(tiny_model, tmp_path / "out" / "model")
    (path / "stale.txt").write_text("from an earlier run")
    models.save_model(tiny_model, path)  # again: the earlier folder is replaced, not merged into
    assert not (path / "stale.txt").exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["model"]
    loaded = SentenceTransformer(str(path), device="cpu")
    assert np.allclose(loaded.encode(["a b c"]), tiny_model.encode(["a b c"]), atol=1e-6)
