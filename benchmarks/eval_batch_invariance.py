"""Check that the evaluator's test loss does not depend on the batch size, on this machine's CPU or GPU.

    python -m benchmarks.eval_batch_invariance                       # a tiny random model, CPU or the first GPU
    python -m benchmarks.eval_batch_invariance --model-dir DIR --device cuda --dtype bfloat16 --rows 200

Prints the loss and time per batch size and exits 1 when the spread exceeds --tolerance.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from core.tasks import InstructTextDatasetType
from validator.evaluation.text_loss import evaluate_instruct

WORDS = [f"w{index}" for index in range(500)]


def build_tiny_model(folder: Path) -> Path:
    # Byte-level BPE: with a Qwen2 config, AutoTokenizer rebuilds whatever is saved as a byte-level Qwen2Tokenizer.
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<pad>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator([" ".join(WORDS[start : start + 20]) for start in range(0, len(WORDS), 5)], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", pad_token="</s>")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        initializer_range=0.2,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_rows(count: int, *, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)

    def words(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    return [{"instruct": words(2, 120), "output": words(1, 200)} for _ in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="a causal LM with its tokenizer (default: a tiny random one)")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch-sizes", default="1,4,16,64")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--device")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model_dir or build_tiny_model(Path(scratch))
        rows = make_rows(args.rows, seed=0)
        losses = []
        for batch_size in (int(size) for size in args.batch_sizes.split(",")):
            started = time.perf_counter()
            report = evaluate_instruct(
                base_model_dir=model_dir,
                submissions={},
                test_rows=rows,
                dataset_type=InstructTextDatasetType(),
                batch_size=batch_size,
                max_length=args.max_length,
                device=args.device,
                dtype=getattr(torch, args.dtype),
            )
            elapsed = time.perf_counter() - started
            losses.append(report.base.test_loss)
            print(
                f"batch {batch_size:>4}: loss {report.base.test_loss:.10f} over {report.base.n_tokens} tokens, "
                f"{elapsed:.2f} s"
            )
    spread = max(losses) - min(losses)
    print(f"spread {spread:.3e} (tolerance {args.tolerance:.0e})")
    return 0 if spread <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
