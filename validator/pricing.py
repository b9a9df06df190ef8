"""Prices of tasks: text tasks by the base model's parameter count (size buckets) times hours, images at a flat
hourly rate. The parameter count is read from the model store's copy of the base model, never from the request."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import struct
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from core.stores import ModelStore
from validator.settings import PriceBucket

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")
# A safetensors header is a little-endian u64 length and then that much JSON; anything larger is not a header.
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class ModelSizeUnknown(Exception):
    """The base model's parameter count cannot be read from its files."""


def _safetensors_parameters(path: Path) -> int:
    with open(path, "rb") as file:
        raw = file.read(8)
        if len(raw) != 8:
            raise ModelSizeUnknown(f"{path.name} is not a safetensors file")
        (length,) = struct.unpack("<Q", raw)
        if length > _MAX_HEADER_BYTES:
            raise ModelSizeUnknown(f"{path.name} has an implausible header length")
        try:
            header = json.loads(file.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ModelSizeUnknown(f"{path.name} has an unreadable header: {error}") from None
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(isinstance(dim, int) and dim >= 0 for dim in shape):
            raise ModelSizeUnknown(f"{path.name}: tensor {name!r} has no valid shape")
        total += math.prod(shape)
    return total


def _config_parameters(config: dict) -> int:
    """An estimate from a decoder-only transformer's config.json (attention, MLP, embeddings)."""
    config = config.get("text_config", config)
    if isinstance(config.get("num_parameters"), int):
        return config["num_parameters"]
    try:
        hidden = int(config["hidden_size"])
        layers = int(config["num_hidden_layers"])
        vocab = int(config["vocab_size"])
        intermediate = int(config.get("intermediate_size") or 4 * hidden)
        heads = int(config.get("num_attention_heads") or 1)
        kv_heads = int(config.get("num_key_value_heads") or heads)
    except (KeyError, TypeError, ValueError):
        raise ModelSizeUnknown("config.json names no hidden_size, num_hidden_layers and vocab_size") from None
    head_dim = int(config.get("head_dim") or hidden // max(heads, 1))
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    mlp = 3 * hidden * intermediate
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", True) else 2)
    return layers * (attention + mlp) + embeddings


@functools.lru_cache(maxsize=256)
def _parameters_of_version(folder: Path) -> int:
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return sum(_safetensors_parameters(path) for path in files)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelSizeUnknown("the model has neither safetensors weights nor a config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelSizeUnknown(f"config.json cannot be read: {error}") from None
    if not isinstance(config, dict):
        raise ModelSizeUnknown("config.json is not an object")
    return _config_parameters(config)


def model_parameters(folder: Path) -> int:
    """The parameter count of the model in `folder` (blocking file I/O: call it in a thread).

    The safetensors headers are summed when there are weights; otherwise config.json gives an estimate. Published
    versions in the model store never change, so the count is cached by the version's real path.
    """
    count = _parameters_of_version(Path(folder).resolve())
    if count <= 0:
        raise ModelSizeUnknown("the model's files describe no parameters")
    return count


def text_usd_per_hour(parameters: int, buckets: list[PriceBucket]) -> Decimal:
    for bucket in buckets:
        if bucket.max_params_b is None or parameters <= bucket.max_params_b * 1e9:
            return Decimal(str(bucket.usd_per_hour))
    # The settings' validator guarantees an open last bucket.
    raise ValueError("the price buckets have no bucket for larger models")


def price_usd(usd_per_hour: Decimal | float, hours: float) -> Decimal:
    """The price of `hours` at `usd_per_hour`, in cents (rounded half up; at least one cent)."""
    price = (Decimal(str(usd_per_hour)) * Decimal(str(hours))).quantize(CENT, rounding=ROUND_HALF_UP)
    return max(price, CENT)


@dataclass(frozen=True)
class Quote:
    price_usd: Decimal
    usd_per_hour: Decimal
    hours: float
    model_parameters: int | None


async def quote_text(model_store: ModelStore, buckets: list[PriceBucket], model_repo: str, hours: float) -> Quote:
    """The price of a text task on `model_repo`. Raises RepoNotFound / StoreError, ModelSizeUnknown."""

    def count() -> int:
        return model_parameters(model_store.local_path(model_repo))

    parameters = await asyncio.to_thread(count)
    rate = text_usd_per_hour(parameters, buckets)
    return Quote(price_usd=price_usd(rate, hours), usd_per_hour=rate, hours=hours, model_parameters=parameters)


def quote_image(usd_per_hour: float, hours: float) -> Quote:
    rate = Decimal(str(usd_per_hour))
    return Quote(price_usd=price_usd(rate, hours), usd_per_hour=rate, hours=hours, model_parameters=None)
