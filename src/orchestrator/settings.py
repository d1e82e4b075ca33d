"""Settings from the environment or a `.env` file; a bad value stops start-up naming the setting."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting has a value the service cannot run with."""


@dataclass(frozen=True)
class Database:
    """DATABASE_URL, parsed once: which backend, and where its log lives.

    Every part of the service that must know where the log lives asks this, so the URL's syntax
    is known in one place.
    """

    #: "sqlite", "postgres" or "memory".
    backend: str
    #: The SQLite file (as written: relative paths are relative to the working directory).
    path: str | None = None
    #: The PostgreSQL URL as asyncpg takes it (`?schema=` removed). Kept out of the repr: it may
    #: hold a password.
    url: str | None = field(default=None, repr=False)
    #: The PostgreSQL schema holding the log and its tables (`?schema=name`, default "public").
    schema: str | None = None
    #: Most connections a PostgreSQL backend opens in its pool (DATABASE_POOL_SIZE).
    pool_size: int = 10


_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# A schema name we can always quote safely and that fits PostgreSQL's 63-byte identifiers.
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def parse_database(url: str, *, pool_size: int = 10) -> Database:
    """`sqlite:///relative.db`, `sqlite:////absolute.db`, `postgresql://user@host:port/db`
    (optionally `?schema=name`) or `memory://`; SettingsError otherwise."""
    prefix = "sqlite:///"
    if url == "memory://":
        return Database(backend="memory")
    if url.startswith(_POSTGRES_SCHEMES):
        return _parse_postgres(url, pool_size)
    if url.startswith(prefix) and len(url) > len(prefix):
        path = url[len(prefix) :]
        if path == ":memory:":
            raise SettingsError(
                "DATABASE_URL: an in-memory SQLite database cannot be shared; use memory://"
            )
        return Database(backend="sqlite", path=path)
    raise SettingsError(
        "DATABASE_URL must look like sqlite:///./workflow.db, postgresql://user@host:5432/db "
        f"or memory://, got {redact_url(url)!r}"
    )


