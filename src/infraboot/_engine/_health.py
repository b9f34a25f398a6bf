"""Health reports: frozen data that probes, adapters and the CLI only serve.

The wire format follows the IETF draft "Health Check Response Format for HTTP
APIs" (``application/health+json``): a top-level ``status`` of ``pass``, ``warn``
or ``fail`` and ``checks`` keyed ``"<component>:<measurement>"``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from infraboot._base._record import FrozenMap

from ._state import ComponentState

if TYPE_CHECKING:
    from dataclasses import dataclass, field
else:  # the methods are written on first use, not at import (see _base._record)
    from infraboot._base._record import dataclass, field

__all__ = [
    "CONTENT_TYPE",
    "ComponentHealth",
    "GroupHealth",
    "GroupPolicy",
    "HealthKind",
    "HealthReport",
    "HealthStatus",
    "readiness_report",
]

HealthStatus = Literal["pass", "warn", "fail"]
HealthKind = Literal["liveness", "readiness", "startup"]
#: What a health group's failure does: ``gate`` (503), ``warn`` (shown as warn, 200), ``report`` (shown, 200).
GroupPolicy = Literal["gate", "warn", "report"]

CONTENT_TYPE = "application/health+json"

# Upper bounds (seconds) of the check-latency histogram, exported by infraboot.metrics.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_RANK: dict[str, int] = {"pass": 0, "warn": 1, "fail": 2}


def worst(statuses: Any) -> HealthStatus:
    """The most severe of *statuses* (``pass`` when there are none)."""
    result: HealthStatus = "pass"
    for s in statuses:
        if _RANK[s] > _RANK[result]:
            result = s
    return result


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """What infraboot knows about one component's health.

    - ``status``: ``pass``; ``warn`` for an optional component that is down;
      ``fail`` for a required one that is down (or not started yet).
    - ``checked_at``: wall-clock time (``time.time()``) of the last probe, or ``None``.
    - ``latency``: seconds the last probe took.
    - ``consecutive_failures``: failed probes in a row (reset by a success).
    - ``error_code``: a short code such as ``refused``, ``timeout``, ``auth`` -- never
      a driver's message, which may carry a host name or worse.
    - ``details``: what the component adds (``Component.health_details``: the current
      Sentinel master, a cluster's slot counts); JSON-able, never a secret.
    """

    name: str
    status: HealthStatus
    state: ComponentState
    required: bool
    kind: str = "component"
    checked_at: float | None = None
    latency: float | None = None
    consecutive_failures: int = 0
    error_code: str | None = None
    details: Mapping[str, Any] | None = None

    def to_dict(self, *, details: bool = False) -> dict[str, Any]:
        """One IETF ``checks`` entry. Without *details*: component id, type and status only."""
        out: dict[str, Any] = {"componentId": self.name, "componentType": self.kind, "status": self.status}
        if details:
            if self.latency is not None:
                out["observedValue"] = round(self.latency * 1000, 3)
                out["observedUnit"] = "ms"
            if self.checked_at is not None:
                out["time"] = _iso(self.checked_at)
            if self.error_code is not None:
                out["output"] = self.error_code
            out["state"] = self.state.value
            out["required"] = self.required
            out["consecutiveFailures"] = self.consecutive_failures
            if self.details:
                out["details"] = dict(self.details)
        return out


@dataclass(frozen=True, slots=True)
class GroupHealth:
    """One health group as a readiness report shows it: its status (after its policy), policy and members."""

    name: str
    status: HealthStatus
    policy: GroupPolicy
    components: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "policy": self.policy, "components": list(self.components)}


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The answer to one of the three questions: liveness, readiness, startup.

    ``status`` is ``pass``, ``warn`` (only optional components are down: keep
    serving, degraded) or ``fail``; :attr:`http_status` maps it to 200 / 200 / 503.
    ``output`` says why in a few words when the status is not ``pass``
    (``"stopping"``, ``"redis: refused"``). Nothing in a report carries a secret.

    A health group's report (``readiness(group="critical")``) names its ``group`` and
    ``policy``: under ``report`` a ``fail`` still answers 200. ``groups`` holds each
    group's status as this report's components show it (``to_dict(details=True)``).
    """

    kind: HealthKind
    status: HealthStatus
    components: Mapping[str, ComponentHealth] = field(default_factory=FrozenMap)
    output: str | None = None
    time: float = field(default_factory=time.time)
    group: str | None = None
    policy: GroupPolicy = "gate"
    groups: Mapping[str, GroupHealth] = field(default_factory=FrozenMap)

    @property
    def http_status(self) -> int:
        """200 for ``pass`` and ``warn``, 503 for ``fail`` (200 under a group's ``report`` policy)."""
        return 503 if self.status == "fail" and self.policy == "gate" else 200

    @property
    def ok(self) -> bool:
        """``True`` unless the status is ``fail``."""
        return self.status != "fail"

    def to_dict(self, *, details: bool = False) -> dict[str, Any]:
        """The ``application/health+json`` body.

        By default each component shows its status only; ``details=True`` adds
        latency, last check time, state and error code -- still never a secret.
        """
        body: dict[str, Any] = {"status": self.status}
        if self.output:
            body["output"] = self.output
        if self.components:
            body["checks"] = {
                f"{name}:responseTime": [c.to_dict(details=details)] for name, c in self.components.items()
            }
        if details:
            body["time"] = _iso(self.time)
            body["description"] = self.kind if self.group is None else f"{self.kind} of group {self.group}"
            if self.group is not None:
                body["policy"] = self.policy
            if self.groups:
                body["groups"] = {name: g.to_dict() for name, g in self.groups.items()}
        return body


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def readiness_report(components: Mapping[str, ComponentHealth]) -> HealthReport:
    """The readiness answer for *components*: the worst status, and why in a few words when not ``pass``."""
    status = worst(c.status for c in components.values())
    output = None
    if status != "pass":
        output = "; ".join(
            f"{c.name}: {c.error_code or c.state.value}" for c in components.values() if c.status != "pass"
        )
    return HealthReport("readiness", status, FrozenMap(components), output=output)
