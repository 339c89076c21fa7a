"""Fine-grained graded relevance synthesis with two collaborating models (SSRA-style).

Our reading of Li et al., "Semi-Supervised Synthetic Data Generation with Fine-Grained
Relevance Control for Short Video Search Relevance Modeling" (AAAI-26, arXiv 2509.16717). The
paper publishes no code, prompts, thresholds or loss, so this is an *SSRA-style* version:

* a **score model** with one output per relevance level (4 for grades 0-3), trained with
  cross-entropy on human-labelled (query, document, level) pairs: by default a small softmax
  head on frozen bi-encoder embeddings ([u * v, |u - v|, cos]), which learns the levels in
  seconds on a CPU; the paper-like 4-way cross-encoder is ``score_model(kind="cross-encoder")``
  (on a CPU budget of tens of steps it stays at chance: it needs a GPU-size budget);
* a **query model**: a small causal LM (SmolLM2-135M) that writes a query for a document at a
  *requested* level, either *prompted* (the level in a few-shot prompt) or *fine-tuned* with
  LoRA on (document, level) -> query examples;
* the **collaborative loop**: per round, the query model writes queries for target levels
  (weighted toward the rare middle ones), the score model re-annotates them, a query is kept when
  the score model agrees with the requested level with probability above a threshold (or is
  relabelled to the score model's level, or dropped), duplicates go, and the accepted pairs
  extend both models' training data for the next round;
* a **balanced graded training set** (human plus accepted synthetic pairs, sampled to a target
  level histogram) that trains a bi-encoder with a graded loss (CoSENT over level / top level);
* a **fine-distinction measure**: the share of (grade 2, grade 1) and (grade 1, grade 0)
  document pairs of evaluation queries that a model orders correctly.

Nothing assumes API-docs fields: levels follow the qrels (``max grade + 1``), level
descriptions are a parameter, and every training set is checked against the dev and test
queries (:func:`assert_no_eval_leak`).

Taught in: notebooks/30_synthesize_graded_relevance.ipynb
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cookbook.config import SEED
from cookbook.querygen import normalize

#: What each level means, stated to the query model (the API-docs rule of data/README.md).
LEVEL_TEXT_4 = {
    3: "the entry answers the query exactly",
    2: "the entry is a close alternative (a related or twin object)",
    1: "the entry is on the same topic only",
    0: "the entry is unrelated to the query",
}
PAIR_COLUMNS = ["query", "doc_id", "level", "source"]


class GradedError(ValueError):
    """Bad input to the graded-synthesis recipe (the message names what is wrong)."""


class EvalLeakError(AssertionError):
    """A dev or test query (or pair) reached a training set."""


# --------------------------------------------------------------------------------------------
# levels and human pairs
# --------------------------------------------------------------------------------------------


def n_levels_of(data) -> int:
    """Number of relevance levels of ``data``: its largest grade plus one (4 for grades 0-3,
    2 for binary labels)."""
    grades = [g for split in data.qrels.values() for docs in split.values() for g in docs.values()]
    if not grades or max(grades) < 1:
        raise GradedError("the qrels hold no relevant document: levels cannot be inferred")
    return int(max(grades)) + 1


def level_texts(n_levels: int) -> dict[int, str]:
    """The level descriptions used in prompts: the API-docs rule for 4 levels, a generic scale
    otherwise (0 = not relevant ... top = answers it exactly)."""
    if n_levels == 4:
        return dict(LEVEL_TEXT_4)
    top = n_levels - 1
    return {lv: ("the entry answers the query exactly" if lv == top else
                 "the entry is unrelated to the query" if lv == 0 else
                 f"the entry is partly relevant (level {lv} of {top})") for lv in range(n_levels)}


def check_levels(levels, n_levels: int) -> None:
    """Raise :class:`GradedError` when a level is not an integer in ``0 .. n_levels - 1``."""
    for lv in levels:
        if isinstance(lv, bool) or int(lv) != lv or not 0 <= int(lv) < n_levels:
            raise GradedError(f"level {lv!r} is outside 0..{n_levels - 1} "
                              f"(this data has {n_levels} relevance levels)")


def human_pairs(data, split: str = "train", *, retriever=None, depth: int = 10, n_random: int = 1,
                max_queries: int | None = None, seed: int = SEED) -> pd.DataFrame:
    """The human-labelled pool of ``split``: what an annotator of search results would see.

    Per query: the ``depth`` documents the base ``retriever`` ranks highest, each with its grade
    from the qrels (0 when unjudged); every top-grade document (the clean example, added when the
    retriever missed it); ``n_random`` random unjudged documents at level 0. Without a retriever,
    every judged document instead. Columns: qid, query, doc_id, level, source ("human").

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    if split not in data.qrels or not data.qrels[split]:
        raise GradedError(f"data has no {split!r} qrels; available: {sorted(data.qrels)}")
    qrels = data.qrels[split]
    qids = sorted(qrels)
    rng = random.Random(seed)
    if max_queries is not None and len(qids) > max_queries:
        qids = sorted(rng.sample(qids, max_queries))
    run = retriever.search({q: data.queries[q] for q in qids}, k=depth) if retriever is not None else {}
    doc_ids = sorted(data.corpus)
    top = max(g for docs in qrels.values() for g in docs.values())
    rows = []
    for q in qids:
        judged = qrels[q]
        if retriever is not None:
            ranked = [d for d, _ in sorted(run.get(q, {}).items(), key=lambda kv: -kv[1])][:depth]
            chosen = ranked + [d for d, g in sorted(judged.items()) if g == top and d not in ranked]
        else:
            chosen = [d for d, g in sorted(judged.items()) if g > 0]
        taken = set(chosen)
        for _ in range(n_random):
            for _try in range(20):
                d = rng.choice(doc_ids)
                if d not in judged and d not in taken:
                    chosen.append(d)
                    taken.add(d)
                    break
        rows += [{"qid": q, "query": data.queries[q], "doc_id": d, "level": int(judged.get(d, 0)),
                  "source": "human"} for d in chosen]
    return pd.DataFrame(rows, columns=["qid", *PAIR_COLUMNS])


