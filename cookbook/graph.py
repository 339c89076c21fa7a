"""The typed API-docs graph: networkx in, torch-geometric tensors out, statistics, pictures, splits.

The corpus graph (``RetrievalData.graph``) is a ``networkx.MultiDiGraph`` whose nodes are
document ids and whose edges carry a ``type`` attribute (``contains``, ``see_also``,
``inherits``, ``mentions``, ``same_name``). Knowledge-graph embedding (KGE) models want the
same graph as three integer tensors: head, relation, tail. This module converts between the
two, describes the graph, draws a neighbourhood, and splits the edges for link prediction.

Leakage rule: the ``see_also`` edges behind the dev and test queries (``data.eval_pairs``)
must never reach KGE training or triplet mining. :func:`split_edges` starts from
``data.training_graph()`` (those edges removed) and *asserts* that no split still holds an
edge between an evaluation pair, in either direction.

Taught in: notebooks/50_build_knowledge_graph.ipynb
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cookbook.config import SEED

if TYPE_CHECKING:  # torch is imported lazily, inside the functions that need it
    import torch


class GraphError(ValueError):
    """A graph that cannot be converted (missing edge ``type``, unknown node, empty graph)."""


class EvalLeakError(AssertionError):
    """An edge between an evaluation pair reached a training split."""


# --------------------------------------------------------------------------------------
# networkx -> tensors
# --------------------------------------------------------------------------------------


@dataclass
class Triples:
    """Parallel (head, relation, tail) index tensors: the input of every KGE model.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """

    head: torch.Tensor
    rel: torch.Tensor
    tail: torch.Tensor

    def __len__(self) -> int:
        return int(self.head.numel())

    def as_tuple(self):
        """``(head, rel, tail)``, ready for ``model.loader(*triples.as_tuple(), ...)``."""
        return self.head, self.rel, self.tail

    def pairs(self) -> set[tuple[int, int]]:
        """The set of (head, tail) index pairs."""
        return set(zip(self.head.tolist(), self.tail.tolist(), strict=True))

    def subset(self, index) -> Triples:
        """The triples at ``index`` (a LongTensor or list of positions)."""
        import torch

        index = torch.as_tensor(index, dtype=torch.long)
        return Triples(self.head[index], self.rel[index], self.tail[index])

    @staticmethod
    def cat(parts: Iterable[Triples]) -> Triples:
        """Concatenate several triple sets."""
        import torch

        parts = list(parts)
        return Triples(
            torch.cat([p.head for p in parts]),
            torch.cat([p.rel for p in parts]),
            torch.cat([p.tail for p in parts]),
        )


@dataclass
class KGTensors:
    """A typed graph as torch-geometric tensors plus the vocabularies that decode them.

    ``edge_index[0]`` are heads, ``edge_index[1]`` tails, ``edge_type`` indexes ``relations``;
    ``entities[i]`` is the document id of node ``i``.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """

    edge_index: torch.Tensor
    edge_type: torch.Tensor
    entities: list[str]
    relations: list[str]
    entity_index: dict[str, int] = field(repr=False)
    relation_index: dict[str, int] = field(repr=False)

    @property
    def num_nodes(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    @property
    def num_edges(self) -> int:
        return int(self.edge_type.numel())

    def triples(self) -> Triples:
        """All edges as :class:`Triples`."""
        return Triples(self.edge_index[0], self.edge_type, self.edge_index[1])

    def to_pyg(self):
        """A ``torch_geometric.data.Data`` object (``edge_index``, ``edge_type``, ``num_nodes``)."""
        from torch_geometric.data import Data

        return Data(edge_index=self.edge_index, edge_type=self.edge_type, num_nodes=self.num_nodes)

    def decode(self, head: int, rel: int, tail: int) -> tuple[str, str, str]:
        """Turn one index triple back into (doc id, relation name, doc id)."""
        return self.entities[head], self.relations[rel], self.entities[tail]


def _edge_type(graph, u, v, key, attrs) -> str:
    rel = attrs.get("type")
    if rel is None:
        raise GraphError(f"edge {u!r} -> {v!r} (key {key!r}) has no 'type' attribute")
    return str(rel)


def to_tensors(
    graph,
    nodes: Iterable[str] | None = None,
    relations: Iterable[str] | None = None,
    add_inverse: bool = False,
) -> KGTensors:
    """Convert a typed ``MultiDiGraph`` into ``edge_index`` / ``edge_type`` tensors.

    ``nodes`` fixes the entity vocabulary (default: the graph's nodes, sorted, so the same
    graph always gives the same indices); pass every corpus document to give isolated
    documents an embedding too. ``relations`` fixes the relation vocabulary (default: the
    sorted edge types). ``add_inverse=True`` adds a ``rev_<type>`` edge for every edge, which
    lets a tail-predicting model also learn to predict heads.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import torch

    if graph is None:
        raise GraphError("graph is None: this dataset has no graph (load the apidocs corpus)")
    entities = sorted(graph.nodes, key=str) if nodes is None else list(dict.fromkeys(nodes))
    if not entities:
        raise GraphError("the graph has no nodes")
    entity_index = {n: i for i, n in enumerate(entities)}
    edges = [(u, v, _edge_type(graph, u, v, k, a)) for u, v, k, a in graph.edges(keys=True, data=True)]
    found = sorted({rel for _, _, rel in edges})
    if relations is None:
        relations = found
    else:
        relations = list(dict.fromkeys(relations))
        unknown = sorted(set(found) - set(relations))
        if unknown:
            raise GraphError(f"edge types {unknown} are not in relations={relations}")
    if add_inverse:
        relations = list(relations) + [f"rev_{r}" for r in relations]
    relation_index = {r: i for i, r in enumerate(relations)}
    heads, tails, types = [], [], []
    for u, v, rel in edges:
        if u not in entity_index or v not in entity_index:
            missing = u if u not in entity_index else v
            raise GraphError(f"edge {u!r} -> {v!r} uses node {missing!r} that is not in `nodes`")
        heads.append(entity_index[u])
        tails.append(entity_index[v])
        types.append(relation_index[rel])
        if add_inverse:
            heads.append(entity_index[v])
            tails.append(entity_index[u])
            types.append(relation_index[f"rev_{rel}"])
    edge_index = torch.tensor([heads, tails], dtype=torch.long).reshape(2, -1)
    edge_type = torch.tensor(types, dtype=torch.long)
    return KGTensors(edge_index, edge_type, entities, list(relations), entity_index, relation_index)


