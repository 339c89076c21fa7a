"""BiXSE: binary cross-entropy over graded relevance with in-batch negatives, for bi-encoders.

The loss follows our reading of Tsirigotis et al., "BiXSE: Improving Dense Retrieval via
Probabilistic Graded Relevance Distillation" (COLM 2025, arXiv 2508.06781), whose code is not
public. For a batch of ``B`` labelled pairs ``(q_i, d_i, y_i)`` with ``y_i`` in ``[0, 1]``::

    z_ij = t * cos(q_i, d_j) + b          t = exp(t') > 0 and b learnable
    y_ij = y_i if i == j else 0           the other queries' documents are negatives
    loss = mean_ij BCEWithLogits(z_ij, y_ij)

Every pair contributes, whatever its grade: a grade-0 pair is a labelled negative, a grade-2
pair a "probably relevant" target, so one judged document per query is enough (InfoNCE can only
use the positives). Where t and b start decides whether the loss acts: SigLIP's t = 10, b = -10
(Zhai et al. 2023) keep every probability below 0.5 at MiniLM's cosines, so
:func:`starting_values` sets them from the base model's cosines on training batches
(:func:`batch_cosines`): ``b = -t c*`` with ``c*`` between the labelled and the in-batch pairs.
They learn at their own learning rate (:meth:`BiXSELoss.learning_rate_mapping`).

sentence-transformers has no such bi-encoder loss (its ``BinaryCrossEntropyLoss`` scores
cross-encoder pairs), so :class:`BiXSELoss` is one, with the same interface as its losses.
Around it:

* starting values: :func:`batch_cosines`, :func:`starting_values`, :func:`start_probabilities`;
* targets: :class:`GradeTargets` (grade / top grade) and :func:`llm_targets` (the small LLM's
  query likelihood, calibrated to P(grade >= threshold) with a logistic fit, :func:`fit_logistic`);
* data: :func:`draw_labelled_pairs` (one judged or retrieved document per query, so every grade
  occurs), :func:`pairs_dataset`, :func:`validate_dataset`, :func:`corrupt_labels` (label noise);
* measures: :func:`pair_scores` (the score of every judged test pair, by grade); the
  fine-distinction share (is a grade-2 document scored above a grade-1 one?) is
  :func:`cookbook.evaluate.fine_distinction_accuracy`;
* the whole technique on any :class:`cookbook.beir.RetrievalData`: :mod:`cookbook.recipes.bixse`.

Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

import numpy as np
import pandas as pd

from cookbook.config import SEED
from cookbook.evaluate import relevance_thresholds
from cookbook.retrieval import encode

try:  # torch is a dependency; only the base class is needed at import time
    from torch import nn as _nn

    _Module = _nn.Module
except ImportError:  # pragma: no cover
    _Module = object


class BiXSEInputError(ValueError):
    """Labels or a dataset that BiXSE cannot train on (missing, NaN, outside [0, 1], bad shape)."""


# ------------------------------------------------------------------------------------ targets


class GradeTargets:
    """The structural target mapping ``grade / max_grade`` (grades 0-3 -> 0, 1/3, 2/3, 1).

    Binary labels (``max_grade=1``) stay 0 and 1. Grades outside ``[0, max_grade]`` are an error.

    Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
    """

    def __init__(self, max_grade: int = 3):
        if not max_grade or max_grade <= 0:
            raise BiXSEInputError(f"max_grade={max_grade!r} must be a positive grade")
        self.max_grade = max_grade

    def __call__(self, grades):
        return grades / self.max_grade

    def __repr__(self) -> str:
        return f"GradeTargets(max_grade={self.max_grade})"


def check_targets(values, where: str = "labels") -> None:
    """Raise :class:`BiXSEInputError` unless every value is a finite number in ``[0, 1]``.

    Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
    """
    arr = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=float).ravel()
    bad_nan = np.flatnonzero(~np.isfinite(arr))
    if len(bad_nan):
        raise BiXSEInputError(f"{where}: {len(bad_nan)} value(s) are NaN or infinite "
                              f"(first at position {int(bad_nan[0])})")
    bad = np.flatnonzero((arr < 0) | (arr > 1))
    if len(bad):
        raise BiXSEInputError(
            f"{where}: {len(bad)} value(s) outside [0, 1] (first: {arr[bad[0]]!r} at position "
            f"{int(bad[0])}); map grades to probabilities first, e.g. BiXSELoss(model, "
            f"targets=GradeTargets(3)) or labels = grade / 3")


def fit_logistic(x, y, l2: float = 1e-2, weights=None) -> tuple[float, float]:
    """``(slope, intercept)`` of ``P(y = 1 | x) = sigmoid(slope * x + intercept)``, by maximum likelihood.

    A small L2 penalty (on standardised ``x``) keeps the fit finite when the classes separate or
    only one class occurs. scipy's L-BFGS; no scikit-learn needed.

    Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
    """
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise BiXSEInputError(f"fit_logistic needs two 1-d arrays of the same length, got {x.shape} and {y.shape}")
    check_targets(y, "fit_logistic labels")
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    mu, sd = float(x.mean()), float(x.std()) or 1.0
    xs = (x - mu) / sd

    def nll(theta):
        a, c = theta
        z = a * xs + c
        value = -(w * (y * log_expit(z) + (1 - y) * log_expit(-z))).sum() / w.sum() + l2 * (a * a + c * c)
        p = expit(z)
        grad = np.array([(w * (p - y) * xs).sum(), (w * (p - y)).sum()]) / w.sum() + 2 * l2 * theta
        return value, grad

    a, c = minimize(nll, np.zeros(2), jac=True, method="L-BFGS-B").x
    return float(a / sd), float(c - a * mu / sd)


def llm_targets(llm, data, pairs: pd.DataFrame, *, threshold: int | None = None,
                calibration: pd.DataFrame | None = None, max_doc_words: int = 64) -> tuple[pd.Series, dict]:
    """LLM-derived targets: ``sigmoid(slope * log p(query | doc) + intercept)`` per pair.

    ``log p(query | doc)`` (per query token) comes from ``llm.query_likelihood`` and so goes
    through the LLM cache. The logistic fit maps it to ``P(grade >= threshold)`` on the
    ``calibration`` pairs (default: ``pairs`` themselves; they need a ``grade`` column);
    ``threshold`` defaults to the recall threshold of ``data``'s qrels (2 for grades 0-3, 1 for
    binary labels). The grades enter only through these two numbers. Returns the targets (index
    of ``pairs``) and ``{"slope", "intercept", "threshold", "ql"}``.

    Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
    """

    _check_pairs(pairs, data)
    calib = pairs if calibration is None else calibration
    if "grade" not in calib.columns:
        raise BiXSEInputError("llm_targets: the calibration pairs need a 'grade' column")
    if threshold is None:
        all_qrels = {f"{s}/{q}": docs for s, rows in data.qrels.items() for q, docs in rows.items()}
        threshold = relevance_thresholds(all_qrels)["recall"]
    frames = [pairs] if calibration is None else [pairs, calib]
    scored = []
    for frame in frames:
        ql = llm.query_likelihood(list(frame["query"]), [data.doc_text(d) for d in frame["doc_id"]],
                                  max_doc_words=max_doc_words, desc="BiXSE targets")
        scored.append(np.asarray(ql, dtype=float))
    ql_pairs, ql_calib = scored[0], scored[-1]
    slope, intercept = fit_logistic(ql_calib, (calib["grade"].to_numpy() >= threshold).astype(float))
    from scipy.special import expit

    targets = pd.Series(expit(slope * ql_pairs + intercept), index=pairs.index, name="target_llm")
    return targets, {"slope": slope, "intercept": intercept, "threshold": int(threshold),
                     "ql": pd.Series(ql_pairs, index=pairs.index, name="ql")}


# --------------------------------------------------------------------------------------- loss


class BiXSELoss(_Module):
    """BiXSE for ``SentenceTransformerTrainer``: BCE over the batch's query x document logits.

    Reads (anchor, positive[, negative ...]) columns and a float label per row (the target of
    the (anchor, positive) pair; every other document of the batch, including extra negative
    columns, has target 0). ``targets`` maps the raw labels first (for example
    ``GradeTargets(3)`` for grades 0-3); after it every label must lie in ``[0, 1]``.

    The logits are ``exp(log_scale) * cos + bias``: two plain parameters, learned unless
    ``learn_scale`` / ``learn_bias`` is False (the scale is stored as a log so it stays
    positive). Start them from the data with :func:`starting_values` (the defaults 10 and -10
    are SigLIP's, which switch BiXSE off on a MiniLM: no probability above 0.5). The trainer's
    optimizer updates them with the model; give them their own learning rate with
    ``fit(..., learning_rate_mapping=loss.learning_rate_mapping(1e-2))`` (sentence-transformers'
    per-parameter learning rates; at an encoder's 2e-5 they would stay where they started).
    During training each forward appends ``(scale, bias)`` to ``history``.

    Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
    """

    def __init__(self, model, scale: float = 10.0, bias: float = -10.0, *, learn_scale: bool = True,
                 learn_bias: bool = True, targets=None):
        import torch

        super().__init__()
        if not scale > 0:
            raise BiXSEInputError(f"scale={scale!r} must be positive")
        self.model = model
        self.targets = targets
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(scale)), requires_grad=learn_scale)
        self.bias = torch.nn.Parameter(torch.tensor(float(bias)), requires_grad=learn_bias)
        self.history: list[tuple[float, float]] = []

    @property
    def scale(self):
        """The current scale ``t = exp(log_scale)`` (a tensor that carries the gradient)."""
        return self.log_scale.exp()

    def learning_rate_mapping(self, learning_rate: float = 1e-2) -> dict[str, float]:
        """``{parameter name pattern: learning rate}`` for the learnable scale and bias, the
        ``learning_rate_mapping`` of sentence-transformers' training arguments (anchored
        patterns: the encoder's own ``...bias`` parameters keep the encoder's rate)."""
        names = [n for n, p in (("log_scale", self.log_scale), ("bias", self.bias)) if p.requires_grad]
        return {f"^{n}$": float(learning_rate) for n in names}

    def logits(self, queries, documents):
        """``t * cos(q_i, d_j) + b`` for every query row and document row."""
        import torch.nn.functional as F

        return self.scale * (F.normalize(queries, dim=-1) @ F.normalize(documents, dim=-1).T) + self.bias

    def compute_loss_from_embeddings(self, embeddings, labels):
        import torch
        import torch.nn.functional as F

        if labels is None:
            raise BiXSEInputError(
                "BiXSELoss needs a float label per row: add a 'label' (or 'score') column with the "
                "target of each (anchor, positive) pair")
        if len(embeddings) < 2:
            raise BiXSEInputError(f"BiXSELoss needs (anchor, positive[, negatives]) columns, got {len(embeddings)}")
        queries, documents = embeddings[0], torch.cat(embeddings[1:], dim=0)
        batch = queries.shape[0]
        labels = labels.reshape(-1).to(queries.device, dtype=queries.dtype)
        if labels.numel() != batch:
            raise BiXSEInputError(f"BiXSELoss expects one label per row ({batch}), got {labels.numel()}")
        if self.targets is not None:
            labels = self.targets(labels)
        check_targets(labels, "BiXSELoss labels")
        z = self.logits(queries, documents)
        y = torch.zeros_like(z)
        idx = torch.arange(batch, device=z.device)
        y[idx, idx] = labels
        if self.training:
            self.history.append((float(self.scale.detach()), float(self.bias.detach())))
        return F.binary_cross_entropy_with_logits(z, y)

    def forward(self, sentence_features, labels):
        from sentence_transformers.base.losses.merged_forward import embed_columns

        if labels is None:  # fail before spending a forward pass
            return self.compute_loss_from_embeddings([], None)
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    def get_config_dict(self) -> dict:
        return {"scale": round(float(self.scale.detach()), 4), "bias": round(float(self.bias.detach()), 4),
                "learn_scale": self.log_scale.requires_grad, "learn_bias": self.bias.requires_grad,
                "targets": repr(self.targets)}

    @property
    def citation(self) -> str:
        return ("Tsirigotis et al., BiXSE: Improving Dense Retrieval via Probabilistic Graded "
                "Relevance Distillation, COLM 2025, arXiv:2508.06781")


# ---------------------------------------------------------------------------- starting values


def batch_cosines(model, pairs: pd.DataFrame, data, *, batch_size: int = 16, n_batches: int = 4,
                  seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The base model's cosines on training batches, as the loss sees them.

    Draws ``n_batches`` batches of ``batch_size`` rows of ``pairs`` (seeded, without
    replacement) and returns ``(labelled, in_batch, target)``: the cosine of each labelled
    (query, document) pair, of every other (query, document) pair in its batch, and the
    labelled pairs' targets (the ``target`` column, else ``grade / top grade``).

    Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
    """

    _check_pairs(pairs, data)
    if len(pairs) < 2:
        raise BiXSEInputError(f"batch_cosines needs at least 2 pairs, got {len(pairs)}")
    order = np.random.default_rng(seed).permutation(len(pairs))
    size = min(batch_size, len(pairs))
    labelled, in_batch, target = [], [], []
    for k in range(max(1, min(n_batches, len(pairs) // size))):
        rows = pairs.iloc[order[k * size:(k + 1) * size]]
        q = encode(model, list(rows["query"]))
        d = encode(model, [data.doc_text(x) for x in rows["doc_id"]])
        cos = q @ d.T
        labelled.append(np.diag(cos))
        in_batch.append(cos[~np.eye(len(cos), dtype=bool)])
        if "target" in rows.columns:
            target.append(rows["target"].to_numpy(dtype=float))
        else:
            target.append(rows["grade"].to_numpy(dtype=float) / max(1.0, float(pairs["grade"].max())))
    return np.concatenate(labelled), np.concatenate(in_batch), np.concatenate(target)


def starting_values(labelled, in_batch, target, *, p_positive: float = 0.9, split: float = 0.5,
                    rule: str = "midpoint") -> dict:
    """Scale ``t`` and bias ``b`` from measured cosines, so that the loss starts switched on.

    ``rule="fit"``: ``t`` and ``b`` are the maximum-likelihood logistic fit of the loss's own
    targets (each labelled pair's target, 0 for every in-batch pair) on the measured cosines
    (:func:`fit_logistic`): the start where the BCE is lowest while the encoder is still the
    base model, so the encoder's first gradients carry only what the calibration cannot explain.
    ``c* = -b / t``; ``p_positive`` and ``split`` are not used.

    ``rule="midpoint"`` (the default):

    ``c_pos``: the target-weighted mean cosine of the labelled pairs (what a positive looks like
    to the base model); ``c_neg``: the mean in-batch cosine. The decision point ``c*`` lies
    ``split`` of the way from ``c_neg`` to ``c_pos`` (0.5: halfway) and ``b = -t * c*``, so a
    pair at ``c*`` starts at probability 0.5. ``t`` puts a typical positive at ``p_positive``:
    ``t (c_pos - c*) = logit(p_positive)``; a typical in-batch pair then starts near
    ``1 - p_positive`` (when ``split`` = 0.5), and both ends of ``[0, 1]`` are reachable: cosines
    run from -1 to 1, so logits from ``-t (1 + c*)`` to ``t (1 - c*)`` (``p_min``, ``p_max``). Returns ``{"scale", "bias", "c_star", "c_pos", "c_neg", "p_max", "p_min"}``.

    Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
    """
    labelled, in_batch, target = (np.asarray(x, dtype=float) for x in (labelled, in_batch, target))
    if not 0.5 < p_positive < 1 or not 0 < split < 1:
        raise BiXSEInputError(f"p_positive={p_positive!r} must be in (0.5, 1) and split={split!r} in (0, 1)")
    if target.sum() <= 0:
        raise BiXSEInputError("starting_values: no labelled pair has a target above 0")
    if rule not in ("midpoint", "fit"):
        raise BiXSEInputError(f"starting_values: unknown rule {rule!r}; use 'midpoint' or 'fit'")
    c_pos = float((target * labelled).sum() / target.sum())
    c_neg = float(in_batch.mean())
    if c_pos <= c_neg:
        raise BiXSEInputError(f"labelled pairs (cosine {c_pos:.3f}) are not closer than in-batch pairs "
                              f"({c_neg:.3f}): the base model cannot place a decision point between them")
    if rule == "fit":
        scale, bias = fit_logistic(np.concatenate([labelled, in_batch]),
                                   np.concatenate([target, np.zeros(len(in_batch))]), l2=0.0)
        if scale <= 0:
            raise BiXSEInputError(f"starting_values: the logistic fit has scale {scale:.3f} <= 0 (targets do not "
                                  "rise with cosine on these batches); use rule='midpoint'")
        c_star = -bias / scale
    else:
        c_star = c_neg + split * (c_pos - c_neg)
        scale = math.log(p_positive / (1 - p_positive)) / (c_pos - c_star)
        bias = -scale * c_star
    return {"scale": scale, "bias": bias, "c_star": c_star, "c_pos": c_pos, "c_neg": c_neg,
            "p_max": 1 / (1 + math.exp(-(scale + bias))), "p_min": 1 / (1 + math.exp(scale - bias))}


def start_probabilities(labelled, in_batch, target, scale: float, bias: float) -> dict:
    """Mean probability ``sigmoid(t cos + b)`` of the labelled pairs per target value and of the
    in-batch pairs (``|p - y|`` is the size of each one's BCE gradient on the logit).

    Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
    """
    def prob(c):
        return 1 / (1 + np.exp(-(scale * np.asarray(c, dtype=float) + bias)))

    out = {}
    for y in sorted(set(np.round(np.asarray(target, dtype=float), 4))):
        mask = np.isclose(target, y, atol=1e-4)
        out[f"labelled, target {y:.2f}"] = float(prob(np.asarray(labelled)[mask]).mean())
    out["in-batch (target 0)"] = float(prob(in_batch).mean())
    return out


# --------------------------------------------------------------------------------------- data


def _check_pairs(pairs: pd.DataFrame, data, columns=("query", "doc_id")) -> None:
    missing = [c for c in columns if c not in pairs.columns]
    if missing:
        raise BiXSEInputError(f"pairs lack column(s) {missing}; they have {list(pairs.columns)}")
    unknown = sorted(set(pairs["doc_id"]) - set(data.corpus))
    if unknown:
        raise BiXSEInputError(f"pairs name {len(unknown)} document(s) not in the corpus, e.g. {unknown[0]!r}")


def draw_labelled_pairs(data, split: str = "train", candidates: Mapping[str, Mapping[str, float]] | None = None,
                        *, n_candidates: int = 20, balance_grades: bool = True, qids=None,
                        seed: int = SEED) -> pd.DataFrame:
    """One labelled (query, document, grade) pair per query of ``split``.

    The document is drawn from the query's pool: its judged documents plus the top
    ``n_candidates`` of ``candidates`` (a run of the base retriever; unjudged ones get grade 0),
    so every grade, including 0, can occur. ``balance_grades=True`` first draws a grade
    uniformly among those in the pool, then a document of that grade (otherwise the frequent
    grade 1 dominates); ``False`` draws uniformly from the pool. Returns columns ``qid``,
    ``query``, ``doc_id``, ``grade``, ``pool`` (the pool's size).

    Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
    """
    if split not in data.qrels:
        raise BiXSEInputError(f"no split {split!r}; available: {sorted(data.qrels)}")
    rng = random.Random(seed)
    rows = []
    for qid in sorted(qids if qids is not None else data.qrels[split]):
        judged = data.qrels[split][qid]
        pool = {d: int(g) for d, g in judged.items() if d in data.corpus}
        if candidates is not None:
            ranked = sorted(candidates.get(qid, {}).items(), key=lambda kv: -kv[1])[:n_candidates]
            for d, _ in ranked:
                pool.setdefault(d, 0)
        if not pool:
            continue
        if balance_grades:
            grade = rng.choice(sorted(set(pool.values())))
            doc = rng.choice(sorted(d for d, g in pool.items() if g == grade))
        else:
            doc = rng.choice(sorted(pool))
        rows.append({"qid": qid, "query": data.queries[qid], "doc_id": doc, "grade": pool[doc],
                     "pool": len(pool)})
    if not rows:
        raise BiXSEInputError(f"split {split!r} gave no pair: no query has a judged or candidate document")
    return pd.DataFrame(rows)


def pairs_dataset(pairs: pd.DataFrame, data, label_column: str | None = None):
    """A ``datasets.Dataset`` of (anchor, positive[, label]) from a pairs table.

    ``label_column=None`` gives the two text columns (for MNRL); otherwise its values become the
    float ``label`` column (checked: present, finite, in ``[0, 1]``).

    Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
    """
    from datasets import Dataset

    _check_pairs(pairs, data)
    columns = {"anchor": list(pairs["query"]), "positive": [data.doc_text(d) for d in pairs["doc_id"]]}
    if label_column is not None:
        if label_column not in pairs.columns:
            raise BiXSEInputError(f"pairs have no label column {label_column!r}; they have {list(pairs.columns)}")
        labels = pairs[label_column].astype(float).to_numpy()
        check_targets(labels, f"pairs[{label_column!r}]")
        columns["label"] = labels.tolist()
    return Dataset.from_dict(columns)


def validate_dataset(dataset, label_columns=("label", "labels", "score", "scores")) -> str:
    """Check a dataset before BiXSE training; return the name of its label column.

    It needs at least two text columns and one label column (the names the trainer reads)
    whose values are finite and in ``[0, 1]``; each problem is a :class:`BiXSEInputError`
    naming the column and the first bad row.

    Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
    """
    names = list(dataset.column_names)
    found = [c for c in names if c in label_columns]
    if not found:
        raise BiXSEInputError(f"dataset has no label column (one of {list(label_columns)}); "
                              f"its columns are {names}")
    if len(names) - 1 < 2:
        raise BiXSEInputError(f"dataset needs (anchor, positive) text columns besides {found[0]!r}; got {names}")
    check_targets(dataset[found[0]], f"dataset column {found[0]!r} (row = position)")
    return found[0]


def corrupt_labels(pairs: pd.DataFrame, share: float, columns=("grade",), *, seed: int = SEED) -> pd.DataFrame:
    """Label noise: a random ``share`` of the rows get their ``columns`` shuffled among them.

    Each corrupted row takes the labels of another corrupted row (one permutation for all
    ``columns``, so a pair's grade and its LLM target move together), which keeps the label
    histogram and breaks the link between a pair and its label. A ``corrupted`` column marks the
    rows that were drawn (a few may keep their own label by chance).

    Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
    """
    if not 0 <= share <= 1:
        raise BiXSEInputError(f"share={share!r} must be in [0, 1]")
    missing = [c for c in columns if c not in pairs.columns]
    if missing:
        raise BiXSEInputError(f"corrupt_labels: pairs lack column(s) {missing}")
    rng = np.random.default_rng(seed)
    out = pairs.copy()
    chosen = rng.choice(len(out), size=int(round(share * len(out))), replace=False)
    perm = rng.permutation(chosen)
    for c in columns:
        values = out[c].to_numpy().copy()
        values[chosen] = out[c].to_numpy()[perm]
        out[c] = values
    out["corrupted"] = False
    out.iloc[chosen, out.columns.get_loc("corrupted")] = True
    return out


# ----------------------------------------------------------------------------------- measures


def _embed_scores(model, data, qids, doc_lists, embeddings=None, ids=None) -> list[np.ndarray]:

    q = encode(model, [data.queries[x] for x in qids])
    if embeddings is None:
        docs = sorted({d for ds in doc_lists for d in ds})
        pos = {d: i for i, d in enumerate(docs)}
        emb = encode(model, [data.doc_text(d) for d in docs]) if docs else np.zeros((0, q.shape[1]), np.float32)
    else:
        pos, emb = {d: i for i, d in enumerate(ids)}, embeddings
    return [emb[[pos[d] for d in ds]] @ q[i] for i, ds in enumerate(doc_lists)]


def pair_scores(scorer, data, split: str = "test", *, n_unjudged: int = 10, seed: int = SEED) -> pd.DataFrame:
    """Scores of every judged (query, document) pair of ``split`` plus ``n_unjudged`` grade-0 ones.

    ``scorer``: a :class:`cookbook.retrieval.DenseIndex` (reuses its document embeddings), a
    SentenceTransformer (encodes the documents it needs), or a run ``{qid: {doc_id: score}}``
    (a document the run does not hold scores ``-inf``). Grade-0 documents are drawn at random
    (seeded) among the corpus's unjudged documents of each query. Columns: ``qid``, ``doc_id``,
    ``grade``, ``score``.

    Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
    """
    if split not in data.qrels:
        raise BiXSEInputError(f"no split {split!r}; available: {sorted(data.qrels)}")
    rng = random.Random(seed)
    all_docs = sorted(data.corpus)
    qids, doc_lists, grade_lists = [], [], []
    for qid in sorted(data.qrels[split]):
        judged = {d: int(g) for d, g in data.qrels[split][qid].items() if d in data.corpus}
        zeros = []
        if n_unjudged > 0:
            tries = 0
            while len(zeros) < n_unjudged and tries < 20 * n_unjudged and len(judged) < len(all_docs):
                d = rng.choice(all_docs)
                tries += 1
                if d not in judged and d not in zeros:
                    zeros.append(d)
        docs = list(judged) + zeros
        qids.append(qid)
        doc_lists.append(docs)
        grade_lists.append([judged[d] for d in judged] + [0] * len(zeros))
    if isinstance(scorer, Mapping):
        scores = [np.array([scorer.get(q, {}).get(d, -np.inf) for d in ds], dtype=float)
                  for q, ds in zip(qids, doc_lists)]
    elif hasattr(scorer, "embeddings") and hasattr(scorer, "model"):
        scores = _embed_scores(scorer.model, data, qids, doc_lists, scorer.embeddings, scorer.ids)
    else:
        scores = _embed_scores(scorer, data, qids, doc_lists)
    rows = [(q, d, g, float(s)) for q, ds, gs, ss in zip(qids, doc_lists, grade_lists, scores)
            for d, g, s in zip(ds, gs, ss)]
    return pd.DataFrame(rows, columns=["qid", "doc_id", "grade", "score"])
