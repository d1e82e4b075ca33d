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
from orchestrator.eventstore.leases import LeaseStore
from orchestrator.eventstore.memory import InMemoryEventStore
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.eventstore.sqlite_anchors import SQLiteAnchors
from orchestrator.projections.leadership import Leadership
from orchestrator.projections.memory_tables import InMemoryReadModelTables
from orchestrator.projections.sqlite_tables import SQLiteReadModelTables
from orchestrator.projections.storage import ProjectionStorage
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
    #: Where several processes share the log (PostgreSQL): the leases of in-flight workflows
    #: and tasks, and the claim to write the read models (given the storage whose checkpoint
    #: followers watch). None where one process has the log (SQLite: a lock on the file, taken
    #: by `serve`, `create_app` and `Orchestrator`; memory).
    leases: LeaseStore | None = None
    leadership: Callable[[ProjectionStorage], Leadership] | None = None
    #: Whether a log is there already, asked before the store is opened (which creates one):
    #: the history tools refuse to check or read a log that is not there. None where the
    #: caller looks itself (a SQLite file) or there is nothing to find (memory).
    log_exists: Callable[[], Awaitable[bool]] | None = None


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
    from orchestrator.eventstore.postgres_leases import PostgresLeases
    from orchestrator.projections.postgres_leadership import PostgresLeadership
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
        leases=PostgresLeases(db),
        leadership=lambda storage: PostgresLeadership(db, storage.load_checkpoint),
        log_exists=db.has_log,
    )