def level_histogram(pairs: pd.DataFrame, n_levels: int = 4) -> pd.Series:
    """How many pairs each level has (every level listed, zeros included)."""
    counts = pairs["level"].value_counts() if len(pairs) else pd.Series(dtype=int)
    return pd.Series({lv: int(counts.get(lv, 0)) for lv in range(n_levels)}, name="pairs").rename_axis("level")


def eval_query_texts(data) -> set[str]:
    """Normalised texts of every dev and test query (what no training set may contain)."""
    return {normalize(data.queries[q]) for s in ("dev", "test") for q in data.qrels.get(s, {})}


def assert_no_eval_leak(pairs: pd.DataFrame, data, what: str = "training pairs") -> None:
    """Raise :class:`EvalLeakError` when a dev/test query id, query text or (query, document)
    pair of the qrels occurs in ``pairs`` (columns query, doc_id and optionally qid).

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    eval_ids = {q for s in ("dev", "test") for q in data.qrels.get(s, {})}
    if "qid" in pairs.columns:
        bad = set(pairs["qid"].dropna()) & eval_ids
        if bad:
            raise EvalLeakError(f"{what}: {len(bad)} dev/test query id(s) leaked, e.g. {sorted(bad)[:3]}")
    texts = eval_query_texts(data)
    leaked = [q for q in pairs["query"] if normalize(q) in texts]
    if leaked:
        raise EvalLeakError(f"{what}: {len(leaked)} dev/test query text(s) leaked, e.g. {leaked[:2]}")
    eval_pairs = {(normalize(data.queries[q]), d) for s in ("dev", "test")
                  for q, docs in data.qrels.get(s, {}).items() for d in docs}
    if any((normalize(q), d) in eval_pairs for q, d in zip(pairs["query"], pairs["doc_id"])):
        raise EvalLeakError(f"{what}: a dev/test (query, document) pair leaked")


# --------------------------------------------------------------------------------------------
# the score model: one output per level, on frozen embeddings (default) or a cross-encoder
# --------------------------------------------------------------------------------------------

SCORE_MODEL_KINDS = ("embedding", "cross-encoder")


class EmbeddingScoreModel:
    """A level classifier on frozen bi-encoder embeddings (SBERT-classifier style).

    For a (query, document) pair with normalised embeddings ``u`` and ``v`` the features are
    ``[u * v, |u - v|, cos(u, v)]``; they are standardised with the training set's mean and
    standard deviation and go through a small softmax head with one output per level (input
    dropout, then one ReLU layer of ``hidden`` units; ``hidden=0``: linear). Training is
    full-batch AdamW with (decoupled) weight decay and class weights (inverse level frequency, so the common level 0 does not swamp the rare
    middle levels); every :meth:`fit` starts from the same seeded initialisation, so a fit is
    deterministic and retraining on a grown pool is a clean refit. The embedder is never
    trained: document embeddings go through the on-disk cache
    (:func:`cookbook.retrieval.cached_encode`) and every embedding is remembered in memory
    while the embedder's weights stay the same.

    Same interface as the cross-encoder where :mod:`cookbook.graded` uses one: ``num_labels``,
    ``predict(pairs, batch_size=..., apply_softmax=True, show_progress_bar=False)``,
    ``save(path)`` and :func:`load_score_model`.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """

    kind = "embedding"

    def __init__(self, embedder, n_levels: int = 4, *, hidden: int = 64, epochs: int = 300,
                 learning_rate: float = 1e-2, weight_decay: float = 1.0, dropout: float = 0.5,
                 class_weights: bool = True, seed: int = SEED):
        if n_levels < 2:
            raise GradedError(f"n_levels={n_levels}: a score model needs at least 2 levels")
        self.embedder, self.num_labels = embedder, int(n_levels)
        self.hidden, self.epochs, self.learning_rate = int(hidden), int(epochs), float(learning_rate)
        self.weight_decay, self.class_weights, self.seed = float(weight_decay), bool(class_weights), int(seed)
        self.dropout = float(dropout)
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
        return 2 * self.dim + 1

    def config(self) -> dict:
        return {"kind": self.kind, "n_levels": self.num_labels, "hidden": self.hidden, "epochs": self.epochs,
                "learning_rate": self.learning_rate, "weight_decay": self.weight_decay, "dropout": self.dropout,
                "class_weights": self.class_weights, "seed": self.seed, "dim": self.dim}

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
        from cookbook.retrieval import cached_encode, encode, model_fingerprint

        fingerprint = model_fingerprint(self.embedder)
        if fingerprint != self._fingerprint:  # the embedder changed: forget what it said
            self._memo, self._fingerprint = {}, fingerprint
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
        """``(n, 2 * dim + 1)`` raw features ``[u * v, |u - v|, cos(u, v)]`` of the pairs."""
        if len(queries) != len(documents):
            raise GradedError(f"{len(queries)} queries but {len(documents)} documents")
        u = self._embed(list(queries), False, batch_size)
        v = self._embed(list(documents), True, batch_size)
        return np.concatenate([u * v, np.abs(u - v), (u * v).sum(axis=1, keepdims=True)], axis=1)

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
        import json

        import torch

        from cookbook.retrieval import model_fingerprint

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in self.head.state_dict().items()}, folder / "head.pt")
        np.savez(folder / "standardize.npz", mean=self.mean, std=self.std)
        config = {**self.config(), "trained": self.trained, "embedder_fingerprint": model_fingerprint(self.embedder),
                  "embedder": str(getattr(self.embedder, "name_or_path", "") or "")}
        (folder / "score_model.json").write_text(json.dumps(config, indent=1))
        return folder


def load_score_model(path, *, embedder=None):
    """Load a score model saved by :meth:`EmbeddingScoreModel.save` (``embedder``: the same
    frozen bi-encoder it was trained on; default: the MiniLM embedder) or a cross-encoder folder
    saved with ``CrossEncoder.save``. Raises :class:`GradedError` when the embedder differs.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    import json

    import torch

    from cookbook.retrieval import model_fingerprint

    folder = Path(path)
    if not (folder / "score_model.json").exists():
        from sentence_transformers import CrossEncoder

        return CrossEncoder(str(folder), device="cpu")
    config = json.loads((folder / "score_model.json").read_text())
    if embedder is None:
        from cookbook.models import load_embedder

        embedder = load_embedder()
    if model_fingerprint(embedder) != config["embedder_fingerprint"]:
        raise GradedError(f"{folder}: the score model was trained on other embeddings than the given "
                          "embedder's (fingerprints differ); pass the embedder it was built with")
    model = EmbeddingScoreModel(embedder, config["n_levels"], hidden=config["hidden"], epochs=config["epochs"],
                                learning_rate=config["learning_rate"], weight_decay=config["weight_decay"],
                                dropout=config.get("dropout", 0.0), class_weights=config["class_weights"], seed=config["seed"])
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
                hidden: int = 64, epochs: int = 300, seed: int = SEED):
    """A fresh score model with one output per level.

    ``kind="embedding"`` (default): an :class:`EmbeddingScoreModel`, a softmax head on the
    frozen embeddings of ``embedder`` (default: the MiniLM embedder, ``max_length`` tokens);
    it trains in seconds on a CPU. ``kind="cross-encoder"``: the issue's design, a
    ``CrossEncoder`` with ``n_levels`` logits on the MiniLM backbone (or on the backbone of the
    given SentenceTransformer, which is how tests get a tiny one); it reads query and document
    together but needs many steps (a GPU, the ``full`` profile) before it learns the levels.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    import tempfile

    import torch

    if kind not in SCORE_MODEL_KINDS:
        raise GradedError(f"kind={kind!r}: use one of {SCORE_MODEL_KINDS}")
    if n_levels < 2:
        raise GradedError(f"n_levels={n_levels}: a score model needs at least 2 levels")
    if kind == "embedding":
        if embedder is None:
            from cookbook.models import load_embedder

            embedder = load_embedder(max_seq_length=max_length)
        return EmbeddingScoreModel(embedder, n_levels, hidden=hidden, epochs=epochs, seed=seed)
    torch.manual_seed(seed)  # the new head is random
    if embedder is None:
        from cookbook.models import load_cross_encoder

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
    import tempfile

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


# --------------------------------------------------------------------------------------------
# the query model: prompted or LoRA fine-tuned, always through cookbook.llm (cached)
# --------------------------------------------------------------------------------------------


def _clip(text: str, words: int) -> str:
    return " ".join(text.split()[:words])


def instruction(n_levels: int = 4, texts: Mapping[int, str] | None = None) -> str:
    """The instruction line that states what each level means."""
    texts = dict(texts or level_texts(n_levels))
    scale = "; ".join(f"{lv}: {texts[lv]}" for lv in sorted(texts, reverse=True))
    return f"Write a search query for the documentation entry at the requested relevance level ({scale}).\n\n"


def level_prompt(document: str, level: int, *, examples: Sequence[tuple[str, int, str]] = (),
                 n_levels: int = 4, doc_words: int = 24, level_texts_: Mapping[int, str] | None = None,
                 with_instruction: bool = True) -> str:
    """The query model's prompt: the instruction (what each level means), optional few-shot
    (document, level, query) blocks, then the document and the requested level. The fine-tuned
    model learns the levels from its training data, so its prompt (``with_instruction=False``,
    no examples) is short, which keeps LoRA training cheap on a CPU.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    check_levels([level], n_levels)
    head = instruction(n_levels, level_texts_) if with_instruction else ""
    shots = "".join(f"Entry: {_clip(d, doc_words)}\nLevel: {lv}\nQuery: {q}\n\n" for d, lv, q in examples)
    return f"{head}{shots}Entry: {_clip(document, doc_words)}\nLevel: {int(level)}\nQuery:"


