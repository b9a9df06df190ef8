"""Settings shared by every node role, read from the environment (pydantic-settings).

Each role subclasses `NodeSettings` with its own environment prefix::

    class ValidatorSettings(NodeSettings):
        model_config = SettingsConfigDict(env_prefix="VALIDATOR_")

and builds it with `load_settings(ValidatorSettings, port=...)`, which turns a validation error (or a value that cannot
be decoded, like a JSON setting that is not JSON) into one line per bad setting naming the environment variable or
command-line option to fix, then exits with status 2.

`check_registration` is the start check of every role's `run`: the hotkey must be registered on the netuid (a
validator's with a validator permit), or the node stops with one line saying what to do.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import AliasChoices, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

if TYPE_CHECKING:
    from core.chain.base import Chain

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
NAMED_NETWORKS = ("local", "finney", "test")
_WS_URL = re.compile(r"^wss?://[^\s/:]+(:\d{1,5})?(/\S*)?$")
# Values of these settings are never echoed back in error messages. Whole words of the field name only: a hotkey's
# name (wallet_hotkey) is no secret.
_SECRET_FIELD = re.compile(r"(^|_)(url|token|secret|password|key)s?($|_)", re.IGNORECASE)
# pydantic-settings names the field only inside the message of the SettingsError it raises for an unparsable value.
_UNPARSABLE_FIELD = re.compile(r'error (?:parsing|getting) value for field "(?P<field>[^"]+)"')

SettingsT = TypeVar("SettingsT", bound="NodeSettings")

DEFAULT_WALLET_PATH = Path("~/.bittensor/wallets")
# How long `run` waits for the chain to answer its start check. Python's start and the wallet take a few seconds more,
# so a node pointed at an unreachable network says why well within 30 seconds.
START_CHECK_TIMEOUT_S = 20.0
# The help of every role's --network option.
NETWORK_HELP = (
    "finney, test, local (the on-disk chain of `god localnet`) or a ws:// / wss:// endpoint URL; "
    "a subtensor node on this machine is ws://127.0.0.1:9944"
)


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GOD_", extra="ignore", validate_default=True)

    data_dir: Path = Path("data")
    netuid: int = 1
    # "local" is the on-disk chain of the local network; "finney", "test" or a ws(s):// endpoint are real chains.
    network: str = "local"
    # The local chain's JSON file; None means {data_dir}/chain.json.
    chain_path: Path | None = None
    wallet_name: str = "default"
    wallet_hotkey: str = "default"
    wallet_path: Path = DEFAULT_WALLET_PATH
    log_level: str = "INFO"

    @field_validator("netuid")
    @classmethod
    def _check_netuid(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError("must be between 0 and 65535")
        return value

    @field_validator("network")
    @classmethod
    def _check_network(cls, value: str) -> str:
        value = value.strip()
        if value in NAMED_NETWORKS or _WS_URL.match(value):
            return value
        raise ValueError(f"must be one of {', '.join(NAMED_NETWORKS)} or a ws:// / wss:// endpoint URL")

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("wallet_name", "wallet_hotkey")
    @classmethod
    def _check_wallet_part(cls, value: str) -> str:
        if not value or "/" in value or value in (".", ".."):
            raise ValueError("must be a plain name (no '/')")
        return value

    @field_validator("data_dir", "wallet_path", "chain_path")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @property
    def chain_file(self) -> Path:
        """The local chain's JSON file."""
        return self.chain_path if self.chain_path is not None else self.data_dir / "chain.json"

    @property
    def subnet_label(self) -> str:
        """How messages name the subnet: "netuid 56 of finney", "netuid 7 of the local chain"."""
        chain = "the local chain" if self.network == "local" else self.network
        return f"netuid {self.netuid} of {chain}"

    def btcli_wallet_args(self) -> str:
        """The btcli options that name this node's network and wallet."""
        args = f"--network {self.network} --wallet {self.wallet_name} --wallet-hotkey {self.wallet_hotkey}"
        if self.wallet_path != DEFAULT_WALLET_PATH.expanduser():
            args += f" --wallet-path {self.wallet_path}"
        return args


class StartCheckError(Exception):
    """The node must not start; the message is one line saying why and what to do."""


