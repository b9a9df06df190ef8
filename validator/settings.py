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

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from core.settings import NodeSettings

logger = logging.getLogger(__name__)

ARTIFACT_SECRET_FILE = "artifact_secret"


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


class ValidatorSettings(NodeSettings):
    model_config = SettingsConfigDict(env_prefix="VALIDATOR_", extra="ignore", validate_default=True)

    # Public API
    host: str = "127.0.0.1"
    port: int = Field(default=9001, ge=1, le=65535)
    # Base URL that trainers use to fetch artifacts; None means http://{host}:{port}.
    public_url: str | None = None
    # Larger request bodies are refused with 413 before they are read (task requests are a few hundred bytes).
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)

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

    # Weights
    weights_interval_seconds: float | None = Field(default=None, gt=0)
    weights_window_hours: float = Field(default=72.0, gt=0)
    weights_version_key: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _network_defaults(self) -> ValidatorSettings:
        local = self.network == "local"
        defaults = {
            "poll_interval_seconds": 1.0 if local else 5.0,
            "lease_seconds": 10.0 if local else 120.0,
            "delay_seconds": 5.0 if local else 900.0,
            "training_grace_seconds": 120.0 if local else 1800.0,
            "weights_interval_seconds": 10.0 if local else 1200.0,
        }
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
    path = settings.data_dir / ARTIFACT_SECRET_FILE
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
        raise RuntimeError(f"{path} is empty; delete it or set VALIDATOR_ARTIFACT_SECRET") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret)
    logger.info("created the artifact signing secret in %s", path)
    return secret
