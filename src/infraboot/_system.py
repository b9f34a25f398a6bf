"""The lifecycle engine: start components in dependency order, stop them in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
import warnings
import weakref
from collections import Counter
from collections.abc import Coroutine, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Literal, Self, TypeVar

from ._component import Closer, Component, Context
from ._health import ComponentHealth, HealthReport, HealthStatus, Probe, worst
from ._log import event
from ._redact import scrub
from ._report import ComponentResult, ShutdownReport, StartupReport, StartupStatus, StopResult
from ._retry import check_non_negative_int, check_positive_seconds, is_testing, testing_attempts
from ._state import ComponentState
from .exceptions import (
    ComponentUnavailableError,
    ConfigError,
    DependencyError,
    NotInitializedError,
    StartupError,
)

__all__ = ["SystemInitializer"]

_T = TypeVar("_T")

_S = ComponentState
_UNAVAILABLE = frozenset({_S.FAILED, _S.BLOCKED, _S.DISABLED, _S.UNHEALTHY})
_RUNNING = frozenset({_S.READY, _S.UNHEALTHY})  # holding a resource that must be stopped
Phase = Literal["not started", "starting", "running", "startup failed", "stopping", "stopped"]
# A start task that outlives its own deadline this long is cut off from outside.
_DEADLINE_GRACE = 0.5


class _Slot:
    """The mutable runtime record of one component. Private to the engine."""

    __slots__ = (
        "attempts",
        "closer",
        "component",
        "ended_at",
        "error",
        "error_code",
        "probe",
        "reason",
        "recovery",
        "resource",
        "started_at",
        "state",
        "task",
    )

    def __init__(self, component: Component[Any]) -> None:
        self.component = component
        self.state = _S.PENDING
        self.task: asyncio.Task[None] | None = None
        self.recovery: asyncio.Task[None] | None = None
        self.closer: Closer | None = None
        self.resource: Any = None
        self.probe = Probe()
        self.reset()

    def reset(self) -> None:
        self.attempts = 0
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.error: str | None = None
        self.error_code: str | None = None
        self.reason: str | None = None


class SystemInitializer:
    """Holds components and their state; starts and stops them.

    ::

        system = SystemInitializer([redis_component, database_component], startup_timeout=30)
        async with system:                 # initialize_all() ... shutdown()
            client = system.get("redis")

    - ``startup_timeout``: seconds one ``ensure_initialized``/``initialize_all`` call may take
      in all, retries included (``None``: each component's own attempts and deadline decide).
    - ``shutdown_timeout``: seconds shutdown (and a rollback) may take in all; each stop is
      also bounded by its component's ``stop_timeout``.

    Health (see :meth:`health`, :meth:`configure` to change these later):

    - ``check_interval``: seconds between the background monitor's probes of every ready
      component (default 10; ``None`` turns the monitor off).
    - ``check_ttl``: seconds a probe result is reused by :meth:`readiness` (default 1):
      however many requests arrive, each component is probed at most once per TTL.
    - ``health_timeout``: seconds :meth:`readiness` waits for fresh probes before it
      answers from the last known results (default 1), so a probe stuck on a
      blackholed host never makes the readiness endpoint itself time out.
    - ``failure_threshold`` / ``success_threshold``: probes in a row that flip a
      component to unhealthy / back to healthy (default 1 / 1).
    - ``recovery``: retry optional components that failed or went down, in the
      background with jittered backoff, until they are back (default ``True``).

    Every method is safe to call concurrently: concurrent ``ensure_initialized`` calls start
    each component once and share its outcome.
    """

    def __init__(
        self,
        components: Iterable[Component[Any]] = (),
        *,
        startup_timeout: float | None = None,
        shutdown_timeout: float = 30.0,
        check_interval: float | None = 10.0,
        check_ttl: float = 1.0,
        health_timeout: float = 1.0,
        failure_threshold: int = 1,
        success_threshold: int = 1,
        recovery: bool = True,
    ) -> None:
        self.startup_timeout: float | None = None
        self.shutdown_timeout = 30.0
        self.check_interval: float | None = 10.0
        self.check_ttl = 1.0
        self.health_timeout = 1.0
        self.failure_threshold = 1
        self.success_threshold = 1
        self.recovery = True
        self.configure(
            startup_timeout=startup_timeout,
            shutdown_timeout=shutdown_timeout,
            check_interval=check_interval,
            check_ttl=check_ttl,
            health_timeout=health_timeout,
            failure_threshold=failure_threshold,
            success_threshold=success_threshold,
            recovery=recovery,
        )
        self._slots: dict[str, _Slot] = {}
        # Only ready components are here: get() is one dict lookup.
        self._resources: dict[str, Any] = {}
        self._pinned: set[str] = set()  # promised ready to a caller; a rollback leaves them alone
        self._demand: Counter[str] = Counter()  # in-flight ensure_initialized calls per component
        self._graph_checked = False
        self._loop_ref: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._base_time: float | None = None
        self._phase: Phase = "not started"
        self._wanted: dict[str, None] = {}  # every component an ensure_initialized asked for, in order
        self._monitor_task: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._fork_orphans: list[Any] = []
        _systems.add(self)
        for c in components:
            self.register(c)

    _UNSET: Any = object()

    def configure(
        self,
        *,
        startup_timeout: float | None = _UNSET,
        shutdown_timeout: float = _UNSET,
        check_interval: float | None = _UNSET,
        check_ttl: float = _UNSET,
        health_timeout: float = _UNSET,
        failure_threshold: int = _UNSET,
        success_threshold: int = _UNSET,
        recovery: bool = _UNSET,
    ) -> None:
        """Change the system's settings (see the class docstring); unnamed ones keep their value.

        Every value is checked before any is applied: a :class:`ConfigError` lists every
        problem and changes nothing. A new ``check_interval`` applies from the next startup.
        """
        given = {k: v for k, v in locals().items() if k != "self" and v is not self._UNSET}
        problems: list[str] = []
        for key, value in given.items():
            if key in ("startup_timeout", "check_interval"):
                problem = check_positive_seconds(key, value, allow_none=True)
            elif key in ("failure_threshold", "success_threshold"):
                problem = check_non_negative_int(key, value)
                if problem is None and value < 1:
                    problem = f"{key}={value!r} must be at least 1"
            elif key == "recovery":
                problem = None if isinstance(value, bool) else f"recovery={value!r} must be True or False"
            else:
                problem = check_positive_seconds(key, value)
            if problem:
                problems.append(problem)
        if problems:
            raise ConfigError("SystemInitializer: " + "; ".join(problems), problems=tuple(problems))
        for key, value in given.items():
            setattr(self, key, value)

    # -- registration -------------------------------------------------------------------

    def register(self, component: Component[Any]) -> Component[Any]:
        """Add *component*; returns it, so it can be used as a decorator's last step."""
        if not isinstance(component, Component):
            msg = (
                f"register() takes a Component, not {type(component).__name__}; "
                "decorate an async generator with @infraboot.component('name') or subclass infraboot.Component"
            )
            raise ConfigError(msg)
        if component.name in self._slots:
            msg = (
                f"a component named {component.name!r} is already registered "
                f"({self._slots[component.name].component!r}); give the new one another name"
            )
            raise DependencyError(msg)
        self._slots[component.name] = _Slot(component)
        self._graph_checked = False
        return component

    @property
    def components(self) -> Mapping[str, Component[Any]]:
        """The registered components by name (read-only)."""
        return MappingProxyType({n: s.component for n, s in self._slots.items()})

    # -- accessors (hot path) ----------------------------------------------------------------

    def get(self, name: str) -> Any:
        """The live resource of a ready component.

        Raises :class:`NotInitializedError` when it was not started (or is not
        registered) and :class:`ComponentUnavailableError` when it is an optional
        component that is down or disabled.
        """
        try:
            return self._resources[name]
        except KeyError:
            raise self._why_not(name) from None

    def state(self, name: str) -> ComponentState:
        try:
            return self._slots[name].state
        except KeyError:
            raise self._unknown(name) from None

    def _unknown(self, name: str) -> NotInitializedError:
        registered = ", ".join(sorted(self._slots)) or "none"
        return NotInitializedError(
            f"no component named {name!r} is registered (registered: {registered}); "
            "register it with infraboot.register(...) or pass it to SystemInitializer"
        )

    def _why_not(self, name: str) -> Exception:
        slot = self._slots.get(name)
        if slot is None:
            return self._unknown(name)
        state = slot.state
        detail = slot.error or slot.reason
        if state in _UNAVAILABLE:
            return ComponentUnavailableError(
                f"component {name!r} is unavailable ({state.value}: {detail}); "
                "take the degraded path, or check the startup report for the cause",
                component=name,
            )
        if state in (_S.STOPPING, _S.STOPPED):
            return NotInitializedError(
                f"component {name!r} was shut down; "
                f"call await infraboot.ensure_initialized([{name!r}]) to start it again"
            )
        return NotInitializedError(
            f"component {name!r} is {state.value}, not ready; call await infraboot.ensure_initialized([{name!r}]) first"
        )

    # -- graph --------------------------------------------------------------------------------

    def _check_graph(self) -> None:
        if self._graph_checked:
            return
        for name, slot in self._slots.items():
            missing = [r for r in slot.component.requires if r not in self._slots]
            if missing:
                msg = (
                    f"component {name!r} requires {', '.join(map(repr, missing))}, which is not registered; "
                    f"register it, or remove it from {name!r}'s requires"
                )
                raise DependencyError(msg)
        cycle = self._find_cycle()
        if cycle:
            msg = f"dependency cycle: {' -> '.join(cycle)}; remove one of these requirements to break it"
            raise DependencyError(msg)
        self._graph_checked = True

    def _find_cycle(self) -> list[str] | None:
        white, grey, black = 0, 1, 2
        color = dict.fromkeys(self._slots, white)
        stack: list[str] = []

        def visit(n: str) -> list[str] | None:
            color[n] = grey
            stack.append(n)
            for r in self._slots[n].component.requires:
                if color[r] == grey:
                    return [*stack[stack.index(r) :], r]
                if color[r] == white:
                    found = visit(r)
                    if found:
                        return found
            stack.pop()
            color[n] = black
            return None

        for n in self._slots:
            if color[n] == white:
                found = visit(n)
                if found:
                    return found
        return None

    def _closure(self, names: Iterable[str] | None) -> list[str]:
        """The named components and everything they require, requirements first."""
        self._check_graph()
        if names is None:
            roots = list(self._slots)
        else:
            if isinstance(names, str):
                msg = f"ensure_initialized({names!r}): pass a list of names, e.g. ensure_initialized([{names!r}])"
                raise ConfigError(msg)
            roots = list(names)
            unknown = [n for n in roots if n not in self._slots]
            if unknown:
                import difflib

                hints = []
                for n in unknown:
                    close = difflib.get_close_matches(str(n), self._slots, n=1)
                    hints.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
                registered = ", ".join(sorted(self._slots)) or "none"
                msg = f"unknown component {', '.join(hints)}; registered: {registered}"
                raise DependencyError(msg)
        order: list[str] = []
        seen: set[str] = set()

        def visit(n: str) -> None:
            if n in seen:
                return
            seen.add(n)
            for r in self._slots[n].component.requires:
                visit(r)
            order.append(n)

        for n in roots:
            visit(n)
        return order

    def _dependents(self, names: Iterable[str]) -> dict[str, list[str]]:
        wanted = set(names)
        out: dict[str, list[str]] = {n: [] for n in wanted}
        for n in wanted:
            for r in self._slots[n].component.requires:
                if r in wanted:
                    out[r].append(n)
        return out

    # -- startup -------------------------------------------------------------------------------

    async def initialize_all(self) -> StartupReport:
        """Start every registered component; see :meth:`ensure_initialized`."""
        return await self.ensure_initialized(None)

    async def ensure_initialized(self, names: Iterable[str] | None = None) -> StartupReport:
        """Start the named components (all when ``None``) and everything they require.

        Idempotent: ready components are left alone, so calling it again is cheap.
        Returns a :class:`StartupReport` whose status is ``ok`` or ``degraded``; raises
        :class:`StartupError` when a required component fails, after stopping again what
        this call had started. Raises :class:`ConfigError` / :class:`DependencyError`
        before any I/O when a definition or setting is wrong.
        """
        closure = self._closure(names)
        self._bind_loop()
        if all(self._slots[n].state is _S.READY for n in closure):
            if self._phase != "stopping":
                self._phase = "running"  # nothing to start (an empty list, say) is a finished startup
            return self._build_report(closure, self._base_time)
        if self._phase == "stopping":
            msg = "ensure_initialized() was called while the system is shutting down; start it again after shutdown()"
            raise NotInitializedError(msg)
        self._configure(closure)
        self._wanted.update(dict.fromkeys(closure))
        first = self._phase != "running"
        if first:
            self._phase = "starting"

        call_start = time.monotonic()
        if self._base_time is None:
            self._base_time = call_start
        deadline = call_start + self.startup_timeout if self.startup_timeout is not None else None
        before = {n for n in closure if self._slots[n].state is _S.READY}
        tasks: list[asyncio.Task[None]] = []
        for n in closure:
            slot = self._slots[n]
            if slot.state in (_S.READY, _S.DISABLED):
                continue
            if slot.recovery is not None and not slot.recovery.done():
                continue  # recovering in the background already; its outcome is reported as it stands
            if slot.task is None or slot.task.done():
                slot.reset()
                slot.state = _S.PENDING
                slot.task = asyncio.get_running_loop().create_task(
                    self._start_one(slot, deadline), name=f"infraboot-start-{n}"
                )
            tasks.append(slot.task)
        self._demand.update(closure)
        event(logging.DEBUG, "startup_begin", components=",".join(closure))
        try:
            failed = await self._wait_started(tasks, closure, deadline)
            if failed is not None:
                await self._shielded(self._rollback(closure, before))
        except BaseException:
            # Cancelled (Ctrl-C, SIGTERM, a task cancel): stop what we started, then let it go on.
            if first:
                self._phase = "startup failed"
            await self._shielded(self._rollback(closure, before))
            raise
        finally:
            self._demand.subtract(closure)
            self._demand = +self._demand

        report = self._build_report(closure, call_start)
        if failed is not None:
            if first:
                self._phase = "startup failed"
            raise self._startup_error(failed, report)
        self._pinned.update(n for n in closure if self._slots[n].state is _S.READY)
        self._phase = "running"
        for n in closure:
            if self._slots[n].state is _S.FAILED:
                self._start_recovery(self._slots[n])
        self._start_monitor()
        level = logging.INFO if report.status == "ok" else logging.WARNING
        event(
            level,
            "startup_complete",
            status=report.status,
            duration=report.duration,
            failed=",".join(report.failed) or None,
        )
        return report

    def _configure(self, closure: list[str]) -> None:
        """Run every component's configure() before any I/O; collect every problem."""
        problems: list[str] = []
        for n in closure:
            slot = self._slots[n]
            if slot.state is _S.READY or (slot.task is not None and not slot.task.done()):
                continue
            try:
                reason = slot.component.configure()
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            if reason:
                slot.reset()
                slot.state = _S.DISABLED
                slot.reason = scrub(reason)
                event(logging.INFO, "component_disabled", n, reason=slot.reason)
            elif slot.state is _S.DISABLED:
                slot.state = _S.PENDING
        if problems:
            msg = "invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems)
            raise ConfigError(scrub(msg), problems=tuple(scrub(p) for p in problems))

    async def _wait_started(
        self, tasks: list[asyncio.Task[None]], closure: list[str], deadline: float | None
    ) -> str | None:
        """Wait for the start tasks; return the first failed required component, or None."""
        pending: set[asyncio.Task[None]] = set(tasks)
        timeout_at = None if deadline is None else deadline + _DEADLINE_GRACE
        while pending:
            timeout = None if timeout_at is None else max(0.0, timeout_at - time.monotonic())
            done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            failed = self._first_required_failure(closure)
            if failed is not None:
                return failed
            if not done:  # the safety net: a start ignored its deadline
                ours = [
                    t
                    for n in closure
                    if (t := self._slots[n].task) is not None and t in pending and self._demand[n] <= 1
                ]
                await _cancel_until_done(ours, self.shutdown_timeout)
                await asyncio.wait(pending, timeout=self.shutdown_timeout)
                for n in closure:
                    slot = self._slots[n]
                    if slot.state in (_S.PENDING, _S.STARTING):
                        self._mark_failed(slot, TimeoutError("startup_timeout exceeded"), "timeout")
                return self._first_required_failure(closure)
        return None

    def _first_required_failure(self, closure: list[str]) -> str | None:
        for n in closure:
            slot = self._slots[n]
            if slot.component.required and slot.state in (_S.FAILED, _S.BLOCKED):
                return n
        return None

    async def _start_one(self, slot: _Slot, deadline: float | None) -> None:
        comp = slot.component
        name = comp.name
        try:
            for dep in comp.requires:
                dep_task = self._slots[dep].task
                if dep_task is not None and not dep_task.done():
                    # asyncio.wait, not await: a dependency's cancellation is its own, not ours.
                    await asyncio.wait([dep_task])
            missing = [d for d in comp.requires if self._slots[d].state is not _S.READY]
            if missing:
                dep = missing[0]
                dep_state = self._slots[dep].state
                if all(self._slots[d].state is _S.DISABLED for d in missing):
                    slot.state = _S.DISABLED
                    slot.reason = f"requires {dep!r}, which is disabled"
                    event(logging.INFO, "component_disabled", name, reason=slot.reason)
                else:
                    slot.state = _S.BLOCKED
                    slot.reason = f"requires {dep!r}, which is {dep_state.value}"
                    event(logging.WARNING, "component_blocked", name, reason=slot.reason)
                return
            slot.state = _S.STARTING
            slot.started_at = time.monotonic()
            event(logging.INFO, "component_starting", name)
            resource, closer = await self._attempt_start(slot, deadline)
        except asyncio.CancelledError:
            slot.ended_at = time.monotonic()
            slot.state = _S.FAILED
            slot.error, slot.error_code = "start was cancelled", "cancelled"
            raise
        except Exception as exc:  # the attempts are used up: record, never raise
            self._mark_failed(slot, exc, comp.classify(exc))
            return
        slot.ended_at = time.monotonic()
        self._set_ready(slot, resource, closer)
        event(
            logging.INFO,
            "component_ready",
            name,
            duration=slot.ended_at - (slot.started_at or 0),
            attempts=slot.attempts,
        )

    def _set_ready(self, slot: _Slot, resource: Any, closer: Closer) -> None:
        slot.closer = closer
        slot.resource = resource
        slot.state = _S.READY
        slot.probe.reset()
        # A start that just succeeded is as good as a probe: readiness reuses it for check_ttl.
        slot.probe.checked_at, slot.probe.checked_mono = time.time(), time.monotonic()
        self._resources[slot.component.name] = resource
        self._notify()

    def _notify(self) -> None:
        """Wake everyone in :meth:`wait_ready`: a component became ready."""
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_ready(self, names: Iterable[str] | None = None, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - answers False at the timeout
        """Wait until the named components (all wanted ones when ``None``) are ready.

        Starts nothing: pair it with background recovery, e.g. to hold back work until
        an optional component is back. Returns ``False`` when *timeout* passes first.
        """
        wanted = list(self._wanted) if names is None else self._closure_names(names)
        try:
            async with asyncio.timeout(timeout):
                while any(self._slots[n].state is not _S.READY for n in wanted):
                    fut = asyncio.get_running_loop().create_future()
                    self._waiters.append(fut)
                    await fut
        except TimeoutError:
            return False
        return True

    def _mark_failed(self, slot: _Slot, exc: BaseException, code: str) -> None:
        slot.ended_at = time.monotonic()
        slot.state = _S.FAILED
        slot.error = _describe(exc)
        slot.error_code = code
        level = logging.ERROR if slot.component.required else logging.WARNING
        event(
            level,
            "component_failed",
            slot.component.name,
            attempts=slot.attempts,
            error_code=code,
            error=slot.error,
            required=slot.component.required,
        )

    async def _attempt_start(self, slot: _Slot, deadline: float | None) -> tuple[Any, Closer]:
        comp = slot.component
        own = None if comp.deadline is None else time.monotonic() + comp.deadline
        limit = own if deadline is None else (deadline if own is None else min(own, deadline))
        policy = comp.retry_policy
        testing = is_testing()
        attempts = min(policy.attempts, testing_attempts()) if testing else policy.attempts
        resources = {d: self._resources[d] for d in comp.requires}

        async def one_attempt() -> tuple[Any, Closer]:
            slot.attempts += 1
            budget = comp.timeout
            if limit is not None:
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    msg = "the startup deadline passed before this attempt could begin"
                    raise _OutOfTime(msg)
                budget = min(budget, remaining)
            # In this task, not a task of its own: a task per attempt tripled the cost of a
            # no-op start. A driver that swallows our cancellation is cancelled again by
            # _cancel_until_done (rollback, shutdown, the startup_timeout safety net).
            cm = asyncio.timeout(budget)
            try:
                async with cm:
                    return await comp._open(Context(comp.name, resources, slot.attempts))
            except TimeoutError:
                if cm.expired():
                    msg = f"no answer within {budget:.3g}s (attempt {slot.attempts})"
                    raise _AttemptTimeout(msg) from None
                _raise_if_cancelled()
                raise
            except Exception:
                _raise_if_cancelled()
                raise

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, Exception) and not isinstance(exc, _OutOfTime) and comp.is_retryable(exc)

        def log_retry(exc: BaseException | None, attempt: int, wait: float) -> None:
            event(
                logging.WARNING,
                "component_retrying",
                comp.name,
                attempt=attempt,
                wait=wait,
                error_code=comp.classify(exc) if exc else None,
                error=_describe(exc) if exc else None,
            )

        # The first attempt runs bare: most starts succeed at once, and the retry
        # machinery costs more than a no-op start. Failures go to tenacity below.
        try:
            return await one_attempt()
        except Exception as exc:
            if attempts <= 1 or not retryable(exc):
                raise
            import random

            first_wait = 0.0 if testing else random.uniform(0, min(policy.backoff_max, policy.backoff_initial))
            if limit is not None and time.monotonic() + first_wait >= limit:
                raise
            log_retry(exc, 1, first_wait)
        if first_wait:
            await asyncio.sleep(first_wait)

        import tenacity

        class past_deadline(tenacity.stop.stop_base):
            """Never start an attempt after the deadline: stop if the next wait would cross it."""

            def __call__(self, rs: tenacity.RetryCallState) -> bool:
                return limit is not None and time.monotonic() + rs.upcoming_sleep >= limit

        # Attempt k of this loop is attempt k + 1 overall: the exponent carries on from there.
        wait: tenacity.wait.wait_base = (
            tenacity.wait_none()
            if testing
            else tenacity.wait_random_exponential(multiplier=policy.backoff_initial * 2, max=policy.backoff_max)
        )
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(attempts - 1) | past_deadline(),
            wait=wait,
            retry=tenacity.retry_if_exception(retryable),
            before_sleep=lambda rs: log_retry(
                rs.outcome.exception() if rs.outcome else None, rs.attempt_number + 1, rs.upcoming_sleep
            ),
            reraise=True,
        )
        result: tuple[Any, Closer] = await retrying(one_attempt)
        return result

    async def _rollback(self, closure: list[str], before: set[str]) -> None:
        """Stop what this call started and nobody else was promised, dependents first."""
        ours = [t for n in closure if (t := self._slots[n].task) is not None and not t.done() and self._demand[n] <= 1]
        await _cancel_until_done(ours, self.shutdown_timeout)
        in_flight = [t for n in closure if (t := self._slots[n].task) is not None and not t.done()]
        if in_flight:  # other callers' starts: let them finish
            await asyncio.wait(in_flight, timeout=self.shutdown_timeout)
        victims = [
            n
            for n in closure
            if self._slots[n].state is _S.READY and n not in before and n not in self._pinned and self._demand[n] <= 1
        ]
        if victims:
            event(logging.WARNING, "rollback_begin", components=",".join(victims))
            await self._stop_many(victims, self.shutdown_timeout)

    def _startup_error(self, name: str, report: StartupReport) -> StartupError:
        slot = self._slots[name]
        result = report.components[name]
        if slot.state is _S.BLOCKED:
            cause = slot.reason or "a requirement is unavailable"
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

    # -- reports ---------------------------------------------------------------------------------

    def _build_report(self, names: Iterable[str], base: float | None) -> StartupReport:
        results: dict[str, ComponentResult] = {}
        base = base if base is not None else time.monotonic()
        end = base
        for n in names:
            s = self._slots[n]
            offset = duration = None
            if s.started_at is not None:
                offset = max(0.0, s.started_at - base)
                finish = s.ended_at if s.ended_at is not None else time.monotonic()
                duration = finish - s.started_at
                end = max(end, finish)
            results[n] = ComponentResult(
                name=n,
                state=s.state,
                required=s.component.required,
                attempts=s.attempts,
                start_offset=offset,
                duration=duration,
                error=s.error,
                error_code=s.error_code,
                reason=s.reason,
            )
        status: StartupStatus = "ok"
        for r in results.values():
            if r.state in (_S.FAILED, _S.BLOCKED, _S.UNHEALTHY, _S.STOPPED, _S.STOPPING, _S.PENDING, _S.STARTING):
                if r.required:
                    status = "failed"
                    break
                status = "degraded"
        return StartupReport(status=status, components=MappingProxyType(results), duration=max(0.0, end - base))

    @property
    def report(self) -> StartupReport:
        """The startup report of every registered component, as things stand now."""
        return self._build_report(self._slots, self._base_time)

    # -- shutdown --------------------------------------------------------------------------------

    async def shutdown(self) -> ShutdownReport:
        """Stop every started component, dependents first, within ``shutdown_timeout``.

        In-flight starts are cancelled first. Every stop runs even when others fail;
        failures are logged with the component's name and returned in the report,
        never raised. The system can be started again afterwards.
        """
        self._phase = "stopping"  # readiness fails from this moment; liveness does not
        event(logging.INFO, "shutdown_begin")
        try:
            report: ShutdownReport = await self._shielded(self._shutdown())
        finally:
            self._phase = "stopped"
        level = logging.INFO if report.ok else logging.WARNING
        event(level, "shutdown_complete", duration=report.duration, errors=len(report.errors))
        return report

    async def _shutdown(self) -> ShutdownReport:
        t0 = time.monotonic()
        starting = [s.task for s in self._slots.values() if s.task is not None and not s.task.done()]
        await _cancel_until_done([*starting, *self._background], self.shutdown_timeout)
        remaining = max(0.0, self.shutdown_timeout - (time.monotonic() - t0))
        ready = [n for n, s in self._slots.items() if s.state in _RUNNING]
        report = await self._stop_many(ready, remaining)
        self._pinned.clear()
        self._base_time = None
        self._loop_ref = None
        return ShutdownReport(stopped=report.stopped, duration=time.monotonic() - t0, errors=report.errors)

    async def _stop_many(self, names: list[str], budget: float) -> ShutdownReport:
        t0 = time.monotonic()
        dependents = self._dependents(names)
        tasks: dict[str, asyncio.Task[StopResult]] = {}
        loop = asyncio.get_running_loop()
        order: list[str] = []

        def schedule(n: str) -> asyncio.Task[StopResult]:
            if n not in tasks:
                waits = [schedule(d) for d in dependents[n]]
                tasks[n] = loop.create_task(self._stop_one(n, waits), name=f"infraboot-stop-{n}")
                order.append(n)
            return tasks[n]

        for n in reversed(names):
            schedule(n)
        _, pending = await asyncio.wait(tasks.values(), timeout=budget) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        results: list[StopResult] = []
        errors: dict[str, str] = {}
        for n in order:
            task = tasks[n]
            if task.cancelled():
                result = StopResult(n, time.monotonic() - t0, f"shutdown_timeout ({budget:.3g}s) exceeded")
                self._finish_stop(n)
                event(logging.ERROR, "component_stop_failed", n, error=result.error)
            else:
                result = task.result()
            results.append(result)
            if result.error:
                errors[n] = result.error
        return ShutdownReport(stopped=tuple(results), duration=time.monotonic() - t0, errors=MappingProxyType(errors))

    async def _stop_one(self, name: str, wait_for: list[asyncio.Task[StopResult]]) -> StopResult:
        if wait_for:
            await asyncio.wait(wait_for)
        slot = self._slots[name]
        closer = slot.closer
        self._resources.pop(name, None)
        slot.state = _S.STOPPING
        event(logging.DEBUG, "component_stopping", name)
        t0 = time.monotonic()
        error = None
        try:
            if closer is not None:
                cm = asyncio.timeout(slot.component.stop_timeout)
                try:
                    async with cm:
                        await closer()
                except TimeoutError as exc:
                    if cm.expired():
                        msg = f"stop did not finish within stop_timeout={slot.component.stop_timeout:.3g}s"
                        raise _AttemptTimeout(msg) from None
                    raise exc
        except Exception as exc:  # teardown carries on: log with the name, collect, go on
            error = _describe(exc)
            event(logging.ERROR, "component_stop_failed", name, error_code=slot.component.classify(exc), error=error)
        finally:
            self._finish_stop(name)
        duration = time.monotonic() - t0
        if error is None:
            event(logging.INFO, "component_stopped", name, duration=duration)
        return StopResult(name, duration, error)

    def _finish_stop(self, name: str) -> None:
        slot = self._slots[name]
        self._resources.pop(name, None)
        slot.closer = None
        slot.resource = None
        slot.state = _S.STOPPED
        self._pinned.discard(name)

    async def stop(self, names: Iterable[str]) -> ShutdownReport:
        """Stop the named components and everything that requires them, dependents first.

        The rest of the system keeps running; ``ensure_initialized`` starts them again.
        """
        self._check_graph()
        targets = set(self._closure_names(names))
        changed = True
        while changed:  # add dependents, transitively
            changed = False
            for n, slot in self._slots.items():
                if n not in targets and targets.intersection(slot.component.requires):
                    targets.add(n)
                    changed = True
        for n in targets:
            recovery = self._slots[n].recovery
            if recovery is not None:
                recovery.cancel()  # a component stopped on purpose is not brought back
        victims = [n for n in self._slots if n in targets and self._slots[n].state in _RUNNING]
        report: ShutdownReport = await self._shielded(self._stop_many(victims, self.shutdown_timeout))
        return report

    def _closure_names(self, names: Iterable[str]) -> list[str]:
        if isinstance(names, str):
            names = [names]
        names = list(names)
        for n in names:
            if n not in self._slots:
                raise self._unknown(n)
        return names

    # -- health ------------------------------------------------------------------------------------

    def liveness(self) -> HealthReport:
        """Is the process alive? Always ``pass`` while the event loop can answer.

        It never touches a dependency: a Redis outage must never make an orchestrator
        restart every pod (which would turn the outage into a stampede).
        """
        return HealthReport("liveness", "pass")

    def startup(self) -> HealthReport:
        """Has initialization finished? ``pass`` once a startup succeeded (ok or degraded).

        For a Kubernetes ``startupProbe``: ``fail`` while starting, after a failed
        startup and after shutdown, with the phase in ``output``.
        """
        if self._phase == "running":
            return HealthReport("startup", "pass")
        return HealthReport("startup", "fail", output=self._phase)

    async def readiness(self) -> HealthReport:
        """Should this instance receive traffic? See :meth:`health`."""
        return await self.health()

    async def health(self, *, fresh: bool = False) -> HealthReport:
        """Readiness, with one entry per component the application asked for.

        ``fail`` when a required component is down or not started, or when shutdown
        has begun (``output="stopping"``, at once, without probing); ``warn`` when
        only optional components are down; ``pass`` otherwise.

        Probes are cached for ``check_ttl`` and shared: concurrent callers wait on
        the same in-flight probe, so 500 requests at once probe each component at
        most once. A call waits at most ``health_timeout`` for fresh results and then
        answers from the last known ones; the slow probe carries on under its own
        ``check_timeout``. ``fresh=True`` ignores the cache and waits for the probes
        (for the CLI and tests, not for endpoints under load).
        """
        if self._phase != "running":
            return self._health_report(output=self._phase, status="fail")
        now = time.monotonic()
        probes: list[asyncio.Task[None]] = []
        for n in self._wanted:
            slot = self._slots[n]
            if slot.state is not _S.READY:
                continue
            checked = slot.probe.checked_mono
            if fresh or checked is None or now - checked >= self.check_ttl:
                probes.append(self._probe_task(slot))
        if probes:
            await asyncio.wait(probes, timeout=None if fresh else self.health_timeout)
        return self._health_report()

    def _health_report(self, *, output: str | None = None, status: HealthStatus | None = None) -> HealthReport:
        components = {n: self._component_health(self._slots[n]) for n in self._wanted}
        if status is None:
            status = worst(c.status for c in components.values())
            if status != "pass":
                output = "; ".join(
                    f"{c.name}: {c.error_code or c.state.value}" for c in components.values() if c.status != "pass"
                )
        return HealthReport("readiness", status, MappingProxyType(components), output=output)

    def _component_health(self, slot: _Slot) -> ComponentHealth:
        state, probe, comp = slot.state, slot.probe, slot.component
        up = probe.healthy if state is _S.READY else state is _S.DISABLED
        status: HealthStatus = "pass" if up else ("fail" if comp.required else "warn")
        # A running component reports its last probe's code; any other one why it is not running.
        code = probe.error_code if state in _RUNNING else (None if up else slot.error_code or state.value)
        return ComponentHealth(
            name=comp.name,
            status=status,
            state=state,
            required=comp.required,
            kind=comp.kind,
            checked_at=probe.checked_at,
            latency=probe.latency,
            consecutive_failures=probe.failures,
            error_code=code,
        )

    def _probe_task(self, slot: _Slot) -> asyncio.Task[None]:
        """The in-flight probe of *slot*, started if there is none: concurrent callers share it."""
        inflight: asyncio.Task[None] | None = slot.probe.inflight
        if inflight is None or inflight.done():
            inflight = self.spawn(self._probe(slot), name=f"infraboot-check-{slot.component.name}")
            slot.probe.inflight = inflight
        return inflight

    async def _probe(self, slot: _Slot) -> None:
        comp, resource = slot.component, slot.resource
        t0 = time.perf_counter()
        code: str | None = None
        try:
            await self._within(comp.check(resource), comp.check_timeout, f"infraboot-probe-{comp.name}")
        except _Deadline:
            code = "timeout"
        except Exception as exc:  # a failed probe is data, never an exception for the caller
            _raise_if_cancelled()
            code = comp.classify(exc)
        if slot.resource is not resource or slot.state not in _RUNNING:
            return  # stopped or restarted meanwhile: this result describes nothing that still exists
        self._observe(slot, time.perf_counter() - t0, code)

    def _observe(self, slot: _Slot, latency: float, code: str | None) -> None:
        probe = slot.probe
        was_healthy = probe.healthy
        probe.observe(latency, code)
        name = slot.component.name
        if was_healthy and probe.failures >= self.failure_threshold:
            probe.healthy = False
            required = slot.component.required
            event(
                logging.ERROR if required else logging.WARNING,
                "component_unhealthy",
                name,
                error_code=code,
                failures=probe.failures,
                required=required,
            )
            if not required and slot.state is _S.READY:
                # Circuit open: callers get ComponentUnavailableError at once instead of a timeout.
                slot.state = _S.UNHEALTHY
                slot.error_code = code
                self._resources.pop(name, None)
                self._start_recovery(slot)
        elif not was_healthy and probe.successes >= self.success_threshold:
            probe.healthy = True
            if slot.state is _S.UNHEALTHY:
                slot.state = _S.READY
                slot.error = slot.error_code = None
                self._resources[name] = slot.resource
                self._notify()
            event(logging.INFO, "component_healthy", name, latency=latency)

    def _start_monitor(self) -> None:
        if self.check_interval is None or (self._monitor_task is not None and not self._monitor_task.done()):
            return
        self._monitor_task = self.spawn(self._monitor(self.check_interval), name="infraboot-monitor")

    async def _monitor(self, interval: float) -> None:
        """Probe every ready component each *interval* seconds; thresholds decide the flips."""
        while True:
            await asyncio.sleep(interval)
            probes = [self._probe_task(s) for n in self._wanted if (s := self._slots[n]).state is _S.READY]
            if probes:
                await asyncio.wait(probes)

    # -- recovery ------------------------------------------------------------------------------------

    def _start_recovery(self, slot: _Slot) -> None:
        """Bring an optional component back in the background: probe it, or start it again."""
        if not self.recovery or slot.component.required or self._phase != "running":
            return
        if slot.recovery is not None and not slot.recovery.done():
            return
        name = slot.component.name
        event(logging.INFO, "component_recovering", name, state=slot.state.value)
        slot.recovery = self.spawn(self._recover(slot), name=f"infraboot-recover-{name}")

    async def _recover(self, slot: _Slot) -> None:
        import random

        import tenacity

        comp = slot.component
        if is_testing():
            wait: tenacity.wait.wait_base = tenacity.wait_fixed(_TESTING_RECOVERY_WAIT)
            first_wait = _TESTING_RECOVERY_WAIT
        else:
            # Full jitter: a fleet of instances must not knock on a recovering server in step.
            wait = tenacity.wait_random_exponential(multiplier=comp.backoff_initial, max=comp.backoff_max)
            first_wait = random.uniform(0, comp.backoff_initial)
        await asyncio.sleep(first_wait)
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_never,
            wait=wait,
            retry=tenacity.retry_if_exception_type(_StillDown),
            reraise=True,
        )
        await retrying(self._recovery_attempt, slot)

    async def _recovery_attempt(self, slot: _Slot) -> None:
        """One try; raises :class:`_StillDown` to be tried again later."""
        comp = slot.component
        name = comp.name
        if slot.state is _S.UNHEALTHY:
            await self._probe_task(slot)
            if slot.state is _S.UNHEALTHY:
                raise _StillDown
            return
        if slot.state is not _S.FAILED:
            return  # stopped, or started by someone else meanwhile
        if any(self._slots[d].state is not _S.READY for d in comp.requires):
            raise _StillDown
        slot.attempts += 1
        resources = {d: self._resources[d] for d in comp.requires}
        try:
            async with asyncio.timeout(comp.timeout):
                resource, closer = await comp._open(Context(name, resources, slot.attempts))
        except Exception as exc:
            _raise_if_cancelled()
            slot.error, slot.error_code = _describe(exc), comp.classify(exc)
            event(logging.DEBUG, "component_still_down", name, error_code=slot.error_code, attempts=slot.attempts)
            raise _StillDown from None
        slot.error = slot.error_code = None
        slot.ended_at = time.monotonic()
        self._set_ready(slot, resource, closer)
        event(logging.INFO, "component_recovered", name, attempts=slot.attempts)
        blocked = [n for n, s in self._slots.items() if s.state is _S.BLOCKED and name in s.component.requires]
        if blocked:
            self.spawn(self._start_blocked(blocked), name=f"infraboot-unblock-{name}")

    async def _start_blocked(self, names: list[str]) -> None:
        with contextlib.suppress(Exception):  # its outcome is in the report and the logs
            await self.ensure_initialized(names)

    # -- loops and background work ----------------------------------------------------------------

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        old = self._loop_ref() if self._loop_ref is not None else None
        if old is loop:
            return
        if old is not None and not old.is_closed() and old.is_running():
            msg = (
                "this system was started in another event loop that is still running; "
                "use one SystemInitializer per event loop (or shut it down first)"
            )
            raise RuntimeError(msg)
        if self._loop_ref is not None and (self._resources or any(s.task for s in self._slots.values())):
            leaked = sorted(self._resources)
            if leaked:
                warnings.warn(
                    f"infraboot: components {leaked} were never shut down and their event loop is gone; "
                    "call await system.shutdown() before the loop ends",
                    ResourceWarning,
                    stacklevel=3,
                )
            self._forget()
        self._loop_ref = weakref.ref(loop)

    def _forget(self) -> None:
        """Drop every loop-bound object from a previous, finished event loop."""
        self._resources.clear()
        self._pinned.clear()
        self._demand.clear()
        self._background.clear()
        self._base_time = None
        self._monitor_task = None
        for slot in self._slots.values():
            slot.task = None
            slot.recovery = None
            slot.closer = None
            slot.resource = None
            slot.probe.inflight = None
            slot.reset()
            slot.state = _S.PENDING

    def _after_fork(self) -> None:
        """In a forked child: fresh resources on first use, the parent's sockets left alone."""
        self._loop_ref = None
        self._background = set()
        self._monitor_task = None
        self._demand.clear()
        for name, slot in self._slots.items():
            slot.task = None
            slot.recovery = None
            slot.probe.inflight = None
            if slot.state is _S.UNHEALTHY:
                self._fork_orphans.append(slot.resource)
                slot.state, slot.closer, slot.resource = _S.PENDING, None, None
                continue
            if slot.state is not _S.READY:
                continue
            old = self._resources.pop(name, None)
            # Keep the parent's objects alive: collecting them could close sockets the parent still uses.
            self._fork_orphans.append(old)
            try:
                new = slot.component.after_fork(old)
            except Exception:
                new = None
            if new is None:
                slot.state = _S.PENDING
                slot.closer = None
                slot.resource = None
                self._pinned.discard(name)
                continue
            self._resources[name] = new
            slot.resource = new
            slot.closer = functools.partial(slot.component.stop, new)

    async def _within(self, coro: Coroutine[Any, Any, _T], budget: float, name: str) -> _T:
        """Await *coro* for at most *budget* seconds; raise :class:`_Deadline` past it.

        The work runs as its own task, so a driver that swallows cancellation (some do,
        inside their own socket timeouts) cannot make a probe outlast its deadline: the
        abandoned work is cancelled, given a short grace, and left to shutdown.
        """
        inner = asyncio.get_running_loop().create_task(coro, name=name)
        try:
            done, _ = await asyncio.wait([inner], timeout=budget)
        except asyncio.CancelledError:
            await self._abandon(inner)
            raise
        if not done:
            await self._abandon(inner)
            raise _Deadline
        return inner.result()

    async def _abandon(self, inner: asyncio.Task[Any]) -> None:
        self._background.add(inner)  # shutdown cancels and awaits it if it is still there
        inner.add_done_callback(self._background.discard)
        inner.add_done_callback(_retrieve)
        await _cancel_until_done([inner], _ABANDON_GRACE)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run *coro* as background work of this system; shutdown cancels it."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _shielded(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run bounded cleanup to its end even if the caller is cancelled meanwhile."""
        task = asyncio.ensure_future(coro)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # Cancelled again during cleanup: let the (bounded) cleanup finish, then re-raise.
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            with contextlib.suppress(BaseException):
                await asyncio.wait([task])
            raise

    # -- context manager, repr ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.initialize_all()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()

    def __repr__(self) -> str:
        states = ", ".join(f"{n}:{s.state.value}" for n, s in self._slots.items())
        return f"<SystemInitializer [{states}]>"

    def __del__(self) -> None:
        if getattr(self, "_resources", None):
            warnings.warn(
                f"infraboot: {self!r} was garbage-collected with components still running "
                f"({sorted(self._resources)}); call await system.shutdown()",
                ResourceWarning,
                stacklevel=1,
            )


