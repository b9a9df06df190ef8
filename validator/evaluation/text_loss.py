"""Test loss of instruct submissions: the token-weighted mean NLL of the completion tokens, end-of-sequence included.

The base model and tokenizer are loaded once. A LoRA submission is wrapped around the loaded base and unwrapped
afterwards; a full-model submission is loaded beside it. Every model sees the same token ids (the base tokenizer's),
so the numbers are comparable, and the loss is a sum over tokens, so it does not depend on the batch size.
"""

from __future__ import annotations

import gc
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from core.formatting import render_instruct
from core.tasks import InstructTextDatasetType
from validator.evaluation.report import EvaluationError, EvaluationReport, SubmissionLoss

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_NAME = "submission"
MAX_ERROR_CHARS = 300

Scorer = Callable[..., SubmissionLoss]


@dataclass(frozen=True)
class EncodedRow:
    """Token ids of prompt + completion + EOS; the first `n_prompt` ids are context and are not scored."""

    input_ids: list[int]
    n_prompt: int

    @property
    def n_scored(self) -> int:
        # The first token has nothing before it to be predicted from.
        return len(self.input_ids) - max(self.n_prompt, 1)


def evaluate_instruct(
    *,
    base_model_dir: Path,
    submissions: Mapping[str, Path],
    test_rows: Sequence[Mapping[str, Any]],
    dataset_type: InstructTextDatasetType,
    batch_size: int = 8,
    max_length: int = 512,
    device: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> EvaluationReport:
    """Score the base model and every submission on the test rows.

    Args:
        base_model_dir: the base model (safetensors) and its tokenizer.
        submissions: key (e.g. hotkey) -> a directory holding a LoRA adapter (`adapter_config.json`) or a full model.
        test_rows: prepared rows, rendered with `core.formatting.render_instruct(row, dataset_type)`.
        batch_size: rows per forward pass; it changes speed and memory, not the result.
        max_length: longest sequence in tokens; longer rows lose the start of their prompt.
        device: "cpu", "cuda", ...; the first GPU when there is one, else the CPU, when absent.

    Returns:
        The base model's loss and one `SubmissionLoss` per key. A submission that fails to load or gives a
        non-finite loss gets `test_loss=None` and an `error`; the others are unaffected.

    Raises:
        EvaluationError: no test rows, or the base model or tokenizer does not load.
    """
    if not test_rows:
        raise EvaluationError("no test rows to evaluate on")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model_dir, trust_remote_code=False)
        base = _load_causal_lm(base_model_dir, dtype=dtype, device=device)
    except Exception as exc:  # transformers raises many types for a bad model folder
        raise EvaluationError(f"base model {base_model_dir} does not load: {_error_text(exc)}") from exc

    max_positions = getattr(base.config, "max_position_embeddings", None)
    if isinstance(max_positions, int) and 1 < max_positions < max_length:
        max_length = max_positions
    encoded = encode_instruct_rows(tokenizer, test_rows, dataset_type, max_length=max_length)
    pad_id = _pad_token_id(tokenizer)
    highest_token_id = max(max(row.input_ids) for row in encoded)

    def score(model: torch.nn.Module, *, is_adapter: bool) -> SubmissionLoss:
        return _score(model, encoded, batch_size=batch_size, pad_id=pad_id, device=device, is_adapter=is_adapter)

    logger.info("evaluating the base model and %d submissions on %d test rows", len(submissions), len(encoded))
    try:
        base_result = score(base, is_adapter=False)
    except Exception as exc:  # out of memory, a broken checkpoint; without a base score nothing can be compared
        raise EvaluationError(f"base model {base_model_dir} could not be evaluated: {_error_text(exc)}") from exc
    logger.info("base model: test loss %s over %d tokens", base_result.test_loss, base_result.n_tokens)

    results: dict[str, SubmissionLoss] = {}
    for key, path in submissions.items():
        path = Path(path)
        if not path.is_dir():
            results[key] = SubmissionLoss(test_loss=None, n_tokens=0, error="submission folder not found")
        elif (path / ADAPTER_CONFIG).is_file():
            results[key], base = _evaluate_adapter(
                base, path, score=score, reload_base=lambda: _load_causal_lm(base_model_dir, dtype=dtype, device=device)
            )
        else:
            results[key] = _evaluate_full_model(
                path, score=score, dtype=dtype, device=device, highest_token_id=highest_token_id
            )
        result = results[key]
        if result.error:
            logger.info("submission %s: no test loss (%s)", key, result.error)
        else:
            logger.info("submission %s: test loss %.6f over %d tokens", key, result.test_loss, result.n_tokens)
    return EvaluationReport(base=base_result, submissions=results)


