"""SciNCL-style triplets mined from graph embeddings, triplet fine-tuning, related-object retrieval.

The recipe (Ostendorff et al., "Neighborhood Contrastive Learning for Scientific Document
Representations with Citation Embeddings", EMNLP 2022; applied to a domain knowledge graph
by Zhukova, Lühr, Lobmüller and Gipp, "Contrastive Learning Using Graph Embeddings for Domain
Adaptation of Language Models in the Process Industry"):

1. embed every graph node (here with a KGE model from :mod:`cookbook.kge`);
2. for each anchor, take its k nearest neighbours in that space: a *positive band* of ranks
   (SciNCL: k in [20, 25], 5 positives), a far *hard-negative band* (k ~ [3998, 4000], 2 hard
   negatives) and a few *random easy negatives* (3);
3. join the nodes' documents' texts and fine-tune the text encoder with a triplet margin
   loss (margin 1.0).

The bands are parameters (:class:`Bands`); :meth:`Bands.for_graph` scales them to a graph of
a few thousand nodes. Two baselines share the output format: :func:`random_triplets`
(positives drawn at random: no graph signal) and :func:`graph_triplets` (positives are
direct graph neighbours). Every miner drops pairs that join an evaluation pair and asserts it.

Taught in: notebooks/51_mine_triplets_from_graph_embeddings.ipynb
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from cookbook.config import SEED
from cookbook.evaluate import evaluate
from cookbook.finetune import fit
from cookbook.graph import assert_no_eval_edges, undirected_hops
from cookbook.retrieval import DenseIndex

FAISS_MIN_CANDIDATES = 20_000  # exact torch search below this many candidates, FAISS above


class MiningError(ValueError):
    """Bad mining input: bands outside the graph, no texts, mismatched sizes."""


# --------------------------------------------------------------------------------------
# k-NN
# --------------------------------------------------------------------------------------


def faiss_available() -> bool:
    """True when ``import faiss`` works (``pip install faiss-cpu``)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _prepare(x, metric: str):
    import torch

    x = torch.as_tensor(x).detach().float().cpu()
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=1)
    elif metric not in ("dot", "l2"):
        raise MiningError(f"metric={metric!r}; use 'cosine', 'dot' or 'l2'")
    return x


def knn(
    embeddings,
    k: int,
    *,
    queries: Iterable[int] | None = None,
    candidates: Iterable[int] | None = None,
    metric: str = "cosine",
    use_faiss: bool | None = None,
    batch_size: int = 1024,
):
    """The ``k`` nearest candidates of each query row, the query itself excluded.

    ``queries`` and ``candidates`` are row positions in ``embeddings`` (default: all rows).
    Returns ``(scores, indices)``, both ``[len(queries), k]``, best first; ``indices`` are
    row positions in ``embeddings``. Exact search in torch by default; FAISS
    (``IndexFlatIP``/``IndexFlatL2``, same answers) when ``use_faiss=True``, or automatically
    above ``FAISS_MIN_CANDIDATES`` candidates when FAISS is installed.

    Taught in: notebooks/51_mine_triplets_from_graph_embeddings.ipynb
    """
    import torch

    x = _prepare(embeddings, metric)
    n = x.shape[0]
    q_idx = torch.arange(n) if queries is None else torch.as_tensor(list(queries), dtype=torch.long)
    c_idx = torch.arange(n) if candidates is None else torch.as_tensor(list(candidates), dtype=torch.long)
    if k < 1:
        raise MiningError(f"k={k} must be at least 1")
    if k > len(c_idx) - 1:
        raise MiningError(f"k={k} but only {len(c_idx)} candidates (one may be the query itself)")
    if use_faiss is None:
        use_faiss = len(c_idx) > FAISS_MIN_CANDIDATES and faiss_available()
    width = k + 1  # one extra: the query may find itself
    xc, xq = x[c_idx], x[q_idx]
    if use_faiss:
        import faiss
        import numpy as np

        index = faiss.IndexFlatL2(x.shape[1]) if metric == "l2" else faiss.IndexFlatIP(x.shape[1])
        index.add(np.ascontiguousarray(xc.numpy()))
        scores, pos = index.search(np.ascontiguousarray(xq.numpy()), width)
        scores, pos = torch.from_numpy(scores), torch.from_numpy(pos).long()
        if metric == "l2":
            scores = -scores  # higher is closer everywhere
    else:
        out_s, out_p = [], []
        for start in range(0, len(q_idx), batch_size):
            block = xq[start : start + batch_size]
            sim = -torch.cdist(block, xc).pow(2) if metric == "l2" else block @ xc.T
            s, p = sim.topk(width, dim=1)
            out_s.append(s)
            out_p.append(p)
        scores, pos = torch.cat(out_s), torch.cat(out_p)
    found = c_idx[pos]
    is_self = found == q_idx.view(-1, 1)
    # drop the query itself where found, otherwise drop the last column
    drop = torch.where(is_self.any(1), is_self.float().argmax(1), torch.full((len(q_idx),), width - 1))
    keep = torch.ones_like(found, dtype=torch.bool)
    keep[torch.arange(len(q_idx)), drop] = False
    return scores[keep].view(len(q_idx), k), found[keep].view(len(q_idx), k)