def few_shot_by_level(pairs: pd.DataFrame, data, per_level: int = 1, max_words: int = 12,
                      seed: int = SEED) -> list[tuple[str, int, str]]:
    """``per_level`` human (document text, level, query) examples of every level, from the
    given (train) pairs; short queries only. Ordered from the top level down."""
    rng = random.Random(seed)
    out = []
    for lv in sorted(pairs["level"].unique(), reverse=True):
        rows = pairs[(pairs["level"] == lv) & (pairs["query"].str.split().str.len() <= max_words)]
        rows = rows.iloc[rng.sample(range(len(rows)), min(per_level, len(rows)))] if len(rows) else rows
        out += [(data.doc_text(d), int(lv), " ".join(q.split())) for q, d in zip(rows["query"], rows["doc_id"])]
    return out


def sft_examples(pairs: pd.DataFrame, data, n_levels: int = 4, doc_words: int = 24) -> list[tuple[str, str]]:
    """(prompt, query) training examples of the fine-tuned query model, one per pair (the short
    prompt: no instruction, no examples)."""
    check_levels(pairs["level"], n_levels)
    return [(level_prompt(data.doc_text(d), int(lv), n_levels=n_levels, doc_words=doc_words,
                          with_instruction=False), " ".join(q.split()))
            for q, d, lv in zip(pairs["query"], pairs["doc_id"], pairs["level"])]


def _lora_fingerprint(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if "lora_" in name:
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:12]