async def check_registration(
    chain: Chain,
    settings: NodeSettings,
    hotkey: str,
    *,
    need_permit: bool = False,
    timeout_s: float = START_CHECK_TIMEOUT_S,
) -> int:
    """The hotkey's uid on the settings' subnet; StartCheckError with a one-line reason and remedy otherwise.

    Fails when the hotkey is not registered, when `need_permit` and it has no validator permit, or when the chain
    cannot be read within `timeout_s` (each chain call retries on its own; this bounds the whole check).
    """
    # Imported here: core.chain loads the bittensor SDK, which processes that only read settings do not need.
    from core.chain.base import ChainError

    where = settings.subnet_label
    local = settings.network == "local"
    remedy = (
        "check the local chain file (`god localnet up` writes it)"
        if local
        else "check this machine's network access, or choose another endpoint with --network"
    )
    try:
        async with asyncio.timeout(timeout_s):
            neurons = await chain.metagraph()
    except TimeoutError:
        raise StartCheckError(
            f"cannot check that hotkey {hotkey} is registered on {where}: the chain did not answer within "
            f"{timeout_s:g}s; {remedy}"
        ) from None
    except ChainError as error:
        reason = " ".join(str(error).split())
        raise StartCheckError(
            f"cannot check that hotkey {hotkey} is registered on {where}: {reason}; {remedy}"
        ) from None
    neuron = next((neuron for neuron in neurons if neuron.hotkey == hotkey), None)
    if neuron is None:
        register = (
            "`god localnet up` registers the local network's nodes"
            if local
            else f"register it with `btcli subnets register --netuid {settings.netuid} {settings.btcli_wallet_args()}`"
        )
        raise StartCheckError(f"hotkey {hotkey} is not registered on {where}; {register}")
    if need_permit and not neuron.validator_permit:
        earn = (
            "on the local network only the validators `god localnet up` registers have one"
            if local
            else "a permit needs stake in the top 64 of the subnet (its max_allowed_validators): add stake with "
            f"`btcli stake add --netuid {settings.netuid} --hotkey {hotkey} --network {settings.network}` and wait "
            "for the next epoch"
        )
        raise StartCheckError(f"hotkey {hotkey} (uid {neuron.uid}) has no validator permit on {where}; {earn}")
    return neuron.uid


def _alias_names(alias: object) -> list[str]:
    """The alias(es) as environment variable names, without repeats (env names are case-insensitive)."""
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasChoices):
        names = [choice for choice in alias.choices if isinstance(choice, str)]
        return [name for index, name in enumerate(names) if name.upper() not in {n.upper() for n in names[:index]}]
    return []


def env_var_name(cls: type[BaseSettings], field_name: str) -> str:
    """The environment variable(s) of a setting; aliases (validation_alias) are used without the prefix."""
    if field_name not in cls.model_fields:
        # pydantic reports an aliased field under its first alias; name every alternative.
        for field in cls.model_fields.values():
            names = _alias_names(field.validation_alias)
            if field_name in names:
                return " or ".join(name.upper() for name in names)
        return field_name.upper()
    field = cls.model_fields[field_name]
    names = _alias_names(field.validation_alias)
    if names:
        return " or ".join(name.upper() for name in names)
    prefix = cls.model_config.get("env_prefix") or ""
    return f"{prefix}{field_name}".upper()


def option_name(field_name: str) -> str:
    """The command-line option of a setting passed to `load_settings` as an override (typer's default spelling)."""
    return "--" + field_name.replace("_", "-")


def settings_error_lines(
    cls: type[BaseSettings], error: ValidationError, *, options: Collection[str] = ()
) -> list[str]:
    """One line per bad setting: where it came from, the problem and (unless secret) the rejected value.

    A setting in `options` came from the command line and is named by its option (--port), any other by its
    environment variable (VALIDATOR_PORT).
    """
    lines = []
    for item in error.errors():
        field_name = str(item["loc"][0]) if item["loc"] else "?"
        where = option_name(field_name) if field_name in options else env_var_name(cls, field_name)
        nested = len(item["loc"]) > 1
        if nested:
            # Inside a JSON value (a list or an object): say which part.
            where += " at " + "".join(f"[{part!r}]" for part in item["loc"][1:])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            # A missing key inside a JSON value is fixed in that value, not by setting another variable.
            line = f"{where}: field required" if nested else f"{where}: is required; set this environment variable"
        else:
            line = f"{where}: {message}"
            value = item.get("input")
            if not _SECRET_FIELD.search(field_name) and isinstance(value, str | int | float):
                line += f" (got {str(value)[:80]!r})"
        lines.append(line)
    return lines


def unparsable_setting_line(cls: type[BaseSettings], error: SettingsError) -> str:
    """The line for a value pydantic-settings could not even decode (e.g. a JSON setting that is not JSON)."""
    match = _UNPARSABLE_FIELD.search(str(error))
    where = env_var_name(cls, match["field"]) if match else "(unknown variable)"
    cause = error.__cause__
    if isinstance(cause, json.JSONDecodeError):
        # The value itself is not echoed: a JSON setting can be long, or hold a secret.
        return f"{where}: is not valid JSON ({cause.msg} at line {cause.lineno} column {cause.colno})"
    if match and _SECRET_FIELD.search(match["field"]):
        return f"{where}: cannot be read"
    return f"{where}: cannot be read ({cause or error})"


def load_settings(cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build `cls` from the environment plus `overrides`; on invalid settings print why and exit with status 2.

    The overrides are the command-line options: an invalid one is reported by its option name (--port). Overrides
    that are None are dropped, so unset command-line options fall back to the environment.
    """
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return cls(**given)
    except ValidationError as error:
        lines = settings_error_lines(cls, error, options=given.keys())
    except SettingsError as error:
        lines = [unparsable_setting_line(cls, error)]
    for line in lines:
        sys.stderr.write(f"invalid setting {line}\n")
    sys.exit(2)
