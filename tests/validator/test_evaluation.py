"""Test loss of instruct submissions, on a tiny random Qwen2 model with a word-level tokenizer built offline."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from core.formatting import render_instruct
from core.tasks import TaskType
from validator.data import instruct_dataset_type
from validator.evaluation import EvaluationReport, EvaluationSpec, evaluate_instruct, evaluation_command
from validator.evaluation.text_loss import encode_instruct_rows

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
WORDS = [f"w{index}" for index in range(120)]
VOCAB = {token: index for index, token in enumerate([*SPECIALS, *WORDS, "Q", "A", ":"])}
DATASET_TYPE = instruct_dataset_type(
    field_input="ctx", format="Q: {instruction} {input} A:", no_input_format="Q: {instruction} A:"
)


def make_tokenizer(*, pad_is_eos: bool = False, adds_bos_and_eos: bool = False) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel(VOCAB, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if adds_bos_and_eos:
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", VOCAB["<s>"]), ("</s>", VOCAB["</s>"])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="</s>" if pad_is_eos else "<pad>",
        unk_token="<unk>",
    )


def make_model_tokenizer(*, pad_is_eos: bool = False) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on the test words.

    A Qwen2 config makes `AutoTokenizer` rebuild the saved tokenizer as a byte-level BPE `Qwen2Tokenizer` from its
    vocabulary and merges, so the tokenizer saved beside the model must be one (a word-level one loses every word).
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([" ".join(WORDS[start : start + 10]) + " Q: A:" for start in range(0, 120, 3)], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="</s>" if pad_is_eos else "<pad>",
        unk_token="<unk>",
    )


def make_rows(count: int, *, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)

    def words(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    return [
        {"instruct": words(1, 12), "input": words(0, 6) if index % 3 else "", "output": words(1, 15)}
        for index in range(count)
    ]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Base models (two tokenizer variants, same weights), LoRA adapters and full-model submissions."""
    root = tmp_path_factory.mktemp("models")
    tokenizer = make_model_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        # Far from uniform predictions, so a token scored at the wrong position shows up in the loss.
        initializer_range=0.2,
    )
    torch.manual_seed(0)
    base = Qwen2ForCausalLM(config)
    base.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    base.save_pretrained(root / "base_pad_eos")
    make_model_tokenizer(pad_is_eos=True).save_pretrained(root / "base_pad_eos")

    for name, seed, targets in (("adapter_a", 1, ["q_proj", "v_proj"]), ("adapter_b", 2, ["o_proj", "down_proj"])):
        torch.manual_seed(seed)
        fresh = AutoModelForCausalLM.from_pretrained(root / "base")
        # init_lora_weights=False gives random, non-zero B matrices: the adapter changes the outputs.
        lora = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False, task_type="CAUSAL_LM")
        get_peft_model(fresh, lora).save_pretrained(root / name)

    torch.manual_seed(3)
    changed = AutoModelForCausalLM.from_pretrained(root / "base")
    with torch.no_grad():
        for parameter in changed.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    changed.save_pretrained(root / "full_changed")
    AutoModelForCausalLM.from_pretrained(root / "base").save_pretrained(root / "full_copy")
    return root


def evaluate(models_dir: Path, submissions: dict[str, str], rows: list[dict], **kwargs) -> EvaluationReport:
    base_name = kwargs.pop("base", "base")
    return evaluate_instruct(
        base_model_dir=models_dir / base_name,
        submissions={key: models_dir / name for key, name in submissions.items()},
        test_rows=rows,
        dataset_type=DATASET_TYPE,
        **kwargs,
    )


def test_test_loss_is_independent_of_batch_size(models_dir: Path) -> None:
    rows = make_rows(20, seed=0)

    reports = {
        batch_size: evaluate(models_dir, {"a": "adapter_a"}, rows, batch_size=batch_size, base="base_pad_eos")
        for batch_size in (1, 4, 16)
    }

    base_losses = [report.base.test_loss for report in reports.values()]
    adapter_losses = [report.submissions["a"].test_loss for report in reports.values()]
    assert max(base_losses) - min(base_losses) < 1e-5
    assert max(adapter_losses) - min(adapter_losses) < 1e-5
    assert len({report.base.n_tokens for report in reports.values()}) == 1
    # Completions are 1 to 15 words of two or more tokens each, plus EOS: all of them are really scored.
    assert reports[1].base.n_tokens > 3 * len(rows)


