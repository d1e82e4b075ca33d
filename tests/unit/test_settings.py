"""Settings: a bad value stops start-up with a sentence naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LOG_LEVEL", "WARN", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("LOG_LEVEL", "notset", "LOG_LEVEL must be one of"),
        ("MAX_WORKERS", "0", "MAX_WORKERS must be a positive integer, got '0'"),
        ("TASK_TIMEOUT", "nan", "TASK_TIMEOUT must be a positive number of seconds"),
        ("TASK_TIME_SCALE", "-1", "TASK_TIME_SCALE must be a non-negative number"),
        ("API_PORT", "65536", "API_PORT must be a port number 1..65535"),
        ("API_RELOAD", "maybe", "API_RELOAD must be true or false"),
        ("DATABASE_URL", "sqlite:///./no/such/folder/w.db", "DATABASE_URL: the folder"),
        ("DATABASE_URL", "postgresql://localhost/db", "DATABASE_URL: the PostgreSQL backend"),
        ("LOG_FILE", "/no/such/folder/x.log", "LOG_FILE: the folder '/no/such/folder'"),
    ],
)
def test_a_bad_setting_is_refused_with_its_name(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value}, env_file=None)

    assert str(caught.value).startswith(message)


def test_the_environment_wins_over_the_env_file_which_wins_over_defaults(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\nMAX_WORKERS=3\nexport TASK_TIMEOUT='2.5'\nLOG_LEVEL=debug\n", encoding="utf-8"
    )

    settings = Settings.from_env({"MAX_WORKERS": "7"}, env_file=env_file)

    assert settings.max_workers == 7
    assert settings.task_timeout == 2.5
    assert settings.log_level == "DEBUG"
    assert settings.api_port == 8000
    assert settings.database_url == "sqlite:///./workflow.db"


def test_a_line_of_the_env_file_that_is_not_key_value_names_its_line(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MAX_WORKERS=3\nnonsense\n", encoding="utf-8")

    with pytest.raises(SettingsError, match=r"\.env:2: expected KEY=VALUE"):
        Settings.from_env({}, env_file=env_file)
