"""Startup and shutdown reports: frozen data the adapters and the CLI only serve."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from infraboot._base._record import FrozenMap

from ._health import ComponentHealth
from ._state import ComponentState

if TYPE_CHECKING:
    from dataclasses import dataclass, field
else:  # the methods are written on first use, not at import (see _base._record)
    from infraboot._base._record import dataclass, field

__all__ = [
    "ComponentResult",
    "ComponentSnapshot",
    "ProbeStats",
    "ShutdownReport",
    "StartupReport",
    "StopResult",
    "startup_status",
]

StartupStatus = Literal["ok", "degraded", "failed"]

_BAR_WIDTH = 40


@dataclass(frozen=True, slots=True)
class ComponentResult:
    """What happened to one component during a startup.

    ``start_offset`` and ``duration`` are seconds relative to the start of the
    report; ``error`` is a redacted one-line message and ``error_code`` a short
    classification (``refused``, ``timeout``, ``auth``, ...).
    """

    name: str
    state: ComponentState
    required: bool
    attempts: int = 0
    start_offset: float | None = None
    duration: float | None = None
    error: str | None = None
    error_code: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state.value,
            "required": self.required,
            "attempts": self.attempts,
            "start_offset": _round(self.start_offset),
            "duration": _round(self.duration),
            "error": self.error,
            "error_code": self.error_code,
            "reason": self.reason,
        }


_NOT_UP = frozenset(
    {
        ComponentState.FAILED,
        ComponentState.BLOCKED,
        ComponentState.UNHEALTHY,
        ComponentState.STOPPED,
        ComponentState.STOPPING,
        ComponentState.PENDING,
        ComponentState.STARTING,
    }
)


def startup_status(results: Mapping[str, ComponentResult]) -> StartupStatus:
    """``failed`` when a required component is not up, ``degraded`` when only optional ones are not."""
    status: StartupStatus = "ok"
    for r in results.values():
        if r.state in _NOT_UP:
            if r.required:
                return "failed"
            status = "degraded"
    return status


@dataclass(frozen=True, slots=True)
class StartupReport:
    """The outcome of ``initialize_all()`` / ``ensure_initialized()``.

    ``status`` is ``"ok"`` when every component is ready (or disabled by
    configuration), ``"degraded"`` when only optional components are unavailable,
    and ``"failed"`` when a required one is.  :meth:`render` draws a text waterfall.
    """

    status: StartupStatus
    components: Mapping[str, ComponentResult]
    duration: float

    @classmethod
    def of(cls, results: Mapping[str, ComponentResult], base: float) -> StartupReport:
        """The report of *results*, whose times are measured from the monotonic time *base*."""
        last = 0.0  # the latest end, in seconds after base
        for r in results.values():
            if r.start_offset is not None:
                end = r.start_offset + (r.duration or 0.0)
                last = max(last, end)
        return cls(startup_status(results), FrozenMap(results), last)

    @property
    def ok(self) -> bool:
        """``True`` when the status is ``"ok"``: nothing failed, not even an optional component."""
        return self.status == "ok"

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of the components that are failed or blocked."""
        return tuple(
            n for n, r in self.components.items() if r.state in (ComponentState.FAILED, ComponentState.BLOCKED)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "duration": _round(self.duration),
            "components": {name: r.to_dict() for name, r in self.components.items()},
        }

    def render(self, *, width: int = _BAR_WIDTH) -> str:
        """A waterfall of the startup, one bar per component.

        Bars that overlap ran in parallel; a long bar was slow. ``x`` ends a failed
        start. Example::

            startup ok in 0.252s
              redis     ready   |████▌                                   |  0.045s  1 attempt
              database  ready   |█████████████████████                   |  0.130s  1 attempt
              search    ready   |                     ███████████████████|  0.120s  1 attempt
        """
        lines = [f"startup {self.status} in {self.duration:.3f}s"]
        if not self.components:
            return lines[0] + "\n  (no components)"
        total = max(
            self.duration,
            *((r.start_offset or 0.0) + (r.duration or 0.0) for r in self.components.values()),
            1e-9,
        )
        name_w = max(len(n) for n in self.components)
        state_w = max(len(r.state.value) for r in self.components.values())
        for name, r in self.components.items():
            bar = _bar(r, total, width)
            timing = f"{r.duration:7.3f}s" if r.duration is not None else " " * 8
            attempts = f"{r.attempts} attempt" + ("" if r.attempts == 1 else "s") if r.attempts else ""
            note = ""
            if r.error:
                note = f"  {r.error_code or 'error'}: {r.error}"
                if r.error_code == "cancelled" and r.reason:  # what it had been retrying after
                    note += f" ({r.reason})"
            elif r.reason:
                note = f"  {r.reason}"
            flag = "" if r.required else " (optional)"
            lines.append(
                f"  {name:<{name_w}}  {r.state.value:<{state_w}}  |{bar}|{timing}  {attempts}{flag}{note}".rstrip()
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def _bar(r: ComponentResult, total: float, width: int) -> str:
    if r.start_offset is None:
        return " " * width
    start = r.start_offset / total * width
    end = (r.start_offset + (r.duration or 0.0)) / total * width
    cells = []
    for i in range(width):
        covered = min(end, i + 1) - max(start, i)
        if covered >= 0.75:
            cells.append("█")
        elif covered >= 0.25:
            cells.append("▌")
        else:
            cells.append(" ")
    if not any(c != " " for c in cells):  # too short to see: one thin mark where it ran
        cells[min(int(start), width - 1)] = "▏"
    if r.state is ComponentState.FAILED:
        last = max((i for i, c in enumerate(cells) if c != " "), default=min(int(start), width - 1))
        cells[last] = "x"
    return "".join(cells)


@dataclass(frozen=True, slots=True)
class ProbeStats:
    """Counters of one component's health probes since the system was made (for metrics)."""

    count: int = 0
    latency_sum: float = 0.0
    buckets: tuple[int, ...] = ()
    failures_by_code: Mapping[str, int] = field(default_factory=FrozenMap)


@dataclass(frozen=True, slots=True)
class ComponentSnapshot:
    """A frozen view of one component, from :meth:`SystemInitializer.snapshot`.

    - ``state``, ``required``, ``kind``, ``requires``: what it is and where it is.
    - ``has_resource``: it holds a live resource (ready, or unhealthy and being probed).
    - ``attempts``, ``start_duration``: its last start; ``error`` / ``error_code`` /
      ``reason``: why it is not ready, redacted.
    - ``health``: its entry in the readiness report, as of its last probe (none is run).
    - ``checks``: probe counters; ``pool``: connection-pool figures, when it has a pool.
    """

    name: str
    state: ComponentState
    required: bool
    kind: str
    requires: tuple[str, ...]
    has_resource: bool
    attempts: int
    start_duration: float | None
    error: str | None
    error_code: str | None
    reason: str | None
    health: ComponentHealth
    checks: ProbeStats
    pool: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class StopResult:
    """What happened to one component during shutdown."""

    name: str
    duration: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    """The outcome of ``shutdown()``: every component that was stopped, in order.

    Shutdown never stops at the first failure; ``errors`` lists each one, redacted.
    """

    stopped: tuple[StopResult, ...] = ()
    duration: float = 0.0
    errors: Mapping[str, str] = field(default_factory=FrozenMap)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "duration": _round(self.duration),
            "stopped": [{"name": s.name, "duration": _round(s.duration), "error": s.error} for s in self.stopped],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
