#!/usr/bin/env python3
"""Reference text trainer: a LoRA fine-tune with TRL's SFTTrainer that follows the subnet's training contract.

Example (outside Docker, with the roots in the environment):

    GOD_CACHE_DIR=/tmp/cache GOD_CHECKPOINTS_DIR=/tmp/checkpoints python3 scripts/text_trainer.py \
        --task-id 3f2b6c1e-0000-4000-8000-000000000000 --model HuggingFaceTB/SmolLM2-135M-Instruct \
        --dataset https://example.invalid/train.json \
        --dataset-type '{"field_instruction": "instruct", "field_output": "output"}' \
        --task-type InstructTextTask --file-format s3 --expected-repo-name my-model --hours-to-complete 1

Inputs: the base model in `{cache}/models/{org--name}` and the rows in `{cache}/datasets/{task_id}_train_data.json`.
Output: a LoRA adapter (safetensors) and the tokenizer in `{checkpoints}/{task_id}/{expected_repo_name}`.
Hyperparameters come from `training_config.json` at the repository root.

This repository is copied on its own into miners' git repos, so it imports nothing from the node's packages.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

logger = logging.getLogger("text_trainer")

# The contract's roots (same names and defaults as the node's `core.contract`).
CHECKPOINTS_DIR_ENV = "GOD_CHECKPOINTS_DIR"
CACHE_DIR_ENV = "GOD_CACHE_DIR"
CONTAINER_CHECKPOINTS_DIR = "/app/checkpoints"
CONTAINER_CACHE_DIR = "/cache"

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = REPO_ROOT / "training_config.json"

SUPPORTED_TASK_TYPES = ("InstructTextTask",)
# Stop this share of the way into the time budget so the adapter is saved before the host kills the run.
TIME_BUDGET_SHARE = 0.85

EXIT_BAD_INPUT = 2


class InputError(Exception):
    """Bad arguments, config or data: the message says what is wrong and where."""


# Instruct formatting: a copy of the node's `core.formatting.render_instruct` (a test keeps the two identical).
DEFAULT_FORMAT = "{instruction} {input}"
DEFAULT_NO_INPUT_FORMAT = "{instruction}"
DEFAULT_SYSTEM_FORMAT = "{system}"
DATASET_TYPE_DEFAULTS: dict[str, Any] = {
    "system_prompt": "",
    "system_format": "{system}",
    "field_system": None,
    "field_instruction": "instruct",
    "field_input": None,
    "field_output": "output",
    "format": None,
    "no_input_format": None,
}


def _text(row: dict[str, Any], column: str | None) -> str:
    if not column:
        return ""
    value = row.get(column)
    return "" if value is None else str(value)


def render_instruct(row: dict[str, Any], dataset_type: dict[str, Any]) -> tuple[str, str]:
    """Return `(prompt, completion)` for one prepared instruct row; `dataset_type` is the `--dataset-type` JSON."""
    spec = {key: dataset_type.get(key, default) for key, default in DATASET_TYPE_DEFAULTS.items()}
    instruction = _text(row, spec["field_instruction"])
    user_input = _text(row, spec["field_input"])
    system = _text(row, spec["field_system"]) or (spec["system_prompt"] or "")

    if user_input:
        prompt = (spec["format"] or DEFAULT_FORMAT).replace("{instruction}", instruction)
        prompt = prompt.replace("{input}", user_input)
    else:
        prompt = (spec["no_input_format"] or DEFAULT_NO_INPUT_FORMAT).replace("{instruction}", instruction)
    if system:
        prompt = (spec["system_format"] or DEFAULT_SYSTEM_FORMAT).replace("{system}", system) + prompt

    completion = _text(row, spec["field_output"])
    # A separating space keeps the completion's first word a fresh token, as the evaluator sees it.
    if prompt and completion and not prompt[-1].isspace() and not completion[0].isspace():
        completion = " " + completion
    return prompt, completion


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters read from `training_config.json`; every key is optional and unknown keys are refused."""

    learning_rate: float = 2e-4
    max_steps: int = 20
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int = 128
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    warmup_steps: int = 0
    lr_scheduler_type: str = "linear"
    seed: int = 0

    @classmethod
    def from_file(cls, path: Path) -> TrainingConfig:
        if not path.is_file():
            return cls()
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise InputError(f"{path} is not valid JSON: {error}") from error
        if not isinstance(raw, dict):
            raise InputError(f"{path} must hold a JSON object of hyperparameters")
        known = {field.name: field for field in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in known:
                raise InputError(f"{path}: unknown hyperparameter {key!r}; known: {', '.join(sorted(known))}")
            expected = type(getattr(cls(), key))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not expected:
                raise InputError(f"{path}: {key} must be of type {expected.__name__}, got {value!r}")
            values[key] = value
        config = cls(**values)
        if config.max_steps < 1 or config.per_device_train_batch_size < 1 or config.max_length < 8:
            raise InputError(f"{path}: max_steps and per_device_train_batch_size must be >= 1, max_length >= 8")
        if config.learning_rate <= 0:
            raise InputError(f"{path}: learning_rate must be positive")
        return config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Reference LoRA text trainer (training contract entrypoint).")
    parser.add_argument("--task-id", required=True)
    parser.add_argument("--model", required=True, help="Base model repo id, e.g. org/name")
    parser.add_argument("--dataset", required=True, help="Dataset URL (already downloaded into the cache)")
    parser.add_argument("--dataset-type", required=True, help="JSON naming the dataset's columns and formats")
    parser.add_argument("--task-type", required=True)
    parser.add_argument("--file-format", required=True)
    parser.add_argument("--expected-repo-name", required=True)
    parser.add_argument("--hours-to-complete", required=True, type=float)
    return parser.parse_args(argv)


def load_rows(dataset_file: Path, dataset_type: dict[str, Any]) -> list[dict[str, str]]:
    """Render the prepared rows into prompt/completion pairs, dropping rows with nothing to learn."""
    try:
        rows = json.loads(dataset_file.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{dataset_file} is not valid JSON: {error}") from error
    if not isinstance(rows, list):
        raise InputError(f"{dataset_file} must hold a JSON list of rows")
    examples = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InputError(f"{dataset_file}: row {index} is not a JSON object")
        prompt, completion = render_instruct(row, dataset_type)
        if completion.strip():
            examples.append({"prompt": prompt, "completion": completion})
    if not examples:
        raise InputError(f"{dataset_file}: no row has a non-empty output column {dataset_type.get('field_output')!r}")
    return examples


def find_dataset_file(cache: Path, task_id: str, dataset: str) -> Path:
    dataset_file = cache / "datasets" / f"{task_id}_train_data.json"
    if dataset_file.is_file():
        return dataset_file
    # Convenient for running the script by hand: a local JSON file given directly as --dataset.
    if Path(dataset).is_file():
        return Path(dataset)
    raise InputError(f"training data not found: expected {dataset_file}")


@dataclass(frozen=True)
class TrainingInputs:
    config: TrainingConfig
    model_dir: Path
    examples: list[dict[str, str]]
    output_dir: Path


def prepare_inputs(args: argparse.Namespace) -> TrainingInputs:
    """Check the arguments and read the config and data; raises `InputError` before any heavy import."""
    if args.task_type not in SUPPORTED_TASK_TYPES:
        # TODO(#3): chat, DPO and GRPO tasks; remove when the reference trainer implements them.
        raise InputError(
            f"task type {args.task_type!r} is not supported by this reference trainer yet "
            f"(supported: {', '.join(SUPPORTED_TASK_TYPES)})"
        )
    if args.hours_to_complete <= 0:
        raise InputError("--hours-to-complete must be positive")
    try:
        dataset_type = json.loads(args.dataset_type)
    except json.JSONDecodeError as error:
        raise InputError(f"--dataset-type is not valid JSON: {error}") from error
    if not isinstance(dataset_type, dict):
        raise InputError("--dataset-type must be a JSON object")

    config = TrainingConfig.from_file(CONFIG_FILE)
    checkpoints = Path(os.environ.get(CHECKPOINTS_DIR_ENV, CONTAINER_CHECKPOINTS_DIR))
    cache = Path(os.environ.get(CACHE_DIR_ENV, CONTAINER_CACHE_DIR))
    model_dir = cache / "models" / args.model.replace("/", "--")
    if not model_dir.is_dir():
        raise InputError(f"base model not found: expected {model_dir}")
    examples = load_rows(find_dataset_file(cache, args.task_id, args.dataset), dataset_type)
    return TrainingInputs(
        config=config,
        model_dir=model_dir,
        examples=examples,
        output_dir=checkpoints / args.task_id / args.expected_repo_name,
    )


def fine_tune(inputs: TrainingInputs, *, deadline: float) -> None:
    """Train a LoRA adapter on the examples and save it (with the tokenizer) to `inputs.output_dir`."""
    # Heavy imports only now, so that importing this module (e.g. for its formatting) and bad input stay fast.
    import datasets
    import torch
    import transformers
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, set_seed
    from trl import SFTConfig, SFTTrainer

    # Progress bars and a library deprecation notice flood the log whose tail the trainer host reports.
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

    class TimeBudgetCallback(TrainerCallback):
        """Ends training once the deadline passes so the adapter is saved within the time budget."""

        def on_step_end(self, args, state, control, **kwargs):
            if time.monotonic() >= deadline:
                logger.info("time budget reached after %d steps; stopping to save the adapter", state.global_step)
                control.should_training_stop = True
            return control

    # Model and tokenizer: local files only, since the sandbox has no network.
    config = inputs.config
    on_gpu = torch.cuda.is_available()
    use_bf16 = on_gpu and torch.cuda.is_bf16_supported()
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(inputs.model_dir, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        inputs.model_dir, local_files_only=True, dtype=torch.bfloat16 if use_bf16 else torch.float32
    )

    # Training: prompt/completion rows give completion-only loss; TRL appends the end-of-sequence token.
    output_dir = inputs.output_dir
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=".work-", dir=output_dir.parent))
    sft_config = SFTConfig(
        output_dir=str(work_dir),
        learning_rate=config.learning_rate,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type=config.lr_scheduler_type,
        max_length=config.max_length,
        # A long row loses the start of its prompt, never its completion: keep_start would cut every completion
        # of a dataset of long prompts and leave nothing to learn. The evaluator truncates the same way.
        truncation_mode="keep_end",
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not on_gpu,
        bf16=use_bf16,
        activation_checkpointing=False,
        save_strategy="no",
        logging_steps=max(1, config.max_steps // 10),
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    peft_config = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model,
        args=sft_config,
        train_dataset=datasets.Dataset.from_list(inputs.examples),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[TimeBudgetCallback()],
    )
    result = trainer.train()
    logger.info("trained %d steps, train_loss %.4f", result.global_step, result.training_loss)

    # Save into a sibling folder first, then rename, so a killed run never leaves a half-written output.
    partial_dir = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(partial_dir, ignore_errors=True)
    trainer.model.save_pretrained(partial_dir, safe_serialization=True)
    tokenizer.save_pretrained(partial_dir)
    shutil.rmtree(output_dir, ignore_errors=True)
    os.replace(partial_dir, output_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    logger.info("saved the adapter to %s", output_dir)


def main(argv: list[str] | None = None) -> int:
    started_at = time.monotonic()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        inputs = prepare_inputs(args)
    except InputError as error:
        logger.error("%s", error)
        return EXIT_BAD_INPUT
    logger.info(
        "training task %s: %d rows, model %s, max_steps %d, learning_rate %g",
        args.task_id,
        len(inputs.examples),
        args.model,
        inputs.config.max_steps,
        inputs.config.learning_rate,
    )
    fine_tune(inputs, deadline=started_at + TIME_BUDGET_SHARE * args.hours_to_complete * 3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
