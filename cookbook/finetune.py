"""One fine-tuning helper for bi-encoders: ``SentenceTransformerTrainer`` with quiet defaults.

Every recipe that trains a SentenceTransformer (Promptagator, CustomIR, SciNCL-style
triplets, graded pairs, BiXSE, Revela's evaluation baselines) calls :func:`fit` with its own
dataset and loss, so the training arguments, seeding and logging are the same everywhere.

The same call runs unchanged under ``torchrun --nproc_per_node N`` (the trainer sets up
DistributedDataParallel itself; gloo on CPU): that is how a recipe scales past one process.

Taught in: notebooks/20_generate_queries_promptagator.ipynb
"""

from __future__ import annotations

import tempfile
import time

from cookbook.config import SEED, show_progress


def fit(model, train_dataset, loss, *, epochs: float = 1, max_steps: int = -1,
        batch_size: int = 16, learning_rate: float = 2e-5, warmup: float = 0.0,
        no_duplicates: bool = False, seed: int = SEED, output_dir: str | None = None,
        progress: bool | None = None, logging_steps: int | None = None, prompts: dict | str | None = None,
        learning_rate_mapping: dict[str, float] | None = None, sampling: str = "proportional") -> dict:
    """Train ``model`` in place on ``train_dataset`` with ``loss``; return a small report.

    Several datasets train together when ``train_dataset`` and ``loss`` are dicts with the same
    keys (sentence-transformers' multi-dataset training: each batch comes from one dataset,
    with that dataset's loss). ``sampling`` picks the dataset of each batch: ``"proportional"``
    (in proportion to the dataset sizes, so a large part takes most batches) or
    ``"round_robin"`` (one batch of each part in turn, every part the same share; an epoch ends
    when the smallest part runs out, and training goes on with the next epoch). The report's
    ``"batches"`` counts the batches each part trained on.

    ``max_steps`` > 0 overrides ``epochs``. ``warmup`` below 1 is a share of the steps, from 1
    up a number of steps (the transformers convention). ``no_duplicates=True`` keeps a text out
    of a batch twice, which in-batch-negative losses need (MNRL, BiXSE). ``prompts`` are
    prepended per column for e5/bge-style models (``{"anchor": "query: ", "positive":
    "passage: "}``), as sentence-transformers' trainer does. ``learning_rate_mapping``
    (``{parameter name regex: learning rate}``, matched against the loss's parameter names) gives
    some parameters their own learning rate, e.g. a loss's learnable scale and bias. Returns ``{"steps",
    "seconds", "seconds_per_step", "loss", "log"}`` (``log``: the trainer's loss rows), and ``"batches"`` for
    several datasets.
    ``progress=None`` shows the trainer's tqdm bar when ``COOKBOOK_PROGRESS=1`` (the recipe
    command sets it); notebooks stay quiet.

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        MultiDatasetBatchSamplers,
    )
    from transformers.trainer_callback import PrinterCallback

    parts = train_dataset if isinstance(train_dataset, dict) else {"train_dataset": train_dataset}
    for part, ds in parts.items():
        if len(ds) < 2:
            raise ValueError(f"{part} has {len(ds)} rows; training needs at least 2")
    if isinstance(train_dataset, dict) and not isinstance(loss, dict):
        raise ValueError("several training datasets need a dict of losses with the same keys")
    if batch_size < 1 or (max_steps < 1 and epochs <= 0):
        raise ValueError(f"batch_size must be positive and max_steps or epochs set "
                         f"(got batch_size={batch_size}, max_steps={max_steps}, epochs={epochs})")
    samplers = {"proportional": MultiDatasetBatchSamplers.PROPORTIONAL,
                "round_robin": MultiDatasetBatchSamplers.ROUND_ROBIN}
    if sampling not in samplers:
        raise ValueError(f"sampling={sampling!r}: use one of {sorted(samplers)}")
    if progress is None:
        progress = show_progress()

    class CountingTrainer(SentenceTransformerTrainer):
        """Counts the training batches of each dataset (the trainer picks the loss by name)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.batches: dict[str, int] = {}

        def compute_loss(self, model, inputs, *args, **kwargs):
            name = inputs.get("dataset_name")
            if name is not None and model.training:
                self.batches[name] = self.batches.get(name, 0) + 1
            return super().compute_loss(model, inputs, *args, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=output_dir or tmp, num_train_epochs=epochs, max_steps=max_steps,
            per_device_train_batch_size=batch_size, learning_rate=learning_rate,
            warmup_steps=warmup, seed=seed, data_seed=seed, report_to="none", save_strategy="no",
            batch_sampler=BatchSamplers.NO_DUPLICATES if no_duplicates else BatchSamplers.BATCH_SAMPLER,
            logging_steps=logging_steps or (max(1, max_steps // 10) if max_steps > 0 else 10),
            disable_tqdm=not progress, dataloader_num_workers=0, dataloader_pin_memory=False,
            prompts=prompts, learning_rate_mapping=learning_rate_mapping or None,
            multi_dataset_batch_sampler=samplers[sampling],
        )
        trainer = CountingTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss)
        if not progress:  # without tqdm the trainer prints every log dict; keep notebooks quiet
            trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - started
    steps = int(output.global_step)
    report = {"batches": dict(trainer.batches)} if isinstance(train_dataset, dict) else {}
    return {**report, "steps": steps, "seconds": round(seconds, 1),
            "seconds_per_step": round(seconds / max(steps, 1), 3),
            "loss": round(float(output.training_loss), 4),
            "log": [row for row in trainer.state.log_history if "loss" in row]}
