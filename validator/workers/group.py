"""The worker loops of one validator process: one asyncio task per lifecycle stage."""

from __future__ import annotations

import asyncio
import logging

from validator.workers import evaluation, nodes, preevaluation, prepare, training
from validator.workers.context import WorkerContext
from validator.workers.runner import Stage, new_lease_owner, run_stage_once

logger = logging.getLogger(__name__)

STAGES: tuple[Stage, ...] = (prepare.STAGE, nodes.STAGE, training.STAGE, preevaluation.STAGE, evaluation.STAGE)


class WorkerGroup:
    """Runs every stage's loop until `stop()`. Any number of groups, in any processes, may share one database."""

    def __init__(self, ctx: WorkerContext, stages: tuple[Stage, ...] = STAGES) -> None:
        self.ctx = ctx
        self.stages = stages
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if self._tasks:
            raise RuntimeError("the worker group is already running")
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self._loop(stage), name=f"validator-worker-{stage.name}") for stage in self.stages
        ]
        logger.info("started %d task workers", len(self._tasks))

    async def stop(self) -> None:
        """Stop every loop; a task being worked on is handed back so another worker can continue it."""
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        logger.info("stopped the task workers")

    async def _loop(self, stage: Stage) -> None:
        lease_owner = new_lease_owner(stage.name)
        while not self._stop.is_set():
            try:
                worked = await run_stage_once(self.ctx, stage, lease_owner=lease_owner)
            except Exception:
                # The database may be down; the loop keeps trying.
                logger.exception("%s worker failed to claim a task", stage.name)
                worked = False
            if not worked:
                try:
                    await asyncio.wait_for(self._stop.wait(), self.ctx.settings.poll_interval_seconds)
                except TimeoutError:
                    pass
