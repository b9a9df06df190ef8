"""The reference training repo: its script end to end on a tiny model, its inputs, and its copy of the formatting."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from core.contract import CACHE_DIR_ENV, CHECKPOINTS_DIR_ENV, ContractPaths, training_command_args
from core.formatting import render_instruct
from core.tasks import InstructTextDatasetType
from tests.trainer.helpers import build_tiny_model, generated_rows
from trainer.reference_repo import REFERENCE_REPO_DIR, write_reference_repo

SCRIPT = REFERENCE_REPO_DIR / "scripts" / "text_trainer.py"
DATASET_TYPE = {"field_instruction": "instruct", "field_input": "input", "field_output": "output"}


def load_script_module():
    spec = importlib.util.spec_from_file_location("reference_text_trainer", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def text_trainer():
    return load_script_module()


def run_script(
    repo_dir: Path, paths: ContractPaths, *, task_id: str, task_type: str = "InstructTextTask", hours: float = 1
):
    args = training_command_args(
        task_id=task_id,
        model="tiny/qwen2",
        dataset="https://example.invalid/data.json",
        dataset_type_json=json.dumps(DATASET_TYPE),
        task_type=task_type,
        file_format="s3",
        expected_repo_name="tiny-out",
        hours_to_complete=hours,
    )
    env = {
        "PATH": os.environ["PATH"],
        CHECKPOINTS_DIR_ENV: str(paths.checkpoints),
        CACHE_DIR_ENV: str(paths.cache),
        "HF_HUB_OFFLINE": "1",
        "HOME": str(paths.cache.parent),
    }
    command = [sys.executable, str(repo_dir / "scripts" / "text_trainer.py"), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_script_trains_a_lora_adapter_into_the_contract_output_folder(tmp_path):
    repo_dir = tmp_path / "repo"
    write_reference_repo(repo_dir, hyperparameters={"max_steps": 4, "learning_rate": 0.01})
    paths = ContractPaths(checkpoints=tmp_path / "checkpoints", cache=tmp_path / "cache")
    build_tiny_model(paths.model_dir("tiny/qwen2"))
    task_id = "0b5e3f8c-1d2a-4c4b-9a53-3f6c9e1d2a10"
    paths.dataset_file(task_id).parent.mkdir(parents=True)
    paths.dataset_file(task_id).write_text(json.dumps(generated_rows(40)))

    result = run_script(repo_dir, paths, task_id=task_id)

    assert result.returncode == 0, result.stderr[-3000:]
    output = paths.output_dir(task_id, "tiny-out")
    config = json.loads((output / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16 and config["peft_type"] == "LORA"
    weights = load_file(output / "adapter_model.safetensors")
    lora_b = [tensor for name, tensor in weights.items() if "lora_B" in name]
    # LoRA's B matrices start at zero, so non-zero ones prove that optimisation steps ran.
    assert lora_b and any(tensor.abs().sum() > 0 for tensor in lora_b)
    assert (output / "tokenizer.json").is_file()
    assert "trained 4 steps" in result.stderr
    # Nothing but the output folder is left beside it (no work or partial folders).
    assert [item.name for item in output.parent.iterdir()] == ["tiny-out"]


def test_training_stops_early_to_save_within_the_time_budget(tmp_path):
    repo_dir = tmp_path / "repo"
    write_reference_repo(repo_dir, hyperparameters={"max_steps": 500})
    paths = ContractPaths(checkpoints=tmp_path / "checkpoints", cache=tmp_path / "cache")
    build_tiny_model(paths.model_dir("tiny/qwen2"))
    paths.dataset_file("t1").parent.mkdir(parents=True)
    paths.dataset_file("t1").write_text(json.dumps(generated_rows(40)))

    # 0.0002 h is 0.72 s, less than loading the libraries takes: the budget is spent by the first step.
    result = run_script(repo_dir, paths, task_id="t1", hours=0.0002)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "time budget reached after 1 steps" in result.stderr
    assert (paths.output_dir("t1", "tiny-out") / "adapter_model.safetensors").is_file()


def test_rows_longer_than_max_length_still_train_on_their_completions(tmp_path):
    repo_dir = tmp_path / "repo"
    write_reference_repo(repo_dir, hyperparameters={"max_steps": 2, "max_length": 32})
    paths = ContractPaths(checkpoints=tmp_path / "checkpoints", cache=tmp_path / "cache")
    build_tiny_model(paths.model_dir("tiny/qwen2"))
    # Every prompt alone is far longer than max_length: cutting from the end would leave no completion token.
    rows = [{**row, "instruct": (row["instruct"] + " ") * 40} for row in generated_rows(20)]
    paths.dataset_file("long").parent.mkdir(parents=True)
    paths.dataset_file("long").write_text(json.dumps(rows))

    result = run_script(repo_dir, paths, task_id="long")

    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained 2 steps" in result.stderr


def test_unsupported_task_type_exits_non_zero_with_a_message(tmp_path):
    paths = ContractPaths(checkpoints=tmp_path / "checkpoints", cache=tmp_path / "cache")
    result = run_script(REFERENCE_REPO_DIR, paths, task_id="t1", task_type="DpoTask")
    assert result.returncode == 2
    assert "task type 'DpoTask' is not supported" in result.stderr
    assert not paths.checkpoints.exists()


def test_missing_base_model_is_named(tmp_path):
    paths = ContractPaths(checkpoints=tmp_path / "checkpoints", cache=tmp_path / "cache")
    result = run_script(REFERENCE_REPO_DIR, paths, task_id="t1")
    assert result.returncode == 2
    assert f"base model not found: expected {paths.model_dir('tiny/qwen2')}" in result.stderr


def dataset_type_variants():
    formats = [None, "### {instruction}\n{input}\n### Answer:", "{input} <- {instruction}"]
    no_input_formats = [None, "Q: {instruction}\nA:"]
    systems = [
        {},
        {"system_prompt": "Be kind. "},
        {"field_system": "system", "system_format": "<s>{system}</s>\n"},
        {"field_system": "system", "system_prompt": "fallback ", "system_format": None},
    ]
    inputs = [None, "input"]
    outputs = ["output", None]
    for fmt, no_input, system, field_input, field_output in itertools.product(
        formats, no_input_formats, systems, inputs, outputs
    ):
        yield {
            "field_instruction": "instruct",
            "field_input": field_input,
            "field_output": field_output,
            "format": fmt,
            "no_input_format": no_input,
            **system,
        }


def test_formatting_copy_renders_like_core_formatting(text_trainer):
    rng = random.Random(7)
    rows = generated_rows(30, seed=3) + [
        {"instruct": "Say hi", "input": None, "output": " leading space", "system": None},
        {"instruct": "", "input": "", "output": "", "system": ""},
        {"instruct": "Count", "input": 3, "output": 4, "system": "Numbers.\n"},
        {"instruct": "Trailing space ", "output": "x"},
    ]
    variants = list(dataset_type_variants())
    assert len(variants) > 50
    checked = 0
    for variant in variants:
        spec = InstructTextDatasetType.model_validate(variant)
        for row in rng.sample(rows, 12):
            assert text_trainer.render_instruct(row, variant) == render_instruct(row, spec), (row, variant)
            checked += 1
    # The defaults of an empty --dataset-type agree too.
    for row in rows:
        assert text_trainer.render_instruct(row, {}) == render_instruct(row, InstructTextDatasetType())
    assert checked == len(variants) * 12


def test_contract_constants_match_core(text_trainer):
    from core import contract

    assert text_trainer.CHECKPOINTS_DIR_ENV == contract.CHECKPOINTS_DIR_ENV
    assert text_trainer.CACHE_DIR_ENV == contract.CACHE_DIR_ENV
    assert Path(text_trainer.CONTAINER_CHECKPOINTS_DIR) == contract.CONTAINER_CHECKPOINTS_DIR
    assert Path(text_trainer.CONTAINER_CACHE_DIR) == contract.CONTAINER_CACHE_DIR


def test_training_config_file_is_read_and_checked(text_trainer, tmp_path):
    shipped = text_trainer.TrainingConfig.from_file(REFERENCE_REPO_DIR / "training_config.json")
    assert (shipped.lora_r, shipped.lora_alpha, shipped.max_length) == (8, 16, 128)

    config_file = tmp_path / "training_config.json"
    config_file.write_text(json.dumps({"learning_rate": 1, "max_steps": 3}))
    config = text_trainer.TrainingConfig.from_file(config_file)
    assert config.learning_rate == 1.0 and config.max_steps == 3 and config.per_device_train_batch_size == 4

    config_file.write_text(json.dumps({"learning_rat": 0.1}))
    with pytest.raises(text_trainer.InputError, match="unknown hyperparameter 'learning_rat'"):
        text_trainer.TrainingConfig.from_file(config_file)
    config_file.write_text(json.dumps({"max_steps": "ten"}))
    with pytest.raises(text_trainer.InputError, match="max_steps must be of type int"):
        text_trainer.TrainingConfig.from_file(config_file)


def test_write_reference_repo_overrides_hyperparameters_and_commits(tmp_path):
    commit = write_reference_repo(tmp_path / "repo", hyperparameters={"learning_rate": 5e-5})
    assert len(commit) == 40
    config = json.loads((tmp_path / "repo" / "training_config.json").read_text())
    assert config["learning_rate"] == 5e-5
    status = subprocess.run(["git", "status", "--porcelain"], cwd=tmp_path / "repo", capture_output=True, text=True)
    assert status.stdout == ""
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        write_reference_repo(tmp_path / "other", hyperparameters={"epochs": 3})
