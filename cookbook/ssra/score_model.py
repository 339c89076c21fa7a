"""The score model: one output per relevance level, a softmax head on frozen embeddings
(default) or a 4-way cross-encoder, trained on the human pool and used as the loop's judge.

Taught in: notebooks/30_synthesize_graded_relevance.ipynb
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cookbook.config import SEED
from cookbook.models import load_cross_encoder, load_embedder
from cookbook.retrieval import cached_encode, encode, model_fingerprint
from cookbook.ssra.levels import GradedError, check_levels

# torch, peft, datasets and sentence-transformers load in seconds: imported inside the functions that
# train or load models, so importing this module (and the notebook's first cell) stays fast.


SCORE_MODEL_KINDS = ("embedding", "cross-encoder")
_TOKEN = re.compile(r"[a-z0-9]+")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class LexicalFeatures:
    """What the student's embedding does not see: exact term matches of query and document.

    Built on the corpus's document texts (document frequencies, mean length). For a pair it
    gives five numbers: the BM25 score (k1 = 1.5, b = 0.75, log1p), the share of query terms
    found in the document, the same share weighted by IDF, the share of query terms in the
    document's head (its first ``head`` tokens: the title of ``"title: text"``), and the number
    of query terms (log1p). A frozen MiniLM embedding blurs exact identifiers
    (``numpy.linalg.norm`` against ``numpy.linalg.det``); these features keep them.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """

    names = ("bm25", "term overlap", "idf overlap", "head overlap", "query terms")

    def __init__(self, documents: Sequence[str] = (), *, head: int = 8, k1: float = 1.5, b: float = 0.75,
                 df: dict | None = None, n_docs: int | None = None, avg_len: float | None = None):
        self.head, self.k1, self.b = int(head), float(k1), float(b)
        if df is None:
            df = {}
            lengths = []
            for text in documents:
                toks = _tokens(text)
                lengths.append(len(toks))
                for t in set(toks):
                    df[t] = df.get(t, 0) + 1
            n_docs, avg_len = len(lengths), (float(np.mean(lengths)) if lengths else 1.0)
        if not n_docs:
            raise GradedError("lexical features need the corpus's document texts")
        self.df, self.n_docs, self.avg_len = dict(df), int(n_docs), float(avg_len or 1.0)

    def __len__(self) -> int:
        return len(self.names)

    def idf(self, term: str) -> float:
        n = self.df.get(term, 0)
        return math.log(1 + (self.n_docs - n + 0.5) / (n + 0.5))

    def pair(self, query: str, document: str) -> list[float]:
        q, d = set(_tokens(query)), _tokens(document)
        if not q:
            return [0.0] * len(self)
        tf: dict[str, int] = {}
        for t in d:
            tf[t] = tf.get(t, 0) + 1
        norm = self.k1 * (1 - self.b + self.b * len(d) / self.avg_len)
        bm25 = sum(self.idf(t) * tf[t] * (self.k1 + 1) / (tf[t] + norm) for t in q if t in tf)
        idf_all = sum(self.idf(t) for t in q)
        idf_hit = sum(self.idf(t) for t in q if t in tf)
        head = set(d[:self.head])
        return [math.log1p(bm25), len(q & set(tf)) / len(q), idf_hit / idf_all if idf_all else 0.0,
                len(q & head) / len(q), math.log1p(len(q))]

    def __call__(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        return np.array([self.pair(q, d) for q, d in zip(queries, documents)], dtype=np.float32).reshape(-1, len(self))

    def state(self) -> dict:
        return {"head": self.head, "k1": self.k1, "b": self.b, "df": self.df, "n_docs": self.n_docs,
                "avg_len": self.avg_len}


class RankingFeatures:
    """Where the pair sits in the corpus, which a single pair's embedding does not show.

    Built on the corpus's document texts; for a pair with normalised embeddings ``u`` (query)
    and ``v`` (document) it gives four numbers: the log of the document's rank among all
    documents for the query (1 = the first stage's top), the gap between the top cosine and the
    pair's cosine, and the largest and mean cosine of the document with the query's ``top``
    nearest documents (a twin or see-also neighbour of what the query is about is close to
    them; a same-topic document less so). The document embeddings come from the score model's
    embedder (through its cache), so they are computed once per corpus.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """

    names = ("log rank", "gap to top", "max cos to top docs", "mean cos to top docs")

    def __init__(self, documents: Sequence[str], *, top: int = 3):
        self.documents, self.top = list(documents), int(top)
        if not self.documents:
            raise GradedError("ranking features need the corpus's document texts")
        self._matrix: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def forget(self) -> None:
        """Drop the document embeddings (the embedder changed)."""
        self._matrix = None

    def __call__(self, u: np.ndarray, v: np.ndarray, embed) -> np.ndarray:
        """Features of the pairs with query embeddings ``u`` and document embeddings ``v``;
        ``embed(texts)`` embeds the corpus's documents (called once)."""
        if self._matrix is None:
            self._matrix = embed(self.documents)
        matrix = self._matrix
        sims = u @ matrix.T
        own = (u * v).sum(axis=1)
        rank = (sims > own[:, None] + 1e-6).sum(axis=1) + 1
        top = np.argsort(-sims, axis=1)[:, :self.top]
        near = np.einsum("nd,nkd->nk", v, matrix[top])
        return np.stack([np.log(rank), sims.max(axis=1) - own, near.max(axis=1), near.mean(axis=1)],
                        axis=1).astype(np.float32)

    def state(self) -> dict:
        return {"documents": self.documents, "top": self.top}


class EmbeddingScoreModel:
    """A level classifier on frozen bi-encoder embeddings (SBERT-classifier style).

    For a (query, document) pair with normalised embeddings ``u`` and ``v`` the features are
    ``[u * v, |u - v|, cos(u, v)]`` (``vectors=False``: the cosine alone), plus the
    :class:`LexicalFeatures` of the pair when ``lexical`` is given (BM25, term overlaps: what the
    student's own embedding does not know) and the :class:`RankingFeatures` when ``ranking`` is
    given (the pair's rank in the corpus and the document's closeness to the query's top hits);
    they are standardised with the training set's mean and
    standard deviation and go through a small softmax head with one output per level (input
    dropout, then one ReLU layer of ``hidden`` units; ``hidden=0``: linear). Training is
    full-batch AdamW with (decoupled) weight decay and class weights (inverse level frequency, so the common level 0 does not swamp the rare
    middle levels); every :meth:`fit` starts from the same seeded initialisation, so a fit is
    deterministic and retraining on a grown pool is a clean refit. The embedder is never
    trained: document embeddings go through the on-disk cache
    (:func:`cookbook.retrieval.cached_encode`) and every embedding is remembered in memory
    while the embedder's weights stay the same.

    Same interface as the cross-encoder where :mod:`cookbook.ssra` uses one: ``num_labels``,
    ``predict(pairs, batch_size=..., apply_softmax=True, show_progress_bar=False)``,
    ``save(path)`` and :func:`load_score_model`.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """

    kind = "embedding"

    def __init__(self, embedder, n_levels: int = 4, *, hidden: int = 64, epochs: int = 300,
                 learning_rate: float = 1e-2, weight_decay: float = 1.0, dropout: float = 0.5,
                 class_weights: bool = True, lexical: LexicalFeatures | None = None,
                 ranking: RankingFeatures | None = None, vectors: bool = True, seed: int = SEED):
        if n_levels < 2:
            raise GradedError(f"n_levels={n_levels}: a score model needs at least 2 levels")
        self.embedder, self.num_labels = embedder, int(n_levels)
        self.hidden, self.epochs, self.learning_rate = int(hidden), int(epochs), float(learning_rate)
        self.weight_decay, self.class_weights, self.seed = float(weight_decay), bool(class_weights), int(seed)
        self.dropout, self.lexical, self.ranking, self.vectors = float(dropout), lexical, ranking, bool(vectors)
        dim_of = getattr(embedder, "get_embedding_dimension", None) or embedder.get_sentence_embedding_dimension
        self.dim = int(dim_of())
        self._memo: dict[str, np.ndarray] = {}
        self._fingerprint: str | None = None
        self.head = self._new_head()
        self.mean = np.zeros(self.n_features, dtype=np.float32)
        self.std = np.ones(self.n_features, dtype=np.float32)
        self.trained = False

    @property
    def n_features(self) -> int:
        return ((2 * self.dim if self.vectors else 0) + 1 + (len(self.lexical) if self.lexical is not None else 0)
                + (len(self.ranking) if self.ranking is not None else 0))

    def config(self) -> dict:
        return {"kind": self.kind, "n_levels": self.num_labels, "hidden": self.hidden, "epochs": self.epochs,
                "learning_rate": self.learning_rate, "weight_decay": self.weight_decay, "dropout": self.dropout,
                "class_weights": self.class_weights, "seed": self.seed, "dim": self.dim,
                "lexical": self.lexical is not None, "ranking": self.ranking is not None, "vectors": self.vectors}

    def _new_head(self):
        import torch

        torch.manual_seed(self.seed)
        layers = [torch.nn.Dropout(self.dropout)] if self.dropout else []
        if self.hidden:
            layers += [torch.nn.Linear(self.n_features, self.hidden), torch.nn.ReLU(),
                       torch.nn.Linear(self.hidden, self.num_labels)]
        else:
            layers.append(torch.nn.Linear(self.n_features, self.num_labels))
        return torch.nn.Sequential(*layers)

    # -- embeddings and features ----------------------------------------------------------
    def _embed(self, texts: Sequence[str], documents: bool, batch_size: int = 64) -> np.ndarray:

        fingerprint = model_fingerprint(self.embedder)
        if fingerprint != self._fingerprint:  # the embedder changed: forget what it said
            self._memo, self._fingerprint = {}, fingerprint
            if self.ranking is not None:
                self.ranking.forget()
        key = "d\x00" if documents else "q\x00"
        missing = sorted({t for t in texts if key + t not in self._memo})
        if missing:
            if documents:
                emb, _ = cached_encode(self.embedder, missing, batch_size=batch_size)
            else:
                emb = encode(self.embedder, missing, batch_size=batch_size)
            self._memo.update({key + t: e for t, e in zip(missing, emb)})
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memo[key + t] for t in texts]).astype(np.float32)

    def features(self, queries: Sequence[str], documents: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``(n, n_features)`` raw features ``[u * v, |u - v|, cos(u, v)]`` of the pairs (the
        cosine alone without ``vectors``), then the lexical and the ranking features, when the
        model has them."""
        if len(queries) != len(documents):
            raise GradedError(f"{len(queries)} queries but {len(documents)} documents")
        u = self._embed(list(queries), False, batch_size)
        v = self._embed(list(documents), True, batch_size)
        parts = [u * v, np.abs(u - v)] if self.vectors else []
        parts.append((u * v).sum(axis=1, keepdims=True))
        if self.lexical is not None:
            parts.append(self.lexical(list(queries), list(documents)))
        if self.ranking is not None:
            parts.append(self.ranking(u, v, lambda texts: self._embed(texts, True, batch_size)))
        return np.concatenate(parts, axis=1)

    # -- training and prediction ------------------------------------------------------------
    def fit(self, queries: Sequence[str], documents: Sequence[str], levels: Sequence[int], *,
            epochs: int | None = None) -> dict:
        """Refit the head from its seeded initialisation on labelled pairs; returns
        ``{"steps", "seconds", "loss", "first_loss"}`` (full-batch steps, mean cross-entropy)."""
        import torch

        check_levels(levels, self.num_labels)
        epochs = self.epochs if epochs is None else int(epochs)
        if len(levels) < 2 or epochs < 1:
            raise GradedError(f"need at least 2 pairs and epochs >= 1 (got {len(levels)}, {epochs})")
        started = time.perf_counter()
        x = self.features(queries, documents)
        self.mean, self.std = x.mean(axis=0), x.std(axis=0) + 1e-6
        xt = torch.from_numpy((x - self.mean) / self.std)
        y = torch.tensor([int(lv) for lv in levels], dtype=torch.long)
        counts = torch.bincount(y, minlength=self.num_labels).float()
        weight = None
        if self.class_weights:  # inverse frequency over the levels present; absent levels weigh 0
            weight = torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * (counts > 0).sum()),
                                 torch.zeros_like(counts))
        self.head = self._new_head()
        optimizer = torch.optim.AdamW(self.head.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
        self.head.train()
        losses = []
        for _ in range(epochs):
            loss = loss_fn(self.head(xt), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.item()))
        self.head.eval()
        self.trained = True
        return {"steps": epochs, "seconds": round(time.perf_counter() - started, 1),
                "loss": round(losses[-1], 4), "first_loss": round(losses[0], 4)}

    def predict(self, pairs, batch_size: int = 64, apply_softmax: bool = True,
                show_progress_bar: bool = False, **_ignored) -> np.ndarray:
        """``(n, num_labels)`` level probabilities (``apply_softmax=False``: logits) of
        ``[(query, document text), ...]``."""
        import torch

        pairs = list(pairs)
        if not pairs:
            return np.zeros((0, self.num_labels), dtype=np.float32)
        x = self.features([q for q, _ in pairs], [d for _, d in pairs], batch_size)
        with torch.no_grad():
            logits = self.head(torch.from_numpy((x - self.mean) / self.std).float())
            out = torch.softmax(logits, dim=1) if apply_softmax else logits
        return out.numpy().astype(np.float32)

    # -- persistence ------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the head, the feature statistics and the configuration to the folder ``path``
        (the embedder is not copied: its fingerprint is stored and checked on load)."""

        import torch

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in self.head.state_dict().items()}, folder / "head.pt")
        np.savez(folder / "standardize.npz", mean=self.mean, std=self.std)
        config = {**self.config(), "trained": self.trained, "embedder_fingerprint": model_fingerprint(self.embedder),
                  "embedder": str(getattr(self.embedder, "name_or_path", "") or "")}
        (folder / "score_model.json").write_text(json.dumps(config, indent=1))
        if self.lexical is not None:
            (folder / "lexical.json").write_text(json.dumps(self.lexical.state()))
        if self.ranking is not None:
            (folder / "ranking.json").write_text(json.dumps(self.ranking.state()))
        return folder


