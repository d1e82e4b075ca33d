"""Reading the original orchestrator's SQLite database, for `orchestrator import-original`.

The original (FastAPI + SQLAlchemy) keeps its state in three tables: `workflows`,
`workflow_transitions` and `tasks`. SQLAlchemy stores an Enum member by its NAME, a DATETIME as
naive UTC text (`YYYY-MM-DD HH:MM:SS.ffffff`) and a JSON column as JSON text (`null`, or SQL NULL,
for None). This module turns those rows into typed records, tolerant of the variations such a file
shows in practice (any case in names, an ISO `T`, missing microseconds, NULL in nullable columns,
a column an older schema lacks), and refuses, naming the table and the id, any row it cannot read:
an import must never store half of what it understood.

The file is opened read-only (`mode=ro`), so reading it cannot change it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

from orchestrator.domain.states import State
from orchestrator.eventstore.sqlite_schema import ORIGINAL_TABLES

#: The original's task status names (its TaskStatus members).
TASK_STATUSES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED")


class ImportRefused(Exception):
    """The import cannot go on; the message says why. Nothing has been written."""


class UnreadableRow(ImportRefused):
    """One row of the original cannot be read; the message names its table and id."""

    def __init__(self, table: str, row_id: object, reason: str) -> None:
        self.table = table
        self.row_id = row_id
        super().__init__(f"{table} id {row_id} is unreadable: {reason}")


@dataclass(frozen=True)
class TransitionRow:
    """One row of `workflow_transitions`."""

    id: int
    from_state: State | None
    to_state: State
    trigger: str | None
    metadata: Any
    at: datetime | None


@dataclass(frozen=True)
class WorkflowRow:
    """One row of `workflows`, with its transitions in the order they were written (by id)."""

    id: int
    name: str
    description: str | None
    state: State
    config: dict[str, Any]
    task_results: dict[str, Any]
    retries: int
    error_message: str | None
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None
    transitions: list[TransitionRow] = field(default_factory=list)


@dataclass(frozen=True)
class TaskRow:
    """One row of `tasks`; `status` is one of TASK_STATUSES."""

    id: int
    workflow_id: int | None
    name: str
    task_type: str
    description: str | None
    config: dict[str, Any]
    status: str
    result: dict[str, Any] | None
    error_message: str | None
    retry_count: int
    max_retries: int
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime | None


@dataclass
class Original:
    """Everything read from the original's database."""

    workflows: list[WorkflowRow]
    tasks: list[TaskRow]
    #: Transitions whose workflow row no longer exists (the original deleted it); not imported.
    orphan_transitions: int = 0


