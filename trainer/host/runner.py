"""The child-process sandbox: turn a repo's contract Dockerfile into a command line and run it under a time limit.

The Dockerfile is not built. Its `COPY <src> <dest>` lines tell where the repo's files would sit in the image,
`WORKDIR` gives the working directory and the exec-form `ENTRYPOINT` the program; container paths are mapped back
into the checkout and `python`/`python3` to the host's interpreter. The process runs in its own session (process
group) so that a timeout or a cancel can kill everything it started.

TODO(#6): run the image in a Docker sandbox (no network, read-only inputs, GPU and memory limits) on GPU hosts;
the child process shares the host's network and file system.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import posixpath
import re
import shlex
import signal
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")
_ERROR_LINE = re.compile(r"(\w*(Error|Exception)\b|\bERROR\b|\bFATAL\b|\bKilled\b|\bfailed\b)")
_TAIL_BYTES = 64 * 1024


class ContractError(Exception):
    """The repo does not follow the training contract; the message says what is missing or unsupported."""


@dataclass(frozen=True)
class TrainingCommand:
    argv: list[str]
    cwd: Path


@dataclass(frozen=True)
class RunResult:
    exit_code: int | None  # None when the run was killed for exceeding its time limit
    timed_out: bool
    pid: int


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with comments dropped and backslash continuations joined."""
    instructions = []
    pending = ""
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    if pending.strip():
        keyword, _, arguments = pending.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def _copy_operands(arguments: str) -> list[str] | None:
    """The sources and destination of a COPY/ADD, or None for a copy from another stage or image."""
    if arguments.startswith("["):
        try:
            operands = json.loads(arguments)
        except json.JSONDecodeError as error:
            raise ContractError(f"COPY {arguments!r} is not a valid JSON array: {error}") from None
    else:
        operands = shlex.split(arguments)
    flags = [operand for operand in operands if operand.startswith("--")]
    if any(flag.startswith("--from") for flag in flags):
        return None
    paths = [operand for operand in operands if not operand.startswith("--")]
    if len(paths) < 2:
        raise ContractError(f"COPY {arguments!r} needs a source and a destination")
    return paths


class ContainerPaths:
    """Maps container paths written by COPY instructions back to files of the checkout."""

    def __init__(self, repo_dir: Path) -> None:
        self.repo_dir = repo_dir.resolve()
        self._mounts: list[tuple[str, Path]] = []  # (container path, host path), longest first when mapping

    def add_copy(self, sources: list[str], dest: str, workdir: str) -> None:
        container_dest = posixpath.normpath(posixpath.join(workdir, dest))
        into_dir = dest.endswith("/") or len(sources) > 1
        for source in sources:
            host_source = (self.repo_dir / source).resolve()
            if not host_source.is_relative_to(self.repo_dir):
                raise ContractError(f"COPY source {source!r} lies outside the repository")
            if host_source.is_dir():
                self._mounts.append((container_dest, host_source))
            elif into_dir:
                self._mounts.append((posixpath.join(container_dest, host_source.name), host_source))
            else:
                self._mounts.append((container_dest, host_source))
        self._mounts.sort(key=lambda mount: len(mount[0]), reverse=True)

    def map(self, container_path: str) -> Path | None:
        """The host path of an absolute container path, or None when no COPY put anything there."""
        path = posixpath.normpath(container_path)
        for mount, host in self._mounts:
            if path == mount or path.startswith(mount.rstrip("/") + "/"):
                mapped = (host / posixpath.relpath(path, mount)).resolve()
                if not mapped.is_relative_to(self.repo_dir):
                    raise ContractError(f"container path {container_path!r} leads outside the repository")
                return mapped
        return None


