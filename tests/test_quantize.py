"""int8 ONNX Runtime encoder: same interface, close vectors, its own cache key."""

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from cookbook import retrieval  # noqa: E402
from cookbook.beir import load_beir  # noqa: E402
from cookbook.quantize import QuantizeError, int8_encoder  # noqa: E402


def test_int8_encoder_matches_fp32_closely_and_searches(tiny_model, tmp_path):
    quant = int8_encoder(tiny_model, folder=tmp_path / "onnx")
    texts = [f"the kettle note number {i} about a fuse" for i in range(20)] + ["short"]
    fp32 = retrieval.encode(tiny_model, texts, batch_size=8)
    int8 = retrieval.encode(quant, texts, batch_size=8)
    assert int8.shape == fp32.shape and np.allclose(np.linalg.norm(int8, axis=1), 1, atol=1e-5)
    assert float(np.mean(np.sum(fp32 * int8, axis=1))) > 0.95
    assert quant.encode("one text").shape == (fp32.shape[1],)
    assert retrieval.model_fingerprint(quant) != retrieval.model_fingerprint(tiny_model)
    data = load_beir("data/fixtures/tiny_beir")
    queries = data.split_queries(sorted(data.qrels)[0])
    run = retrieval.DenseIndex(quant, data, cache=False).search(queries, k=3)
    assert set(run) == set(queries) and all(len(docs) == 3 for docs in run.values())
    with pytest.raises(QuantizeError, match="one process"):
        quant.encode(texts, pool=object())
