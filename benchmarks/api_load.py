"""Load on `GET /v1/tasks/{task_id}` against a bare `SELECT 1` endpoint of the same stack.

    python -m benchmarks.api_load                          # 64 connections, 10 s each, wrk when installed
    python -m benchmarks.api_load --seconds 20 --tool httpx

The validator runs in a subprocess (one uvicorn process, no workers, rate limit off) on embedded PostgreSQL; the
bare endpoint is added to that same app (same factory, middleware, pool and connection dependency) and only runs
`SELECT 1`, without credentials. The load comes from `wrk` (`apt-get install -y wrk`), or, without it, from 64
httpx tasks in this process (which then share the CPU with the server: expect lower absolute figures). Prints
requests/s, p50 and p99 of both and the ratio of their throughputs (the issue asks for at least 0.7).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx

from core.db import create_pool
from tests.validator.api_harness import (
    bearer,
    create_task,
    embedded_database,
    fund,
    local_validator_app,
    make_customer,
    serve_api,
)
from validator.api.deps import DbConn

BARE_PATH = "/bench/select-one"


@dataclass
class Figures:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int

    def line(self, name: str) -> str:
        return (
            f"{name:<24} {self.requests_per_second:9.0f} req/s   p50 {self.p50_ms:7.2f} ms   "
            f"p99 {self.p99_ms:7.2f} ms   errors {self.errors}"
        )


async def serve(root: Path) -> None:
    """The child: the validator app plus the bare endpoint, served until SIGTERM; prints its base URL."""
    app = local_validator_app(root, os.environ["DATABASE_URL"], rate_limit_per_minute=0)

    async def select_one(conn: DbConn) -> dict[str, int]:
        return {"one": await conn.fetchval("SELECT 1")}

    app.add_api_route(BARE_PATH, select_one, methods=["GET"], include_in_schema=False)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with serve_api(app) as base_url:
        print(base_url, flush=True)
        await stop.wait()


_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_ms(text: str, label: str) -> float:
    match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no {label} latency:\n{text}")
    return float(match.group(1)) * _WRK_UNITS[match.group(2)]


async def load_wrk(url: str, headers: dict[str, str], connections: int, seconds: float) -> Figures:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:.0f}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    process = await asyncio.create_subprocess_exec(*command, url, stdout=asyncio.subprocess.PIPE)
    out = (await process.communicate())[0].decode()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if rate is None:
        raise RuntimeError(f"wrk failed:\n{out}")
    return Figures(
        float(rate.group(1)), _wrk_ms(out, "50%"), _wrk_ms(out, "99%"), int(errors.group(1)) if errors else 0
    )


async def load_httpx(url: str, headers: dict[str, str], connections: int, seconds: float) -> Figures:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.get(url)
                latencies.append((time.perf_counter() - started) * 1000)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return Figures(len(latencies) / elapsed, cuts[49], cuts[98], errors)


async def run(tool: str, connections: int, seconds: float) -> None:
    load = load_wrk if tool == "wrk" else load_httpx
    with tempfile.TemporaryDirectory(prefix="god-load-") as scratch:
        root = Path(scratch)
        async with embedded_database(root) as database_url:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks.api_load",
                "--serve",
                str(root / "node"),
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "DATABASE_URL": database_url},
            )
            try:
                assert child.stdout is not None
                base_url = (await asyncio.wait_for(child.stdout.readline(), 60)).decode().strip()
                if not base_url:
                    raise RuntimeError("the validator subprocess exited before serving")
                customer = await make_customer(base_url, "loader")
                pool = await create_pool(database_url, min_size=1, max_size=1)
                try:
                    await fund(pool, customer.account_id, Decimal("100"))
                finally:
                    await pool.close()
                task_id = await create_task(base_url, customer)
                task_url = f"{base_url}/v1/tasks/{task_id}"
                auth = bearer(customer.api_key)
                async with httpx.AsyncClient() as client:
                    (await client.get(task_url, headers=auth)).raise_for_status()
                await load(task_url, auth, connections, 2)  # warm-up: connections, caches, the pool's connections
                await load(f"{base_url}{BARE_PATH}", {}, connections, 2)
                async with httpx.AsyncClient() as client:
                    (await client.get(f"{base_url}{BARE_PATH}")).raise_for_status()
                task = await load(task_url, auth, connections, seconds)
                bare = await load(f"{base_url}{BARE_PATH}", {}, connections, seconds)
            finally:
                child.terminate()
                await child.wait()
    print(f"{connections} connections, {seconds:.0f} s each, load from {tool}; server: one uvicorn process")
    print(task.line("GET /v1/tasks/{task_id}"))
    print(bare.line(f"GET {BARE_PATH}"))
    print(f"ratio (task / bare requests per second): {task.requests_per_second / bare.requests_per_second:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--tool", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the subprocess: serve from this folder
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return
    tool = args.tool
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "httpx"
    elif tool == "wrk" and shutil.which("wrk") is None:
        parser.error("wrk is not installed: apt-get install -y wrk (or use --tool httpx)")
    asyncio.run(run(tool, args.connections, args.seconds))


if __name__ == "__main__":
    main()
