"""The SQLite side of idempotency keys: the `idempotency_keys` table's rows and statements.

The table is created with the log's schema (sqlite_schema.py). A key's row is inserted by the
group commit, in the transaction of its command's events; answers and purges are ordinary write
transactions on the store's writer.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from orchestrator.eventstore.keys import IdempotencyRecord

#: OR REPLACE: a row still there for the same key has expired (a live key is answered from its
#: row and never reaches an append), and a failed insert would fail the whole group commit.
INSERT_KEY = (
    "INSERT OR REPLACE INTO idempotency_keys "
    "(key, request_hash, created_at, stream_id, version, position) VALUES (?, ?, ?, ?, ?, ?)"
)
SELECT_KEY = (
    "SELECT key, request_hash, created_at, stream_id, version, position, status, body "
    "FROM idempotency_keys WHERE key = ?"
)


def row_to_record(row: Sequence[object]) -> IdempotencyRecord:
    """A row of SELECT_KEY as a record."""
    key, request_hash, created_at, stream_id, version, position, status, body = row
    assert isinstance(request_hash, bytes) and isinstance(created_at, float | int)
    assert isinstance(version, int) and isinstance(position, int)
    assert status is None or isinstance(status, int)
    assert body is None or isinstance(body, bytes)
    return IdempotencyRecord(
        key=str(key),
        request_hash=request_hash,
        created_at=float(created_at),
        stream_id=str(stream_id),
        version=version,
        position=position,
        status=status,
        body=body,
    )


async def save_answer(
    conn: aiosqlite.Connection, key: str, request_hash: bytes, status: int, body: bytes
) -> None:
    """Store the answer of the key's request (a key since reused by another is left alone)."""
    await conn.execute(
        "UPDATE idempotency_keys SET status = ?, body = ? WHERE key = ? AND request_hash = ?",
        (status, body, key, request_hash),
    )


async def purge(conn: aiosqlite.Connection, created_before: float) -> int:
    """Delete the keys created before `created_before`; how many there were."""
    cursor = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < ?", (created_before,)
    )
    return int(cursor.rowcount)