def fine_tune_query_model(examples: Sequence[tuple[str, str]], *, steps: int = 20, batch_size: int = 8,
                          learning_rate: float = 1e-3, r: int = 8, alpha: int = 16,
                          max_tokens: int = 128, role: str = "generator", tokenizer=None, model=None,
                          cache=None, name: str | None = None, seed: int = SEED):
    """LoRA fine-tuning (``peft``) of the causal LM on (prompt, query) examples; returns a
    :class:`cookbook.llm.LocalLLM` around the merged model.

    The loss covers only the query tokens (and the end-of-sequence token). Sequences are cut to
    ``max_tokens`` from the left. The LLM's cache name carries a fingerprint of the trained
    adapter, so cached generations of the base model and of every fine-tuned model never mix.
    ``tokenizer``/``model`` default to a fresh copy of the ``role`` model (the base is never
    modified). Returns the LLM with ``.train_report`` (steps, seconds, first and last loss).

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from cookbook.llm import LocalLLM

    if not examples:
        raise GradedError("no (prompt, query) examples to fine-tune the query model on")
    if any(not q.strip() for _, q in examples):
        raise GradedError("a fine-tuning example has an empty query")
    if steps < 1 or batch_size < 1:
        raise GradedError(f"steps and batch_size must be >= 1 (got {steps}, {batch_size})")
    if (tokenizer is None) != (model is None):
        raise GradedError("pass both tokenizer and model, or neither")
    if model is None:
        from cookbook.models import load_causal_lm

        tokenizer, model = load_causal_lm(role)
        base_name = role
    else:
        import copy

        model = copy.deepcopy(model)  # never modify the caller's model
        base_name = Path(str(getattr(model, "name_or_path", "") or "model")).name
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                        task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = []
    for prompt, query in examples:
        p_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        q_ids = tokenizer(" " + query.strip() + "\n", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids, labels = (p_ids + q_ids)[-max_tokens:], ([-100] * len(p_ids) + q_ids)[-max_tokens:]
        encoded.append((ids, labels))
    rng = random.Random(seed)
    order: list[int] = []
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=learning_rate)
    peft_model.train()
    losses, started = [], time.perf_counter()
    for _ in range(steps):
        batch = []
        while len(batch) < min(batch_size, len(encoded)):
            if not order:
                order = rng.sample(range(len(encoded)), len(encoded))
            batch.append(encoded[order.pop()])
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (ids, lab) in enumerate(batch):  # right padding for training
            input_ids[i, :len(ids)], labels[i, :len(lab)], mask[i, :len(ids)] = (
                torch.tensor(ids), torch.tensor(lab), 1)
        loss = peft_model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.item()))
    fingerprint = _lora_fingerprint(peft_model)
    merged = peft_model.merge_and_unload()
    merged.eval()
    llm = LocalLLM(tokenizer, merged, model_name=name or f"{base_name}+lora-{fingerprint}", cache=cache,
                   progress=False)
    llm.train_report = {"steps": steps, "seconds": round(time.perf_counter() - started, 1),
                        "first_loss": round(losses[0], 4), "last_loss": round(float(np.mean(losses[-3:])), 4),
                        "examples": len(encoded), "fingerprint": fingerprint}
    return llm


def level_requests(doc_ids: Sequence[str], level_weights: Mapping[int, float], n_levels: int = 4,
                   seed: int = SEED) -> pd.DataFrame:
    """One (doc_id, level) request per document, levels drawn with ``level_weights``."""
    check_levels(level_weights, n_levels)
    if not doc_ids:
        raise GradedError("no documents to write queries for")
    levels = sorted(level_weights)
    weights = [float(level_weights[lv]) for lv in levels]
    if min(weights) < 0 or sum(weights) <= 0:
        raise GradedError(f"level_weights must be non-negative with a positive sum: {dict(level_weights)}")
    rng = random.Random(seed)
    return pd.DataFrame({"doc_id": list(doc_ids), "level": rng.choices(levels, weights, k=len(doc_ids))})


def generate(llm, data, requests: pd.DataFrame, *, examples: Sequence[tuple[str, int, str]] = (),
             n_levels: int = 4, n: int = 1, temperature: float = 0.0, top_p: float = 0.95,
             max_new_tokens: int = 24, doc_words: int = 24, generator: str = "",
             fine_tuned: bool | None = None, seed: int = SEED) -> pd.DataFrame:
    """Queries for (doc_id, level) requests through ``cookbook.llm`` (every call cached):
    greedy when ``temperature == 0`` (then ``n`` must be 1), else ``n`` samples each.
    ``fine_tuned`` (default: no ``examples`` given and ``llm`` made by
    :func:`fine_tune_query_model`) selects the short prompt the fine-tuned model was trained on.
    Columns: doc_id, level, sample, query, generator.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    if len(requests) == 0:
        raise GradedError("no (doc_id, level) requests")
    check_levels(requests["level"], n_levels)
    missing = [d for d in requests["doc_id"] if d not in data.corpus]
    if missing:
        raise GradedError(f"{len(missing)} requested document(s) are not in the corpus, e.g. {missing[:3]}")
    if fine_tuned is None:
        fine_tuned = not examples and hasattr(llm, "train_report")
    prompts = [level_prompt(data.doc_text(d), int(lv), examples=examples, n_levels=n_levels, doc_words=doc_words,
                            with_instruction=not fine_tuned)
               for d, lv in zip(requests["doc_id"], requests["level"])]
    params = dict(max_new_tokens=max_new_tokens, stop=("\n",), seed=seed, repetition_penalty=1.1)
    if temperature > 0:
        params.update(temperature=temperature, top_p=top_p, top_k=40, n=n)
    elif n != 1:
        raise GradedError("greedy decoding (temperature=0) gives one query per request: use n=1")
    outs = llm.generate(prompts, desc="graded queries", **params)
    rows = [{"doc_id": d, "level": int(lv), "sample": j, "query": q, "generator": generator}
            for d, lv, qs in zip(requests["doc_id"], requests["level"], outs) for j, q in enumerate(qs)]
    return pd.DataFrame(rows, columns=["doc_id", "level", "sample", "query", "generator"])


def clean(generated: pd.DataFrame, data, *, seen: set[str] | None = None, min_words: int = 2,
          max_words: int = 16) -> pd.DataFrame:
    """Keep usable generated queries: drop empty, too short or long ones, copies of a dev/test
    query (never allowed into training) and duplicates (of each other, or of ``seen`` texts);
    ``seen`` is updated with what is kept. Raises :class:`GradedError` when every generation is
    empty (the model or its prompt is broken)."""
    if len(generated) and not any(q.strip() for q in generated["query"]):
        raise GradedError(f"all {len(generated)} generated queries are empty: check the query model "
                          "and its prompt (stop strings, max_new_tokens)")
    blocked = eval_query_texts(data)
    seen = set() if seen is None else seen
    keep = []
    for q, d in zip(generated["query"], generated["doc_id"]):
        norm = normalize(q)
        ok = min_words <= len(norm.split()) <= max_words and norm not in blocked and (norm, d) not in seen
        if ok:
            seen.add((norm, d))
        keep.append(ok)
    return generated[keep].reset_index(drop=True)


def agreement(annotated: pd.DataFrame, n_levels: int = 4) -> pd.Series:
    """Per requested level, the share of generated queries that the score model places at that
    level (argmax), plus "all"."""
    hit = annotated["pred"] == annotated["level"]
    out = {lv: (float(hit[annotated["level"] == lv].mean()) if (annotated["level"] == lv).any() else np.nan)
           for lv in range(n_levels)}
    out["all"] = float(hit.mean()) if len(hit) else np.nan
    return pd.Series(out, name="agreement")


