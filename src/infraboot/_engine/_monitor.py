"""Health probing, the background monitor, thresholds, and recovery.

Probes are cached for ``check_ttl`` and coalesced (one in flight per component), each
in a task of its own under ``check_timeout``. The monitor probes every ready component
each ``check_interval``; failure/success thresholds decide the flips. Optional
components that failed or went down are brought back through the same retry loop that
startup uses: an error startup would not retry is not retried here either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from infraboot._base._errors import describe
from infraboot._base._log import event

from ._attempt import attempt
from ._deadlines import DeadlineExceeded, TaskSet, raise_if_cancelled, run_within, wait_until
from ._drain import Drain
from ._health import HealthReport, readiness_report
from ._retry import retry
from ._slot import HOLDING, Slot
from ._state import ComponentState
from ._traffic import probing

__all__ = ["Monitor"]

_S = ComponentState


class Settings(Protocol):
    """The system settings the monitor reads (the system's public attributes)."""

    check_interval: float | None
    check_ttl: float
    health_timeout: float
    failure_threshold: int
    success_threshold: int
    recovery: bool
    drainer: Drain

    @property
    def phase(self) -> str: ...


class _StillDown(Exception):
    """A recovery attempt found the component (or a requirement of it) still down."""


class Monitor:
    """The health side of one system: it reads the slots and writes them only through their transitions."""

    def __init__(
        self,
        settings: Settings,
        slots: Mapping[str, Slot],
        wanted: Mapping[str, None],
        tasks: TaskSet,
        *,
        on_recovered: Callable[[Slot], None],
        lookup: Callable[[str], Any],
    ) -> None:
        self._settings = settings
        self._slots = slots
        self._wanted = wanted  # every component an ensure_initialized asked for, in order
        self._tasks = tasks
        self._on_recovered = on_recovered
        self._lookup = lookup
        self._loop_task: asyncio.Task[None] | None = None
        self._waiters: set[asyncio.Future[None]] = set()

    # -- waiting for readiness ------------------------------------------------------------------

    def notify(self) -> None:
        """A component became ready: wake everyone in :meth:`wait_ready` to look again."""
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_ready(self, names: list[str], timeout: float | None) -> bool:  # noqa: ASYNC109 - answers False at the timeout
        """``True`` once every one of *names* is ready; ``False`` at the *timeout*. Leaves no waiter behind."""
        loop = asyncio.get_running_loop()
        end = None if timeout is None else time.monotonic() + timeout
        while any(self._slots[n].state is not _S.READY for n in names):
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.add(fut)
            try:
                if await wait_until((fut,), end):
                    return False
            finally:
                self._waiters.discard(fut)
        return True

    @property
    def waiting(self) -> int:
        """How many :meth:`wait_ready` calls are waiting now."""
        return len(self._waiters)

    # -- readiness ------------------------------------------------------------------------------

    async def readiness(
        self, *, fresh: bool, names: list[str] | None = None, budget: float | None = None
    ) -> HealthReport:
        """The readiness of *names* (every wanted component when ``None``), waiting at most *budget*
        (``health_timeout`` when ``None``) for fresh probes of those only."""
        settings = self._settings
        if settings.phase != "running" or settings.drainer.active:
            return HealthReport(
                "readiness", "fail", output="draining" if settings.phase == "running" else settings.phase
            )
        now = time.monotonic()
        probes: list[asyncio.Task[None]] = []
        chosen = self._wanted if names is None else names
        for n in chosen:
            slot = self._slots[n]
            if slot.state not in HOLDING:  # an unhealthy one is probed too: its answer brings it back
                continue
            checked = slot.probe.checked_mono
            if fresh or checked is None or now - checked >= settings.check_ttl:
                probes.append(self.probe_task(slot))
        if probes:
            wait = settings.health_timeout if budget is None else budget
            await wait_until(probes, None if fresh else time.monotonic() + wait)
        return readiness_report({n: self._slots[n].health() for n in chosen})

    # -- probes ---------------------------------------------------------------------------------

    def probe_task(self, slot: Slot) -> asyncio.Task[None]:
        """The in-flight probe of *slot*, started if there is none: concurrent callers share it."""
        inflight = slot.probe.inflight
        if inflight is None or inflight.done():
            inflight = self._tasks.spawn(self._probe(slot), name=f"infraboot-check-{slot.name}")
            slot.probe.inflight = inflight
        return inflight

    async def _probe(self, slot: Slot) -> None:
        comp, resource = slot.component, slot.resource
        t0 = time.perf_counter()
        code: str | None = None
        name = f"infraboot-probe-{slot.name}"
        if any(t.get_name() == name for t in slot.strays):
            # The last probe ignored its deadline and still hangs (a blackhole): no second one beside it,
            # and the answer is the one it would give, after at least as long.
            self._observe(slot, comp.check_timeout, "timeout")
            return
        try:
            await run_within(probing(comp.check(resource)), comp.check_timeout, name=name, abandoned=slot.strays)
        except DeadlineExceeded:
            code = "timeout"
        except Exception as exc:  # a failed probe is data, never an exception for the caller
            raise_if_cancelled()
            code = comp.classify(exc)
        if slot.resource is not resource or slot.state not in HOLDING:
            return  # stopped or restarted meanwhile: this result describes nothing that still exists
        self._observe(slot, time.perf_counter() - t0, code)

    def traffic_failed(self, slot: Slot, code: str) -> None:
        """Live traffic met an outage-class error (*code*): it counts as a failed probe would, at once."""
        if slot.state is not _S.READY or self._settings.phase != "running":
            return  # already down (the probe brings it back), or not serving: nothing to flip
        slot.probe.failed(code)
        self._judge(slot, code, 0.0, source="traffic")

    def _observe(self, slot: Slot, latency: float, code: str | None) -> None:
        slot.probe.observe(latency, code)
        self._judge(slot, code, latency, source="probe")

    def _judge(self, slot: Slot, code: str | None, latency: float, *, source: str) -> None:
        """Flip *slot* on the failures and successes in a row its probe record now holds."""
        probe, settings = slot.probe, self._settings
        required = slot.component.required
        threshold = slot.component.failure_threshold or settings.failure_threshold
        if probe.healthy and probe.failures >= threshold:
            probe.healthy = False
            event(
                logging.ERROR if required else logging.WARNING,
                "component_unhealthy",
                slot.name,
                error_code=code,
                failures=probe.failures,
                required=required,
                source=source,
            )
            if slot.state is _S.READY:
                # Circuit open: callers get ComponentUnavailableError at once instead of a timeout, and
                # nothing (report, health, metrics) calls it ready. Required or not, probes bring it back.
                what = "requests" if source == "traffic" else "probes"
                error = f"{code} ({probe.failures} failures in a row, the last one seen by {what})"
                slot.transition(_S.UNHEALTHY, error=error, error_code=code)
                self.start_recovery(slot)
        elif not probe.healthy and code is None and probe.successes >= settings.success_threshold:
            probe.healthy = True
            if slot.state is _S.UNHEALTHY:
                slot.transition(_S.READY, error=None, error_code=None)
                # Recovered with the same resource: its pool may have lost every connection in the outage.
                self._tasks.spawn(self._warm(slot, slot.resource), name=f"infraboot-warm-{slot.name}")
            event(logging.INFO, "component_healthy", slot.name, latency=latency)

    async def _warm(self, slot: Slot, resource: Any) -> None:
        """Refill a recovered component's pool under ``check_timeout``; a failure is logged, never a state."""
        comp = slot.component
        try:
            await run_within(
                comp.warm(resource), comp.check_timeout, name=f"infraboot-warming-{slot.name}", abandoned=slot.strays
            )
        except DeadlineExceeded:
            event(logging.WARNING, "component_warm_failed", slot.name, error_code="timeout")
        except Exception as exc:  # the component answers probes: a cold pool is no reason to call it down
            raise_if_cancelled()
            event(logging.WARNING, "component_warm_failed", slot.name, error_code=comp.classify(exc))

    # -- the monitor ----------------------------------------------------------------------------

    def after_startup(self, closure: list[str]) -> None:
        """A startup call succeeded: recover what failed in it, and keep the monitor running."""
        for n in closure:
            if self._slots[n].state is _S.FAILED:
                self.start_recovery(self._slots[n])
        self.start()

    def start(self) -> None:
        interval = self._settings.check_interval
        if interval is None or self._settings.phase != "running":
            return
        if self._loop_task is not None and not self._loop_task.done():
            return
        self._loop_task = self._tasks.spawn(self._loop(interval), name="infraboot-monitor")

    async def _loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            # Unhealthy ones are probed by their recovery; without recovery, by the monitor.
            probed = HOLDING if not self._settings.recovery else frozenset({_S.READY})
            probes = [self.probe_task(s) for n in self._wanted if (s := self._slots[n]).state in probed]
            if probes:
                await wait_until(probes, None)

    def forget(self) -> None:
        self._loop_task = None
        self._waiters.clear()

    # -- recovery -------------------------------------------------------------------------------

    def start_recovery(self, slot: Slot) -> None:
        """Bring an optional component back in the background: probe it, or start it again.

        Nothing is tried when the last failure cannot heal by waiting (startup would not
        have retried it either): the component stays failed with that reason.
        """
        settings = self._settings
        if not settings.recovery or settings.phase != "running":
            return
        if slot.component.required and slot.state is not _S.UNHEALTHY:
            return  # a required start that failed failed the startup; only a required one gone down is probed back
        if slot.recovery is not None and not slot.recovery.done():
            return
        if slot.start is not None:
            return  # a start is under way (another caller's): its outcome decides
        if slot.state is _S.FAILED and not slot.healable:
            event(logging.WARNING, "component_not_recovered", slot.name, error_code=slot.error_code)
            return
        event(logging.INFO, "component_recovering", slot.name, state=slot.state.value)
        slot.recovering(self._tasks.spawn(self._recover(slot), name=f"infraboot-recover-{slot.name}"))

    async def _recover(self, slot: Slot) -> None:
        comp = slot.component

        def retryable(exc: Exception) -> bool:
            return isinstance(exc, _StillDown) or comp.is_retryable(exc)

        def still_down(exc: Exception, attempt: int, wait: float) -> None:
            code = slot.error_code if isinstance(exc, _StillDown) else comp.classify(exc)
            event(logging.DEBUG, "component_still_down", slot.name, error_code=code, attempts=attempt, wait=wait)

        try:
            await retry(
                lambda n: self._recovery_attempt(slot, n),
                policy=comp.retry_policy,
                retryable=retryable,
                on_retry=still_down,
                forever=True,
                first=slot.attempts + 1,
            )
        except Exception as exc:  # not retryable: the component stays failed, with the reason
            raise_if_cancelled()
            slot.cannot_heal()
            if slot.state is _S.FAILED:
                slot.transition(_S.FAILED, error=describe(exc), error_code=comp.classify(exc))
            event(logging.WARNING, "component_not_recovered", slot.name, error_code=slot.error_code)

    async def _recovery_attempt(self, slot: Slot, number: int) -> None:
        """One try; raises :class:`_StillDown` (or the start's error) to be tried again later."""
        if slot.state is _S.UNHEALTHY:
            await self.probe_task(slot)
            if slot.state is _S.UNHEALTHY:
                raise _StillDown
            return
        if slot.state is not _S.FAILED:
            return  # stopped, or started by someone else meanwhile
        requires = slot.component.requires
        if slot.strays or any(self._slots[d].state is not _S.READY or self._slots[d].closing for d in requires):
            raise _StillDown  # an abandoned attempt still runs (no pile-up), or a requirement is down
        resources: dict[str, Any] = {d: self._lookup(d) for d in requires}  # overrides included
        try:
            resource, closer = await attempt(slot, number, None, resources)
        except Exception as exc:
            raise_if_cancelled()
            slot.transition(_S.FAILED, error=describe(exc), error_code=slot.component.classify(exc))
            raise
        slot.transition(_S.READY, resource=resource, closer=closer, error=None, error_code=None)
        event(logging.INFO, "component_recovered", slot.name, attempts=slot.attempts)
        self._on_recovered(slot)
