"""Training jobs of the trainer host: intake, the slot-bounded queue, the per-job pipeline and its record on disk.

Each job lives in `{jobs_dir}/{job_id}/`:

    job.json      request, status, owner and the training process id (replaced atomically on every change)
    training.log  the training run's stdout and stderr
    repo/         the training repo at the requested commit                       } removed when the job ends;
    cache/        models/{org--name} (a link to the model store's copy), datasets/ } the output has been
    checkpoints/  where the run writes {task_id}/{expected_repo_name}               } published by then

The records are read back at start, so a restarted host still answers for old jobs; a job that was active when the
host went away is marked failed (and its leftover processes are killed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from core.contract import (
    CACHE_DIR_ENV,
    CHECKPOINTS_DIR_ENV,
    TEXT_DOCKERFILE,
    ContractPaths,
    training_command_args,
)
from core.logging import log_context
from core.stores import ModelStore, StoreError
from core.tasks import TaskType
from core.trainer_api import JobStatus, TrainerCapacity, TrainingJobRequest, TrainingJobStatus
from trainer.host.git import GitError, check_repo_url, checkout_commit
from trainer.host.runner import ContractError, last_error_line, run_process, tail_lines, training_command

logger = logging.getLogger(__name__)

RECORD_FILE = "job.json"
LOG_FILE = "training.log"
LOG_TAIL_LINES = 50
RESTARTED = "trainer host restarted"
STOPPED = "trainer host stopped before the job finished"
_MODEL_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
_DOWNLOAD_CHUNK = 1024 * 1024
# Inherited by the training process; everything else (tokens, keys, database URLs) stays with the host.
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES")


class JobRejected(ValueError):
    """A request that can never run (e.g. a forbidden URL); the message names the field."""


class JobConflict(Exception):
    """The job id belongs to another validator."""


class JobFailed(Exception):
    """The job ends in failure; the message is the reason reported to the validator."""


@dataclass
class _Job:
    request: TrainingJobRequest
    status: TrainingJobStatus
    validator_hotkey: str
    pid: int | None = None
    task: asyncio.Task[None] | None = None
    cancel_requested: bool = False


def _now() -> datetime:
    return datetime.now(UTC)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            json.dump(data, tmp, indent=1)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _has_files(path: Path) -> bool:
    return path.is_dir() and any(item.is_file() for item in path.rglob("*"))


def _check_rows(path: Path) -> int:
    try:
        rows = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise JobFailed(f"the training data is not valid JSON: {error}") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise JobFailed("the training data must be a JSON list of row objects")
    return len(rows)


def _kill_stale_process(pid: int, job_dir: Path) -> None:
    """Kill the process group of a run left over from before a restart, if `pid` still is that run."""
    marker = f"{CHECKPOINTS_DIR_ENV}={job_dir / 'checkpoints'}".encode()
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return
    if marker in environ.split(b"\0"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
            logger.info("killed the leftover training process group %d of %s", pid, job_dir.name)


class JobManager:
    """Accepts jobs, runs at most `slots` of them at once and keeps every job's record in `jobs_dir`."""

    def __init__(
        self,
        *,
        jobs_dir: Path,
        model_store: ModelStore,
        model_namespace: str,
        slots: int = 1,
        max_dataset_bytes: int = 1024**3,
        git_timeout_seconds: float = 600.0,
        download_timeout_seconds: float = 600.0,
        kill_grace_seconds: float = 10.0,
    ) -> None:
        self.jobs_dir = jobs_dir
        self.model_store = model_store
        self.model_namespace = model_namespace
        self.slots = slots
        self.max_dataset_bytes = max_dataset_bytes
        self.git_timeout_seconds = git_timeout_seconds
        self.download_timeout_seconds = download_timeout_seconds
        self.kill_grace_seconds = kill_grace_seconds
        # How many job pipelines this manager has launched (a repeated POST of one job id must not add one).
        self.pipelines_started = 0
        self._jobs: dict[UUID, _Job] = {}
        self._slot_semaphore = asyncio.Semaphore(slots)

    # -- lifecycle --

    async def load(self) -> None:
        """Read the job records of earlier runs; active ones end as failures with reason "trainer host restarted"."""
        records = await asyncio.to_thread(self._read_records)
        for job_dir, job in records:
            self._jobs[job.request.job_id] = job
            if not job.status.status.is_terminal:
                if job.pid is not None:
                    await asyncio.to_thread(_kill_stale_process, job.pid, job_dir)
                job.status = job.status.model_copy(
                    update={"status": JobStatus.FAILURE, "error": RESTARTED, "finished_at": _now()}
                )
                await self._persist(job)
                await asyncio.to_thread(self._remove_work_dirs, job_dir)
                logger.info("job %s was active when the host stopped; marked failed", job.request.job_id)
        logger.debug("loaded %d job records from %s", len(records), self.jobs_dir)

    def _read_records(self) -> list[tuple[Path, _Job]]:
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        records = []
        for record_file in sorted(self.jobs_dir.glob(f"*/{RECORD_FILE}")):
            try:
                data = json.loads(record_file.read_text(encoding="utf-8"))
                job = _Job(
                    request=TrainingJobRequest.model_validate(data["request"]),
                    status=TrainingJobStatus.model_validate(data["status"]),
                    validator_hotkey=data["validator_hotkey"],
                    pid=data.get("pid"),
                )
            except (OSError, ValueError, KeyError, TypeError) as error:
                logger.warning("skipping unreadable job record %s: %s", record_file, error)
                continue
            records.append((record_file.parent, job))
        return records

    async def close(self) -> None:
        """Stop every active job (killing its processes); they end as failures."""
        tasks = [job.task for job in self._jobs.values() if job.task is not None and not job.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the API's operations --

    async def submit(self, request: TrainingJobRequest, *, validator_hotkey: str) -> TrainingJobStatus:
        """Accept a job, or return the existing one with the same `job_id` without starting it again."""
        existing = self._jobs.get(request.job_id)
        if existing is not None:
            if existing.validator_hotkey != validator_hotkey:
                raise JobConflict(f"job {request.job_id} belongs to another validator")
            logger.debug("job %s posted again; returning its status", request.job_id)
            return await self.status(request.job_id, validator_hotkey=validator_hotkey)
        self._check_request(request)

        job = _Job(
            request=request,
            status=TrainingJobStatus(
                job_id=request.job_id,
                task_id=request.task_id,
                hotkey=request.hotkey,
                status=JobStatus.QUEUED,
                created_at=_now(),
            ),
            validator_hotkey=validator_hotkey,
        )
        self._jobs[request.job_id] = job  # before any await, so a concurrent repeat finds it
        await asyncio.to_thread((self.jobs_dir / str(request.job_id)).mkdir, parents=True, exist_ok=True)
        await self._persist(job)
        job.task = asyncio.create_task(self._run(job), name=f"training-job-{request.job_id}")
        self.pipelines_started += 1
        with log_context(task_id=str(request.task_id), hotkey=request.hotkey):
            logger.info("job %s queued (%s@%s)", request.job_id, request.repo_url, request.commit_hash)
        return job.status

    @staticmethod
    def _check_request(request: TrainingJobRequest) -> None:
        try:
            check_repo_url(request.repo_url)
        except ValueError as error:
            raise JobRejected(f"repo_url: {error}") from None
        if not request.dataset_url.startswith(("https://", "http://")):
            raise JobRejected("dataset_url: must be an http:// or https:// URL")
        if not _MODEL_REPO.match(request.model_repo) or ".." in request.model_repo:
            raise JobRejected(f"model_repo: {request.model_repo[:200]!r} is not a repo id like org/name")

    async def status(self, job_id: UUID, *, validator_hotkey: str) -> TrainingJobStatus | None:
        """The job's status with the tail of its log; None for an unknown job or one of another validator."""
        job = self._jobs.get(job_id)
        if job is None or job.validator_hotkey != validator_hotkey:
            return None
        lines = await asyncio.to_thread(tail_lines, self.jobs_dir / str(job_id) / LOG_FILE, LOG_TAIL_LINES)
        return job.status.model_copy(update={"log_tail": lines})

    async def cancel(self, job_id: UUID, *, validator_hotkey: str) -> TrainingJobStatus | None:
        """Cancel an active job (its process group is killed); a finished job is returned unchanged."""
        job = self._jobs.get(job_id)
        if job is None or job.validator_hotkey != validator_hotkey:
            return None
        if job.task is not None and not job.task.done():
            job.cancel_requested = True
            job.task.cancel()
            await asyncio.gather(job.task, return_exceptions=True)
        return await self.status(job_id, validator_hotkey=validator_hotkey)

    def capacity(self) -> TrainerCapacity:
        active = sum(1 for job in self._jobs.values() if not job.status.status.is_terminal)
        # TODO(#6): report GPUs through nvidia-ml-py once jobs are placed on GPUs.
        return TrainerCapacity(slots_total=self.slots, slots_free=max(0, self.slots - active), gpus=[])

    # -- the pipeline --

    async def _run(self, job: _Job) -> None:
        request = job.request
        with log_context(task_id=str(request.task_id), hotkey=request.hotkey):
            error: str | None = None
            output_repository: str | None = None
            try:
                async with self._slot_semaphore:
                    output_repository = await self._pipeline(job)
                status = JobStatus.SUCCESS
            except JobFailed as failure:
                status, error = JobStatus.FAILURE, str(failure)
            except asyncio.CancelledError:
                if job.cancel_requested:
                    status, error = JobStatus.CANCELLED, "cancelled by the validator"
                else:
                    status, error = JobStatus.FAILURE, STOPPED
            except Exception:
                logger.exception("job %s failed inside the trainer host", request.job_id)
                status, error = JobStatus.FAILURE, "internal error of the trainer host (see its log)"
            # Clean up before the final status, so whoever sees it also sees the job's disk space freed.
            await asyncio.to_thread(self._remove_work_dirs, self.jobs_dir / str(request.job_id))
            await self._finish(job, status, error=error, output_repository=output_repository)

    async def _pipeline(self, job: _Job) -> str:
        """Prepare, train and publish; returns the output's repo id or raises JobFailed with the reason."""
        request = job.request
        job_dir = self.jobs_dir / str(request.job_id)
        paths = ContractPaths(checkpoints=job_dir / "checkpoints", cache=job_dir / "cache")
        await self._update(job, status=JobStatus.PREPARING, started_at=_now())
        if request.task_type == TaskType.IMAGE:
            # TODO(#3): image tasks (the image contract and Dockerfile); remove when the host runs them.
            raise JobFailed("image tasks are not supported by this trainer host yet")

        # The repo, its entrypoint, the base model and the data.
        try:
            head = await checkout_commit(
                request.repo_url, request.commit_hash, job_dir / "repo", step_timeout=self.git_timeout_seconds
            )
        except GitError as error:
            raise JobFailed(f"cannot check out {request.repo_url} at {request.commit_hash}: {error}") from None
        try:
            command = await asyncio.to_thread(
                training_command, job_dir / "repo", TEXT_DOCKERFILE, scratch_dir=job_dir / "workdir"
            )
        except ContractError as error:
            raise JobFailed(str(error)) from None
        await self._link_base_model(request.model_repo, paths.model_dir(request.model_repo))
        row_count = await self._download_dataset(request.dataset_url, paths.dataset_file(str(request.task_id)))
        logger.info("job %s prepared: commit %s, %d training rows", request.job_id, head[:12], row_count)

        # The training run.
        await asyncio.to_thread(self._make_run_dirs, job_dir, paths)
        args = training_command_args(
            task_id=str(request.task_id),
            model=request.model_repo,
            dataset=request.dataset_url,
            dataset_type_json=json.dumps(request.dataset_type),
            task_type=request.task_type.value,
            file_format=request.file_format,
            expected_repo_name=request.expected_repo_name,
            hours_to_complete=request.hours_to_complete,
        )
        await self._update(job, status=JobStatus.RUNNING)
        result = await run_process(
            command,
            args,
            env=self._child_env(job_dir, paths),
            log_file=job_dir / LOG_FILE,
            time_limit_seconds=request.time_limit_seconds,
            kill_grace_seconds=self.kill_grace_seconds,
            on_start=lambda pid: self._update(job, pid=pid),
        )
        if result.timed_out:
            raise JobFailed(f"exceeded time limit of {request.time_limit_seconds:g} s")
        if result.exit_code != 0:
            lines = await asyncio.to_thread(tail_lines, job_dir / LOG_FILE, LOG_TAIL_LINES)
            how = (
                f"was killed by signal {-result.exit_code}"
                if result.exit_code is not None and result.exit_code < 0
                else f"exited with code {result.exit_code}"
            )
            detail = last_error_line(lines)
            raise JobFailed(f"training {how}" + (f": {detail}" if detail else ""))

        # Publishing the output.
        output_dir = paths.output_dir(str(request.task_id), request.expected_repo_name)
        if not await asyncio.to_thread(_has_files, output_dir):
            relative = output_dir.relative_to(job_dir)
            raise JobFailed(f"training finished but wrote no files to {relative} (the contract's output folder)")
        await self._update(job, status=JobStatus.PUBLISHING)
        repo_id = f"{self.model_namespace}/{request.expected_repo_name}"
        try:
            content_hash = await asyncio.to_thread(self.model_store.upload, output_dir, repo_id)
        except StoreError as error:
            raise JobFailed(f"publishing the output as {repo_id} failed: {error}") from None
        logger.info("job %s published %s (sha256 %s)", request.job_id, repo_id, content_hash[:12])
        return repo_id

    async def _link_base_model(self, model_repo: str, model_dir: Path) -> None:
        try:
            exists = await asyncio.to_thread(self.model_store.exists, model_repo)
            if not exists:
                raise JobFailed(f"base model {model_repo} is not in the model store")
            source = await asyncio.to_thread(self.model_store.local_path, model_repo)
        except StoreError as error:
            raise JobFailed(f"cannot fetch base model {model_repo}: {error}") from None

        # TODO(#6): mount the store's copy read-only in the Docker sandbox; a link is all a child process allows.
        def link() -> None:
            model_dir.parent.mkdir(parents=True, exist_ok=True)
            model_dir.symlink_to(Path(source).resolve(), target_is_directory=True)

        await asyncio.to_thread(link)

    async def _download_dataset(self, url: str, dest: Path) -> int:
        """Stream the training data to `dest` (at most max_dataset_bytes); returns the number of rows."""
        await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
        # Never echo the URL: its query holds the signature that grants access.
        where = httpx.URL(url).copy_with(query=None, fragment=None)
        received = 0
        output = await asyncio.to_thread(open, dest, "wb")
        try:
            async with (
                httpx.AsyncClient(timeout=self.download_timeout_seconds) as client,
                client.stream("GET", url) as response,
            ):
                if response.status_code != 200:
                    raise JobFailed(f"downloading the training data from {where} failed: HTTP {response.status_code}")
                declared = int(response.headers.get("content-length") or 0)
                if declared > self.max_dataset_bytes:
                    raise JobFailed(f"the training data is {declared} bytes, over the {self.max_dataset_bytes} limit")
                async for chunk in response.aiter_bytes(_DOWNLOAD_CHUNK):
                    received += len(chunk)
                    if received > self.max_dataset_bytes:
                        raise JobFailed(f"the training data is over the {self.max_dataset_bytes} byte limit")
                    await asyncio.to_thread(output.write, chunk)
        except httpx.HTTPError as error:
            raise JobFailed(f"downloading the training data from {where} failed: {type(error).__name__}") from None
        finally:
            await asyncio.to_thread(output.close)
        return await asyncio.to_thread(_check_rows, dest)

    @staticmethod
    def _make_run_dirs(job_dir: Path, paths: ContractPaths) -> None:
        for folder in (paths.checkpoints, job_dir / "home", job_dir / "tmp", job_dir / "workdir"):
            folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _child_env(job_dir: Path, paths: ContractPaths) -> dict[str, str]:
        env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
        # The host's interpreter directory first, so tools installed beside it (accelerate, ...) resolve.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
        env.update(
            {
                CHECKPOINTS_DIR_ENV: str(paths.checkpoints),
                CACHE_DIR_ENV: str(paths.cache),
                "HOME": str(job_dir / "home"),
                "TMPDIR": str(job_dir / "tmp"),
                "HF_HOME": str(paths.cache / "huggingface"),
                "HF_HUB_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                "TOKENIZERS_PARALLELISM": "false",
            }
        )
        return env

    @staticmethod
    def _remove_work_dirs(job_dir: Path) -> None:
        for name in ("repo", "cache", "checkpoints", "home", "tmp", "workdir"):
            shutil.rmtree(job_dir / name, ignore_errors=True)

    # -- the record --

    async def _update(self, job: _Job, *, pid: int | None = None, **changes: Any) -> None:
        if pid is not None:
            job.pid = pid
        if changes:
            job.status = job.status.model_copy(update=changes)
            if "status" in changes:
                logger.info("job %s is %s", job.request.job_id, job.status.status.value)
        await self._persist(job)

    async def _finish(
        self, job: _Job, status: JobStatus, *, error: str | None = None, output_repository: str | None = None
    ) -> None:
        lines = await asyncio.to_thread(tail_lines, self.jobs_dir / str(job.request.job_id) / LOG_FILE, LOG_TAIL_LINES)
        job.status = job.status.model_copy(
            update={
                "status": status,
                "error": error,
                "output_repository": output_repository,
                "finished_at": _now(),
                "log_tail": lines,
            }
        )
        if error:
            logger.info("job %s ended %s: %s", job.request.job_id, status.value, error)
        else:
            logger.info("job %s ended %s", job.request.job_id, status.value)
        await self._persist(job)

    async def _persist(self, job: _Job) -> None:
        record = {
            "request": job.request.model_dump(mode="json"),
            "status": job.status.model_dump(mode="json"),
            "validator_hotkey": job.validator_hotkey,
            "pid": job.pid,
        }
        await asyncio.to_thread(_write_json_atomic, self.jobs_dir / str(job.request.job_id) / RECORD_FILE, record)