def load_score_model(path, *, embedder=None):
    """Load a score model saved by :meth:`EmbeddingScoreModel.save` (``embedder``: the same
    frozen bi-encoder it was trained on; default: the MiniLM embedder) or a cross-encoder folder
    saved with ``CrossEncoder.save``. Raises :class:`GradedError` when the embedder differs.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """

    import torch

    folder = Path(path)
    if not (folder / "score_model.json").exists():
        from sentence_transformers import CrossEncoder

        return CrossEncoder(str(folder), device="cpu")
    config = json.loads((folder / "score_model.json").read_text())
    if embedder is None:

        embedder = load_embedder()
    if model_fingerprint(embedder) != config["embedder_fingerprint"]:
        raise GradedError(f"{folder}: the score model was trained on other embeddings than the given "
                          "embedder's (fingerprints differ); pass the embedder it was built with")
    model = EmbeddingScoreModel(embedder, config["n_levels"], hidden=config["hidden"], epochs=config["epochs"],
                                learning_rate=config["learning_rate"], weight_decay=config["weight_decay"],
                                dropout=config.get("dropout", 0.0), class_weights=config["class_weights"],
                                lexical=(LexicalFeatures(**json.loads((folder / "lexical.json").read_text()))
                                         if config.get("lexical") else None),
                                ranking=(RankingFeatures(**json.loads((folder / "ranking.json").read_text()))
                                         if config.get("ranking") else None),
                                vectors=config.get("vectors", True), seed=config["seed"])
    model.head.load_state_dict(torch.load(folder / "head.pt", weights_only=True))
    model.head.eval()
    stats = np.load(folder / "standardize.npz")
    model.mean, model.std = stats["mean"].astype(np.float32), stats["std"].astype(np.float32)
    model.trained = bool(config.get("trained", True))
    return model


