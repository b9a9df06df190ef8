import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import SettingsConfigDict

from core.chain import LocalChain
from core.settings import NodeSettings, StartCheckError, check_registration, env_var_name, load_settings
from core.wallets import create_wallet


class Endpoint(BaseModel):
    url: str
    port: int


class RoleSettings(NodeSettings):
    model_config = SettingsConfigDict(env_prefix="ROLETEST_")

    database_url: str | None = None
    endpoints: list[Endpoint] = []
    shared_port: int | None = Field(
        default=None, validation_alias=AliasChoices("ROLETEST_SHARED_PORT_X", "SHARED_PORT")
    )


def test_defaults_and_chain_file(monkeypatch):
    for name in ("DATA_DIR", "NETUID", "NETWORK", "CHAIN_PATH", "LOG_LEVEL"):
        monkeypatch.delenv(f"ROLETEST_{name}", raising=False)
    settings = load_settings(RoleSettings)
    assert settings.network == "local"
    assert settings.netuid == 1
    assert settings.chain_file == Path("data") / "chain.json"
    assert settings.wallet_path == Path("~/.bittensor/wallets").expanduser()


def test_environment_with_role_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv("ROLETEST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ROLETEST_NETUID", "56")
    monkeypatch.setenv("ROLETEST_LOG_LEVEL", "debug")
    monkeypatch.setenv("ROLETEST_NETWORK", "wss://entrypoint-finney.opentensor.ai:443")
    settings = load_settings(RoleSettings, chain_path=tmp_path / "c.json", wallet_name=None)
    assert settings.data_dir == tmp_path
    assert settings.netuid == 56
    assert settings.log_level == "DEBUG"
    assert settings.network.startswith("wss://")
    assert settings.chain_file == tmp_path / "c.json"
    # None overrides fall back to the default/environment
    assert settings.wallet_name == "default"


def test_invalid_settings_name_their_variables(monkeypatch, capsys):
    monkeypatch.setenv("ROLETEST_NETUID", "many")
    monkeypatch.setenv("ROLETEST_NETWORK", "mainnet")
    monkeypatch.setenv("ROLETEST_LOG_LEVEL", "LOUD")
    monkeypatch.setenv("ROLETEST_DATABASE_URL", "http://user:hunter2@host/db")
    with pytest.raises(SystemExit) as exit_info:
        load_settings(RoleSettings, database_url=123)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4
    assert any(line.startswith("invalid setting ROLETEST_NETUID:") and "'many'" in line for line in lines)
    assert any(line.startswith("invalid setting ROLETEST_NETWORK:") and "finney" in line for line in lines)
    assert any(line.startswith("invalid setting ROLETEST_LOG_LEVEL:") for line in lines)
    # Given as an override, i.e. on the command line: named by its option, and still not echoed (a secret).
    url_line = next(line for line in lines if line.startswith("invalid setting --database-url:"))
    assert "123" not in url_line