def encode_instruct_rows(
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    dataset_type: InstructTextDatasetType,
    *,
    max_length: int,
) -> list[EncodedRow]:
    """Tokenise each row as prompt (with the tokenizer's special tokens) + completion + one EOS.

    The tokenizer's own EOS after the prompt, if it adds one, is removed, and a BOS doubled by a prompt format
    that starts with the BOS text is collapsed. Rows longer than `max_length` lose the start of the prompt (after
    any BOS); a completion that alone exceeds it is cut at the end.
    """
    eos_id = tokenizer.eos_token_id
    bos_id = tokenizer.bos_token_id
    if eos_id is None:
        logger.warning("the base tokenizer has no end-of-sequence token; completions are scored without one")
    appends_eos = eos_id is not None and _tokenizer_appends_eos(tokenizer, eos_id)

    encoded = []
    for row in rows:
        prompt, completion = render_instruct(row, dataset_type)
        prompt_ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
        completion_ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"]) if completion else []
        if appends_eos and prompt_ids and prompt_ids[-1] == eos_id:
            prompt_ids.pop()
        if bos_id is not None and prompt_ids[:2] == [bos_id, bos_id]:
            prompt_ids.pop(0)
        if eos_id is not None and completion_ids[-1:] != [eos_id]:
            completion_ids.append(eos_id)
        encoded.append(_truncate(prompt_ids, completion_ids, bos_id=bos_id, max_length=max_length))
    return encoded


def _truncate(prompt_ids: list[int], completion_ids: list[int], *, bos_id: int | None, max_length: int) -> EncodedRow:
    # At least one prompt token stays, so the first completion token is still predicted from something.
    completion_ids = completion_ids[: max_length - 1]
    room = max_length - len(completion_ids)
    if len(prompt_ids) > room:
        keeps_bos = bos_id is not None and prompt_ids[0] == bos_id and room > 1
        prompt_ids = [bos_id, *prompt_ids[len(prompt_ids) - room + 1 :]] if keeps_bos else prompt_ids[-room:]
    return EncodedRow(input_ids=prompt_ids + completion_ids, n_prompt=len(prompt_ids))


def _tokenizer_appends_eos(tokenizer: Any, eos_id: int) -> bool:
    probe = "hello"
    with_special = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    without = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    return with_special[-1:] == [eos_id] and without[-1:] != [eos_id]


def _pad_token_id(tokenizer: Any) -> int:
    # The pad value never reaches the loss (masked attention, no label), so any valid id will do.
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def completion_nll(
    model: torch.nn.Module,
    encoded: Sequence[EncodedRow],
    *,
    batch_size: int,
    pad_id: int,
    device: str,
) -> tuple[float, int]:
    """The summed NLL (float64) of the scored tokens of all rows, and how many tokens were scored."""
    model.eval()
    # Longest first: similar lengths share a batch (less padding), and running out of memory shows up at once.
    order = sorted(range(len(encoded)), key=lambda index: -len(encoded[index].input_ids))
    total = torch.zeros((), dtype=torch.float64)
    n_tokens = 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = [encoded[index] for index in order[start : start + batch_size]]
            width = max(len(row.input_ids) for row in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            # Built from the true lengths: with pad == eos, `input_ids != pad_id` would also hide the scored EOS.
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
            for position, row in enumerate(batch):
                length = len(row.input_ids)
                input_ids[position, :length] = torch.tensor(row.input_ids)
                attention_mask[position, :length] = 1
                labels[position, row.n_prompt : length] = input_ids[position, row.n_prompt : length]

            logits = model(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), use_cache=False
            ).logits
            # Position t predicts token t + 1.
            targets = labels[:, 1:].to(device)
            scored = targets != IGNORE_INDEX
            nll = F.cross_entropy(logits[:, :-1][scored].float(), targets[scored], reduction="none")
            total += nll.to(torch.float64).sum().cpu()
            n_tokens += int(scored.sum())
    return float(total), n_tokens


def _score(
    model: torch.nn.Module,
    encoded: Sequence[EncodedRow],
    *,
    batch_size: int,
    pad_id: int,
    device: str,
    is_adapter: bool,
) -> SubmissionLoss:
    total, n_tokens = completion_nll(model, encoded, batch_size=batch_size, pad_id=pad_id, device=device)
    if n_tokens == 0:
        return SubmissionLoss(test_loss=None, n_tokens=0, error="no completion tokens to score", is_adapter=is_adapter)
    loss = total / n_tokens
    if not math.isfinite(loss):
        return SubmissionLoss(test_loss=None, n_tokens=n_tokens, error="non-finite loss", is_adapter=is_adapter)
    return SubmissionLoss(test_loss=loss, n_tokens=n_tokens, is_adapter=is_adapter)


