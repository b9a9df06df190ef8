"""In-test miners and trainer hosts (small FastAPI apps that verify btauth/1 signatures), served in-process.

`HostRouter` is an httpx transport that hands each request to the app registered for its host name, so the
validator's real `SignedClient` talks HTTP to them without sockets. Unknown hosts fail like an unreachable server.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import bittensor as bt
import httpx
from fastapi import FastAPI, HTTPException, Request

from core.miner_api import TrainingRepoResponse
from core.model_store import LocalModelStore
from core.signed_http import verify_request
from core.trainer_api import JobStatus, TrainerCapacity, TrainingJobRequest, TrainingJobStatus

WORDS = [f"w{index}" for index in range(60)]


class HostRouter(httpx.AsyncBaseTransport):
    """Routes requests by host name to in-process ASGI apps."""

    def __init__(self, apps: dict[str, FastAPI] | None = None) -> None:
        self._transports: dict[str, httpx.ASGITransport] = {}
        for host, app in (apps or {}).items():
            self.add(host, app)

    def add(self, host: str, app: FastAPI) -> None:
        self._transports[host] = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._transports.get(request.url.host)
        if transport is None:
            raise httpx.ConnectError(f"no route to {request.url.host}", request=request)
        return await transport.handle_async_request(request)


class FakeMiner:
    """`GET /training_repo/{task_type}` for one hotkey; records each verified caller."""

    def __init__(self, hotkey: str, *, repo_url: str = "https://github.com/example/trainer.git", status: int = 200):
        self.hotkey = hotkey
        self.repo_url = repo_url
        self.commit_hash = "0123456789abcdef0123456789abcdef01234567"
        self.status = status
        self.calls: list[tuple[str, str]] = []  # (task type, caller hotkey)
        nonce_store = bt.http_auth.InMemoryNonceStore()
        self.app = FastAPI()

        @self.app.get("/training_repo/{task_type}")
        async def training_repo(task_type: str, request: Request) -> TrainingRepoResponse:
            caller = await verify_request(request, self_hotkey=self.hotkey, nonce_store=nonce_store)
            self.calls.append((task_type, caller))
            if self.status != 200:
                raise HTTPException(status_code=self.status, detail="no repo")
            return TrainingRepoResponse(github_repo=self.repo_url, commit_hash=self.commit_hash)


# What a job does when polled: publish an output, fail, or keep running.
SUCCEED, FAIL, HANG = "succeed", "fail", "hang"
OutputWriter = Callable[[TrainingJobRequest, Path], None]


def write_dummy_output(request: TrainingJobRequest, folder: Path) -> None:
    """A model folder that passes the file checks (not loadable: for tests that stop before evaluation)."""
    (folder / "config.json").write_text('{"model_type": "qwen2"}')
    (folder / "model.safetensors").write_bytes(b"\0" * 16)


class FakeTrainer:
    """A trainer host: idempotent `POST /v1/jobs`, job status, cancel and capacity, for one hotkey.

    `outcomes[miner hotkey]` decides what a job becomes on its first poll (SUCCEED by default). A successful job
    publishes `write_output`'s folder to the model store as `trainer/{expected_repo_name}`.
    """

    def __init__(
        self,
        hotkey: str,
        *,
        model_store: LocalModelStore,
        slots: int = 8,
        write_output: OutputWriter = write_dummy_output,
    ) -> None:
        self.hotkey = hotkey
        self.model_store = model_store
        self.slots = slots
        self.write_output = write_output
        self.outcomes: dict[str, str] = {}
        self.jobs: dict[UUID, TrainingJobStatus] = {}
        self.requests: dict[UUID, TrainingJobRequest] = {}
        self.posts: list[UUID] = []
        self.created: list[UUID] = []
        self.deleted: list[UUID] = []
        self.refuse_with: int | None = None
        # Runs inside POST before the job is created (e.g. to look at the validator's database at that moment).
        self.on_post: Callable[[TrainingJobRequest], Awaitable[None]] | None = None
        nonce_store = bt.http_auth.InMemoryNonceStore()
        self.app = FastAPI()

        async def verified(request: Request) -> str:
            return await verify_request(request, self_hotkey=self.hotkey, nonce_store=nonce_store)

        @self.app.post("/v1/jobs")
        async def post_job(request: Request) -> TrainingJobStatus:
            await verified(request)
            job = TrainingJobRequest.model_validate_json(await request.body())
            self.posts.append(job.job_id)
            if self.on_post is not None:
                await self.on_post(job)
            if self.refuse_with is not None:
                raise HTTPException(status_code=self.refuse_with, detail="refused by the test")
            if job.job_id not in self.jobs:
                self.created.append(job.job_id)
                self.requests[job.job_id] = job
                self.jobs[job.job_id] = TrainingJobStatus(
                    job_id=job.job_id,
                    task_id=job.task_id,
                    hotkey=job.hotkey,
                    status=JobStatus.RUNNING,
                    created_at=datetime.now(UTC),
                )
            return self.jobs[job.job_id]

        @self.app.get("/v1/jobs/{job_id}")
        async def get_job(job_id: UUID, request: Request) -> TrainingJobStatus:
            await verified(request)
            if job_id not in self.jobs:
                raise HTTPException(status_code=404, detail="no such job")
            status = self.jobs[job_id]
            if status.status is JobStatus.RUNNING:
                status = await self._resolve(self.requests[job_id], status)
                self.jobs[job_id] = status
            return status

        @self.app.delete("/v1/jobs/{job_id}")
        async def delete_job(job_id: UUID, request: Request) -> TrainingJobStatus:
            await verified(request)
            if job_id not in self.jobs:
                raise HTTPException(status_code=404, detail="no such job")
            self.deleted.append(job_id)
            status = self.jobs[job_id].model_copy(update={"status": JobStatus.CANCELLED})
            self.jobs[job_id] = status
            return status

        @self.app.get("/v1/capacity")
        async def capacity(request: Request) -> TrainerCapacity:
            await verified(request)
            running = sum(1 for job in self.jobs.values() if not job.status.is_terminal)
            return TrainerCapacity(slots_total=self.slots, slots_free=max(self.slots - running, 0))

    async def _resolve(self, job: TrainingJobRequest, status: TrainingJobStatus) -> TrainingJobStatus:
        outcome = self.outcomes.get(job.hotkey, SUCCEED)
        if outcome == HANG:
            return status
        if outcome == FAIL:
            return status.model_copy(update={"status": JobStatus.FAILURE, "error": "CUDA out of memory"})
        repo_id = f"trainer/{job.expected_repo_name}"
        await asyncio.to_thread(self._publish, job, repo_id)
        return status.model_copy(update={"status": JobStatus.SUCCESS, "output_repository": repo_id})

    def _publish(self, job: TrainingJobRequest, repo_id: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            self.write_output(job, Path(folder))
            self.model_store.upload(Path(folder), repo_id)


def word_rows(count: int, *, seed: int = 0) -> list[dict[str, str]]:
    """Customer rows with columns `question` / `answer` in the tiny model's vocabulary."""
    rng = random.Random(seed)

    def words(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    return [{"question": words(2, 8), "answer": words(2, 8)} for _ in range(count)]


def build_tiny_model(folder: Path) -> Path:
    """A random 2-layer Qwen2 model with a byte-level BPE tokenizer trained on `word_rows` (offline, seconds).

    Byte-level BPE because AutoTokenizer rebuilds a qwen2 model's tokenizer as Qwen2Tokenizer from its vocab and
    merges; a word-level tokenizer would come back encoding nothing.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    bpe_trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([" ".join(row.values()) for row in word_rows(200, seed=1)], trainer=bpe_trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|pad|>")
    config = Qwen2Config(
        vocab_size=backend.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def perturbed_model_writer(base_dir: Path, scales: dict[str, float]) -> OutputWriter:
    """An output writer that publishes the base model plus noise of `scales[miner hotkey]` (a loadable fine-tune)."""

    def write(job: TrainingJobRequest, folder: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(base_dir)
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for parameter in model.parameters():
                noise = torch.randn(parameter.shape, generator=generator)
                parameter.add_(scales.get(job.hotkey, 0.01) * noise)
        model.save_pretrained(folder)
        AutoTokenizer.from_pretrained(base_dir).save_pretrained(folder)

    return write