# --------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------


def relation_counts(graph):
    """Edges per relation type, most frequent first (a ``pandas.Series``).

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import pandas as pd

    counts = Counter(_edge_type(graph, u, v, k, a) for u, v, k, a in graph.edges(keys=True, data=True))
    return pd.Series(counts, name="edges", dtype="int64").sort_values(ascending=False)


def degree_table(graph):
    """One row per node: ``in_degree``, ``out_degree``, ``degree`` and the node's ``kind``.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import pandas as pd

    rows = [
        {
            "node": n,
            "kind": graph.nodes[n].get("kind", "?"),
            "in_degree": graph.in_degree(n),
            "out_degree": graph.out_degree(n),
        }
        for n in graph.nodes
    ]
    table = pd.DataFrame(rows, columns=["node", "kind", "in_degree", "out_degree"])
    table["degree"] = table["in_degree"] + table["out_degree"]
    return table.sort_values("degree", ascending=False, ignore_index=True)


def graph_stats(graph) -> dict:
    """Headline numbers: nodes, edges, relation types, isolated nodes, components, mean degree.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import networkx as nx

    n, m = graph.number_of_nodes(), graph.number_of_edges()
    components = list(nx.weakly_connected_components(graph)) if n else []
    return {
        "nodes": n,
        "edges": m,
        "relation_types": len(relation_counts(graph)),
        "isolated_nodes": sum(1 for v in graph.nodes if graph.degree(v) == 0),
        "weak_components": len(components),
        "largest_component": max((len(c) for c in components), default=0),
        "mean_degree": (2 * m / n) if n else 0.0,
    }


# --------------------------------------------------------------------------------------
# pictures
# --------------------------------------------------------------------------------------


def neighbourhood(graph, center: str, radius: int = 1, max_nodes: int = 25, seed: int = SEED):
    """The subgraph within ``radius`` hops of ``center`` (edges followed both ways).

    When the ball holds more than ``max_nodes`` nodes, the closest ones are kept and ties
    are broken by a seeded shuffle, so the same call always returns the same picture.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import networkx as nx

    if center not in graph:
        raise GraphError(f"node {center!r} is not in the graph")
    dist = nx.single_source_shortest_path_length(graph.to_undirected(as_view=True), center, cutoff=radius)
    rng = random.Random(seed)
    order = sorted(dist, key=str)
    rng.shuffle(order)
    order.sort(key=lambda n: dist[n])  # stable: closest first, seeded order inside a ring
    return graph.subgraph(order[:max_nodes]).copy()


