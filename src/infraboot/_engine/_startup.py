"""Starting components: the steps ``ensure_initialized`` takes.

A start is driven by callbacks, not by a task of its own: once a component's
requirements have settled, its first attempt begins (:class:`~infraboot._engine._attempt.Attempt`,
the one attempt path: first start, retries and recovery alike). Retries run in one more
task, through the retry loop. So no start ever waits for an attempt past its deadline,
and a start that succeeds at once costs one task (none on Python 3.12+ when its setup
never waits).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from infraboot._base._errors import describe
from infraboot._base._log import event, listeners, logger
from infraboot._base._redact import scrub
from infraboot._base._variables import check_variables
from infraboot.exceptions import ConfigError, StartupError

from ._attempt import Attempt, attempt, close_late
from ._component import Closer, NotConfigured
from ._deadlines import ABANDON_GRACE, TaskSet, cancel_until_done, raise_if_cancelled, wait_until
from ._report import StartupReport
from ._retry import OutOfTime, retry
from ._slot import HOLDING, Slot
from ._state import ComponentState
from ._switches import TRUE, env_prefix, read_switches, switched

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
    return slot.start is not None


def configure_all(closure: list[str], slots: Mapping[str, Slot]) -> None:
    """Run every component's ``configure()`` before any I/O; one ConfigError lists every problem."""
    problems: list[str] = []
    environ: dict[str, str] | None = None
    present = frozenset[str]()
    for n in closure:
        slot = slots[n]
        if slot.state in HOLDING or slot.start is not None:
            continue
        if environ is None:  # a start is due: say which variables look misspelt (once each per process)
            check_variables(s.component for s in slots.values())
            environ = dict(os.environ)
            present = switched(environ)
        try:
            comp = slot.component
            reason = None if hasattr(comp, "env_names") else read_switches(comp, environ, present)
            reason = reason or comp.configure()
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if isinstance(reason, NotConfigured):
            slot.transition(_S.FAILED, fresh=True, error=scrub(reason), error_code="not_configured", healable=False)
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
    """Start what in *closure* is not ready; returns the futures that settle when each start still under way ends.

    A start already under way (another caller's) is joined, not repeated. A start that ended
    before this returns (a setup that never waited, on Python 3.12+) has no future to wait for.
    """
    settled: list[asyncio.Future[None]] = []
    for n in closure:
        slot = slots[n]
        if slot.state in HOLDING or slot.state is _S.DISABLED or slot.error_code == "not_configured":
            continue  # an unhealthy one keeps its resource: the probes bring it back
        if slot.recovery is not None and not slot.recovery.done():
            continue  # recovering in the background already; its outcome is reported as it stands
        if slot.start is None:
            if slot.state is not _S.STOPPING and (slot.state is not _S.PENDING or slot.attempts):
                slot.transition(_S.PENDING, fresh=True)  # a stop in flight ends first (the start waits for it)
            start = _Start(slot, slots, deadline, lookup)
            slot.start_began(start)
            start.schedule()
            if slot.start is None:
                continue  # ended already
        settled.append(slot.waiter())
    return settled