def test_eos_is_scored_when_pad_is_eos(models_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(models_dir / "base_pad_eos")
    model = AutoModelForCausalLM.from_pretrained(models_dir / "base_pad_eos")
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    rows = [
        {"instruct": "w1 w2", "input": "", "output": "w3 w4 w5"},
        {"instruct": "w6 w7 w8 w9 w10 w11 w12", "input": "w13", "output": "w14 w15 w16 w17 w18 w19 w20"},
    ]

    # By hand: each row alone, unpadded; the scored targets are the completion tokens and the final EOS.
    total_nll, total_tokens = 0.0, 0
    for row in rows:
        prompt, completion = render_instruct(row, DATASET_TYPE)
        prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + completion_ids + [tokenizer.eos_token_id]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0]
        targets = ids[0, len(prompt_ids) :]
        assert len(completion_ids) >= 6
        assert len(targets) == len(completion_ids) + 1
        total_nll += F.cross_entropy(logits[len(prompt_ids) - 1 : -1], targets, reduction="sum").item()
        total_tokens += len(targets)

    report = evaluate(models_dir, {}, rows, batch_size=2, base="base_pad_eos")

    assert report.base.n_tokens == total_tokens
    assert report.base.test_loss == pytest.approx(total_nll / total_tokens, abs=1e-5)


def test_encoding_keeps_one_bos_and_one_eos() -> None:
    tokenizer = make_tokenizer(adds_bos_and_eos=True)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    dataset_type = instruct_dataset_type(no_input_format="<s>Q: {instruction} A:")

    [row] = encode_instruct_rows(tokenizer, [{"instruct": "w1 w2", "output": "w3 w4"}], dataset_type, max_length=64)

    assert row.input_ids == [bos, VOCAB["Q"], VOCAB[":"], VOCAB["w1"], VOCAB["w2"], VOCAB["A"], VOCAB[":"]] + [
        VOCAB["w3"],
        VOCAB["w4"],
        eos,
    ]
    assert row.n_prompt == 7
    assert row.n_scored == 3


def test_truncation_cuts_the_prompt_start_and_keeps_bos_and_completion() -> None:
    tokenizer = make_tokenizer(adds_bos_and_eos=True)
    long_instruction = " ".join(WORDS[:50])

    [row] = encode_instruct_rows(
        tokenizer, [{"instruct": long_instruction, "output": "w90 w91"}], DATASET_TYPE, max_length=10
    )

    kept_prompt = [VOCAB[token] for token in ("w46", "w47", "w48", "w49", "A", ":")]
    completion = [VOCAB["w90"], VOCAB["w91"], tokenizer.eos_token_id]
    assert row.input_ids == [tokenizer.bos_token_id, *kept_prompt, *completion]
    assert row.n_scored == 3


def test_lora_adapter_changes_the_loss_and_leaves_no_residue(models_dir: Path) -> None:
    rows = make_rows(12, seed=1)

    together = evaluate(models_dir, {"a": "adapter_a", "b": "adapter_b"}, rows)
    a_alone = evaluate(models_dir, {"a": "adapter_a"}, rows)
    b_alone = evaluate(models_dir, {"b": "adapter_b"}, rows)

    a, b = together.submissions["a"], together.submissions["b"]
    assert a.is_adapter and b.is_adapter
    assert a.error is None and b.error is None
    assert abs(a.test_loss - together.base.test_loss) > 1e-3
    assert abs(b.test_loss - together.base.test_loss) > 1e-3
    assert a.test_loss == pytest.approx(a_alone.submissions["a"].test_loss, abs=1e-9)
    assert b.test_loss == pytest.approx(b_alone.submissions["b"].test_loss, abs=1e-9)


def test_full_model_submissions_are_scored(models_dir: Path) -> None:
    rows = make_rows(8, seed=2)

    report = evaluate(models_dir, {"copy": "full_copy", "changed": "full_changed"}, rows)

    assert not report.submissions["copy"].is_adapter
    assert report.submissions["copy"].test_loss == pytest.approx(report.base.test_loss, abs=1e-9)
    assert abs(report.submissions["changed"].test_loss - report.base.test_loss) > 1e-3


