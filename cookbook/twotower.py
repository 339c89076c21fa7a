"""Two-tower click models for unbiased learning to rank (part 71).

A two-tower model explains a click on document d for query q at position k with two
small networks: a **bias tower** that sees only the position (and optionally a
context feature) and a **relevance tower** that sees only the query-document
features.  Trained on clicks, the relevance tower is what you deploy; the bias tower
soaks up position bias.  Two ways to combine them:

* ``combine="product"`` (default): P(click) = sigmoid(theta_k) * sigmoid(gamma(x)),
  the position-based model written as a network; it is additive in log-probabilities;
* ``combine="additive"``: P(click) = sigmoid(theta_k + gamma(x)), the additive form
  analysed by Hager, Zoeter and de Rijke (ICTIR 2025).

Both share the parameter shift that makes identifiability a question: adding
Delta_k to the bias of position k and subtracting it from every document shown
there leaves all clicks unchanged, unless the log ties positions together (see
:func:`cookbook.ultr.identifiability`). :func:`fit_two_tower` checks it: when the log leaves
positions unconnected to position 1 it warns (:class:`UnidentifiedPositionsWarning`) and
marks them in :attr:`TwoTowerFit.identified`.

Relevance towers: ``"id"`` (one free parameter per query-document pair: no feature
overlap at all), ``"linear"`` and ``"mlp"`` over any feature columns.  Whether a
tower is well-specified depends on the features you give it: with the true grade
among them an MLP can represent user behaviour exactly; over BM25/dense scores and
document statistics alone it cannot.

Training aggregates identical (pair, position) impressions into counts first, so the
binary cross-entropy over a million impressions is a full-batch step over a few
thousand rows (identical loss, much faster).

Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cookbook import clicks, ultr
from cookbook.evaluate import evaluate

__all__ = [
    "UnidentifiedPositionsWarning",
    "TwoTower",
    "TwoTowerFit",
    "fit_two_tower",
    "examination_error",
    "relevance_scores",
    "ndcg_at_10",
    "scores_run",
    "confounding_sweep",
]


class UnidentifiedPositionsWarning(UserWarning):
    """The click log leaves some positions unconnected to position 1 in the rank graph.

    Their examination values are whatever the optimiser's start gives: any other value
    explains the clicks equally well.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """


def _torch():
    import torch

    return torch


def _make_model(n_positions: int, n_features: int, relevance: str, n_pairs: int,
                hidden: int, combine: str, n_context: int, init_bias_std: float = 0.0):
    torch = _torch()
    nn = torch.nn

    class TwoTower(nn.Module):
        """Bias tower (position embedding [+ linear context]) and relevance tower."""

        def __init__(self):
            super().__init__()
            self.combine = combine
            self.relevance_kind = relevance
            self.bias = nn.Embedding(n_positions, 1)
            nn.init.normal_(self.bias.weight, std=init_bias_std) if init_bias_std > 0 else nn.init.zeros_(self.bias.weight)
            self.context = nn.Linear(n_context, 1, bias=False) if n_context else None
            if relevance == "id":
                self.tower = nn.Embedding(n_pairs, 1)
                nn.init.zeros_(self.tower.weight)
            elif relevance == "linear":
                self.tower = nn.Linear(n_features, 1)
            else:
                self.tower = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(),
                                           nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

        def bias_logit(self, position, context=None):
            out = self.bias(position).squeeze(-1)
            if self.context is not None and context is not None:
                out = out + self.context(context).squeeze(-1)
            return out

        def relevance_logit(self, x):
            return self.tower(x).squeeze(-1)

        def log_probs(self, position, x, context=None):
            """(log P(click), log P(no click))."""
            b = self.bias_logit(position, context)
            r = self.relevance_logit(x)
            if self.combine == "product":
                logp = torch.nn.functional.logsigmoid(b) + torch.nn.functional.logsigmoid(r)
                log1m = torch.log1p(-torch.exp(logp).clamp(max=1 - 1e-6))
            else:
                z = b + r
                logp = torch.nn.functional.logsigmoid(z)
                log1m = torch.nn.functional.logsigmoid(-z)
            return logp, log1m

    return TwoTower()


def TwoTower(n_positions: int, n_features: int, relevance: str = "mlp", n_pairs: int = 0, hidden: int = 32,
             combine: str = "product", n_context: int = 0, init_bias_std: float = 0.0):
    """Build the torch two-tower module (the class is defined lazily so ``import cookbook`` stays fast).

    ``model.bias`` is the position embedding (one logit per position), ``model.tower`` the
    relevance tower; ``model.log_probs(position, x)`` returns (log P(click), log P(no click)).

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """
    return _make_model(n_positions, n_features, relevance, n_pairs, hidden, combine, n_context, init_bias_std)


@dataclass
class TwoTowerFit:
    """A trained two-tower model with what is needed to score and inspect it.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """

    model: object
    feature_cols: list
    mean: np.ndarray
    std: np.ndarray
    combine: str
    relevance: str
    n_positions: int
    pair_index: dict = field(default_factory=dict)
    losses: list = field(default_factory=list)
    n_rows: int = 0
    n_impressions: int = 0
    train_seconds: float = 0.0
    identified: np.ndarray | None = None
    components: list = field(default_factory=list)

    def examination(self, identified_only: bool = False) -> np.ndarray:
        """The recovered examination curve, relative to position 1.

        ``product``: sigmoid(theta_k) / sigmoid(theta_1), comparable to a true
        examination curve divided by its first value.  ``additive``: the odds ratio
        exp(theta_k - theta_1).  ``identified_only``: NaN at the positions the log does
        not identify (see :attr:`identified`, filled when the fit checked the rank graph).
        """
        torch = _torch()
        with torch.no_grad():
            theta = self.model.bias.weight.squeeze(-1).double().cpu().numpy()
        if self.combine == "product":
            e = 1.0 / (1.0 + np.exp(-theta))
            e = e / e[0]
        else:
            e = np.exp(theta - theta[0])
        if identified_only and self.identified is not None:
            e = np.where(self.identified, e, np.nan)
        return e

    def score(self, features: np.ndarray) -> np.ndarray:
        """Relevance-tower logits for a (..., n_features) array of raw features."""
        torch = _torch()
        if self.relevance == "id":
            raise ValueError("an 'id' relevance tower scores pairs, not features: use relevance_scores(fit, env)")
        x = (np.asarray(features, dtype=np.float32) - self.mean) / self.std
        with torch.no_grad():
            return self.model.relevance_logit(torch.from_numpy(x.astype(np.float32))).numpy()


def _group_codes(log: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Dense integer codes for the distinct combinations of ``keys`` (fast numpy path)."""
    combined = np.zeros(len(log), dtype=np.int64)
    for k in keys:
        codes = pd.factorize(log[k])[0].astype(np.int64)
        combined = combined * (int(codes.max()) + 1) + codes
    return pd.factorize(combined)[0]


