"""Checks on a trained output before any model is loaded from it (pure functions over files, no torch).

A submission is refused when it holds anything that could run code on load (pickle weights, Python files, an
`auto_map` pointing at custom model classes), when it is not a fine-tune of the task's base model (a LoRA whose
target modules or tensor shapes do not fit the base; a full model with another architecture or other dimensions),
or when it changes nothing (a LoRA whose B matrices are all zero, a full model equal to the base). Identical weights
under two hotkeys are credited to the submission that finished first.

Safetensors headers are parsed here directly (8-byte length + JSON), so the checks read only the headers, and the
lora_B tensors of an adapter, never a whole model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import struct
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
CODE_SUFFIXES = (".py", ".pyc", ".so")
CONFIG_FILES = ("config.json", "adapter_config.json")
ADAPTER_CONFIG = "adapter_config.json"
NO_OP_ADAPTER = "no-op adapter: it does not change the base model"
UNCHANGED_MODEL = "unchanged copy of the base model: it does not change the base model"
# The config fields that fix a model's architecture; a fine-tune keeps every one the base declares.
ARCHITECTURE_FIELDS = (
    "model_type",
    "architectures",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
)
MAX_HEADER_BYTES = 100_000_000
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}
_LORA_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<kind>A|B|embedding_A|embedding_B)(?:\.[^.]+)?(?:\.weight)?$"
)
_HASH_CHUNK = 1 << 20


class SubmissionCheckError(Exception):
    """A file of the submission (or of the base model) cannot be read as what it claims to be."""


def code_or_pickle_problem(folder: Path) -> str | None:
    """Why the folder holds something that could run code when loaded, or None."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(folder).as_posix()
        if path.suffix in PICKLE_SUFFIXES:
            return f"the output holds pickle weights ({name}); only safetensors are loaded"
        if path.suffix in CODE_SUFFIXES:
            return f"the output holds custom model code ({name}); remote code is never run"
    for config_name in CONFIG_FILES:
        try:
            config = _read_json(folder / config_name) if (folder / config_name).is_file() else None
        except SubmissionCheckError as error:
            return str(error)
        if isinstance(config, dict) and config.get("auto_map"):
            return f"{config_name} has an auto_map (custom model code); remote code is never run"
    return None


def read_safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """Tensor name -> {"dtype", "shape", "data_offsets"} of a safetensors file (metadata left out)."""
    try:
        with path.open("rb") as handle:
            raw_length = handle.read(8)
            if len(raw_length) != 8:
                raise SubmissionCheckError(f"{path.name} is not a safetensors file (too short)")
            (length,) = struct.unpack("<Q", raw_length)
            if not 1 < length <= MAX_HEADER_BYTES:
                raise SubmissionCheckError(f"{path.name} is not a safetensors file (header length {length})")
            header = json.loads(handle.read(length))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SubmissionCheckError(f"{path.name} is not a safetensors file ({type(error).__name__})") from error
    if not isinstance(header, dict):
        raise SubmissionCheckError(f"{path.name} is not a safetensors file (header is not an object)")
    header.pop("__metadata__", None)
    for name, info in header.items():
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (
            isinstance(info, dict)
            and isinstance(info.get("dtype"), str)
            and isinstance(info.get("shape"), list)
            and all(isinstance(size, int) for size in info["shape"])
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(offset, int) and offset >= 0 for offset in offsets)
        ):
            raise SubmissionCheckError(f"{path.name}: tensor {name!r} has no valid dtype, shape or data offsets")
    return header


def tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape over all *.safetensors files of a model folder."""
    shapes = {}
    for path in sorted(folder.glob("*.safetensors")):
        for name, info in read_safetensors_header(path).items():
            shapes[name] = tuple(info["shape"])
    return shapes


def base_fit_problem(folder: Path, base_dir: Path) -> str | None:
    """Why the submission is not a fine-tune of the base model at `base_dir`, or None.

    An adapter's `base_model_name_or_path` is ignored: trainers write the local path they trained from.
    """
    try:
        if (folder / ADAPTER_CONFIG).is_file():
            return _adapter_fit_problem(folder, base_dir)
        return _full_model_fit_problem(folder, base_dir)
    except SubmissionCheckError as error:
        return str(error)


def _adapter_fit_problem(folder: Path, base_dir: Path) -> str | None:
    config = _read_json(folder / ADAPTER_CONFIG)
    if not isinstance(config, dict):
        return f"{ADAPTER_CONFIG} is not a JSON object"
    if config.get("peft_type") != "LORA":
        # TODO(#3): other peft methods; remove when their evaluation exists.
        return f"only LoRA adapters are accepted; {ADAPTER_CONFIG} has peft_type {config.get('peft_type')!r}"
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        return "adapter_model.safetensors not found next to adapter_config.json"
    base_shapes = tensor_shapes(base_dir)
    if not base_shapes:
        return "the base model has no safetensors weights to check the adapter against"
    base_modules = {name.removesuffix(".weight") for name in base_shapes if name.endswith(".weight")}

    targets = config.get("target_modules")
    if isinstance(targets, str):
        if not any(re.fullmatch(targets, module) for module in base_modules):
            return f"target_modules {targets!r} matches no module of the base model"
    elif isinstance(targets, list) and targets:
        for target in targets:
            if not any(module == target or module.endswith(f".{target}") for module in base_modules):
                return f"target module {target!r} is not a module of the base model"
    else:
        return f"{ADAPTER_CONFIG} names no target_modules"

    lora = _lora_tensors(read_safetensors_header(weights))
    if not lora:
        return "adapter_model.safetensors holds no LoRA tensors"
    for module, kinds in sorted(lora.items()):
        base_shape = _base_weight_shape(module, base_shapes)
        if base_shape is None:
            return f"the adapter changes {module!r}, which is not a module of the base model"
        problem = _lora_shape_problem(module, kinds, base_shape)
        if problem:
            return problem
    return None


def _lora_tensors(header: dict[str, dict[str, Any]]) -> dict[str, dict[str, tuple[int, ...]]]:
    """Module path (as in the base model) -> {"A"/"B"/"embedding_A"/"embedding_B": shape}."""
    modules: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, info in header.items():
        match = _LORA_KEY.match(name)
        if match:
            modules.setdefault(match["module"], {})[match["kind"]] = tuple(info["shape"])
    return modules


def _base_weight_shape(module: str, base_shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...] | None:
    shape = base_shapes.get(f"{module}.weight")
    if shape is None and module.endswith("lm_head"):
        # Tied embeddings: the output layer is the input embedding, stored once.
        shape = next((s for name, s in base_shapes.items() if name.endswith("embed_tokens.weight")), None)
    return shape


def _lora_shape_problem(module: str, kinds: dict[str, tuple[int, ...]], base_shape: tuple[int, ...]) -> str | None:
    is_embedding = "embedding_A" in kinds or "embedding_B" in kinds
    a_shape = kinds.get("embedding_A" if is_embedding else "A")
    b_shape = kinds.get("embedding_B" if is_embedding else "B")
    if a_shape is None or b_shape is None or len(a_shape) != 2 or len(b_shape) != 2 or len(base_shape) != 2:
        return f"the adapter's tensors for {module!r} are not a pair of LoRA matrices"
    # A linear weight is (out, in): A is (r, in) and B is (out, r). An embedding is (vocab, dim): A is (r, vocab).
    expected_in, expected_out = (base_shape[0], base_shape[1]) if is_embedding else (base_shape[1], base_shape[0])
    if a_shape[1] != expected_in or b_shape[0] != expected_out or a_shape[0] != b_shape[1]:
        return (
            f"the adapter's shapes for {module!r} (A {list(a_shape)}, B {list(b_shape)}) do not fit the base "
            f"weight {list(base_shape)}"
        )
    return None


def _full_model_fit_problem(folder: Path, base_dir: Path) -> str | None:
    config = _read_json(folder / "config.json")
    base_config = _read_json(base_dir / "config.json")
    if not isinstance(config, dict):
        return "config.json is not a JSON object"
    if not isinstance(base_config, dict):
        raise SubmissionCheckError("the base model's config.json is not a JSON object")
    for field in ARCHITECTURE_FIELDS:
        # A field the base does not declare cannot differ from it; any it declares must be kept.
        if field in base_config and config.get(field) != base_config[field]:
            return f"config.json {field} is {config.get(field)!r}, the base model's is {base_config[field]!r}"
    return None


def no_op_problem(folder: Path, base_dir: Path) -> str | None:
    """`NO_OP_ADAPTER` for a LoRA whose B matrices are all zero, `UNCHANGED_MODEL` for a copy of the base."""
    try:
        if (folder / ADAPTER_CONFIG).is_file():
            path = folder / "adapter_model.safetensors"
            header = read_safetensors_header(path)
            lora_b = [name for name in header if (match := _LORA_KEY.match(name)) and match["kind"].endswith("B")]
            # Any other tensor (modules_to_save, for one) may change the model, so the adapter is not a no-op.
            others = [name for name in header if not _LORA_KEY.match(name)]
            if lora_b and not others and all(_tensor_is_zero(path, header, name) for name in lora_b):
                return NO_OP_ADAPTER
            return None
        if weights_digest(folder) == weights_digest(base_dir):
            return UNCHANGED_MODEL
    except SubmissionCheckError as error:
        return str(error)
    return None


def _tensor_is_zero(path: Path, header: dict[str, dict[str, Any]], name: str) -> bool:
    info = header[name]
    width = _DTYPE_BYTES.get(info["dtype"])
    if width is None:
        return False
    start, end = info["data_offsets"]
    header_length = _header_length(path)
    with path.open("rb") as handle:
        handle.seek(8 + header_length + start)
        data = handle.read(end - start)
    if len(data) != end - start or len(data) % width:
        raise SubmissionCheckError(f"{path.name}: tensor {name!r} is truncated")
    values = np.frombuffer(data, dtype=f"<u{width}")
    # -0.0 differs from 0.0 only in the sign bit.
    magnitude_mask = np.array((1 << (8 * width - 1)) - 1, dtype=f"<u{width}")
    return not np.any(values & magnitude_mask)


def _header_length(path: Path) -> int:
    with path.open("rb") as handle:
        return struct.unpack("<Q", handle.read(8))[0]


def weights_digest(folder: Path) -> str:
    """SHA-256 over the names and bytes of every *.safetensors file: equal digests mean identical weights."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.safetensors")):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(_HASH_CHUNK):
                    digest.update(chunk)
        except OSError as error:
            raise SubmissionCheckError(f"{path.name} cannot be read: {error}") from error
        digest.update(b"\0")
    return digest.hexdigest()


