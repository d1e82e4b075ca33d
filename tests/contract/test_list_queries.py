"""List reads of every backend's read-model storage: name search, status, paging and order.

The dashboard (`/ui`) pages, filters and searches on the server, so each backend must answer
`ListQuery` alike: the same rows, in the same order, for the same query. The rows are saved
straight into fresh storage of each backend, as the projector saves them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.domain.states import State
from orchestrator.domain.tasks import Task
from orchestrator.domain.workflow import Workflow
from orchestrator.projections.models import TASKS, WORKFLOWS, Row
from orchestrator.projections.storage import ListQuery, ProjectionStorage
from tests.contract.conftest import make_storage

pytestmark = pytest.mark.anyio

#: id -> (name, state, deleted) of the workflows every test starts with.
WORKFLOW_ROWS: dict[int, tuple[str, State, bool]] = {
    1: ("Nightly-Report", State.COMPLETE, False),
    2: ("nightly backup", State.FAILED, False),
    3: ("weekly_report", State.COMPLETE, False),
    4: ("100% done", State.INIT, False),
    5: ("a_b", State.EXECUTE, False),
    6: ("aXb", State.COMPLETE, False),
    7: ("ÄBC ärger", State.CANCELLED, False),
    8: ("nightly report (deleted)", State.COMPLETE, True),
    9: ("REPORT for Monday", State.COMPLETE, False),
    10: ("back\\slash", State.INIT, False),
}


def workflow_row(workflow_id: int, name: str, state: State, deleted: bool) -> Row:
    return WORKFLOWS.row(
        workflow_id,
        Workflow(workflow_id=workflow_id, name=name, state=state, version=1, deleted=deleted),
    )


@pytest.fixture
async def storage(backend: str, tmp_path: Path) -> AsyncIterator[ProjectionStorage]:
    """Fresh read-model storage of each backend holding WORKFLOW_ROWS and one task named like
    a workflow (a list of workflows must not show it)."""
    made = make_storage(backend, tmp_path)
    await made.store.open()
    tables = made.tables.storage()
    await tables.open()
    rows = [workflow_row(i, *columns) for i, columns in WORKFLOW_ROWS.items()]
    task = Task(
        task_id=1,
        workflow_id=None,
        name="nightly report task",
        task_type="sleep",
        description=None,
        config={},
        max_retries=0,
        version=1,
    )
    rows.append(TASKS.row(1, task))
    await tables.save(rows, {}, position=len(rows), expected_checkpoint=0)
    try:
        yield tables
    finally:
        await tables.close()
        await made.store.close()


async def ids(storage: ProjectionStorage, **query: object) -> list[int]:
    """The ids of the workflows `ListQuery(**query)` lists, in the order listed."""
    found = await storage.list_rows(ListQuery(kind=WORKFLOWS.kind, **query))  # type: ignore[arg-type]
    return [WORKFLOWS.decode_state(state).workflow_id for state in found]


async def test_a_name_search_finds_names_containing_it_ignoring_the_case(
    storage: ProjectionStorage,
) -> None:
    assert await ids(storage, name="nightly") == [1, 2]
    assert await ids(storage, name="REPORT") == [1, 3, 9]
    assert await ids(storage, name="y-r") == [1]


async def test_a_name_search_takes_percent_underscore_and_backslash_literally(
    storage: ProjectionStorage,
) -> None:
    assert await ids(storage, name="%") == [4]
    assert await ids(storage, name="a_b") == [5]
    assert await ids(storage, name="_") == [3, 5]
    assert await ids(storage, name="k\\s") == [10]


async def test_a_name_search_matches_other_letters_as_written(storage: ProjectionStorage) -> None:
    assert await ids(storage, name="ÄBC") == [7]
    assert await ids(storage, name="ärger") == [7]
    assert await ids(storage, name="äbc") == []


async def test_a_name_search_that_matches_nothing_lists_nothing(
    storage: ProjectionStorage,
) -> None:
    assert await ids(storage, name="no such workflow") == []


async def test_a_name_search_combines_with_the_status_and_the_page(
    storage: ProjectionStorage,
) -> None:
    assert await ids(storage, name="report", status="COMPLETE") == [1, 3, 9]
    assert await ids(storage, name="report", status="FAILED") == []
    assert await ids(storage, name="report", skip=1, limit=1) == [3]
    assert await ids(storage, name="report", skip=3) == []


async def test_descending_lists_the_newest_first_and_pages_from_there(
    storage: ProjectionStorage,
) -> None:
    assert await ids(storage, descending=True) == [10, 9, 7, 6, 5, 4, 3, 2, 1]
    assert await ids(storage, descending=True, skip=2, limit=3) == [7, 6, 5]
    assert await ids(storage, descending=True, status="COMPLETE") == [9, 6, 3, 1]
    assert await ids(storage, descending=True, name="report", limit=2) == [9, 3]


async def test_without_a_search_or_an_order_the_list_is_as_before(
    storage: ProjectionStorage,
) -> None:
    assert await ids(storage) == [1, 2, 3, 4, 5, 6, 7, 9, 10]
    assert await ids(storage, status="COMPLETE", skip=1, limit=2) == [3, 6]