def _parse_postgres(url: str, pool_size: int) -> Database:
    # Only the query is taken apart: the rest (user, password, host, port, database) is asyncpg's
    # to read, and it reports a malformed one when it connects.
    base, _, query = url.partition("?")
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    schemas = [value for name, value in pairs if name == "schema"]
    rest = [(name, value) for name, value in pairs if name != "schema"]
    schema = schemas[-1] if schemas else "public"
    if not _SCHEMA_NAME.fullmatch(schema):
        raise SettingsError(
            "DATABASE_URL: the schema must be letters, digits and _ (not starting with a digit, "
            f"at most 63), got {schema!r}"
        )
    asyncpg_url = f"{base}?{urllib.parse.urlencode(rest)}" if rest else base
    if importlib.util.find_spec("asyncpg") is None:
        # The driver is an extra: a plain install (the Quick start) must not need it.
        raise SettingsError(
            "DATABASE_URL names a PostgreSQL database, but its driver is not installed: "
            "pip install -e '.[postgres]' (or pip install asyncpg)"
        )
    return Database(backend="postgres", url=asyncpg_url, schema=schema, pool_size=pool_size)


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    #: Left out of repr: a PostgreSQL URL may hold a password (messages use redact_url).
    database_url: str = field(default="sqlite:///./workflow.db", repr=False)
    #: Most connections of the PostgreSQL backend's pool, at least 2 (unused by SQLite, memory).
    database_pool_size: int = 10
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_reload: bool = False
    max_workers: int = 5
    task_timeout: float = 300.0
    log_level: str = "INFO"
    log_file: str = "workflow_orchestrator.log"
    task_time_scale: float = 1.0
    max_body_bytes: int = 1024 * 1024
    sse_keepalive_seconds: float = 15.0
    #: Lower-case `host` or `host:port` entries `http_request` tasks may call; empty: none.
    http_task_allowed_hosts: tuple[str, ...] = ()
    http_task_max_response_bytes: int = 1024 * 1024
    http_task_max_timeout: float = 60.0
    #: One log line per HTTP request (uvicorn's access log).
    access_log: bool = False
    #: Origins whose pages may call the API from a browser (CORS); empty: none.
    cors_origins: tuple[str, ...] = ()
    # Integrity anchor: a keyed checkpoint of the log's head, kept outside the events table.
    #: HMAC key for the head checkpoints (secret; never logged); empty: checkpoints unsigned.
    integrity_key: str = field(default="", repr=False)
    #: How often (seconds) the server writes a head checkpoint (and once more at shutdown).
    anchor_interval_seconds: float = 60.0
    #: PostgreSQL, several processes: seconds a process's lease on a workflow or task lasts
    #: without renewal (renewed every third of it); a dead process's work is taken over after.
    lease_seconds: float = 5.0
    # Idempotency.
    #: How long (seconds) an Idempotency-Key is remembered.
    idempotency_ttl_seconds: float = 86400.0
    # Auth and the browser.
    #: Bearer tokens any of which opens every route but /health (secret; never logged).
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    #: Host header values (names, lower-case, optionally with :port) the API answers.
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]")
    #: Serve a non-loopback address without API_TOKEN (refused unless this is true).
    allow_insecure_remote: bool = False
    # Resource bounds.
    #: Largest encoded `config` of a workflow or task, in bytes.
    max_config_bytes: int = 64 * 1024
    #: Most keys (at any depth) a `config` may hold.
    max_config_keys: int = 1000
    #: Largest total of a request's headers, in bytes.
    max_header_bytes: int = 16 * 1024
    #: Most open client connections; past it new ones get 503.
    max_connections: int = 1000
    #: Seconds a client may take to send a request's headers and body (and idle keep-alive).
    client_timeout_seconds: float = 30.0
    #: Threads for standalone tasks, apart from MAX_WORKERS (which run workflow steps).
    task_workers: int = 2
    #: Most steps and task runs waiting for a thread; past it commands get 429 with Retry-After.
    max_queued_steps: int = 1000
    #: Megabytes the in-process caches may hold together (aggregates the services know, read
    #: models, encoded reads), as charged by sized_cache.charge: memory stays flat however long
    #: the history grows.
    cache_memory_mb: int = 64
    #: Largest JSON answer of a list route, in bytes (the page is cut short, and says so).
    max_response_bytes: int = 8 * 1024 * 1024
    #: The log file rotates at this size, keeping LOG_BACKUPS old files.
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5
    #: On SIGTERM, seconds running steps get to finish before they are left to resume later.
    shutdown_grace_seconds: float = 10.0
    # Users' tasks.
    #: Python modules whose @step and @task_type functions the server runs (imported at start).
    tasks_modules: tuple[str, ...] = ()

    @functools.cached_property
    def database(self) -> Database:
        """Where the log lives (DATABASE_URL, parsed)."""
        return parse_database(self.database_url, pool_size=self.database_pool_size)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
    ) -> Settings:
        """Read settings: the environment wins over `.env`, which wins over the defaults."""
        values: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            values.update(read_env_file(Path(env_file)))
        values.update(os.environ if environ is None else environ)
        defaults = cls()

        def get(name: str, parse: Callable[[str, str], T], default: T) -> T:
            raw = values.get(name)
            if raw is None or raw.strip() == "":
                return default
            return parse(name, raw.strip())

        return cls(
            database_url=get("DATABASE_URL", _database_url, defaults.database_url),
            database_pool_size=get("DATABASE_POOL_SIZE", _pool_size, defaults.database_pool_size),
            api_host=get("API_HOST", _text, defaults.api_host),
            api_port=get("API_PORT", _port, defaults.api_port),
            api_reload=get("API_RELOAD", _boolean, defaults.api_reload),
            max_workers=get("MAX_WORKERS", _positive_int, defaults.max_workers),
            task_timeout=get("TASK_TIMEOUT", _positive_float, defaults.task_timeout),
            log_level=get("LOG_LEVEL", _log_level, defaults.log_level),
            # Set but empty, LOG_FILE turns the file log off (absent, it takes the default).
            log_file=(
                ""
                if values.get("LOG_FILE") is not None and not values["LOG_FILE"].strip()
                else get("LOG_FILE", _log_file, defaults.log_file)
            ),
            task_time_scale=get("TASK_TIME_SCALE", _non_negative_float, defaults.task_time_scale),
            max_body_bytes=get("MAX_BODY_BYTES", _positive_int, defaults.max_body_bytes),
            sse_keepalive_seconds=get(
                "SSE_KEEPALIVE_SECONDS", _positive_float, defaults.sse_keepalive_seconds
            ),
            http_task_allowed_hosts=get(
                "HTTP_TASK_ALLOWED_HOSTS", _host_list, defaults.http_task_allowed_hosts
            ),
            http_task_max_response_bytes=get(
                "HTTP_TASK_MAX_RESPONSE_BYTES",
                _positive_int,
                defaults.http_task_max_response_bytes,
            ),
            http_task_max_timeout=get(
                "HTTP_TASK_MAX_TIMEOUT", _positive_float, defaults.http_task_max_timeout
            ),
            access_log=get("ACCESS_LOG", _boolean, defaults.access_log),
            cors_origins=get("CORS_ORIGINS", _origins, defaults.cors_origins),
            integrity_key=get("INTEGRITY_KEY", _secret, defaults.integrity_key),
            anchor_interval_seconds=get(
                "ANCHOR_INTERVAL_SECONDS", _positive_float, defaults.anchor_interval_seconds
            ),
            lease_seconds=get("LEASE_SECONDS", _positive_float, defaults.lease_seconds),
            idempotency_ttl_seconds=get(
                "IDEMPOTENCY_TTL_SECONDS", _positive_float, defaults.idempotency_ttl_seconds
            ),
            api_tokens=get("API_TOKEN", _tokens, defaults.api_tokens),
            allowed_hosts=get("ALLOWED_HOSTS", _host_list, defaults.allowed_hosts),
            allow_insecure_remote=get(
                "ALLOW_INSECURE_REMOTE", _boolean, defaults.allow_insecure_remote
            ),
            max_config_bytes=get("MAX_CONFIG_BYTES", _positive_int, defaults.max_config_bytes),
            max_config_keys=get("MAX_CONFIG_KEYS", _positive_int, defaults.max_config_keys),
            max_header_bytes=get("MAX_HEADER_BYTES", _positive_int, defaults.max_header_bytes),
            max_connections=get("MAX_CONNECTIONS", _positive_int, defaults.max_connections),
            client_timeout_seconds=get(
                "CLIENT_TIMEOUT_SECONDS", _positive_float, defaults.client_timeout_seconds
            ),
            task_workers=get("TASK_WORKERS", _positive_int, defaults.task_workers),
            max_queued_steps=get("MAX_QUEUED_STEPS", _positive_int, defaults.max_queued_steps),
            cache_memory_mb=get("CACHE_MEMORY_MB", _positive_int, defaults.cache_memory_mb),
            max_response_bytes=get(
                "MAX_RESPONSE_BYTES", _positive_int, defaults.max_response_bytes
            ),
            log_max_bytes=get("LOG_MAX_BYTES", _positive_int, defaults.log_max_bytes),
            log_backups=get("LOG_BACKUPS", _non_negative_int, defaults.log_backups),
            shutdown_grace_seconds=get(
                "SHUTDOWN_GRACE_SECONDS", _non_negative_float, defaults.shutdown_grace_seconds
            ),
            tasks_modules=get("TASKS_MODULES", module_names, defaults.tasks_modules),
        )


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and `#` comments are skipped, quotes around a value removed.

    A `#` after whitespace starts a comment on an unquoted value (`MAX_WORKERS=8  # busy box`);
    inside quotes it is part of the value.
    """
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :]
        key, sep, value = stripped.partition("=")
        if not sep or not key.strip():
            # The line is not shown: a malformed line may still hold a secret (API_TOKEN...).
            raise SettingsError(f"{path}:{number}: expected KEY=VALUE (the line is not shown)")
        values[key.strip()] = _env_value(value.strip())
    return values


def _env_value(value: str) -> str:
    if value[:1] in ("'", '"'):
        closing = value.find(value[0], 1)
        if closing > 0 and (
            not value[closing + 1 :].strip() or value[closing + 1 :].lstrip()[0] == "#"
        ):
            return value[1:closing]
    for index, char in enumerate(value):
        if char == "#" and (index == 0 or value[index - 1] in " \t"):
            return value[:index].rstrip()
    return value


def _origins(name: str, raw: str) -> tuple[str, ...]:
    origins: list[str] = []
    for entry in raw.split(","):
        origin = entry.strip().rstrip("/")
        if not origin:
            continue
        scheme, sep, rest = origin.partition("://")
        if origin != "*" and (
            not sep or scheme not in ("http", "https") or not rest or "/" in rest
        ):
            raise SettingsError(
                f"{name} must be comma-separated origins like https://app.example.com "
                f"(scheme, host and optional port, no path), got {entry.strip()!r}"
            )
        origins.append(origin)
    return tuple(origins)


def module_names(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated dotted Python module names (`mypkg.tasks,other`)."""
    names = tuple(entry.strip() for entry in raw.split(",") if entry.strip())
    for module in names:
        if not all(part.isidentifier() for part in module.split(".")):
            raise SettingsError(
                f"{name} must be comma-separated Python module names like mypkg.tasks, "
                f"got {module!r}"
            )
    return names


