"""The `god` command: one sub-command group per role, plus `localnet` for a whole subnet on one machine."""

from __future__ import annotations

import typer

from god.audit import audit
from god.localnet.cli import app as localnet_app
from miner.cli import app as miner_app
from trainer.cli import app as trainer_app
from validator.cli import app as validator_app

app = typer.Typer(
    name="god",
    help="Validator, miner and trainer host of a Bittensor fine-tuning subnet.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(validator_app, name="validator", help="Run the validator: public API, task workers, weights.")
app.add_typer(miner_app, name="miner", help="Run a miner: announce training repos to validators.")
app.add_typer(trainer_app, name="trainer", help="Run a trainer host: train miners' repos in sandboxes.")
app.add_typer(localnet_app, name="localnet", help="Run a whole subnet on this machine.")
app.command("audit", help="Recompute a validator's weights from its public auditing pages and compare.")(audit)