def score_model_kind(model) -> str:
    """``"embedding"`` for :class:`EmbeddingScoreModel`, else ``"cross-encoder"``."""
    return "embedding" if isinstance(model, EmbeddingScoreModel) else "cross-encoder"


def score_model(n_levels: int = 4, *, kind: str = "embedding", embedder=None, max_length: int = 128,
                hidden: int | None = None, epochs: int = 300, lexical_corpus: Sequence[str] | None = None,
                ranking_corpus: Sequence[str] | None = None, vectors: bool = True, dropout: float | None = None,
                weight_decay: float | None = None, seed: int = SEED):
    """A fresh score model with one output per level.

    ``kind="embedding"`` (default): an :class:`EmbeddingScoreModel`, a softmax head on the
    frozen embeddings of ``embedder`` (default: the MiniLM embedder, ``max_length`` tokens);
    it trains in seconds on a CPU. With ``lexical_corpus`` (the corpus's document texts) it
    also reads :class:`LexicalFeatures` (BM25 and term overlaps), which the student's own
    embedding does not know; with ``ranking_corpus`` the :class:`RankingFeatures` (where the pair
    ranks in the corpus). ``vectors=False`` drops the ``u * v`` and ``|u - v|`` vectors, so a
    few hundred human pairs fit a head on a dozen features. ``hidden``, ``dropout`` and
    ``weight_decay`` left as None follow from that: 64, 0.5 and 1.0 with the vectors; 16, 0.1
    and 0.01 without them (a small head, little regularisation: the best on notebook 30's dev
    pool). ``kind="cross-encoder"``: the paper-like design, a ``CrossEncoder`` with ``n_levels`` logits on the MiniLM backbone (or on the backbone of the
    given SentenceTransformer, which is how tests get a tiny one); it reads query and document
    together but needs many steps (a GPU, the ``full`` profile) before it learns the levels.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """

    import torch

    if kind not in SCORE_MODEL_KINDS:
        raise GradedError(f"kind={kind!r}: use one of {SCORE_MODEL_KINDS}")
    if n_levels < 2:
        raise GradedError(f"n_levels={n_levels}: a score model needs at least 2 levels")
    if kind == "embedding":
        if embedder is None:

            embedder = load_embedder(max_seq_length=max_length)
        lexical = LexicalFeatures(lexical_corpus) if lexical_corpus is not None else None
        ranking = RankingFeatures(ranking_corpus) if ranking_corpus is not None else None
        head = {"hidden": 64, "dropout": 0.5, "weight_decay": 1.0} if vectors else \
            {"hidden": 16, "dropout": 0.1, "weight_decay": 0.01}
        hidden = head["hidden"] if hidden is None else hidden
        dropout = head["dropout"] if dropout is None else dropout
        weight_decay = head["weight_decay"] if weight_decay is None else weight_decay
        return EmbeddingScoreModel(embedder, n_levels, hidden=hidden, epochs=epochs, lexical=lexical, ranking=ranking,
                                   vectors=vectors, dropout=dropout, weight_decay=weight_decay, seed=seed)
    torch.manual_seed(seed)  # the new head is random
    if embedder is None:

        return load_cross_encoder(num_labels=n_levels, max_length=max_length)
    from sentence_transformers import CrossEncoder

    with tempfile.TemporaryDirectory() as tmp:
        embedder.save(tmp)
        return CrossEncoder(tmp, num_labels=n_levels, max_length=max_length, device="cpu")