def accept(annotated: pd.DataFrame, *, threshold: float = 0.5, mode: str = "drop") -> pd.DataFrame:
    """Decide each annotated generation: ``accepted`` when the score model's level equals the
    requested one with probability >= ``threshold``; with ``mode="relabel"`` a confident
    disagreement (p_pred >= threshold) is kept under the score model's level instead.
    Adds ``accepted`` (bool), ``final_level`` and ``decision`` (agree / relabel / drop).

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    if mode not in ("drop", "relabel"):
        raise GradedError(f"mode={mode!r}: use 'drop' or 'relabel'")
    if not 0 <= threshold <= 1:
        raise GradedError(f"threshold={threshold!r} must be in [0, 1]")
    out = annotated.copy()
    agree = (out["pred"] == out["level"]) & (out["p_pred"] >= threshold)
    relabel = (mode == "relabel") & ~agree & (out["p_pred"] >= threshold)
    out["decision"] = np.where(agree, "agree", np.where(relabel, "relabel", "drop"))
    out["accepted"] = agree | relabel
    out["final_level"] = np.where(agree, out["level"], out["pred"]).astype(int)
    return out


# --------------------------------------------------------------------------------------------
# the collaborative loop
# --------------------------------------------------------------------------------------------


@dataclass
class LoopResult:
    """What :func:`collaborate` produced."""

    accepted: pd.DataFrame  # query, doc_id, level, source="ssra", round
    decisions: pd.DataFrame  # every cleaned generation with its annotation and decision, per round
    table: pd.DataFrame  # acceptance per round and requested level
    score_model: object
    query_models: list = field(default_factory=list)
    reports: list = field(default_factory=list)


def acceptance_table(decisions: pd.DataFrame, n_levels: int = 4) -> pd.DataFrame:
    """Per round and requested level: generated (after cleaning), agreed, relabelled, accepted
    and the accepted share.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    rows = []
    for (rnd, lv), g in decisions.groupby(["round", "level"]):
        rows.append({"round": int(rnd), "requested level": int(lv), "generated": len(g),
                     "agree": int((g["decision"] == "agree").sum()),
                     "relabel": int((g["decision"] == "relabel").sum()),
                     "accepted": int(g["accepted"].sum()), "accepted share": float(g["accepted"].mean())})
    columns = ["round", "requested level", "generated", "agree", "relabel", "accepted", "accepted share"]
    return pd.DataFrame(rows, columns=columns).set_index(["round", "requested level"])


def collaborate(data, human: pd.DataFrame, scorer, doc_ids: Sequence[str], *, rounds: int = 2,
                train_query_model: Callable[[list[tuple[str, str]], int], object],
                level_weights: Mapping[int, float] | None = None, threshold: float = 0.5,
                mode: str = "drop", n_samples: int = 1, temperature: float = 0.0,
                score_steps: int | None = None, score_batch_size: int = 16, first_query_model=None,
                n_levels: int | None = None, seed: int = SEED) -> LoopResult:
    """The SSRA-style loop for ``rounds`` rounds.

    Round r: fine-tune the query model on human pairs plus every pair accepted so far
    (``train_query_model(examples, r)``; round 1 may reuse ``first_query_model``) -> write
    queries for this round's documents at levels drawn with ``level_weights`` (default weighted
    toward the middle levels) -> clean and dedupe -> the score model re-annotates -> accept,
    relabel or drop (:func:`accept`) -> the accepted pairs join both training sets, and the
    score model is retrained on human + accepted pairs before the next round
    (:func:`train_score_model`, ``max_steps=score_steps``: an embedding score model is refitted,
    ``None`` meaning its default epochs; a cross-encoder trains ``score_steps`` more steps). ``doc_ids`` are split evenly over the rounds. ``scorer`` is trained in place.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    n_levels = n_levels or scorer.num_labels
    check_score_model(scorer, n_levels)
    check_levels(human["level"], n_levels)
    if rounds < 1:
        raise GradedError(f"rounds={rounds}: run at least one round")
    if len(doc_ids) < rounds:
        raise GradedError(f"{len(doc_ids)} documents for {rounds} rounds: need at least one per round")
    assert_no_eval_leak(human, data, "human pairs")
    if level_weights is None:
        level_weights = default_level_weights(n_levels)
    requests_per_round = round_requests(doc_ids, rounds, level_weights, n_levels, seed=seed)
    seen = {(normalize(q), d) for q, d in zip(human["query"], human["doc_id"])}
    accepted = pd.DataFrame(columns=[*PAIR_COLUMNS, "round"])
    decisions, query_models, reports = [], [], []
    for rnd in range(1, rounds + 1):
        train_pairs = pd.concat([human[PAIR_COLUMNS], accepted[PAIR_COLUMNS]], ignore_index=True)
        assert_no_eval_leak(train_pairs, data, f"round {rnd} training pairs")
        qm = first_query_model if (rnd == 1 and first_query_model is not None) else \
            train_query_model(sft_examples(train_pairs, data, n_levels), rnd)
        query_models.append(qm)
        requests = requests_per_round[rnd - 1]
        raw = generate(qm, data, requests, n_levels=n_levels, n=n_samples, temperature=temperature,
                       generator=f"round {rnd}", seed=seed + rnd)
        cleaned = clean(raw, data, seen=seen)
        decided = accept(annotate(scorer, cleaned, data), threshold=threshold, mode=mode)
        decided["round"] = rnd
        decisions.append(decided)
        new = decided[decided["accepted"]]
        new = pd.DataFrame({"query": new["query"], "doc_id": new["doc_id"], "level": new["final_level"].astype(int),
                            "source": "ssra", "round": rnd})
        accepted = pd.concat([accepted, new], ignore_index=True)
        report = {"round": rnd, "generated": len(raw), "cleaned": len(cleaned), "accepted": len(new)}
        if rnd < rounds and len(accepted):
            pool = pd.concat([human[PAIR_COLUMNS], accepted[PAIR_COLUMNS]], ignore_index=True)
            report["score model"] = train_score_model(scorer, pool, data, max_steps=score_steps,
                                                      batch_size=score_batch_size, seed=seed + rnd)
        reports.append(report)
    decisions_df = pd.concat(decisions, ignore_index=True)
    accepted["level"] = accepted["level"].astype(int)
    assert_no_eval_leak(accepted, data, "accepted synthetic pairs")
    return LoopResult(accepted.reset_index(drop=True), decisions_df, acceptance_table(decisions_df, n_levels),
                      scorer, query_models, reports)


def round_requests(doc_ids: Sequence[str], rounds: int, level_weights: Mapping[int, float],
                   n_levels: int = 4, seed: int = SEED) -> list[pd.DataFrame]:
    """The (doc_id, level) requests of every round: ``doc_ids`` split evenly over the rounds,
    levels drawn with ``level_weights`` (round r uses seed ``seed + r``). :func:`collaborate`
    uses exactly these, so a baseline can write queries for the same requests."""
    chunks = np.array_split(np.arange(len(doc_ids)), rounds)
    ids = list(doc_ids)
    return [level_requests([ids[i] for i in chunk], level_weights, n_levels, seed=seed + r)
            for r, chunk in enumerate(chunks, start=1)]


def default_level_weights(n_levels: int = 4) -> dict[int, float]:
    """Weights of the requested levels: the middle levels twice the extremes (4 levels:
    0.1, 0.4, 0.4, 0.1); for 2 levels, even."""
    if n_levels <= 2:
        return {lv: 1.0 for lv in range(n_levels)}
    w = {lv: (2.0 if 0 < lv < n_levels - 1 else 0.5) for lv in range(n_levels)}
    total = sum(w.values())
    return {lv: v / total for lv, v in w.items()}


# --------------------------------------------------------------------------------------------
# the balanced graded training set and the embedding model
# --------------------------------------------------------------------------------------------


def balance(human: pd.DataFrame, synthetic: pd.DataFrame | None, target: Mapping[int, int], *,
            seed: int = SEED) -> pd.DataFrame:
    """Sample a training set to the ``target`` histogram ``{level: pairs}``: human pairs first,
    synthetic pairs fill what the human pool lacks at each level (a level short of both stays
    short). Columns: query, doc_id, level, source.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    parts = []
    synthetic = synthetic if synthetic is not None else pd.DataFrame(columns=PAIR_COLUMNS)
    for lv, want in sorted(target.items()):
        h = human[human["level"] == lv][PAIR_COLUMNS]
        h = h.sample(min(len(h), int(want)), random_state=seed)
        s = synthetic[synthetic["level"] == lv][PAIR_COLUMNS]
        s = s.sample(min(len(s), int(want) - len(h)), random_state=seed)
        parts += [h, s]
    out = pd.concat(parts, ignore_index=True)
    return out.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def embedding_dataset(pairs: pd.DataFrame, data, n_levels: int = 4):
    """A ``datasets.Dataset`` (anchor, positive, score = level / top level) for CoSENT."""
    from datasets import Dataset

    check_levels(pairs["level"], n_levels)
    return Dataset.from_dict({"anchor": list(pairs["query"]),
                              "positive": [data.doc_text(d) for d in pairs["doc_id"]],
                              "score": [float(lv) / (n_levels - 1) for lv in pairs["level"]]})