def read_original(path: str) -> Original:
    """Every workflow (with its transitions) and task of the original's database at `path`."""
    if not os.path.isfile(path):
        raise ImportRefused(f"no database at {path}")
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            conn.row_factory = sqlite3.Row
            found = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            missing = [t for t in ORIGINAL_TABLES if t not in {row[0] for row in found}]
            if missing:
                raise ImportRefused(
                    f"{path} is not a database of the original orchestrator: it has no table "
                    + ", ".join(missing)
                )
            tables = {
                table: [dict(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY id")]
                for table in ORIGINAL_TABLES
            }
    except sqlite3.Error as exc:
        raise ImportRefused(f"{path} cannot be read as a SQLite database: {exc}") from None
    transitions: dict[int, list[TransitionRow]] = {}
    for row in tables["workflow_transitions"]:
        owner = _Row("workflow_transitions", row).integer("workflow_id", required=True)
        transitions.setdefault(owner or 0, []).append(_transition(row))
    workflows = [_workflow(row, transitions) for row in tables["workflows"]]
    orphans = sum(len(moves) for moves in transitions.values())
    return Original(workflows, [_task(row) for row in tables["tasks"]], orphans)


def _transition(raw: dict[str, Any]) -> TransitionRow:
    row = _Row("workflow_transitions", raw)
    from_state = row.text("from_state")
    return TransitionRow(
        id=row.id,
        from_state=row.state("from_state") if from_state else None,
        to_state=row.state("to_state"),
        trigger=row.text("trigger"),
        metadata=row.json("transition_metadata"),
        at=row.time("created_at"),
    )


def _workflow(raw: dict[str, Any], transitions: dict[int, list[TransitionRow]]) -> WorkflowRow:
    row = _Row("workflows", raw)
    state = row.state("current_state") if row.text("current_state") else row.state("status")
    if row.text("status") and row.state("status") is not state:
        row.refuse(f"status {row.text('status')} and current_state {state.name} disagree")
    return WorkflowRow(
        id=row.id,
        name=row.text("name", required=True) or "",
        description=row.text("description"),
        state=state,
        config=row.json_object("config") or {},
        task_results=row.json_object("task_results") or {},
        retries=row.integer("retries") or 0,
        error_message=row.text("error_message"),
        started_at=row.time("started_at"),
        completed_at=row.time("completed_at"),
        created_at=row.time("created_at"),
        updated_at=row.time("updated_at"),
        transitions=transitions.pop(row.id, []),
    )


def _task(raw: dict[str, Any]) -> TaskRow:
    row = _Row("tasks", raw)
    status = _name(row.text("status", required=True) or "")
    if status not in TASK_STATUSES:
        row.refuse(f"status {row.text('status')!r} is not one of {', '.join(TASK_STATUSES)}")
    return TaskRow(
        id=row.id,
        workflow_id=row.integer("workflow_id"),
        name=row.text("name", required=True) or "",
        task_type=row.text("task_type", required=True) or "",
        description=row.text("description"),
        config=row.json_object("config") or {},
        status=status,
        result=row.json_object("result"),
        error_message=row.text("error_message"),
        retry_count=row.integer("retry_count") or 0,
        max_retries=row.integer("max_retries") or 0,
        started_at=row.time("started_at"),
        completed_at=row.time("completed_at"),
        created_at=row.time("created_at"),
    )


def _name(value: str) -> str:
    # An Enum stored by name ("EXECUTE"), by value in any case ("execute"), or as its repr's tail.
    return value.strip().rsplit(".", 1)[-1].upper()


class _Row:
    """One raw row and the typed reading of its columns; a column the table lacks is NULL."""

    def __init__(self, table: str, raw: dict[str, Any]) -> None:
        self.table = table
        self.raw = raw
        row_id = raw.get("id")
        if not isinstance(row_id, int) or isinstance(row_id, bool):
            raise UnreadableRow(table, row_id, f"its id {row_id!r} is not an integer")
        self.id: int = row_id

    def refuse(self, reason: str) -> NoReturn:
        """Raise UnreadableRow for this row."""
        raise UnreadableRow(self.table, self.id, reason)

    def text(self, column: str, *, required: bool = False) -> str | None:
        value = self.raw.get(column)
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if value is None or (isinstance(value, str) and not value.strip() and not required):
            if required:
                self.refuse(f"{column} is missing")
            return None
        return str(value)

    def integer(self, column: str, *, required: bool = False) -> int | None:
        value = self.raw.get(column)
        if value is None:
            if required:
                self.refuse(f"{column} is missing")
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            self.refuse(f"{column} {value!r} is not an integer")

    def state(self, column: str) -> State:
        value = self.text(column, required=True) or ""
        try:
            return State[_name(value)]
        except KeyError:
            known = ", ".join(s.name for s in State)
            self.refuse(f"{column} {value!r} is not a workflow state ({known})")

    def time(self, column: str) -> datetime | None:
        value = self.text(column)
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            self.refuse(f"{column} {value!r} is not a date and time")
        # SQLAlchemy writes naive UTC; an offset, if one is there, is honoured.
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    def json(self, column: str) -> Any:
        value = self.text(column)
        if value is None:
            return None
        try:
            return json.loads(value)
        except ValueError as exc:
            self.refuse(f"{column} is not JSON: {exc}")

    def json_object(self, column: str) -> dict[str, Any] | None:
        value = self.json(column)
        if value is not None and not isinstance(value, dict):
            self.refuse(f"{column} is a JSON {type(value).__name__}, not an object")
        return value
