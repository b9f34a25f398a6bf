"""Starting one component, and waiting for a startup's starts: the steps ``ensure_initialized`` takes.

Each component starts in a task of its own once its requirements are ready; its
attempts go through the one retry loop, each attempt in a task of its own
(:func:`~infraboot._slot.open_attempt`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from ._deadlines import ABANDON_GRACE, TaskSet, cancel_until_done, retrieve, wait_until
from ._errors import describe
from ._log import event
from ._redact import scrub
from ._report import StartupReport
from ._retry import OutOfTime, retry
from ._slot import HOLDING, Slot, open_attempt
from ._state import ComponentState
from .exceptions import ConfigError, StartupError

__all__ = ["configure_all", "fail", "first_required_failure", "launch", "start_one", "startup_error", "wait_started"]

_S = ComponentState
# A start that outlives the startup deadline this long is cut off from outside.
_DEADLINE_GRACE = 0.5
_STARTING = frozenset({_S.PENDING, _S.STARTING})


def configure_all(closure: list[str], slots: Mapping[str, Slot]) -> None:
    """Run every component's ``configure()`` before any I/O; one ConfigError lists every problem."""
    problems: list[str] = []
    for n in closure:
        slot = slots[n]
        if slot.state in HOLDING or (slot.task is not None and not slot.task.done()):
            continue
        try:
            reason = slot.component.configure()
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if reason:
            slot.transition(_S.DISABLED, fresh=True, reason=scrub(reason))
            event(logging.INFO, "component_disabled", n, reason=slot.reason)
        elif slot.state is _S.DISABLED:
            slot.transition(_S.PENDING)
    if problems:
        raise ConfigError.from_problems(problems)


def launch(
    closure: list[str],
    slots: Mapping[str, Slot],
    deadline: float | None,
    tasks: TaskSet,
    lookup: Callable[[str], Any],
) -> list[asyncio.Task[None]]:
    """The start tasks of *closure*: the ones in flight, joined, and new ones for what is not ready."""
    starts: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    for n in closure:
        slot = slots[n]
        if slot.state in HOLDING or slot.state is _S.DISABLED:
            continue  # an unhealthy one keeps its resource: the probes bring it back
        if slot.recovery is not None and not slot.recovery.done():
            continue  # recovering in the background already; its outcome is reported as it stands
        if slot.task is None or slot.task.done():
            if slot.state is not _S.STOPPING:  # a stop in flight ends first (start_one waits for it)
                slot.transition(_S.PENDING, fresh=True)
            slot.task = loop.create_task(start_one(slot, slots, deadline, tasks, lookup), name=f"infraboot-start-{n}")
            slot.task.add_done_callback(retrieve)
        starts.append(slot.task)
    return starts


async def start_one(
    slot: Slot, slots: Mapping[str, Slot], deadline: float | None, tasks: TaskSet, lookup: Callable[[str], Any]
) -> None:
    """Start *slot* once its requirements are done starting; record the outcome, never raise (but a cancel)."""
    comp = slot.component
    try:
        stopping = slot.stop_task
        if stopping is not None and not stopping.done():
            await wait_until((stopping,), None)  # bounded by its own deadline
            slot.transition(_S.PENDING, fresh=True)
        for dep in comp.requires:
            dep_task = slots[dep].task
            if dep_task is not None and not dep_task.done():
                # Waited on, not awaited: a dependency's cancellation is its own, not ours.
                await wait_until((dep_task,), None)
        missing = [d for d in comp.requires if slots[d].state is not _S.READY]
        if missing:
            dep = missing[0]
            if all(slots[d].state is _S.DISABLED for d in missing):
                slot.transition(_S.DISABLED, reason=f"requires {dep!r}, which is disabled")
                event(logging.INFO, "component_disabled", slot.name, reason=slot.reason)
            else:
                slot.transition(_S.BLOCKED, reason=f"requires {dep!r}, which is {slots[dep].state.value}")
                event(logging.WARNING, "component_blocked", slot.name, reason=slot.reason)
            return
        slot.transition(_S.STARTING)
        event(logging.INFO, "component_starting", slot.name)
        own = None if comp.deadline is None else time.monotonic() + comp.deadline
        limit = own if deadline is None else (deadline if own is None else min(own, deadline))
        resources = {d: lookup(d) for d in comp.requires}  # overrides included, as get() sees them

        def log_retry(exc: Exception, attempt: int, wait: float) -> None:
            event(
                logging.WARNING,
                "component_retrying",
                slot.name,
                attempt=attempt,
                wait=wait,
                error_code=comp.classify(exc),
                error=describe(exc),
            )

        try:  # the first attempt outside the retry loop: one coroutine less on the common path
            resource, closer = await open_attempt(slot, 1, limit, resources, tasks)
        except Exception as exc:
            resource, closer = await retry(
                lambda n: open_attempt(slot, n, limit, resources, tasks),
                policy=comp.retry_policy,
                retryable=comp.is_retryable,
                deadline=limit,
                on_retry=log_retry,
                failed=exc,
            )
    except asyncio.CancelledError:
        slot.transition(_S.FAILED, error="start was cancelled", error_code="cancelled")
        raise
    except Exception as exc:  # the attempts are used up: record, never raise
        fail(slot, exc)
        return
    slot.transition(_S.READY, resource=resource, closer=closer)
    event(
        logging.INFO,
        "component_ready",
        slot.name,
        duration=(slot.ended_at or 0) - (slot.started_at or 0),
        attempts=slot.attempts,
    )


