"""The lifecycle engine: start components in dependency order, stop them in reverse.

This room holds the lifecycle only. The graph is in ``_graph``, budgets and task
hygiene in ``_deadlines``, the retry loop in ``_retry``, one component's record in
``_slot``, probes, the monitor and recovery in ``_monitor``, fork hygiene in ``_fork``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
import weakref
from collections import Counter
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Literal, Self

from . import _fork, _graph
from ._checks import count_problem, seconds_problem
from ._component import Component
from ._deadlines import (
    ABANDON_GRACE,
    CANCEL_GRACE,
    DeadlineExceeded,
    TaskSet,
    cancel_until_done,
    run_within,
    shielded,
    wait_until,
)
from ._errors import describe
from ._health import HealthReport
from ._log import event
from ._monitor import Monitor
from ._redact import scrub
from ._report import ComponentSnapshot, ShutdownReport, StartupReport, StopResult
from ._retry import OutOfTime, retry
from ._slot import HOLDING, UNAVAILABLE, Override, Slot, open_attempt
from ._state import ComponentState
from .exceptions import ComponentUnavailableError, ConfigError, DependencyError, NotInitializedError, StartupError

__all__ = ["Phase", "SystemInitializer"]

_S = ComponentState
Phase = Literal["not started", "starting", "running", "startup failed", "stopping", "stopped"]
# A start that outlives the startup deadline this long is cut off from outside.
_DEADLINE_GRACE = 0.5
# At most this long goes to cancelling starts and background work before the stops begin.
_CANCEL_PHASE = 0.5
_UNSET: Any = object()


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
    each component once and share its outcome; concurrent ``shutdown``/``stop`` calls run
    each teardown once.
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
        self._slots: dict[str, Slot] = {}
        # What get() reads: ready slots and overrides only, so get() is one dict lookup.
        self._ready: dict[str, Slot | Override] = {}
        self._overrides: dict[str, Override] = {}
        self._pinned: set[str] = set()  # promised ready to a caller; a rollback leaves them alone
        self._demand: Counter[str] = Counter()  # in-flight ensure_initialized calls per component
        self._graph_checked = False
        self._loop_ref: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._base_time: float | None = None
        self._phase: Phase = "not started"
        self._wanted: dict[str, None] = {}  # every component an ensure_initialized asked for, in order
        self._waiters: set[asyncio.Future[None]] = set()
        self._tasks = TaskSet()  # probes, monitor, recovery, abandoned attempts, spawn()
        self._shutdown_task: asyncio.Task[ShutdownReport] | None = None
        self._monitor = Monitor(self, self._slots, self._wanted, self._tasks, self._unblock_dependents)
        _fork.watch(self, _reset_in_child)
        for c in components:
            self.register(c)

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
        given = {k: v for k, v in locals().items() if k != "self" and v is not _UNSET}
        problems: list[str] = []
        for key, value in given.items():
            if key in ("startup_timeout", "check_interval"):
                problem = seconds_problem(key, value, allow_none=True)
            elif key in ("failure_threshold", "success_threshold"):
                problem = count_problem(key, value, minimum=1, example=f"{key}=1")
            elif key == "recovery":
                problem = None if isinstance(value, bool) else f"recovery={value!r} must be True or False"
            else:
                problem = seconds_problem(key, value)
            if problem:
                problems.append(problem)
        if problems:
            raise ConfigError("SystemInitializer: " + "; ".join(problems), problems=tuple(problems))
        for key, value in given.items():
            setattr(self, key, value)

    # -- registration and the graph -------------------------------------------------------------

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
        self._slots[component.name] = Slot(component, self._ready, self._overrides, self._notify)
        self._graph_checked = False
        return component

    @property
    def components(self) -> Mapping[str, Component[Any]]:
        """The registered components by name (read-only)."""
        return MappingProxyType({n: s.component for n, s in self._slots.items()})

    @property
    def phase(self) -> Phase:
        """Where the whole system is: ``not started``, ``starting``, ``running``, ``startup failed``, ..."""
        return self._phase

    def validate(self) -> None:
        """Check the dependency graph before any I/O: unknown requirements and cycles raise :class:`DependencyError`."""
        if not self._graph_checked:
            _graph.validate(self._graph())
            self._graph_checked = True

    def _graph(self) -> dict[str, tuple[str, ...]]:
        return {n: tuple(s.component.requires) for n, s in self._slots.items()}

    def _resolve(self, names: Iterable[str] | None, *, call: str) -> list[str]:
        return _graph.resolve(names, self._slots, call=call)

    def _slot(self, name: str) -> Slot:
        try:
            return self._slots[name]
        except (KeyError, TypeError):
            raise _graph.unknown(name, self._slots) from None

    # -- accessors (hot path) ----------------------------------------------------------------------

    def get(self, name: str) -> Any:
        """The live resource of a ready component.

        Raises :class:`NotInitializedError` when it was not started (an
        :class:`~infraboot.UnknownComponentError` when it is not registered) and
        :class:`ComponentUnavailableError` when it is an optional component that is down
        or disabled.
        """
        try:
            return self._ready[name].resource
        except KeyError:
            raise self._why_not(name) from None

    def state(self, name: str) -> ComponentState:
        """The state of a registered component."""
        return self._slot(name).state

    def _why_not(self, name: str) -> Exception:
        slot = self._slots.get(name)
        if slot is None:
            return _graph.unknown(name, self._slots)
        state = slot.state
        detail = slot.error or slot.reason
        if state in UNAVAILABLE:
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

    @contextlib.contextmanager
    def override(self, name: str, resource: Any) -> Iterator[Any]:
        """Make ``get(name)`` return *resource* inside the block, whatever the component's state.

        On exit ``get(name)`` says the truth again: the live resource if the component
        is ready then, else the error for its state -- also when the component was
        stopped or restarted inside the block. Nothing is started or stopped. Nests.
        """
        slot = self._slot(name)
        previous = self._overrides.get(name)
        self._overrides[name] = Override(resource)
        slot.publish()
        try:
            yield resource
        finally:
            if previous is None:
                self._overrides.pop(name, None)
            else:
                self._overrides[name] = previous
            slot.publish()

    def snapshot(self) -> Mapping[str, ComponentSnapshot]:
        """A frozen view of every registered component, in registration order. Probes nothing."""
        return MappingProxyType({n: s.snapshot() for n, s in self._slots.items()})

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
        self.validate()
        closure = _graph.closure(self._resolve(names, call="ensure_initialized"), self._graph())
        self._bind_loop()
        slots = self._slots
        if all(slots[n].state is _S.READY for n in closure):
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
        before = {n for n in closure if slots[n].state is _S.READY}
        tasks: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        for n in closure:
            slot = slots[n]
            if slot.state in (_S.READY, _S.DISABLED):
                continue
            if slot.recovery is not None and not slot.recovery.done():
                continue  # recovering in the background already; its outcome is reported as it stands
            if slot.task is None or slot.task.done():
                slot.transition(_S.PENDING, fresh=True)
                slot.task = loop.create_task(self._start_one(slot, deadline), name=f"infraboot-start-{n}")
            tasks.append(slot.task)
        self._demand.update(closure)
        event(logging.DEBUG, "startup_begin", components=",".join(closure))
        try:
            failed = await self._wait_started(tasks, closure, deadline)
            if failed is not None:
                await shielded(self._rollback(closure, before, failed), owner=self._tasks)
        except BaseException:
            # Cancelled (Ctrl-C, SIGTERM, a task cancel): stop what we started, then let it go on.
            if first:
                self._phase = "startup failed"
            await shielded(self._rollback(closure, before, None), owner=self._tasks)
            raise
        finally:
            self._demand.subtract(closure)
            self._demand = +self._demand

        report = self._build_report(closure, call_start)
        if failed is not None:
            if first:
                self._phase = "startup failed"
            raise self._startup_error(failed, report)
        self._pinned.update(n for n in closure if slots[n].state is _S.READY)
        self._phase = "running"
        for n in closure:
            if slots[n].state is _S.FAILED:
                self._monitor.start_recovery(slots[n])
        self._monitor.start()
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
                slot.transition(_S.DISABLED, fresh=True, reason=scrub(reason))
                event(logging.INFO, "component_disabled", n, reason=slot.reason)
            elif slot.state is _S.DISABLED:
                slot.transition(_S.PENDING)
        if problems:
            raise ConfigError.from_problems(problems)

    async def _wait_started(
        self, tasks: list[asyncio.Task[None]], closure: list[str], deadline: float | None
    ) -> str | None:
        """Wait for the start tasks; return the first failed required component, or None."""
        slots = self._slots
        by_task = {slot.task: slot for n in closure if (slot := slots[n]).task is not None}

        def required_failed(task: asyncio.Future[Any]) -> bool:
            slot = by_task.get(task)  # type: ignore[call-overload]
            return slot is not None and slot.component.required and slot.state in (_S.FAILED, _S.BLOCKED)

        timeout_at = None if deadline is None else deadline + _DEADLINE_GRACE
        pending = await wait_until(tasks, timeout_at, until=required_failed)
        failed = self._first_required_failure(closure)
        if failed is not None or not pending:
            return failed
        # The safety net: a start outlived the startup deadline. Cut off ours, leave others' alone.
        ours = [t for n in closure if (t := slots[n].task) is not None and t in pending and self._demand[n] <= 1]
        for task in await cancel_until_done(ours, ABANDON_GRACE):
            self._tasks.adopt(task)  # type: ignore[arg-type]
        for n in closure:
            slot = slots[n]
            if slot.state in (_S.PENDING, _S.STARTING):
                self._fail(slot, OutOfTime("startup_timeout exceeded"))
        return self._first_required_failure(closure)

    def _first_required_failure(self, closure: list[str]) -> str | None:
        for n in closure:
            slot = self._slots[n]
            if slot.component.required and slot.state in (_S.FAILED, _S.BLOCKED):
                return n
        return None

    async def _start_one(self, slot: Slot, deadline: float | None) -> None:
        comp = slot.component
        slots = self._slots
        try:
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
            resources = {d: slots[d].resource for d in comp.requires}

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

            resource, closer = await retry(
                lambda n: open_attempt(slot, n, limit, resources, self._tasks),
                policy=comp.retry_policy,
                retryable=comp.is_retryable,
                deadline=limit,
                on_retry=log_retry,
            )
        except asyncio.CancelledError:
            slot.transition(_S.FAILED, error="start was cancelled", error_code="cancelled")
            raise
        except Exception as exc:  # the attempts are used up: record, never raise
            self._fail(slot, exc)
            return
        slot.transition(_S.READY, resource=resource, closer=closer)
        event(
            logging.INFO,
            "component_ready",
            slot.name,
            duration=(slot.ended_at or 0) - (slot.started_at or 0),
            attempts=slot.attempts,
        )

    def _fail(self, slot: Slot, exc: Exception) -> None:
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

    def _notify(self) -> None:
        """Wake everyone in :meth:`wait_ready`: a component became ready."""
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_ready(self, names: Iterable[str] | None = None, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - answers False at the timeout
        """Wait until the named components (all wanted ones when ``None``) are ready.

        Starts nothing: pair it with background recovery, e.g. to hold back work until
        an optional component is back. Returns ``False`` when *timeout* passes first.
        """
        wanted = list(self._wanted) if names is None else self._resolve(names, call="wait_ready")
        loop = asyncio.get_running_loop()
        end = None if timeout is None else time.monotonic() + timeout
        while any(self._slots[n].state is not _S.READY for n in wanted):
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.add(fut)
            try:
                if await wait_until((fut,), end):
                    return False
            finally:
                self._waiters.discard(fut)
        return True

    async def _rollback(self, closure: list[str], before: set[str], failed: str | None) -> None:
        """Stop what this call started and nobody else was promised, dependents first."""
        slots = self._slots
        ours = [t for n in closure if (t := slots[n].task) is not None and not t.done() and self._demand[n] <= 1]
        for task in await cancel_until_done(ours, ABANDON_GRACE):
            self._tasks.adopt(task)  # type: ignore[arg-type]
        deadline = time.monotonic() + self.shutdown_timeout
        in_flight = [t for n in closure if (t := slots[n].task) is not None and not t.done()]
        if in_flight:  # other callers' starts: let them finish
            await wait_until(in_flight, deadline)
        victims = [
            n
            for n in closure
            if slots[n].state is _S.READY and n not in before and n not in self._pinned and self._demand[n] <= 1
        ]
        if victims:
            event(logging.WARNING, "rollback_begin", components=",".join(victims))
            reason = f"rollback: required component {failed!r} failed" if failed else "rollback: startup was cancelled"
            await self._stop_many(victims, deadline, reason=reason)

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
        now = time.monotonic()
        base = base if base is not None else now
        return StartupReport.of({n: self._slots[n].result(base) for n in names}, base, now)

    @property
    def report(self) -> StartupReport:
        """The startup report of every registered component, as things stand now."""
        return self._build_report(self._slots, self._base_time)

    # -- stopping --------------------------------------------------------------------------------

    async def shutdown(self, *, timeout: float | None = None) -> ShutdownReport:  # noqa: ASYNC109 - a budget for the whole shutdown, checked and enforced inside
        """Stop every started component, dependents first, within *timeout* (default ``shutdown_timeout``).

        In-flight starts are cancelled first. Every stop runs even when others fail;
        failures are logged with the component's name and returned in the report,
        never raised. A teardown that hangs, or ignores its cancellation, is abandoned at
        the deadline and named in the report: ``shutdown()`` returns within *timeout*
        plus a fraction of a second whatever the components do. Concurrent calls share
        one shutdown and get the same report; a cancelled caller gets its
        ``CancelledError`` within half a second while the shutdown runs on, bounded.
        The system can be started again afterwards.
        """
        if timeout is not None:
            problem = seconds_problem("timeout", timeout)
            if problem:
                raise ConfigError(f"shutdown({problem})")
        task = self._shutdown_task
        if task is None or task.done():
            self._phase = "stopping"  # readiness fails from this moment; liveness does not
            event(logging.INFO, "shutdown_begin")
            budget = self.shutdown_timeout if timeout is None else timeout
            task = asyncio.get_running_loop().create_task(self._shutdown(budget), name="infraboot-shutdown")
            self._shutdown_task = task
        return await shielded(task, grace=CANCEL_GRACE)

    async def _shutdown(self, budget: float) -> ShutdownReport:
        t0 = time.monotonic()
        deadline = t0 + budget
        try:
            starting = [s.task for s in self._slots.values() if s.task is not None and not s.task.done()]
            await cancel_until_done([*starting, *self._tasks], min(budget, _CANCEL_PHASE))
            running = [
                n
                for n, s in self._slots.items()
                if s.state in HOLDING or (s.stop_task is not None and not s.stop_task.done())
            ]
            report = await self._stop_many(running, deadline)
        finally:
            self._pinned.clear()
            self._base_time = None
            self._loop_ref = None
            self._phase = "stopped"
        level = logging.INFO if report.ok else logging.WARNING
        event(level, "shutdown_complete", duration=time.monotonic() - t0, errors=len(report.errors))
        return ShutdownReport(stopped=report.stopped, duration=time.monotonic() - t0, errors=report.errors)

    async def stop(self, names: Iterable[str]) -> ShutdownReport:
        """Stop the named components and everything that requires them, dependents first.

        The rest of the system keeps running; ``ensure_initialized`` starts them again.
        A component being stopped already (by a concurrent ``shutdown()``, say) is not
        stopped twice: this call waits for that stop and reports it.
        """
        self.validate()
        targets = _graph.dependents(self._resolve(names, call="stop"), self._graph())
        for n in targets:
            recovery = self._slots[n].recovery
            if recovery is not None:
                recovery.cancel()  # a component stopped on purpose is not brought back
        victims = [
            n
            for n, s in self._slots.items()
            if n in targets and (s.state in HOLDING or (s.stop_task is not None and not s.stop_task.done()))
        ]
        deadline = time.monotonic() + self.shutdown_timeout
        report: ShutdownReport = await shielded(self._stop_many(victims, deadline), owner=self._tasks)
        return report

    async def _stop_many(self, names: list[str], deadline: float, *, reason: str | None = None) -> ShutdownReport:
        """Stop *names*, each after everything among them that requires it, all within *deadline*."""
        t0 = time.monotonic()
        wanted = set(names)
        graph = self._graph()
        required_by: dict[str, list[str]] = {n: [] for n in wanted}
        for n in wanted:
            for r in graph[n]:
                if r in wanted:
                    required_by[r].append(n)
        tasks: dict[str, asyncio.Task[StopResult]] = {}
        # Dependents first: reversed closure order puts every dependent before what it requires.
        order = [n for n in reversed(_graph.closure(names, graph)) if n in wanted]
        for n in order:
            tasks[n] = self._stop_task(self._slots[n], [tasks[d] for d in required_by[n]], deadline, reason)
        pending = await wait_until(tasks.values(), deadline + 2 * ABANDON_GRACE)
        if pending:  # cannot happen unless a stop task itself is stuck: never wait on it past the bound
            for task in await cancel_until_done(pending, ABANDON_GRACE):
                self._tasks.adopt(task)  # type: ignore[arg-type]
        results: list[StopResult] = []
        errors: dict[str, str] = {}
        budget = deadline - t0
        for n in order:
            task = tasks[n]
            if task.done() and not task.cancelled():
                result = task.result()
            else:
                result = StopResult(n, time.monotonic() - t0, f"shutdown_timeout ({budget:.3g}s) exceeded; abandoned")
                self._finish_stop(self._slots[n])
                event(logging.ERROR, "component_stop_failed", n, error=result.error)
            results.append(result)
            if result.error:
                errors[n] = result.error
        return ShutdownReport(stopped=tuple(results), duration=time.monotonic() - t0, errors=MappingProxyType(errors))

    def _stop_task(
        self, slot: Slot, dependents: list[asyncio.Task[StopResult]], deadline: float, reason: str | None
    ) -> asyncio.Task[StopResult]:
        """The stop of *slot*: the one in flight, or a new one. A teardown never runs twice at once."""
        task = slot.stop_task
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(
                self._stop_one(slot, dependents, deadline, reason), name=f"infraboot-stop-{slot.name}"
            )
            slot.stop_task = task
        return task

    async def _stop_one(
        self, slot: Slot, dependents: list[asyncio.Task[StopResult]], deadline: float, reason: str | None
    ) -> StopResult:
        if dependents:
            await wait_until(dependents, deadline)
        comp = slot.component
        closer = slot.closer
        slot.transition(_S.STOPPING)  # get() refuses from here on; the resource stays until the closer ran
        event(logging.DEBUG, "component_stopping", slot.name)
        t0 = time.monotonic()
        error = code = None
        budget = min(comp.stop_timeout, deadline - t0)
        try:
            if budget <= 0:
                error, code = "shutdown_timeout was used up before this component could stop", "timeout"
            elif closer is not None:
                await run_within(closer(reason), budget, name=f"infraboot-teardown-{slot.name}", abandoned=self._tasks)
        except DeadlineExceeded as exc:
            which = "stop_timeout" if budget >= comp.stop_timeout else "shutdown_timeout"
            error, code = f"stop did not finish within {which}={budget:.3g}s", "timeout"
            if exc.abandoned:
                error += "; it ignored cancellation and was abandoned"
        except Exception as exc:  # teardown carries on: log with the name, collect, go on
            error, code = describe(exc), comp.classify(exc)
        finally:
            self._finish_stop(slot)
        duration = time.monotonic() - t0
        if error is None:
            event(logging.INFO, "component_stopped", slot.name, duration=duration)
        else:
            event(logging.ERROR, "component_stop_failed", slot.name, error_code=code, error=error)
        return StopResult(slot.name, duration, error)

    def _finish_stop(self, slot: Slot) -> None:
        slot.transition(_S.STOPPED, resource=None, closer=None)
        self._pinned.discard(slot.name)

    # -- health (the monitor room does the work) ------------------------------------------------------

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
        return await self._monitor.readiness(fresh=False)

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
        return await self._monitor.readiness(fresh=fresh)

    def _unblock_dependents(self, slot: Slot) -> None:
        """A component came back in the background: start what was blocked waiting for it."""
        blocked = [n for n, s in self._slots.items() if s.state is _S.BLOCKED and slot.name in s.component.requires]
        if blocked:
            self.spawn(self._start_blocked(blocked), name=f"infraboot-unblock-{slot.name}")

    async def _start_blocked(self, names: list[str]) -> None:
        with contextlib.suppress(Exception):  # its outcome is in the report and the logs
            await self.ensure_initialized(names)

    # -- loops and background work ----------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run *coro* as background work of this system; shutdown cancels it."""
        return self._tasks.spawn(coro, name=name)

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
        if self._loop_ref is not None:
            leaked = sorted(n for n, s in self._slots.items() if s.state in HOLDING)
            if leaked:
                warnings.warn(
                    f"infraboot: components {leaked} were never shut down and their event loop is gone; "
                    "call await system.shutdown() before the loop ends",
                    ResourceWarning,
                    stacklevel=3,
                )
            self.forget()
        self._loop_ref = weakref.ref(loop)

    def forget(self) -> None:
        """Drop every component's loop-bound state without closing anything.

        For an event loop that is gone (a test's, say): its tasks and connections cannot
        be awaited or closed any more. Every component goes back to ``pending``; the
        registrations and settings stay. Anything still open is left to the garbage
        collector, so prefer ``await shutdown()`` whenever the loop is still running.
        """
        self._pinned.clear()
        self._demand.clear()
        self._tasks.clear()
        self._monitor.forget()
        self._waiters.clear()
        self._base_time = None
        self._shutdown_task = None
        self._loop_ref = None
        self._phase = "not started"
        for slot in self._slots.values():
            slot.forget()

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
        running = sorted(n for n, s in getattr(self, "_slots", {}).items() if s.state in HOLDING)
        if running:
            warnings.warn(
                f"infraboot: {self!r} was garbage-collected with components still running "
                f"({running}); call await system.shutdown()",
                ResourceWarning,
                stacklevel=1,
            )


def _reset_in_child(system: SystemInitializer) -> None:
    """In a forked child: fresh resources on first use, the parent's sockets left alone."""
    system._loop_ref = None
    system._tasks.clear()
    system._monitor.forget()
    system._demand.clear()
    system._shutdown_task = None
    for name, slot in system._slots.items():
        if not slot.after_fork(_fork.orphans):
            system._pinned.discard(name)