def training_command(repo_dir: Path, dockerfile: str, *, scratch_dir: Path) -> TrainingCommand:
    """Read the repo's contract Dockerfile and return the entrypoint as a host command line (without arguments).

    An unmapped WORKDIR (the image's own folder) becomes `scratch_dir`. Raises ContractError when the Dockerfile is
    missing or its entrypoint cannot run as a child process.
    """
    path = (repo_dir / dockerfile).resolve()
    if not path.is_relative_to(repo_dir.resolve()) or not path.is_file():
        raise ContractError(f"the repo has no {dockerfile} (required by the training contract)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ContractError(f"cannot read {dockerfile}: {error}") from None

    paths = ContainerPaths(repo_dir)
    workdir = "/"
    entrypoint: list[str] | None = None
    for keyword, arguments in _instructions(text):
        if keyword == "FROM":
            # Only the last stage becomes the image that runs.
            paths, workdir, entrypoint = ContainerPaths(repo_dir), "/", None
        elif keyword in ("COPY", "ADD"):
            operands = _copy_operands(arguments)
            if operands is not None:
                paths.add_copy(operands[:-1], operands[-1], workdir)
        elif keyword == "WORKDIR":
            workdir = posixpath.normpath(posixpath.join(workdir, arguments.strip("\"'")))
        elif keyword == "ENTRYPOINT":
            entrypoint = _exec_form(arguments, dockerfile)
    if entrypoint is None:
        raise ContractError(f"{dockerfile} has no ENTRYPOINT")

    argv = [_map_argument(argument, paths) for argument in entrypoint]
    if _PYTHON.match(posixpath.basename(argv[0])):
        argv[0] = sys.executable
    cwd = paths.map(workdir) or scratch_dir
    if not cwd.is_dir():
        cwd = scratch_dir
    return TrainingCommand(argv=argv, cwd=cwd)


def _exec_form(arguments: str, dockerfile: str) -> list[str]:
    try:
        entrypoint = json.loads(arguments)
    except json.JSONDecodeError:
        entrypoint = None
    if not isinstance(entrypoint, list) or not entrypoint or not all(isinstance(part, str) for part in entrypoint):
        raise ContractError(
            f"{dockerfile}: ENTRYPOINT must use the exec form, e.g. "
            '["python3", "/workspace/scripts/text_trainer.py"]; the shell form is not supported'
        )
    if any("$" in part for part in entrypoint):
        raise ContractError(f"{dockerfile}: ENTRYPOINT must not use variables (got {arguments})")
    return entrypoint


def _map_argument(argument: str, paths: ContainerPaths) -> str:
    if not argument.startswith("/"):
        return argument
    mapped = paths.map(argument)
    return str(mapped) if mapped is not None else argument


async def _kill_group(process: asyncio.subprocess.Process, *, grace_seconds: float) -> None:
    """SIGTERM the process group, then SIGKILL it after `grace_seconds` if the leader is still alive."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace_seconds)
    except TimeoutError:
        pass
    # Also catches children that ignored SIGTERM or outlived the leader.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


async def run_process(
    command: TrainingCommand,
    args: list[str],
    *,
    env: dict[str, str],
    log_file: Path,
    time_limit_seconds: float,
    kill_grace_seconds: float,
    on_start: Callable[[int], Awaitable[None]] | None = None,
) -> RunResult:
    """Run the command with `args`, stdout and stderr appended to `log_file`, killed after the time limit.

    `on_start(pid)`, when given, is called once the process exists (to record it for a later restart). A cancel
    of the calling task kills the process group before the CancelledError propagates.
    """
    log = await asyncio.to_thread(open, log_file, "ab")
    try:
        process = await asyncio.create_subprocess_exec(
            *command.argv,
            *args,
            cwd=command.cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()
    logger.debug("started pid %d: %s", process.pid, shlex.join(command.argv))
    if on_start is not None:
        await on_start(process.pid)
    try:
        await asyncio.wait_for(process.wait(), time_limit_seconds)
    except TimeoutError:
        await _kill_group(process, grace_seconds=kill_grace_seconds)
        return RunResult(exit_code=None, timed_out=True, pid=process.pid)
    except asyncio.CancelledError:
        await _kill_group(process, grace_seconds=kill_grace_seconds)
        raise
    # Children left behind by a finished run would keep its slot's resources busy.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return RunResult(exit_code=process.returncode, timed_out=False, pid=process.pid)


def tail_lines(log_file: Path, count: int = 50) -> list[str]:
    """The last `count` lines of the log (blocking: call it in a thread)."""
    try:
        with open(log_file, "rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - _TAIL_BYTES))
            data = log.read()
    except FileNotFoundError:
        return []
    lines = data.decode(errors="replace").replace("\r", "\n").splitlines()
    if size > _TAIL_BYTES and lines:
        lines = lines[1:]  # the first line is probably cut
    return list(deque((line for line in lines if line.strip()), maxlen=count))


def last_error_line(lines: list[str]) -> str | None:
    """The last line that looks like an error (an exception, ERROR, FATAL), else the last line."""
    for line in reversed(lines):
        if _ERROR_LINE.search(line):
            return line.strip()[:500]
    return lines[-1].strip()[:500] if lines else None
