"""Every recipe on one evaluation: the models the notebooks save, their cost, paired differences.

Each technique notebook ends by saving what it trained with :func:`save_recipe`, under
``data/models/<profile>/<name>/``: the model (``model/``), the training data it used
(``train.jsonl``, text columns) and ``card.json`` (notebook, kind, cost: wall seconds, steps,
training pairs, LLM calls and tokens). The card is written last, so a folder with a card is a
complete save. :func:`saved_recipes` lists what is there, :func:`load_recipe` loads one,
:func:`evaluate_system` scores a retriever (and optionally a reranker on top) on one set of
queries, :func:`paired_table` turns the per-query scores into differences from the base model
with confidence intervals, :func:`data_curve` retrains a recipe on growing shares of its saved
data (the gain against the number of training examples), and :func:`decision_guide` picks a
recipe per situation from those numbers, with the measured reason.

Taught in: notebooks/90_compare_recipes.ipynb
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cookbook import evaluate, lce, recipes, retrieval
from cookbook.config import DATA_DIR, SEED
from cookbook.config import profile as active
from cookbook.models import save_model
from cookbook.results import fmt_p, fmt_signed

MODELS_DIR = DATA_DIR / "models"

# name -> (notebook that saves it, kind, what the saved model is), from the recipes package
RECIPES: dict[str, tuple[str, str, str]] = {n: (r.notebook, r.kind, r.label) for n, r in recipes.RECIPES.items()}
METRICS = ("nDCG@10", "R@10", "fine distinction")


class CompareError(ValueError):
    """A recipe name, a saved folder or an evaluation input that cannot be used."""


def _check_name(name: str) -> None:
    if name not in RECIPES:
        raise CompareError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")


def models_dir(profile: str | None = None) -> Path:
    """``data/models/<profile>`` (default: the active profile)."""
    return MODELS_DIR / active(profile).name


def _usage(llm_usage) -> dict:
    if llm_usage is None:
        return {"llm_calls": 0, "llm_items": 0, "llm_cache_hits": 0, "llm_tokens": 0}
    d = llm_usage if isinstance(llm_usage, dict) else llm_usage.as_dict()
    return {"llm_calls": int(d.get("calls", 0)), "llm_items": int(d.get("items", 0)),
            "llm_cache_hits": int(d.get("cache_hits", 0)),
            "llm_tokens": int(d.get("prompt_tokens", 0)) + int(d.get("completion_tokens", 0))}


def add_usage(*usages) -> dict:
    """Sum several LLM usage records (``llm.track()`` results or their ``as_dict()``)."""
    total: dict[str, float] = {}
    for u in usages:
        d = u if isinstance(u, dict) else u.as_dict()
        for k in ("calls", "items", "cache_hits", "prompt_tokens", "completion_tokens"):
            total[k] = total.get(k, 0) + int(d.get(k, 0) or 0)
    return total


def _write_jsonl(rows, path: Path) -> int:
    tmp = path.with_suffix(".jsonl.tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def save_recipe(name: str, model, *, seconds: float, steps: int, train=None, train_pairs: int | None = None,
                llm_usage=None, profile: str | None = None, root: Path | None = None, **extra) -> Path:
    """Save a notebook's trained model, its training data and its cost for notebook 90.

    ``train``: a ``datasets.Dataset`` or a DataFrame of text (and label) columns, written as
    ``train.jsonl``; ``train_pairs`` defaults to its length. ``seconds``: the recipe's wall time
    in the notebook (generation, filtering and training; not the evaluation). ``llm_usage``: an
    ``llm.track()`` record or a dict of them summed with :func:`add_usage`.

    Taught in: notebooks/90_compare_recipes.ipynb
    """

    _check_name(name)
    folder = Path(root or models_dir(profile)) / name
    folder.mkdir(parents=True, exist_ok=True)
    card_path = folder / "card.json"
    card_path.unlink(missing_ok=True)  # a half-replaced save must not look complete
    save_model(model, folder / "model")
    if train is not None:
        rows = train.to_dict("records") if isinstance(train, pd.DataFrame) else (dict(r) for r in train)
        n_rows = _write_jsonl(rows, folder / "train.jsonl")
        train_pairs = n_rows if train_pairs is None else train_pairs
    notebook, kind, label = RECIPES[name]
    card = {"name": name, "notebook": notebook, "kind": kind, "label": label,
            "profile": active(profile).name, "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "model_class": type(model).__name__,
            "cost": {"seconds": round(float(seconds), 1), "steps": int(steps),
                     "train_pairs": int(train_pairs or 0), **_usage(llm_usage)},
            **extra}
    tmp = card_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=1))
    tmp.replace(card_path)
    return folder


@dataclass
class SavedRecipe:
    """One saved recipe: its folder and its card."""

    name: str
    path: Path
    card: dict

    @property
    def kind(self) -> str:
        return self.card["kind"]

    @property
    def label(self) -> str:
        """The recipe's current name for its model (the card keeps the name it was saved under)."""
        return RECIPES[self.name][2] if self.name in RECIPES else self.card["label"]

    @property
    def notebook(self) -> str:
        return self.card["notebook"]


