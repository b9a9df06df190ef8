"""Schemathesis against the served OpenAPI schema: a real validator on a real port, real PostgreSQL, a funded
account with a task. No answer may be a 5xx, use an undocumented status code or content type, or break its schema.

The long run (1,000+ requests) is `python -m benchmarks.schemathesis_run`; its result is in docs/api.md.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from tests.validator.api_harness import create_task, fund, fuzz, local_validator_app, make_customer, serve_api

MAX_EXAMPLES = 4  # per operation and generation mode: about 150 requests, some 10 s on 2 cores


async def test_served_schema_holds_under_fuzzing(validator_db: str, tmp_path: Path) -> None:
    app = local_validator_app(tmp_path / "node", validator_db)
    async with serve_api(app) as base_url:
        customer = await make_customer(base_url, "fuzzer")
        await fund(app.state.pool, customer.account_id, Decimal("1000"))
        task_id = await create_task(base_url, customer)
        report = await asyncio.to_thread(fuzz, base_url, customer, max_examples=MAX_EXAMPLES, task_ids=[task_id])

    assert not report.failures, "\n\n".join(
        f"{kind} (x{count})\n{report.examples[kind]}" for kind, count in report.failures.items()
    )
    assert not any(status >= 500 for status in report.by_status)
    # The run reached every operation, with answers good and bad (not only refusals).
    assert len(report.by_operation) >= 20, report.summary()
    assert report.by_status[200] > 0 and report.by_status[401] > 0 and report.by_status[422] > 0, report.summary()
