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
