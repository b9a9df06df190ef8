"""Reading the contract Dockerfile into a host command line, and running a process group under a time limit."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from tests.trainer.helpers import TEXT_DOCKERFILE, live_processes_in_group
from trainer.host.runner import (
    ContractError,
    TrainingCommand,
    last_error_line,
    run_process,
    tail_lines,
    training_command,
)
from trainer.reference_repo import REFERENCE_REPO_DIR


def write_repo(repo_dir: Path, dockerfile: str, files: tuple[str, ...] = ("scripts/train.py",)) -> Path:
    (repo_dir / "dockerfiles").mkdir(parents=True)
    (repo_dir / TEXT_DOCKERFILE).write_text(dockerfile)
    for relative in files:
        (repo_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (repo_dir / relative).write_text("")
    return repo_dir


def test_reference_dockerfile_maps_to_the_checkout_and_this_interpreter(tmp_path):
    command = training_command(REFERENCE_REPO_DIR, TEXT_DOCKERFILE, scratch_dir=tmp_path)
    assert command.argv == [sys.executable, str(REFERENCE_REPO_DIR / "scripts" / "text_trainer.py")]
    assert command.cwd == REFERENCE_REPO_DIR


def test_relative_copy_workdir_and_continuations_are_followed(tmp_path):
    repo = write_repo(
        tmp_path / "repo",
        """# syntax=docker/dockerfile:1
FROM python:3.11 AS build
COPY . /elsewhere
FROM python:3.11
WORKDIR /app
COPY --chown=1000:1000 src/ ./code/
COPY ["run.sh", "/usr/local/bin/"]
WORKDIR code
RUN pip install \\
    torch
ENTRYPOINT ["python", "-u", \\
    "/app/code/train.py", "--flag"]
CMD ["--ignored"]
""",
        files=("src/train.py", "run.sh"),
    )
    command = training_command(repo, TEXT_DOCKERFILE, scratch_dir=tmp_path / "scratch")
    assert command.argv == [sys.executable, "-u", str((repo / "src" / "train.py").resolve()), "--flag"]
    assert command.cwd == (repo / "src").resolve()


def test_an_unmapped_workdir_becomes_the_scratch_folder(tmp_path):
    repo = write_repo(
        tmp_path / "repo", 'FROM x\nCOPY . /workspace\nWORKDIR /data\nENTRYPOINT ["/workspace/scripts/train.py"]\n'
    )
    (tmp_path / "scratch").mkdir()
    command = training_command(repo, TEXT_DOCKERFILE, scratch_dir=tmp_path / "scratch")
    assert command.argv == [str((repo / "scripts" / "train.py").resolve())]
    assert command.cwd == tmp_path / "scratch"


@pytest.mark.parametrize(
    ("dockerfile", "message"),
    [
        (None, "the repo has no dockerfiles/standalone-text-trainer.dockerfile"),
        ("FROM x\nCOPY . /w\n", "has no ENTRYPOINT"),
        ("FROM x\nCOPY . /w\nENTRYPOINT python3 /w/train.py\n", "exec form"),
        ('FROM x\nENTRYPOINT ["python3", "$SCRIPT"]\n', "must not use variables"),
        ('FROM x\nCOPY ../secrets /w\nENTRYPOINT ["python3"]\n', "outside the repository"),
        ('FROM x\nCOPY . /w\nENTRYPOINT ["python3", "/w/../../etc/passwd"]\n', None),
    ],
)
def test_dockerfiles_outside_the_contract_are_refused(tmp_path, dockerfile, message):
    repo = tmp_path / "repo"
    repo.mkdir()
    if dockerfile is not None:
        (repo / "dockerfiles").mkdir()
        (repo / TEXT_DOCKERFILE).write_text(dockerfile)
    if message is None:
        # A path that leaves the copied folder is not mapped, so it never points into the host's files via the repo.
        command = training_command(repo, TEXT_DOCKERFILE, scratch_dir=tmp_path)
        assert command.argv[1] == "/w/../../etc/passwd"
        return
    with pytest.raises(ContractError, match=message):
        training_command(repo, TEXT_DOCKERFILE, scratch_dir=tmp_path)


async def test_run_process_kills_the_whole_group_after_the_time_limit(tmp_path):
    script = tmp_path / "sleeper.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "subprocess.Popen(['sleep', '60'])\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    result = await run_process(
        TrainingCommand(argv=[sys.executable, str(script)], cwd=tmp_path),
        [],
        env={"PATH": "/usr/bin:/bin"},
        log_file=tmp_path / "log",
        time_limit_seconds=1.5,
        kill_grace_seconds=1.0,
    )
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - started < 10
    await asyncio.sleep(0.2)
    assert live_processes_in_group(result.pid) == []
    assert tail_lines(tmp_path / "log") == ["started"]


async def test_run_process_reports_the_exit_code_and_passes_arguments(tmp_path):
    recorded: list[int] = []

    async def on_start(pid: int) -> None:
        recorded.append(pid)

    result = await run_process(
        TrainingCommand(argv=[sys.executable, "-c", "import sys; print(sys.argv[1:]); sys.exit(3)"], cwd=tmp_path),
        ["--task-id", "t 1"],
        env={},
        log_file=tmp_path / "log",
        time_limit_seconds=30,
        kill_grace_seconds=1,
        on_start=on_start,
    )
    assert (result.exit_code, result.timed_out) == (3, False)
    assert recorded == [result.pid]
    assert tail_lines(tmp_path / "log") == ["['--task-id', 't 1']"]


def test_tail_and_error_line(tmp_path):
    log = tmp_path / "log"
    log.write_text("".join(f"line {index}\n" for index in range(200)) + "step 1\rstep 2\n")
    assert tail_lines(log, 3) == ["line 199", "step 1", "step 2"]
    assert tail_lines(tmp_path / "missing") == []

    traceback = ["Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: bad learning rate", "bye"]
    assert last_error_line(traceback) == "ValueError: bad learning rate"
    assert last_error_line(["all good", "done"]) == "done"
    assert last_error_line([]) is None
