"""The reference training repo (`trainer/reference/`) as a git repo that a miner can announce.

The local network and the tests copy it into a fresh folder, optionally with other hyperparameters, and commit it;
the trainer host then clones it at that commit like any miner's repo.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REFERENCE_REPO_DIR = Path(__file__).resolve().parent / "reference"
HYPERPARAMETERS_FILE = "training_config.json"
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".git")


def _git(repo_dir: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=god", "-c", "user.email=god@localhost", "-c", "commit.gpgsign=false", *args]
    result = subprocess.run(command, cwd=repo_dir, check=True, capture_output=True, text=True)
    return result.stdout.strip()


def write_reference_repo(
    dest: Path,
    *,
    hyperparameters: dict[str, Any] | None = None,
    extra_files: dict[str, str] | None = None,
    message: str = "reference trainer",
) -> str:
    """Copy the reference repo into `dest` (a new or existing git repo), commit it and return the commit hash.

    `hyperparameters` override keys of `training_config.json` (e.g. {"learning_rate": 1e-4}); `extra_files`
    (relative path → text) add or replace files, which is how tests build broken or hostile repos. Blocking (runs git).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REFERENCE_REPO_DIR, dest, dirs_exist_ok=True, ignore=_IGNORED)
    if hyperparameters:
        config_file = dest / HYPERPARAMETERS_FILE
        config = json.loads(config_file.read_text())
        unknown = sorted(set(hyperparameters) - set(config))
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {', '.join(unknown)}; known: {', '.join(sorted(config))}")
        config.update(hyperparameters)
        config_file.write_text(json.dumps(config, indent=2) + "\n")
    for relative, text in (extra_files or {}).items():
        target = dest / relative
        if not target.resolve().is_relative_to(dest.resolve()):
            raise ValueError(f"extra file {relative!r} lies outside the repo")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    if not (dest / ".git").exists():
        _git(dest, "init", "--quiet", "--initial-branch=main")
    _git(dest, "add", "--all")
    _git(dest, "commit", "--quiet", "--allow-empty", "-m", message)
    commit = _git(dest, "rev-parse", "HEAD")
    logger.info("reference training repo at %s, commit %s", dest, commit[:12])
    return commit
