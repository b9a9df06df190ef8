"""Validator settings, read from `VALIDATOR_*` environment variables (and `DATABASE_URL`).

Timing defaults depend on the network: the local network polls every second and keeps short leases so a demo moves
quickly, a real network polls less often. Any value set explicitly wins.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from core.settings import NodeSettings

logger = logging.getLogger(__name__)

ARTIFACT_SECRET_FILE = "artifact_secret"
DEPOSIT_KEY_FILE = "deposit_encryption_key"
LOCAL_TAO_USD_RATE = 100.0


class TrainerEndpoint(BaseModel):
    """A trainer host this validator sends training jobs to."""

    url: str = Field(description="Base URL of the trainer host API, e.g. http://10.0.0.5:9100")
    hotkey: str = Field(min_length=1, description="The trainer host's hotkey (receiver of signed requests)")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("trainer url must start with http:// or https://")
        return value


class WeightsWindow(BaseModel):
    """Scores of tasks finished within the last `hours` count with `weight`."""

    hours: float = Field(gt=0, allow_inf_nan=False)
    weight: float = Field(ge=0, allow_inf_nan=False)


class PriceBucket(BaseModel):
    """Text models with at most `max_params_b` billion parameters (None: any larger) cost `usd_per_hour`."""

    max_params_b: float | None = Field(gt=0, allow_inf_nan=False)
    usd_per_hour: float = Field(gt=0, allow_inf_nan=False)


class ValidatorSettings(NodeSettings):
    model_config = SettingsConfigDict(env_prefix="VALIDATOR_", extra="ignore", validate_default=True)

    # Public API
    host: str = "127.0.0.1"
    port: int = Field(default=9001, ge=1, le=65535)
    # Base URL that trainers use to fetch artifacts; None means http://{host}:{port}.
    public_url: str | None = None
    # Larger request bodies are refused with 413 before they are read (task requests are a few hundred bytes).
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Requests a minute per credential (per client address without one), in bursts of up to `rate_limit_burst`;
    # 0 turns the limit off. None: 600 a minute, except off on the local network (demos, tests and benchmarks).
    rate_limit_per_minute: int | None = Field(default=None, ge=0)
    rate_limit_burst: int = Field(default=60, ge=1)

    # Storage. None means embedded PostgreSQL in {data_dir}/postgres.
    database_url: SecretStr | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    model_store_dir: Path | None = None  # None means {data_dir}/models
    artifact_dir: Path | None = None  # None means {data_dir}/artifacts
    # Signs artifact URLs. None means a random secret kept in {data_dir}/artifact_secret.
    artifact_secret: SecretStr | None = None
    artifact_url_ttl_seconds: int = Field(default=24 * 3600, gt=0)

    # Trainer hosts, as JSON: [{"url": "http://...", "hotkey": "5..."}]
    trainers: list[TrainerEndpoint] = Field(default_factory=list)

    # Data preparation. Local dataset paths (None: allowed only on the local network) read the validator's own disk.
    allow_local_datasets: bool | None = None
    min_dataset_rows: int = Field(default=100, ge=2)
    test_fraction: float = Field(default=0.1, gt=0, lt=1)
    max_test_rows: int = Field(default=400, ge=1)

    # Worker timing (None: chosen by network in `_network_defaults`)
    poll_interval_seconds: float | None = Field(default=None, gt=0)
    lease_seconds: float | None = Field(default=None, gt=0)
    max_stage_attempts: int = Field(default=3, ge=1)
    delay_seconds: float | None = Field(default=None, gt=0)
    max_delays: int = Field(default=6, ge=0)

    # Contestants and training
    max_contestants: int = Field(default=8, ge=1)
    miner_timeout_seconds: float = Field(default=10.0, gt=0)
    trainer_timeout_seconds: float = Field(default=30.0, gt=0)
    training_grace_seconds: float | None = Field(default=None, ge=0)

    # Evaluation
    eval_batch_size: int = Field(default=4, ge=1)
    eval_max_length: int = Field(default=1024, ge=16)
    eval_timeout_seconds: float = Field(default=4 * 3600, gt=0)

    # Weights (the formula: validator/weights.py). Windows as JSON: [{"hours": 24, "weight": 0.3}, ...]; None and
    # an empty task type map mean the formula's defaults (1/3/7 days weighing 0.3/0.3/0.4; the reference's types).
    weights_interval_seconds: float | None = Field(default=None, gt=0)
    weights_version_key: int = Field(default=1, ge=0)
    weights_windows: list[WeightsWindow] | None = Field(default=None, min_length=1)
    weights_task_type_weights: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=dict
    )
    weights_organic_share: float = Field(default=0.15, ge=0, le=1)
    weights_tournament_share: float = Field(default=0.525, ge=0, le=1)
    # The subnet's max weight limit as a share (lowered further by the chain's own limit when the backend reads it).
    weights_max_weight: float = Field(default=1.0, gt=0, le=1)
    # The uid that takes what miners are not paid; None: no burn, the remainder is shared among the paid miners.
    burn_uid: int | None = Field(default=None, ge=0, le=65535)

    # Accounts and billing (docs/api.md). Free tasks (None: only on the local network) charge nothing, so operator-
    # minted keys work without a deposit; otherwise creating a task charges its price to the account's balance.
    free_tasks: bool | None = None
    session_ttl_seconds: float = Field(default=24 * 3600, gt=0)
    # Encrypts deposit keypairs' secrets at rest: 64 hex characters (32 bytes). None means a random key kept in
    # {data_dir}/deposit_encryption_key (losing it loses the deposit keys: back it up with the database).
    deposit_encryption_key: SecretStr | None = None
    # USD credited per TAO deposited. None: 100 on the local network (a made-up demo rate); elsewhere deposits are
    # not credited until it is set. TODO(#4): a live price source behind `validator.deposits.RateSource`.
    tao_usd_rate: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    deposit_poll_seconds: float | None = Field(default=None, gt=0)
    # Text tasks by the base model's parameter count, as JSON: [{"max_params_b": 1, "usd_per_hour": 10}, ...,
    # {"max_params_b": null, "usd_per_hour": 50}] (the last bucket takes every larger model).
    text_price_buckets: list[PriceBucket] = Field(
        default_factory=lambda: [
            PriceBucket(max_params_b=1, usd_per_hour=10),
            PriceBucket(max_params_b=7, usd_per_hour=15),
            PriceBucket(max_params_b=40, usd_per_hour=25),
            PriceBucket(max_params_b=None, usd_per_hour=50),
        ],
        min_length=1,
    )
    image_usd_per_hour: float = Field(default=5.0, gt=0, allow_inf_nan=False)

    @field_validator("text_price_buckets")
    @classmethod
    def _check_price_buckets(cls, buckets: list[PriceBucket]) -> list[PriceBucket]:
        limits = [bucket.max_params_b for bucket in buckets]
        if limits[-1] is not None or any(limit is None for limit in limits[:-1]):
            raise ValueError('only the last bucket, and it must, have "max_params_b": null (every larger model)')
        if limits[:-1] != sorted(limits[:-1]) or len(set(limits[:-1])) != len(limits) - 1:
            raise ValueError("max_params_b must increase from one bucket to the next")
        return buckets

    @field_validator("weights_windows")
    @classmethod
    def _check_weight_windows(cls, windows: list[WeightsWindow] | None) -> list[WeightsWindow] | None:
        if windows is not None and not any(window.weight > 0 for window in windows):
            raise ValueError("at least one window needs a positive weight")
        return windows

    @field_validator("weights_tournament_share")
    @classmethod
    def _check_weight_shares(cls, value: float, info: ValidationInfo) -> float:
        organic = info.data.get("weights_organic_share")
        if organic is not None and organic + value > 1 + 1e-9:
            raise ValueError(
                f"weights_organic_share + weights_tournament_share must be at most 1, got {organic} + {value}"
            )
        return value

    @model_validator(mode="after")
    def _network_defaults(self) -> ValidatorSettings:
        local = self.network == "local"
        defaults = {
            "poll_interval_seconds": 1.0 if local else 5.0,
            "lease_seconds": 10.0 if local else 120.0,
            "delay_seconds": 5.0 if local else 900.0,
            "training_grace_seconds": 120.0 if local else 1800.0,
            "weights_interval_seconds": 10.0 if local else 1200.0,
            "free_tasks": local,
            "deposit_poll_seconds": 1.0 if local else 12.0,
            "rate_limit_per_minute": 0 if local else 600,
        }
        if self.tao_usd_rate is None and local:
            self.tao_usd_rate = LOCAL_TAO_USD_RATE
        if self.allow_local_datasets is None:
            self.allow_local_datasets = local
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        return self

    @property
    def base_url(self) -> str:
        """Where trainers reach this validator (artifact links)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        # A wildcard bind address is not something another host can connect to.
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def model_store_root(self) -> Path:
        return self.model_store_dir if self.model_store_dir is not None else self.data_dir / "models"

    @property
    def artifact_root(self) -> Path:
        return self.artifact_dir if self.artifact_dir is not None else self.data_dir / "artifacts"

    @property
    def database_url_value(self) -> str | None:
        return self.database_url.get_secret_value() if self.database_url is not None else None


