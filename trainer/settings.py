"""Settings of the trainer host, from `TRAINER_*` environment variables (plus the shared node settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from core.settings import NodeSettings


class TrainerSettings(NodeSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINER_", extra="ignore", validate_default=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8001, ge=1, le=65535)
    # The URL announced on chain; None means http://{host}:{port}.
    external_address: str | None = None
    # Training jobs that run at once; more wait in a queue.
    slots: int = Field(default=1, ge=1, le=64)
    # Root of the LocalModelStore shared with the validator; None means {data_dir}/model_store.
    model_store_dir: Path | None = None
    # Outputs are published as {model_namespace}/{expected_repo_name}.
    model_namespace: str = Field(default="localnet", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
    max_dataset_bytes: int = Field(default=1024**3, ge=1)
    git_timeout_seconds: float = Field(default=600.0, gt=0)
    download_timeout_seconds: float = Field(default=600.0, gt=0)
    # How long a training process gets between SIGTERM and SIGKILL.
    kill_grace_seconds: float = Field(default=10.0, ge=0)

    @field_validator("external_address")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @property
    def model_store_root(self) -> Path:
        return self.model_store_dir if self.model_store_dir is not None else self.data_dir / "model_store"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def address(self) -> str:
        return self.external_address or f"http://{self.host}:{self.port}"
