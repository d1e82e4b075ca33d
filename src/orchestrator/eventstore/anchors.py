"""Head checkpoints ("anchors"): the log's position and head hash at a moment, optionally signed.

The hash chain proves that the events up to a position are the ones that were written, but only
relative to the chain's own last hash: delete the last events, or edit a payload and compute the
chain again, and the chain still holds. An anchor, kept outside the events table, pins what the
head was: a log that no longer reaches an anchor's position, or whose event there has another
hash, was truncated or rewritten. An anchor signed with HMAC-SHA256 under INTEGRITY_KEY cannot be
forged by someone who can write the files but does not know the key.

Anchors live in two places (see `anchor_store.py`): a table in the database and an append-only
file of JSON lines beside it, `<database>.anchors`, which survives the database being replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from datetime import UTC, datetime

import msgspec

from orchestrator.eventstore.errors import EventStoreError

_CONTEXT = b"orchestrator-anchor-1"


class Anchor(msgspec.Struct, frozen=True, kw_only=True):
    """The log's head at `at`: the event at `position` had the chain hash `hash`."""

    position: int
    hash: str
    #: When the checkpoint was written (UTC, ISO 8601).
    at: str
    #: Which key signed it (a fingerprint, not the key); None when unsigned.
    key_id: str | None = None
    #: HMAC-SHA256 over position, hash and time; None when unsigned.
    mac: str | None = None

    @property
    def is_signed(self) -> bool:
        """True when the checkpoint carries a signature."""
        return self.mac is not None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Anchor)


def key_id(key: str) -> str:
    """A short fingerprint of the key, so a checkpoint signed with another key says so.

    Derived through HMAC, so it reveals nothing usable about the key.
    """
    return hmac.new(key.encode(), b"orchestrator-anchor-key-id", hashlib.sha256).hexdigest()[:16]


def _mac(key: str, position: int, head_hash: str, at: str) -> str:
    message = b"\n".join((_CONTEXT, str(position).encode(), head_hash.encode(), at.encode()))
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def make_anchor(position: int, head_hash: str, key: str, at: datetime | None = None) -> Anchor:
    """A checkpoint of (position, head hash) now, signed when `key` is not empty."""
    when = (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    if not key:
        return Anchor(position=position, hash=head_hash, at=when)
    return Anchor(
        position=position,
        hash=head_hash,
        at=when,
        key_id=key_id(key),
        mac=_mac(key, position, head_hash, when),
    )


def signature_problem(anchor: Anchor, key: str) -> str | None:
    """Why the checkpoint cannot be trusted under `key`, or None (always None without a key)."""
    if not key:
        return None
    if anchor.mac is None:
        return "unsigned, but INTEGRITY_KEY is set (written without the key, or forged)"
    if anchor.key_id != key_id(key):
        return f"signed with another key (key id {anchor.key_id}; INTEGRITY_KEY's is {key_id(key)})"
    if not hmac.compare_digest(anchor.mac, _mac(key, anchor.position, anchor.hash, anchor.at)):
        return "its signature does not match: the checkpoint was altered or forged"
    return None


def encode_anchor(anchor: Anchor) -> bytes:
    """One JSON line (with its newline)."""
    return _encoder.encode(anchor) + b"\n"


class AnchorFileError(EventStoreError):
    """An anchor file cannot be read."""


def anchor_file_path(database: str) -> str:
    """Where the anchor file of a SQLite database lives: beside it, `<database>.anchors`."""
    return f"{database}.anchors"


def append_to_file(path: str, anchor: Anchor) -> None:
    """Append one line and fsync it; the file is created with mode 0600 (blocking: use a thread).

    A line torn by a crash is closed first, so the new checkpoint starts a line of its own.
    """
    created = not os.path.exists(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps no looser mode than a new one
        line = encode_anchor(anchor)
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as existing:
                existing.seek(size - 1)
                if existing.read(1) != b"\n":
                    line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:  # the file's name must survive a crash as well as its contents
        folder = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            with contextlib.suppress(OSError):
                os.fsync(folder)
        finally:
            os.close(folder)


def parse_anchor_lines(data: bytes, source: str) -> tuple[list[Anchor], list[str]]:
    """The checkpoints in `data` (JSON lines), and a sentence for each line that is not one.

    A last line without its newline is a write cut short by a crash: it is skipped, not an error.
    """
    anchors: list[Anchor] = []
    problems: list[str] = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            anchors.append(_decoder.decode(line))
        except msgspec.DecodeError as exc:
            if number == len(lines):  # no newline after it: a torn final write
                continue
            problems.append(f"{source} line {number} is not a checkpoint: {exc}")
    return anchors, problems


def read_file(path: str) -> tuple[list[Anchor], list[str]]:
    """An anchor file's checkpoints (see `parse_anchor_lines`); AnchorFileError if unreadable."""
    try:
        with open(path, "rb") as source:
            data = source.read()
    except OSError as exc:
        raise AnchorFileError(f"cannot read the anchor file {path}: {exc.strerror}") from None
    return parse_anchor_lines(data, path)
