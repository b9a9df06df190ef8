"""Validator settings: environment names, network-dependent defaults, and the artifact secret kept on disk."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from core.settings import load_settings
from validator.settings import ValidatorSettings, resolve_artifact_secret


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("VALIDATOR_", "GOD_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)


def test_settings_come_from_validator_variables_and_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://god:hunter2@db/god")
    monkeypatch.setenv("VALIDATOR_PORT", "9100")
    monkeypatch.setenv("VALIDATOR_TRAINERS", '[{"url": "http://10.0.0.5:9200/", "hotkey": "5Trainer"}]')

    settings = ValidatorSettings()

    assert settings.database_url_value == "postgresql://god:hunter2@db/god"
    assert "hunter2" not in repr(settings)
    assert settings.port == 9100
    assert [(trainer.url, trainer.hotkey) for trainer in settings.trainers] == [("http://10.0.0.5:9200", "5Trainer")]


def test_timing_defaults_follow_the_network_unless_set() -> None:
    local = ValidatorSettings(network="local")
    real = ValidatorSettings(network="finney")
    explicit = ValidatorSettings(network="local", poll_interval_seconds=3)

    assert (local.poll_interval_seconds, local.lease_seconds) == (1.0, 10.0)
    assert (real.poll_interval_seconds, real.lease_seconds) == (5.0, 120.0)
    assert explicit.poll_interval_seconds == 3
    # Customers' local dataset paths read the validator's own disk: only the local network accepts them.
    assert (local.allow_local_datasets, real.allow_local_datasets) == (True, False)


def test_public_url_defaults_to_a_reachable_address() -> None:
    assert ValidatorSettings(host="0.0.0.0", port=9001).base_url == "http://127.0.0.1:9001"
    assert ValidatorSettings(host="10.1.2.3", port=80).base_url == "http://10.1.2.3:80"
    assert ValidatorSettings(public_url="https://validator.example/").base_url == "https://validator.example"


def test_a_bad_setting_exits_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VALIDATOR_TRAINERS", '[{"url": "ftp://trainer", "hotkey": "5T"}]')

    with pytest.raises(SystemExit) as exit_info:
        load_settings(ValidatorSettings)

    assert exit_info.value.code == 2
    assert "VALIDATOR_TRAINERS" in capsys.readouterr().err


def test_the_artifact_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = ValidatorSettings(data_dir=tmp_path)

    first = resolve_artifact_secret(settings)
    second = resolve_artifact_secret(ValidatorSettings(data_dir=tmp_path))

    assert first == second and len(first) == 64
    assert stat.S_IMODE((tmp_path / "artifact_secret").stat().st_mode) == 0o600
    assert resolve_artifact_secret(ValidatorSettings(data_dir=tmp_path, artifact_secret="x" * 32)) == "x" * 32