def train_embedder(model, pairs: pd.DataFrame, data, *, max_steps: int, batch_size: int = 16,
                   learning_rate: float = 2e-5, n_levels: int = 4, seed: int = SEED) -> dict:
    """Fine-tune a bi-encoder on graded pairs with CoSENT over ``level / top level`` (ranks
    every pair of pairs in a batch by their grades) through :func:`cookbook.finetune.fit`.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    try:
        from sentence_transformers.sentence_transformer.losses import CoSENTLoss
    except ImportError:  # older sentence-transformers
        from sentence_transformers.losses import CoSENTLoss

    from cookbook.finetune import fit

    assert_no_eval_leak(pairs, data, "embedding training pairs")
    return fit(model, embedding_dataset(pairs, data, n_levels), CoSENTLoss(model), max_steps=max_steps,
               batch_size=batch_size, learning_rate=learning_rate, seed=seed)


# --------------------------------------------------------------------------------------------
# the fine-distinction measure
# --------------------------------------------------------------------------------------------


def distinction_pairs(data, split: str = "test", *, n_zero: int = 5, kinds: Sequence[str] | None = None,
                      seed: int = SEED) -> pd.DataFrame:
    """The document pairs the fine-distinction measure checks: per query of ``split``, every
    (grade g+1, grade g) pair of adjacent grades among its judged documents, with grade-0
    documents drawn at random (``n_zero`` per query) from the unjudged ones. ``kinds`` keeps only
    some (e.g. ``("2>1", "1>0")``). Columns: qid, higher, lower, kind.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    if split not in data.qrels or not data.qrels[split]:
        raise GradedError(f"data has no {split!r} qrels; available: {sorted(data.qrels)}")
    rng = random.Random(seed)
    doc_ids = sorted(data.corpus)
    rows = []
    for q in sorted(data.qrels[split]):
        judged = data.qrels[split][q]
        by_grade: dict[int, list[str]] = {}
        for d, g in sorted(judged.items()):
            by_grade.setdefault(int(g), []).append(d)
        zeros = [d for d in rng.sample(doc_ids, min(len(doc_ids), n_zero + len(judged))) if d not in judged]
        by_grade.setdefault(0, []).extend(zeros[:n_zero])
        top = max(by_grade)
        for g in range(top):
            if kinds is not None and f"{g + 1}>{g}" not in kinds:
                continue
            for hi in by_grade.get(g + 1, []):
                for lo in by_grade.get(g, []):
                    rows.append({"qid": q, "higher": hi, "lower": lo, "kind": f"{g + 1}>{g}"})
    return pd.DataFrame(rows, columns=["qid", "higher", "lower", "kind"])


def default_kinds(n_levels: int) -> tuple[str, ...]:
    """The adjacent-grade pairs below the top pair: ("2>1", "1>0") for 4 levels, ("1>0",) for 2."""
    top = n_levels - 1 if n_levels <= 2 else n_levels - 2
    return tuple(f"{g + 1}>{g}" for g in range(top - 1, -1, -1))


