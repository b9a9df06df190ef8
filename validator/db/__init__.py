"""The validator's database: migrations and small query modules (literal SQL, `conn` first, callers own transactions).

- `accounts`: accounts, API keys, fingerprints and sessions (only sha256 digests are stored), deposit addresses.
- `ledger`: deposits, charges and refunds; an account's balance is their sum.
- `tasks`: tasks, their leases and their log (`task_events`).
- `contestants`: one row per (task, miner hotkey) training run.
- `weights`: recent scores and the weight sets sent to the chain, with their inputs.
- `nodes`: the metagraph as last read, keyed by hotkey.
- `auditing`: the public view of finished tasks (no account, dataset or customer fields).
"""

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

__all__ = ["MIGRATIONS_DIR"]
