"""One plotting style for every notebook; helpers return matplotlib Axes.

Taught in: notebooks/10_explore_query_document_pairs.ipynb
"""

from __future__ import annotations

PALETTE = "colorblind"


def set_style(context: str = "notebook") -> None:
    """Seaborn's whitegrid style with the colour-blind palette, used by every notebook."""
    import seaborn as sns

    sns.set_theme(context=context, style="whitegrid", palette=PALETTE)


def _axes(ax, figsize=(6, 4)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def metric_bars(table, x: str = "metric", y: str = "value", hue: str = "system", ax=None):
    """Grouped bars of a long table (one row per system and metric)."""
    import seaborn as sns

    ax = _axes(ax)
    sns.barplot(data=table, x=x, y=y, hue=hue, ax=ax)
    ax.set_ylim(0, max(1.0, float(table[y].max()) * 1.05))
    ax.legend(title=None)
    return ax


def per_query_scatter(a, b, label_a: str, label_b: str, ax=None, title: str | None = None):
    """One point per query: system A's score against system B's; the diagonal is a tie."""
    import seaborn as sns

    ax = _axes(ax, figsize=(5, 5))
    sns.scatterplot(x=a, y=b, alpha=0.5, s=20, ax=ax, edgecolor=None)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel=label_a, ylabel=label_b, xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    wins, losses = int((b > a).sum()), int((b < a).sum())
    ax.set_title(title or f"{label_b} better on {wins}, worse on {losses} queries")
    return ax


def draw_neighbourhood(graph, node: str, radius: int = 1, max_nodes: int = 30, seed: int = 7, ax=None):
    """Draw the typed neighbourhood of ``node`` (edge colour = edge type; fixed layout seed)."""
    import matplotlib.pyplot as plt
    import networkx as nx
    import seaborn as sns

    ax = _axes(ax, figsize=(9, 7))
    undirected = nx.Graph(graph)
    near = nx.single_source_shortest_path_length(undirected, node, cutoff=radius)
    keep = sorted(near, key=lambda n: (near[n], n))[:max_nodes]
    sub = graph.subgraph(keep)
    pos = nx.spring_layout(nx.Graph(sub), seed=seed, k=0.9)
    types = sorted({d["type"] for _, _, d in sub.edges(data=True)})
    colours = dict(zip(types, sns.color_palette(PALETTE, len(types)), strict=False))
    for kind in types:
        edges = [(u, v) for u, v, d in sub.edges(data=True) if d["type"] == kind]
        nx.draw_networkx_edges(sub, pos, edgelist=edges, edge_color=[colours[kind]], ax=ax, arrows=True,
                               arrowsize=8, width=1.5, label=kind, connectionstyle="arc3,rad=0.08")
    nx.draw_networkx_nodes(sub, pos, node_size=[300 if n == node else 70 for n in sub], node_color="#444444", ax=ax)
    label_pos = {n: (x, y + 0.06) for n, (x, y) in pos.items()}
    nx.draw_networkx_labels(sub, label_pos, labels={n: n.split(".", 1)[-1] if n != node else n for n in sub},
                            font_size=8, ax=ax,
                            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 0.4})
    from matplotlib.lines import Line2D

    handles = [Line2D([0], [0], color=colours[k], linewidth=2, label=k) for k in types]
    ax.legend(handles=handles, title="edge type", loc="best", fontsize=8)
    ax.set_title(f"Neighbourhood of {node} (radius {radius})")
    ax.axis("off")
    plt.tight_layout()
    return ax
