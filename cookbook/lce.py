"""Cross-encoder rerankers trained on synthetic queries and LLM labels with exact LCE.

The recipe follows Peshevski, Blazhevski, Popovski, Madjarov, "Enhancing Transformer-Based
Rerankers with Synthetic Data and LLM-Based Supervision" (arXiv 2510.01229): an LLM writes
queries for the corpus's own documents, an LLM labels candidate documents as positives or
hard negatives, and a compact transformer is fine-tuned as a cross-encoder with Localized
Contrastive Estimation.

LCE (Gao, Dai, Callan, "Rethink Training of BERT Rerankers in Multi-Stage Retrieval
Pipeline", ECIR 2021): for every query a *group* of one positive and ``G - 1`` negatives
sampled from the first-stage retriever's top ranks; the loss is the cross-entropy of the
softmax over the group's scores with the positive as the target::

    loss = -log( exp(s_pos / t) / sum_j exp(s_j / t) )      (t = temperature, 1 in the paper)

sentence-transformers' cross-encoder ``MultipleNegativesRankingLoss`` is *not* this loss: it
passes the logits through a sigmoid, multiplies them by a scale and adds random in-batch
negatives. :class:`LCELoss` computes exactly the formula above.

1. :func:`first_stage_candidates`: the retriever's top ``depth`` for every (query, positive);
2. :func:`label_candidates`: the LLM labels each candidate (query likelihood relative to the
   positive, :func:`cookbook.negatives.verify`; plus the chat judge on an HTTP endpoint);
3. :func:`localized_groups` / :func:`random_groups`: 1 positive + ``G - 1`` negatives;
4. :func:`group_dataset`, :func:`pointwise_dataset`, :func:`train`: LCE, BCE or MNRL training;
5. :func:`rerank`: batched reranking of any first-stage run, with pairs per second.

Taught in: notebooks/40_train_reranker_lce.ipynb
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from cookbook import evaluate, negatives, querygen, retrieval
from cookbook.config import SEED
from cookbook.models import load_cross_encoder

try:  # torch is a dependency; the import stays inside the loss class for a fast `import cookbook`
    from torch import nn as _nn

    _Module = _nn.Module
except ImportError:  # pragma: no cover
    _Module = object


class GroupSizeError(ValueError):
    """A training group does not have 1 positive + at least one negative (or the expected size)."""


class UnknownDocumentError(ValueError):
    """A run or a pair names a document (or query) that the dataset does not hold."""


# --------------------------------------------------------------------------------------- loss


def lce(scores, temperature: float = 1.0):
    """Localized Contrastive Estimation on a ``(queries, G)`` score matrix, column 0 the positive.

    The mean over queries of ``-log softmax(scores / temperature)[:, 0]``.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    import torch
    import torch.nn.functional as F

    if scores.dim() != 2 or scores.shape[1] < 2:
        raise GroupSizeError(f"LCE needs a (queries, group) score matrix with group >= 2, "
                             f"got shape {tuple(scores.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be positive")
    target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores / temperature, target)


class LCELoss(_Module):
    """Exact LCE for sentence-transformers' ``CrossEncoderTrainer``.

    Dataset columns: ``query, positive, negative_1, ..., negative_{G-1}`` (no label column).
    For a batch of ``B`` groups the cross-encoder scores all ``B * G`` (query, document) pairs
    in one forward pass; the raw logits (no sigmoid, no scale, no in-batch extras) go to
    :func:`lce`. ``group_size`` (optional) makes a batch of another size a clear error.
    ``prior`` (a :class:`FirstStagePrior`) adds ``a * first-stage score`` to every logit: the
    residual reranker ``s = a * cos + f`` of :func:`residual_reranker`.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """

    def __init__(self, model, group_size: int | None = None, temperature: float = 1.0, prior=None):
        super().__init__()
        if getattr(model, "num_labels", 1) != 1:
            raise ValueError(f"LCELoss needs a cross-encoder with one output label, "
                             f"got num_labels={model.num_labels}")
        if group_size is not None and group_size < 2:
            raise GroupSizeError(f"group_size={group_size}: a group is 1 positive + >= 1 negative")
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be positive")
        self.model, self.group_size, self.temperature = model, group_size, temperature
        self.prior = prior  # FirstStagePrior: residual scores s = a * first-stage score + f

    def scores(self, inputs, prompt: str | None = None, task: str | None = None):
        """The ``(B, G)`` logits of a batch: ``inputs[0]`` queries, ``inputs[1:]`` the group."""
        import torch
        from sentence_transformers.util import batch_to_device

        queries, columns = inputs[0], inputs[1:]
        group = len(columns)
        if group < 2:
            raise GroupSizeError(f"LCELoss got {group} document column(s): a group needs a "
                                 f"positive and at least one negative column")
        if self.group_size is not None and group != self.group_size:
            raise GroupSizeError(f"LCELoss expects groups of {self.group_size}, got {group}")
        pairs = [(q, d) for column in columns for q, d in zip(queries, column)]
        features = batch_to_device(self.model.preprocess(pairs, prompt=prompt, task=task),
                                   self.model.device)
        logits = self.model(features)["scores"].view(group, len(queries)).T
        # summed in fp32: under a bf16 autocast of one's own the logits come out in bf16, and a bf16
        # a * cos (about 10) steps by 0.06 (the Trainer's bf16 already hands back fp32 logits)
        if self.prior is not None:
            logits = logits.float() + self.prior(queries, columns).to(logits.device, torch.float32)
        return logits

    def forward(self, inputs, labels=None, prompt: str | None = None, task: str | None = None):
        return lce(self.scores(inputs, prompt=prompt, task=task), self.temperature)

    def get_config_dict(self) -> dict:
        return {"group_size": self.group_size, "temperature": self.temperature}