class _Start:
    """One start of one component, moved along by callbacks: requirements, first attempt, retries.

    The first attempt reports by a callback (a start that succeeds at once costs no task of
    its own); retries run in one task, each attempt the same :class:`Attempt` awaited.
    """

    __slots__ = ("attempt", "deadline", "limit", "lookup", "resources", "runner", "slot", "slots", "waiting")

    def __init__(
        self,
        slot: Slot,
        slots: Mapping[str, Slot],
        deadline: float | None,
        lookup: Callable[[str], Any],
    ) -> None:
        self.slot, self.slots, self.deadline, self.lookup = slot, slots, deadline, lookup
        self.limit: float | None = None
        self.resources: Mapping[str, Any] = _NO_RESOURCES
        self.attempt: Attempt | None = None  # the first attempt, while it runs
        self.runner: asyncio.Task[None] | None = None  # the retries, while they run
        self.waiting = 0

    def schedule(self) -> None:
        """Begin once every requirement's start (and this component's own stop) has settled."""
        slot, slots = self.slot, self.slots
        requires, stop = slot.component.requires, slot.stop_task
        if not requires and (stop is None or stop.done()):  # the common case: nothing to wait for
            self.begin()
            return
        pending: list[asyncio.Future[Any]] = [slots[d].waiter() for d in requires if slots[d].start is not None]
        if stop is not None and not stop.done():
            pending.append(stop.waiter())
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
        if requires:
            missing = [d for d in requires if slots[d].state is not _S.READY or slots[d].closing]
            if missing:
                self.blocked(missing)
                return
            self.resources = {d: self.lookup(d) for d in requires}  # overrides included, as get() sees them
        slot.starting_now()
        if listeners or logger.isEnabledFor(logging.INFO):  # every start: no call when nobody hears it
            event(logging.INFO, "component_starting", slot.name)
        own = None if comp.deadline is None else time.monotonic() + comp.deadline
        deadline = self.deadline
        self.limit = own if deadline is None else (deadline if own is None else min(own, deadline))
        try:
            first = Attempt(slot, 1, self.limit, self._first_done)
        except OutOfTime as exc:
            self.failed(exc)
            return
        self.attempt = first
        first.run(self.resources)

    def blocked(self, missing: list[str]) -> None:
        slot, dep = self.slot, missing[0]
        if all(self.slots[d].state is _S.DISABLED for d in missing):
            slot.transition(_S.DISABLED, reason=f"requires {dep!r}, which is disabled")
            event(logging.INFO, "component_disabled", slot.name, reason=slot.reason)
        else:
            state = "being stopped" if self.slots[dep].closing else self.slots[dep].state.value
            slot.transition(_S.BLOCKED, reason=f"requires {dep!r}, which is {state}")
            event(logging.WARNING, "component_blocked", slot.name, reason=slot.reason)
        self.settle()

    def _first_done(self, first: Attempt) -> None:
        self.attempt = None
        slot = self.slot
        if slot.start is not self:  # forgotten meanwhile (its loop gone, a fork): nobody wants it now
            if first.opened is not None:
                first.close_late(first.opened)
            return
        if first.opened is not None:
            self.ready(*first.opened)
        elif first.error is not None:
            self.failed(first.error)
        else:
            self.cancelled()

    def failed(self, exc: Exception) -> None:
        """Attempt 1 failed: retry in a task of its own if the rule allows, else record the failure."""
        slot, comp = self.slot, self.slot.component
        if isinstance(exc, OutOfTime) or not comp.is_retryable(exc) or comp.retries < 1:
            fail(slot, exc)
            self.settle()
            return
        self.runner = asyncio.get_running_loop().create_task(self._retry(exc), name=f"infraboot-start-{slot.name}")

    async def _retry(self, first_error: Exception) -> None:
        slot, comp = self.slot, self.slot.component
        self.resources = {d: self.lookup(d) for d in comp.requires}  # overrides as they stand now
        try:
            resource, closer = await retry(
                lambda n: attempt(slot, n, self.limit, self.resources),
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
        self.runner = None
        self.ready(resource, closer)

    def ready(self, resource: Any, closer: Closer) -> None:
        slot = self.slot
        slot.ready_now(resource, closer)
        if listeners or logger.isEnabledFor(logging.INFO):  # every start: no call when nobody hears it
            duration = (slot.ended_at or 0.0) - (slot.started_at or 0.0)
            event(logging.INFO, "component_ready", slot.name, duration=duration, attempts=slot.attempts)
        self.settle()

    def cancelled(self, why: str = "start was cancelled") -> None:
        last = self.slot.last_failure  # what it was retrying after: the real error, not the cancel
        reason = None if last is None else f"{LAST_ERROR}{last}"
        self.slot.transition(_S.FAILED, error=why, error_code="cancelled", reason=reason)
        self.settle()

    def settle(self) -> None:
        self.slot.start_ended(self)

    def abort(self, why: str = "start was cancelled") -> asyncio.Task[Any] | None:
        """Cancel this start at once: ``failed`` (cancelled, *why*) from now on; returns the task doing the work."""
        first, runner = self.attempt, self.runner
        self.attempt = self.runner = None
        self.cancelled(why)
        task = None if first is None else first.abandon()
        if task is None and runner is not None and not runner.done():
            runner.cancel()
            self.slot.strays.adopt(runner)
            task = runner
        return task


def abort(slot: Slot, why: str = "start was cancelled") -> asyncio.Task[Any] | None:
    """Cancel the start under way of *slot* at once: it is ``failed`` (cancelled, *why*) from now on.

    Returns the task that was doing the work (now cancelled, and tracked in ``slot.strays``), so
    the caller may give it a bounded grace; whatever it still makes is closed.
    """
    start = slot.start
    if not isinstance(start, _Start) or not unsettled(slot):
        return None
    return start.abort(why)


_NO_RESOURCES: Mapping[str, Any] = MappingProxyType({})  # a start's that requires nothing

#: How a cancelled start's ``reason`` begins when an attempt had failed before: ``last error refused: ...``.
LAST_ERROR = "last error "


def last_error_code(result: Any) -> str | None:
    """The code of the last real error of a cancelled start (its ``ComponentResult``), else ``None``."""
    reason = result.reason or ""
    if result.error_code != "cancelled" or not reason.startswith(LAST_ERROR):
        return None
    return reason[len(LAST_ERROR) :].split(":", 1)[0]


def _log_retry(slot: Slot, exc: Exception, attempt: int, wait: float) -> None:
    comp = slot.component
    slot.last_failure = f"{comp.classify(exc)}: {describe(exc)}"
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
    slot.transition(
        _S.FAILED, error=describe(exc), error_code=code, healable=isinstance(exc, OutOfTime) or comp.is_retryable(exc)
    )
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
    stop_began: Callable[[], asyncio.Future[None]] | None = None,
) -> str | None:
    """Wait for the *starts* of one call; return the first failed required component, or ``None``.

    Returns as soon as a required component fails, or is being taken down by a ``stop()``
    (*stop_began* gives a future done when the next one begins). Past the startup deadline
    (plus a short grace) the starts this call alone asked for are cut off and recorded as
    timed out; starts other callers also wait for are left alone.
    """
    by_future = {f: slot for n in closure if (f := (slot := slots[n]).settled) is not None}

    def required_failed(future: asyncio.Future[Any]) -> bool:
        slot = by_future.get(future)
        return slot is not None and slot.component.required and slot.state in (_S.FAILED, _S.BLOCKED)

    failed = first_required_failure(closure, slots)  # a start may have failed before we wait (3.12+: eagerly)
    if failed is not None:
        return failed
    timeout_at = None if deadline is None else deadline + _DEADLINE_GRACE
    pending: set[asyncio.Future[Any]] = {f for f in starts if not f.done()}
    while pending:  # none when every start ended already (3.12+: eagerly): no trip through the loop
        signal = None if stop_began is None else stop_began()
        left = [len(pending)]  # the starts still running: the signal itself never needs to end

        def stop_now(future: asyncio.Future[Any], signal: object = signal, left: list[int] = left) -> bool:
            if future is signal:
                return True
            left[0] -= 1
            return left[0] <= 0 or required_failed(future)

        waited = pending if signal is None else {*pending, signal}
        pending = await wait_until(waited, timeout_at, until=required_failed if signal is None else stop_now)
        failed = first_required_failure(closure, slots) or _being_stopped(closure, slots)
        if failed is not None:
            return failed
        pending.discard(signal)
        if signal is None or not signal.done() or (timeout_at is not None and time.monotonic() >= timeout_at):
            break  # the starts ended, or the deadline passed; else a stop() of something else began: wait on
    if not pending:
        return None
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