def check_score_model(model, n_levels: int) -> None:
    """Raise :class:`GradedError` unless ``model`` has exactly one output per level."""
    got = getattr(model, "num_labels", None)
    if got != n_levels:
        raise GradedError(f"the score model has {got} output label(s) but the data has {n_levels} "
                          f"levels: build it with score_model(n_levels={n_levels})")


def balanced_sample(pairs: pd.DataFrame, per_level: int, seed: int = SEED) -> pd.DataFrame:
    """At most ``per_level`` rows of each level (all rows of a rarer level), shuffled."""
    parts = [g.sample(min(len(g), per_level), random_state=seed) for _, g in pairs.groupby("level")]
    return pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True) if parts else pairs


def train_score_model(model, pairs: pd.DataFrame, data, *, max_steps: int | None = None, batch_size: int = 16,
                      learning_rate: float = 3e-5, warmup: float = 0.1, seed: int = SEED) -> dict:
    """Train the score model on ``pairs`` (columns query, doc_id, level), by kind:

    * :class:`EmbeddingScoreModel`: a fresh full-batch fit of the head, ``max_steps`` AdamW
      steps (default: the model's ``epochs``); ``batch_size``, ``learning_rate`` and ``warmup``
      are the cross-encoder's and are not used;
    * cross-encoder: in place with ``CrossEncoderTrainer`` and cross-entropy over levels,
      ``max_steps`` steps of ``batch_size`` pairs (required), continuing from its weights.

    Returns ``{"steps", "seconds", "loss", ...}``.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    check_score_model(model, model.num_labels)
    check_levels(pairs["level"], model.num_labels)
    if isinstance(model, EmbeddingScoreModel):
        return model.fit(list(pairs["query"]), [data.doc_text(d) for d in pairs["doc_id"]],
                         [int(x) for x in pairs["level"]], epochs=max_steps)
    return _train_cross_encoder(model, pairs, data, max_steps=max_steps, batch_size=batch_size,
                                learning_rate=learning_rate, warmup=warmup, seed=seed)


def _train_cross_encoder(model, pairs: pd.DataFrame, data, *, max_steps: int | None, batch_size: int,
                         learning_rate: float, warmup: float, seed: int) -> dict:

    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import CrossEntropyLoss
    from transformers.trainer_callback import PrinterCallback

    if len(pairs) < 2 or max_steps is None or max_steps < 1:
        raise GradedError(f"need at least 2 pairs and max_steps >= 1 (got {len(pairs)}, {max_steps})")
    dataset = Dataset.from_dict({"query": list(pairs["query"]),
                                 "document": [data.doc_text(d) for d in pairs["doc_id"]],
                                 "label": [int(x) for x in pairs["level"]]})
    with tempfile.TemporaryDirectory() as tmp:
        args = CrossEncoderTrainingArguments(
            output_dir=tmp, max_steps=max_steps, per_device_train_batch_size=batch_size,
            learning_rate=learning_rate, warmup_steps=warmup, seed=seed, data_seed=seed,
            report_to="none", save_strategy="no", logging_steps=max(1, max_steps // 5),
            disable_tqdm=True, dataloader_num_workers=0, dataloader_pin_memory=False)
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset,
                                      loss=CrossEntropyLoss(model))
        trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        output = trainer.train()
    return {"steps": int(output.global_step), "seconds": round(time.perf_counter() - started, 1),
            "loss": round(float(output.training_loss), 4)}


def level_probabilities(model, queries: Sequence[str], documents: Sequence[str],
                        batch_size: int = 64) -> np.ndarray:
    """``(n, n_levels)`` softmax probabilities of each level for (query, document text) pairs.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    if len(queries) != len(documents):
        raise GradedError(f"{len(queries)} queries but {len(documents)} documents")
    if not len(queries):
        return np.zeros((0, model.num_labels), dtype=np.float32)
    probs = model.predict(list(zip(queries, documents)), batch_size=batch_size, apply_softmax=True,
                          show_progress_bar=False)
    return np.asarray(probs, dtype=np.float32).reshape(len(queries), -1)