def check_submission(folder: Path, base_dir: Path) -> str | None:
    """Why the submission must not be scored (code or pickles, not a fine-tune of the base, a no-op), or None."""
    try:
        return code_or_pickle_problem(folder) or base_fit_problem(folder, base_dir) or no_op_problem(folder, base_dir)
    except (OSError, ValueError, TypeError, KeyError) as error:
        # Untrusted files: whatever slipped past the header checks refuses this submission, never the task.
        logger.debug("submission at %s failed the checks", folder, exc_info=True)
        return f"the output's files cannot be checked: {type(error).__name__}: {error}"


@dataclass(frozen=True)
class WeightsEntry:
    hotkey: str
    digest: str
    order: Hashable  # earlier first: e.g. (finished_at, dispatched_at, hotkey)


def copy_reasons(entries: Sequence[WeightsEntry]) -> dict[str, str]:
    """Hotkey -> "copy of <hotkey>'s submission" for every submission whose weights an earlier one already holds."""
    first: dict[str, str] = {}
    reasons = {}
    for entry in sorted(entries, key=lambda entry: entry.order):
        original = first.setdefault(entry.digest, entry.hotkey)
        if original != entry.hotkey:
            reasons[entry.hotkey] = f"copy of {original}'s submission"
    return reasons


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SubmissionCheckError(f"{path.name} is not valid JSON ({type(error).__name__})") from error
