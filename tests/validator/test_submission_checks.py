"""Submission checks: no code or pickles, a real fine-tune of the base, no no-ops, copies credited once."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM

from validator.submission_checks import (
    NO_OP_ADAPTER,
    UNCHANGED_MODEL,
    WeightsEntry,
    check_submission,
    copy_reasons,
    weights_digest,
)


def tiny_config(**overrides) -> Qwen2Config:
    fields = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return Qwen2Config(**{**fields, **overrides})


def save_adapter(base: Qwen2ForCausalLM, folder: Path, *, changes: bool, targets=("q_proj", "v_proj")) -> None:
    # init_lora_weights=False draws random B matrices; the default leaves B at zero (an adapter that does nothing).
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), init_lora_weights=not changes)
    get_peft_model(base, lora).save_pretrained(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("checks")
    torch.manual_seed(0)
    Qwen2ForCausalLM(tiny_config()).save_pretrained(root / "base")
    load = lambda: Qwen2ForCausalLM.from_pretrained(root / "base")  # noqa: E731
    save_adapter(load(), root / "adapter", changes=True)
    save_adapter(load(), root / "adapter_noop", changes=False)
    save_adapter(load(), root / "adapter_mlp", changes=True, targets=("down_proj",))
    torch.manual_seed(1)
    save_adapter(Qwen2ForCausalLM(tiny_config(hidden_size=48)), root / "adapter_other_dims", changes=True)
    changed = load()
    with torch.no_grad():
        for parameter in changed.parameters():
            parameter.add_(0.01)
    changed.save_pretrained(root / "full_changed")
    load().save_pretrained(root / "full_copy")
    Qwen2ForCausalLM(tiny_config(num_hidden_layers=3)).save_pretrained(root / "full_deeper")
    return root


def variant(models: Path, tmp_path: Path, source: str, extra: dict[str, bytes] | None = None) -> Path:
    folder = tmp_path / f"{source}-variant"
    shutil.copytree(models / source, folder)
    for name, data in (extra or {}).items():
        (folder / name).write_bytes(data)
    return folder


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_fine_tunes_of_the_base_pass(models: Path) -> None:
    for name in ("adapter", "adapter_mlp", "full_changed"):
        assert check_submission(models / name, models / "base") is None, name


@pytest.mark.parametrize(
    ("source", "extra", "problem"),
    [
        ("adapter", {"adapter_model.bin": b"pickle"}, "pickle weights (adapter_model.bin)"),
        ("full_changed", {"pytorch_model.bin": b"pickle"}, "pickle weights (pytorch_model.bin)"),
        ("full_changed", {"modeling_evil.py": b"import os"}, "custom model code (modeling_evil.py)"),
        ("adapter", {"helper.py": b"x = 1"}, "custom model code (helper.py)"),
    ],
)
def test_pickles_and_code_files_are_refused(
    models: Path, tmp_path: Path, source: str, extra: dict[str, bytes], problem: str
) -> None:
    assert problem in check_submission(variant(models, tmp_path, source, extra), models / "base")


@pytest.mark.parametrize(("source", "config"), [("full_changed", "config.json"), ("adapter", "adapter_config.json")])
def test_an_auto_map_is_refused(models: Path, tmp_path: Path, source: str, config: str) -> None:
    folder = variant(models, tmp_path, source)
    edit_json(folder / config, auto_map={"AutoModelForCausalLM": "modeling_evil.Evil"})

    assert f"{config} has an auto_map" in check_submission(folder, models / "base")


def test_an_adapters_base_path_is_ignored(models: Path, tmp_path: Path) -> None:
    folder = variant(models, tmp_path, "adapter")
    edit_json(folder / "adapter_config.json", base_model_name_or_path="/home/trainer/scratch/base")

    assert check_submission(folder, models / "base") is None


def test_an_adapter_for_modules_the_base_lacks_is_refused(models: Path, tmp_path: Path) -> None:
    folder = variant(models, tmp_path, "adapter")
    edit_json(folder / "adapter_config.json", target_modules=["q_proj", "wqkv"])

    assert "target module 'wqkv' is not a module of the base model" in check_submission(folder, models / "base")


def test_an_adapter_of_another_model_size_is_refused(models: Path) -> None:
    problem = check_submission(models / "adapter_other_dims", models / "base")

    assert "do not fit the base weight" in problem


def test_a_full_model_of_another_shape_is_refused(models: Path, tmp_path: Path) -> None:
    assert "num_hidden_layers is 3, the base model's is 2" in check_submission(models / "full_deeper", models / "base")
    folder = variant(models, tmp_path, "full_changed")
    edit_json(folder / "config.json", model_type="llama", architectures=["LlamaForCausalLM"])
    assert "model_type is 'llama'" in check_submission(folder, models / "base")


def test_a_broken_weights_file_is_refused(models: Path, tmp_path: Path) -> None:
    folder = variant(models, tmp_path, "adapter")
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 16)

    assert "is not a safetensors file" in check_submission(folder, models / "base")


def test_an_adapter_or_model_that_changes_nothing_is_flagged(models: Path) -> None:
    assert check_submission(models / "adapter_noop", models / "base") == NO_OP_ADAPTER
    assert check_submission(models / "full_copy", models / "base") == UNCHANGED_MODEL


def test_identical_weights_are_credited_to_the_earlier_submission(models: Path, tmp_path: Path) -> None:
    copied = variant(models, tmp_path, "adapter")
    edit_json(copied / "adapter_config.json", base_model_name_or_path="elsewhere")
    digest, copy_digest = weights_digest(models / "adapter"), weights_digest(copied)
    start = datetime(2026, 1, 1, tzinfo=UTC)

    reasons = copy_reasons(
        [
            WeightsEntry("late", copy_digest, (start + timedelta(minutes=5), "late")),
            WeightsEntry("early", digest, (start, "early")),
            WeightsEntry("own", weights_digest(models / "adapter_mlp"), (start + timedelta(minutes=9), "own")),
        ]
    )

    assert digest == copy_digest
    assert reasons == {"late": "copy of early's submission"}
