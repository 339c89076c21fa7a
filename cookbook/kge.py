"""Knowledge-graph embeddings (KGE) with torch-geometric: train, evaluate, export.

Four classic models share one interface in ``torch_geometric.nn.kge``:

=========  ==========================================  ============================
model      score of (head, relation, tail)             what it can represent
=========  ==========================================  ============================
TransE     ``-|| h + r - t ||``                        composition; not symmetry
DistMult   ``<h, r, t>`` (trilinear)                   symmetry; not direction
ComplEx    ``Re <h, r, conj(t)>`` (complex numbers)     symmetry and asymmetry
RotatE     ``-|| h * r - t ||``, ``|r_i| = 1``          symmetry, inversion, composition
=========  ==========================================  ============================

Training uses each model's own ``.loader()`` and ``.loss()`` (uniformly corrupted heads or
tails as negatives). Link prediction ranks the true tail (and head) among all entities;
:func:`evaluate_link_prediction` reports MR, MRR and Hits@k, filtered by default (other
known true edges are not counted as mistakes), and matches ``model.test()`` when
``filtered=False, both_sides=False``.

Taught in: notebooks/50_build_knowledge_graph.ipynb
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cookbook.config import SEED

MODEL_NAMES = ("transe", "distmult", "complex", "rotate")

# Hyper-parameters picked on the API-docs graph's validation edges (notebook 50, exercise 2
# re-runs the sweep); ``margin``/``p_norm`` go to the model constructor.
DEFAULTS: dict[str, dict] = {
    "transe": {"lr": 0.01, "optimizer": "adam", "model_kwargs": {"margin": 1.0, "p_norm": 1.0}},
    "distmult": {"lr": 0.003, "optimizer": "adam", "model_kwargs": {"margin": 1.0}},
    "complex": {"lr": 0.05, "optimizer": "adagrad", "model_kwargs": {}},
    "rotate": {"lr": 0.01, "optimizer": "adam", "model_kwargs": {"margin": 6.0}},
}


def _model_map() -> dict:
    from torch_geometric.nn.kge import ComplEx, DistMult, RotatE, TransE

    return {"transe": TransE, "distmult": DistMult, "complex": ComplEx, "rotate": RotatE}


def __getattr__(name):  # ``kge.model_map`` without importing torch-geometric at import time
    if name == "model_map":
        return _model_map()
    raise AttributeError(name)


@contextmanager
def torch_threads(n: int | None):
    """Run a block with ``n`` torch CPU threads, then restore the previous number."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_name(name: str) -> str:
    key = name.lower()
    if key not in MODEL_NAMES:
        raise ValueError(f"unknown KGE model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return key


def make_model(name: str, num_nodes: int, num_relations: int, dim: int = 64, seed: int = SEED, **kwargs):
    """Build a fresh KGE model from ``model_map`` with seeded initial embeddings.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import torch

    key = _check_name(name)
    if num_nodes < 2 or num_relations < 1 or dim < 1:
        raise ValueError(f"need num_nodes >= 2, num_relations >= 1, dim >= 1 (got {num_nodes}, {num_relations}, {dim})")
    options = {**DEFAULTS[key]["model_kwargs"], **kwargs}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _model_map()[key](num_nodes, num_relations, hidden_channels=dim, **options)


@dataclass
class TrainedKGE:
    """A trained model with its loss curve, per-epoch wall time and validation history."""

    name: str
    model: object
    losses: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    valid_history: list[dict] = field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        return sum(self.epoch_seconds) / max(len(self.epoch_seconds), 1)

    def embeddings(self):
        return entity_embeddings(self.model)


def train_kge(
    name: str,
    train,
    num_nodes: int,
    num_relations: int,
    *,
    dim: int = 64,
    epochs: int = 100,
    batch_size: int = 1024,
    lr: float | None = None,
    optimizer: str | None = None,
    valid=None,
    eval_every: int = 0,
    filter_triples=None,
    seed: int = SEED,
    progress: bool = False,
    threads: int | None = 1,
    **model_kwargs,
) -> TrainedKGE:
    """Train a KGE model on ``train`` triples with the model's own loader and loss.

    ``train``/``valid`` are :class:`cookbook.graph.Triples`. With ``eval_every > 0`` and
    ``valid`` given, filtered link prediction on ``valid`` is recorded every that many
    epochs. The global torch RNG is forked, so training does not disturb the caller's seeds.
    ``threads=1`` (restored afterwards): KGE batches are small, and on a shared 2-core machine
    two torch threads were measured 10-30x slower than one; ``None`` keeps torch's setting.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import torch
    from tqdm.auto import tqdm

    key = _check_name(name)
    if len(train) == 0:
        raise ValueError("train has no triples")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive (got {epochs}, {batch_size})")
    settings = DEFAULTS[key]
    lr = settings["lr"] if lr is None else lr
    optimizer = (optimizer or settings["optimizer"]).lower()
    model = make_model(key, num_nodes, num_relations, dim=dim, seed=seed, **model_kwargs)
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    elif optimizer == "adagrad":
        opt = torch.optim.Adagrad(model.parameters(), lr=lr)
    else:
        raise ValueError(f"optimizer={optimizer!r}; use 'adam' or 'adagrad'")
    result = TrainedKGE(key, model)
    with torch.random.fork_rng(devices=[]), torch_threads(threads):
        torch.manual_seed(seed)
        loader = model.loader(
            *train.as_tuple(), batch_size=batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )
        for epoch in tqdm(range(1, epochs + 1), desc=f"train {key}", disable=not progress):
            model.train()
            start, total, count = time.perf_counter(), 0.0, 0
            for head, rel, tail in loader:
                opt.zero_grad()
                loss = model.loss(head, rel, tail)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * head.numel()
                count += head.numel()
            result.epoch_seconds.append(time.perf_counter() - start)
            result.losses.append(total / count)
            if valid is not None and eval_every and (epoch % eval_every == 0 or epoch == epochs):
                metrics = evaluate_link_prediction(model, valid, filter_triples=filter_triples)
                result.valid_history.append({"epoch": epoch, **metrics})
    model.eval()
    return result


def _known_index(filter_triples):
    """Dicts (head, rel) -> tails and (rel, tail) -> heads for filtered ranking."""
    tails, heads = {}, {}
    if filter_triples is None:
        return tails, heads
    for h, r, t in zip(filter_triples.head.tolist(), filter_triples.rel.tolist(), filter_triples.tail.tolist(), strict=True):
        tails.setdefault((h, r), []).append(t)
        heads.setdefault((r, t), []).append(h)
    return tails, heads


def _ranks(scores, target, known_lists):
    """Rank of ``target`` in each score row (1 = best); ties share the mean rank."""
    import torch

    true = scores.gather(1, target.view(-1, 1))
    if known_lists is not None:
        scores = scores.clone()
        rows, cols = [], []
        for i, known in enumerate(known_lists):
            rows.extend([i] * len(known))
            cols.extend(known)
        if rows:
            scores[torch.tensor(rows), torch.tensor(cols)] = float("-inf")
        scores.scatter_(1, target.view(-1, 1), true)  # put the target back
    greater = (scores > true).sum(1).float()
    ties = (scores == true).sum(1).float() - 1
    return 1 + greater + ties / 2


def score_all(model, index, rel, side: str = "tail"):
    """Scores of every entity as the missing ``side`` of (index, rel, ?) or (?, rel, index): ``[B, N]``.

    Equals calling ``model(head, rel, tail)`` for every candidate, but uses one matrix product
    (or ``cdist``) per batch for the four built-in models; other models fall back to forward.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import torch
    import torch.nn.functional as F

    if side not in ("tail", "head"):
        raise ValueError(f"side={side!r}; use 'tail' or 'head'")
    kind = type(model).__name__
    ent, rel_w = model.node_emb.weight, model.rel_emb.weight
    x, r = ent[index], rel_w[rel]
    if kind == "TransE":
        all_e = F.normalize(ent, p=model.p_norm, dim=-1)
        x = F.normalize(x, p=model.p_norm, dim=-1)
        query = x + r if side == "tail" else x - r  # h + r ~ t  <=>  h ~ t - r
        return -torch.cdist(query, all_e, p=model.p_norm)
    if kind == "DistMult":
        return (x * r) @ ent.T
    if kind == "ComplEx":
        x_im, r_im, all_im = model.node_emb_im.weight[index], model.rel_emb_im.weight[rel], model.node_emb_im.weight
        a, b, c, d = x, x_im, r, r_im
        if side == "tail":  # Re(h r conj(t)) = t_re (ac - bd) + t_im (ad + bc)
            return (a * c - b * d) @ ent.T + (a * d + b * c) @ all_im.T
        # as a function of the head h = e + fi: e (c t_re + d t_im) + f (c t_im - d t_re)
        return (c * a + d * b) @ ent.T + (c * b - d * a) @ all_im.T
    if kind == "RotatE":
        x_im, all_im = model.node_emb_im.weight[index], model.node_emb_im.weight
        c, d = torch.cos(r), torch.sin(r)
        if side == "tail":  # h * r, compared with every t
            q_re, q_im = c * x - d * x_im, c * x_im + d * x
        else:  # |h r - t| = |h - t conj(r)| because |r_i| = 1
            q_re, q_im = c * x + d * x_im, c * x_im - d * x
        dist = torch.cdist(torch.cat([q_re, q_im], 1), torch.cat([ent, all_im], 1), p=2)
        return model.margin - dist
    n = model.num_nodes
    cand = torch.arange(n).repeat(len(index))
    rep_x, rep_r = index.repeat_interleave(n), rel.repeat_interleave(n)
    out = model(rep_x, rep_r, cand) if side == "tail" else model(cand, rep_r, rep_x)
    return out.view(len(index), n)


def evaluate_link_prediction(
    model,
    triples,
    *,
    filter_triples=None,
    filtered: bool = True,
    both_sides: bool = True,
    ks: tuple[int, ...] = (1, 3, 10),
    max_rows: int = 1_000_000,
    threads: int | None = 1,
) -> dict[str, float]:
    """Rank every true tail (and head) among all entities: MR, MRR and Hits@k.

    ``filter_triples`` (for example ``split.all_triples()``) lists the known true edges that
    are removed from the candidate list before ranking (the "filtered" setting); with
    ``filtered=False`` nothing is removed. ``both_sides`` also ranks heads given (relation,
    tail). Scores are computed for batches of at most ``max_rows`` (query, candidate) pairs.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import torch

    if len(triples) == 0:
        raise ValueError("no triples to evaluate")
    n = model.num_nodes
    tails_known, heads_known = _known_index(filter_triples if filtered else None)
    use_filter = filtered and filter_triples is not None
    batch = max(1, max_rows // n)
    ranks = []
    model.eval()
    with torch.no_grad(), torch_threads(threads):
        for start in range(0, len(triples), batch):
            h = triples.head[start : start + batch]
            r = triples.rel[start : start + batch]
            t = triples.tail[start : start + batch]
            known = [tails_known.get(k, []) for k in zip(h.tolist(), r.tolist(), strict=True)] if use_filter else None
            ranks.append(_ranks(score_all(model, h, r, "tail"), t, known))
            if both_sides:
                known = [heads_known.get(k, []) for k in zip(r.tolist(), t.tolist(), strict=True)] if use_filter else None
                ranks.append(_ranks(score_all(model, t, r, "head"), h, known))
    rank = torch.cat(ranks)
    out = {"MR": float(rank.mean()), "MRR": float((1.0 / rank).mean())}
    for k in ks:
        out[f"Hits@{k}"] = float((rank <= k).float().mean())
    return out


def entity_embeddings(model):
    """One vector per entity for k-NN mining: real part, plus imaginary part when there is one.

    ComplEx and RotatE keep a second (imaginary) table ``node_emb_im``; the two are
    concatenated, so cosine similarity in the exported space compares whole complex vectors.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import torch

    with torch.no_grad():
        parts = [model.node_emb.weight]
        if hasattr(model, "node_emb_im"):
            parts.append(model.node_emb_im.weight)
        return torch.cat(parts, dim=1).detach().clone()


def save_embeddings(path, embeddings, entities: list[str], **meta) -> Path:
    """Write embeddings and their entity ids to one ``.pt`` file (plain tensors and lists).

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import torch

    if embeddings.shape[0] != len(entities):
        raise ValueError(f"{embeddings.shape[0]} embeddings but {len(entities)} entities")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"embeddings": embeddings.cpu(), "entities": list(entities), "meta": meta}, path)
    return path