def test_broken_submissions_fail_alone(models_dir: Path, tmp_path: Path) -> None:
    rows = make_rows(8, seed=3)
    garbage_config = tmp_path / "garbage_config"
    garbage_config.mkdir()
    (garbage_config / "adapter_config.json").write_text("{not json")
    (garbage_config / "adapter_model.safetensors").write_bytes(b"")
    # Loads half-way: peft injects rank-8 layers into modules adapter_a does not touch, then the rank-4 weights do
    # not fit. Left in place, those layers would change adapter_a's score.
    wrong_rank = tmp_path / "wrong_rank"
    wrong_rank.mkdir()
    config = json.loads((models_dir / "adapter_b" / "adapter_config.json").read_text())
    (wrong_rank / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))
    (wrong_rank / "adapter_model.safetensors").write_bytes(
        (models_dir / "adapter_b" / "adapter_model.safetensors").read_bytes()
    )
    pickle_only = tmp_path / "pickle_only"
    pickle_only.mkdir()
    (pickle_only / "adapter_config.json").write_text(json.dumps(config))
    prompt_tuning = tmp_path / "prompt_tuning"
    prompt_tuning.mkdir()
    (prompt_tuning / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "PROMPT_TUNING"}))
    (prompt_tuning / "adapter_model.safetensors").write_bytes(b"")
    config_only = tmp_path / "config_only"
    config_only.mkdir()
    (config_only / "config.json").write_text((models_dir / "base" / "config.json").read_text())
    small_vocabulary = tmp_path / "small_vocabulary"
    Qwen2ForCausalLM(Qwen2Config.from_pretrained(models_dir / "base", vocab_size=16)).save_pretrained(small_vocabulary)
    alone = evaluate(models_dir, {"good": "adapter_a"}, rows)

    report = evaluate_instruct(
        base_model_dir=models_dir / "base",
        submissions={
            "missing": tmp_path / "does_not_exist",
            "garbage_config": garbage_config,
            "wrong_rank": wrong_rank,
            "pickle_only": pickle_only,
            "prompt_tuning": prompt_tuning,
            "config_only": config_only,
            "small_vocabulary": small_vocabulary,
            "good": models_dir / "adapter_a",
        },
        test_rows=rows,
        dataset_type=DATASET_TYPE,
    )

    results = report.submissions
    for key in (
        "missing",
        "garbage_config",
        "wrong_rank",
        "pickle_only",
        "prompt_tuning",
        "config_only",
        "small_vocabulary",
    ):
        assert results[key].test_loss is None, key
        assert results[key].error, key
    assert "adapter_model.safetensors not found" in results["pickle_only"].error
    assert "only LoRA adapters" in results["prompt_tuning"].error
    assert results["missing"].error == "submission folder not found"
    assert "vocabulary (16 tokens) is smaller" in results["small_vocabulary"].error
    assert results["wrong_rank"].is_adapter
    assert results["good"].error is None
    assert results["good"].test_loss == pytest.approx(alone.submissions["good"].test_loss, abs=1e-9)
    assert report.base.test_loss == pytest.approx(alone.base.test_loss, abs=1e-9)


def test_non_finite_loss_is_an_error(models_dir: Path, tmp_path: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(models_dir / "base")
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    model.save_pretrained(tmp_path / "nan_model")

    report = evaluate_instruct(
        base_model_dir=models_dir / "base",
        submissions={"nan": tmp_path / "nan_model"},
        test_rows=make_rows(4, seed=4),
        dataset_type=DATASET_TYPE,
    )

    assert report.submissions["nan"].test_loss is None
    assert report.submissions["nan"].error == "non-finite loss"


def test_run_entry_point_writes_the_report(models_dir: Path, tmp_path: Path) -> None:
    rows = make_rows(10, seed=5)
    rows_file = tmp_path / "test_rows.json"
    rows_file.write_text(json.dumps(rows))
    spec = EvaluationSpec(
        task_type=TaskType.INSTRUCT_TEXT,
        base_model_dir=models_dir / "base",
        submissions={"a": models_dir / "adapter_a", "missing": tmp_path / "nothing"},
        test_rows_file=rows_file,
        dataset_type=DATASET_TYPE,
        batch_size=3,
        max_length=64,
    )
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.model_dump_json())
    out = tmp_path / "out" / "result.json"

    finished = subprocess.run(evaluation_command(spec_file, out), capture_output=True, text=True, timeout=300)

    assert finished.returncode == 0, finished.stderr
    report = EvaluationReport.model_validate_json(out.read_text())
    expected = evaluate(models_dir, {"a": "adapter_a"}, rows, batch_size=3, max_length=64)
    assert report.base.test_loss == pytest.approx(expected.base.test_loss, abs=1e-5)
    assert report.submissions["a"].test_loss == pytest.approx(expected.submissions["a"].test_loss, abs=1e-5)
    assert report.submissions["missing"].error
    assert [path.name for path in out.parent.iterdir()] == ["result.json"]


def test_run_entry_point_refuses_a_bad_spec(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"task_type": "InstructTextTask"}))
    out = tmp_path / "result.json"

    finished = subprocess.run(evaluation_command(spec_file, out), capture_output=True, text=True, timeout=120)

    assert finished.returncode == 2
    assert "invalid evaluation spec" in finished.stderr
    assert not out.exists()
