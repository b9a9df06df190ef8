"""Prices: the reference's size buckets, parameter counts read from model files, settings checks."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.validator.billing_helpers import write_safetensors_header
from validator.pricing import ModelSizeUnknown, model_parameters, price_usd, text_usd_per_hour
from validator.settings import PriceBucket, ValidatorSettings, resolve_deposit_key

BUCKETS = ValidatorSettings(network="local", data_dir=Path("/tmp/unused")).text_price_buckets


@pytest.mark.parametrize(
    ("parameters", "rate"),
    [
        (135_000_000, 10),
        (1_000_000_000, 10),
        (1_000_000_001, 15),
        (7_000_000_000, 15),
        (32_000_000_000, 25),
        (40_000_000_000, 25),
        (70_000_000_000, 50),
    ],
)
def test_text_rates_follow_the_reference_buckets(parameters: int, rate: int) -> None:
    assert text_usd_per_hour(parameters, BUCKETS) == Decimal(rate)


def test_prices_are_rate_times_hours_in_cents() -> None:
    assert price_usd(Decimal(15), 1.5) == Decimal("22.50")
    assert price_usd(10, 0.01) == Decimal("0.10")
    assert price_usd(Decimal("0.1"), 0.01) == Decimal("0.01")  # never free


def test_parameters_are_summed_over_safetensors_shards(tmp_path: Path) -> None:
    write_safetensors_header(tmp_path / "model-1.safetensors", {"a": [10, 20], "b": [5]})
    write_safetensors_header(tmp_path / "model-2.safetensors", {"c": [3, 3, 3]})

    assert model_parameters(tmp_path) == 200 + 5 + 27


@pytest.mark.parametrize("content", [b"", b"\xff" * 8 + b"{}", b"\x05\x00\x00\x00\x00\x00\x00\x00nope!"])
def test_unreadable_model_files_say_so(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "model.safetensors").write_bytes(content)

    with pytest.raises(ModelSizeUnknown):
        model_parameters(tmp_path)


def test_a_config_without_sizes_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")

    with pytest.raises(ModelSizeUnknown, match="hidden_size"):
        model_parameters(tmp_path)


@pytest.mark.parametrize(
    "buckets",
    [
        [{"max_params_b": 1, "usd_per_hour": 10}],
        [
            {"max_params_b": 7, "usd_per_hour": 10},
            {"max_params_b": 1, "usd_per_hour": 5},
            {"max_params_b": None, "usd_per_hour": 50},
        ],
        [{"max_params_b": None, "usd_per_hour": 10}, {"max_params_b": None, "usd_per_hour": 50}],
    ],
)
def test_bad_price_buckets_are_refused(buckets: list[dict]) -> None:
    with pytest.raises(ValidationError, match="text_price_buckets"):
        ValidatorSettings(network="local", data_dir=Path("/tmp/unused"), text_price_buckets=buckets)


def test_billing_defaults_by_network(tmp_path: Path) -> None:
    local = ValidatorSettings(network="local", data_dir=tmp_path)
    real = ValidatorSettings(network="finney", data_dir=tmp_path)

    assert local.free_tasks is True and local.tao_usd_rate == 100.0
    assert real.free_tasks is False and real.tao_usd_rate is None
    assert ValidatorSettings(network="local", data_dir=tmp_path, free_tasks=False).free_tasks is False
    assert [bucket.usd_per_hour for bucket in real.text_price_buckets] == [10, 15, 25, 50]
    assert isinstance(real.text_price_buckets[0], PriceBucket)


def test_the_deposit_key_is_generated_once_with_private_permissions(tmp_path: Path) -> None:
    settings = ValidatorSettings(network="local", data_dir=tmp_path)

    key = resolve_deposit_key(settings)

    assert len(key) == 32 and resolve_deposit_key(settings) == key
    assert os.stat(tmp_path / "deposit_encryption_key").st_mode & 0o777 == 0o600
    configured = ValidatorSettings(network="local", data_dir=tmp_path, deposit_encryption_key="ab" * 32)
    assert resolve_deposit_key(configured) == bytes.fromhex("ab" * 32)
    with pytest.raises(ValueError, match="64 hex characters"):
        resolve_deposit_key(ValidatorSettings(network="local", data_dir=tmp_path, deposit_encryption_key="short"))