def _evaluate_adapter(
    base: PreTrainedModel,
    path: Path,
    *,
    score: Scorer,
    reload_base: Callable[[], PreTrainedModel],
) -> tuple[SubmissionLoss, PreTrainedModel]:
    """Score a LoRA adapter on the loaded base; returns the result and the (clean) base for the next submission."""
    from peft import PeftModel

    problem = _adapter_problem(path)
    if problem:
        return SubmissionLoss(test_loss=None, n_tokens=0, error=problem, is_adapter=True), base

    fingerprint = _parameter_fingerprint(base)
    peft_model = None
    try:
        peft_model = PeftModel.from_pretrained(base, str(path), adapter_name=ADAPTER_NAME, is_trainable=False)
        result = score(peft_model, is_adapter=True)
    except Exception as exc:  # a broken adapter can fail in peft, safetensors or the forward pass
        error = f"adapter does not load or run: {_error_text(exc)}"
        result = SubmissionLoss(test_loss=None, n_tokens=0, error=error, is_adapter=True)
    finally:
        if peft_model is not None:
            try:
                base = peft_model.unload()
            except Exception:  # the fingerprint check below decides whether the base is still clean
                logger.debug("unloading the adapter at %s failed", path, exc_info=True)
        del peft_model

    if _parameter_fingerprint(base) != fingerprint:
        # A load that failed half-way can leave adapter layers in the base; only a fresh copy is sure to be clean.
        logger.warning("adapter at %s left layers in the base model; reloading the base", path)
        del base
        _free_memory()
        base = reload_base()
    return result, base


def _adapter_problem(path: Path) -> str | None:
    """Why the adapter folder is refused before peft sees it, or None."""
    if not (path / ADAPTER_WEIGHTS).is_file():
        return f"{ADAPTER_WEIGHTS} not found next to {ADAPTER_CONFIG} (only safetensors weights are accepted)"
    try:
        config = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{ADAPTER_CONFIG} is not valid JSON ({_error_text(exc)})"
    peft_type = config.get("peft_type") if isinstance(config, dict) else None
    if peft_type != "LORA":
        # TODO(#3): other peft methods, once preevaluation checks them.
        return f"only LoRA adapters are accepted; {ADAPTER_CONFIG} has peft_type {peft_type!r}"
    return None


def _evaluate_full_model(
    path: Path,
    *,
    score: Scorer,
    dtype: torch.dtype,
    device: str,
    highest_token_id: int,
) -> SubmissionLoss:
    if not (path / "config.json").is_file():
        error = f"neither {ADAPTER_CONFIG} nor config.json found in the submission"
        return SubmissionLoss(test_loss=None, n_tokens=0, error=error)
    model = None
    try:
        try:
            model = _load_causal_lm(path, dtype=dtype, device=device)
        except Exception as exc:  # transformers raises many types for a bad model folder
            return SubmissionLoss(test_loss=None, n_tokens=0, error=f"model does not load: {_error_text(exc)}")
        vocabulary = model.get_input_embeddings().num_embeddings
        if vocabulary <= highest_token_id:
            error = f"the model's vocabulary ({vocabulary} tokens) is smaller than the base tokenizer's"
            return SubmissionLoss(test_loss=None, n_tokens=0, error=error)
        try:
            return score(model, is_adapter=False)
        except Exception as exc:  # a model that loads can still fail to run (shapes, out of memory)
            return SubmissionLoss(test_loss=None, n_tokens=0, error=f"model does not run: {_error_text(exc)}")
    finally:
        del model
        _free_memory()


def _load_causal_lm(path: Path, *, dtype: torch.dtype, device: str) -> PreTrainedModel:
    # Never remote code and never pickle: a submission's folder is untrusted input.
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=False, use_safetensors=True)
    model.to(device)
    model.eval()
    return model


def _parameter_fingerprint(model: torch.nn.Module) -> list[tuple[str, int, tuple[int, ...]]]:
    return [(name, parameter.data_ptr(), tuple(parameter.shape)) for name, parameter in model.named_parameters()]


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    first_line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first_line[:MAX_ERROR_CHARS]}" if first_line else type(exc).__name__
