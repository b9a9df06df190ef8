"""Wire format of the miner server: `GET /training_repo/{task_type}` (btauth/1-signed by a validator)."""

from __future__ import annotations

from pydantic import BaseModel, Field

TRAINING_REPO_PATH = "/training_repo/{task_type}"


class TrainingRepoResponse(BaseModel):
    github_repo: str = Field(
        description="git URL of the miner's training repo (https:// or, on a local network, file://)"
    )
    commit_hash: str = Field(pattern=r"^[0-9a-fA-F]{7,64}$")
