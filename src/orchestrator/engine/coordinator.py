"""The coordinator: drives workflows through their states on the asyncio loop.

For each step it records StepStarted, hands the task to the worker pool, awaits it without
blocking the loop, and records the outcome with the version it read. If the workflow moved on
meanwhile (cancelled, or the step's result already recorded), `decide` refuses the late outcome
and it is discarded. A step that was started before a crash is run again on start-up; its outcome
is recorded once, because the append carries the expected version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable, Sequence
from datetime import UTC, datetime
from types import MappingProxyType

import msgspec

from orchestrator.domain.aggregates import WORKFLOW
from orchestrator.domain.commands import (
    AdvanceWorkflow,
    BeginStep,
    CancelWorkflow,
    Command,
    CreateWorkflow,
    DeleteWorkflow,
    EditWorkflow,
    FailStep,
    FailStepAttempt,
    FinishStep,
    LaunchWorkflow,
    ReportProgress,
    RetryWorkflow,
    StartWorkflow,
)
from orchestrator.domain.errors import (
    InvalidTransition,
    StepInProgress,
    WorkflowNotFound,
)
from orchestrator.domain.events import WorkflowTransitioned
from orchestrator.domain.states import State, Trigger, is_running
from orchestrator.domain.transitions import FORWARD_TRIGGER, target
from orchestrator.domain.workflow import Workflow, allowed_actions
from orchestrator.engine.backlog import Backlog
from orchestrator.engine.drivers import Drivers
from orchestrator.engine.driving import drive
from orchestrator.engine.executor import NotStarted, TaskTimedOut, WorkerPool
from orchestrator.engine.ownership import HandOver, Ownership, step_task_key
from orchestrator.engine.retry import record_or_discard, retry_store_errors
from orchestrator.engine.service import Outcome, WorkflowService
from orchestrator.engine.task_context import NoRetry, TaskContext
from orchestrator.engine.task_execution import ProgressReporter, run_attempt
from orchestrator.engine.task_specs import TaskSpec
from orchestrator.engine.tasks import TaskRegistry
from orchestrator.eventstore.base import Folding

log = logging.getLogger(__name__)

_API = {"actor": "api"}
_ENGINE = {"actor": "engine"}


class Coordinator:
    """Starts, advances, retries, cancels and deletes workflows, and runs their tasks."""

    def __init__(
        self,
        service: WorkflowService,
        pool: WorkerPool,
        registry: TaskRegistry,
        *,
        task_timeout: float,
        time_scale: float,
        max_queued_steps: int = 1000,
        ownership: Ownership | None = None,
    ) -> None:
        self.service = service
        self.pool = pool
        self.registry = registry
        self._task_timeout = task_timeout
        self._time_scale = time_scale
        #: Leases, where processes share the log; None drives everything it is given.
        self.ownership = ownership
        self._drivers = Drivers("workflow", ownership)
        #: Refuses commands that would add steps while too many wait for a thread.
        self.backlog = Backlog(pool, lambda: len(self._drivers), max_queued_steps, "steps")
        #: Set when a stopping server's SHUTDOWN_GRACE_SECONDS are over: a `next` still
        #: waiting for its step answers 503 then, before the server cancels the request.
        self.grace_over = asyncio.Event()

    # Client commands ---------------------------------------------------------------------------

    async def start(self, command: StartWorkflow) -> Outcome:
        """Create a workflow; an automatic one starts its first step in the same append."""
        self.registry.check_config(command.config)
        if not command.auto_start:
            return await self.service.create(command, _API)
        with self.backlog.admit():
            outcome = await self.service.create(command, _API, [self._begin(State.INIT)])
            self._drive(outcome.workflow.workflow_id, outcome.workflow)
        return outcome

    async def create(self, command: CreateWorkflow) -> Outcome:
        """Create a workflow that waits in INIT until `launch`."""
        self.registry.check_config(command.config)
        return await self.service.create(command, _API)

    async def launch(self, workflow_id: int) -> Outcome:
        """Start a created workflow; it then runs by itself, its first step begun at once."""
        commands: list[Command] = [LaunchWorkflow(), self._begin(State.INIT)]
        with self.backlog.admit():
            outcome = await self.service.execute_all(workflow_id, commands, _API)
            self._drive(workflow_id, outcome.workflow)
        return outcome

    async def edit(self, workflow_id: int, command: EditWorkflow) -> Outcome:
        """Change name, description or config (refused mid-run)."""
        if isinstance(command.config, dict):
            self.registry.check_config(command.config)
        return await self.service.execute(workflow_id, command, _API)

    async def advance(self, workflow_id: int) -> Outcome:
        """`next`: run the current state's task and return once its outcome is recorded."""
        current = await self._current(workflow_id)
        if self._drivers.is_driving(workflow_id) and is_running(current.state):
            raise StepInProgress(workflow_id, _step_name(current))
        # A state without a task (FAILED, COMPLETE, ...) is refused by decide with the reason.
        name = self.registry.name_of(current.state) or ""
        with self.backlog.admit():
            begun = await self.service.execute(workflow_id, AdvanceWorkflow(task=name), _API)
            task = self._drivers.start(workflow_id, self._finish_manual_step(begun.workflow))
        if task is None:  # the engine picked it up meanwhile (a restart's resume): let it run
            raise StepInProgress(workflow_id, _step_name(begun.workflow))
        stepped = await self._wait_for_step(workflow_id, task)
        latest = await self.service.load(workflow_id)
        if latest is None or latest.deleted:
            raise WorkflowNotFound(workflow_id)
        if stepped is None:  # cancelled (or moved on elsewhere) while the task ran
            raise step_discarded(latest)
        return Outcome(latest, self.service.last_position)

    async def _wait_for_step(
        self, workflow_id: int, task: asyncio.Task[Workflow | None]
    ) -> Workflow | None:
        """The driver's result, or ShuttingDown once the shutdown grace is over.

        Never cancels the driver: a client that disconnects must not abandon a step that has
        been recorded (asyncio.wait leaves what it waits for running when it is cancelled).
        """
        grace_over = asyncio.ensure_future(self.grace_over.wait())
        try:
            await asyncio.wait({task, grace_over}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            grace_over.cancel()
        if not task.done():
            raise ShuttingDown(workflow_id)
        return task.result()

    async def retry(self, workflow_id: int) -> Outcome:
        """FAILED -> INIT with one more retry; an automatic workflow runs again."""
        with self.backlog.admit():
            outcome = await self.service.execute(workflow_id, RetryWorkflow(), _API)
            if outcome.workflow.auto_start:
                self._drive(workflow_id)
        return outcome

    async def cancel(self, workflow_id: int) -> Outcome:
        """Record CANCELLED now; a running task is told to stop and its result is discarded."""
        outcome = await self.service.execute(workflow_id, CancelWorkflow(), _API)
        self._drivers.cancel_running(workflow_id)
        return outcome

    async def delete(self, workflow_id: int) -> Outcome:
        """Append the tombstone of a finished workflow."""
        return await self.service.execute(workflow_id, DeleteWorkflow(), _API)

    # Driving -----------------------------------------------------------------------------------

    def resume(self, workflow_ids: Iterable[int]) -> None:
        """After a restart: pick up every workflow that was in flight."""
        for workflow_id in workflow_ids:
            self._drive(workflow_id)

    async def stop(self, grace: float = 0.0) -> None:
        """Stop driving: steps in hand get `grace` seconds to finish and be recorded; the rest
        stay recorded as started and run again on the next start."""
        await self._drivers.stop(grace)

    async def wait_idle(self) -> None:
        """Wait until no workflow is being driven (for tests and orderly shutdown)."""
        await self._drivers.wait_idle()

    def is_driving(self, workflow_id: int) -> bool:
        """True while this process drives the workflow."""
        return self._drivers.is_driving(workflow_id)

    def drive(self, workflow_id: int) -> None:
        """Drive one workflow (taken over from another process, or resumed)."""
        self._drive(workflow_id)

    def notice(self, events: Sequence[Folding]) -> None:
        """Events the read models took in (from any process): a workflow cancelled elsewhere
        while this process runs its step has its task told to stop, as a local cancel does."""
        for recorded in events:
            if recorded.type != "WorkflowTransitioned":
                continue
            found = WORKFLOW.parse_stream(recorded.stream_id)
            if found is None or not self._drivers.is_driving(found):
                continue
            event = WORKFLOW.decode(recorded.data, recorded.schema_version)
            if isinstance(event, WorkflowTransitioned) and event.trigger is Trigger.CANCEL:
                self._drivers.cancel_running(found)

    def lose(self, workflow_id: int) -> None:
        """Stop driving a workflow whose lease another process took over."""
        self._drivers.lose(workflow_id)

    def _drive(self, workflow_id: int, known: Workflow | None = None) -> None:
        self._drivers.start(workflow_id, self._drive_loop(workflow_id, known))

    async def _drive_loop(self, workflow_id: int, known: Workflow | None) -> Workflow | None:
        # A draining pool (the server stops) means: record this step's outcome, begin no other.
        return await drive(
            lambda: self._load_fresh(workflow_id),
            self._next_step,
            draining=lambda: self.pool.draining,
            first=known,
        )

    def _next_step(self, workflow: Workflow) -> Awaitable[Workflow | None] | None:
        """What the engine does next for `workflow`, or None if nothing (until a client acts)."""
        if workflow.deleted:
            return None
        if workflow.step is not None:
            # Also the path of a step resumed after a restart: it runs again.
            return self._run_task(workflow)
        if workflow.needs_step() and workflow.is_driven_automatically():
            return self._record(workflow.workflow_id, [self._begin(workflow.state)])
        return None

    async def _finish_manual_step(self, begun: Workflow) -> Workflow | None:
        """Run a `next` step; the workflow after it, or None if its result was discarded."""
        stepped = await self._run_task(begun)
        # Entering COMPLETE runs finalize, for manual workflows too.
        if stepped is not None and stepped.step is State.COMPLETE:
            await self._run_task(stepped)
        return stepped

    def _begin(self, state: State) -> BeginStep:
        return BeginStep(task=self.registry.spec_of(state).name)

    async def _run_task(self, workflow: Workflow) -> Workflow | None:
        """Run the started step's task, attempt after attempt while its retries allow, and
        record its outcome.

        On success the next state's step is begun in the same append when the engine drives
        it (an automatic workflow, or finalize on reaching COMPLETE): one append per step.
        """
        state = workflow.step
        assert state is not None
        spec = self.registry.spec_of(state)
        if workflow.step_task is not None and workflow.step_task != spec.name:
            # The step began under task code this server no longer has (a restart with changed
            # task modules): running another task in its place would be a silent change. Where
            # another live process has that task, it is left to that process.
            if self.ownership is not None and await self.ownership.runs_elsewhere(
                step_task_key(workflow.step_task)
            ):
                log.info(
                    "workflow %d: its %s step's task %r is not loaded here; left to a process "
                    "that has it",
                    workflow.workflow_id,
                    state.value,
                    workflow.step_task,
                )
                raise HandOver
            gone = (
                f"the {state.value} step's task {workflow.step_task!r} is no longer loaded (this "
                f"server runs {spec.name!r} in {state.value}); retry the workflow to run that"
            )
            return await self._record(workflow.workflow_id, [FailStep(state=state, error=gone)])
        while True:
            if not await self._wait_for_retry(workflow):
                return None
            started = time.monotonic()
            commands: list[Command]
            try:
                result = await self._attempt(workflow, spec)
            except NotStarted:  # the server stops: the step stays started, for the next start
                return None
            except Exception as exc:
                attempt = workflow.step_attempts + 1
                timed_out = isinstance(exc, TaskTimedOut)
                error = (
                    f"{state.value} step timed out after {exc.seconds:g} s"
                    if isinstance(exc, TaskTimedOut)
                    else f"{type(exc).__name__}: {exc}"
                )
                duration = time.monotonic() - started
                if attempt <= spec.retries and not isinstance(exc, NoRetry):
                    retry = FailStepAttempt(
                        state=state,
                        attempt=attempt,
                        error=error,
                        duration=duration,
                        timed_out=timed_out,
                        retry_in=spec.retry_delay(attempt),
                    )
                    after = await self._record(workflow.workflow_id, [retry])
                    if after is None:
                        return None
                    workflow = after
                    continue
                commands = [
                    FailStep(state=state, error=error, duration=duration, timed_out=timed_out)
                ]
            else:
                duration = time.monotonic() - started
                commands = [FinishStep(state=state, result=result, duration=duration)]
                trigger = FORWARD_TRIGGER.get(state)
                following = target(state, trigger) if trigger else None
                if following is not None and (workflow.auto_start or following is State.COMPLETE):
                    commands.append(self._begin(following))
            return await self._record(workflow.workflow_id, commands)

    async def _attempt(self, workflow: Workflow, spec: TaskSpec) -> dict[str, object]:
        """One attempt of the step's task, its progress recorded while it runs."""
        state = workflow.step
        assert state is not None
        workflow_id = workflow.workflow_id

        async def record_progress(fraction: float, note: str | None) -> None:
            command = ReportProgress(state=state, fraction=fraction, note=note)
            await self.service.execute(workflow_id, command, _ENGINE)

        reporter = ProgressReporter(record_progress)
        try:
            with self._drivers.running(workflow_id) as cancelled:
                context = TaskContext(
                    workflow_id=workflow_id,
                    state=state,
                    config=spec.config_for(workflow.config),
                    retries=workflow.retries,
                    time_scale=self._time_scale,
                    cancelled=cancelled,
                    attempt=workflow.step_attempts + 1,
                    task_name=spec.name,
                    # A copy all the way down, like the config: they are the workflow's own.
                    results=MappingProxyType(
                        msgspec.json.decode(msgspec.json.encode(workflow.task_results))
                    ),
                    _progress=reporter.report,
                )
                timeout = spec.timeout or self._task_timeout
                return await run_attempt(spec, context, self.pool, timeout)
        finally:
            reporter.close()

    async def _wait_for_retry(self, workflow: Workflow) -> bool:
        """Wait until the step's next attempt is due (after a failed one); False if the workflow
        was cancelled meanwhile."""
        if workflow.step_retry_at is None:
            return True
        left = (workflow.step_retry_at - datetime.now(UTC)).total_seconds()
        if left <= 0:
            return True
        with self._drivers.running(workflow.workflow_id) as cancelled:
            deadline = time.monotonic() + left
            while (wait := deadline - time.monotonic()) > 0:
                if cancelled.is_set():
                    return False
                await asyncio.sleep(min(wait, 0.1))
        return True

    async def _record(
        self,
        workflow_id: int,
        commands: Sequence[Command],
    ) -> Workflow | None:
        names = "+".join(type(command).__name__ for command in commands)
        # Never lose an outcome to a passing store failure: decided afresh at each attempt.
        outcome = await record_or_discard(
            lambda: self.service.execute_all(workflow_id, commands, _ENGINE),
            what=f"workflow {workflow_id}: could not record {names}",
            discarded=f"workflow {workflow_id}: discarded {names}",
            log=log,
        )
        return None if outcome is None else outcome.workflow

    async def _load_fresh(self, workflow_id: int) -> Workflow | None:
        """The workflow read from the log, retried like `_record` while the store fails: a
        driver that gave up would leave a started step that nobody runs until a restart."""
        return await retry_store_errors(
            lambda: self.service.load(workflow_id, fresh=True),
            what=f"workflow {workflow_id}: could not read it",
            log=log,
        )

    async def _current(self, workflow_id: int) -> Workflow:
        workflow = await self.service.load(workflow_id)
        if workflow is None or workflow.deleted:
            raise WorkflowNotFound(workflow_id)
        return workflow


class ShuttingDown(Exception):
    """The server stops and its shutdown grace ended before the `next`'s step finished."""

    def __init__(self, workflow_id: int) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"the server is shutting down and workflow {workflow_id}'s step did not finish "
            "within SHUTDOWN_GRACE_SECONDS; the step stays recorded as started and runs again "
            "when the server starts again"
        )


def step_discarded(latest: Workflow) -> InvalidTransition:
    """The refusal of a `next` whose step result was discarded because the workflow moved on."""
    return InvalidTransition(
        latest.workflow_id,
        latest.state.value,
        "next",
        allowed_actions(latest),
        "its step's result was discarded: the workflow moved on while the step ran",
    )


def _step_name(workflow: Workflow | None) -> str:
    if workflow is None:
        return "unknown"
    return (workflow.step or workflow.state).value