def load_embeddings(path):
    """Read what :func:`save_embeddings` wrote: ``(embeddings, entities, meta)``.

    Taught in: notebooks/51_mine_triplets_from_graph_embeddings.ipynb
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run notebooks/50_build_knowledge_graph.ipynb first")
    blob = torch.load(path, weights_only=True)
    return blob["embeddings"], blob["entities"], blob.get("meta", {})


def compare_models(
    split,
    names: tuple[str, ...] = MODEL_NAMES,
    *,
    dim: int = 64,
    epochs: int = 100,
    batch_size: int = 1024,
    seed: int = SEED,
    eval_on: str = "test",
    progress: bool = False,
):
    """Train each model on ``split.train`` and rank ``split.<eval_on>``: one table, one dict.

    Returns ``(table, trained)`` where ``table`` is a DataFrame indexed by model with MRR,
    Hits@1/3/10, MR and seconds per epoch, and ``trained`` maps name -> :class:`TrainedKGE`.

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import pandas as pd

    held = getattr(split, eval_on)
    known = split.all_triples()
    rows, trained = [], {}
    for name in names:
        result = train_kge(
            name, split.train, split.num_nodes, split.num_relations, dim=dim, epochs=epochs,
            batch_size=batch_size, seed=seed, progress=progress,
        )
        metrics = evaluate_link_prediction(result.model, held, filter_triples=known)
        rows.append({"model": name, **metrics, "s/epoch": result.seconds_per_epoch})
        trained[name] = result
    table = pd.DataFrame(rows).set_index("model")
    return table[["MRR", "Hits@1", "Hits@3", "Hits@10", "MR", "s/epoch"]], trained
