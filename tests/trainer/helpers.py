"""Builders for the trainer tests: a tiny random model, generated instruct rows, git repos."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

SUBJECTS = ["the cat", "a robot", "my friend", "the teacher", "our team", "the river", "a bird", "the city"]
VERBS = ["likes", "sees", "builds", "paints", "finds", "follows", "answers", "counts"]
OBJECTS = ["apples", "the moon", "small boats", "red houses", "old books", "green fields", "fast cars", "songs"]

TEXT_DOCKERFILE = "dockerfiles/standalone-text-trainer.dockerfile"
PYTHON_DOCKERFILE = """FROM python:3.11-slim
COPY . /workspace
WORKDIR /workspace
ENTRYPOINT ["python3", "/workspace/scripts/train.py"]
"""


def generated_rows(count: int, *, seed: int = 0) -> list[dict[str, str]]:
    """Instruct rows in the prepared standard columns (instruct / input / output / system)."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        subject, verb, obj = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)
        rows.append(
            {
                "instruct": f"What does {subject} do?",
                "input": f"Think about {obj}." if index % 3 == 0 else "",
                "output": f"{subject.capitalize()} {verb} {obj}.",
                "system": "Answer briefly." if index % 4 == 0 else "",
            }
        )
    return rows


def build_tiny_model(model_dir: Path) -> Path:
    """Save a random Qwen2 model (hidden 64, 2 layers) with a byte-level BPE tokenizer trained on generated rows."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    text = [" ".join(row.values()) for row in generated_rows(400, seed=1)]
    tokenizer_model = Tokenizer(models.BPE())
    tokenizer_model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer_model.decoder = decoders.ByteLevel()
    bpe_trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer_model.train_from_iterator(text, trainer=bpe_trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_model, eos_token="<|endoftext|>", pad_token="<|pad|>"
    )

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=tokenizer_model.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model_dir.mkdir(parents=True, exist_ok=True)
    Qwen2ForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


def git(repo_dir: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(command, cwd=repo_dir, check=True, capture_output=True, text=True).stdout.strip()


def commit_files(repo_dir: Path, files: dict[str, str], *, message: str = "commit") -> str:
    """Write `files` into the git repo `repo_dir` (created on first use), commit them and return the hash."""
    if not (repo_dir / ".git").exists():
        repo_dir.mkdir(parents=True, exist_ok=True)
        git(repo_dir, "init", "--quiet", "--initial-branch=main")
    for relative, content in files.items():
        path = repo_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    git(repo_dir, "add", "--all")
    git(repo_dir, "commit", "--quiet", "-m", message)
    return git(repo_dir, "rev-parse", "HEAD")


def script_repo(repo_dir: Path, script: str) -> str:
    """A contract repo whose entrypoint runs `script` (Python source); returns the commit hash."""
    return commit_files(repo_dir, {TEXT_DOCKERFILE: PYTHON_DOCKERFILE, "scripts/train.py": script})


def live_processes_in_group(pgid: int) -> list[int]:
    """Pids of the group's processes that are not zombies (a zombie no longer runs anything)."""
    pids = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_file.read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat_file.parent.name))
    return pids
