"""Declaring and loading tasks: the decorators, the registry's rules, and TASKS_MODULES loading
with its one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from orchestrator.domain.states import State
from orchestrator.tasks import (
    InvalidTaskConfig,
    TaskContext,
    TaskLoadError,
    TaskRegistry,
    load_task_modules,
    step,
    task_type,
)
from tests.usertasks import sample_tasks


def test_a_loaded_module_replaces_its_states_tasks_and_adds_its_types() -> None:
    registry = load_task_modules(["tests.usertasks.sample_tasks"])

    names = {state: spec.name for state, spec in registry.steps().items()}
    assert names == {
        State.INIT: "initialize",
        State.PREPARE: "prepare",
        State.EXECUTE: "crunch",
        State.VALIDATE: "check",
        State.COMPLETE: "finalize",
    }
    crunch = registry.spec_of(State.EXECUTE)
    assert (crunch.timeout, crunch.retries, crunch.source) == (30, 2, sample_tasks.__name__)
    assert registry.spec_of(State.VALIDATE).is_async
    assert not crunch.is_async
    assert registry.type_names() == ["resize"]


def test_a_declared_config_is_checked_and_converted_naming_the_field() -> None:
    registry = load_task_modules(["tests.usertasks.sample_tasks"])

    assert registry.spec_of(State.EXECUTE).config_for({"size": 4}) == sample_tasks.Crunch(size=4)
    with pytest.raises(InvalidTaskConfig, match=r"Expected `int`, got `str` - at `\$.config.size`"):
        registry.check_config({"size": "four"})
    resize = registry.task_type("resize")
    assert resize is not None
    with pytest.raises(
        InvalidTaskConfig, match=r"missing required field `height` - at `\$.config`"
    ):
        resize.config_for({"width": 3})


def test_replacing_a_built_in_drops_its_config_checks() -> None:
    built_in = TaskRegistry()
    with pytest.raises(InvalidTaskConfig, match="iterations"):
        built_in.check_config({"iterations": "many"})

    registry = load_task_modules(["tests.usertasks.sample_tasks"])

    registry.check_config({"iterations": "many"})  # EXECUTE is crunch now: no iterations


def write_module(folder: Path, name: str, source: str) -> None:
    (folder / f"{name}.py").write_text(source, encoding="utf-8")


@pytest.fixture
def module_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("usermod_")]:
        del sys.modules[name]


HEADER = "from orchestrator.tasks import step, task_type\n"


def test_two_modules_claiming_one_state_stop_the_load_naming_both(module_folder: Path) -> None:
    body = '@step("PREPARE")\ndef {name}(ctx):\n    return {{}}\n'
    write_module(module_folder, "usermod_one", HEADER + body.format(name="first"))
    write_module(module_folder, "usermod_two", HEADER + body.format(name="second"))

    with pytest.raises(TaskLoadError) as raised:
        load_task_modules(["usermod_one", "usermod_two"])

    assert str(raised.value) == (
        "task module 'usermod_two': two tasks for PREPARE: 'first' (usermod_one) and "
        "'second' (usermod_two)"
    )


def test_a_type_named_like_a_built_in_or_twice_stops_the_load(module_folder: Path) -> None:
    write_module(
        module_folder, "usermod_sleep", HEADER + '@task_type("sleep")\ndef s(ctx):\n    return {}\n'
    )
    with pytest.raises(TaskLoadError, match=r"'sleep' .* is a built-in type"):
        load_task_modules(["usermod_sleep"])
    body = '@task_type("thumb")\ndef {name}(ctx):\n    return {{}}\n'
    write_module(module_folder, "usermod_a", HEADER + body.format(name="a"))
    write_module(module_folder, "usermod_b", HEADER + body.format(name="b"))
    with pytest.raises(
        TaskLoadError, match="two task types named 'thumb': in usermod_a and usermod_b"
    ):
        load_task_modules(["usermod_a", "usermod_b"])


def test_a_module_that_cannot_be_imported_is_one_line(module_folder: Path) -> None:
    write_module(module_folder, "usermod_broken", "import nothing_of_that_name\n")

    with pytest.raises(TaskLoadError) as missing:
        load_task_modules(["usermod_absent"])
    with pytest.raises(TaskLoadError) as broken:
        load_task_modules(["usermod_broken"])

    assert str(missing.value) == (
        "cannot import the task module 'usermod_absent': ModuleNotFoundError: "
        "No module named 'usermod_absent'"
    )
    assert "usermod_broken" in str(broken.value)
    assert "nothing_of_that_name" in str(broken.value)
    assert "\n" not in str(broken.value)


def test_a_module_without_tasks_is_refused(module_folder: Path) -> None:
    write_module(module_folder, "usermod_empty", "def helper(ctx):\n    return {}\n")

    with pytest.raises(TaskLoadError, match="declares no task"):
        load_task_modules(["usermod_empty"])


def test_a_function_imported_into_a_second_module_counts_once(module_folder: Path) -> None:
    write_module(
        module_folder, "usermod_base", HEADER + '@step("INIT")\ndef begin(ctx):\n    return {}\n'
    )
    write_module(module_folder, "usermod_reexport", "from usermod_base import begin\n")

    registry = load_task_modules(["usermod_base", "usermod_reexport"])

    assert registry.spec_of(State.INIT).name == "begin"


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (
            lambda: step("FAILED"),
            "a step runs in one of INIT, PREPARE, EXECUTE, VALIDATE, COMPLETE",
        ),
        (lambda: step("EXECUTE", retries=-1), "retries must be from 0 to 100"),
        (lambda: step("EXECUTE", timeout=0), "timeout must be a positive number"),
        (lambda: step("EXECUTE", config=dict), "config must be a msgspec.Struct class"),
        (lambda: task_type("Bad Name"), "a task type is 1 to 64 of a-z"),
    ],
)
def test_a_bad_declaration_is_refused_where_it_is_written(declare: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        marker = declare()  # type: ignore[operator]
        marker(lambda ctx: {})


class Size(msgspec.Struct):
    size: int


def test_register_takes_the_same_options_as_the_decorator() -> None:
    registry = TaskRegistry()

    registry.register(State.PREPARE, lambda ctx: {}, "prep", retries=3, config_type=Size)

    spec = registry.spec_of(State.PREPARE)
    assert (spec.name, spec.retries, spec.config_type) == ("prep", 3, Size)
    assert spec.retry_delay(1) == 1.0
    assert spec.retry_delay(3) == 4.0
    assert spec.retry_delay(30) == 300.0


def test_a_tasks_log_lines_name_the_task_the_workflow_and_the_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    context = TaskContext(
        workflow_id=3, state=State.EXECUTE, config={}, retries=0, task_name="crunch", attempt=2
    )

    with caplog.at_level("INFO", logger="orchestrator.tasks"):
        context.log.info("summed %d numbers", 5)

    assert caplog.messages == ["crunch (workflow 3, attempt 2): summed 5 numbers"]
