"""Settings from MSR_* environment variables and an optional TOML file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from missed_session.config import (
    CONFIG_FILE_ENV,
    TASK_QUEUE,
    ConfigurationError,
    Settings,
    load_settings,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MSR_* variable from the developer's shell may leak into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("MSR_"):
            monkeypatch.delenv(name)


def _config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "msr.toml"
    path.write_text(text)
    return path


def test_defaults_without_environment_or_file() -> None:
    settings = load_settings()
    assert settings == Settings()
    assert settings.task_queue == TASK_QUEUE
    assert settings.time_scale == 1.0
    assert settings.database_url is None


def test_reads_msr_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSR_TEMPORAL_ADDRESS", "temporal.internal:7233")
    monkeypatch.setenv("MSR_TIME_SCALE", "60")
    monkeypatch.setenv("MSR_DATA_DIR", "/var/lib/msr")
    monkeypatch.setenv("MSR_LOG_FORMAT", "json")
    monkeypatch.setenv("MSR_CALLBACK_NUMBER", "+442071234567")
    settings = load_settings()
    assert settings.temporal_address == "temporal.internal:7233"
    assert settings.time_scale == 60.0
    assert settings.data_dir == Path("/var/lib/msr")
    assert settings.log_format == "json"
    assert settings.callback_number == "+442071234567"


def test_unprefixed_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIME_SCALE", "60")
    assert load_settings().time_scale == 1.0


def test_reads_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _config_file(
        tmp_path,
        'temporal_namespace = "practice"\nui_port = 9000\nsender_name = "Jo at reception"\n',
    )
    monkeypatch.setenv(CONFIG_FILE_ENV, str(path))
    settings = load_settings()
    assert settings.temporal_namespace == "practice"
    assert settings.ui_port == 9000
    assert settings.sender_name == "Jo at reception"


def test_environment_wins_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _config_file(tmp_path, 'temporal_namespace = "from-file"\ntime_scale = 10\n')
    monkeypatch.setenv(CONFIG_FILE_ENV, str(path))
    monkeypatch.setenv("MSR_TEMPORAL_NAMESPACE", "from-env")
    settings = load_settings()
    assert settings.temporal_namespace == "from-env"
    assert settings.time_scale == 10.0


def test_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSR_UI_PORT", "9000")
    assert load_settings(ui_port=9100).ui_port == 9100


@pytest.mark.parametrize(
    ("variable", "value", "setting"),
    [
        ("MSR_TIME_SCALE", "0", "time_scale"),
        ("MSR_TIME_SCALE", "fast", "time_scale"),
        ("MSR_UI_PORT", "70000", "ui_port"),
        ("MSR_LOG_FORMAT", "xml", "log_format"),
        ("MSR_LOG_LEVEL", "verbose", "log_level"),
        ("MSR_CALLBACK_NUMBER", "555-0100", "callback_number"),
        ("MSR_SENDER_NAME", "", "sender_name"),
    ],
)
def test_bad_environment_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, setting: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=f"^setting {setting}: "):
        load_settings()


def test_bad_file_value_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_FILE_ENV, str(_config_file(tmp_path, "time_scale = 0\n")))
    with pytest.raises(ConfigurationError, match="time_scale"):
        load_settings()


def test_unknown_file_setting_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_FILE_ENV, str(_config_file(tmp_path, "time_scael = 60\n")))
    with pytest.raises(ConfigurationError, match="time_scael"):
        load_settings()


def test_missing_config_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere.toml"
    monkeypatch.setenv(CONFIG_FILE_ENV, str(missing))
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert CONFIG_FILE_ENV in str(raised.value)
    assert str(missing) in str(raised.value)


def test_config_file_that_is_a_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_FILE_ENV, str(tmp_path))
    with pytest.raises(ConfigurationError, match=CONFIG_FILE_ENV):
        load_settings()


@pytest.mark.parametrize("sender_name", ["Dr Lee's Therapy Practice", "Northside Counselling"])
def test_revealing_sender_name_is_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, sender_name: str
) -> None:
    monkeypatch.setenv("MSR_SENDER_NAME", sender_name)
    with pytest.raises(ConfigurationError, match=r"^setting sender_name: .*revealing word"):
        load_settings()


def test_settings_are_immutable() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.time_scale = 60  # type: ignore[misc]
