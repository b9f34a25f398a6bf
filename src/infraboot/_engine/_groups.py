"""Health groups: readiness over some components only, served on its own path with its own policy and budget.

A group lists component names and tags; a component belongs to it when its name or one
of its ``tags`` is listed. Asking a group probes its members only, waits at most the
group's ``timeout`` for them, and answers with the group's policy:

- ``gate`` (the default): ``fail`` is a 503, as the main readiness;
- ``warn``: a failing member makes the group ``warn`` (200): seen, never gating;
- ``report``: the true status, always 200 (dashboards, never a probe's verdict).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from infraboot._base._record import FrozenMap

from ._graph import is_name
from ._health import GroupHealth, GroupPolicy, HealthReport, HealthStatus, worst

if TYPE_CHECKING:
    from ._component import Component

__all__ = [
    "POLICIES",
    "HealthGroup",
    "apply_policy",
    "as_group",
    "group_summaries",
    "groups_problems",
    "members",
    "parse_groups",
    "with_groups",
]

POLICIES: tuple[GroupPolicy, ...] = ("gate", "warn", "report")
_EXAMPLE = '{"critical": {"include": ["database"], "policy": "gate", "timeout": 0.5}}'


class HealthGroup:
    """A readiness view over some components: ``/readyz/<name>``, ``readiness(group=name)``.

    - ``include``: component names and tags; a component is a member when its name or
      one of its ``tags`` is listed.
    - ``policy``: ``gate`` (``fail`` answers 503), ``warn`` (a failure answers ``warn``, 200)
      or ``report`` (the true status, always 200).
    - ``timeout``: seconds the group's answer waits for fresh probes of its members
      (``None``: the system's ``health_timeout``); a slow check outside the group never
      delays it, since only members are probed.
    """

    __slots__ = ("include", "name", "policy", "timeout")

    # A plain frozen class, not a dataclass: the engine imports no dataclasses machinery at import time.
    def __init__(
        self, name: str, include: tuple[str, ...], policy: GroupPolicy = "gate", timeout: float | None = None
    ) -> None:
        for key, value in (("name", name), ("include", tuple(include)), ("policy", policy), ("timeout", timeout)):
            object.__setattr__(self, key, value)

    name: str
    include: tuple[str, ...]
    policy: GroupPolicy
    timeout: float | None

    def __setattr__(self, key: str, value: object) -> None:
        msg = f"HealthGroup is frozen: cannot set {key!r}"
        raise AttributeError(msg)

    def _key(self) -> tuple[Any, ...]:
        return (self.name, self.include, self.policy, self.timeout)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HealthGroup) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"HealthGroup({self.name!r}, {self.include!r}, policy={self.policy!r}, timeout={self.timeout!r})"

    def covers(self, component: Component[Any]) -> bool:
        """Whether *component* is a member (its name or one of its tags is included)."""
        return component.name in self.include or any(tag in self.include for tag in component.tags)

    def to_dict(self) -> dict[str, Any]:
        return {"include": list(self.include), "policy": self.policy, "timeout": self.timeout}


def members(group: HealthGroup, components: Mapping[str, Component[Any]], wanted: Iterable[str]) -> list[str]:
    """The members of *group* among *wanted*, in that order."""
    return [n for n in wanted if n in components and group.covers(components[n])]


def parse_groups(value: object, *, field: str = "health_groups") -> tuple[dict[str, HealthGroup], list[str]]:
    """The groups *value* defines, and one problem line per mistake (naming *field* and the fix).

    *value* is ``None``, a mapping of group name to a :class:`HealthGroup`, a list of
    names and tags, or a mapping with ``include``, ``policy`` and ``timeout``; or the JSON
    text of such a mapping (``INFRABOOT_HEALTH_GROUPS``).
    """
    if value is None:
        return {}, []
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError as exc:
            where = getattr(exc, "pos", 0) + 1
            problem = f"{field} is not valid JSON (at character {where}); give a JSON object, e.g. {field}='{_EXAMPLE}'"
            return {}, [problem]
    if not isinstance(value, Mapping):
        return {}, [f"{field} must map group names to their members, e.g. {field}={_EXAMPLE}"]
    groups: dict[str, HealthGroup] = {}
    problems: list[str] = []
    for name, spec in value.items():
        group, wrong = _one(field, name, spec)
        if wrong:
            problems.append(wrong)
        elif group is not None:
            groups[name] = group
    return groups, problems


def _one(field: str, name: object, spec: object) -> tuple[HealthGroup | None, str | None]:
    label = f"{field}[{name!r}]"
    if not isinstance(name, str) or not is_name(name) or "/" in name:
        return None, f"{label}: a group name is a word such as 'critical' (letters, digits, '_', '-', '.')"
    if isinstance(spec, HealthGroup):
        spec = {"include": spec.include, "policy": spec.policy, "timeout": spec.timeout}
    if isinstance(spec, Collection) and not isinstance(spec, str | bytes | Mapping):
        spec = {"include": spec}
    if not isinstance(spec, Mapping):
        return None, f"{label} must be a list of component names and tags, or {{'include': [...], 'policy': 'gate'}}"
    unknown = sorted(set(spec) - {"include", "policy", "timeout"})
    if unknown:
        return None, f"{label}: unknown key(s) {', '.join(map(str, unknown))}; the keys are include, policy, timeout"
    include = spec.get("include")
    if (
        isinstance(include, str | bytes)
        or not isinstance(include, Collection)
        or not include
        or not all(is_name(i) for i in include)
    ):
        return None, f"{label}: include={include!r} must be a non-empty list of component names or tags"
    policy = spec.get("policy", "gate")
    if policy not in POLICIES:
        return None, f"{label}: policy={policy!r} must be one of gate, warn, report"
    timeout = spec.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0
    ):
        return None, f"{label}: timeout={timeout!r} must be a number of seconds > 0, e.g. 'timeout': 0.5"
    return HealthGroup(name, tuple(dict.fromkeys(include)), policy, None if timeout is None else float(timeout)), None


def groups_problems(groups: Mapping[str, HealthGroup], components: Mapping[str, Component[Any]]) -> list[str]:
    """A group that matches no registered component (a typo), one line each naming the fix."""
    problems = []
    tags = {t for c in components.values() for t in c.tags}
    for group in groups.values():
        if not any(group.covers(c) for c in components.values()):
            known = ", ".join(sorted({*components, *tags}))
            problems.append(
                f"health group {group.name!r} includes {list(group.include)}, which matches no component; "
                f"list component names or tags ({known})"
            )
    return problems


def group_summaries(
    report: HealthReport, groups: Mapping[str, HealthGroup], components: Mapping[str, Component[Any]]
) -> dict[str, GroupHealth]:
    """Each group's status as *report* shows its members (nothing probed): for ``/health`` with details."""
    out: dict[str, GroupHealth] = {}
    for name, group in groups.items():
        names = members(group, components, report.components)
        status = worst(report.components[n].status for n in names) if report.components else report.status
        out[name] = GroupHealth(name, apply_policy(status, group.policy), group.policy, tuple(names))
    return out


def as_group(report: HealthReport, group: HealthGroup) -> HealthReport:
    """*report* (of the group's members) as the group answers it: its policy applied, its name and policy named."""
    status = apply_policy(report.status, group.policy)
    return HealthReport(
        report.kind, status, report.components, report.output, report.time, group=group.name, policy=group.policy
    )


def with_groups(
    report: HealthReport, groups: Mapping[str, HealthGroup], components: Mapping[str, Component[Any]]
) -> HealthReport:
    """*report* carrying each group's status as its components show it (for ``/health`` with details)."""
    summaries = FrozenMap(group_summaries(report, groups, components))
    return HealthReport(report.kind, report.status, report.components, report.output, report.time, groups=summaries)


def apply_policy(status: HealthStatus, policy: GroupPolicy) -> HealthStatus:
    """``warn`` turns a ``fail`` into ``warn``; ``gate`` and ``report`` keep the status (report is never a 503)."""
    return "warn" if policy == "warn" and status == "fail" else status
