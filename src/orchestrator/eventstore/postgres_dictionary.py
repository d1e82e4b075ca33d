"""How a PostgreSQL log gets the preset dictionary its payloads are deflated with (compact.py).

One dictionary serves the whole log, whichever process stores it first: it is learned from the
log's own last events once there are enough of them, and kept in `event_dictionaries`, inserted
in an append transaction (under the append lock, so two processes cannot both insert one: the
second finds the first's and takes it instead of its own). Learning costs tens of milliseconds
of deflating, which must not hold appends back: the sample is read and the dictionary built in a
thread beside the writer, and it is stored by the next append transaction. Until a process knows
a dictionary it stores payloads as text, which reads back as well; a process that meets one in a
row it reads loads it then (postgres_codec.decoded), and packs with it from then on.

An import brings its own payloads: when the log has no dictionary yet, one is learned from the
first of them and stored in the import's transaction, so a moved log is not stored as text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg

from orchestrator.eventstore.compact import SAMPLE_EVENTS, RowCodec, learned_dictionary
from orchestrator.eventstore.postgres_codec import SAMPLE_SQL
from orchestrator.eventstore.postgres_connection import PostgresDatabase
from orchestrator.stopping import stop_tasks

log = logging.getLogger(__name__)

_STORED = "SELECT id, dictionary FROM event_dictionaries ORDER BY id"

Dictionaries = list[tuple[int, bytes]]


class DictionaryLearning:
    """One process's part in getting the log its dictionary (for the store's codec)."""

    def __init__(self, db: PostgresDatabase, learn_after: int) -> None:
        self._db = db
        self._learn_after = learn_after
        #: The head at which to look for (or learn) a dictionary (again).
        self._learn_at = learn_after
        #: The learning under way beside the writer, if it is.
        self._task: asyncio.Task[None] | None = None
        #: A dictionary learned here, for the next append transaction to store.
        self.learned: bytes | None = None
        self._stopped = False

    def when_due(self, head: int, codec: RowCodec) -> None:
        """After a commit that took the log to `head`: start learning beside the writer once
        the log is long enough, unless `codec` knows a dictionary or one is on its way."""
        if (
            not self._stopped
            and head >= self._learn_at
            and codec.dictionary is None
            and self._task is None
            and self.learned is None
        ):
            self._learn_at = head + self._learn_after
            self._task = asyncio.create_task(self._learn(codec), name="postgres-dictionary")

    async def _learn(self, codec: RowCodec) -> None:
        """Take the log's dictionary if another process stored one, else learn one from the
        log's last events for the next append transaction to store. A failure only puts it off
        (payloads are stored as text meanwhile)."""
        try:
            stored = await self._db.fetch("a read of the dictionaries", _STORED)
            if stored:
                codec.learn_dictionaries(stored)
                return
            rows = await self._db.fetch("a read of the payloads", SAMPLE_SQL, SAMPLE_EVENTS)
            self.learned = await asyncio.to_thread(learned_dictionary, rows)
        except Exception:
            log.warning("could not learn a dictionary for the payloads in %s", self._db.name)
        finally:
            self._task = None

    async def store(self, conn: asyncpg.Connection) -> Dictionaries:
        """In an append transaction: the dictionary learned here stored, unless the log has one
        already (which is taken instead); what to pass to `committed` once it commits."""
        learned = self.learned
        return await _stored_or(conn, learned) if learned is not None else []

    def committed(self, codec: RowCodec, dictionaries: Dictionaries) -> None:
        """The transaction that stored (or found) `dictionaries` committed: `codec` packs with
        them from now on."""
        if dictionaries:
            codec.learn_dictionaries(dictionaries)
            self.learned = None

    async def for_import(
        self, conn: asyncpg.Connection, codec: RowCodec, payloads: Sequence[str]
    ) -> tuple[RowCodec, Dictionaries]:
        """What an import packs its payloads with, in its transaction: `codec` if it knows a
        dictionary, else a codec with the log's, found or learned from `payloads` (the import's
        first, oldest first; as many as the log would learn from) and stored in that
        transaction; and what to pass to `committed` once the import commits (the store's codec
        must not use it before)."""
        if codec.dictionary is not None:
            return codec, []
        dictionaries = [(int(n), bytes(d)) for n, d in await conn.fetch(_STORED)]
        if not dictionaries:
            if len(payloads) < self._learn_after:  # too few to learn the log's for good from
                return codec, []
            newest_first = [(None, text) for text in reversed(payloads[-SAMPLE_EVENTS:])]
            learned = await asyncio.to_thread(learned_dictionary, newest_first)
            if learned is None:
                return codec, []
            dictionaries = await _stored_or(conn, learned)
        packer = RowCodec()
        packer.learn_dictionaries(dictionaries)
        return packer, dictionaries

    async def stop(self) -> None:
        """Stop learning, for good (the store closes: the commits it still makes start none)."""
        self._stopped = True
        task, self._task = self._task, None
        await stop_tasks(task)


async def _stored_or(conn: asyncpg.Connection, dictionary: bytes) -> Dictionaries:
    """In an append transaction: the dictionaries the log holds, if any (the first one stored,
    by whichever process, wins), else `dictionary`, inserted as number 1."""
    stored = await conn.fetch(_STORED)
    if stored:
        return [(int(number), bytes(found)) for number, found in stored]
    await conn.execute("INSERT INTO event_dictionaries (id, dictionary) VALUES (1, $1)", dictionary)
    return [(1, dictionary)]