def _aggregate(log: pd.DataFrame, keys: list[str], weights):
    click = np.asarray(log["click"], dtype=np.float64)
    w = np.ones(len(log)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != click.shape:
        raise ValueError(f"sample_weight has {w.size} values for {click.size} impressions")
    if np.any(~np.isfinite(w) | (w < 0)):
        raise ValueError("sample_weight must be finite and non-negative")
    codes = _group_codes(log, keys)
    n = int(codes.max()) + 1
    first = np.full(n, -1, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    wc = np.bincount(codes, weights=w * click, minlength=n)
    wn = np.bincount(codes, weights=w * (1 - click), minlength=n)
    return first, wc, wn


def fit_two_tower(log: pd.DataFrame, relevance: str = "mlp", feature_cols=None, n_positions: int | None = None,
                  combine: str = "product", sample_weight=None, context_cols=None, steps: int = 400,
                  lr: float = 0.05, hidden: int = 32, weight_decay: float = 0.0, seed: int = 13,
                  init_bias_std: float = 0.0, optimizer: str = "lbfgs", fixed_examination=None,
                  num_threads: int | None = 1, check_identifiability: bool = True) -> TwoTowerFit:
    """Train a two-tower model on a click log with binary cross-entropy on clicks.

    ``relevance``: ``"id"`` (a free parameter per query-document pair), ``"linear"``
    or ``"mlp"`` over ``feature_cols`` (default: every ``feat_*`` column).
    ``sample_weight``: one non-negative weight per impression (for example
    :func:`cookbook.ultr.propensity_weights`).  Full batch over impressions
    aggregated by (pair, position[, context]), with L-BFGS (``optimizer="lbfgs"``,
    the default: ``steps`` is its iteration budget) or Adam (``"adam"``, ``steps``
    steps at learning rate ``lr``).  ``weight_decay`` adds an L2 penalty.  ``num_threads``
    (default 1; ``None`` keeps torch's setting) is applied during training only:
    these small full-batch steps run fastest single-threaded on a shared CPU.
    ``init_bias_std`` > 0 starts the position logits at random (seeded) values.
    ``fixed_examination`` (product towers only) pins the
    bias tower to a given examination curve and trains the relevance tower alone:
    compare the final loss under different curves to see whether the log can tell
    them apart.

    ``check_identifiability`` (default on, skipped when the curve is pinned) builds the
    log's rank graph first (:func:`cookbook.ultr.identifiability`: shared pairs for an
    ``"id"`` tower; shared pairs or binned feature vectors for a feature tower, a
    conservative test since a smooth tower also ties near-identical features).  Positions
    outside position 1's component get ``False`` in ``fit.identified`` and an
    :class:`UnidentifiedPositionsWarning` names them: the values ``fit.examination()``
    reports there come from the optimiser's start, not from the clicks.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """
    torch = _torch()
    if relevance not in ("id", "linear", "mlp"):
        raise ValueError(f"relevance must be 'id', 'linear' or 'mlp', got {relevance!r}")
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    if combine not in ("product", "additive"):
        raise ValueError(f"combine must be 'product' or 'additive', got {combine!r}")
    if len(log) == 0:
        raise ValueError("the click log is empty")
    for col in ("position", "click"):
        if col not in log.columns:
            raise ValueError(f"the click log has no {col!r} column")
    pos = np.asarray(log["position"], dtype=np.int64)
    if pos.min() < 1:
        raise ValueError("positions must be 1-based (found a position < 1)")
    n_positions = int(n_positions or pos.max())
    if pos.max() > n_positions:
        raise ValueError(f"the log has position {pos.max()} but n_positions={n_positions}")
    pair_cols = ["q_index", "pool_index"] if {"q_index", "pool_index"} <= set(log.columns) else ["query", "doc"]
    if feature_cols is None:
        feature_cols = [c for c in log.columns if str(c).startswith("feat_")]
    feature_cols = list(feature_cols) if relevance != "id" else []
    missing = [c for c in feature_cols + list(context_cols or []) if c not in log.columns]
    if missing:
        raise ValueError(f"the click log has no column(s) {missing}")
    if relevance != "id" and not feature_cols:
        raise ValueError("a 'linear' or 'mlp' relevance tower needs feature_cols")
    context_cols = list(context_cols or [])

    prev_threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(int(num_threads))
    try:
        fit = _fit(log, relevance, feature_cols, n_positions, combine, sample_weight, context_cols,
                   steps, lr, hidden, weight_decay, seed, pair_cols, init_bias_std, optimizer,
                   fixed_examination)
    finally:
        torch.set_num_threads(prev_threads)
    if check_identifiability and fixed_examination is None:
        _mark_identified(fit, log, n_positions, relevance, feature_cols)
    return fit


def _mark_identified(fit: TwoTowerFit, log: pd.DataFrame, n_positions: int, relevance: str, feature_cols) -> None:
    """Fill ``fit.identified`` / ``fit.components`` from the log's rank graph; warn when positions are free."""

    if not {"query", "doc"} <= set(log.columns):
        return  # no pair identity to build the rank graph from
    report = ultr.identifiability(log, n_positions=n_positions, by="pair")
    by = "pair"
    if not report.connected and relevance != "id":  # features add edges; only needed when pairs do not connect
        by = "both"
        report = ultr.identifiability(log, n_positions=n_positions, by=by, feature_cols=feature_cols or None)
    fit.components = report.components
    fit.identified = ultr.identified_positions(report)
    free = [int(k) + 1 for k in np.flatnonzero(~fit.identified)]
    if free:
        shown = free if len(free) <= 8 else free[:8] + ["..."]
        warnings.warn(
            f"the click log does not identify the examination of position(s) {shown}: the rank graph "
            f"({'shared pairs' if by == 'pair' else 'shared pairs or binned features'}) has "
            f"{len(report.components)} components and these are not connected to position 1, so any "
            "examination value there explains the clicks equally well; fit.identified marks them "
            "(fit.examination(identified_only=True) gives NaN there)",
            UnidentifiedPositionsWarning, stacklevel=3)


def _fit(log, relevance, feature_cols, n_positions, combine, sample_weight, context_cols, steps, lr,
         hidden, weight_decay, seed, pair_cols, init_bias_std, optimizer, fixed_examination) -> TwoTowerFit:
    torch = _torch()
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    first, wc, wn = _aggregate(log, pair_cols + ["position"] + context_cols, sample_weight)
    rows = log.iloc[first]
    position = torch.from_numpy(np.asarray(rows["position"], dtype=np.int64) - 1)
    pair_index = {}
    if relevance == "id":
        pair_codes = _group_codes(rows, pair_cols)
        n_pairs = int(pair_codes.max()) + 1
        firsts = np.full(n_pairs, -1, dtype=np.int64)
        firsts[pair_codes[::-1]] = np.arange(len(pair_codes))[::-1]
        keys = rows[pair_cols].iloc[firsts].itertuples(index=False, name=None)
        pair_index = {tuple(k): i for i, k in enumerate(keys)}
        x = torch.from_numpy(pair_codes.astype(np.int64))
        mean = std = np.zeros(0, dtype=np.float32)
    else:
        raw = np.asarray(rows[feature_cols], dtype=np.float32)
        all_x = np.asarray(log[feature_cols], dtype=np.float32)
        mean = all_x.mean(axis=0)
        std = all_x.std(axis=0)
        std[std < 1e-6] = 1.0
        x = torch.from_numpy((raw - mean) / std)
        n_pairs = 0
    ctx = torch.from_numpy(np.asarray(rows[context_cols], dtype=np.float32)) if context_cols else None
    model = _make_model(n_positions, len(feature_cols), relevance, n_pairs, hidden, combine, len(context_cols),
                        init_bias_std)
    if fixed_examination is not None:
        if combine != "product":
            raise ValueError("fixed_examination needs combine='product'")
        e = np.asarray(fixed_examination, dtype=np.float64)
        if e.shape != (n_positions,) or np.any(~np.isfinite(e) | (e <= 0) | (e > 1)):
            raise ValueError(f"fixed_examination must hold {n_positions} probabilities in (0, 1]")
        e = np.clip(e, 1e-4, 1 - 1e-4)
        with torch.no_grad():
            model.bias.weight.copy_(torch.from_numpy(np.log(e / (1 - e))).float().unsqueeze(-1))
        model.bias.weight.requires_grad_(False)
    wc_t = torch.from_numpy(wc.astype(np.float32))
    wn_t = torch.from_numpy(wn.astype(np.float32))
    total = float(wc.sum() + wn.sum())
    losses = []

    def closure():
        opt.zero_grad()
        logp, log1m = model.log_probs(position, x, ctx)
        loss = -(wc_t * logp + wn_t * log1m).sum() / total
        if weight_decay:
            loss = loss + weight_decay * sum((p ** 2).sum() for p in model.parameters() if p.requires_grad)
        loss.backward()
        losses.append(loss.item())
        return loss

    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS([p for p in model.parameters() if p.requires_grad], lr=1.0, max_iter=int(steps), history_size=20,
                                tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")
        opt.step(closure)
    else:
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
        for _ in range(int(steps)):
            opt.step(closure)
    model.eval()
    return TwoTowerFit(model, feature_cols, mean, std, combine, relevance, n_positions, pair_index,
                       losses, n_rows=len(first), n_impressions=len(log),
                       train_seconds=time.perf_counter() - t0)


def examination_error(estimated, true) -> float:
    """Mean absolute error of two examination curves, both divided by position 1.

    Position 1 is the reference (error 0 by construction); positions 2..K count.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """
    est = np.asarray(estimated, dtype=np.float64)
    tru = np.asarray(true, dtype=np.float64)[: est.size]
    if est.size < 2 or tru.size != est.size:
        raise ValueError(f"need two curves of equal length >= 2, got {est.size} and {tru.size}")
    return float(np.mean(np.abs(est[1:] / est[0] - tru[1:] / tru[0])))


def relevance_scores(fit: TwoTowerFit, env) -> np.ndarray:
    """Relevance-tower scores for every candidate of ``env`` (queries x depth).

    For an ``"id"`` tower, pairs never seen in training get the lowest score.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """
    if fit.relevance != "id":
        cols = [c[len("feat_"):] if c.startswith("feat_") else c for c in fit.feature_cols]
        idx = env.feature_index(cols)
        return fit.score(env.features[:, :, idx])
    torch = _torch()
    with torch.no_grad():
        emb = fit.model.tower.weight.squeeze(-1).numpy()
    out = np.full(env.doc_ids.shape, emb.min() - 1.0 if emb.size else 0.0)
    for (q, j), i in fit.pair_index.items():
        if q < out.shape[0] and j < out.shape[1]:
            out[q, j] = emb[i]
    return out


def scores_run(env, scores) -> tuple[dict, dict]:
    """``(run, qrels)`` for ranking each query's candidates by ``scores``, queries without a relevant one skipped.

    The run and qrels go straight into :func:`cookbook.evaluate.evaluate` or, for two
    towers on the same pools, :func:`cookbook.evaluate.compare` (a paired test per query).

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != env.doc_ids.shape:
        raise ValueError(f"scores shape {scores.shape} != pools {env.doc_ids.shape}")
    qrels = {q: r for q, r in env.qrels().items() if r}
    if not qrels:
        raise ValueError("no query has a relevant candidate; nDCG is undefined")
    run = {qid: {str(d): float(s) for d, s in zip(env.doc_ids[qi], scores[qi])}
           for qi, qid in enumerate(env.qids) if qid in qrels}
    return run, qrels


def ndcg_at_10(env, scores) -> float:
    """nDCG@10 of ranking each query's candidates by ``scores`` against the true grades.

    Uses :func:`cookbook.evaluate.evaluate` (ir_measures); queries without any relevant
    candidate are skipped.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """

    run, qrels = scores_run(env, scores)
    summary, _ = evaluate(run, qrels)
    return float(summary["nDCG@10"])


def confounding_sweep(train_env, test_env, strengths, seeds, n_sessions: int, well_cols, mis_cols,
                      examination=None, click_prob=None, clip: float = 10.0, n_shown: int = 10,
                      steps: int = 200) -> pd.DataFrame:
    """Sweep logging-policy strength; fit well-specified, misspecified and weighted towers.

    For each ``strength`` and ``seed``: log ``n_sessions`` sessions on ``train_env`` with a
    Plackett-Luce policy over the true grades at temperature ``1 / strength``
    (0 = uniform random), clicks from the position-based model; then fit three linear
    two-tower models (product form): ``well-specified`` over ``well_cols``,
    ``misspecified`` over ``mis_cols`` and ``misspecified + weights`` with
    :func:`cookbook.ultr.propensity_weights`.  Returns one row per (strength, seed,
    tower) with the relevance tower's nDCG@10 on ``test_env``, the examination-curve
    error and whether shared pairs connect every position in that log's rank graph.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """

    exam = clicks.examination_curve(n_shown) if examination is None else np.asarray(examination)
    cp = clicks.graded_click_probs(train_env.max_grade) if click_prob is None else np.asarray(click_prob)
    user = clicks.PositionBasedModel(exam, cp)
    grades = train_env.relevance.astype(np.float64)
    rows = []
    for strength in strengths:
        if strength < 0:
            raise ValueError(f"strength must be >= 0, got {strength}")
        temperature = np.inf if strength == 0 else 1.0 / strength
        policy = clicks.PlackettLuce(grades, temperature=temperature)
        for seed in seeds:
            log = clicks.simulate_click_log(train_env, policy, user, n_sessions, n_shown=n_shown, seed=seed)
            weights = ultr.propensity_weights(log, clip=clip)
            connected = ultr.identifiability(log, n_positions=n_shown, by="pair").connected
            towers = {
                "well-specified": dict(feature_cols=well_cols),
                "misspecified": dict(feature_cols=mis_cols),
                "misspecified + weights": dict(feature_cols=mis_cols, sample_weight=weights),
            }
            for name, kwargs in towers.items():
                fit = fit_two_tower(log, relevance="linear", n_positions=n_shown, steps=steps, seed=seed,
                                    check_identifiability=False, **kwargs)  # checked once per log above
                rows.append({"strength": strength, "seed": seed, "tower": name, "pairs connect positions": connected,
                             "nDCG@10": ndcg_at_10(test_env, relevance_scores(fit, test_env)),
                             "examination error": examination_error(fit.examination(), exam),
                             "train seconds": fit.train_seconds})
    return pd.DataFrame(rows)