# --------------------------------------------------------------------------------- training data


def _check_pairs(pairs: pd.DataFrame, data) -> None:
    if not {"query", "doc_id"} <= set(pairs.columns):
        raise ValueError(f"pairs need columns 'query' and 'doc_id', got {list(pairs.columns)}")
    missing = sorted(set(pairs["doc_id"]) - set(data.corpus))
    if missing:
        raise UnknownDocumentError(f"{len(missing)} positive(s) not in the corpus, e.g. {missing[:3]}")


def first_stage_candidates(retriever, pairs: pd.DataFrame, data, *, depth: int = 20) -> pd.DataFrame:
    """The retriever's top ``depth`` documents for each (query, positive) pair, positive removed.

    ``retriever`` is anything with ``search(queries, k)`` (``retrieval.DenseIndex``,
    ``retrieval.BM25Index``). One row per candidate: pair, query, doc_id (the positive),
    neg_id, neg_rank (1 = the retriever's top document), first_score, pos_rank (the positive's
    own rank; ``depth + 2`` when it is not in the top ``depth + 1``).

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    _check_pairs(pairs, data)
    if depth < 1:
        raise ValueError(f"depth={depth} must be >= 1")
    pairs = pairs.reset_index(drop=True)
    run = retriever.search({f"p{i}": q for i, q in enumerate(pairs["query"])}, k=depth + 1)
    rows = []
    for i, (query, pos) in enumerate(zip(pairs["query"], pairs["doc_id"])):
        ranked = sorted(run.get(f"p{i}", {}).items(), key=lambda kv: -kv[1])
        kept = [(d, s) for d, s in ranked if d != pos][:depth]
        pos_rank = next((r for r, (d, _) in enumerate(ranked, start=1) if d == pos), depth + 2)
        rows += [{"pair": i, "query": query, "doc_id": pos, "neg_id": d, "neg_rank": r,
                  "first_score": float(s), "pos_rank": pos_rank} for r, (d, s) in enumerate(kept, start=1)]
    return pd.DataFrame(rows, columns=["pair", "query", "doc_id", "neg_id", "neg_rank", "first_score",
                                       "pos_rank"])


def label_candidates(candidates: pd.DataFrame, llm, data, *, margin: float = 0.0,
                     judge: bool | None = None, max_doc_words: int = 32) -> pd.DataFrame:
    """LLM labels for the candidates: adds ``ql_pos``, ``ql_neg``, ``verified`` and ``negative``.

    A candidate is an LLM-confirmed negative (``negative=True``) when the LLM finds the query
    clearly less likely given it than given the positive (:func:`cookbook.negatives.verify`,
    ``ql_neg < ql_pos - margin``) and, when the chat judge runs, the judge does not call it
    relevant. ``judge=None`` runs the judge only on an OpenAI-compatible endpoint
    (``llm.backend == "http"``): a 135M local model answers yes/no close to random.
    Documents are cut to ``max_doc_words`` words for the LLM (the cost of a label grows with it).

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    out = negatives.verify(candidates, llm, data, margin=margin, max_doc_words=max_doc_words)
    out["negative"] = out["verified"].astype(bool)
    if judge is None:
        judge = getattr(llm, "backend", "") == "http"
    if judge and len(out):
        out = negatives.judge(out, llm, data)
        out["negative"] = out["negative"] & ~out["judge_yes"]
    return out


def _group_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["pair", "query", "doc_id", "negatives", "n_from_ranking",
                                       "n_filled"])


def _check_group_size(group_size: int) -> None:
    if not isinstance(group_size, (int, np.integer)) or group_size < 2:
        raise GroupSizeError(f"group_size={group_size!r}: a group is 1 positive + G-1 negatives, G >= 2")


