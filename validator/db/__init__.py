"""The validator's database: migrations and small query modules (literal SQL, `conn` first, callers own transactions).

- `accounts`: accounts and API keys (only sha256 digests are stored).
- `tasks`: tasks, their leases and their log (`task_events`).
- `contestants`: one row per (task, miner hotkey) training run.
- `weights`: recent scores and the weight sets sent to the chain.
"""

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

__all__ = ["MIGRATIONS_DIR"]
