"""First-stage retrieval: BM25 (bm25s) and dense (sentence-transformers), one run format.

A *run* is ``{qid: {doc_id: score}}``, the format ir_measures, pytrec_eval and ranx read.
Dense search is exact (a matrix product) for corpora up to ``faiss_threshold`` documents and
uses a FAISS flat inner-product index above it, when ``faiss-cpu`` is installed.

Corpus embeddings are cached on disk (``data/cache/embeddings``), keyed by a fingerprint of the
model's weights and configuration, the texts, the prompt and the batch-independent encode
options: a second notebook, or a re-run, loads them instead of encoding, and a fine-tuned model
(new weights, new fingerprint) is never served stale vectors. ``COOKBOOK_EMBED_CACHE=0``
switches the cache off.

Taught in: notebooks/10_explore_query_document_pairs.ipynb
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cookbook import config
from cookbook.beir import RetrievalData

Run = dict[str, dict[str, float]]


def _texts(corpus) -> tuple[list[str], list[str]]:
    """Doc ids and the ``"title: text"`` strings that both retrievers index."""
    if isinstance(corpus, RetrievalData):
        ids = list(corpus.corpus)
        return ids, [corpus.doc_text(d) for d in ids]
    ids = list(corpus)
    texts = []
    for d in ids:
        doc = corpus[d]
        if isinstance(doc, str):
            texts.append(doc)
        else:
            title = doc.get("title") or ""
            texts.append(f"{title}: {doc['text']}" if title else doc["text"])
    if not ids:
        raise ValueError("empty corpus: nothing to index")
    return ids, texts


def _top_k(scores: np.ndarray, ids: list[str], qids: list[str], k: int) -> Run:
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    run: Run = {}
    for row, qid in enumerate(qids):
        idx = part[row][np.argsort(-scores[row, part[row]], kind="stable")]
        run[qid] = {ids[i]: float(scores[row, i]) for i in idx}
    return run


class BM25Index:
    """BM25 over a corpus with ``bm25s`` (English stopwords, no stemming).

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """

    def __init__(self, corpus, k1: float = 1.5, b: float = 0.75):
        import bm25s

        self.ids, texts = _texts(corpus)
        self._bm25s = bm25s
        self.retriever = bm25s.BM25(k1=k1, b=b)
        tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False)
        self.retriever.index(tokens, show_progress=False)

    def search(self, queries: Mapping[str, str], k: int = 100) -> Run:
        qids = list(queries)
        if not qids:
            return {}
        tokens = self._bm25s.tokenize([queries[q] for q in qids], stopwords="en", show_progress=False)
        k = min(k, len(self.ids))
        docs, scores = self.retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return {
            qid: {self.ids[int(d)]: float(s) for d, s in zip(docs[i], scores[i]) if s > 0}
            for i, qid in enumerate(qids)
        }


class DenseIndex:
    """Embed a corpus once with a SentenceTransformer; search by cosine similarity.

    ``query_prompt`` / ``document_prompt`` are prepended for embedders trained with them
    (e5: ``"query: "`` and ``"passage: "``; bge: an instruction before queries only).
    ``pool`` (from :func:`start_pool`) spreads the corpus encoding over several processes.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """

    def __init__(self, model, corpus, batch_size: int = 64, faiss_threshold: int = 200_000,
                 show_progress_bar: bool = False, query_prompt: str | None = None,
                 document_prompt: str | None = None, cache: bool | None = None, pool=None):
        self.model = model
        self.ids, texts = _texts(corpus)
        self.batch_size = batch_size
        self.query_prompt = query_prompt
        use_cache = cache if cache is not None else cache_enabled()
        self.cache_hit = False
        if use_cache:
            self.embeddings, self.cache_hit = cached_encode(model, texts, batch_size=batch_size,
                                                            prompt=document_prompt,
                                                            show_progress_bar=show_progress_bar, pool=pool)
        else:
            self.embeddings = encode(model, texts, batch_size=batch_size,
                                     show_progress_bar=show_progress_bar, prompt=document_prompt, pool=pool)
        self.faiss_index = None
        if len(self.ids) > faiss_threshold:
            try:
                import faiss
            except ImportError:
                faiss = None
            if faiss is not None:
                self.faiss_index = faiss.IndexFlatIP(self.embeddings.shape[1])
                self.faiss_index.add(self.embeddings)

    def search(self, queries: Mapping[str, str], k: int = 100) -> Run:
        qids = list(queries)
        if not qids:
            return {}
        q = encode(self.model, [queries[x] for x in qids], batch_size=self.batch_size, prompt=self.query_prompt)
        return self.search_vectors(qids, q, k)

    def vectors(self, doc_ids) -> np.ndarray:
        """The stored embeddings of some corpus documents (to query with a document)."""
        row = {d: i for i, d in enumerate(self.ids)}
        return self.embeddings[[row[d] for d in doc_ids]]

    def search_vectors(self, qids: list[str], vectors: np.ndarray, k: int = 100,
                       exclude: Mapping[str, str] | None = None) -> Run:
        """The top-``k`` run for query vectors; ``exclude[qid]`` (a doc id) is never returned
        (a document used as the query is not its own answer)."""
        want = min(k + (1 if exclude else 0), len(self.ids))
        if self.faiss_index is not None:
            scores, idx = self.faiss_index.search(np.ascontiguousarray(vectors, dtype=np.float32), want)
            run = {qid: {self.ids[j]: float(s) for j, s in zip(idx[i], scores[i]) if j >= 0}
                   for i, qid in enumerate(qids)}
        else:
            run = _top_k(vectors @ self.embeddings.T, self.ids, qids, want)
        if exclude:
            run = {q: dict([(d, s) for d, s in docs.items() if d != exclude.get(q)][:k])
                   for q, docs in run.items()}
        return run


def encode(model, texts: list[str], batch_size: int = 64, show_progress_bar: bool = False,
           prompt: str | None = None, pool=None) -> np.ndarray:
    """Normalised float32 embeddings: exactly ``SentenceTransformer.encode`` with fixed options.

    ``prompt`` is prepended to every text (``"query: "`` for e5-style models). ``pool`` is a
    multi-process pool from :func:`start_pool`: the texts are split over its processes (or
    GPUs), which is how a large corpus is encoded on many cores.
    """
    return model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
        show_progress_bar=show_progress_bar, prompt=prompt, pool=pool,
    ).astype(np.float32, copy=False)


def cache_enabled() -> bool:
    """Whether indexes use the on-disk embedding cache by default (``COOKBOOK_EMBED_CACHE=0``: no)."""
    return os.environ.get("COOKBOOK_EMBED_CACHE", "1") != "0"


def model_fingerprint(model) -> str:
    """A hash of a model's weights and module configuration (pooling, length, normalisation).

    Any change of weights (fine-tuning, quantisation) or of ``max_seq_length`` gives a new
    fingerprint. Hashing MiniLM's 22M parameters takes a fraction of a second.
    """
    import torch

    if hasattr(model, "fingerprint"):  # e.g. cookbook.quantize's int8 encoder
        return model.fingerprint()
    digest = hashlib.sha1(repr(model).encode())
    digest.update(str(getattr(model, "max_seq_length", "")).encode())
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
        else:  # packed parameters of quantised layers
            digest.update(repr(value).encode())
    return digest.hexdigest()[:16]


def _texts_fingerprint(texts: list[str]) -> str:
    digest = hashlib.sha1()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


def cached_encode(model, texts: list[str], batch_size: int = 64, prompt: str | None = None,
                  show_progress_bar: bool = False, cache_dir: Path | None = None,
                  pool=None) -> tuple[np.ndarray, bool]:
    """:func:`encode` through the on-disk embedding cache: ``(embeddings, loaded_from_cache)``.

    The key joins the model fingerprint, the texts' checksum, the prompt and normalisation.
    The file is written to a temporary name and renamed, so a run killed mid-write never leaves
    a half-written cache entry.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """

    key = hashlib.sha1(json.dumps([model_fingerprint(model), _texts_fingerprint(texts), prompt or "",
                                   "normalized", len(texts)]).encode()).hexdigest()[:20]
    path = Path(cache_dir or config.CACHE_DIR / "embeddings") / f"{key}.npy"
    if path.exists():
        try:
            emb = np.load(path)
            if emb.shape[0] == len(texts):
                return emb, True
        except (OSError, ValueError):  # unreadable: encode again
            pass
    emb = encode(model, texts, batch_size=batch_size, show_progress_bar=show_progress_bar, prompt=prompt, pool=pool)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, emb)
    tmp.replace(path)
    return emb, False


def start_pool(model, processes: int = 2):
    """A sentence-transformers multi-process pool of ``processes`` CPU workers (or every GPU).

    Pass it to :func:`encode` as ``pool=``; stop it with ``model.stop_multi_process_pool(pool)``.
    """
    import torch

    devices = None if torch.cuda.is_available() else ["cpu"] * processes
    return model.start_multi_process_pool(target_devices=devices)


def bm25_search(corpus, queries: Mapping[str, str], k: int = 100) -> Run:
    """Index ``corpus`` with BM25 and return the top-``k`` run for ``queries``."""
    return BM25Index(corpus).search(queries, k)


def dense_search(model, corpus, queries: Mapping[str, str], k: int = 100, batch_size: int = 64) -> Run:
    """Embed ``corpus`` with ``model`` and return the top-``k`` run for ``queries``."""
    return DenseIndex(model, corpus, batch_size=batch_size).search(queries, k)


def fuse_rrf(runs: list[Run], k: int = 60, depth: int = 100) -> Run:
    """Reciprocal-rank fusion of several runs (used to combine BM25 and dense)."""
    fused: dict[str, dict[str, float]] = {}
    for run in runs:
        for qid, docs in run.items():
            ranked = sorted(docs.items(), key=lambda kv: -kv[1])[:depth]
            out = fused.setdefault(qid, {})
            for rank, (doc, _) in enumerate(ranked, start=1):
                out[doc] = out.get(doc, 0.0) + 1.0 / (k + rank)
    return fused