def fine_distinction_accuracy(scorer, data, split: str = "test", *, n_zero: int = 5,
                              kinds: Sequence[str] | None = None, batch_size: int = 64,
                              seed: int = SEED) -> dict:
    """Share of adjacent-grade document pairs, (2, 1) and (1, 0) on grades 0-3, that ``scorer``
    orders correctly for the queries of ``split``: a test of sensitivity to subtle differences.

    ``scorer``: a run ``{qid: {doc_id: score}}`` (a document missing from a query's run scores
    below every listed one; two missing ones are a tie), a :class:`cookbook.retrieval.DenseIndex`
    (reuses its document embeddings) or a SentenceTransformer (encodes what it needs). Ties
    count one half. ``kinds`` defaults to :func:`default_kinds` (the middle of the scale).
    Returns ``{kind: accuracy, ..., "all": accuracy, "pairs": {kind: count}, "per_query": Series}``.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    from cookbook.retrieval import encode

    kinds = tuple(kinds) if kinds is not None else default_kinds(n_levels_of(data))
    pairs = distinction_pairs(data, split, n_zero=n_zero, kinds=kinds, seed=seed)
    if pairs.empty:
        raise GradedError(f"split {split!r} has no adjacent-grade document pairs to compare")
    if isinstance(scorer, Mapping):
        def score(q, d):
            return scorer.get(q, {}).get(d, -np.inf)
    else:
        qids = sorted(pairs["qid"].unique())
        if hasattr(scorer, "embeddings") and hasattr(scorer, "ids"):
            model, pos = scorer.model, {d: i for i, d in enumerate(scorer.ids)}
            doc_emb = scorer.embeddings
        else:
            model = scorer
            needed = sorted(set(pairs["higher"]) | set(pairs["lower"]))
            pos = {d: i for i, d in enumerate(needed)}
            doc_emb = encode(model, [data.doc_text(d) for d in needed], batch_size=batch_size)
        q_emb = encode(model, [data.queries[q] for q in qids], batch_size=batch_size)
        qpos = {q: i for i, q in enumerate(qids)}

        def score(q, d):
            return float(q_emb[qpos[q]] @ doc_emb[pos[d]])
    hi = np.array([score(q, d) for q, d in zip(pairs["qid"], pairs["higher"])])
    lo = np.array([score(q, d) for q, d in zip(pairs["qid"], pairs["lower"])])
    pairs = pairs.assign(correct=np.where(hi > lo, 1.0, np.where(hi == lo, 0.5, 0.0)))
    out: dict = {kind: float("nan") for kind in kinds}  # a kind without pairs stays NaN
    out.update({kind: float(g["correct"].mean()) for kind, g in pairs.groupby("kind")})
    out["all"] = float(pairs["correct"].mean())
    out["pairs"] = {kind: int((pairs["kind"] == kind).sum()) for kind in kinds}
    out["per_query"] = pairs.groupby("qid")["correct"].mean().rename("fine-distinction accuracy")
    return out


def paired_per_query(a: pd.Series, b: pd.Series) -> dict:
    """Paired t-test, Wilcoxon and a bootstrap 95% interval of the mean difference of two
    per-query score series (B minus A), over the queries both have."""
    from scipy import stats

    both = pd.concat([a.rename("a"), b.rename("b")], axis=1).dropna()
    diff = (both["b"] - both["a"]).to_numpy()
    out = {"queries": int(len(diff)), "mean_a": float(both["a"].mean()), "mean_b": float(both["b"].mean()),
           "diff": float(diff.mean()) if len(diff) else 0.0}
    if len(diff) < 2 or np.allclose(diff, 0):
        return {**out, "t_p": 1.0, "wilcoxon_p": 1.0, "ci_low": out["diff"], "ci_high": out["diff"]}
    from cookbook.evaluate import bootstrap_ci

    low, high = bootstrap_ci(diff)
    return {**out, "t_p": float(stats.ttest_rel(both["b"], both["a"]).pvalue),
            "wilcoxon_p": float(stats.wilcoxon(diff).pvalue), "ci_low": low, "ci_high": high}


# --------------------------------------------------------------------------------------------
# the whole recipe
# --------------------------------------------------------------------------------------------


def _zero_shot_pairs(data, llm, doc_ids, n_levels: int, seed: int, n_samples: int = 2) -> pd.DataFrame:
    """Without a train split: sampled top-level queries from the prompted model (zero-shot) for
    some documents, each also paired with a random other document at level 0."""
    requests = pd.DataFrame({"doc_id": list(doc_ids), "level": n_levels - 1})
    gen = clean(generate(llm, data, requests, n_levels=n_levels, n=n_samples, temperature=0.8,
                         generator="zero-shot", seed=seed), data, min_words=1, max_words=32)
    rng = random.Random(seed)
    others = sorted(data.corpus)
    rows = []
    for i, (q, d) in enumerate(zip(gen["query"], gen["doc_id"])):
        rows.append({"qid": f"zs{i}", "query": q, "doc_id": d, "level": n_levels - 1, "source": "zero-shot"})
        neg = rng.choice([x for x in others if x != d])
        rows.append({"qid": f"zs{i}", "query": q, "doc_id": neg, "level": 0, "source": "zero-shot"})
    return pd.DataFrame(rows, columns=["qid", *PAIR_COLUMNS])


def recipe(data, out_dir, *, embedder=None, llm=None, steps: int | None = None, seed: int = SEED,
           **sizes) -> dict:
    """The whole technique on any ``RetrievalData``; saves the bi-encoder to ``out_dir/"model"``.

    Human pool (train split; without one, zero-shot top-level queries from ``llm`` plus random
    level-0 documents) -> score model -> LoRA query model (when ``llm`` is a
    :class:`cookbook.llm.LocalLLM`, else ``llm`` itself writes queries, prompted) -> ``rounds``
    of the collaborative loop -> balanced training set -> the embedder fine-tuned with CoSENT.
    ``sizes``: ``n_docs`` (40 documents to write for), ``n_samples`` (2 sampled queries per
    request, temperature 0.8), ``rounds`` (2), ``threshold`` (0.5),
    ``mode`` ("drop"), ``score_kind`` ("embedding": a softmax head on the frozen embeddings of the
    base embedder; "cross-encoder"), ``score_steps`` (the embedding head's default epochs; 40 for
    a cross-encoder), ``lora_steps`` (10), ``per_level`` (200 pairs per
    level in the balanced set), ``batch_size`` (16), ``depth`` (10), ``max_queries`` (300).
    Returns a JSON-able report; ``before``/``after``/``comparison`` need a test split.

    Taught in: notebooks/30_synthesize_graded_relevance.ipynb
    """
    from cookbook import evaluate, models, retrieval
    from cookbook.config import seed_everything
    from cookbook.llm import LocalLLM
    from cookbook.models import save_model
    from cookbook.recipes import default_models

    known = {"n_docs", "n_samples", "rounds", "threshold", "mode", "score_kind", "score_steps", "lora_steps", "per_level",
             "batch_size", "depth", "max_queries", "max_length"}
    if set(sizes) - known:
        raise TypeError(f"unknown size(s) {sorted(set(sizes) - known)}; known: {sorted(known)}")
    started = time.perf_counter()
    seed_everything(seed)
    base, llm = default_models(embedder, llm)
    index = retrieval.DenseIndex(base, data)
    n_levels = n_levels_of(data)
    order = sorted(data.corpus)
    random.Random(seed).shuffle(order)
    n_docs = min(sizes.get("n_docs", 40), len(order))
    with llm.track() as usage:
        if data.qrels.get("train"):
            human = human_pairs(data, "train", retriever=index, depth=sizes.get("depth", 10),
                                max_queries=sizes.get("max_queries", 300), seed=seed)
        else:
            human = _zero_shot_pairs(data, llm, order[:n_docs], n_levels, seed, sizes.get("n_samples", 2))
        if human.empty:
            raise GradedError("no human or zero-shot pairs to start from")
        kind = sizes.get("score_kind", "embedding")
        score_steps = sizes.get("score_steps", 40 if kind == "cross-encoder" else None)
        if kind == "embedding":  # a frozen copy: the embedder itself is fine-tuned below
            import copy

            scorer = score_model(n_levels, kind=kind, embedder=copy.deepcopy(base), seed=seed)
            score_train = human  # the head weighs the levels itself (class weights)
        else:
            scorer = score_model(n_levels, kind=kind, embedder=embedder, max_length=sizes.get("max_length", 128),
                                 seed=seed)
            score_train = balanced_sample(human, sizes.get("per_level", 200), seed)
        train_score_model(scorer, score_train, data, max_steps=score_steps,
                          batch_size=sizes.get("batch_size", 16), seed=seed)
        if isinstance(llm, LocalLLM):
            def train_qm(examples, rnd):
                # the cache name carries the adapter's fingerprint: no clash with other runs
                return fine_tune_query_model(examples, steps=sizes.get("lora_steps", 10), tokenizer=llm.tokenizer,
                                             model=llm.model, cache=llm.cache, seed=seed + rnd)
            first = None
        else:  # a remote or scripted LLM: prompted with few-shot examples of every level
            shots = few_shot_by_level(human, data, seed=seed)

            class _Prompted:
                def __init__(self, inner):
                    self.inner = inner

                def generate(self, prompts, **kw):
                    head = instruction(n_levels)
                    block = "".join(f"Entry: {_clip(d, 24)}\nLevel: {lv}\nQuery: {q}\n\n" for d, lv, q in shots)
                    return self.inner.generate([p.replace(head, head + block, 1) for p in prompts], **kw)

            first = _Prompted(llm)

            def train_qm(examples, rnd):
                return first
        loop = collaborate(data, human, scorer, order[:n_docs], rounds=sizes.get("rounds", 2),
                           train_query_model=train_qm, first_query_model=first,
                           threshold=sizes.get("threshold", 0.5), mode=sizes.get("mode", "drop"),
                           n_samples=sizes.get("n_samples", 2), temperature=0.8,
                           score_steps=score_steps if kind == "embedding" else max(1, score_steps // 2), seed=seed)
    per_level = sizes.get("per_level", 200)
    train_set = balance(human, loop.accepted, {lv: per_level for lv in range(n_levels)}, seed=seed)
    batch_size = min(sizes.get("batch_size", 16), len(train_set))
    steps = steps or max(1, -(-len(train_set) // batch_size))
    model = embedder if embedder is not None else models.load_embedder()
    if model is base:  # keep the base model for the "before" run
        import copy

        base_run_model = copy.deepcopy(base)
    else:
        base_run_model = base
    report = train_embedder(model, train_set, data, max_steps=steps, batch_size=batch_size,
                            n_levels=n_levels, seed=seed)
    path = save_model(model, Path(out_dir) / "model")
    out = {"recipe": "graded", "n_levels": n_levels, "human_pairs": int(len(human)),
           "synthetic_accepted": int(len(loop.accepted)), "train_pairs": int(len(train_set)),
           "score_model": kind, "histogram_before": {str(k): v for k, v in level_histogram(human, n_levels).items()},
           "histogram_after": {str(k): v for k, v in level_histogram(train_set, n_levels).items()},
           "acceptance": {f"round {r} level {lv}": float(v) for (r, lv), v in
                          loop.table["accepted share"].items()} if len(loop.table) else {},
           "steps": report["steps"], "train_loss": report["loss"], "model": str(path)}
    if data.qrels.get("test"):
        queries, qrels = data.split_queries("test"), data.qrels["test"]
        before = retrieval.dense_search(base_run_model, data, queries)
        after = retrieval.dense_search(model, data, queries)
        out["before"] = dict(evaluate.evaluate(before, qrels, ("nDCG@10", "R@10"))[0])
        out["after"] = dict(evaluate.evaluate(after, qrels, ("nDCG@10", "R@10"))[0])
        out["comparison"] = evaluate.compare(before, after, qrels, "nDCG@10")
        try:
            fd_b = fine_distinction_accuracy(base_run_model, data, "test", seed=seed)
            fd_a = fine_distinction_accuracy(model, data, "test", seed=seed)
            out["before"]["fine distinction"], out["after"]["fine distinction"] = fd_b["all"], fd_a["all"]
        except GradedError:
            pass
    out["llm_usage"] = usage.as_dict()
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out
