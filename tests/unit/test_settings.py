"""Settings: a bad value stops start-up with a sentence naming the setting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orchestrator.settings import Database, Settings, SettingsError, parse_database

HOSTS_ERROR = "HTTP_TASK_ALLOWED_HOSTS must be comma-separated host names or host:port"


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
        ("DATABASE_URL", "postgresql://localhost/db?schema=1x", "DATABASE_URL: the schema must"),
        ("DATABASE_URL", "postgres://h/db?schema=a;drop", "DATABASE_URL: the schema must"),
        ("DATABASE_POOL_SIZE", "1", "DATABASE_POOL_SIZE must be an integer of at least 2"),
        ("DATABASE_POOL_SIZE", "ten", "DATABASE_POOL_SIZE must be a positive integer"),
        ("LOG_FILE", "/no/such/folder/x.log", "LOG_FILE: the folder '/no/such/folder'"),
        (
            "HTTP_TASK_ALLOWED_HOSTS",
            "example.com, http://api.example.com",
            f"{HOSTS_ERROR}, got 'http://api.example.com'",
        ),
        ("HTTP_TASK_ALLOWED_HOSTS", "a b", f"{HOSTS_ERROR}, got 'a b'"),
        ("CORS_ORIGINS", "app.example.com", "CORS_ORIGINS must be comma-separated origins"),
        ("CORS_ORIGINS", "https://a.example/path", "CORS_ORIGINS must be comma-separated"),
        ("ACCESS_LOG", "sometimes", "ACCESS_LOG must be true or false"),
        ("HTTP_TASK_ALLOWED_HOSTS", "user@host", f"{HOSTS_ERROR}, got 'user@host'"),
        ("HTTP_TASK_ALLOWED_HOSTS", "host:0", f"{HOSTS_ERROR}, got 'host:0'"),
        ("HTTP_TASK_ALLOWED_HOSTS", "h:65536", f"{HOSTS_ERROR}, got 'h:65536'"),
        ("HTTP_TASK_ALLOWED_HOSTS", "host:", f"{HOSTS_ERROR}, got 'host:'"),
        (
            "HTTP_TASK_MAX_RESPONSE_BYTES",
            "0",
            "HTTP_TASK_MAX_RESPONSE_BYTES must be a positive integer, got '0'",
        ),
        (
            "HTTP_TASK_MAX_RESPONSE_BYTES",
            "1MB",
            "HTTP_TASK_MAX_RESPONSE_BYTES must be a positive integer, got '1MB'",
        ),
        ("HTTP_TASK_MAX_TIMEOUT", "0", "HTTP_TASK_MAX_TIMEOUT must be a positive number of"),
        ("HTTP_TASK_MAX_TIMEOUT", "inf", "HTTP_TASK_MAX_TIMEOUT must be a positive number of"),
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


def test_the_http_task_settings_default_to_refusing_every_host() -> None:
    settings = Settings.from_env({}, env_file=None)

    assert settings.http_task_allowed_hosts == ()
    assert settings.http_task_max_response_bytes == 1024 * 1024
    assert settings.http_task_max_timeout == 60.0


def test_the_allowed_hosts_are_read_lower_case_with_blanks_and_empty_entries_dropped() -> None:
    settings = Settings.from_env(
        {
            "HTTP_TASK_ALLOWED_HOSTS": " Example.COM, 127.0.0.1:08080 ,,[::1]:80,api_1.local ",
            "HTTP_TASK_MAX_RESPONSE_BYTES": "2048",
            "HTTP_TASK_MAX_TIMEOUT": "2.5",
        },
        env_file=None,
    )

    assert settings.http_task_allowed_hosts == (
        "example.com",
        "127.0.0.1:8080",
        "[::1]:80",
        "api_1.local",
    )
    assert settings.http_task_max_response_bytes == 2048
    assert settings.http_task_max_timeout == 2.5


def test_an_empty_log_file_setting_turns_the_file_log_off(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LOG_FILE=\n")

    assert Settings.from_env({}, env_file=tmp_path / ".env").log_file == ""
    assert Settings.from_env({"LOG_FILE": ""}, env_file=None).log_file == ""
    assert Settings.from_env({}, env_file=None).log_file == "workflow_orchestrator.log"


def test_env_file_values_may_carry_an_inline_comment(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "MAX_WORKERS=8  # a busy box\n"
        "LOG_LEVEL='DEBUG' # quoted, then a comment\n"
        "LOG_FILE=  # no file log\n"
        'API_HOST="127.0.0.1#not-a-comment"\n'
        "TASK_TIMEOUT=30#no space before it: part of the value\n",
    )

    with pytest.raises(SettingsError, match="TASK_TIMEOUT must be a positive number"):
        Settings.from_env({}, env_file=tmp_path / ".env")
    (tmp_path / ".env").write_text(
        (tmp_path / ".env").read_text().replace("TASK_TIMEOUT=30#no", "TASK_TIMEOUT=30 #no")
    )
    settings = Settings.from_env({}, env_file=tmp_path / ".env")
    assert settings.max_workers == 8
    assert settings.log_level == "DEBUG"
    assert settings.log_file == ""
    assert settings.api_host == "127.0.0.1#not-a-comment"
    assert settings.task_timeout == 30


def test_cors_origins_and_the_access_log_are_off_by_default_and_read_when_set() -> None:
    defaults = Settings.from_env({}, env_file=None)
    configured = Settings.from_env(
        {"CORS_ORIGINS": "https://a.example.com, http://localhost:3000/", "ACCESS_LOG": "on"},
        env_file=None,
    )

    assert (defaults.cors_origins, defaults.access_log) == ((), False)
    assert configured.cors_origins == ("https://a.example.com", "http://localhost:3000")
    assert configured.access_log is True


def test_the_example_env_file_names_every_setting_with_its_default() -> None:
    example = Path(__file__).parents[2] / ".env.example"
    names = {
        line.partition("=")[0]
        for line in example.read_text().splitlines()
        if line and not line.startswith("#")
    }

    assert Settings.from_env({}, env_file=example) == Settings()
    # Every field is spelled in the file, so a new setting cannot be forgotten there.
    assert len(names) == len(dataclasses.fields(Settings))


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///orchestrator.db", "orchestrator.db"),
        ("sqlite:///data/orchestrator.db", "data/orchestrator.db"),
        ("sqlite:////var/lib/orchestrator.db", "/var/lib/orchestrator.db"),
        ("sqlite:////tmp/x.db", "/tmp/x.db"),
    ],
)
def test_a_sqlite_url_names_its_file(url: str, path: str) -> None:
    assert parse_database(url) == Database(backend="sqlite", path=path)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///",
        "sqlite://",
        "sqlite://host/file.db",
        "sqlite:/file.db",
        "sqlite:///:memory:",
        "mysql://user@localhost/orchestrator",
        "postgresql+asyncpg://user@localhost/orchestrator",
        "orchestrator.db",
        "",
    ],
)
def test_database_urls_other_than_sqlite_postgresql_or_memory_are_refused(url: str) -> None:
    with pytest.raises(SettingsError, match=r"DATABASE_URL"):
        parse_database(url)


def test_memory_needs_no_file() -> None:
    assert parse_database("memory://") == Database(backend="memory")
    assert Settings(database_url="memory://").database.path is None


@pytest.mark.parametrize(
    ("url", "asyncpg_url", "schema"),
    [
        ("postgresql://bob@db:5432/wf", "postgresql://bob@db:5432/wf", "public"),
        ("postgres://bob@db/wf?schema=orders", "postgres://bob@db/wf", "orders"),
        (
            "postgresql://bob:s3cret@db/wf?sslmode=require&schema=Tenant_7",
            "postgresql://bob:s3cret@db/wf?sslmode=require",
            "Tenant_7",
        ),
    ],
)
def test_a_postgresql_url_names_its_server_and_schema(
    url: str, asyncpg_url: str, schema: str
) -> None:
    database = parse_database(url)

    assert (database.backend, database.url, database.schema) == ("postgres", asyncpg_url, schema)
    assert database.path is None
    assert "s3cret" not in repr(database)


def test_the_pool_size_reaches_the_postgresql_database() -> None:
    settings = Settings.from_env(
        {"DATABASE_URL": "postgresql://bob@db/wf", "DATABASE_POOL_SIZE": "4"}, env_file=None
    )

    assert settings.database_pool_size == 4
    assert settings.database.pool_size == 4
    assert Settings.from_env({}, env_file=None).database_pool_size == 10


def test_the_repr_of_settings_never_shows_a_database_password() -> None:
    settings = Settings(database_url="postgresql://orch:s3cret-pass@db.internal:5432/orch")

    assert "s3cret-pass" not in repr(settings)
    assert "s3cret-pass" not in str(settings)