def _secret(name: str, raw: str) -> str:
    # Never echo a secret back, not even in the error that refuses it.
    if len(raw) < 16:
        raise SettingsError(f"{name} must be at least 16 characters (its value is not shown)")
    return raw


def _tokens(name: str, raw: str) -> tuple[str, ...]:
    tokens = tuple(token.strip() for token in raw.split(",") if token.strip())
    if any(len(token) < 16 or not token.isascii() or " " in token for token in tokens):
        raise SettingsError(
            f"{name} must be comma-separated tokens of at least 16 ASCII characters without "
            "spaces (the values are not shown)"
        )
    return tokens


def _non_negative_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise SettingsError(f"{name} must be a non-negative integer, got {raw!r}")
    return value


def _text(name: str, raw: str) -> str:
    return raw


def _log_file(name: str, raw: str) -> str:
    folder = Path(raw).parent
    if not folder.is_dir():
        raise SettingsError(f"{name}: the folder {str(folder)!r} of {raw!r} does not exist")
    return raw


def _database_url(name: str, raw: str) -> str:
    database = parse_database(raw)
    if database.path is not None:
        folder = Path(database.path).parent
        if not folder.is_dir():
            raise SettingsError(
                f"{name}: the folder {redact_url(str(folder))!r} of {redact_url(raw)!r} "
                "does not exist"
            )
    return raw


