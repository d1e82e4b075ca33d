"""The one place a database kind becomes objects: an event store, its read-model tables and its
head-checkpoint storage. The server's runtime and the command-line tools both come here.

A new backend is one more branch of `make_backend` (an event store, read-model tables, anchor
storage), and one more parameter of the contract suites in tests/contract.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from orchestrator.eventstore.anchor_store import AnchorStore, InMemoryAnchors
from orchestrator.eventstore.base import EventStore
from orchestrator.eventstore.memory import InMemoryEventStore
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.eventstore.sqlite_anchors import SQLiteAnchors
from orchestrator.projections.memory_tables import InMemoryReadModelTables
from orchestrator.projections.sqlite_tables import SQLiteReadModelTables
from orchestrator.projections.tables import ReadModelTables
from orchestrator.settings import Database


@dataclass(frozen=True)
class Backend:
    """The storage of one database, not yet opened (open `store` first, then the rest)."""

    #: Where the log lives, as messages name it: the file, the PostgreSQL URL (without its
    #: password) and schema, or "memory".
    name: str
    store: EventStore
    tables: ReadModelTables
    anchors: AnchorStore
    #: False when the log ends with the process (memory://): the history tools refuse it.
    durable: bool
    #: Claims the log for one driving runtime (StoreInUse if another has it); returns how to
    #: let it go. None where the process claims it otherwise (SQLite: a lock on the file, taken
    #: by `serve`, `create_app` and `Orchestrator`) or nothing is shared (memory).
    claim_runtime: Callable[[], Awaitable[Callable[[], Awaitable[None]]]] | None = None


def make_backend(database: Database) -> Backend:
    """The storage for `database` (DATABASE_URL as parsed into settings)."""
    if database.backend == "postgres":
        return _postgres(database)
    if database.path is None:
        memory = InMemoryEventStore()
        return Backend(
            name="memory",
            store=memory,
            tables=InMemoryReadModelTables(memory),
            anchors=InMemoryAnchors(),
            durable=False,
        )
    sqlite = SQLiteEventStore(database.path)
    return Backend(
        name=database.path,
        store=sqlite,
        tables=SQLiteReadModelTables(sqlite),
        anchors=SQLiteAnchors(sqlite),
        durable=True,
    )


def _postgres(database: Database) -> Backend:
    # Imported here: asyncpg is the `postgres` extra, and a SQLite or memory server must start
    # without it (settings refuse a PostgreSQL URL where it is missing).
    from orchestrator.eventstore.postgres import PostgresEventStore
    from orchestrator.eventstore.postgres_anchors import PostgresAnchors
    from orchestrator.eventstore.postgres_connection import PostgresDatabase
    from orchestrator.projections.postgres_tables import PostgresReadModelTables

    assert database.url is not None and database.schema is not None
    # One pool for the whole backend: the store opens it, the tables and anchors use it.
    db = PostgresDatabase(database.url, database.schema, database.pool_size)
    return Backend(
        name=db.name,
        store=PostgresEventStore(db),
        tables=PostgresReadModelTables(db),
        anchors=PostgresAnchors(db),
        durable=True,
        claim_runtime=db.claim_runtime,
    )
