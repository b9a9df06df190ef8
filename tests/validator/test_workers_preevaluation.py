"""Preevaluation: only outputs under the assigned name, with safetensors weights, go on to evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.tasks import TaskStatus
from core.trainer_api import TrainingJobRequest
from tests.validator.conftest import Network, contestants_of, events, ready_task, run_until
from tests.validator.fakes import FAIL, write_dummy_output
from validator.workers import WorkerContext, preevaluation, training
from validator.workers.preevaluation import check_output_files


def make_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"adapter_config.json": b"{}", "adapter_model.safetensors": b"x"}, None),
        ({"config.json": b"{}", "model-00001-of-00002.safetensors": b"x", "model.safetensors.index.json": b"{}"}, None),
        ({"config.json": b"{}", "pytorch_model.bin": b"x"}, "only pickle weights"),
        ({"adapter_config.json": b"{}", "adapter_model.bin": b"x"}, "only pickle weights"),
        ({"README.md": b"hi"}, "no *.safetensors weights"),
        ({"model.safetensors": b"x"}, "neither adapter_config.json nor config.json"),
    ],
)
def test_output_files_need_safetensors_and_a_config(
    tmp_path: Path, files: dict[str, bytes], problem: str | None
) -> None:
    result = check_output_files(make_folder(tmp_path, files))

    if problem is None:
        assert result is None
    else:
        assert problem in result


async def test_invalid_outputs_are_scored_out_and_the_rest_evaluated(
    ctx: WorkerContext, network: Network, dataset_file
) -> None:
    good, pickled, renamed = (miner.hotkey for miner in network.miners)

    def write_output(job: TrainingJobRequest, folder: Path) -> None:
        if job.hotkey == pickled:
            make_folder(folder, {"config.json": b"{}", "pytorch_model.bin": b"pickle"})
        else:
            write_dummy_output(job, folder)

    network.trainer.write_output = write_output
    task_id = await ready_task(ctx, dataset_file)
    await run_until(ctx, training.STAGE, task_id, {TaskStatus.PREEVALUATION})
    async with ctx.pool.acquire() as conn:
        # A trainer that publishes under a name other than the one assigned to the contestant.
        await conn.execute(
            "UPDATE contestants SET output_repository = 'trainer/chosen-by-miner' WHERE hotkey = $1", renamed
        )

    task = await run_until(ctx, preevaluation.STAGE, task_id, {TaskStatus.EVALUATING, TaskStatus.FAILURE})

    assert task.status is TaskStatus.EVALUATING
    contestants = await contestants_of(ctx.pool, task_id)
    assert contestants[good].is_valid is True and contestants[good].invalid_reason is None
    assert contestants[pickled].is_valid is False and "pickle" in contestants[pickled].invalid_reason
    assert contestants[renamed].is_valid is False
    assert "is not named" in contestants[renamed].invalid_reason
    assert contestants[pickled].score == 0
    assert (await events(ctx.pool, task_id))[-1] == ("evaluating", "1 of 3 submissions passed the checks")


async def test_no_valid_output_fails_the_task_with_every_reason(
    ctx: WorkerContext, network: Network, dataset_file
) -> None:
    network.trainer.outcomes[network.miners[0].hotkey] = FAIL
    network.trainer.write_output = lambda job, folder: make_folder(folder, {"weights.pt": b"pickle"})
    task_id = await ready_task(ctx, dataset_file)
    await run_until(ctx, training.STAGE, task_id, {TaskStatus.PREEVALUATION})

    task = await run_until(ctx, preevaluation.STAGE, task_id, {TaskStatus.EVALUATING, TaskStatus.FAILURE})

    assert task.status is TaskStatus.FAILURE
    assert task.error.startswith("no valid submission: ")
    assert "CUDA out of memory" in task.error
    assert task.error.count("only pickle weights") == 2


async def test_identical_outputs_are_credited_to_the_contestant_that_finished_first(
    ctx: WorkerContext, network: Network, dataset_file
) -> None:
    # Every fake trainer writes the same dummy weights; the last miner finished first.
    first, second, earliest = (miner.hotkey for miner in network.miners)
    task_id = await ready_task(ctx, dataset_file)
    await run_until(ctx, training.STAGE, task_id, {TaskStatus.PREEVALUATION})
    async with ctx.pool.acquire() as conn:
        for hotkey, minutes in ((first, 5), (second, 9), (earliest, 1)):
            await conn.execute(
                "UPDATE contestants SET finished_at = now() - make_interval(mins => $2) WHERE hotkey = $1",
                hotkey,
                60 - minutes,
            )

    task = await run_until(ctx, preevaluation.STAGE, task_id, {TaskStatus.EVALUATING, TaskStatus.FAILURE})

    assert task.status is TaskStatus.EVALUATING
    contestants = await contestants_of(ctx.pool, task_id)
    assert contestants[earliest].is_valid is True
    for hotkey in (first, second):
        assert contestants[hotkey].is_valid is False
        assert contestants[hotkey].invalid_reason == f"copy of {earliest}'s submission"
