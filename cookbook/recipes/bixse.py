"""Recipe ``bixse``: BCE over graded targets with in-batch negatives, one labelled pair per query.

Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
"""

from __future__ import annotations

import copy

from cookbook import bixse as technique
from cookbook import evaluate, querygen
from cookbook.config import SEED, seed_everything
from cookbook.finetune import fit
from cookbook.llm import Usage
from cookbook.recipes import common
from cookbook.recipes.common import RecipeError

BASELINES = (None, "infonce")


def _labelled_pairs(data, index, *, n_candidates, targets, llm, seed):
    """With a train split: one judged or retrieved document per train query, target grade / top."""
    cands = index.search(data.split_queries("train"), k=n_candidates)
    pairs = technique.draw_labelled_pairs(data, "train", cands, n_candidates=n_candidates, seed=seed)
    top = max(g for rows in data.qrels.values() for docs in rows.values() for g in docs.values())
    pairs["target"] = technique.GradeTargets(max(int(top), 1))(pairs["grade"].astype(float))
    usage = Usage()
    if targets == "llm":
        llm = common.llm_or_default(llm)
        with llm.track() as usage:
            pairs["target"], _ = technique.llm_targets(llm, data, pairs)
    return pairs, usage


def _generated_pairs(data, index, *, llm, n_docs, n_samples, consistency_k, seed):
    """Without a train split: zero-shot generated queries, each with its document at target 1."""
    llm = common.llm_or_default(llm)
    with llm.track() as usage:
        gen = querygen.promptagator(data, llm, index, common.sample_docs(data, n_docs, seed), examples=[],
                                    n_samples=n_samples, consistency_k=consistency_k, seed=seed)
    pairs = gen.final[["query", "doc_id"]].reset_index(drop=True)
    if len(pairs) < 2:
        raise RecipeError(f"only {len(pairs)} generated query survived the filters: raise n_docs or n_samples")
    pairs["grade"], pairs["target"] = 1, 1.0
    return pairs, usage


def _infonce(base, pairs, data, *, steps, batch_size, learning_rate, warmup, seed):
    """The baseline on the same pairs: InfoNCE (MNRL) on the pairs that count as relevant."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    all_qrels = {f"{s}/{q}": docs for s, rows in data.qrels.items() for q, docs in rows.items()}
    threshold = evaluate.relevance_thresholds(all_qrels)["recall"] if all_qrels else 1
    positives = pairs[pairs["grade"] >= threshold]
    if len(positives) < 2:
        raise RecipeError(f"baseline='infonce' needs 2 or more pairs of grade >= {threshold}; got {len(positives)}")
    model = copy.deepcopy(base)
    fit(model, technique.pairs_dataset(positives, data), MultipleNegativesRankingLoss(model), max_steps=steps,
        batch_size=batch_size, learning_rate=learning_rate, warmup=warmup, no_duplicates=True, seed=seed)
    return model, len(positives)


def _versus(report, before, data, model, bixse_run, bixse_fine, n_pairs, seed):
    """The baseline's measures, BiXSE minus InfoNCE, and one more clause in the verdict."""
    index, run = common.dense_run(model, before)
    out = {"name": "infonce", "train_pairs": int(n_pairs)}
    if run is not None and bixse_run is not None:
        qrels = data.qrels["test"]
        out["after"] = dict(evaluate.evaluate(run, qrels, common.MEASURES)[0])
        fine = common.fine_distinction(index, data, seed)
        if fine is not None and bixse_fine is not None:
            out["after"][common.FINE] = fine
        c = out["bixse minus infonce"] = evaluate.compare(run, bixse_run, qrels, "nDCG@10")
        word = evaluate.verdict(c)
        report["verdict"] += (f"; BiXSE vs InfoNCE on the same pairs: {word} (BiXSE minus InfoNCE, {c['metric']} "
                              f"{c['diff']:+.4f}, 95% CI {c['ci_low']:+.4f} to {c['ci_high']:+.4f}, p={c['t_p']:.2g})")
    report["baseline"] = out
    return report