def annotate(model, pairs: pd.DataFrame, data, batch_size: int = 64) -> pd.DataFrame:
    """Add the score model's view of each pair: ``p0..p{L-1}``, ``pred`` (the most likely
    level), ``p_pred`` and ``expected`` (the expected grade, sum of level x probability).

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    n = model.num_labels
    probs = level_probabilities(model, list(pairs["query"]), [data.doc_text(d) for d in pairs["doc_id"]],
                                batch_size=batch_size)
    out = pairs.copy()
    for lv in range(n):
        out[f"p{lv}"] = probs[:, lv] if len(probs) else []
    out["pred"] = probs.argmax(axis=1).astype(int) if len(probs) else []
    out["p_pred"] = probs.max(axis=1) if len(probs) else []
    out["expected"] = probs @ np.arange(n) if len(probs) else []
    return out


def score_report(model, pairs: pd.DataFrame, data) -> dict:
    """Accuracy, per-level recall and the confusion matrix (rows: human level, columns:
    predicted) of the score model on labelled ``pairs`` (the dev pool).

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    n = model.num_labels
    check_levels(pairs["level"], n)
    scored = annotate(model, pairs, data)
    confusion = pd.crosstab(scored["level"], scored["pred"]).reindex(index=range(n), columns=range(n),
                                                                      fill_value=0)
    confusion.index.name, confusion.columns.name = "human level", "predicted level"
    support = confusion.sum(axis=1)
    recall = {int(lv): (float(confusion.loc[lv, lv] / support[lv]) if support[lv] else None) for lv in range(n)}
    return {"accuracy": float((scored["pred"] == scored["level"]).mean()), "recall": recall,
            "confusion": confusion, "pairs": int(len(scored)),
            "mean abs error (expected grade)": float((scored["expected"] - scored["level"]).abs().mean())}