# `scheme://user:password@`: everything from the password to the last `@` is hidden (a password
# may hold an `@`; hiding too much is harmless), and so is a `password=` query parameter.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:]*):.*@", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)[^&#]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`url` as it may be shown: the password of `user:password@` (or `password=`) as `***`."""
    url = _URL_PASSWORD.sub(r"\g<head>:***@", url)
    return _QUERY_PASSWORD.sub(r"\g<head>***", url)


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise SettingsError(f"{name} must be a positive integer, got {raw!r}")
    return value


def _pool_size(name: str, raw: str) -> int:
    # Two at least: `rebuild-projections --check` reads two snapshots at once, each holding one.
    value = _positive_int(name, raw)
    if value < 2:
        raise SettingsError(f"{name} must be an integer of at least 2, got {raw!r}")
    return value


def _port(name: str, raw: str) -> int:
    value = _positive_int(name, raw)
    if value > 65535:
        raise SettingsError(f"{name} must be a port number 1..65535, got {raw!r}")
    return value


def _float(name: str, raw: str, *, allow_zero: bool) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if (
        value != value
        or value in (float("inf"), float("-inf"))
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        kind = "a non-negative number" if allow_zero else "a positive number of seconds"
        raise SettingsError(f"{name} must be {kind}, got {raw!r}")
    return value


def _positive_float(name: str, raw: str) -> float:
    return _float(name, raw, allow_zero=False)


def _non_negative_float(name: str, raw: str) -> float:
    return _float(name, raw, allow_zero=True)


def _boolean(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


# A host name or IPv4 address, or an IPv6 address in brackets, then an optional :port.
_HOST_ENTRY = re.compile(
    r"(?P<host>[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
)


def _host_list(name: str, raw: str) -> tuple[str, ...]:
    # Entries are matched exactly against URLs' hosts: lower-case, ports without leading zeros.
    hosts: list[str] = []
    for entry in raw.lower().split(","):
        entry = entry.strip()
        if not entry:
            continue
        match = _HOST_ENTRY.fullmatch(entry)
        if match is None or not 1 <= int(match["port"] or 1) <= 65535:
            raise SettingsError(
                f"{name} must be comma-separated host names or host:port, got {entry!r}"
            )
        host, port = match["host"], match["port"]
        hosts.append(host if port is None else f"{host}:{int(port)}")
    return tuple(hosts)


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(name: str, raw: str) -> str:
    # Only the names every logger involved (ours, uvicorn's) understands.
    level = raw.upper()
    if level not in _LOG_LEVELS:
        raise SettingsError(f"{name} must be one of {', '.join(_LOG_LEVELS)}, got {raw!r}")
    return level