def recipe(data, out_dir, *, embedder=None, llm=None, steps: int | None = None, n_candidates: int = 20,
          batch_size: int = 16, learning_rate: float = 5e-5, targets: str = "structural", n_docs: int = 40,
          n_samples: int = 2, consistency_k: int = 10, max_seq_length: int | None = None,
          warmup: float = 0.1, param_lr: float = 1e-2, start_rule: str = "fit", p_positive: float = 0.9,
          baseline: str | None = None,
          seed: int = SEED) -> dict:
    """The whole technique on any ``RetrievalData``; saves the bi-encoder to ``out_dir/"model"``.

    With a train split: one labelled pair per train query (:func:`cookbook.bixse.draw_labelled_pairs`,
    pool = judged documents + the base model's top ``n_candidates``), targets ``grade / top grade``
    (``targets="structural"``) or the LLM's calibrated query likelihood (``targets="llm"``), then
    :class:`cookbook.bixse.BiXSELoss`. Without one: zero-shot generated queries for ``n_docs``
    documents, each with its source document as a target-1 pair. ``steps=None`` trains one epoch.

    The scale and bias start from the base model's cosines on training batches
    (:func:`cookbook.bixse.starting_values`; ``start_rule="fit"``: the logistic fit of the
    targets on those cosines, the start notebook 31 chose on its dev split; ``"midpoint"``: a
    typical labelled pair at ``p_positive``, a typical in-batch pair near ``1 - p_positive``) and
    learn at ``param_lr``, their own learning rate.
    ``baseline="infonce"`` also trains InfoNCE (MNRL) on the same pairs (those that count as
    relevant) with the same steps and seed, and reports it beside BiXSE (``report["baseline"]``,
    one more clause in the verdict): did the loss help, or the data?

    Taught in: notebooks/31_train_with_graded_targets_bixse.ipynb
    """
    if targets not in ("structural", "llm"):
        raise RecipeError(f"targets={targets!r}: choose 'structural' or 'llm'")
    if baseline not in BASELINES:
        raise RecipeError(f"baseline={baseline!r}: choose 'infonce' or leave it out")
    seed_everything(seed)
    # 1. the base model, measured before training
    base = common.embedder_or_default(embedder)
    if max_seq_length is not None:
        base.max_seq_length = max_seq_length
    before = common.start(data, base, seed=seed)
    # 2. labelled pairs with targets in [0, 1]
    if data.qrels.get("train"):
        pairs, usage = _labelled_pairs(data, before.index, n_candidates=n_candidates, targets=targets,
                                       llm=llm, seed=seed)
        source = "train split"
    else:
        pairs, usage = _generated_pairs(data, before.index, llm=llm, n_docs=n_docs, n_samples=n_samples,
                                        consistency_k=consistency_k, seed=seed)
        source, targets = "generated queries (no train split)", "1.0"
    # 3. the starting scale and bias, from the base model's cosines on training batches
    try:
        start = technique.starting_values(*technique.batch_cosines(base, pairs, data, batch_size=batch_size,
                                                                   seed=seed), p_positive=p_positive,
                                           rule=start_rule)
    except technique.BiXSEInputError as err:  # e.g. every target 0, or a base model at random
        start = {"scale": 10.0, "bias": -10.0, "fallback": str(err)}
    # 4. BiXSE: BCE over every (query, document) pair of the batch; t and b at their own learning rate
    model = copy.deepcopy(base)
    steps = steps or max(1, -(-len(pairs) // batch_size))
    loss = technique.BiXSELoss(model, start["scale"], start["bias"])
    trained = fit(model, technique.pairs_dataset(pairs, data, "target"), loss, max_steps=steps,
                  batch_size=batch_size, learning_rate=learning_rate, warmup=warmup, no_duplicates=True,
                  seed=seed, learning_rate_mapping=loss.learning_rate_mapping(param_lr))
    # 5. the baseline on the same pairs (optional): InfoNCE
    if baseline == "infonce":
        infonce, n_pos = _infonce(base, pairs, data, steps=steps, batch_size=batch_size,
                                  learning_rate=learning_rate, warmup=warmup, seed=seed)
    # 6. after, verdict, report
    index, run = common.dense_run(model, before)
    fine = common.fine_distinction(index, data, seed)
    report = common.finish("bixse", before, model, out_dir, after_run=run, after_fine=fine, llm_usage=usage,
                         source=source, targets=targets, train_pairs=int(len(pairs)),
                         grades={str(k): int(v) for k, v in pairs["grade"].value_counts().sort_index().items()},
                         steps=trained["steps"], train_loss=trained["loss"],
                         start={k: round(v, 4) if isinstance(v, float) else v for k, v in start.items()},
                         scale=round(float(loss.scale.detach()), 4), bias=round(float(loss.bias.detach()), 4))
    if baseline == "infonce":
        report = _versus(report, before, data, infonce, run, fine, n_pos, seed)
    return report
