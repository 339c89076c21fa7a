"""Solutions to the exercises of notebooks/10_explore_query_document_pairs.ipynb.

Run: ``python notebooks/solutions/10_explore_query_document_pairs.py`` (uses COOKBOOK_PROFILE).
"""

from __future__ import annotations

import ir_measures
import pandas as pd

from cookbook import corpus, evaluate, models, retrieval


def exercise_1_tune_bm25(data, grid=((0.9, 0.4), (1.2, 0.75), (1.5, 0.75), (2.0, 0.9))) -> pd.DataFrame:
    """Choose k1 and b on dev, then report test for the choice (never tune on test)."""
    rows = []
    for k1, b in grid:
        index = retrieval.BM25Index(data, k1=k1, b=b)
        dev = evaluate.evaluate(index.search(data.split_queries("dev")), data.qrels["dev"])[0]["nDCG@10"]
        rows.append({"k1": k1, "b": b, "dev nDCG@10": dev, "index": index})
    best = max(rows, key=lambda r: r["dev nDCG@10"])
    test = evaluate.evaluate(best["index"].search(data.split_queries("test")), data.qrels["test"])[0]["nDCG@10"]
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "index"} for r in rows])
    table["chosen"] = [r is best for r in rows]
    table.attrs["test nDCG@10 of the chosen setting"] = test
    return table


def exercise_2_recall_thresholds(data, run) -> dict[str, float]:
    """Recall@10 at three relevance thresholds: grade>=1 is harsh (many topic documents)."""
    out = {}
    for rel in (1, 2, 3):
        measure = ir_measures.parse_measure(f"R(rel={rel})@10")
        out[f"R@10, grade>={rel}"] = ir_measures.calc_aggregate([measure], data.qrels["test"], run)[measure]
    return out


def exercise_3_fusion(data, bm25_run, dense_run) -> dict:
    """Reciprocal-rank fusion against the better single system."""
    fused = retrieval.fuse_rrf([bm25_run, dense_run])
    qrels = data.qrels["test"]
    return {"fused": evaluate.evaluate(fused, qrels)[0], "fused vs dense": evaluate.compare(dense_run, fused, qrels)}


def exercise_4_longer_inputs(data, queries, lengths=(128, 256)) -> pd.DataFrame:
    """Encode time and quality at two max_seq_length values."""
    import time

    rows = []
    for length in lengths:
        model = models.load_embedder(max_seq_length=length)
        start = time.perf_counter()
        run = retrieval.dense_search(model, data, queries)
        rows.append({"max_seq_length": length, "seconds": time.perf_counter() - start,
                     **evaluate.evaluate(run, data.qrels["test"])[0]})
    return pd.DataFrame(rows)


def exercise_5_regrade_twins(data) -> dict[str, dict[str, int]]:
    """Test qrels with same_name twins demoted to grade 1 (unless also a see_also neighbour)."""
    graph = data.graph
    regraded = {}
    for qid, grades in data.qrels["test"].items():
        target = data.query_meta[qid]["target"]
        new = dict(grades)
        for doc, grade in grades.items():
            if grade != 2:
                continue
            kinds = {k for k in graph[target].get(doc, {})} | {k for k in graph[doc].get(target, {})}
            if "see_also" not in kinds:
                new[doc] = 1
        regraded[qid] = new
    return regraded


def main() -> None:
    data = corpus.load_apidocs()
    queries = data.split_queries("test")
    bm25_run = retrieval.bm25_search(data, queries)
    print(exercise_1_tune_bm25(data))
    print(exercise_2_recall_thresholds(data, bm25_run))
    dense_run = retrieval.dense_search(models.load_embedder(), data, queries)
    print(exercise_3_fusion(data, bm25_run, dense_run))
    regraded = exercise_5_regrade_twins(data)
    for name, run in (("BM25", bm25_run), ("dense", dense_run)):
        print(name, "original", evaluate.evaluate(run, data.qrels["test"])[0]["nDCG@10"],
              "twins demoted", evaluate.evaluate(run, regraded)[0]["nDCG@10"])


if __name__ == "__main__":
    main()