def nearest_neighbours(embeddings, entities: list[str], entity: str, k: int = 10, metric: str = "cosine"):
    """A small table of ``entity``'s nearest neighbours in embedding space (for looking).

    Taught in: notebooks/50_build_knowledge_graph.ipynb
    """
    import pandas as pd

    if entity not in entities:
        raise MiningError(f"{entity!r} is not an entity")
    row = entities.index(entity)
    scores, idx = knn(embeddings, k, queries=[row], metric=metric)
    return pd.DataFrame({"rank": range(1, k + 1), "neighbour": [entities[i] for i in idx[0].tolist()],
                         "similarity": scores[0].tolist()})


# --------------------------------------------------------------------------------------
# bands and the triplet container
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bands:
    """Which k-NN ranks give positives and hard negatives, and how many of each.

    Ranks are 1-based and inclusive: ``positive=(20, 25)`` means the 20th to 25th nearest
    neighbours. The defaults are SciNCL's published values (for a graph of millions of nodes);
    use :meth:`for_graph` for a graph of a few thousand.

    Taught in: notebooks/51_mine_triplets_from_graph_embeddings.ipynb
    """

    positive: tuple[int, int] = (20, 25)
    n_positive: int = 5
    hard_negative: tuple[int, int] = (3998, 4000)
    n_hard: int = 2
    n_easy: int = 3

    def __post_init__(self):
        for name in ("positive", "hard_negative"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise MiningError(f"{name}={(lo, hi)}: need 1 <= low <= high")
        if self.hard_negative[0] <= self.positive[1]:
            raise MiningError(f"hard_negative band {self.hard_negative} must start after the positive band {self.positive}")
        if self.n_positive < 1 or self.n_hard < 0 or self.n_easy < 0 or self.n_hard + self.n_easy < 1:
            raise MiningError("need n_positive >= 1 and at least one negative (n_hard + n_easy >= 1)")

    @classmethod
    def scincl(cls) -> Bands:
        """SciNCL's published sampling: positives k in [20, 25] (5), hard negatives k in [3998, 4000] (2), 3 easy."""
        return cls()

    @classmethod
    def for_graph(cls, num_nodes: int, n_positive: int = 5, n_hard: int = 2, n_easy: int = 3) -> Bands:
        """Bands for a graph of ``num_nodes`` nodes (a few hundred to a few thousand).

        Positives come from ranks [1, n_positive + 2]: SciNCL's band k in [20, 25] sits among
        millions of papers, while here rank 20 is already ~1% of the graph. Hard negatives come
        from a band at about 3% of the graph (related, not close). Notebook 51 compares
        SciNCL's literal positive band; its exercise 2 moves the hard band.
        """
        if num_nodes < 20:
            raise MiningError(f"a graph of {num_nodes} nodes is too small for k-NN bands (need >= 20)")
        pos_hi = n_positive + 2
        hard_lo = max(pos_hi + 5, int(0.03 * num_nodes))
        hard_hi = min(num_nodes - 2, hard_lo + max(n_hard * 3, int(0.005 * num_nodes)))
        return cls((1, pos_hi), n_positive, (hard_lo, hard_hi), n_hard, n_easy)

    def describe(self) -> str:
        return (f"pos k{list(self.positive)}x{self.n_positive}, hard k{list(self.hard_negative)}x{self.n_hard}, "
                f"easy x{self.n_easy}")


@dataclass
class Triplets:
    """Mined (anchor, positive, negative) document ids, their texts and mining statistics.

    Taught in: notebooks/51_mine_triplets_from_graph_embeddings.ipynb
    """

    rows: list[dict]  # {"anchor", "positive", "negative", "negative_kind"} (document ids)
    texts: Mapping[str, str] = field(repr=False)
    stats: dict = field(default_factory=dict)
    method: str = "kge"

    def __len__(self) -> int:
        return len(self.rows)

    def to_frame(self):
        """One row per triplet (ids and negative kind), for looking."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["anchor", "positive", "negative", "negative_kind"])

    def to_dataset(self, limit: int | None = None, seed: int = SEED):
        """A ``datasets.Dataset`` with text columns ``anchor``, ``positive``, ``negative``.

        ``limit`` keeps a seeded random subset (the step budget of a CPU fine-tune).
        """
        from datasets import Dataset

        rows = self.rows
        if limit is not None and limit < len(rows):
            rows = random.Random(seed).sample(rows, limit)
        return Dataset.from_dict({
            "anchor": [self.texts[r["anchor"]] for r in rows],
            "positive": [self.texts[r["positive"]] for r in rows],
            "negative": [self.texts[r["negative"]] for r in rows],
        })

    def pairs(self) -> list[tuple[str, str]]:
        """Every (anchor, positive) and (anchor, negative) pair, for leak checks."""
        out = []
        for r in self.rows:
            out.append((r["anchor"], r["positive"]))
            out.append((r["anchor"], r["negative"]))
        return out

    def hop_profile(self, graph, cutoff: int = 2):
        """How far apart, in ``graph``, the anchor and each side of the triplets are.

        One row per role (``positive``, ``hard negative``, ``easy negative``): how many pairs,
        and the share at 1 hop, at most ``cutoff`` hops, and farther (or unconnected). Pass the
        *training* graph. Good positives are near; a hard negative at 1 hop is probably a
        false negative. Costs one breadth-first search per anchor.
        """
        import pandas as pd

        if cutoff < 1:
            raise MiningError(f"cutoff={cutoff}: need >= 1")
        hops: dict[str, dict[str, int]] = {}
        rows = []
        for r in self.rows:
            a = r["anchor"]
            if a not in hops:
                hops[a] = undirected_hops(graph, a, cutoff) if graph.has_node(a) else {}
            rows.append(("positive", hops[a].get(r["positive"])))
            rows.append((f"{r['negative_kind']} negative", hops[a].get(r["negative"])))
        df = pd.DataFrame(rows, columns=["role", "hops"])  # one row per triplet side
        if df.empty:
            return pd.DataFrame(columns=["pairs", "1 hop", f"<= {cutoff} hops", f"> {cutoff} hops"])
        out = df.groupby("role", sort=False)["hops"].agg(
            pairs="size",
            **{"1 hop": lambda h: float((h == 1).mean()),
               f"<= {cutoff} hops": lambda h: float(h.notna().mean()),
               f"> {cutoff} hops": lambda h: float(h.isna().mean())})
        return out


def _texts(texts, ids) -> dict[str, str]:
    if callable(texts):
        texts = {i: texts(i) for i in ids}
    return {i: t for i, t in texts.items() if isinstance(t, str) and t.strip()}


def _forbidden(exclude_pairs) -> set[tuple[str, str]]:
    out = set()
    for a, b in exclude_pairs or ():
        out.add((a, b))
        out.add((b, a))
    return out


def _choose_anchors(ids: list[str], with_text: Mapping, anchors, max_anchors, rng):
    pool = list(ids) if anchors is None else list(dict.fromkeys(anchors))
    skipped = [a for a in pool if a not in with_text]
    usable = [a for a in pool if a in with_text]
    if max_anchors is not None and len(usable) > max_anchors:
        usable = sorted(rng.sample(usable, max_anchors), key=usable.index)
    return usable, len(skipped), len(pool)


def _assemble(anchor, positives, hard, easy, rng) -> list[dict]:
    negatives = [(n, "hard") for n in hard] + [(n, "easy") for n in easy]
    if not positives or not negatives:
        return []
    rng.shuffle(negatives)
    return [
        {"anchor": anchor, "positive": p, "negative": negatives[i % len(negatives)][0],
         "negative_kind": negatives[i % len(negatives)][1]}
        for i, p in enumerate(positives)
    ]


def _easy(pool: list[str], n: int, banned: set[str], rng) -> list[str]:
    out: list[str] = []
    tries = 0
    while len(out) < n and tries < 50 * (n + 1):
        tries += 1
        cand = pool[rng.randrange(len(pool))]
        if cand not in banned and cand not in out:
            out.append(cand)
    return out


def _finish(rows, texts, stats, method, exclude_pairs, started) -> Triplets:
    triplets = Triplets(rows, texts, stats, method)
    assert_no_eval_edges(triplets.pairs(), exclude_pairs or (), what=f"{method} triplets")
    stats["triplets"] = len(rows)
    stats["seconds"] = round(time.perf_counter() - started, 3)
    return triplets


# --------------------------------------------------------------------------------------
# miners
# --------------------------------------------------------------------------------------


def mine_triplets(
    embeddings,
    entities: list[str],
    texts: Mapping[str, str] | Callable[[str], str],
    bands: Bands | None = None,
    *,
    anchors: Iterable[str] | None = None,
    candidates: Iterable[str] | None = None,
    max_anchors: int | None = None,
    exclude_pairs: Iterable[tuple[str, str]] = (),
    metric: str = "cosine",
    use_faiss: bool | None = None,
    seed: int = SEED,
) -> Triplets:
    """SciNCL-style triplets from entity embeddings: k-NN positive band, far hard negatives, random easy ones.

    ``entities[i]`` names row ``i`` of ``embeddings``; ``texts`` maps an entity to its
    document text (entities without text are never used; anchors without text are skipped
    and counted in ``stats["anchors_without_text"]``). ``candidates`` restricts which entities
    may be positives or negatives (for example only nodes with at least one training edge: an
    isolated node's KGE vector is its random initialisation). Candidates in a band that would join an
    ``exclude_pairs`` pair (the evaluation pairs) are dropped and counted; the result is
    asserted leak-free.

    Taught in: notebooks/51_mine_triplets_from_graph_embeddings.ipynb
    """
    started = time.perf_counter()
    bands = bands or Bands.for_graph(len(entities))
    if len(entities) != int(embeddings.shape[0]):
        raise MiningError(f"{embeddings.shape[0]} embeddings but {len(entities)} entities")
    with_text = _texts(texts, entities)
    if not with_text:
        raise MiningError("no entity has a text: check that `texts` is keyed by the graph's node ids")
    rng = random.Random(seed)
    position = {e: i for i, e in enumerate(entities)}
    allowed = None if candidates is None else set(candidates)
    candidates = [position[e] for e in entities if e in with_text and (allowed is None or e in allowed)]
    if bands.hard_negative[1] > len(candidates) - 1:
        raise MiningError(
            f"hard-negative band ends at k={bands.hard_negative[1]} but only {len(candidates)} entities have a text; "
            f"use Bands.for_graph({len(candidates)}) or smaller bands"
        )
    usable, n_skipped, n_pool = _choose_anchors(entities, with_text, anchors, max_anchors, rng)
    forbidden = _forbidden(exclude_pairs)
    _, nn = knn(embeddings, bands.hard_negative[1], queries=[position[a] for a in usable],
                candidates=candidates, metric=metric, use_faiss=use_faiss)
    pool = [entities[i] for i in candidates]
    rows, dropped = [], 0
    for anchor, row in zip(usable, nn.tolist(), strict=True):
        names = [entities[i] for i in row]
        ok = [n for n in names if (anchor, n) not in forbidden]
        dropped += len(names) - len(ok)
        band = [n for n in names[bands.positive[0] - 1 : bands.positive[1]] if (anchor, n) not in forbidden]
        far = [n for n in names[bands.hard_negative[0] - 1 : bands.hard_negative[1]] if (anchor, n) not in forbidden]
        positives = rng.sample(band, min(bands.n_positive, len(band)))
        hard = rng.sample(far, min(bands.n_hard, len(far)))
        banned = set(names) | {anchor} | {n for n in pool if (anchor, n) in forbidden}
        easy = _easy(pool, bands.n_easy, banned, rng)
        rows.extend(_assemble(anchor, positives, hard, easy, rng))
    stats = {"anchors_total": n_pool, "anchors_without_text": n_skipped, "anchors_used": len(usable),
             "excluded_eval_neighbours": dropped, "bands": bands.describe()}
    return _finish(rows, with_text, stats, "kge", exclude_pairs, started)


def _baseline_setup(texts, entities, anchors, max_anchors, exclude_pairs, seed, what: str):
    """Shared start of the baseline miners: texts, seeded rng, candidate pool, anchors, forbidden pairs."""
    with_text = _texts(texts, entities)
    if len(with_text) < 3:
        raise MiningError(f"need at least 3 {what} with text")
    rng = random.Random(seed)
    pool = [e for e in entities if e in with_text]
    usable, n_skipped, n_pool = _choose_anchors(entities, with_text, anchors, max_anchors, rng)
    return with_text, rng, pool, usable, n_skipped, n_pool, _forbidden(exclude_pairs)


def random_triplets(
    entities: list[str],
    texts: Mapping[str, str] | Callable[[str], str],
    *,
    n_per_anchor: int = 5,
    anchors: Iterable[str] | None = None,
    max_anchors: int | None = None,
    exclude_pairs: Iterable[tuple[str, str]] = (),
    seed: int = SEED,
) -> Triplets:
    """Baseline: positives and negatives drawn uniformly at random (no graph signal at all).

    Fine-tuning on these shows how much of a gain is just "more in-domain text".

    Taught in: notebooks/51_mine_triplets_from_graph_embeddings.ipynb
    """
    started = time.perf_counter()
    with_text, rng, pool, usable, n_skipped, n_pool, forbidden = _baseline_setup(
        texts, entities, anchors, max_anchors, exclude_pairs, seed, "entities")
    rows = []
    for anchor in usable:
        banned = {anchor} | {n for n in pool if (anchor, n) in forbidden}
        positives = _easy(pool, n_per_anchor, banned, rng)
        negatives = _easy(pool, n_per_anchor, banned | set(positives), rng)
        rows.extend(_assemble(anchor, positives, [], negatives, rng))
    stats = {"anchors_total": n_pool, "anchors_without_text": n_skipped, "anchors_used": len(usable)}
    return _finish(rows, with_text, stats, "random", exclude_pairs, started)


def graph_triplets(
    graph,
    texts: Mapping[str, str] | Callable[[str], str],
    *,
    positive_hops: tuple[int, int] = (1, 1),
    hard_hops: tuple[int, int] = (3, 3),
    n_positive: int = 5,
    n_hard: int = 2,
    n_easy: int = 3,
    anchors: Iterable[str] | None = None,
    max_anchors: int | None = None,
    exclude_pairs: Iterable[tuple[str, str]] = (),
    seed: int = SEED,
) -> Triplets:
    """Baseline: positives at ``positive_hops`` graph distance, hard negatives at ``hard_hops``, easy at random.

    Distances follow edges both ways. Pass the *training* graph
    (``data.training_graph()``): evaluation edges are then not even paths.

    Taught in: notebooks/51_mine_triplets_from_graph_embeddings.ipynb
    """
    started = time.perf_counter()
    if not 1 <= positive_hops[0] <= positive_hops[1] < hard_hops[0] <= hard_hops[1]:
        raise MiningError(f"need 1 <= positive_hops {positive_hops} < hard_hops {hard_hops}")
    entities = sorted(graph.nodes, key=str)
    with_text, rng, pool, usable, n_skipped, n_pool, forbidden = _baseline_setup(
        texts, entities, anchors, max_anchors, exclude_pairs, seed, "graph nodes")
    rows, no_neighbour = [], 0
    for anchor in usable:
        dist = undirected_hops(graph, anchor, hard_hops[1])
        ok = {n: d for n, d in dist.items() if n in with_text and n != anchor and (anchor, n) not in forbidden}
        near = sorted((n for n, d in ok.items() if positive_hops[0] <= d <= positive_hops[1]), key=str)
        far = sorted((n for n, d in ok.items() if hard_hops[0] <= d <= hard_hops[1]), key=str)
        if not near:
            no_neighbour += 1
            continue
        positives = rng.sample(near, min(n_positive, len(near)))
        hard = rng.sample(far, min(n_hard, len(far)))
        banned = set(dist) | {n for n in pool if (anchor, n) in forbidden}
        easy = _easy(pool, n_easy + (n_hard - len(hard)), banned, rng)
        rows.extend(_assemble(anchor, positives, hard, easy, rng))
    stats = {"anchors_total": n_pool, "anchors_without_text": n_skipped, "anchors_used": len(usable),
             "anchors_without_neighbours": no_neighbour}
    return _finish(rows, with_text, stats, "graph", exclude_pairs, started)


# --------------------------------------------------------------------------------------
# fine-tuning
# --------------------------------------------------------------------------------------


def finetune_triplets(
    model,
    triplets: Triplets,
    *,
    max_steps: int = 100,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    margin: float = 0.3,
    distance: str = "euclidean",
    warmup: float = 0.1,
    seed: int = SEED,
    output_dir: str | None = None,
    progress: bool | None = None,
) -> dict:
    """Fine-tune a SentenceTransformer in place with ``TripletLoss`` via ``SentenceTransformerTrainer``.

    ``max_steps * batch_size`` triplets are drawn (seeded) from ``triplets``. ``distance`` is
    ``euclidean`` (SciNCL), ``cosine`` or ``manhattan``; ``margin`` is the triplet margin.
    SciNCL used 1.0 on unnormalised BERT vectors; MiniLM's embeddings are unit length
    (distances in [0, 2]) and on the laptop profile margin 1.0 lowered related-object nDCG@10
    (-0.04) where 0.3 raised it, hence the default. Returns ``{"steps", "seconds",
    "seconds_per_step", "loss", "log"}``.

    Taught in: notebooks/51_mine_triplets_from_graph_embeddings.ipynb
    """
    from sentence_transformers.sentence_transformer.losses import TripletDistanceMetric, TripletLoss


    metrics = {"euclidean": TripletDistanceMetric.EUCLIDEAN, "cosine": TripletDistanceMetric.COSINE,
               "manhattan": TripletDistanceMetric.MANHATTAN}
    if distance not in metrics:
        raise MiningError(f"distance={distance!r}; use one of {sorted(metrics)}")
    if len(triplets) == 0:
        raise MiningError("no triplets to train on")
    if max_steps < 1 or batch_size < 1:
        raise MiningError(f"max_steps and batch_size must be positive (got {max_steps}, {batch_size})")
    dataset = triplets.to_dataset(limit=max_steps * batch_size, seed=seed)
    loss = TripletLoss(model, distance_metric=metrics[distance], triplet_margin=margin)
    return fit(model, dataset, loss, max_steps=max_steps, batch_size=batch_size,
               learning_rate=learning_rate, warmup=warmup, seed=seed, output_dir=output_dir,
               progress=progress)


# --------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------


@dataclass
class RelatedTask:
    """Related-object retrieval: given an object's document, find the documents it links to.

    ``queries``: qid -> the source document's text; ``qrels``: qid -> {target: 3} (grade 3, like the
    target of a query, so nDCG, recall and RR@10 of :mod:`cookbook.evaluate` all apply);
    ``source``: qid -> source document id (removed from its own ranking).

    Taught in: notebooks/51_mine_triplets_from_graph_embeddings.ipynb
    """

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    source: dict[str, str]

    def __len__(self) -> int:
        return len(self.queries)


def related_object_task(data, split: str = "test") -> RelatedTask:
    """The held-out ``see_also`` pairs of ``split`` (``dev`` or ``test``) grouped by source.

    These are exactly the pairs behind the split's queries (``data.query_meta``), which
    :meth:`RetrievalData.training_graph` removed: no model saw these links.

    Taught in: notebooks/51_mine_triplets_from_graph_embeddings.ipynb
    """
    if split not in ("dev", "test"):
        raise ValueError(f"split={split!r}: related-object retrieval is evaluated on 'dev' or 'test'")
    targets: dict[str, set[str]] = {}
    for meta in data.query_meta.values():
        if meta.get("split") == split and "source" in meta:
            targets.setdefault(meta["source"], set()).add(meta["target"])
    queries, qrels, source = {}, {}, {}
    for src in sorted(targets):
        if src not in data.corpus:
            continue
        qid = f"rel:{src}"
        queries[qid] = data.doc_text(src)
        qrels[qid] = {t: 3 for t in sorted(targets[src]) if t in data.corpus and t != src}
        source[qid] = src
    qrels = {q: r for q, r in qrels.items() if r}
    return RelatedTask({q: queries[q] for q in qrels}, qrels, {q: source[q] for q in qrels})


def evaluate_encoder(model, data, *, split: str = "test", k: int = 100, batch_size: int = 64,
                     task: RelatedTask | None = None, main_queries: bool = True,
                     related: bool | None = None) -> dict:
    """Encode the corpus once; score related-object retrieval and (optionally) the split's queries.

    Returns ``{"related": (summary, per_query, run), "queries": (summary, per_query, run),
    "seconds": float}``; summaries come from :func:`cookbook.evaluate.evaluate`. The
    related-object queries are corpus documents, so their vectors are reused, not re-encoded.
    ``related=None`` scores the related-object task only when the data has one (held-out
    source/target pairs in ``query_meta``, as the API docs do); a plain BEIR folder gets the
    query evaluation alone.

    Taught in: notebooks/51_mine_triplets_from_graph_embeddings.ipynb
    """

    started = time.perf_counter()
    if related is None:
        related = task is not None or any("source" in m for m in data.query_meta.values())
    index = DenseIndex(model, data, batch_size=batch_size)
    out = {}
    if related:
        task = task or related_object_task(data, split)
        qids = list(task.queries)
        run = index.search_vectors(qids, index.vectors([task.source[q] for q in qids]), k=k,
                                   exclude=task.source)
        out["related"] = (*evaluate(run, task.qrels), run)
    if main_queries:
        qrun = index.search(data.split_queries(split), k=k)
        out["queries"] = (*evaluate(qrun, data.qrels[split]), qrun)
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out
