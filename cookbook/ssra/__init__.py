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
  level histogram) that trains a bi-encoder with a graded loss (CoSENT over level / top level).

Nothing assumes API-docs fields: levels follow the qrels (``max grade + 1``), level
descriptions are a parameter, and every training set is checked against the dev and test
queries (:func:`assert_no_eval_leak`).

The package in four rooms: ``levels`` (levels and the human pool), ``score_model``,
``query_model`` and ``loop`` (the loop and the balanced training set). Every name is
re-exported here, so ``from cookbook import ssra; ssra.collaborate(...)`` works. The
fine-distinction measure lives in :mod:`cookbook.evaluate`; the whole recipe in
:mod:`cookbook.recipes.ssra`.

Taught in: notebooks/30_synthesize_graded_relevance.ipynb
"""


from cookbook.ssra.levels import (  # noqa: F401
    LEVEL_TEXT_4,
    PAIR_COLUMNS,
    EvalLeakError,
    GradedError,
    assert_no_eval_leak,
    cap_levels,
    check_levels,
    eval_query_texts,
    human_pairs,
    level_histogram,
    level_mapping,
    level_texts,
    n_levels_of,
)
from cookbook.ssra.loop import (  # noqa: F401
    EMBEDDER_LOSSES,
    LoopResult,
    acceptance_table,
    balance,
    collaborate,
    default_level_weights,
    embedding_dataset,
    neighbour_pool,
    round_requests,
    train_embedder,
    train_listwise,
)
from cookbook.ssra.query_model import (  # noqa: F401
    PromptedQueryModel,
    accept,
    agreement,
    clean,
    few_shot_by_level,
    fine_tune_query_model,
    generate,
    instruction,
    level_prompt,
    level_requests,
    sft_examples,
    zero_shot_pairs,
)
from cookbook.ssra.score_model import (  # noqa: F401
    SCORE_MODEL_KINDS,
    EmbeddingScoreModel,
    LexicalFeatures,
    RankingFeatures,
    annotate,
    balanced_sample,
    check_score_model,
    level_probabilities,
    load_score_model,
    score_model,
    score_model_kind,
    score_report,
    train_score_model,
)
