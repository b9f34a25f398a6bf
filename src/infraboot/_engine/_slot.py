"""One component's live record: its state, its resource, its tasks, its last probe.

:meth:`Slot.transition` (and the steps every start and stop takes, written out beside it:
``starting_now``, ``ready_now``, ``stopping_now``, ``stopped_now``) is the only writer of a slot's
state and resource, and the only writer of the system's ready index (what ``get()`` reads), so the
two can never disagree. Every other field is written by a method of :class:`Slot` too (the start under
way, the attempt count, the recovery and stop tasks): the other rooms read them, and say
what happened through those methods (``tests/test_slot.py`` checks it).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from infraboot._base._record import FrozenMap
from infraboot.exceptions import ComponentUnavailableError, NotInitializedError

from ._component import Closer, Component
from ._deadlines import TaskSet
from ._health import LATENCY_BUCKETS, ComponentHealth, HealthStatus
from ._report import ComponentResult, ComponentSnapshot, ProbeStats
from ._state import ComponentState
from ._traffic import Traffic

__all__ = ["HOLDING", "UNAVAILABLE", "Override", "Probe", "Slot"]

_S = ComponentState
#: States in which a component holds a resource that must be stopped.
HOLDING = frozenset({_S.READY, _S.UNHEALTHY})
#: States in which ``get()`` says "unavailable, take the degraded path" (not "start it first").
UNAVAILABLE = frozenset({_S.FAILED, _S.BLOCKED, _S.DISABLED, _S.UNHEALTHY})

_KEEP: Any = object()
_NO_BUCKETS = (0,) * len(LATENCY_BUCKETS)


class Probe:
    """The mutable health record of one component.

    ``healthy`` flips only after ``failure_threshold`` failures in a row (and back
    after ``success_threshold`` successes), so one lost packet does not take a pod
    out of service.
    """

    __slots__ = (
        "buckets",
        "checked_at",
        "checked_mono",
        "count",
        "error_code",
        "failures",
        "failures_by_code",
        "healthy",
        "inflight",
        "latency",
        "latency_sum",
        "successes",
    )

    def __init__(self) -> None:
        # The histogram and the failure counts are made by the first probe: most slots never see one.
        self.buckets: list[int] | None = None
        self.failures_by_code: dict[str, int] | None = None
        self.count = 0
        self.latency_sum = 0.0
        self.inflight: asyncio.Task[None] | None = None
        self.reset()

    def reset(self) -> None:
        """A fresh start: healthy, no streaks (the histogram and counters keep counting)."""
        self.healthy = True
        self.failures = 0
        self.successes = 0
        self.checked_at: float | None = None
        self.checked_mono: float | None = None
        self.latency: float | None = None
        self.error_code: str | None = None

    def passed_now(self) -> None:
        """A start that just succeeded is as good as a probe: readiness reuses it for ``check_ttl``.

        :meth:`reset`, written out (every start takes this step), with the check's time.
        """
        self.healthy = True
        self.failures = self.successes = 0
        self.checked_at, self.checked_mono = time.time(), time.monotonic()
        self.latency = self.error_code = None

    def observe(self, latency: float, error_code: str | None) -> None:
        self.checked_at = time.time()
        self.checked_mono = time.monotonic()
        self.latency = latency
        self.error_code = error_code
        self.count += 1
        self.latency_sum += latency
        buckets = self.buckets
        if buckets is None:
            buckets = self.buckets = [0] * len(LATENCY_BUCKETS)
        for i, bound in enumerate(LATENCY_BUCKETS):
            if latency <= bound:
                buckets[i] += 1
                break
        if error_code is None:
            self.failures = 0
            self.successes += 1
        else:
            counts = self.failures_by_code
            if counts is None:
                counts = self.failures_by_code = {}
            counts[error_code] = counts.get(error_code, 0) + 1
            self.failed(error_code)

    def failed(self, error_code: str) -> None:
        """One more failure in a row (a probe's, or live traffic's: that one is not a check in the counters)."""
        self.error_code = error_code
        self.successes = 0
        self.failures += 1


class Override:
    """What ``get()`` returns for a name inside :meth:`SystemInitializer.override`, whatever its state."""

    __slots__ = ("previous", "resource")

    def __init__(self, resource: Any, previous: Override | None = None) -> None:
        self.resource = resource
        self.previous = previous  # the override this one hides, if any

    @classmethod
    def push(cls, overrides: dict[str, Override], name: str, resource: Any) -> Override:
        """A new top layer for *name*."""
        mine = overrides[name] = cls(resource, overrides.get(name))
        return mine

    def pop(self, overrides: dict[str, Override], name: str) -> None:
        """Remove this layer only: blocks may end out of order (two tasks overriding one name)."""
        top = overrides.get(name)
        if top is self:
            if self.previous is None:
                overrides.pop(name, None)
            else:
                overrides[name] = self.previous
            return
        while top is not None and top.previous is not self:
            top = top.previous
        if top is not None:
            top.previous = self.previous


class Slot:
    """The runtime record of one component. Owned by one system; read by its rooms."""

    __slots__ = (
        "_index",
        "_notify",
        "_on_failing",
        "_overrides",
        "_traffic",
        "attempts",
        "closer",
        "closing",
        "component",
        "ended_at",
        "error",
        "error_code",
        "healable",
        "last_failure",
        "name",
        "probe",
        "reason",
        "recovery",
        "resource",
        "settled",
        "start",
        "started_at",
        "state",
        "stop_task",
        "strays",
    )

    def __init__(
        self,
        component: Component[Any],
        index: MutableMapping[str, Slot | Override],
        overrides: Mapping[str, Override],
        on_ready: Callable[[], None],
        on_failing: Callable[[Slot, str], None] | None = None,
    ) -> None:
        self.component = component
        self.name = component.name
        self._index = index
        self._overrides = overrides
        self._notify = on_ready
        self.state = _S.PENDING
        self.resource: Any = None
        self.closer: Closer | None = None
        self.start: Any = None  # the start under way (infraboot._engine._startup), to cancel it
        self.settled: asyncio.Future[None] | None = None  # done when it has ended: see waiter()
        self.recovery: asyncio.Task[None] | None = None
        self.stop_task: Any = None  # the stop under way or last made (infraboot._engine._teardown): done(), waiter()
        #: How many stop() calls are taking it down: while any is, no start may use its resource.
        self.closing = 0
        self.probe = Probe()
        self._on_failing = on_failing
        self._traffic: Traffic | None = None  # made by traffic(), when a start first asks for it
        #: This component's abandoned work (attempts, probes, teardowns that ignored their cancellation),
        #: while it still runs: recovery waits for it rather than pile up connections.
        self.strays = TaskSet()
        self._clear_outcome()

    def _clear_outcome(self) -> None:
        self.attempts = 0
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.error: str | None = None
        self.error_code: str | None = None
        self.reason: str | None = None
        self.last_failure: str | None = None  # "code: error" of the last failed attempt of a start under way
        self.healable = True  # may the last failure heal by waiting (was it retryable)?

    def traffic(self) -> Traffic:
        """Passive health: where the component's driver hooks report what live traffic sees (one per slot)."""
        traffic = self._traffic
        if traffic is None:
            on_failing = self._on_failing
            failing = None if on_failing is None else functools.partial(on_failing, self)
            traffic = self._traffic = Traffic(self.probe, failing, self.component.classify)
        return traffic

    # -- the start, recovery and stop under way ---------------------------------------------------

    def start_began(self, start: Any) -> None:
        """*start* is under way until :meth:`start_ended`; :meth:`waiter` is how to wait for that."""
        self.start, self.settled = start, None

    def waiter(self) -> asyncio.Future[None]:
        """A future done when the start under way ends: made when first asked for, so that a start
        that ends before anyone waits (a setup that never waited, Python 3.12+) costs none."""
        settled = self.settled
        if settled is None:
            settled = self.settled = asyncio.get_running_loop().create_future()
            if self.start is None:  # asked after the end: nothing to wait for
                settled.set_result(None)
        return settled

    def start_ended(self, start: Any) -> None:
        """*start* ended (ready, failed, blocked, cancelled): whoever waits for it looks again."""
        if self.start is start:
            self.start = None
        if self.settled is not None and not self.settled.done():
            self.settled.set_result(None)

    def attempt_began(self, number: int) -> None:
        """Attempt *number* of a start or a recovery begins."""
        self.attempts = number

    def recovering(self, task: asyncio.Task[None]) -> None:
        """*task* brings this component back in the background."""
        self.recovery = task

    def stopping(self, stop: Any) -> None:
        """*stop* (``done()``, ``waiter()``: a future with its ``StopResult``) is this component's stop;
        a second stop shares it."""
        self.stop_task = stop

    def stop_called(self, begun: bool) -> None:
        """A ``stop()`` that takes this component down has *begun* (or ended): :attr:`closing` counts them."""
        self.closing = max(0, self.closing + (1 if begun else -1))

    @property
    def taken_down(self) -> bool:
        """A ``stop()`` is taking it down, or it is stopping or stopped."""
        return bool(self.closing) or self.state is _S.STOPPING or self.state is _S.STOPPED

    def cannot_heal(self) -> None:
        """The last failure will not heal by waiting: recovery does not try again."""
        self.healable = False

    # -- the one writer ----------------------------------------------------------------------

    def starting_now(self) -> None:
        """``transition(STARTING)``, written out: every start takes this step."""
        self.started_at = time.monotonic()
        self.ended_at = None
        self.resource = self.closer = None
        self._not_ready(_S.STARTING)

    def stopping_now(self) -> None:
        """``transition(STOPPING)``, written out: ``get()`` refuses from here; the resource stays for its closer."""
        self._not_ready(_S.STOPPING)

    def stopped_now(self) -> None:
        """``transition(STOPPED, resource=None, closer=None)``, written out: every stop ends with this step."""
        self.resource = self.closer = None
        self._not_ready(_S.STOPPED)

    def _not_ready(self, state: ComponentState) -> None:
        self.state = state
        if self._overrides:
            self.publish()  # an override stays in the index
        else:
            self._index.pop(self.name, None)

    def ready_now(self, resource: Any, closer: Closer) -> None:
        """``transition(READY, resource=..., closer=...)`` from a start, written out: every start takes this step."""
        state = self.state
        if state is _S.STARTING or state is _S.PENDING or state is _S.FAILED:
            self.ended_at = time.monotonic()
        self.resource, self.closer = resource, closer
        if state is not _S.UNHEALTHY:
            self.probe.passed_now()
        self.state = _S.READY
        self._index[self.name] = self._overrides.get(self.name, self) if self._overrides else self
        self._notify()

    def transition(
        self,
        state: ComponentState,
        *,
        resource: Any = _KEEP,
        closer: Closer | None = _KEEP,
        error: str | None = _KEEP,
        error_code: str | None = _KEEP,
        reason: str | None = _KEEP,
        healable: bool | None = None,
        fresh: bool = False,
    ) -> None:
        """Move to *state*, setting what is given; ``fresh`` first forgets the last outcome.

        Leaving the resource-holding states drops the resource and its closer, unless
        they are given. The ready index follows in the same step.
        """
        if fresh:
            self._clear_outcome()
        if state in (_S.FAILED, _S.READY) and self.state in (_S.PENDING, _S.STARTING, _S.FAILED):
            self.ended_at = time.monotonic()  # a start (or a recovery) ended
        if state is _S.STARTING:
            self.started_at = time.monotonic()
            self.ended_at = None
        if state not in HOLDING and state is not _S.STOPPING:
            self.resource, self.closer = None, None
        if resource is not _KEEP:
            self.resource = resource
        if closer is not _KEEP:
            self.closer = closer
        if error is not _KEEP:
            self.error = error
        if error_code is not _KEEP:
            self.error_code = error_code
        if reason is not _KEEP:
            self.reason = reason
        if healable is not None:
            self.healable = healable
        if state is _S.READY and self.state is not _S.UNHEALTHY:
            self.probe.passed_now()
        self.state = state
        self.publish()
        if state is _S.READY:
            self._notify()

    def publish(self) -> None:
        """Make the ready index say the truth: the override, else this slot when ready, else nothing."""
        override = self._overrides.get(self.name)
        if override is not None:
            self._index[self.name] = override
        elif self.state is _S.READY:
            self._index[self.name] = self
        else:
            self._index.pop(self.name, None)

    def forget(self) -> None:
        """Drop every loop-bound object without closing anything (their event loop is gone)."""
        self.recovery = self.stop_task = self.settled = self.start = None
        self.closing = 0
        self.probe.inflight = None
        self.strays.clear()
        self.transition(_S.PENDING, resource=None, closer=None, fresh=True)

    def after_fork(self, orphans: list[Any]) -> bool:
        """In a forked child: keep a resource only when the component can hand one over; ``False`` if dropped.

        The parent's objects go to *orphans*, kept alive so that collecting them in the
        child never closes sockets the parent still uses.
        """
        self.recovery = self.stop_task = self.settled = self.start = None
        self.closing = 0
        self.probe.inflight = None
        self.strays.clear()
        if self.state not in HOLDING:
            return True
        old = self.resource
        orphans.append(old)
        new = None
        if self.state is _S.READY:
            try:
                new = self.component.after_fork(old)
            except Exception:
                new = None
        if new is None:
            self.transition(_S.PENDING, resource=None, closer=None)
            return False
        stop = self.component.stop

        async def close(reason: str | None) -> None:
            await stop(new)

        self.transition(_S.READY, resource=new, closer=close)
        return True

    @property
    def busy(self) -> bool:
        """Started, stopping, or being started: too late to swap its component or its settings."""
        return self.state in HOLDING or self.state is _S.STOPPING or self.start is not None

    # -- views ---------------------------------------------------------------------------------

    def not_ready_error(self) -> Exception:
        """What ``get()`` raises for this component when it is not ready, naming the way out."""
        name, state = self.name, self.state
        if state in UNAVAILABLE:
            return ComponentUnavailableError(
                f"component {name!r} is unavailable ({state.value}: {self.error or self.reason}); "
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

    def health(self) -> ComponentHealth:
        """This component's entry in a readiness report."""
        state, probe, comp = self.state, self.probe, self.component
        up = probe.healthy if state is _S.READY else state is _S.DISABLED
        status: HealthStatus = "pass" if up else ("fail" if comp.required else "warn")
        # A running component reports its last probe's code; any other one why it is not running.
        code = probe.error_code if state in HOLDING else (None if up else self.error_code or state.value)
        extra = None
        if state in HOLDING:
            try:
                extra = comp.health_details(self.resource)
            except Exception:  # details are a courtesy: they never break a probe answer
                extra = None
        return ComponentHealth(
            name=self.name,
            status=status,
            state=state,
            required=comp.required,
            kind=comp.kind,
            checked_at=probe.checked_at,
            latency=probe.latency,
            consecutive_failures=probe.failures,
            error_code=code,
            details=extra,
        )

    def result(self, base: float) -> ComponentResult:
        """This component's row in a startup report whose time starts at *base*."""
        offset = duration = None
        if self.started_at is not None:
            offset = max(0.0, self.started_at - base)
            finish = self.ended_at if self.ended_at is not None else time.monotonic()
            duration = finish - self.started_at
        # Positional, in the fields' order: one row per component at every startup call.
        return ComponentResult(
            self.name,
            self.state,
            self.component.required,
            self.attempts,
            offset,
            duration,
            self.error,
            self.error_code,
            self.reason,
        )

    def snapshot(self) -> ComponentSnapshot:
        comp, probe = self.component, self.probe
        pool: dict[str, int] | None = None
        if self.state in HOLDING:
            try:
                pool = comp.pool_stats(self.resource)
            except Exception:  # a pool mid-teardown must not break a metrics scrape
                pool = None
        duration = None
        if self.started_at is not None and self.ended_at is not None:
            duration = self.ended_at - self.started_at
        return ComponentSnapshot(
            name=self.name,
            state=self.state,
            required=comp.required,
            kind=comp.kind,
            requires=tuple(comp.requires),
            has_resource=self.state in HOLDING,
            attempts=self.attempts,
            start_duration=duration,
            error=self.error,
            error_code=self.error_code,
            reason=self.reason,
            health=self.health(),
            checks=ProbeStats(
                count=probe.count,
                latency_sum=probe.latency_sum,
                buckets=_NO_BUCKETS if probe.buckets is None else tuple(probe.buckets),
                failures_by_code=FrozenMap(probe.failures_by_code or ()),
            ),
            pool=None if pool is None else FrozenMap(pool),
        )
