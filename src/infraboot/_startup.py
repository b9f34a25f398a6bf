"""Starting components: the steps ``ensure_initialized`` takes.

A start is driven by callbacks, not by a task of its own: once a component's
requirements have settled, its first attempt runs in a task of its own, watched by a
timer. An attempt that ignores its cancellation at the deadline is abandoned (a
resource it makes later is closed); retries run in one more task, each attempt again
in a task of its own (:func:`~infraboot._slot.open_attempt`). So no start ever waits
for an attempt past its deadline, and a start that succeeds at once costs one task.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from ._component import Closer, Context, NotConfigured
from ._deadlines import ABANDON_GRACE, TaskSet, cancel_until_done, raise_if_cancelled, wait_until
from ._errors import describe
from ._log import event
from ._redact import scrub
from ._report import StartupReport
from ._retry import OutOfTime, retry
from ._slot import HOLDING, AttemptTimeout, Slot, close_late, open_attempt
from ._state import ComponentState
from ._switches import env_prefix, read_switches
from ._variables import check_variables
from .exceptions import ConfigError, StartupError

__all__ = [
    "abort",
    "configure_all",
    "fail",
    "first_required_failure",
    "launch",
    "startup_error",
    "unsettled",
    "wait_started",
]

_S = ComponentState
# A start that outlives the startup deadline this long is cut off from outside.
_DEADLINE_GRACE = 0.5
_STARTING = frozenset({_S.PENDING, _S.STARTING})


def unsettled(slot: Slot) -> bool:
    """Whether a start of *slot* is under way."""
    return slot.settled is not None and not slot.settled.done()


def configure_all(closure: list[str], slots: Mapping[str, Slot]) -> None:
    """Run every component's ``configure()`` before any I/O; one ConfigError lists every problem."""
    problems: list[str] = []
    checked = False
    for n in closure:
        slot = slots[n]
        if slot.state in HOLDING or unsettled(slot):
            continue
        if not checked:  # a start is due: say which variables look misspelt (once each per process)
            check_variables(s.component for s in slots.values())
            checked = True
        try:
            reason = None if hasattr(slot.component, "env_names") else read_switches(slot.component)
            reason = reason or slot.component.configure()
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if isinstance(reason, NotConfigured):
            slot.transition(_S.FAILED, fresh=True, error=scrub(reason), error_code="not_configured")
            slot.healable = False
            event(logging.WARNING, "component_not_configured", n, reason=slot.error)
        elif reason:
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
) -> list[asyncio.Future[None]]:
    """Start what in *closure* is not ready; returns the futures that settle when each start ends.

    A start already under way (another caller's) is joined, not repeated.
    """
    settled: list[asyncio.Future[None]] = []
    loop = asyncio.get_running_loop()
    for n in closure:
        slot = slots[n]
        if slot.state in HOLDING or slot.state is _S.DISABLED or slot.error_code == "not_configured":
            continue  # an unhealthy one keeps its resource: the probes bring it back
        if slot.recovery is not None and not slot.recovery.done():
            continue  # recovering in the background already; its outcome is reported as it stands
        if not unsettled(slot):
            if slot.state is not _S.STOPPING and (slot.state is not _S.PENDING or slot.attempts):
                slot.transition(_S.PENDING, fresh=True)  # a stop in flight ends first (the start waits for it)
            slot.settled = loop.create_future()
            _Start(slot, slots, deadline, tasks, lookup).schedule()
        settled.append(slot.settled)  # type: ignore[arg-type]
    return settled


