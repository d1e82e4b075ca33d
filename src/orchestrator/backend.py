"""The one place a database kind becomes objects: an event store, its read-model tables and its
head-checkpoint storage. The server's runtime and the command-line tools both come here.

A new backend is one more branch of `make_backend` (an event store, read-model tables, anchor
storage), and one more parameter of the contract suites in tests/contract.
"""

from __future__ import annotations

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

    #: Where the log lives, as messages name it: the file, or "memory".
    name: str
    store: EventStore
    tables: ReadModelTables
    anchors: AnchorStore
    #: False when the log ends with the process (memory://): the history tools refuse it.
    durable: bool


def make_backend(database: Database) -> Backend:
    """The storage for `database` (DATABASE_URL as parsed into settings)."""
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
