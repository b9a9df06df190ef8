"""Checking out a training repo at exactly the requested commit.

Only https:// and file:// URLs are accepted (no ssh, no `ext::` transports, no option-looking URLs), git runs
without prompts, credential helpers or hooks, and the checked-out HEAD is verified against the requested commit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
from pathlib import Path

logger = logging.getLogger(__name__)

ALLOWED_URL_PREFIXES = ("https://", "file://")
_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")
_FULL_COMMIT_LENGTHS = (40, 64)
_OUTPUT_LIMIT = 2000


class GitError(Exception):
    """The repo could not be checked out at the commit; the message says why (safe to show to the validator)."""


def check_repo_url(url: str) -> str:
    """Return the URL if the trainer host may clone it, else raise ValueError saying what is allowed."""
    if url.startswith("-") or not url.startswith(ALLOWED_URL_PREFIXES):
        raise ValueError(f"repo URL {url[:200]!r} is not allowed: use an https:// or file:// URL")
    if any(character.isspace() or ord(character) < 32 for character in url):
        raise ValueError("repo URL must not contain whitespace or control characters")
    return url


def _git_env(home: Path) -> dict[str, str]:
    # A clean environment: no inherited credentials, no prompts, no user or system config.
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ASKPASS": "true",
        "SSH_ASKPASS": "true",
    }


async def _kill(process: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    await process.wait()


async def _git(args: list[str], *, cwd: Path, env: dict[str, str], step_timeout: float) -> str:
    safe_config = [f"core.hooksPath={os.devnull}", "credential.helper=", "advice.detachedHead=false"]
    command = ["git"] + [part for setting in safe_config for part in ("-c", setting)]
    process = await asyncio.create_subprocess_exec(
        *command,
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), step_timeout)
    except TimeoutError:
        await _kill(process)
        raise GitError(f"git {args[0]} took longer than {step_timeout:g} s") from None
    except asyncio.CancelledError:
        await _kill(process)
        raise
    text = output.decode(errors="replace").strip()
    if process.returncode != 0:
        raise GitError(f"git {args[0]} failed: {text[-_OUTPUT_LIMIT:]}")
    return text


async def checkout_commit(url: str, commit: str, dest: Path, *, step_timeout: float = 600.0) -> str:
    """Fetch `url` into the new folder `dest` and check out `commit`; returns the full hash of HEAD.

    `step_timeout` bounds each git command. A full hash is fetched alone (shallow); a short one, or a server that
    refuses to serve a bare commit, falls back to fetching all branches and tags and resolving the hash there.
    """
    check_repo_url(url)
    commit = commit.lower()
    if not _COMMIT.match(commit):
        raise GitError(f"commit {commit[:80]!r} is not a 7 to 64 digit hex hash")
    await asyncio.to_thread(dest.mkdir, parents=True)
    env = _git_env(dest.parent)

    await _git(["init", "--quiet", "."], cwd=dest, env=env, step_timeout=step_timeout)
    fetched = False
    if len(commit) in _FULL_COMMIT_LENGTHS:
        try:
            shallow = ["fetch", "--quiet", "--depth", "1", "--", url, commit]
            await _git(shallow, cwd=dest, env=env, step_timeout=step_timeout)
            fetched = True
        except GitError as error:
            logger.debug("shallow fetch of %s failed, fetching all refs: %s", commit, error)
    if fetched:
        await _git(["checkout", "--quiet", "--detach", "FETCH_HEAD"], cwd=dest, env=env, step_timeout=step_timeout)
    else:
        refspecs = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
        await _git(["fetch", "--quiet", "--", url, *refspecs], cwd=dest, env=env, step_timeout=step_timeout)
        try:
            resolved = await _git(
                ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{commit}^{{commit}}"],
                cwd=dest,
                env=env,
                step_timeout=step_timeout,
            )
        except GitError:
            raise GitError(f"commit {commit} was not found in {url}") from None
        await _git(["checkout", "--quiet", "--detach", resolved], cwd=dest, env=env, step_timeout=step_timeout)

    head = (await _git(["rev-parse", "HEAD"], cwd=dest, env=env, step_timeout=step_timeout)).lower()
    if not head.startswith(commit):
        raise GitError(f"checked out {head}, not the requested commit {commit}")
    logger.debug("checked out %s at %s into %s", url, head, dest)
    return head