_systems: weakref.WeakSet[SystemInitializer] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for system in list(_systems):
        system._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark an abandoned task's outcome as seen: nobody is waiting for it any more."""
    if not task.cancelled():
        task.exception()


class _Deadline(Exception):
    """Internal: the work did not finish within its budget."""


# Seconds abandoned work (cancelled at a deadline) may take to clean up before we move on.
_ABANDON_GRACE = 0.5


async def _cancel_until_done(tasks: Iterable[asyncio.Task[Any]], budget: float) -> None:
    """Cancel *tasks* and wait for them, cancelling again every so often, for at most *budget* seconds.

    Once is not always enough: some drivers swallow a cancellation that lands inside their
    own timeout handling and carry on reading until their socket timeout. A second
    cancellation interrupts that read.
    """
    pending = {t for t in tasks if not t.done()}
    end = time.monotonic() + budget
    while pending:
        for task in pending:
            task.cancel()
        remaining = end - time.monotonic()
        if remaining <= 0:
            return
        _, pending = await asyncio.wait(pending, timeout=min(_RECANCEL_EVERY, remaining))


_RECANCEL_EVERY = 0.25


def _raise_if_cancelled() -> None:
    """Re-raise a cancellation that a driver turned into another error.

    Some drivers catch ``CancelledError`` inside their own timeouts and raise a
    ``TimeoutError`` or ``ConnectionError`` instead; retrying then would make a SIGTERM
    wait for every remaining attempt. The task still knows it was cancelled.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


_TESTING_RECOVERY_WAIT = 0.01  # set_testing(): no backoff, but no busy loop against a dead server


class _StillDown(Exception):
    """A recovery attempt found the component still down."""


class _AttemptTimeout(TimeoutError):
    """infraboot's own deadline expired (not a driver's timeout)."""


class _OutOfTime(TimeoutError):
    """The overall deadline passed before an attempt could begin."""


def _describe(exc: BaseException) -> str:
    """A one-line, scrubbed description of *exc*: its type and message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    kind = type(exc).__name__
    if isinstance(exc, _AttemptTimeout | _OutOfTime):
        return scrub(text)
    return scrub(f"{kind}: {text}" if text else kind)