def test_exit_status_in_a_real_process(tmp_path):
    code = (
        "from core.settings import NodeSettings, load_settings\n"
        "from pydantic_settings import SettingsConfigDict\n"
        "class S(NodeSettings):\n"
        "    model_config = SettingsConfigDict(env_prefix='MINER_')\n"
        "load_settings(S)\n"
    )
    env = {"MINER_NETUID": "-4", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=Path(__file__).parents[2]
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "invalid setting MINER_NETUID: must be between 0 and 65535 (got '-4')"


def test_errors_inside_json_values_and_aliases(monkeypatch, capsys):
    monkeypatch.setenv("ROLETEST_ENDPOINTS", '[{"url": "http://a", "port": 1}, {"url": "http://b", "port": "x"}]')
    monkeypatch.setenv("SHARED_PORT", "nope")
    with pytest.raises(SystemExit):
        load_settings(RoleSettings)
    lines = sorted(capsys.readouterr().err.strip().splitlines())
    assert lines[0].startswith("invalid setting ROLETEST_ENDPOINTS at [1]['port']: Input should be a valid integer")
    assert lines[1].startswith("invalid setting ROLETEST_SHARED_PORT_X or SHARED_PORT: Input should be a valid int")


def test_a_command_line_value_is_named_by_its_option(monkeypatch, capsys):
    monkeypatch.setenv("ROLETEST_NETUID", "5")
    with pytest.raises(SystemExit) as exit_info:
        load_settings(RoleSettings, netuid=70000, wallet_name=None)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "invalid setting --netuid: must be between 0 and 65535 (got '70000')\n"


@pytest.mark.parametrize("value", ["not json", '[{"url": "http://a", "port": 1}', "{'single': 'quotes'}"])
def test_a_json_setting_that_is_not_json_is_one_line_and_status_2(monkeypatch, capsys, value):
    monkeypatch.setenv("ROLETEST_ENDPOINTS", value)
    with pytest.raises(SystemExit) as exit_info:
        load_settings(RoleSettings)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("invalid setting ROLETEST_ENDPOINTS: is not valid JSON (")
    assert value not in lines[0]


def test_a_key_missing_inside_a_json_value_is_named(monkeypatch, capsys):
    monkeypatch.setenv("ROLETEST_ENDPOINTS", '[{"url": "http://a", "port": 1}, {"url": "http://b"}]')
    with pytest.raises(SystemExit):
        load_settings(RoleSettings)
    assert capsys.readouterr().err == "invalid setting ROLETEST_ENDPOINTS at [1]['port']: field required\n"


def test_an_alias_spelled_twice_is_named_once():
    class AliasedSettings(NodeSettings):
        model_config = SettingsConfigDict(env_prefix="ROLETEST_")

        database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url"))

    assert env_var_name(AliasedSettings, "database_url") == "DATABASE_URL"


def test_a_wallet_hotkey_is_echoed_but_a_secret_named_field_is_not(monkeypatch, capsys):
    monkeypatch.setenv("ROLETEST_WALLET_HOTKEY", "a/b")
    with pytest.raises(SystemExit):
        load_settings(RoleSettings, database_url=123)
    lines = sorted(capsys.readouterr().err.splitlines())
    assert lines == [
        "invalid setting --database-url: Input should be a valid string",
        "invalid setting ROLETEST_WALLET_HOTKEY: must be a plain name (no '/') (got 'a/b')",
    ]


# -- the start check of `run` --


@pytest.fixture
async def subnet(tmp_path):
    """A chain with a validator (permit), a miner (no permit); and the hotkey of a stranger (not registered)."""
    chain = LocalChain.create(tmp_path / "chain.json", netuid=56)
    wallets = {name: create_wallet("owner", name, tmp_path / "wallets") for name in ("validator", "miner", "stranger")}
    coldkey = wallets["validator"].coldkeypub.ss58_address
    await chain.register(wallets["validator"].hotkey.ss58_address, coldkey, stake=10.0, validator_permit=True)
    await chain.register(wallets["miner"].hotkey.ss58_address, coldkey)
    return chain, {name: wallet.hotkey.ss58_address for name, wallet in wallets.items()}


def role_settings(network: str, **values) -> RoleSettings:
    return RoleSettings(network=network, netuid=56, wallet_name="owner", wallet_hotkey="hk", **values)


async def test_registered_hotkeys_pass_the_start_check(subnet):
    chain, hotkeys = subnet
    settings = role_settings("local")
    assert await check_registration(chain, settings, hotkeys["validator"], need_permit=True) == 0
    assert await check_registration(chain, settings, hotkeys["miner"]) == 1


async def test_on_a_real_network_the_start_check_names_the_btcli_command(subnet, tmp_path):
    chain, hotkeys = subnet
    settings = role_settings("finney", wallet_path=tmp_path / "wallets")

    with pytest.raises(StartCheckError) as unregistered:
        await check_registration(chain, settings, hotkeys["stranger"])
    with pytest.raises(StartCheckError) as no_permit:
        await check_registration(chain, settings, hotkeys["miner"], need_permit=True)

    assert str(unregistered.value) == (
        f"hotkey {hotkeys['stranger']} is not registered on netuid 56 of finney; register it with `btcli subnets "
        f"register --netuid 56 --network finney --wallet owner --wallet-hotkey hk --wallet-path {tmp_path}/wallets`"
    )
    assert str(no_permit.value) == (
        f"hotkey {hotkeys['miner']} (uid 1) has no validator permit on netuid 56 of finney; a permit needs stake in "
        "the top 64 of the subnet (its max_allowed_validators): add stake with `btcli stake add --netuid 56 --hotkey "
        f"{hotkeys['miner']} --network finney` and wait for the next epoch"
    )


async def test_on_the_local_network_the_start_check_points_at_localnet(subnet):
    chain, hotkeys = subnet
    with pytest.raises(StartCheckError) as unregistered:
        await check_registration(chain, role_settings("local"), hotkeys["stranger"], need_permit=True)
    assert str(unregistered.value) == (
        f"hotkey {hotkeys['stranger']} is not registered on netuid 56 of the local chain; "
        "`god localnet up` registers the local network's nodes"
    )


async def test_a_chain_that_fails_or_never_answers_stops_the_start_check(subnet, tmp_path):
    chain, hotkeys = subnet
    other_netuid = LocalChain(chain.path, netuid=3)
    with pytest.raises(StartCheckError) as failed:
        await check_registration(other_netuid, role_settings("ws://10.0.0.1:9944"), hotkeys["miner"])
    assert str(failed.value).startswith(
        f"cannot check that hotkey {hotkeys['miner']} is registered on netuid 56 of ws://10.0.0.1:9944: "
        f"{chain.path} holds the chain of netuid 56, not 3"
    )
    assert str(failed.value).endswith(
        "; check this machine's network access, or choose another endpoint with --network"
    )

    class SilentChain:
        netuid = 56

        async def metagraph(self):
            await asyncio.Event().wait()

    started = time.monotonic()
    with pytest.raises(StartCheckError) as silent:
        await check_registration(SilentChain(), role_settings("test"), hotkeys["miner"], timeout_s=0.2)
    assert time.monotonic() - started < 2
    assert str(silent.value) == (
        f"cannot check that hotkey {hotkeys['miner']} is registered on netuid 56 of test: the chain did not answer "
        "within 0.2s; check this machine's network access, or choose another endpoint with --network"
    )
