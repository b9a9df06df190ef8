"""Settings of the miner server, from `MINER_*` environment variables (plus the shared node settings).

The training repos are one JSON object per task type, e.g.::

    MINER_TRAINING_REPOS='{"InstructTextTask": {"github_repo": "https://github.com/me/gt", "commit_hash": "1a2b3c4"}}'

Keys are task types (InstructTextTask, ChatTask, DpoTask, GrpoTask, ImageTask) or the tournament kinds "text" and
"image"; a "text" request falls back to InstructTextTask's repo and "image" to ImageTask's.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from core.miner_api import TrainingRepoResponse
from core.settings import NodeSettings
from core.tasks import TaskType

TOURNAMENT_KINDS = {"text": TaskType.INSTRUCT_TEXT, "image": TaskType.IMAGE}
REPO_KEYS = tuple(task_type.value for task_type in TaskType) + tuple(TOURNAMENT_KINDS)


class MinerSettings(NodeSettings):
    model_config = SettingsConfigDict(env_prefix="MINER_", extra="ignore", validate_default=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8091, ge=1, le=65535)
    # The URL announced on chain; None means http://{host}:{port}.
    external_address: str | None = None
    training_repos: dict[str, TrainingRepoResponse] = Field(default_factory=dict)

    @field_validator("training_repos")
    @classmethod
    def _check_repo_keys(cls, value: dict[str, TrainingRepoResponse]) -> dict[str, TrainingRepoResponse]:
        unknown = sorted(set(value) - set(REPO_KEYS))
        if unknown:
            raise ValueError(f"unknown task type(s) {', '.join(unknown)}; use {', '.join(REPO_KEYS)}")
        for key, repo in value.items():
            if not repo.github_repo.startswith(("https://", "file://")):
                raise ValueError(f"{key}: github_repo must be an https:// or file:// URL")
        return value

    @field_validator("external_address")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @property
    def address(self) -> str:
        return self.external_address or f"http://{self.host}:{self.port}"

    def repo_for(self, task_type: str) -> TrainingRepoResponse | None:
        """The repo announced for a task type or tournament kind; None when none is configured.

        Raises ValueError for a name that is neither.
        """
        if task_type in TOURNAMENT_KINDS:
            return self.training_repos.get(task_type) or self.training_repos.get(TOURNAMENT_KINDS[task_type].value)
        if task_type not in REPO_KEYS:
            raise ValueError(f"unknown task type {task_type!r}; expected one of {', '.join(REPO_KEYS)}")
        return self.training_repos.get(task_type)