def saved_recipes(profile: str | None = None, root: Path | None = None) -> dict[str, SavedRecipe]:
    """The complete saves (a card and a model) of a profile, in notebook order.

    Taught in: notebooks/90_compare_recipes.ipynb
    """
    folder = Path(root or models_dir(profile))
    out = {}
    for name in RECIPES:
        card_path = folder / name / "card.json"
        if card_path.exists() and (folder / name / "model").is_dir():
            try:
                card = json.loads(card_path.read_text())
            except json.JSONDecodeError as err:
                raise CompareError(f"{card_path}: not valid JSON ({err})") from err
            out[name] = SavedRecipe(name, folder / name, card)
    return out


def missing_recipes(saved: dict[str, SavedRecipe]) -> pd.DataFrame:
    """The recipes without a save, and the notebook that makes each."""
    rows = [{"recipe": n, "run this notebook first": f"notebooks/{nb}.ipynb"}
            for n, (nb, _, _) in RECIPES.items() if n not in saved]
    return pd.DataFrame(rows, columns=["recipe", "run this notebook first"])


def load_recipe(saved: SavedRecipe, *, max_seq_length: int | None = None, device: str = "cpu"):
    """The saved model: a ``SentenceTransformer`` (embedders) or a ``CrossEncoder`` (rerankers),
    with ``max_seq_length`` set so that every embedder is compared at the same length."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one "Loading weights" bar per model clutters a notebook
    path = str(saved.path / "model")
    if saved.kind == "reranker":
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(path, device=device)
        if max_seq_length:
            model.max_length = max_seq_length
        return model
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device=device)
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


def training_data(saved: SavedRecipe):
    """The saved ``train.jsonl`` as a ``datasets.Dataset`` (rows read with line numbers in errors)."""
    from datasets import Dataset

    path = saved.path / "train.jsonl"
    if not path.exists():
        raise CompareError(f"{path}: recipe {saved.name!r} saved no training data")
    rows = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise CompareError(f"{path}, line {i}: not valid JSON ({err.msg})") from err
    if not rows:
        raise CompareError(f"{path}: no rows")
    columns = list(rows[0])
    for i, row in enumerate(rows, start=1):
        if list(row) != columns:
            raise CompareError(f"{path}, row {i}: columns {list(row)} differ from the first row's {columns}")
    return Dataset.from_dict({c: [r[c] for r in rows] for c in columns})


# --------------------------------------------------------------------------------------------
# one evaluation for every system
# --------------------------------------------------------------------------------------------


@dataclass
class SystemScores:
    """Per-query scores of one system (columns of :data:`METRICS`) plus what it cost to run."""

    name: str
    per_query: pd.DataFrame
    run: dict
    seconds: float
    encode_seconds_per_1000: float | None = None

    def means(self) -> pd.Series:
        return self.per_query.mean().rename(self.name)


def evaluate_system(name: str, model, data, split: str = "test", *, index=None, reranker=None, depth: int = 20,
                    k: int = 100, cache: bool | None = None, seed: int = SEED) -> SystemScores:
    """Score one system on the queries of ``split``: nDCG@10, R@10 and the fine-distinction
    accuracy per query (a query without adjacent-grade pairs is NaN there).

    ``model``: a SentenceTransformer (searched through a ``DenseIndex``, built here unless
    ``index`` is given; ``cache`` as in ``DenseIndex``; the encode time per 1,000 documents is
    recorded when the corpus was encoded, not loaded from the cache). ``reranker``: a cross-encoder reranking the top ``depth``; the
    fine-distinction pairs are then ordered by the reranker's scores.

    Taught in: notebooks/90_compare_recipes.ipynb
    """
    qrels = data.qrels.get(split)
    if not qrels:
        raise CompareError(f"split {split!r} has no qrels (splits: {sorted(data.qrels)}): nothing to evaluate")
    queries = data.split_queries(split)
    started = time.perf_counter()
    per_1000 = None
    if index is None:
        t0 = time.perf_counter()
        index = retrieval.DenseIndex(model, data, cache=cache)
        if not index.cache_hit:
            per_1000 = round((time.perf_counter() - t0) / max(len(data.corpus), 1) * 1000, 2)
    run = index.search(queries, k=k)
    if reranker is not None:
        run = lce.rerank(reranker, run, data, depth=depth, queries=queries)
    _, table = evaluate.evaluate(run, qrels, ("nDCG@10", "R@10"))
    try:
        fd = lce.fine_distinction_result(reranker, data, split, seed=seed, first_stage=index) \
            if reranker is not None else \
            evaluate.fine_distinction_accuracy(index, data, split, seed=seed)
        table["fine distinction"] = fd["per_query"].reindex(table.index)
    except evaluate.FineDistinctionError:  # binary labels: no adjacent grades to compare
        table["fine distinction"] = np.nan
    return SystemScores(name, table, dict(run), round(time.perf_counter() - started, 2), per_1000)


def paired_table(systems: dict[str, SystemScores], base: str, metrics=METRICS) -> pd.DataFrame:
    """One row per (system, metric): the mean, the mean per-query difference from ``base``, its
    bootstrap 95% interval and the paired t-test p-value (queries both systems scored), from
    :func:`cookbook.evaluate.paired_test`.

    Taught in: notebooks/90_compare_recipes.ipynb
    """
    if base not in systems:
        raise CompareError(f"base system {base!r} is not among {list(systems)}")
    rows = []
    for name, sys_ in systems.items():
        for m in metrics:
            c = compare_two(systems[base], sys_, m)
            if c["queries"]:
                rows.append({"system": name, "metric": m, "mean": c["mean_b"], "diff": c["diff"],
                             "ci_low": c["ci_low"], "ci_high": c["ci_high"], "p": c["t_p"], "queries": c["queries"]})
    return pd.DataFrame(rows)


def compare_two(a: SystemScores, b: SystemScores, metric: str = "nDCG@10") -> dict:
    """B minus A on one metric over the queries both scored: means, difference, bootstrap 95%
    interval, paired t-test and Wilcoxon p-values (:func:`cookbook.evaluate.paired_test`)."""
    out = evaluate.paired_test(a.per_query[metric], b.per_query[metric])
    out["metric"] = metric
    return out


def cost_table(saved: dict[str, SavedRecipe]) -> pd.DataFrame:
    """Cost per saved recipe, from the cards: wall seconds, steps, training pairs, LLM use."""
    rows = {s.label: s.card["cost"] for s in saved.values()}
    cols = ["seconds", "steps", "train_pairs", "llm_calls", "llm_items", "llm_cache_hits", "llm_tokens"]
    return pd.DataFrame.from_dict(rows, orient="index").reindex(columns=cols)


# --------------------------------------------------------------------------------------------
# how much data: retrain on growing shares of a recipe's saved training data
# --------------------------------------------------------------------------------------------


def nested_shares(dataset, shares, *, seed: int = SEED) -> dict[float, object]:
    """``{share: the first round(share * n) rows of one shuffle of dataset}``: each smaller share
    is part of every larger one, so a curve adds data instead of drawing new data."""
    if len(dataset) < 2:
        raise CompareError(f"a data curve needs at least 2 training rows, got {len(dataset)}")
    bad = [s for s in shares if not 0 < s <= 1]
    if bad:
        raise CompareError(f"shares must lie in (0, 1], got {bad}")
    shuffled = dataset.shuffle(seed=seed)
    return {s: shuffled.select(range(max(2, round(s * len(dataset))))) for s in sorted(shares)}


def data_curve(train, dataset, data, base: SystemScores, *, shares=(0.25, 0.5, 1.0),
               full: SystemScores | None = None, split: str = "test", seed: int = SEED,
               metric: str = "nDCG@10") -> pd.DataFrame:
    """The gain over ``base`` against the number of training examples: for each share of
    ``dataset`` (:func:`nested_shares`), ``train(subset)`` returns a trained SentenceTransformer,
    which is evaluated on ``split`` and compared with ``base`` (paired, as in :func:`paired_table`).
    ``full``: the scores of a model already trained on every row with the same settings (the
    recipe's own save), used for share 1.0 instead of training it again.

    Taught in: notebooks/90_compare_recipes.ipynb
    """
    rows = []
    for share, subset in nested_shares(dataset, shares, seed=seed).items():
        started = time.perf_counter()
        if share == 1.0 and full is not None:
            scores, seconds, source = full, 0.0, "saved model"
        else:
            model = train(subset)
            scores = evaluate_system(f"{len(subset)} examples", model, data, split, cache=False, seed=seed)
            seconds, source = time.perf_counter() - started, "retrained"
        c = compare_two(base, scores, metric)
        rows.append({"share": share, "examples": len(subset), metric: c["mean_b"], "diff": c["diff"],
                     "ci_low": c["ci_low"], "ci_high": c["ci_high"], "p": c["t_p"], "queries": c["queries"],
                     "seconds": round(seconds, 1), "model": source})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# the decision guide: a situation -> the best measured recipe among those that fit it
# --------------------------------------------------------------------------------------------

# situation -> recipes that need only what the situation provides
SITUATIONS: dict[str, tuple[str, ...]] = {
    "no labels, an LLM (even a small one)": ("promptagator", "customir", "revela"),
    "no labels, no LLM generation budget": ("revela",),
    "a few labelled (query, document) pairs": ("promptagator", "customir"),
    "a graph over the documents (links, see-also)": ("scincl",),
    "graded labels (several relevance levels)": ("bixse", "ssra"),
    "a GPU, or latency to spare at query time": ("lce",),
}


def decision_guide(table: pd.DataFrame, labels: dict[str, str], metric: str = "nDCG@10",
                   alpha: float = 0.05, notes: dict[str, str] | None = None) -> pd.DataFrame:
    """For each situation of :data:`SITUATIONS`, the measured recipe that fits it best: the
    largest difference from the base model on ``metric`` (``table`` from :func:`paired_table`,
    ``labels``: recipe name -> system name in the table). When that difference is not positive
    and significant at ``alpha``, the advice is the base model, and the ``why`` column gives the
    measured reason (the best candidate's difference, interval and p). ``notes``: extra text
    per situation, appended to ``why`` (for example where a recipe helps on another task).
    Situations without any measured recipe are left out.

    Taught in: notebooks/90_compare_recipes.ipynb
    """
    rows = []
    rows_of = table[table["metric"] == metric].set_index("system")
    for situation, names in SITUATIONS.items():
        cands = [(n, rows_of.loc[labels[n]]) for n in names if n in labels and labels[n] in rows_of.index]
        if not cands:
            continue
        name, best = max(cands, key=lambda c: c[1]["diff"])
        wins = best["diff"] > 0 and best["p"] < alpha
        measured = (f"{fmt_signed(best['diff'])} (95% CI {fmt_signed(best['ci_low'])} to "
                    f"{fmt_signed(best['ci_high'])}), p {_p_text(best['p'])}")
        if wins:
            why = f"{labels[name]}: {measured}"
            if len(cands) > 1:
                why += f", the largest significant gain of the {len(cands)} recipes that fit"
        else:
            why = (f"no significant gain at this scale: the best candidate, {labels[name]}, "
                   f"{measured}")
        if notes and situation in notes:
            why += "; " + notes[situation]
        rows.append({"you have": situation, "start with": labels[name] if wins else "the base model",
                     f"{metric} difference": float(best["diff"]), "95% CI": (float(best["ci_low"]), float(best["ci_high"])),
                     "p": float(best["p"]), "why": why})
    return pd.DataFrame(rows)


def _p_text(p) -> str:
    text = fmt_p(p)
    return text if text.startswith("<") else f"= {text}"
