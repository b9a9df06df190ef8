"""A long schemathesis run against a real validator (embedded PostgreSQL, uvicorn on a free port).

    python -m benchmarks.schemathesis_run                    # 30 examples per operation and mode: 1,000+ requests
    python -m benchmarks.schemathesis_run --max-examples 60 --seed 7

Needs the `dev` extra (schemathesis). Prints the request count by status and operation, then every kind of failure
(a 5xx, an undocumented status code or content type, a body that breaks the schema) with one example; exits 1 when
there is any. The short version runs in `make test` (tests/validator/test_schemathesis.py).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from tests.validator.api_harness import (
    create_task,
    embedded_database,
    fund,
    fuzz,
    local_validator_app,
    make_customer,
    serve_api,
)


async def run(max_examples: int, seed: int | None) -> int:
    with tempfile.TemporaryDirectory(prefix="god-fuzz-") as scratch:
        root = Path(scratch)
        async with embedded_database(root) as database_url:
            app = local_validator_app(root / "node", database_url, rate_limit_per_minute=0)
            async with serve_api(app) as base_url:
                customer = await make_customer(base_url, "fuzzer")
                await fund(app.state.pool, customer.account_id, Decimal("1000"))
                task_ids = [await create_task(base_url, customer) for _ in range(3)]
                started = time.monotonic()
                report = await asyncio.to_thread(
                    fuzz, base_url, customer, max_examples=max_examples, seed=seed, task_ids=task_ids
                )
                elapsed = time.monotonic() - started
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()} {platform.processor() or ''}".strip())
    print(f"{report.summary()} in {elapsed:.0f} s")
    for operation, count in sorted(report.by_operation.items()):
        print(f"  {count:5d}  {operation}")
    for kind, count in report.failures.items():
        print(f"\nFAILURE x{count}: {kind}\n{report.examples[kind]}")
    return 1 if report.failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=30, help="per operation and generation mode")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.max_examples, args.seed)))


if __name__ == "__main__":
    main()
