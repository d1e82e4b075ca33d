"""The PostgreSQL side of idempotency keys: the `idempotency_keys` table's statements.

The table is created with the log's schema (postgres_schema.py). A key's row is inserted by the
group commit, in the transaction of its command's events; answers and purges are transactions of
their own on a connection of the pool.
"""

from __future__ import annotations

import asyncpg

from orchestrator.eventstore.keys import IdempotencyRecord

#: An upsert: a row still there for the same key has expired (a live key is answered from its row
#: and never reaches an append), and a failed insert would fail the whole group commit. Each
#: key's row is its own statement (executemany), so one key twice in a batch is no error.
INSERT_KEY = (
    "INSERT INTO idempotency_keys "
    "(key, request_hash, created_at, stream_id, version, position) VALUES ($1, $2, $3, $4, $5, $6) "
    "ON CONFLICT (key) DO UPDATE SET request_hash = excluded.request_hash, "
    "created_at = excluded.created_at, stream_id = excluded.stream_id, "
    "version = excluded.version, position = excluded.position, status = NULL, body = NULL"
)
SELECT_KEY = (
    "SELECT key, request_hash, created_at, stream_id, version, position, status, body "
    "FROM idempotency_keys WHERE key = $1"
)


def row_to_record(row: asyncpg.Record) -> IdempotencyRecord:
    """A row of SELECT_KEY as a record."""
    key, request_hash, created_at, stream_id, version, position, status, body = row
    return IdempotencyRecord(
        key=str(key),
        request_hash=bytes(request_hash),
        created_at=float(created_at),
        stream_id=str(stream_id),
        version=int(version),
        position=int(position),
        status=None if status is None else int(status),
        body=None if body is None else bytes(body),
    )


async def save_answer(
    conn: asyncpg.Connection, key: str, request_hash: bytes, status: int, body: bytes
) -> None:
    """Store the answer of the key's request (a key since reused by another is left alone)."""
    await conn.execute(
        "UPDATE idempotency_keys SET status = $1, body = $2 WHERE key = $3 AND request_hash = $4",
        status,
        body,
        key,
        request_hash,
    )


async def purge(conn: asyncpg.Connection, created_before: float) -> int:
    """Delete the keys created before `created_before`; how many there were."""
    done = await conn.execute("DELETE FROM idempotency_keys WHERE created_at < $1", created_before)
    # The command tag is "DELETE <count>".
    return int(str(done).rsplit(" ", 1)[-1])
