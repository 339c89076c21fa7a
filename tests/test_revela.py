"""cookbook.revela: the in-batch attention, where gradients flow, leak checks, the recipe."""

import pytest
import torch

from cookbook import evaluate, recipes
from cookbook import revela as R


@pytest.fixture(scope="module")
def tiny_lm():
    """A random two-layer Llama (4 query heads, 2 key/value heads: grouped-query attention)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from cookbook.models import resolve

    tokenizer = AutoTokenizer.from_pretrained(resolve("embedder"))
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, attn_implementation="sdpa")
    torch.manual_seed(0)
    return tokenizer, LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def tiny_beir():
    from cookbook.beir import load_beir

    return load_beir("data/fixtures/tiny_beir")


TEXTS = ["numpy mean computes the arithmetic mean along the given axis of an array",
         "the weighted average of an array, with weights along an axis",
         "a sparse matrix in compressed sparse row format",
         "sort"]


@pytest.fixture
def embedder():
    """A fresh tiny bi-encoder per test (training changes it; the shared fixture must stay intact)."""
    from cookbook.models import tiny_embedder

    return tiny_embedder()


def _fresh(tiny_lm):
    import copy

    tokenizer, model = tiny_lm
    return tokenizer, copy.deepcopy(model)


def test_zero_weights_give_the_stock_logits(tiny_lm):
    tokenizer, lm = _fresh(tiny_lm)
    ids, mask, _ = R.lm_inputs(tokenizer, TEXTS, 32)
    with torch.no_grad():
        stock = lm(input_ids=ids, attention_mask=mask).logits
        R.enable_in_batch_attention(lm)
        assert lm.config._attn_implementation == "revela"
        state = R.InBatchState(key_mask=mask.bool())
        lm(input_ids=ids, attention_mask=mask, revela=state)
        assert sorted(state.keys) == [0, 1] and state.keys[0].shape[1] == 2  # KV heads, before the GQA repeat
        state.mode, state.weights = "mix", torch.zeros(len(TEXTS), len(TEXTS))
        zero = lm(input_ids=ids, attention_mask=mask, revela=state).logits
        state.weights = torch.full((len(TEXTS), len(TEXTS)), 0.5)
        mixed = lm(input_ids=ids, attention_mask=mask, revela=state).logits
        plain = lm(input_ids=ids, attention_mask=mask).logits  # no state: exactly sdpa
    torch.testing.assert_close(zero, stock)
    torch.testing.assert_close(plain, stock)
    assert (mixed - stock).abs().max() > 1e-3  # the in-batch term does change the prediction


@pytest.mark.parametrize("normalize", [False, True])
def test_in_batch_attention_matches_a_loop(normalize):
    torch.manual_seed(1)
    B, H, T, d = 3, 2, 5, 4
    q, k, v = torch.randn(B, H, T, d), torch.randn(B, H, T, d), torch.randn(B, H, T, d)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[2, 3:] = False  # chunk 2 is padded
    w = torch.rand(B, B).fill_diagonal_(0)
    out = R.in_batch_attention(q, k, v, mask, w, scaling=d ** -0.5, normalize=normalize)
    expected = torch.zeros(B, H, T, d)
    for i in range(B):
        for j in range(B):
            keep = mask[j]
            a = torch.softmax(q[i] @ k[j][:, keep].transpose(-1, -2) * d ** -0.5, dim=-1)
            term = a @ v[j][:, keep]
            if normalize:
                term = term / (a @ v[j][:, keep].norm(dim=-1, keepdim=True) + 1e-6)
            expected[i] += w[i, j] * term
    torch.testing.assert_close(out, expected)


def test_weights_exclude_the_diagonal_and_sum_to_one():
    q = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    w = R.in_batch_weights(q, q, tau=0.1)
    assert torch.all(w.diagonal() == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(4))
    with pytest.raises(R.RevelaError):
        R.in_batch_weights(q, q, tau=0)


def _chunks():
    return [{"doc_id": f"d{i}", "text": t, "query": " ".join(t.split()[:3])} for i, t in enumerate(TEXTS)]


def test_only_the_retriever_gets_gradient_when_the_lm_is_frozen(tiny_lm, embedder):
    tokenizer, lm = _fresh(tiny_lm)
    R.enable_in_batch_attention(R.freeze(lm))
    embedder.zero_grad()
    loss, w = R.revela_loss(embedder, lm, tokenizer, _chunks(), tau=0.05, max_length=32)
    loss.backward()
    assert torch.isfinite(loss) and w.shape == (4, 4)
    grads = [p.grad for p in embedder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in lm.parameters())


def test_lora_on_the_lm_trains_adapters_only(tiny_lm, embedder):
    tokenizer, lm = _fresh(tiny_lm)
    lm = R.enable_in_batch_attention(R.add_lora(lm, r=2))
    embedder.zero_grad()
    loss, _ = R.revela_loss(embedder, lm, tokenizer, _chunks(), tau=0.05, max_length=32, strength=0.5)
    loss.backward()
    named = dict(lm.named_parameters())
    lora = [p for n, p in named.items() if "lora_" in n]
    assert lora and any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)
    assert all(p.grad is None for n, p in named.items() if "lora_" not in n)


def test_batches_are_full_and_never_hold_an_eval_query(tiny_beir, tiny_lm):
    tokenizer, _ = tiny_lm
    chunks = R.chunk_corpus(tiny_beir, tokenizer, chunk_tokens=8, min_tokens=3)
    for make in (R.bm25_batches, R.random_batches):
        batches = make(chunks, batch_size=3, seed=0)
        assert batches and all(len(b) == 3 and len(set(b)) == 3 for b in batches)
        assert len({i for b in batches for i in b}) == 3 * len(batches)  # each chunk at most once
        assert R.check_no_query_text(chunks, batches, tiny_beir) == 3 * len(batches)
    qid = next(iter(tiny_beir.qrels["test"]))
    leaked = chunks + [{"doc_id": next(iter(tiny_beir.corpus)), "text": tiny_beir.queries[qid].upper(), "query": "x"}]
    with pytest.raises(R.QueryLeakError, match=qid):
        R.check_no_query_text(leaked, [[0, 1, len(leaked) - 1]], tiny_beir)
    stray = chunks + [{"doc_id": "not-a-document", "text": "a", "query": "a"}]
    with pytest.raises(R.QueryLeakError, match="not a corpus document"):
        R.check_no_query_text(stray, [[0, len(stray) - 1]], tiny_beir)


def test_bm25_batches_group_neighbours():
    texts = [f"alpha beta {i}" for i in range(4)] + [f"gamma delta {i}" for i in range(4)]
    chunks = [{"doc_id": str(i), "text": t, "query": t} for i, t in enumerate(texts)]
    batches = R.bm25_batches(chunks, batch_size=4, seed=0)
    assert sorted(sorted(b) for b in batches) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(R.RevelaError):
        R.bm25_batches(chunks, batch_size=1)


def test_calibrate_strength_includes_the_stock_loss(tiny_lm):
    tokenizer, lm = _fresh(tiny_lm)
    chunks = _chunks()
    table = R.calibrate_strength(lm, tokenizer, chunks, [[0, 1, 2, 3]], strengths=(1.0, 0.1), max_length=32)
    assert len(table) == 5 and table.attrs["best"]["strength"] in (1.0, 0.1)
    ids, mask, labels = R.lm_inputs(tokenizer, TEXTS, 32)
    with torch.no_grad():
        stock = lm(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert table.attrs["stock_loss"] == pytest.approx(float(stock), rel=1e-5)


def test_recipe_on_binary_beir_saves_a_loadable_model(tiny_beir, tiny_lm, embedder, tmp_path):
    from sentence_transformers import SentenceTransformer

    tokenizer, lm = _fresh(tiny_lm)
    report = recipes.revela.recipe(tiny_beir, tmp_path, embedder=embedder, llm=(tokenizer, lm), steps=2,
                      batch_size=2, chunk_tokens=8)
    assert report["recipe"] == "revela" and report["steps"] == 2 and report["train_pairs"] == 0
    assert "on the dev check (held-out chunks" in report["verdict"] and report["dev"]["comparison"]["queries"] >= 2
    assert tuple(report["before"]) == tuple(report["after"]) == recipes.common.report_measures(tiny_beir) and report["comparison"]["queries"] == len(tiny_beir.qrels["test"])
    loaded = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    text = tiny_beir.doc_text(next(iter(tiny_beir.corpus)))
    torch.testing.assert_close(torch.tensor(loaded.encode([text])), torch.tensor(embedder.encode([text])))
    with pytest.raises(recipes.RecipeError, match="grouping='nearby'"):
        recipes.revela.recipe(tiny_beir, tmp_path, embedder=embedder, llm=(tokenizer, lm), steps=1, grouping="nearby")


def test_recipe_keeps_the_base_model_without_a_dev_gain(tiny_beir, tiny_lm, embedder, tmp_path):
    from sentence_transformers import SentenceTransformer

    text = tiny_beir.doc_text(next(iter(tiny_beir.corpus)))
    base = torch.tensor(embedder.encode([text]))
    tokenizer, lm = _fresh(tiny_lm)
    kept = recipes.revela.recipe(tiny_beir, tmp_path / "guard", embedder=embedder, llm=(tokenizer, lm), steps=2,
                                 batch_size=2, chunk_tokens=8, learning_rate=1e-3, strength=0.5, normalize=False)
    saved = torch.tensor(SentenceTransformer(str(tmp_path / "guard" / "model"), device="cpu").encode([text]))
    if evaluate.verdict(kept["dev"]["comparison"]) == "better":
        assert kept["decision"] == "kept the trained model" and not torch.allclose(saved, base, atol=1e-6)
    else:  # the dev check saw no gain: the base weights are saved and evaluated, and the verdict says so
        assert kept["decision"].startswith("kept the base model") and "kept the base model" in kept["verdict"]
        torch.testing.assert_close(saved, base)
        assert kept["comparison"]["diff"] == 0 and "trained_model_test_ndcg10" in kept
    tokenizer, lm = _fresh(tiny_lm)
    trained = recipes.revela.recipe(tiny_beir, tmp_path / "trained", embedder=embedder, llm=(tokenizer, lm), steps=2,
                                    batch_size=2, chunk_tokens=8, learning_rate=1e-3, strength=0.5, normalize=False,
                                    keep_base_without_gain=False)
    assert trained["decision"] == "kept the trained model" and "kept the base" not in trained["verdict"]
    moved = torch.tensor(SentenceTransformer(str(tmp_path / "trained" / "model"), device="cpu").encode([text]))
    assert not torch.allclose(moved, base, atol=1e-6)


def test_recipe_without_test_split(tiny_beir, tiny_lm, embedder, tmp_path):
    import dataclasses

    tokenizer, lm = _fresh(tiny_lm)
    bare = dataclasses.replace(tiny_beir, qrels={})
    report = recipes.revela.recipe(bare, tmp_path, embedder=embedder, llm=(tokenizer, lm), steps=1, batch_size=2,
                      chunk_tokens=8, strength=0.5, normalize=False)
    assert "before" not in report and "after" not in report and (tmp_path / "model").exists()


def test_lm_retriever_merges_lora_on_save(tmp_path, tiny_lm):
    from sentence_transformers import SentenceTransformer

    tokenizer, lm = _fresh(tiny_lm)
    folder = tmp_path / "lm"
    lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model = R.lm_retriever(str(folder), max_seq_length=16, lora_r=2, eos=False)  # a BERT tokenizer: no EOS
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    R.save_retriever(model, tmp_path / "saved")
    loaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    torch.testing.assert_close(torch.tensor(loaded.encode(TEXTS)), torch.tensor(model.encode(TEXTS)))


def test_train_takes_exactly_the_steps_asked_cycling_over_the_batches(tiny_lm, embedder):
    tokenizer, lm = _fresh(tiny_lm)
    R.freeze(lm)
    assert R.schedule([[0, 1], [2, 3]], 5) == [[0, 1], [2, 3], [0, 1], [2, 3], [0, 1]]
    assert R.schedule([[0, 1], [2, 3]], None) == [[0, 1], [2, 3]]
    calls = []
    report = R.train(embedder, lm, tokenizer, _chunks(), [[0, 1], [2, 3]], steps=3, max_length=32,
                     check=lambda m: calls.append(1) or 0.5, check_at=(0, 3))
    assert report["steps"] == 3 and report["epochs"] == 1.5 and len(calls) == 2
    assert [p["step"] for p in report["curve"]] == [0, 3] and report["curve"][0]["LM loss"] is None
    assert report["curve"][1]["LM loss"] == pytest.approx(sum(x["loss"] for x in report["log"]) / 3)
    with pytest.raises(R.RevelaError):
        R.schedule([[0, 1]], 0)


def test_dev_check_finds_each_chunk_from_its_first_half(embedder):
    chunks = [{"doc_id": f"d{i}", "text": t, "query": t} for i, t in enumerate(TEXTS)]
    train, dev = R.split_dev(chunks + chunks, 4, seed=0)
    assert len(train) == len(dev) == 4
    run, qrels = R.dev_run(embedder, chunks, k=2)
    assert set(run) == set(qrels) and all(len(docs) == 2 for docs in run.values())
    assert all(max(run[q], key=run[q].get) == q for q in run)  # identical texts: own chunk first
    assert R.dev_score(embedder, chunks) == pytest.approx(1.0)
    spread = R.cosine_spread(embedder, chunks)
    assert spread["mean cosine (own chunk)"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(R.RevelaError):
        R.split_dev(chunks, 4)


def test_lm_retriever_appends_eos_and_keeps_its_prompts(tmp_path, tiny_lm):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from cookbook.models import resolve

    folder = tmp_path / "lm"
    tokenizer = AutoTokenizer.from_pretrained(resolve("generator"))  # a BPE tokenizer with an EOS token
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model = R.lm_retriever(str(folder), max_seq_length=8, lora_r=None)
    ids = model.preprocess(["hello world", "a b c d e f g h i j k l"])["input_ids"]
    assert ids[0, 2] == tokenizer.eos_token_id and ids[1, -1] == tokenizer.eos_token_id  # also when truncated
    assert ids[0, 0] != tokenizer.bos_token_id  # plain text, no chat template
    assert model.prompts == R.PAPER_PROMPTS and R.prompt_of(model, "query") == "query: "
    R.save_retriever(model, tmp_path / "saved")
    loaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    assert loaded.prompts == R.PAPER_PROMPTS
    assert loaded.preprocess(["hello world"])["input_ids"].tolist() == ids[:1, :3].tolist()