class _Start:
    """One start of one component, moved along by callbacks: requirements, attempt, timer, retries."""

    __slots__ = ("budget", "deadline", "limit", "lookup", "slot", "slots", "tasks", "timed_out", "timer", "waiting")

    def __init__(
        self,
        slot: Slot,
        slots: Mapping[str, Slot],
        deadline: float | None,
        tasks: TaskSet,
        lookup: Callable[[str], Any],
    ) -> None:
        self.slot, self.slots, self.deadline, self.tasks, self.lookup = slot, slots, deadline, tasks, lookup
        self.limit: float | None = None
        self.budget = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timed_out = False
        self.waiting = 0
        slot.start = self

    def schedule(self) -> None:
        """Begin once every requirement's start (and this component's own stop) has settled."""
        slot, slots = self.slot, self.slots
        pending: list[asyncio.Future[Any]] = [
            f for d in slot.component.requires if (f := slots[d].settled) is not None and not f.done()
        ]
        if slot.stop_task is not None and not slot.stop_task.done():
            pending.append(slot.stop_task)
        if not pending:
            self.begin()
            return
        self.waiting = len(pending)
        for f in pending:
            f.add_done_callback(self._one_settled)

    def _one_settled(self, _: object) -> None:
        self.waiting -= 1
        if self.waiting == 0 and self.slot.start is self:
            self.begin()

    def begin(self) -> None:
        slot, slots, comp = self.slot, self.slots, self.slot.component
        if slot.state is _S.STOPPED:  # waited for its own stop: a fresh start from here
            slot.transition(_S.PENDING, fresh=True)
        requires = comp.requires
        missing = [d for d in requires if slots[d].state is not _S.READY] if requires else None
        if missing:
            dep = missing[0]
            if all(slots[d].state is _S.DISABLED for d in missing):
                slot.transition(_S.DISABLED, reason=f"requires {dep!r}, which is disabled")
                event(logging.INFO, "component_disabled", slot.name, reason=slot.reason)
            else:
                slot.transition(_S.BLOCKED, reason=f"requires {dep!r}, which is {slots[dep].state.value}")
                event(logging.WARNING, "component_blocked", slot.name, reason=slot.reason)
            self.settle()
            return
        slot.transition(_S.STARTING)
        event(logging.INFO, "component_starting", slot.name)
        own = None if comp.deadline is None else time.monotonic() + comp.deadline
        deadline = self.deadline
        self.limit = own if deadline is None else (deadline if own is None else min(own, deadline))
        budget = comp.timeout
        if self.limit is not None:
            budget = min(budget, self.limit - time.monotonic())
            if budget <= 0:
                self.failed(OutOfTime("the startup deadline passed before this attempt could begin"))
                return
        slot.attempts = 1
        self.budget = budget
        resources = {}
        for d in requires:
            resources[d] = self.lookup(d)  # overrides included, as get() sees them
        loop = asyncio.get_running_loop()
        ctx = Context(slot.name, resources, 1, traffic=slot.traffic)
        task = loop.create_task(comp._open(ctx), name=slot.task_names[1])
        slot.task = task
        task.add_done_callback(self._first_done)
        self.timer = loop.call_later(budget, self._first_timeout, task, budget)

    def _first_timeout(self, task: asyncio.Task[Any], budget: float) -> None:
        self.timed_out = True
        task.cancel()
        self.timer = asyncio.get_running_loop().call_later(ABANDON_GRACE, self._first_abandon, task, budget)

    def _first_abandon(self, task: asyncio.Task[Any], budget: float) -> None:
        """The attempt ignored its cancellation: go on without it; what it makes later is closed."""
        self.timer = None
        if task.done() or self.slot.task is not task:
            return
        self.slot.task = None
        self.slot.strays.adopt(task)
        event(logging.WARNING, "attempt_abandoned", self.slot.name, attempt=1, budget=budget)
        msg = f"no answer within {budget:.3g}s (attempt 1); it ignored cancellation and was abandoned"
        self.failed(AttemptTimeout(msg))

    def _first_done(self, task: asyncio.Task[Any]) -> None:
        slot = self.slot
        if slot.task is not task or slot.start is not self:  # abandoned or aborted: nobody wants it now
            self._late(task)
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        slot.task = None
        if not self.timed_out and not task.cancelled() and task.exception() is None:  # the common case
            resource, closer = task.result()
            self.ready(resource, closer)
            return
        timeout = AttemptTimeout(f"no answer within {self.budget:.3g}s (attempt 1)")
        if task.cancelled():
            if self.timed_out:
                self.failed(timeout)
            else:
                self.cancelled()
            return
        exc = task.exception()
        if exc is None:  # it swallowed the cancellation and finished after its deadline: not a success
            self._late(task)
            self.failed(timeout)
        elif isinstance(exc, Exception):
            self.failed(timeout if self.timed_out and isinstance(exc, TimeoutError) else exc)
        else:
            # KeyboardInterrupt, SystemExit: the task's own step raised it out of the event loop
            # already. Raised again here it would escape asyncio.run()'s cleanup too, which then
            # never cancels the caller: nothing started would be torn down.
            self.cancelled()

    def _late(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        comp = self.slot.component
        self.slot.strays.spawn(
            close_late(self.slot.name, comp.stop_timeout, self.slot.strays, task.result()),
            name=f"infraboot-close-late-{self.slot.name}",
        )

    def failed(self, exc: Exception) -> None:
        """Attempt 1 failed: retry in a task of its own if the rule allows, else record the failure."""
        slot, comp = self.slot, self.slot.component
        if isinstance(exc, OutOfTime) or not comp.is_retryable(exc) or comp.retry_policy.attempts <= 1:
            fail(slot, exc)
            self.settle()
            return
        slot.task = asyncio.get_running_loop().create_task(self._retry(exc), name=slot.task_names[0])

    async def _retry(self, first_error: Exception) -> None:
        slot, comp = self.slot, self.slot.component
        resources = {d: self.lookup(d) for d in comp.requires}
        try:
            resource, closer = await retry(
                lambda n: open_attempt(slot, n, self.limit, resources),
                policy=comp.retry_policy,
                retryable=comp.is_retryable,
                deadline=self.limit,
                on_retry=functools.partial(_log_retry, slot),
                failed=first_error,
            )
        except asyncio.CancelledError:
            if slot.start is self:
                self.cancelled()
            raise
        except Exception as exc:  # the attempts are used up: record, never raise
            raise_if_cancelled()
            if slot.start is self:
                fail(slot, exc)
                self.settle()
            return
        if slot.start is not self:  # aborted meanwhile: nobody wants it now
            await close_late(slot.name, comp.stop_timeout, slot.strays, (resource, closer))
            return
        slot.task = None
        self.ready(resource, closer)

    def ready(self, resource: Any, closer: Closer) -> None:
        slot = self.slot
        slot.transition(_S.READY, resource=resource, closer=closer)
        duration = (slot.ended_at or 0) - (slot.started_at or 0)
        event(logging.INFO, "component_ready", slot.name, duration=duration, attempts=slot.attempts)
        self.settle()

    def cancelled(self) -> None:
        self.slot.transition(_S.FAILED, error="start was cancelled", error_code="cancelled")
        self.settle()

    def settle(self) -> None:
        slot = self.slot
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if slot.start is self:
            slot.start = None
        if slot.settled is not None and not slot.settled.done():
            slot.settled.set_result(None)


def abort(slot: Slot) -> asyncio.Task[Any] | None:
    """Cancel the start under way of *slot* at once: it is ``failed`` (cancelled) from now on.

    Returns the task that was doing the work (now cancelled, and tracked in ``slot.strays``), so
    the caller may give it a bounded grace; whatever it still makes is closed.
    """
    start = slot.start
    if start is None or not unsettled(slot):
        return None
    task = slot.task
    slot.task = None
    start.cancelled()
    if task is not None and not task.done():
        task.cancel()
        slot.strays.adopt(task)
        return task
    return None


def _log_retry(slot: Slot, exc: Exception, attempt: int, wait: float) -> None:
    comp = slot.component
    event(
        logging.WARNING,
        "component_retrying",
        slot.name,
        attempt=attempt,
        wait=wait,
        error_code=comp.classify(exc),
        error=describe(exc),
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
    starts: list[asyncio.Future[None]],
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
    by_future = {f: slot for n in closure if (f := (slot := slots[n]).settled) is not None}

    def required_failed(future: asyncio.Future[Any]) -> bool:
        slot = by_future.get(future)
        return slot is not None and slot.component.required and slot.state in (_S.FAILED, _S.BLOCKED)

    timeout_at = None if deadline is None else deadline + _DEADLINE_GRACE
    pending = await wait_until(starts, timeout_at, until=required_failed)
    failed = first_required_failure(closure, slots)
    if failed is not None or not pending:
        return failed
    ours = [n for n in closure if unsettled(slots[n]) and demand[n] <= 1]
    cut: list[asyncio.Task[Any]] = []
    for n in ours:  # starts other callers wait for are theirs: left alone, reported as still starting
        task = abort(slots[n])
        fail(slots[n], OutOfTime("startup_timeout exceeded"))
        if task is not None:
            cut.append(task)
    await cancel_until_done(cut, ABANDON_GRACE)
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
        cause = f"{slot.error_code}: {str(slot.error).rstrip('.')}"
    rolled = [n for n, r in report.components.items() if r.state is _S.STOPPED]
    target = slot.component.target
    msg = (
        f"required component {name!r}{f' at {target}' if target else ''} failed after {result.attempts} attempt"
        f"{'' if result.attempts == 1 else 's'} ({cause})"
    )
    if rolled:
        msg += f"; rolled back: {', '.join(rolled)}"
    switch = f"{getattr(slot.component, 'env_prefix', None) or env_prefix(name)}REQUIRED".upper()
    msg += f". Fix the cause, or make it optional to start without it ({switch}=false, or required=False in code)."
    return StartupError(scrub(msg), component=name, attempts=result.attempts, report=report)
