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
from collections import Counter
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, Unpack

from infraboot._base._checks import seconds_problem
from infraboot._base._log import event, listeners, logger
from infraboot.exceptions import ConfigError, DependencyError, NotInitializedError

from . import _fork, _graph
from ._component import Component
from ._deadlines import ABANDON_GRACE, CANCEL_GRACE, TaskSet, shielded, wait_until
from ._drain import Drain, DrainReport
from ._fork import LoopBinding
from ._groups import HealthGroup, as_group, groups_problems, members, parse_groups, with_groups
from ._health import HealthReport
from ._report import ComponentSnapshot, ShutdownReport, StartupReport
from ._slot import HOLDING, Override, Slot
from ._state import ComponentState
from ._system_settings import DEFAULTS, SystemSettings, settings_problems

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

__all__ = ["Phase", "SystemInitializer"]

_S = ComponentState
#: A required component found in these after a startup call waited was stopped meanwhile (a concurrent stop()).
_STOPS = frozenset({_S.STOPPED, _S.STOPPING})
Phase = Literal["not started", "starting", "running", "startup failed", "stopping", "stopped"]


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

    Health (see :meth:`health`; :meth:`configure` changes any setting later):

    - ``check_interval``: seconds between the monitor's probes (default 10; ``None``: off).
    - ``check_ttl``: seconds a probe result is reused by :meth:`readiness` (default 1).
    - ``health_timeout``: seconds :meth:`readiness` waits for fresh probes before it answers
      from the last known results (default 1): a blackholed host never stalls the endpoint.
    - ``failure_threshold`` / ``success_threshold``: probes in a row that flip a component
      to unhealthy / back to healthy (default 1 / 1).
    - ``recovery``: bring optional components that failed or went down back in the
      background, with jittered backoff (default ``True``).
    - ``drain_delay``: seconds :meth:`drain` holds readiness off while still serving (default 5).
    - ``drain_token``: the secret a ``POST /drainz`` from another host must send as
      ``Authorization: Bearer <token>`` (default ``None``: only loopback callers may drain; see
      ``docs/operations.md``). At least 16 characters; never logged nor shown.
    - ``health_groups``: readiness views over some components, each on its own path
      (``/readyz/<group>``) with a policy and a time budget: ``{"critical": ["database"]}`` or
      ``{"critical": {"include": ["database", "critical"], "policy": "gate", "timeout": 0.5}}``
      (names and tags; see :class:`~infraboot.HealthGroup` and ``docs/health.md``).

    Every method is safe to call concurrently: concurrent ``ensure_initialized`` calls start
    each component once and share its outcome; concurrent ``shutdown``/``stop`` calls run
    each teardown once.
    """

    # The settings (defined, with their defaults, in _system_settings.SETTINGS).
    startup_timeout: float | None
    shutdown_timeout: float
    check_interval: float | None
    check_ttl: float
    health_timeout: float
    failure_threshold: int
    success_threshold: int
    recovery: bool
    drain_delay: float
    drain_token: str | None
    health_groups: Mapping[str, HealthGroup] | None

    def __init__(self, components: Iterable[Component[Any]] = (), **settings: Unpack[SystemSettings]) -> None:
        # The startup, health and teardown machinery loads with the first system, not with ``import infraboot``.
        from ._monitor import Monitor
        from ._teardown import Teardown

        self.__dict__.update(DEFAULTS)
        self.configure(**settings)
        self._slots: dict[str, Slot] = {}
        # What get() reads: ready slots and overrides only, so get() is one dict lookup.
        self._ready: dict[str, Slot | Override] = {}
        self._overrides: dict[str, Override] = {}
        self._pinned: set[str] = set()  # promised ready to a caller; a rollback leaves them alone
        self._demand: Counter[str] = Counter()  # in-flight ensure_initialized calls per component
        # The graph, and everything in start order: worked out (and checked) once per registry.
        self._requires: dict[str, tuple[str, ...]] | None = None
        self._order: list[str] | None = None
        self._deferred: ConfigError | None = None
        self._loop = LoopBinding()
        self._base_time: float | None = None
        self._phase: Phase = "not started"
        self._wanted: dict[str, None] = {}  # every component an ensure_initialized asked for, in order
        self._tasks = TaskSet()  # probes, monitor, recovery, spawn()
        self._shutdown_task: asyncio.Task[ShutdownReport] | None = None
        self.drainer = Drain()  # readiness off while serving; counts work in flight (drainer.track())
        self._shutdowns = 0  # bumped by every shutdown: a startup that saw one begin does not claim "running"
        self._monitor = Monitor(
            self,
            self._slots,
            self._wanted,
            self._tasks,
            on_recovered=lambda slot: _unblock_dependents(self, slot),
            lookup=self.get,
        )
        self._teardown = Teardown(
            self._slots, self._graph, self._tasks, lambda slot: self._pinned.discard(slot.name), lambda: self._order
        )
        self._hooks = (self._monitor.notify, self._monitor.traffic_failed)  # every slot's: bound once
        _fork.watch(self, _reset_in_child)
        for c in components:
            self.register(c)

    def configure(self, **settings: Unpack[SystemSettings]) -> None:
        """Change the system's settings (see the class docstring); unnamed ones keep their value.

        Every value is checked before any is applied: a :class:`ConfigError` lists every
        problem and changes nothing. A new ``check_interval`` applies from the next startup.
        """
        given: dict[str, Any] = dict(settings)
        problems = settings_problems(given)
        if "health_groups" in given and not problems:  # checked with the others by settings_problems
            groups = given["health_groups"]
            given["health_groups"] = None if groups is None else MappingProxyType(parse_groups(groups)[0])
        if problems:
            raise ConfigError("SystemInitializer: " + "; ".join(problems), problems=tuple(problems))
        for key, value in given.items():
            setattr(self, key, value)

    # -- registration and the graph -------------------------------------------------------------

    def register(self, component: Component[Any], *, replace: bool = False, tags: Iterable[str] = ()) -> Component[Any]:
        """Add *component*; returns it, so it can be used as a decorator's last step.

        ``replace=True`` swaps a component of the same name (a built-in, say) before it starts;
        *tags* are added to the component's own (health groups select by tag).
        """
        if not isinstance(component, Component):
            msg = (
                f"register() takes a Component, not {type(component).__name__}; "
                "decorate an async generator with @infraboot.component('name') or subclass infraboot.Component"
            )
            raise ConfigError(msg)
        old = self._slots.get(component.name)
        if old is not None and not replace:
            msg = (
                f"a component named {component.name!r} is already registered ({old.component!r}); give the new "
                "one another name, or register(component, replace=True) to swap it before startup"
            )
            raise DependencyError(msg)
        if old is not None and old.busy:
            msg = f"cannot replace {component.name!r} while it is {old.state.value}; stop it first"
            raise ConfigError(msg)
        if tags:
            added = tuple(tags) if not isinstance(tags, str) else (tags,)
            if not all(_graph.is_name(t) for t in added):
                msg = f"register({component.name!r}, tags={tags!r}): tags are words, e.g. tags=['critical']"
                raise ConfigError(msg)
            component.tags = tuple(dict.fromkeys([*component.tags, *added]))
        slot = Slot(component, self._ready, self._overrides, *self._hooks)
        self._slots[component.name] = slot
        self._requires = self._order = None
        return component

    @property
    def components(self) -> Mapping[str, Component[Any]]:
        """The registered components by name (read-only)."""
        return MappingProxyType({n: s.component for n, s in self._slots.items()})

    def component(self, name: str) -> Component[Any]:
        """The registered component named *name*."""
        return self._slot(name).component

    def use(self, name: str, settings: Any = None, *, env_file: str | None = None) -> None:
        """Settings in code for a configured component (``redis``, ``database``, a named instance).

        *settings* is a settings object (used as it is) or a mapping of its fields (each beats
        the environment; the rest comes from the environment, then *env_file*, then the
        defaults). Read at the next start; giving settings to a started component is an error.
        """
        refused = self._refuse_settings(name)
        if refused:
            raise ConfigError(refused)
        self._slot(name).component.use(settings, env_file=env_file)  # type: ignore[attr-defined]  # checked above

    def settings_problems(self, name: str, settings: Any = None, *, env_file: str | None = None) -> list[str]:
        """What :meth:`use` would refuse now or the next start would find wrong, one line each; applies nothing."""
        refused = self._refuse_settings(name)
        if refused:
            return [refused]
        check = getattr(self._slot(name).component, "settings_problems", None)
        return [] if check is None else list(check(settings, env_file=env_file))

    def _refuse_settings(self, name: str) -> str | None:
        slot = self._slot(name)
        use = getattr(slot.component, "use", None)
        if use is None or slot.busy:
            why = f"it is {slot.state.value}" if use else f"{slot.component!r} takes no settings"
            return f"settings for {name!r}: {why}; give them before ensure_initialized(), or stop it first"
        return None

    @property
    def phase(self) -> Phase:
        """Where the whole system is: ``not started``, ``starting``, ``running``, ``startup failed``, ..."""
        return self._phase

    def validate(self) -> None:
        """Check before any I/O: the dependency graph (unknown requirements, cycles raise
        :class:`DependencyError`) and any configuration error held by :meth:`defer_config_error`."""
        if self._deferred is not None:
            raise self._deferred
        if self._order is None:
            graph = self._graph()
            self._order = _graph.validate(graph)
        if self.health_groups:
            problems = groups_problems(self.health_groups, self.components)
            if problems:
                raise ConfigError("; ".join(problems), problems=tuple(problems))

    def defer_config_error(self, error: ConfigError | None) -> None:
        """Hold *error* (bad ``INFRABOOT_*`` variables, say) until startup, where ``validate()`` and
        ``ensure_initialized()`` raise it before any I/O -- not at import time. ``None`` clears it."""
        self._deferred = error

    def _graph(self) -> dict[str, tuple[str, ...]]:
        graph = self._requires
        if graph is None:
            graph = self._requires = {n: tuple(s.component.requires) for n, s in self._slots.items()}
        return graph

    def _resolve(self, names: Iterable[str] | None, *, call: str) -> list[str]:
        return _graph.resolve(names, self._slots, call=call)

    def _slot(self, name: str) -> Slot:
        try:
            return self._slots[name]
        except (KeyError, TypeError):
            raise _graph.unknown(name, self._slots) from None

    # -- accessors (hot path) ----------------------------------------------------------------------

    def get(self, name: str) -> Any:
        """The live resource of a ready component. Raises :class:`NotInitializedError` when it was not
        started (:class:`~infraboot.UnknownComponentError` when not registered), and
        :class:`ComponentUnavailableError` when it is down, not configured or disabled."""
        try:
            return self._ready[name].resource
        except (KeyError, TypeError):
            slot = self._slots.get(name) if isinstance(name, str) else None
            raise (_graph.unknown(name, self._slots) if slot is None else slot.not_ready_error()) from None

    def state(self, name: str) -> ComponentState:
        """The state of a registered component."""
        return self._slot(name).state

    def get_redis(self, name: str = "redis") -> Redis:
        """The ``redis.asyncio.Redis`` client of the Redis component *name* (``redis``, or a named one)."""
        client: Redis = self.get(name)
        return client

    def get_engine(self, name: str = "database") -> AsyncEngine:
        """The SQLAlchemy ``AsyncEngine`` of the database component *name* (``database``, or a named one)."""
        engine: AsyncEngine = self.get(name)
        return engine

    def get_session(
        self, name: str = "database", **options: Any
    ) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        """An ``AsyncSession`` on the engine of *name* that commits on success, rolls back on an exception, closes.

        It takes the component's ``session_options``; keyword arguments given here win
        (``expire_on_commit`` defaults to ``False``)::

            async with system.get_session() as session:
                session.add(user)
            # committed here; rolled back instead if the block raised
        """
        from infraboot._front._accessors import session_options, session_scope

        return session_scope(self.get_engine(name), **{**session_options(self, name), **options})

    def pool_stats(self, name: str = "database") -> dict[str, int]:
        """Pool figures of the ready built-in component *name*: for a database ``size``, ``checked_out``,
        ``idle``, ``overflow``; for Redis ``in_use``, ``available``, ``max``."""
        resource = self.get(name)
        result = self.component(name).pool_stats(resource)
        if result is None:
            msg = f"component {name!r} has no connection pool"
            raise TypeError(msg)
        return result

    @contextlib.contextmanager
    def override(self, name: str, resource: Any) -> Iterator[Any]:
        """Make ``get(name)`` return *resource* inside the block, whatever the component's state.

        On exit ``get(name)`` says the truth again: the live resource if the component
        is ready then, else the error for its state -- also when the component was
        stopped or restarted inside the block. Nothing is started or stopped. Nests.
        """
        slot = self._slot(name)
        mine = Override.push(self._overrides, name, resource)
        slot.publish()
        try:
            yield resource
        finally:
            mine.pop(self._overrides, name)
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
        if names is None and self._order is not None:
            closure = list(self._order)  # everything: worked out once
        else:
            closure = _graph.closure(self._resolve(names, call="ensure_initialized"), self._graph())
        self._bind_loop()
        slots = self._slots
        before = {n for n in closure if slots[n].state is _S.READY}
        if len(before) == len(closure):
            if self._phase != "stopping":
                self._phase = "running"  # nothing to start (an empty list, say) is a finished startup
            return self._build_report(closure, self._base_time)
        if self._phase == "stopping":
            msg = "ensure_initialized() was called while the system is shutting down; start it again after shutdown()"
            raise NotInitializedError(msg)
        from ._startup import configure_all, launch, startup_error, wait_started

        configure_all(closure, slots)
        self._wanted.update(dict.fromkeys(closure))
        first = self._phase != "running"
        if first:
            self._phase = "starting"

        epoch = self._shutdowns
        call_start = time.monotonic()
        if self._base_time is None:
            self._base_time = call_start
        deadline = call_start + self.startup_timeout if self.startup_timeout is not None else None
        event(logging.DEBUG, "startup_begin", components=",".join(closure))  # before launch: it logs the starts
        tasks = launch(closure, slots, deadline, self._tasks, self.get)
        self._demand.update(closure)
        try:
            failed = await wait_started(
                tasks,
                closure,
                slots,
                deadline,
                demand=self._demand,
                abandoned=self._tasks,
                stop_began=self._teardown.stop_began,
            )
            if failed is None and self._shutdowns == epoch:  # a concurrent stop() took a required one down
                failed = next((n for n in closure if slots[n].component.required and slots[n].state in _STOPS), None)
            if failed is not None:
                await shielded(self._rollback(closure, before, failed, deadline), owner=self._tasks)
        except GeneratorExit:  # closed unfinished by the garbage collector: no loop left to stop anything on
            raise
        except BaseException:
            # Cancelled (Ctrl-C, SIGTERM, a task cancel): stop what we started, then let it go on.
            if first:
                self._phase = "startup failed"
            await shielded(self._rollback(closure, before, None, deadline), owner=self._tasks)
            event(logging.DEBUG, "startup_unfinished", status="cancelled")
            raise
        finally:
            demand = self._demand
            for n in closure:  # Counter.subtract and +Counter would walk it twice
                if demand[n] > 1:
                    demand[n] -= 1
                else:  # (absent when the system was reset meanwhile: a fork, a closed loop)
                    demand.pop(n, None)

        report = self._build_report(closure, call_start)
        if self._shutdowns != epoch:
            event(logging.DEBUG, "startup_unfinished", status="interrupted by shutdown")
            msg = "shutdown() began while ensure_initialized() was starting; start again after the shutdown"
            raise NotInitializedError(msg)
        if failed is not None:
            if first:
                self._phase = "startup failed"
            event(logging.DEBUG, "startup_unfinished", status=report.status, failed=failed, duration=report.duration)
            raise startup_error(slots[failed], report)
        self._pinned.update(n for n in closure if slots[n].state is _S.READY)
        self._phase = "running"
        self._monitor.after_startup(closure)
        level = logging.INFO if report.status == "ok" else logging.WARNING
        if listeners or logger.isEnabledFor(level):
            failures = ",".join(report.failed) or None
            event(level, "startup_complete", status=report.status, duration=report.duration, failed=failures)
        return report

    async def wait_ready(self, names: Iterable[str] | None = None, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - answers False at the timeout
        """Wait until the named components (all wanted ones when ``None``) are ready.

        Starts nothing: pair it with background recovery, e.g. to hold back work until
        an optional component is back. Returns ``False`` when *timeout* passes first.
        """
        wanted = list(self._wanted) if names is None else self._resolve(names, call="wait_ready")
        return await self._monitor.wait_ready(wanted, timeout)

    def _rollback(
        self, closure: list[str], before: set[str], failed: str | None, deadline: float | None
    ) -> Coroutine[Any, Any, None]:
        return self._teardown.rollback(
            closure,
            time.monotonic() + self.shutdown_timeout,
            alone=lambda n: self._demand[n] <= 1,
            promised=lambda n: n in before or n in self._pinned,
            failed=failed,
            others_until=None if deadline is None else deadline + ABANDON_GRACE,
        )

    # -- reports ---------------------------------------------------------------------------------

    def _build_report(self, names: Iterable[str], base: float | None) -> StartupReport:
        base = base if base is not None else time.monotonic()
        return StartupReport.of({n: self._slots[n].result(base) for n in names}, base)

    @property
    def report(self) -> StartupReport:
        """The startup report, as things stand now, of what was asked for (every component before that)."""
        return self._build_report(self._wanted or self._slots, self._base_time)

    # -- stopping --------------------------------------------------------------------------------

    async def shutdown(self, *, timeout: float | None = None) -> ShutdownReport:  # noqa: ASYNC109 - a budget for the whole shutdown, checked and enforced inside
        """Stop every started component, dependents first, within *timeout* (default ``shutdown_timeout``).

        In-flight starts are cancelled first. Every stop runs even when others fail; failures are
        logged with the component's name and returned in the report, never raised. A teardown that
        hangs or ignores its cancellation is abandoned at the deadline and named in the report, so
        this returns within *timeout* plus a fraction of a second. Concurrent calls share one
        shutdown and its report; a cancelled caller gets ``CancelledError`` within half a second.
        """
        if timeout is not None:
            problem = seconds_problem("timeout", timeout)
            if problem:
                raise ConfigError(f"shutdown({problem})")
        budget = self.shutdown_timeout if timeout is None else timeout
        task = self._shutdown_task
        if task is None or task.done():
            self._phase = "stopping"  # readiness fails from this moment; liveness does not
            self._shutdowns += 1
            event(logging.INFO, "shutdown_begin")
            task = asyncio.get_running_loop().create_task(self._shutdown(budget), name="infraboot-shutdown")
            self._shutdown_task = task
            return await shielded(task, grace=CANCEL_GRACE)
        # Joining a shutdown already under way: share its report, but never wait past our own budget.
        if await wait_until((task,), time.monotonic() + budget + ABANDON_GRACE):
            return self._teardown.report_in_progress(budget)
        return await shielded(task, grace=CANCEL_GRACE)

    async def _shutdown(self, budget: float) -> ShutdownReport:
        t0 = time.monotonic()
        try:
            report = await self._teardown.shutdown(budget)
        finally:
            self._pinned.clear()
            self._base_time = None
            self._loop.release()
            self._phase = "stopped"
            self.drainer.reset()
        level = logging.INFO if report.ok else logging.WARNING
        event(level, "shutdown_complete", duration=time.monotonic() - t0, errors=len(report.errors))
        return ShutdownReport(stopped=report.stopped, duration=time.monotonic() - t0, errors=report.errors)

    async def stop(self, names: Iterable[str]) -> ShutdownReport:
        """Stop the named components and everything that requires them, dependents first.

        The rest of the system keeps running; ``ensure_initialized`` starts them again.
        A component being stopped already (by a concurrent ``shutdown()``, say) is not
        stopped twice: this call waits for that stop and reports it.

        Starts under way among them are cut off first (with a short grace for their cleanup):
        nothing ends ``ready`` on a requirement being closed, and background recovery does not
        bring them back. A startup call waiting for them raises :class:`StartupError` at once when
        one it needs as required is cut off or taken down (an optional one is reported ``failed``).

        A startup call made while this runs: a new start of a dependent of what is being stopped
        is blocked; a component whose own stop is under way is started again once it has
        stopped; one the stop has not reached yet is still ``ready``, and is closed when it is.
        """
        self.validate()
        asked = self._resolve(names, call="stop")
        targets = _graph.dependents(asked, self._graph())
        deadline = time.monotonic() + self.shutdown_timeout
        stopping = self._teardown.stop(sorted(targets), deadline, asked=asked)
        report: ShutdownReport = await shielded(stopping, owner=self._tasks)
        return report

    async def drain(self, *, delay: float | None = None) -> DrainReport:
        """Readiness off at once, still serving, until *delay* (``drain_delay``) passed and no work tracked
        by ``drainer.track()`` is in flight (at most twice that): ``/drainz``, SIGTERM. Calls share one."""
        return await self.drainer.run(self.drain_delay if delay is None else delay)

    def undrain(self) -> bool:
        """Undo :meth:`drain`: readiness follows the components again and a drain still waiting returns now.

        ``True`` when a drain was under way. For a drain sent by mistake (``DELETE /drainz`` is
        the HTTP form); it does not stop a shutdown that SIGTERM already began.
        """
        undone = self.drainer.end()
        if undone:
            event(logging.WARNING, "drain_undone", hint="readiness follows the components again")
        return undone

    # -- health (the monitor room does the work) ------------------------------------------------------

    def liveness(self) -> HealthReport:
        """Is the process alive? Always ``pass`` while the event loop can answer.

        It never touches a dependency: a Redis outage must never make an orchestrator
        restart every pod, which would turn the outage into a stampede."""
        return HealthReport("liveness", "pass")

    def startup(self) -> HealthReport:
        """Has initialization finished? ``pass`` once a startup succeeded (ok or degraded).

        For a Kubernetes ``startupProbe``: ``fail`` while starting, after a failed
        startup and after shutdown, with the phase in ``output``.
        """
        if self._phase == "running":
            return HealthReport("startup", "pass")
        return HealthReport("startup", "fail", output=self._phase)

    async def readiness(self, *, group: str | None = None) -> HealthReport:
        """Should this instance receive traffic? :meth:`health` with the cache."""
        return await self.health(group=group)

    async def health(self, *, fresh: bool = False, group: str | None = None) -> HealthReport:
        """Readiness, one entry per component asked for: ``fail`` when a required one is down or
        not started, or once shutdown began (``output="stopping"``); ``warn`` when only optional ones
        are down. Probes are cached for ``check_ttl`` and shared; a call waits at most ``health_timeout``
        for fresh results. ``fresh=True`` ignores the cache and waits (the CLI, tests; not endpoints).

        *group* names a health group (``health_groups``): only its members are probed, the call
        waits at most the group's ``timeout``, and its policy decides the status. Without one, the
        report carries each group's status as its components show it (``to_dict(details=True)``).
        """
        if group is None:
            report = await self._monitor.readiness(fresh=fresh)
            if self.health_groups and report.components:
                report = with_groups(report, self.health_groups, self.components)
            return report
        chosen = self.health_group(group)
        names = members(chosen, self.components, self._wanted)
        report = await self._monitor.readiness(fresh=fresh, names=names, budget=chosen.timeout)
        return as_group(report, chosen)

    def health_group(self, name: str) -> HealthGroup:
        """The health group *name*; a :class:`ConfigError` naming the groups there are when there is none."""
        groups = self.health_groups or {}
        try:
            return groups[name]
        except (KeyError, TypeError):
            there = ", ".join(groups) or "none yet"
            msg = (
                f"no health group named {name!r} (the groups: {there}); define it with "
                f'health_groups={{{name!r}: ["database"]}} or INFRABOOT_HEALTH_GROUPS'
            )
            raise ConfigError(msg) from None

    # -- loops and background work ----------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run *coro* as background work of this system; shutdown cancels it."""
        return self._tasks.spawn(coro, name=name)

    def _bind_loop(self) -> None:
        if self._loop.bind(lambda: sorted(n for n, s in self._slots.items() if s.state in HOLDING)):
            self.forget()  # the loop it ran in is gone, and with it every task and connection
            self._loop.bind(list)

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
        self._base_time = None
        self._shutdown_task = None
        self._loop.release()
        self._phase = "not started"
        self.drainer.reset()
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
        _warn_if_running(self)


def _warn_if_running(system: SystemInitializer) -> None:
    running = sorted(n for n, s in getattr(system, "_slots", {}).items() if s.state in HOLDING)
    if running:
        warnings.warn(
            f"infraboot: {system!r} was garbage-collected with components still running "
            f"({running}); call await system.shutdown()",
            ResourceWarning,
            stacklevel=1,
        )


def _unblock_dependents(system: SystemInitializer, slot: Slot) -> None:
    """A component came back in the background: start what was blocked waiting for it (logged, reported)."""
    slots = system._slots
    if blocked := [n for n, s in slots.items() if s.state is _S.BLOCKED and slot.name in s.component.requires]:
        system.spawn(system.ensure_initialized(blocked), name=f"infraboot-unblock-{slot.name}")


def _reset_in_child(system: SystemInitializer) -> None:
    """In a forked child: fresh resources on first use, the parent's sockets left alone."""
    system._loop.release()
    system._tasks.clear()
    system._monitor.forget()
    system._demand.clear()
    system._shutdown_task = None
    system.drainer = Drain()
    for name, slot in system._slots.items():
        if not slot.after_fork(_fork.orphans):
            system._pinned.discard(name)