def localized_groups(labelled: pd.DataFrame, pairs: pd.DataFrame, data, *, group_size: int = 8,
                     seed: int = SEED, exclude: Mapping[int, set] | None = None) -> pd.DataFrame:
    """LCE groups: each pair's positive plus ``group_size - 1`` negatives *sampled* from its
    LLM-confirmed top-ranked candidates (``labelled["negative"]``), as Gao et al. sample from
    the top of the first-stage ranking. A pair with too few confirmed negatives is filled with
    random documents (counted in ``n_filled``), so every pair keeps a group of the same size.
    ``exclude[pair]`` names more documents never to use (for example other relevant ones).

    Columns: pair, query, doc_id, negatives (list of doc ids), n_from_ranking, n_filled.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    _check_group_size(group_size)
    _check_pairs(pairs, data)
    pairs = pairs.reset_index(drop=True)
    if len(data.corpus) < group_size:
        raise GroupSizeError(f"group_size={group_size} is larger than the corpus ({len(data.corpus)} docs)")
    pool: dict[int, list[str]] = {}
    if len(labelled):
        if "negative" not in labelled:
            raise ValueError("labelled candidates need a 'negative' column (see label_candidates)")
        for p, d in zip(labelled.loc[labelled["negative"], "pair"], labelled.loc[labelled["negative"], "neg_id"]):
            pool.setdefault(int(p), []).append(d)
    rng = random.Random(seed)
    ids = sorted(data.corpus)
    rows = []
    for i, (query, pos) in enumerate(zip(pairs["query"], pairs["doc_id"])):
        banned = {pos} | set((exclude or {}).get(i, ()))
        cands = [d for d in dict.fromkeys(pool.get(i, [])) if d not in banned]
        chosen = rng.sample(cands, min(len(cands), group_size - 1))
        n_rank = len(chosen)
        while len(chosen) < group_size - 1:
            d = rng.choice(ids)
            if d not in banned and d not in chosen:
                chosen.append(d)
        rows.append({"pair": i, "query": query, "doc_id": pos, "negatives": chosen,
                     "n_from_ranking": n_rank, "n_filled": group_size - 1 - n_rank})
    return _group_frame(rows)


def random_groups(pairs: pd.DataFrame, data, *, group_size: int = 8, seed: int = SEED,
                  exclude: Mapping[int, set] | None = None) -> pd.DataFrame:
    """The baseline of the localized-vs-random comparison: each positive with ``group_size - 1``
    documents drawn uniformly from the corpus (never the positive). Same columns as
    :func:`localized_groups`.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    _check_group_size(group_size)
    _check_pairs(pairs, data)
    out = localized_groups(pd.DataFrame(), pairs, data, group_size=group_size, seed=seed, exclude=exclude)
    return out.assign(n_filled=0)


def group_dataset(groups: pd.DataFrame, data, *, seed: int = SEED):
    """A ``datasets.Dataset`` for :class:`LCELoss` (and the cross-encoder MNRL):
    ``query, positive, negative_1 .. negative_{G-1}``, shuffled with ``seed``.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    from datasets import Dataset

    if groups.empty:
        raise GroupSizeError("no groups: nothing to train on")
    sizes = {len(n) for n in groups["negatives"]}
    if len(sizes) != 1 or min(sizes) < 1:
        raise GroupSizeError(f"every group needs the same number (>= 1) of negatives, got {sorted(sizes)}")
    columns = {"query": list(groups["query"]),
               "positive": [data.doc_text(d) for d in groups["doc_id"]]}
    for j in range(sizes.pop()):
        columns[f"negative_{j + 1}"] = [data.doc_text(n[j]) for n in groups["negatives"]]
    return Dataset.from_dict(columns).shuffle(seed=seed)


def pointwise_dataset(groups: pd.DataFrame, data, *, seed: int = SEED):
    """The same labelled pairs, one row each, for pointwise BCE: ``query, document, label``
    (1 for the positive, 0 for each negative of its group), shuffled with ``seed``.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    from datasets import Dataset

    rows = []
    for query, pos, negs in zip(groups["query"], groups["doc_id"], groups["negatives"]):
        rows.append((query, data.doc_text(pos), 1.0))
        rows += [(query, data.doc_text(n), 0.0) for n in negs]
    if not rows:
        raise GroupSizeError("no groups: nothing to train on")
    q, d, y = zip(*rows)
    return Dataset.from_dict({"query": list(q), "document": list(d), "label": list(y)}).shuffle(seed=seed)