def _being_stopped(closure: list[str], slots: Mapping[str, Slot]) -> str | None:
    """The first required component a ``stop()`` is taking down that no start of this call brings back."""
    for n in closure:
        slot = slots[n]
        if slot.taken_down and slot.component.required and not unsettled(slot):
            return n
    return None


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
    stopped = slot.taken_down or (slot.error_code == "cancelled" and str(slot.error).startswith("stop("))
    if slot.state is _S.BLOCKED:
        cause = slot.reason or "a requirement is unavailable"
    elif slot.state in _STARTING:
        cause = "timeout: still starting (for another caller too) when startup_timeout ran out"
    elif slot.state in (_S.STOPPED, _S.STOPPING) or (slot.closing and slot.state in HOLDING):
        cause = "stopped: a stop() was called while this startup was under way"
    else:
        cause = f"{slot.error_code}: {str(slot.error).rstrip('.')}"
    rolled = [n for n, r in report.components.items() if r.state is _S.STOPPED]
    target = slot.component.target
    at = f" at {target}" if target else ""
    if stopped:  # on purpose, by another call: nothing to fix, and making it optional is not the answer
        how = "did not finish starting" if slot.state is _S.FAILED else "was stopped while this startup was under way"
        msg = f"required component {name!r}{at} {how} ({cause})"
        if rolled:
            msg += f"; stopped now: {', '.join(rolled)}"
        msg += ". Start it again with ensure_initialized() once that stop() has returned."
        return StartupError(scrub(msg), component=name, attempts=result.attempts, report=report)
    msg = (
        f"required component {name!r}{at} failed after {result.attempts} attempt"
        f"{'' if result.attempts == 1 else 's'} ({cause})"
    )
    if rolled:
        msg += f"; rolled back: {', '.join(rolled)}"
    switch = f"{getattr(slot.component, 'env_prefix', None) or env_prefix(name)}REQUIRED".upper()
    msg += f". Fix the cause, or make it optional to start without it ({switch}=false"
    raw = os.environ.get(switch, "").strip()
    if not hasattr(slot.component, "env_names") and raw.lower() in TRUE:  # its own switch made it required
        msg += f"; it is set to {raw!r} in the environment, which beats required= in code)."
    else:
        msg += ", or required=False in code)."
    return StartupError(scrub(msg), component=name, attempts=result.attempts, report=report)
