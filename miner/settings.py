"""Settings of the miner server, from `MINER_*` environment variables (plus the shared node settings).

The training repos are one JSON object per task type, e.g.::

    MINER_TRAINING_REPOS='{"InstructTextTask": {"github_repo": "https://github.com/me/gt", "commit_hash": "1a2b3c4"}}'

Keys are task types (InstructTextTask, ChatTask, DpoTask, GrpoTask, ImageTask) or the tournament kinds "text" and
"image"; a "text" request falls back to InstructTextTask's repo and "image" to ImageTask's.

On the command line the same is given as repeated `--training-repo TASK_TYPE=URL@COMMIT` options
(`parse_training_repos`); an option wins over the environment's entry for the same key (pydantic-settings merges
the two), and the environment's other entries stay.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from core.miner_api import TrainingRepoResponse
from core.settings import NodeSettings
from core.tasks import TaskType

TOURNAMENT_KINDS = {"text": TaskType.INSTRUCT_TEXT, "image": TaskType.IMAGE}
REPO_KEYS = tuple(task_type.value for task_type in TaskType) + tuple(TOURNAMENT_KINDS)
REPO_URL_SCHEMES = ("https://", "file://")
TRAINING_REPO_OPTION = "--training-repo"
# The commit_hash pattern of TrainingRepoResponse.
_COMMIT = re.compile(r"^[0-9a-fA-F]{7,64}$")


def parse_training_repos(values: Iterable[str]) -> dict[str, TrainingRepoResponse]:
    """The repos of `--training-repo TASK_TYPE=URL@COMMIT` values, by task type.

    Raises ValueError with a one-line reason that quotes the bad value.
    """
    repos: dict[str, TrainingRepoResponse] = {}
    for value in values:
        task_type, equals, target = value.partition("=")
        # The commit follows the last "@": a URL may hold an "@" itself (https://user@host/...), a commit never does.
        url, at, commit = target.rpartition("@")
        task_type, url, commit = task_type.strip(), url.strip(), commit.strip()
        if not equals or not at or not task_type or not url:
            raise ValueError(f"expected TASK_TYPE=URL@COMMIT (got {value!r})")
        if task_type not in REPO_KEYS:
            raise ValueError(f"unknown task type {task_type!r}; use one of {', '.join(REPO_KEYS)} (got {value!r})")
        if task_type in repos:
            raise ValueError(f"{task_type} is given more than once (got {value!r})")
        if not url.startswith(REPO_URL_SCHEMES) or not url.partition("://")[2]:
            raise ValueError(f"the repo URL must be an https:// or file:// URL (got {value!r})")
        if not _COMMIT.match(commit):
            raise ValueError(f"the commit must be 7 to 64 hex digits (got {value!r})")
        repos[task_type] = TrainingRepoResponse(github_repo=url, commit_hash=commit)
    return repos


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
            if not repo.github_repo.startswith(REPO_URL_SCHEMES):
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