RELATION_COLOURS = {
    "contains": "#8c8c8c",
    "see_also": "#d62728",
    "inherits": "#1f77b4",
    "mentions": "#2ca02c",
    "same_name": "#9467bd",
}


def _short(node: str, width: int = 28) -> str:
    text = str(node)
    parts = text.split(".")
    label = ".".join(parts[-2:]) if len(parts) > 2 else text
    return label if len(label) <= width else label[: width - 1] + "…"


def draw_neighbourhood(
    graph,
    center: str,
    radius: int = 1,
    max_nodes: int = 25,
    seed: int = SEED,
    ax=None,
    font_size: int = 7,
):
    """Draw ``center``'s neighbourhood with one colour per relation type; returns the Axes.

    The spring layout uses ``seed``, so the picture is identical on every run.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import matplotlib.pyplot as plt
    import networkx as nx
    from matplotlib.lines import Line2D

    sub = neighbourhood(graph, center, radius=radius, max_nodes=max_nodes, seed=seed)
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 7))
    pos = nx.spring_layout(nx.Graph(sub), seed=seed, k=1.2 / max(len(sub), 1) ** 0.5)
    kinds = sorted({sub.nodes[n].get("kind", "?") for n in sub})
    palette = plt.get_cmap("Set2")
    kind_colour = {k: palette(i % 8) for i, k in enumerate(kinds)}
    nx.draw_networkx_nodes(
        sub, pos, ax=ax, node_size=[500 if n == center else 220 for n in sub],
        node_color=[kind_colour[sub.nodes[n].get("kind", "?")] for n in sub], edgecolors="black",
        linewidths=[2.0 if n == center else 0.5 for n in sub],
    )
    seen = []
    for rel in sorted({a.get("type") for _, _, a in sub.edges(data=True)}, key=str):
        edges = [(u, v) for u, v, a in sub.edges(data=True) if a.get("type") == rel]
        colour = RELATION_COLOURS.get(rel, "#ff7f0e")
        nx.draw_networkx_edges(
            sub, pos, edgelist=edges, ax=ax, edge_color=colour, arrows=True, arrowsize=8,
            width=1.4, alpha=0.8, connectionstyle="arc3,rad=0.08", node_size=220,
        )
        seen.append(Line2D([0], [0], color=colour, lw=2, label=rel))
    nx.draw_networkx_labels(sub, pos, labels={n: _short(n) for n in sub}, ax=ax, font_size=font_size)
    seen += [
        Line2D([0], [0], marker="o", color="w", markerfacecolor=kind_colour[k], markeredgecolor="black",
               markersize=8, label=k)
        for k in kinds
    ]
    ax.legend(handles=seen, loc="upper left", fontsize=7, frameon=True)
    ax.set_title(f"{radius}-hop neighbourhood of {center} ({len(sub)} nodes)")
    ax.set_axis_off()
    return ax


def plot_degree_distribution(graph, ax=None, by_kind: bool = True):
    """Histogram of node degree on a log x-axis (heavy tails show up as a long right arm).

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    table = degree_table(graph)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    table = table.assign(degree_plus_1=table["degree"] + 1)
    bins = np.logspace(0, np.log10(table["degree_plus_1"].max() + 1), 30)
    sns.histplot(
        table, x="degree_plus_1", hue="kind" if by_kind else None, multiple="stack", bins=bins, ax=ax,
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("degree + 1 (in + out)")
    ax.set_ylabel("nodes")
    ax.set_title("Degree distribution")
    return ax


def plot_relation_counts(graph, ax=None):
    """Bar chart of edges per relation type.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    counts = relation_counts(graph)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    sns.barplot(
        x=counts.values, y=counts.index, hue=counts.index, legend=False, ax=ax,
        palette=[RELATION_COLOURS.get(r, "#ff7f0e") for r in counts.index],
    )
    for i, value in enumerate(counts.values):
        ax.text(value, i, f" {value:,}", va="center", fontsize=8)
    ax.set_xlabel("edges")
    ax.set_ylabel("relation")
    ax.set_title("Edges per relation type")
    return ax


# --------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------


def _both_directions(pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    out = set()
    for a, b in pairs:
        out.add((a, b))
        out.add((b, a))
    return out


def assert_no_eval_edges(pairs: Iterable[tuple[str, str]], eval_pairs, what: str = "training edges") -> int:
    """Raise :class:`EvalLeakError` if any (head, tail) pair joins an evaluation pair.

    Checks both directions. Returns how many pairs were checked.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    forbidden = _both_directions(eval_pairs)
    checked = 0
    for pair in pairs:
        checked += 1
        if tuple(pair) in forbidden:
            raise EvalLeakError(f"{what} contain {pair[0]!r} -> {pair[1]!r}, an evaluation pair")
    return checked


@dataclass
class EdgeSplit:
    """Train / valid / test triples of the *training* graph, with the vocabularies.

    ``tensors`` holds every training-graph edge; ``train``/``valid``/``test`` partition them.
    Evaluation pairs (the held-out ``see_also`` edges) are in none of them.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """

    tensors: KGTensors
    train: Triples
    valid: Triples
    test: Triples
    eval_pairs: set = field(repr=False, default_factory=set)

    @property
    def num_nodes(self) -> int:
        return self.tensors.num_nodes

    @property
    def num_relations(self) -> int:
        return self.tensors.num_relations

    def all_triples(self) -> Triples:
        """train + valid + test: the known edges used to filter link-prediction ranks."""
        return Triples.cat([self.train, self.valid, self.test])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def split_edges(
    data=None,
    *,
    graph=None,
    eval_pairs=None,
    nodes: Iterable[str] | None = None,
    valid_frac: float = 0.05,
    test_frac: float = 0.05,
    add_inverse: bool = False,
    seed: int = SEED,
) -> EdgeSplit:
    """Split the training graph's edges into train / valid / test for link prediction.

    Pass a ``RetrievalData`` as ``data`` (its ``training_graph()`` and ``eval_pairs`` are used,
    and every corpus document becomes an entity), or a ``graph`` plus ``eval_pairs`` yourself.
    Any edge between an evaluation pair still in the graph is dropped, and the result is
    asserted leak-free. Held-out edges whose head or tail would otherwise be unseen in
    training are moved back to train (link prediction is transductive).

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import torch

    if not (0 <= valid_frac < 1 and 0 <= test_frac < 1 and valid_frac + test_frac < 1):
        raise ValueError(f"valid_frac={valid_frac} and test_frac={test_frac} must be in [0, 1) and sum below 1")
    if data is not None:
        graph = data.training_graph() if graph is None else graph
        eval_pairs = data.eval_pairs if eval_pairs is None else eval_pairs
        if nodes is None and getattr(data, "corpus", None):
            nodes = sorted(set(data.corpus) | set(graph.nodes), key=str)
    if graph is None:
        raise GraphError("pass a RetrievalData as `data` or a graph as `graph`")
    eval_pairs = set(eval_pairs or ())
    forbidden = _both_directions(eval_pairs)
    leaking = [(u, v, k) for u, v, k in graph.edges(keys=True) if (u, v) in forbidden]
    if leaking:
        graph = graph.copy()
        graph.remove_edges_from(leaking)
    tensors = to_tensors(graph, nodes=nodes, add_inverse=add_inverse)
    triples = tensors.triples()
    m = len(triples)
    if m == 0:
        raise GraphError("the training graph has no edges to split")
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(m, generator=generator)
    n_valid, n_test = int(round(m * valid_frac)), int(round(m * test_frac))
    held = perm[: n_valid + n_test].tolist()
    train_pos = perm[n_valid + n_test :].tolist()
    # keep held-out edges only when both ends are seen in train (greedy, in seeded order)
    seen = Counter(triples.head[train_pos].tolist() + triples.tail[train_pos].tolist())
    kept = []
    for pos in held:
        h, t = int(triples.head[pos]), int(triples.tail[pos])
        if seen[h] and seen[t]:
            kept.append(pos)
        else:
            train_pos.append(pos)
            seen[h] += 1
            seen[t] += 1
    n_valid_kept = n_valid * len(kept) // max(len(held), 1)  # keep the valid:test ratio
    valid_pos, test_pos = kept[:n_valid_kept], kept[n_valid_kept:]
    split = EdgeSplit(
        tensors=tensors,
        train=triples.subset(sorted(train_pos)),
        valid=triples.subset(sorted(valid_pos)),
        test=triples.subset(sorted(test_pos)),
        eval_pairs=eval_pairs,
    )
    names = tensors.entities
    for part in ("train", "valid", "test"):
        t = getattr(split, part)
        named = ((names[h], names[tl]) for h, tl in zip(t.head.tolist(), t.tail.tolist(), strict=True))
        assert_no_eval_edges(named, eval_pairs, what=f"KGE {part} edges")
    return split


def undirected_hops(graph, source: str, cutoff: int) -> dict[str, int]:
    """Shortest hop distance from ``source`` to every node within ``cutoff`` (edges both ways).

    Taught in: notebooks/51_mine_triplets_from_graph_embeddings.ipynb
    """
    import networkx as nx

    return nx.single_source_shortest_path_length(graph.to_undirected(as_view=True), source, cutoff=cutoff)


def toy_graph():
    """A hand-made 15-node API graph with all five relation types, for tests and first steps.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import networkx as nx

    g = nx.MultiDiGraph()
    nodes = {
        "numpy": "module", "torch": "module", "statistics": "module",
        "numpy.mean": "function", "numpy.average": "function", "numpy.median": "function",
        "numpy.std": "function", "numpy.var": "function", "numpy.ndarray": "class",
        "numpy.ndarray.mean": "method", "numpy.matrix": "class", "torch.mean": "function", "torch.std": "function",
        "statistics.mean": "function", "statistics.median": "function",
    }
    for n, kind in nodes.items():
        g.add_node(n, kind=kind, package=n.split(".")[0], title=n)
    edges = [
        ("numpy", "numpy.mean", "contains"), ("numpy", "numpy.average", "contains"),
        ("numpy", "numpy.median", "contains"), ("numpy", "numpy.std", "contains"),
        ("numpy", "numpy.var", "contains"), ("numpy", "numpy.ndarray", "contains"),
        ("numpy.ndarray", "numpy.ndarray.mean", "contains"), ("torch", "torch.mean", "contains"),
        ("torch", "torch.std", "contains"), ("statistics", "statistics.mean", "contains"),
        ("statistics", "statistics.median", "contains"),
        ("numpy.mean", "numpy.average", "see_also"), ("numpy.mean", "numpy.median", "see_also"),
        ("numpy.average", "numpy.mean", "see_also"), ("numpy.std", "numpy.var", "see_also"),
        ("numpy.var", "numpy.std", "see_also"), ("numpy.median", "numpy.mean", "see_also"),
        ("numpy.ndarray.mean", "numpy.mean", "see_also"),
        ("numpy.mean", "torch.mean", "same_name"), ("torch.mean", "numpy.mean", "same_name"),
        ("numpy.mean", "statistics.mean", "same_name"), ("statistics.mean", "numpy.mean", "same_name"),
        ("numpy.std", "torch.std", "same_name"), ("torch.std", "numpy.std", "same_name"),
        ("numpy.median", "statistics.median", "same_name"), ("statistics.median", "numpy.median", "same_name"),
        ("numpy.var", "numpy.mean", "mentions"), ("torch.std", "torch.mean", "mentions"),
        ("numpy.matrix", "numpy.ndarray", "inherits"), ("numpy", "numpy.matrix", "contains"),
    ]
    for u, v, rel in edges:
        g.add_edge(u, v, key=rel, type=rel)
    return g
