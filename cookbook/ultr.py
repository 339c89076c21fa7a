"""Diagnostics for unbiased learning to rank on a click log (part 71).

:mod:`cookbook.clicks` *produces* click logs (candidate pools, logging policies, click
models, the simulator).  This module *inspects* a log before a model is trained on it:

* **identifiability** (:func:`rank_graph`, :func:`identifiability`,
  :func:`identified_positions`): positions as nodes of a networkx graph, joined where
  the same query-document pair (or the same binned feature vector) was shown at both.
  A connected graph is what makes a two-tower model's position bias recoverable; in a
  disconnected one, only the positions in the component of position 1 are fixed
  relative to it;
* **inverse-propensity sample weights** (:func:`propensity_weights`) against
  logging-policy confounding.

Any log works, simulated or real, as long as it is a DataFrame with ``query``,
``doc`` and ``position`` columns (and ``propensity`` for the weights).  The method
follows Hager, Zoeter and de Rijke, "Unidentified and Confounded? Understanding
Two-Tower Models for Unbiased Learning to Rank" (ICTIR 2025); the sample weighting is
*our reading* of the paper's proposal, documented in :func:`propensity_weights`.

Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cookbook.clicks import ClickParameterError

__all__ = [
    "propensity_weights",
    "IdentifiabilityReport",
    "rank_graph",
    "identifiability",
    "identified_positions",
]


# ---------------------------------------------------------------------------
# sample weighting


def propensity_weights(log: pd.DataFrame, clip: float = 10.0, normalise: bool = True,
                       propensity_col: str = "propensity") -> np.ndarray:
    """Inverse-propensity sample weights for a two-tower model's training impressions.

    **Our reading** of the sample weighting in Hager, Zoeter and de Rijke (ICTIR
    2025): a strong logging policy puts each document at a few positions only, so a
    relevance tower's errors end up correlated with position and the bias tower
    absorbs them.  We weight each logged impression by ``1 / p̂(q, d, k)``, the
    inverse of the estimated probability (from the log itself, see
    :func:`cookbook.clicks.estimate_propensities`) that the logging policy shows document ``d`` at
    position ``k`` for query ``q``.  Reweighted, every shown document counts about
    equally at every position where it was ever shown, as under a randomised
    policy.  Weights are clipped at ``clip`` (variance control) and, with
    ``normalise``, rescaled to mean 1.  A deterministic policy gives weight 1
    everywhere: weighting cannot create swaps that never happened.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """
    if not clip >= 1.0:
        raise ClickParameterError(f"clip must be >= 1, got {clip!r}")
    p = np.asarray(log[propensity_col], dtype=np.float64)
    if p.size == 0:
        raise ClickParameterError("the click log is empty")
    if np.any(~np.isfinite(p) | (p <= 0) | (p > 1)):
        raise ClickParameterError(f"column {propensity_col!r} must hold probabilities in (0, 1]")
    w = np.minimum(1.0 / p, clip)
    if normalise:
        w = w / w.mean()
    return w


# ---------------------------------------------------------------------------
# identifiability: the rank graph


@dataclass
class IdentifiabilityReport:
    """Result of :func:`identifiability`: the graph, its components and a verdict.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """

    graph: object
    components: list
    connected: bool
    verdict: str

    def __repr__(self) -> str:
        return f"IdentifiabilityReport(connected={self.connected}, components={self.components!r})"


def _feature_keys(log: pd.DataFrame, feature_cols, n_bins: int) -> np.ndarray:
    codes = []
    for c in feature_cols:
        x = np.asarray(log[c], dtype=np.float64)
        if np.unique(x).size <= n_bins:
            codes.append(np.unique(x, return_inverse=True)[1])
        else:
            edges = np.unique(np.quantile(x, np.linspace(0, 1, n_bins + 1)[1:-1]))
            codes.append(np.searchsorted(edges, x, side="right"))
    key = np.zeros(len(log), dtype=np.int64)
    for c in codes:  # re-factorise after each column so the combined code never overflows
        key = pd.factorize(key * (int(c.max()) + 1) + c)[0].astype(np.int64)
    return key


def rank_graph(log: pd.DataFrame, n_positions: int | None = None, by: str = "pair",
               feature_cols=None, n_bins: int = 10):
    """The rank graph of a click log (networkx): nodes are positions 1..K.

    An edge joins positions k and k' when something the relevance tower cannot tell
    apart was shown at both: the same query-document pair (``by="pair"``), the same
    binned feature vector (``by="features"``: each of ``feature_cols`` cut into
    ``n_bins`` quantile bins, so overlapping feature distributions tie positions), or
    either (``by="both"``).  For each key, its positions are joined as a chain (sorted
    positions, neighbours linked): the same connected components as joining every pair,
    with far fewer edges.  Edge attribute ``weight`` counts the linking keys.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """
    import networkx as nx

    if by not in ("pair", "features", "both"):
        raise ClickParameterError(f"by must be 'pair', 'features' or 'both', got {by!r}")
    if len(log) == 0:
        raise ClickParameterError("the click log is empty")
    for col in ("query", "doc", "position"):
        if col not in log.columns:
            raise ClickParameterError(f"the click log has no {col!r} column")
    pos = np.asarray(log["position"], dtype=np.int64)
    if n_positions is None:
        n_positions = int(pos.max())
    g = nx.Graph()
    g.add_nodes_from(range(1, n_positions + 1))
    keysets = []
    if by in ("pair", "both"):
        qk = pd.factorize(log["query"])[0].astype(np.int64)
        dk = pd.factorize(log["doc"])[0].astype(np.int64)
        keysets.append(qk * (int(dk.max()) + 1) + dk)
    if by in ("features", "both"):
        if not feature_cols:
            feature_cols = [c for c in log.columns if str(c).startswith("feat_")]
        if not feature_cols:
            raise ClickParameterError("by='features' needs feature_cols (or feat_* columns in the log)")
        keysets.append(_feature_keys(log, feature_cols, n_bins))
    for key in keysets:
        pairs = pd.DataFrame({"key": key, "pos": pos}).drop_duplicates().sort_values(["key", "pos"])
        k = pairs["key"].to_numpy()
        p = pairs["pos"].to_numpy()
        same = k[1:] == k[:-1]
        edges = pd.DataFrame({"a": p[:-1][same], "b": p[1:][same]}).value_counts()
        for (a, b), w in edges.items():
            if g.has_edge(a, b):
                g[a][b]["weight"] += int(w)
            else:
                g.add_edge(int(a), int(b), weight=int(w))
    return g


def identifiability(log: pd.DataFrame, n_positions: int | None = None, by: str = "pair",
                    feature_cols=None, n_bins: int = 10) -> IdentifiabilityReport:
    """Connected components of the rank graph and a verdict.

    Connected: the position bias is identifiable up to one global constant.
    Disconnected: each component has its own free offset, so the examination curve
    (and the relevance tower) can be shifted per component without changing any
    predicted click: the log cannot tell them apart.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """
    import networkx as nx

    g = rank_graph(log, n_positions=n_positions, by=by, feature_cols=feature_cols, n_bins=n_bins)
    comps = sorted((sorted(c) for c in nx.connected_components(g)), key=lambda c: c[0])
    connected = len(comps) == 1
    if connected:
        verdict = (f"identifiable: all {g.number_of_nodes()} positions are connected, "
                   "so the examination curve is fixed up to one constant")
    else:
        verdict = (f"NOT identifiable: {len(comps)} disconnected groups of positions "
                   f"{[c if len(c) < 6 else f'{c[0]}..{c[-1]}' for c in comps]}; each can be shifted freely")
    return IdentifiabilityReport(g, comps, connected, verdict)


def identified_positions(report: IdentifiabilityReport, reference: int = 1) -> np.ndarray:
    """Which positions the log pins down relative to position ``reference``.

    A boolean array over positions 1..K: True for the positions in the same rank-graph
    component as ``reference``.  The examination of any other position can be scaled
    freely without changing a single predicted click, so a value a model reports for it
    comes from the optimiser's starting point, not from the data.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """
    nodes = sorted(report.graph.nodes)
    if reference not in nodes:
        raise ClickParameterError(f"position {reference} is not in the rank graph (positions {nodes[0]}..{nodes[-1]})")
    same = next(set(c) for c in report.components if reference in c)
    return np.array([k in same for k in nodes], dtype=bool)