def split_pairs_by_group(pairs: pd.DataFrame, data, train_groups, *,
                         group_of: Callable[[str], str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(in_groups, others)``: pairs whose positive belongs to one of ``train_groups`` and the rest.

    ``group_of(doc_id)`` names a document's group; the default is the API-docs ``package``
    field (numpy, scipy, pandas, ...). On another corpus pass any function (a source, a topic).

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    group_of = group_of or (lambda d: data.corpus[d].get("package", ""))
    inside = pairs["doc_id"].map(lambda d: group_of(d) in set(train_groups))
    return pairs[inside].reset_index(drop=True), pairs[~inside].reset_index(drop=True)


def queries_by_group(data, split: str, groups, *, group_of: Callable[[str], str] | None = None,
                     ) -> list[str]:
    """Query ids of ``split`` whose best-graded document belongs to one of ``groups``."""
    group_of = group_of or (lambda d: data.corpus[d].get("package", ""))
    out = []
    for qid, docs in data.qrels[split].items():
        best = max(docs, key=lambda d: (docs[d], d))
        if group_of(best) in set(groups):
            out.append(qid)
    return sorted(out)


def labelled_pairs(data, split: str = "train") -> tuple[pd.DataFrame, dict[int, set]]:
    """``(pairs, exclude)`` from a split's human labels: one (query, doc_id) pair per query, its
    best-graded document as the positive, and ``exclude[pair]`` = the query's other relevant
    documents (never used as its negatives). Pass both to :func:`localized_groups`.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    qrels = data.qrels.get(split) or {}
    threshold = evaluate.relevance_thresholds(qrels)["recall"] if qrels else 1
    rows, exclude = [], {}
    for qid in sorted(qrels):
        docs = {d: g for d, g in qrels[qid].items() if d in data.corpus}
        if not docs or max(docs.values()) < 1 or qid not in data.queries:
            continue
        best = max(docs, key=lambda d: (docs[d], d))
        exclude[len(rows)] = {d for d, g in docs.items() if g >= min(threshold, docs[best]) and d != best}
        rows.append({"query": data.queries[qid], "doc_id": best, "qid": qid})
    return pd.DataFrame(rows, columns=["query", "doc_id", "qid"]), exclude


# ------------------------------------------------------------------------------------- training


def cross_encoder_from(embedder, max_length: int = 128, seed: int = SEED):
    """A cross-encoder (fresh one-logit head) on the backbone of a SentenceTransformer.

    ``embedder=None`` gives :func:`cookbook.models.load_cross_encoder` (MiniLM); otherwise the
    embedder is saved to a temporary folder and loaded as a CrossEncoder (sentence-transformers
    converts it), which is how tests get a tiny random reranker.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """

    import torch
    from transformers.utils import logging as hf_logging

    torch.manual_seed(seed)  # the fresh head is random: seed it
    st_logger = logging.getLogger("sentence_transformers")
    level, hf_level = st_logger.level, hf_logging.get_verbosity()
    st_logger.setLevel(logging.ERROR)  # "converting ... to CrossEncoder", "head newly initialised":
    hf_logging.set_verbosity_error()  # expected here, so not repeated for every model
    try:
        if embedder is None:

            return load_cross_encoder(num_labels=1, max_length=max_length)
        from sentence_transformers import CrossEncoder

        with tempfile.TemporaryDirectory() as tmp:
            embedder.save(tmp)
            return CrossEncoder(tmp, num_labels=1, max_length=max_length, device="cpu")
    finally:
        st_logger.setLevel(level)
        hf_logging.set_verbosity(hf_level)


def train(model, dataset, loss, *, max_steps: int, batch_size: int, learning_rate: float = 2e-5,
          warmup: float = 0.1, seed: int = SEED, output_dir: str | None = None,
          dev: Callable | None = None, dev_every: int | None = None, bf16: bool = False) -> dict:
    """Train a cross-encoder in place with ``CrossEncoderTrainer``; return a small report.

    ``loss`` is a loss object (:class:`LCELoss`, ``losses.BinaryCrossEntropyLoss``,
    ``losses.MultipleNegativesRankingLoss``). ``batch_size`` counts dataset rows (groups for
    LCE, pairs for BCE). Returns ``{"steps", "seconds", "seconds_per_step", "loss" (mean over
    the run), "final_loss" (mean over the last logged tenth), "log"}``.

    ``bf16=True`` trains under bf16 autocast (weights stay fp32; see :func:`reranker_precision`
    for when that pays on a CPU); the dev checks during training then run in bf16 too, and the
    model is returned without the autocast wrapper, so later calls choose their own precision.

    ``dev(model) -> (score, run)`` is the checkpoint choice (:func:`dev_check`): it runs before
    the first step and every ``dev_every`` steps; the model ends with the weights of the best
    dev score (the earliest on a tie, so step 0 wins when nothing beats it), and the report
    adds ``dev_curve`` (step, score), ``best_step``, ``best_score``, ``best_run`` and the
    cross-encoder's ``dev_pairs_per_second`` over the checks that ran it.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """

    import torch
    from sentence_transformers.cross_encoder import (
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from transformers.trainer_callback import PrinterCallback

    if len(dataset) < 1 or max_steps < 1 or batch_size < 1:
        raise ValueError(f"need rows, max_steps >= 1 and batch_size >= 1 (got {len(dataset)} rows, "
                         f"max_steps={max_steps}, batch_size={batch_size})")
    with tempfile.TemporaryDirectory() as tmp:
        args = CrossEncoderTrainingArguments(
            output_dir=str(output_dir or tmp), max_steps=max_steps, per_device_train_batch_size=batch_size,
            learning_rate=learning_rate, warmup_steps=warmup, seed=seed, data_seed=seed,
            report_to="none", save_strategy="no", logging_steps=max(1, max_steps // 10),
            disable_tqdm=True, dataloader_num_workers=0, dataloader_pin_memory=False, bf16=bf16,
            use_cpu=bf16 and not torch.cuda.is_available(),  # transformers asks for it to run bf16 on a CPU
        )
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
        trainer.remove_callback(PrinterCallback)
        check = None
        if dev is not None:
            from transformers import TrainerCallback

            check = type("DevCheck", (_DevCheck, TrainerCallback), {})(
                model, dev, dev_every or max(1, max_steps // 3), max_steps)
            trainer.add_callback(check)
        started = time.perf_counter()
        try:
            output = trainer.train()
        finally:
            if bf16:  # accelerate wrapped forward in autocast for training: take the wrapper off
                from accelerate.utils import extract_model_from_parallel

                extract_model_from_parallel(model, keep_fp32_wrapper=False)
        seconds = time.perf_counter() - started
    steps = int(output.global_step)
    log = [row for row in trainer.state.log_history if "loss" in row]
    report = {"steps": steps, "seconds": round(seconds, 1), "seconds_per_step": round(seconds / max(steps, 1), 3),
              "loss": round(float(output.training_loss), 4),
              "final_loss": round(float(log[-1]["loss"]), 4) if log else None, "log": log}
    if check is not None:
        model.model.load_state_dict(check.best_state)
        report.update(dev_curve=check.curve, best_step=check.best_step, best_score=check.best_score,
                      best_run=check.best_run, dev_seconds=round(check.seconds, 1),
                      dev_pairs_per_second=round(check.model_pairs / check.model_seconds, 1)
                      if check.model_pairs and check.model_seconds > 0 else None)
    return report


class _DevCheck:
    """Trainer callback: score the model on the dev check at step 0 and every ``every`` steps,
    keep a copy of the best weights (see :func:`train`)."""

    def __init__(self, model, dev, every: int, max_steps: int):
        self.model, self.dev, self.every, self.max_steps = model, dev, every, max_steps
        self.curve, self.best_score, self.best_step, self.best_state, self.best_run = [], -np.inf, 0, None, None
        self.seconds, self.model_pairs, self.model_seconds = 0.0, 0, 0.0

    def _check(self, step: int) -> None:
        started = time.perf_counter()
        module = self.model.model
        was_training = module.training
        score, run = self.dev(self.model)
        module.train(was_training)
        if getattr(run, "model_pairs", 0):  # the cross-encoder's throughput, where it ran
            self.model_pairs, self.model_seconds = self.model_pairs + run.model_pairs, self.model_seconds + run.seconds
        self.curve.append({"step": step, "dev": float(score)})
        if score > self.best_score:
            self.best_score, self.best_step, self.best_run = float(score), step, run
            self.best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.seconds += time.perf_counter() - started

    def on_train_begin(self, args, state, control, **kwargs):
        self._check(0)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == self.max_steps:
            self._check(state.global_step)



def dev_check(run: Mapping[str, Mapping[str, float]], qrels, data, *, depth: int = 20,
              queries: Mapping[str, str] | None = None, metric: str = "nDCG@10",
              precision: str = "fp32") -> Callable:
    """The dev check of :func:`train`: ``model -> (mean metric, reranked run)`` over the first
    stage's ``run`` of the dev queries (never test queries), reranked at ``depth`` in
    ``precision`` (see :func:`rerank`).

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    def score(model):
        reranked = rerank(model, run, data, depth=depth, queries=queries, precision=precision)
        return evaluate.evaluate(reranked, qrels, (metric,))[0][metric], reranked
    return score


# --------------------------------------------------------------------------------- residual start


#: the HF config key that stores the residual scale ``a`` with a saved reranker
RESIDUAL_KEY = "cookbook_residual_scale"


def residual_scale(run: Mapping[str, Mapping[str, float]], depth: int = 30) -> float:
    """``a`` of the residual score ``s = a * first + f``: one over the median (over queries) of the
    standard deviation of the first stage's top-``depth`` scores. The first stage's spread inside
    a query then counts about one logit, the scale a fresh output layer learns in.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    spreads = [np.std(sorted(docs.values(), reverse=True)[:depth]) for docs in run.values() if len(docs) > 1]
    spread = float(np.median(spreads)) if spreads else 0.0
    return 1.0 / spread if spread > 1e-9 else 1.0


def output_layer(model):
    """The last ``Linear`` layer of a cross-encoder with one output (its scoring head)."""
    from torch import nn

    heads = [m for m in model.model.modules() if isinstance(m, nn.Linear) and m.out_features == 1]
    if not heads:
        raise ValueError("no one-output Linear layer found: is this a cross-encoder with num_labels=1?")
    return heads[-1]


def residual_reranker(embedder=None, *, scale: float, max_length: int = 128, seed: int = SEED):
    """A reranker that starts *exactly* at its first stage: ``s = scale * first-stage score + f``,
    where ``f`` is a cross-encoder (:func:`cross_encoder_from`) whose output layer starts at
    zero. At step 0 ``f = 0`` and the reranked list is the first stage's; training moves ``f``
    only where the groups ask for it. ``scale`` (:func:`residual_scale`) is stored in the saved
    config, so :func:`rerank` adds the first stage's score after loading too.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    import torch

    model = cross_encoder_from(embedder, max_length=max_length, seed=seed)
    head = output_layer(model)
    with torch.no_grad():
        head.weight.zero_()
        if head.bias is not None:
            head.bias.zero_()
    setattr(model.model.config, RESIDUAL_KEY, float(scale))
    return model


def residual_of(model) -> float | None:
    """The residual scale ``a`` a reranker was trained with, or None for a plain cross-encoder."""
    value = getattr(getattr(getattr(model, "model", None), "config", None), RESIDUAL_KEY, None)
    return float(value) if value is not None else None


def residual_is_zero(model) -> bool:
    """True for a residual reranker whose output layer is all zeros, so ``f = 0`` on every pair."""
    if residual_of(model) is None:
        return False
    head = output_layer(model)
    return not bool(head.weight.detach().any()) and (head.bias is None or not bool(head.bias.detach().any()))


def keep_first_stage(model) -> None:
    """Set ``f = 0``: the residual reranker returns exactly its first stage's order."""
    import torch

    head = output_layer(model)
    with torch.no_grad():
        head.weight.zero_()
        if head.bias is not None:
            head.bias.zero_()


class FirstStagePrior:
    """``scale * cos(query, document)`` from a :class:`cookbook.retrieval.DenseIndex`: the first
    stage's own score of every pair of an LCE batch (document vectors from the index, queries
    encoded once and cached). Give it to :class:`LCELoss` as ``prior``.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """

    def __init__(self, index, data, scale: float):
        self.index, self.scale = index, float(scale)
        self.doc_row = {data.doc_text(d): i for i, d in enumerate(index.ids)}
        self._queries: dict[str, np.ndarray] = {}

    def _query_vectors(self, queries) -> np.ndarray:

        new = [q for q in dict.fromkeys(queries) if q not in self._queries]
        if new:
            vectors = retrieval.encode(self.index.model, new, prompt=self.index.query_prompt)
            self._queries.update(zip(new, vectors))
        return np.stack([self._queries[q] for q in queries])

    def _doc_vectors(self, texts) -> np.ndarray:

        rows = [self.doc_row.get(t) for t in texts]
        out = np.zeros((len(texts), self.index.embeddings.shape[1]), dtype=np.float32)
        known = [i for i, r in enumerate(rows) if r is not None]
        out[known] = self.index.embeddings[[rows[i] for i in known]]
        unknown = [i for i, r in enumerate(rows) if r is None]
        if unknown:
            out[unknown] = retrieval.encode(self.index.model, [texts[i] for i in unknown])
        return out

    def cosines(self, queries, columns) -> np.ndarray:
        """``(len(queries), len(columns))`` cosines; ``columns[j][i]`` is query i's j-th document."""
        q = self._query_vectors(list(queries))
        return np.stack([(q * self._doc_vectors(list(col))).sum(1) for col in columns], axis=1)

    def __call__(self, queries, columns):
        import torch

        return torch.from_numpy(self.scale * self.cosines(queries, columns))


def prior_loss(groups: pd.DataFrame, data, prior: FirstStagePrior, temperature: float = 1.0) -> float:
    """The LCE loss of the first stage's own scores (``prior``) on ``groups``: the level a
    residual reranker starts from (step 0) and must go below.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    columns = [[data.doc_text(d) for d in groups["doc_id"]]]
    columns += [[data.doc_text(n[j]) for n in groups["negatives"]] for j in range(len(groups["negatives"].iloc[0]))]
    return float(lce(prior(list(groups["query"]), columns), temperature))


# ------------------------------------------------------------------------------------ reranking


class RerankedRun(dict):
    """A run (``{qid: {doc_id: score}}``) plus what reranking it cost.

    ``scores``: the cross-encoder's score of every reranked pair; ``pairs``, ``seconds``,
    ``pairs_per_second``, ``depth``, ``precision``.
    """

    scores: dict
    pairs: int
    seconds: float
    depth: int
    model_pairs: int  # pairs the cross-encoder scored (0 when f = 0 made it unnecessary)
    precision: str = "fp32"  # the cross-encoder's number format (see reranker_precision)

    @property
    def pairs_per_second(self) -> float:
        return self.model_pairs / self.seconds if self.model_pairs and self.seconds > 0 else float("nan")


def _ranked(docs: Mapping[str, float]) -> list[str]:
    return [d for d, _ in sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))]


def at_depth(first_stage: Mapping[str, Mapping[str, float]], scores: Mapping[str, Mapping[str, float]],
             depth: int) -> dict:
    """Compose a reranked run from stored cross-encoder ``scores``: the first stage's top
    ``depth`` documents ordered by their score, then the rest in first-stage order below them.

    Scoring once at the largest depth gives the run at every smaller depth for free, because a
    cross-encoder scores each pair on its own.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    if depth < 1:
        raise ValueError(f"depth={depth} must be >= 1")
    out = {}
    for qid, docs in first_stage.items():
        ranked = _ranked(docs)
        head, tail = ranked[:depth], ranked[depth:]
        missing = [d for d in head if d not in scores.get(qid, {})]
        if missing:
            raise ValueError(f"query {qid!r}: no cross-encoder score for {missing[:3]} "
                             f"(scored at a smaller depth than {depth}?)")
        s = {d: float(scores[qid][d]) for d in head}
        floor = min(s.values()) if s else 0.0
        for i, d in enumerate(tail, start=1):
            s[d] = floor - i  # below every reranked document, in first-stage order
        out[qid] = s
    return out


def rerank(model, run: Mapping[str, Mapping[str, float]], data, *, depth: int = 20,
           queries: Mapping[str, str] | None = None, batch_size: int = 64,
           precision: str = "fp32") -> RerankedRun:
    """Rerank the top ``depth`` documents of every query of ``run`` with a cross-encoder.

    All pairs of all queries go through ``model.predict`` in batches of ``batch_size``; the
    result is a run that :func:`cookbook.evaluate.evaluate` reads (documents below ``depth``
    keep their first-stage order underneath), with ``.scores`` (raw logits), ``.pairs``,
    ``.seconds`` and ``.pairs_per_second``. ``queries`` defaults to ``data.queries``.
    A residual reranker (:func:`residual_reranker`) scores ``a * run score + f``: give it the
    run of the first stage it was trained over. While its output layer is all zeros (step 0, or
    :func:`keep_first_stage`) ``f`` is exactly 0 for every pair, so the cross-encoder is not run
    (``.model_pairs`` is 0 and ``.pairs_per_second`` is NaN: nothing was measured).
    ``precision``: ``fp32``, ``bf16`` (autocast; fast only where the CPU does bf16 natively) or
    ``auto`` (:func:`reranker_precision`); ``.precision`` says which ran.
    A run naming a document or query that ``data`` does not hold is an
    :class:`UnknownDocumentError`.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    if depth < 1:
        raise ValueError(f"depth={depth} must be >= 1")
    queries = data.queries if queries is None else queries
    unknown_q = [q for q in run if q not in queries]
    if unknown_q:
        raise UnknownDocumentError(f"run names {len(unknown_q)} unknown query id(s), e.g. {unknown_q[:3]}")
    unknown = sorted({d for docs in run.values() for d in docs if d not in data.corpus})
    if unknown:
        raise UnknownDocumentError(f"run names {len(unknown)} document(s) not in the corpus, "
                                   f"e.g. {unknown[:3]}")
    keys = [(qid, d) for qid, docs in run.items() for d in _ranked(docs)[:depth]]
    precision = reranker_precision(precision)[0]
    started = time.perf_counter()
    logits, ran = _logits(model, [(queries[q], data.doc_text(d)) for q, d in keys], batch_size, precision)
    seconds = time.perf_counter() - started
    scores: dict[str, dict[str, float]] = {q: {} for q in run}
    scale = residual_of(model)  # a residual reranker scores s = a * first-stage score + f
    for (q, d), s in zip(keys, logits):
        scores[q][d] = float(s) + (scale * float(run[q][d]) if scale is not None else 0.0)
    out = RerankedRun(at_depth(run, scores, depth))
    out.scores, out.pairs, out.seconds, out.depth = scores, len(keys), seconds, depth
    out.model_pairs = len(keys) if ran else 0
    out.precision = precision
    return out


#: the cross-encoder's number formats: ``auto`` picks bf16 where the CPU does bf16 natively
PRECISIONS = ("auto", "fp32", "bf16")


def reranker_precision(precision: str = "auto") -> tuple[str, str]:
    """``(precision, reason)`` of the cross-encoder: ``fp32`` and ``bf16`` as asked; ``auto``
    picks ``bf16`` (autocast, weights kept in fp32) on a CPU with native bf16 matmuls
    (``avx512_bf16`` or AMX, as :func:`cookbook.llm.precision.choose_precision` reads them) and
    ``fp32`` elsewhere, where torch would emulate bf16 far slower than fp32. ``python -m cookbook
    bench --part rerank`` measures both side by side (speed, logit difference, nDCG@10).

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision, "as asked"
    from cookbook.llm.precision import choose_precision

    return choose_precision()


def _logits(model, pairs: list[tuple[str, str]], batch_size: int,
            precision: str = "fp32") -> tuple[np.ndarray, bool]:
    """The cross-encoder's raw logits of ``pairs`` (in ``precision``, ``fp32`` or ``bf16``) and
    whether it ran: a residual reranker whose output layer is all zeros has ``f = 0`` on every
    pair, so it is not run."""
    import contextlib

    import torch

    if not pairs or residual_is_zero(model):
        return np.zeros(len(pairs)), False
    device = getattr(model, "device", torch.device("cpu"))
    context = (torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if precision == "bf16"
               else contextlib.nullcontext())
    with context:
        out = model.predict(pairs, batch_size=batch_size, activation_fn=_identity(), convert_to_numpy=True,
                            show_progress_bar=False)
    return np.asarray(out, dtype=float).reshape(len(pairs), -1)[:, 0], True


def fine_distinction(model, data, split: str = "test", *, seed: int = SEED, batch_size: int = 64,
                     first_stage=None, precision: str = "fp32") -> float:
    """The fine-distinction accuracy of a cross-encoder: the adjacent-grade pairs of
    :func:`cookbook.evaluate.distinction_pairs` ordered by the model's scores (overall share).

    Taught in: notebooks/90_compare_recipes.ipynb
    """
    return fine_distinction_result(model, data, split, seed=seed, batch_size=batch_size,
                                   first_stage=first_stage, precision=precision)["all"]


def fine_distinction_result(model, data, split: str = "test", *, seed: int = SEED, batch_size: int = 64,
                            first_stage=None, precision: str = "fp32") -> dict:
    """:func:`cookbook.evaluate.fine_distinction_accuracy` with a cross-encoder as the scorer
    (a residual reranker needs its ``first_stage`` DenseIndex for the ``a * cos`` part;
    ``precision`` as in :func:`rerank`)."""
    pairs = evaluate.distinction_pairs(data, split, seed=seed)
    keys = sorted(set(zip(pairs["qid"], pairs["higher"])) | set(zip(pairs["qid"], pairs["lower"])))
    values, _ = _logits(model, [(data.queries[q], data.doc_text(d)) for q, d in keys], batch_size,
                        reranker_precision(precision)[0])
    scale = residual_of(model)
    if scale is not None and keys:
        if first_stage is None:
            raise ValueError("a residual reranker orders pairs with a * cos + f: pass first_stage= "
                             "(the DenseIndex it was trained over)")
        prior = FirstStagePrior(first_stage, data, scale)
        values = values + scale * prior.cosines([data.queries[q] for q, _ in keys],
                                                [[data.doc_text(d) for _, d in keys]])[:, 0]
    scores: dict[str, dict[str, float]] = {}
    for (q, d), s in zip(keys, values):
        scores.setdefault(q, {})[d] = float(s)
    return evaluate.fine_distinction_accuracy(scores, data, split, seed=seed)


def query_likelihood_rerank(llm, run: Mapping[str, Mapping[str, float]], data, *, depth: int = 20,
                            queries: Mapping[str, str] | None = None, max_doc_words: int = 32) -> RerankedRun:
    """Zero-shot reranking by query likelihood, UPR-style (Sachan et al., EMNLP 2022): the
    first stage's top ``depth`` ordered by the LLM's ``log p(query | document)`` per token.
    No training; the cost is one LLM pass per pair.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    queries = data.queries if queries is None else queries
    keys = [(qid, d) for qid, docs in run.items() for d in _ranked(docs)[:depth]]
    started = time.perf_counter()
    values = llm.query_likelihood([queries[q] for q, _ in keys], [data.doc_text(d) for _, d in keys],
                                  max_doc_words=max_doc_words, desc="UPR") if keys else []
    seconds = time.perf_counter() - started
    scores: dict[str, dict[str, float]] = {q: {} for q in run}
    for (q, d), v in zip(keys, values):
        scores[q][d] = float(v)
    out = RerankedRun(at_depth(run, scores, depth))
    out.scores, out.pairs, out.seconds, out.depth = scores, len(keys), seconds, depth
    out.model_pairs = len(keys)
    return out


def _identity():
    from torch import nn

    return nn.Identity()


def depth_curve(first_stage, scores, qrels, depths, *, pairs_per_second: float,
                metric: str = "nDCG@10") -> pd.DataFrame:
    """Quality and cost against rerank depth, from scores computed once at the largest depth:
    one row per depth with ``metric`` and the cross-encoder seconds per query
    (``depth / pairs_per_second``).

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    rows = []
    for k in depths:
        m = evaluate.evaluate(at_depth(first_stage, scores, k), qrels, (metric,))[0][metric]
        rows.append({"depth": k, metric: m, "seconds per query": k / pairs_per_second})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------- synthetic training data


def synthetic_pairs(data, llm, retriever, doc_ids, *, n_samples: int = 2, n_examples: int = 8,
                    consistency_k: int = 10, seed: int = SEED) -> pd.DataFrame:
    """(query, doc_id) pairs written by the LLM for ``doc_ids``: Promptagator few-shot prompts
    from the train split when there is one, else zero-shot prompts; cleaning and the round-trip
    consistency filter of :mod:`cookbook.querygen`.

    Taught in: notebooks/40_train_reranker_lce.ipynb
    """
    examples = []
    if data.qrels.get("train"):
        try:
            examples = querygen.few_shot_examples(data, min(max(n_examples, 1), 8), seed=seed)
        except ValueError:
            examples = []
    prompts = querygen.promptagator_prompts(data, doc_ids, examples)
    raw = querygen.generate_queries(llm, prompts, n=n_samples, seed=seed)
    kept = querygen.clean(raw, data, examples)
    kept = kept[kept["reason"] == ""]
    ranked = querygen.consistency_ranks(kept, retriever, depth=max(consistency_k, 10))
    final = ranked[ranked["rank"] <= consistency_k]
    return final[["query", "doc_id"]].reset_index(drop=True)
