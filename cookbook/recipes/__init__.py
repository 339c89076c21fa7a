"""Every training recipe as one call on any BEIR folder: ``python -m cookbook recipe NAME``.

``python -m cookbook recipe promptagator --data DIR --out DIR`` reads the folder (binary or
graded qrels, with or without a train split, an optional ``edges.jsonl``), runs the recipe,
writes a model folder that ``SentenceTransformer(out/"model")`` (or ``CrossEncoder`` for
``lce``) loads, and a report: ``report.json`` and ``report.md``, whose first line is the
verdict against the base model on the folder's test split (see :mod:`cookbook.recipes.common`).

LLM calls go through the persistent cache, so a killed run started again replays what was
done and continues. Sizes are keyword arguments (``--set docs=200``); an unknown one is an error
that lists the known ones.

=============  =================================================  ===========================
recipe         what it trains                                     needs
=============  =================================================  ===========================
promptagator   MiniLM on LLM-written queries (notebook 20)         a corpus
customir       + LLM-verified hard negatives (notebook 21)         a corpus
ssra           graded pairs from two collaborating models (30)     graded or binary qrels
bixse          BCE over graded targets, in-batch negatives (31)    judged pairs (train split)
lce            cross-encoder reranker, LCE on LLM-labelled groups  a corpus
scincl         triplets from graph-embedding bands (notebook 51)   ``edges.jsonl``
revela         retriever trained through the LM (notebook 60)      a corpus
=============  =================================================  ===========================

Names of the previous release (``graded``, ``reranker``, ``kge``) still work for one release
and say so.

Taught in: notebooks/20_generate_queries_promptagator.ipynb (and each recipe's notebook)
"""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cookbook.evaluate import jsonable
from cookbook.recipes import bixse, customir, lce, promptagator, revela, scincl, ssra
from cookbook.recipes.common import RecipeError, load_data, report_markdown

__all__ = ["RECIPES", "Recipe", "RecipeError", "get", "report_markdown", "run"]


@dataclass(frozen=True)
class Recipe:
    """A recipe: its function, the notebook that teaches it, what it trains and what it needs."""

    name: str
    function: Callable
    notebook: str
    kind: str  # "embedder" or "reranker"
    label: str  # what the trained model is, in notebook 90's tables
    needs: str


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("promptagator", promptagator.recipe, "20_generate_queries_promptagator", "embedder",
           "MiniLM + Promptagator queries (consistency-filtered)", "a corpus"),
    Recipe("customir", customir.recipe, "21_adapt_to_known_corpus_customir", "embedder",
           "MiniLM + LLM queries with LLM-verified hard negatives", "a corpus"),
    Recipe("ssra", ssra.recipe, "30_synthesize_graded_relevance", "embedder",
           "MiniLM + SSRA-style graded pairs (listwise loss)", "graded or binary qrels with a train split (or an LLM)"),
    Recipe("bixse", bixse.recipe, "31_train_with_graded_targets_bixse", "embedder",
           "MiniLM + BiXSE over grade / 3", "judged pairs (a train split), or an LLM for generated ones"),
    Recipe("lce", lce.recipe, "40_train_reranker_lce", "reranker",
           "LCE cross-encoder reranking the base model's top-k", "a corpus"),
    Recipe("scincl", scincl.recipe, "51_mine_triplets_from_graph_embeddings", "embedder",
           "MiniLM + SciNCL-style triplets from graph-embedding bands", "a graph (edges.jsonl)"),
    Recipe("revela", revela.recipe, "60_learn_retriever_by_language_modeling_revela", "embedder",
           "MiniLM + Revela", "a corpus"),
)}

#: names of the previous release -> today's name (kept for one release, with a warning)
OLD_NAMES = {"graded": "ssra", "reranker": "lce", "kge": "scincl"}


def get(name: str) -> Recipe:
    """The recipe called ``name`` (an old name warns and gives the new one); an unknown name is
    a clear error."""
    if name in OLD_NAMES:
        new = OLD_NAMES[name]
        warnings.warn(f"recipe {name!r} is now called {new!r}; the old name goes in the next release",
                      FutureWarning, stacklevel=2)
        name = new
    if name not in RECIPES:
        raise RecipeError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def check_sizes(recipe: Recipe, sizes: dict) -> None:
    """An unknown size is a :class:`RecipeError` that lists the recipe's sizes."""
    known = [p for p in inspect.signature(recipe.function).parameters if p not in ("data", "out_dir")]
    unknown = sorted(set(sizes) - set(known))
    if unknown:
        raise RecipeError(f"recipe {recipe.name!r} has no size(s) {unknown}; its sizes: {', '.join(known)}")


def run(name: str, data_dir, out_dir, **sizes) -> dict:
    """Load ``data_dir`` (a BEIR folder, or ``apidocs``), run recipe ``name``, write the model
    and ``report.json`` / ``report.md`` into ``out_dir``. Returns the report.

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    recipe = get(name)
    check_sizes(recipe, sizes)
    data = load_data(data_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = recipe.function(data, out, **sizes)
    (out / "report.json").write_text(json.dumps(jsonable(report), indent=1))
    (out / "report.md").write_text(report_markdown(report))
    return report
