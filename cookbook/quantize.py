"""int8 inference for evaluation encodes: the embedder exported to ONNX, quantised per channel.

sentence-transformers' own ONNX backend needs ``optimum``, which does not install beside
transformers 5; this module does the same job with the plain tools: ``torch.onnx.export`` of
the Hugging Face model, ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, one scale
per output channel), and the model's own pooling and normalisation in numpy. The result has
the ``encode`` of a SentenceTransformer, so :class:`cookbook.retrieval.DenseIndex` and
:func:`cookbook.retrieval.encode` take it as they take the fp32 model.

Use it for evaluation and search, never for training (it has no gradients). It is an optional
extra: ``pip install -e '.[int8]'``. ``python -m cookbook bench --part speed`` measures its
throughput and its nDCG@10 against fp32 on the same texts in one run.

Taught in: notebooks/10_explore_query_document_pairs.ipynb
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from cookbook.config import CACHE_DIR
from cookbook.retrieval import model_fingerprint


class QuantizeError(RuntimeError):
    """The model cannot be exported or quantised (the message says why)."""


@contextmanager
def _quiet():
    """Silence the exporter's tracer warnings and onnxruntime's advice for one block."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _modules(model):
    """(transformer module, pooling mode, normalise?) of a SentenceTransformer."""
    first = model[0]
    hf = getattr(first, "model", None) or getattr(first, "auto_model", None)
    if hf is None:
        raise QuantizeError("the first module of the SentenceTransformer holds no Hugging Face model")
    pooling, normalise = "mean", False
    for module in list(model)[1:]:
        name = type(module).__name__
        if name == "Pooling":
            mode = getattr(module, "pooling_mode", None) or module.get_pooling_mode_str()
            pooling = {"mean": "mean", "cls": "cls"}.get(str(mode).lower().replace("pooling_mode_", "")
                                                         .replace("_tokens", ""), None)
            if pooling is None:
                raise QuantizeError(f"pooling mode {mode!r} is not supported (mean or cls)")
        elif name == "Normalize":
            normalise = True
        else:
            raise QuantizeError(f"module {name} after pooling is not supported")
    return first, hf, pooling, normalise


class OnnxInt8Encoder:
    """``encode`` like a SentenceTransformer, computed by ONNX Runtime on int8 weights.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """

    def __init__(self, model, folder: str | Path | None = None, per_channel: bool = True,
                 threads: int | None = None):
        try:
            import onnxruntime as ort
            from onnxruntime.quantization import QuantType, quantize_dynamic
        except ImportError:
            raise QuantizeError("int8 inference needs onnxruntime: pip install -e '.[int8]'") from None

        first, hf, self.pooling, self.normalise = _modules(model)
        self.tokenizer = first.tokenizer
        self.max_seq_length = model.max_seq_length
        source = model_fingerprint(model)
        folder = Path(folder or CACHE_DIR / "models" / f"onnx-{source}")
        fp32, int8 = folder / "model.onnx", folder / f"model-int8-{'channel' if per_channel else 'tensor'}.onnx"
        if not int8.exists():
            folder.mkdir(parents=True, exist_ok=True)
            if not fp32.exists():
                self._export(hf, fp32)
            tmp = int8.with_suffix(".tmp.onnx")
            with _quiet():  # onnxruntime logs a pre-processing hint on the root logger
                quantize_dynamic(str(fp32), str(tmp), per_channel=per_channel, weight_type=QuantType.QInt8)
            tmp.replace(int8)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self._fingerprint = hashlib.sha1(f"{source}:{int8.name}".encode()).hexdigest()[:16]

    def _export(self, hf, path: Path) -> None:
        import torch

        class Wrapper(torch.nn.Module):  # the exporter passes positional arguments; the model wants names
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state

        sample = self.tokenizer(["an example sentence to trace"], return_tensors="pt", padding=True)
        ids = sample["input_ids"]
        args = (ids, sample["attention_mask"], sample.get("token_type_ids", torch.zeros_like(ids)))
        axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                "token_type_ids": {0: "batch", 1: "tokens"}, "hidden": {0: "batch", 1: "tokens"}}
        tmp = path.with_suffix(".tmp.onnx")
        with torch.no_grad(), _quiet():  # the tracer warns about Python-side shape checks
            torch.onnx.export(Wrapper(hf.eval()), args, str(tmp), input_names=list(axes)[:3],
                              output_names=["hidden"], dynamic_axes=axes, opset_version=17, dynamo=False)
        tmp.replace(path)

    def fingerprint(self) -> str:
        """The embedding-cache key of this encoder (source weights + quantisation)."""
        return self._fingerprint

    def encode(self, sentences, batch_size: int = 32, normalize_embeddings: bool = False,
               convert_to_numpy: bool = True, show_progress_bar: bool = False, prompt: str | None = None,
               pool=None, **_ignored) -> np.ndarray:
        """Embeddings of ``sentences`` (the same options as ``SentenceTransformer.encode``)."""
        if pool is not None:
            raise QuantizeError("the int8 encoder runs in one process; leave pool=None")
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        if prompt:
            texts = [prompt + t for t in texts]
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch
        out = np.zeros((len(texts), 0), dtype=np.float32)
        parts = []
        for start in range(0, len(texts), batch_size):
            batch = [texts[i] for i in order[start:start + batch_size]]
            enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_seq_length,
                                 return_tensors="np")
            feeds = {k: v.astype(np.int64) for k, v in enc.items() if k in self.inputs}
            if "token_type_ids" in self.inputs and "token_type_ids" not in feeds:
                feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
            hidden = self.session.run(["hidden"], feeds)[0]
            if self.pooling == "cls":
                vec = hidden[:, 0]
            else:
                mask = enc["attention_mask"][..., None].astype(np.float32)
                vec = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            parts.append(vec.astype(np.float32))
        if parts:
            out = np.concatenate(parts)[np.argsort(order, kind="stable")]
        if self.normalise or normalize_embeddings:
            out = out / np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out[0] if single else out


def int8_encoder(model, **kwargs) -> OnnxInt8Encoder:
    """The int8 ONNX Runtime encoder of a SentenceTransformer (exported once, then cached).

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    return OnnxInt8Encoder(model, **kwargs)