def fail(slot: Slot, exc: Exception) -> None:
    """Record a start that gave up: the error, its code, and whether waiting could heal it."""
    comp = slot.component
    code = comp.classify(exc)
    slot.transition(_S.FAILED, error=describe(exc), error_code=code)
    slot.healable = isinstance(exc, OutOfTime) or comp.is_retryable(exc)
    event(
        logging.ERROR if comp.required else logging.WARNING,
        "component_failed",
        slot.name,
        attempts=slot.attempts,
        error_code=code,
        error=slot.error,
        required=comp.required,
    )


async def wait_started(
    starts: list[asyncio.Task[None]],
    closure: list[str],
    slots: Mapping[str, Slot],
    deadline: float | None,
    *,
    demand: Counter[str],
    abandoned: TaskSet,
) -> str | None:
    """Wait for the *starts* of one call; return the first failed required component, or ``None``.

    Returns as soon as a required component fails. Past the startup deadline (plus a
    short grace) the starts this call alone asked for are cut off and recorded as
    timed out; starts other callers also wait for are left alone.
    """
    by_task = {slot.task: slot for n in closure if (slot := slots[n]).task is not None}

    def required_failed(task: asyncio.Future[Any]) -> bool:
        slot = by_task.get(task)  # type: ignore[call-overload]
        return slot is not None and slot.component.required and slot.state in (_S.FAILED, _S.BLOCKED)

    timeout_at = None if deadline is None else deadline + _DEADLINE_GRACE
    pending = await wait_until(starts, timeout_at, until=required_failed)
    failed = first_required_failure(closure, slots)
    if failed is not None or not pending:
        return failed
    ours = [n for n in closure if (t := slots[n].task) is not None and t in pending and demand[n] <= 1]
    for task in await cancel_until_done([t for n in ours if (t := slots[n].task) is not None], ABANDON_GRACE):
        abandoned.adopt(task)  # type: ignore[arg-type]
    for n in ours:  # starts other callers wait for are theirs: left alone, reported as still starting
        slot = slots[n]
        if slot.state in _STARTING:
            fail(slot, OutOfTime("startup_timeout exceeded"))
    failed = first_required_failure(closure, slots)
    if failed is None:  # a required start shared with another caller is still running: too late for us
        failed = next((n for n in closure if slots[n].component.required and slots[n].state in _STARTING), None)
    return failed


def first_required_failure(closure: list[str], slots: Mapping[str, Slot]) -> str | None:
    for n in closure:
        slot = slots[n]
        if slot.component.required and slot.state in (_S.FAILED, _S.BLOCKED):
            return n
    return None


def startup_error(slot: Slot, report: StartupReport) -> StartupError:
    """The error for a required component that failed: where, how often, why, what was rolled back, the fix."""
    name = slot.name
    result = report.components[name]
    if slot.state is _S.BLOCKED:
        cause = slot.reason or "a requirement is unavailable"
    elif slot.state in _STARTING:
        cause = "timeout: still starting (for another caller too) when startup_timeout ran out"
    else:
        cause = f"{slot.error_code}: {slot.error}"
    rolled = [n for n, r in report.components.items() if r.state is _S.STOPPED]
    target = slot.component.target
    msg = (
        f"required component {name!r}{f' at {target}' if target else ''} failed after {result.attempts} attempt"
        f"{'' if result.attempts == 1 else 's'} ({cause})"
    )
    if rolled:
        msg += f"; rolled back: {', '.join(rolled)}"
    msg += ". Fix the cause, or mark the component required=False to start without it."
    return StartupError(scrub(msg), component=name, attempts=result.attempts, report=report)
