"""Which addresses count as loopback for `serve`, and how secrets are kept out of messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.exposure import exposure_refusal, exposure_warning, is_loopback
from orchestrator.settings import Settings, SettingsError, redact_url

TOKEN = "unit-token-0123456789abcdef"


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1"],
)
def test_loopback_addresses_and_localhost_are_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "", "10.0.0.5", "192.168.1.1", "fe80::1", "no-such-host.invalid"]
)
def test_every_other_address_and_unresolvable_names_are_not(host: str) -> None:
    assert not is_loopback(host)


def test_only_a_non_loopback_address_without_token_or_consent_is_refused() -> None:
    assert exposure_refusal(Settings()) is None
    assert exposure_refusal(Settings(api_host="0.0.0.0")) is not None
    assert exposure_refusal(Settings(api_host="0.0.0.0", api_tokens=(TOKEN,))) is None
    assert exposure_refusal(Settings(api_host="0.0.0.0", allow_insecure_remote=True)) is None


def test_only_consent_without_a_token_off_loopback_is_warned_about() -> None:
    assert exposure_warning(Settings(api_host="0.0.0.0", allow_insecure_remote=True)) is not None
    assert exposure_warning(Settings(allow_insecure_remote=True)) is None
    assert exposure_warning(Settings(api_host="::", api_tokens=(TOKEN,))) is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bob:s3cret@db.example:5432/wf", "postgresql://bob:***@db.example:5432/wf"),
        ("postgresql://bob:p@ss:w/rd@db/wf", "postgresql://bob:***@db/wf"),  # @ and : in it
        (
            "postgresql://db.example/wf?user=bob&password=s3cret",
            "postgresql://db.example/wf?user=bob&password=***",
        ),
        ("postgresql://bob@db.example/wf", "postgresql://bob@db.example/wf"),
        ("sqlite:///./workflow.db", "sqlite:///./workflow.db"),
        ("memory://", "memory://"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_bad_database_url_setting_hides_its_password() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"DATABASE_URL": "mysql://bob:s3cret-pw@db/wf"}, env_file=None)

    assert "s3cret-pw" not in str(raised.value)
    assert "mysql://bob:***@db/wf" in str(raised.value)


def test_a_malformed_env_line_is_not_echoed(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"LOG_LEVEL=INFO\nAPI_TOKEN {TOKEN}\n", encoding="utf-8")

    with pytest.raises(SettingsError) as raised:
        Settings.from_env({}, env_file=env_file)

    assert str(raised.value) == f"{env_file}:2: expected KEY=VALUE (the line is not shown)"


@pytest.mark.parametrize("raw", ["short", f"{TOKEN},short", f"{TOKEN},has space in it x"])
def test_a_bad_token_setting_shows_no_token(raw: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"API_TOKEN": raw}, env_file=None)

    assert not any(part.strip() in str(raised.value) for part in raw.split(","))


def test_secrets_stay_out_of_the_settings_repr() -> None:
    settings = Settings.from_env(
        {"API_TOKEN": TOKEN, "INTEGRITY_KEY": "integrity-key-0123456789"}, env_file=None
    )

    assert settings.api_tokens == (TOKEN,)
    assert TOKEN not in repr(settings)
    assert "integrity-key-0123456789" not in repr(settings)
