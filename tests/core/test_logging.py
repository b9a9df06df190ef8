import asyncio
import io
import logging

import pytest

from core.logging import log_context, setup_logging


@pytest.fixture
def captured():
    root = logging.getLogger()
    level = root.level
    setup_logging("INFO", role="validator")
    handler = next(h for h in root.handlers if type(h).__name__ == "_GodHandler")
    stream = io.StringIO()
    handler.setStream(stream)
    yield stream
    for h in list(root.handlers):
        if type(h).__name__ == "_GodHandler":
            root.removeHandler(h)
    root.setLevel(level)


def test_format_carries_role_and_context(captured):
    log = logging.getLogger("validator.api")
    with log_context(task_id="t-1"):
        with log_context(hotkey="5Abc"):
            log.info("accepted")
        log.info("outer")
    log.info("bare")
    lines = captured.getvalue().splitlines()
    assert lines[0].endswith("validator.api: accepted [task_id=t-1 hotkey=5Abc]")
    assert " INFO    validator " in lines[0]
    assert lines[1].endswith("outer [task_id=t-1]")
    assert lines[2].endswith("bare")


async def test_context_does_not_leak_between_tasks(captured):
    log = logging.getLogger("worker")

    async def job(task_id):
        with log_context(task_id=task_id):
            await asyncio.sleep(0.01)
            log.info("done")

    await asyncio.gather(job("a"), job("b"))
    lines = sorted(captured.getvalue().splitlines())
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["[task_id=a]", "[task_id=b]"]


def test_levels_and_noisy_libraries(captured):
    logging.getLogger("httpx").info("GET /x")
    logging.getLogger("core.x").debug("hidden")
    assert captured.getvalue() == ""
    setup_logging("DEBUG", role="miner")  # replaces the handler rather than adding one
    root = logging.getLogger()
    assert sum(type(h).__name__ == "_GodHandler" for h in root.handlers) == 1
    assert logging.getLogger("httpx").level == logging.WARNING
    with pytest.raises(ValueError, match="LOUD"):
        setup_logging("LOUD", role="miner")