def resolve_artifact_secret(settings: ValidatorSettings) -> str:
    """The configured artifact secret, or the one kept in {data_dir}/artifact_secret (created on first use, 0600).

    Keeping it on disk lets signed URLs handed to trainers survive a validator restart.
    """
    if settings.artifact_secret is not None and settings.artifact_secret.get_secret_value():
        return settings.artifact_secret.get_secret_value()
    return _secret_in_file(settings.data_dir / ARTIFACT_SECRET_FILE, "VALIDATOR_ARTIFACT_SECRET", "artifact signing")


def resolve_deposit_key(settings: ValidatorSettings) -> bytes:
    """The 32-byte key that encrypts deposit keypairs: the setting, or {data_dir}/deposit_encryption_key (0600)."""
    if settings.deposit_encryption_key is not None and settings.deposit_encryption_key.get_secret_value():
        value = settings.deposit_encryption_key.get_secret_value().strip()
        source = "VALIDATOR_DEPOSIT_ENCRYPTION_KEY"
    else:
        path = settings.data_dir / DEPOSIT_KEY_FILE
        value = _secret_in_file(path, "VALIDATOR_DEPOSIT_ENCRYPTION_KEY", "deposit encryption")
        source = str(path)
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError(f"{source} must hold 64 hex characters (a 32-byte key)")
    return key


def _secret_in_file(path: Path, setting: str, what: str) -> str:
    """The secret kept in `path`, created there (random, 0600) on first use."""
    if path.exists():
        secret = path.read_text(encoding="utf-8").strip()
        if secret:
            return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    # O_EXCL: when two processes start together, one creates the file and the other reads it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # The other process may not have written it yet.
        for _ in range(100):
            secret = path.read_text(encoding="utf-8").strip()
            if secret:
                return secret
            time.sleep(0.02)
        raise RuntimeError(f"{path} is empty; delete it or set {setting}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret)
    logger.info("created the %s secret in %s", what, path)
    return secret
