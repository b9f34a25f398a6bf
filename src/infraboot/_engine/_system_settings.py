"""The system's own settings, defined once.

Each :class:`Setting` names a keyword of :class:`~infraboot.SystemInitializer` (and of
``configure()``), its ``INFRABOOT_*`` variable, its kind, default and meaning. Everything else
derives from :data:`SETTINGS`: the system's defaults, the validation of keyword arguments
(:func:`settings_problems`) and of the environment (:func:`read_env`), the list of variables the
typo check knows (:data:`ENV_VARIABLES`), and the table in ``docs/configuration.md``
(:func:`docs_table`; ``python -m infraboot._engine._system_settings`` prints it, a test compares).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypedDict

from infraboot._base._checks import count_problem, seconds_problem, token_problem
from infraboot._base._variables import know_variables

__all__ = [
    "DEFAULTS",
    "ENV_VARIABLES",
    "SETTINGS",
    "Setting",
    "SystemSettings",
    "docs_table",
    "read_env",
    "settings_problems",
]

#: How a setting is checked.
Kind = Literal["seconds", "count", "switch", "token", "groups"]


class SystemSettings(TypedDict, total=False):
    """The settings of a :class:`~infraboot.SystemInitializer`, as keyword arguments (see its docstring).

    For type checkers; a test keeps it to the names of :data:`SETTINGS`.
    """

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
    health_groups: Mapping[str, Any] | str | None


class Setting:
    """One system setting: its keyword, how it is checked, its default and what it means (frozen)."""

    __slots__ = ("default", "doc", "env", "example", "kind", "name", "none", "off", "zero")

    name: str
    #: ``seconds`` (a finite number > 0), ``count`` (a whole number >= 1), ``switch`` (True or False),
    #: ``token`` (a secret string of at least 16 characters, never echoed), ``groups`` (health groups:
    #: a mapping, or its JSON text in the environment; parsed by ``_groups.parse_groups``).
    kind: Kind
    default: float | int | bool | str | Mapping[str, Any] | None
    #: One line for the documentation table.
    doc: str
    #: ``None`` is a valid value (in code; in the environment, unset).
    none: bool
    #: ``off`` (also ``none``, ``0``) in the environment means ``None``.
    off: bool
    #: Seconds may be 0.
    zero: bool
    #: Read from ``INFRABOOT_<NAME>`` by the default system.
    env: bool
    #: The value an error message suggests when the default cannot serve (it is ``None``).
    example: str | None

    def __init__(
        self,
        name: str,
        kind: Kind,
        default: float | int | bool | str | Mapping[str, Any] | None,
        doc: str,
        *,
        none: bool = False,
        off: bool = False,
        zero: bool = False,
        env: bool = True,
        example: str | None = None,
    ) -> None:
        given = {"name": name, "kind": kind, "default": default, "doc": doc, "none": none, "off": off}
        given.update(zero=zero, env=env, example=example)
        for key, value in given.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, name: str, value: object) -> None:
        msg = f"Setting is frozen: cannot set {name!r}"
        raise AttributeError(msg)

    def __repr__(self) -> str:
        return f"Setting({self.name!r}, {self.kind!r}, default={self.default!r})"

    @property
    def variable(self) -> str | None:
        """The environment variable the default system reads, if any."""
        return f"INFRABOOT_{self.name.upper()}" if self.env else None

    @property
    def hint(self) -> str:
        """An example value for messages: the default, unless that is ``None``."""
        if self.example is not None or self.default is None:
            return self.example or ""
        return _text(self.default)

    def problem(self, field: str, value: object, *, example: str | None = None) -> str | None:
        """A problem line when *value* is not valid for this setting (*field* names it as the user wrote it)."""
        hint = example or f"{field}={self.hint}"
        if self.kind == "seconds":
            return seconds_problem(field, value, allow_none=self.none, allow_zero=self.zero, example=hint)
        if self.kind == "count":
            return count_problem(field, value, minimum=1, example=hint)
        if self.kind == "token":
            return token_problem(field, value)
        if self.kind == "groups":
            from ._groups import parse_groups

            wrong = parse_groups(value, field=field)[1]
            return "; ".join(wrong) if wrong else None
        return None if isinstance(value, bool) else f"{field}={value!r} must be True or False"


def _text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "startup_timeout",
            "seconds",
            None,
            "budget of one `ensure_initialized` call, retries included (unset: each component's own attempts "
            "and deadline decide)",
            none=True,
            example="60",
        ),
        Setting("shutdown_timeout", "seconds", 30.0, "budget of shutdown (and of a rollback)"),
        Setting(
            "check_interval",
            "seconds",
            10.0,
            "the background monitor probes every ready component this often; `off` (also `none`, `0`) turns it off",
            none=True,
            off=True,
        ),
        Setting(
            "check_ttl",
            "seconds",
            1.0,
            "a probe result is reused this long by readiness: at most one probe per component per TTL",
        ),
        Setting(
            "health_timeout",
            "seconds",
            1.0,
            "readiness waits this long for fresh probes, then answers from the last known results",
        ),
        Setting(
            "failure_threshold",
            "count",
            1,
            "failures in a row before a component is unhealthy: failed probes, and connection errors or "
            "timeouts met by live traffic ([passive health](health.md#passive-health-what-live-traffic-sees))",
        ),
        Setting("success_threshold", "count", 1, "passed probes in a row before it is healthy again"),
        Setting(
            "recovery",
            "switch",
            True,
            "bring optional components that failed or went down back in the background, with jittered backoff",
            env=False,
        ),
        Setting(
            "drain_delay",
            "seconds",
            5.0,
            "a drain holds readiness off this long while still serving; `0` turns the wait off "
            "([operations](operations.md))",
            zero=True,
        ),
        Setting(
            "drain_token",
            "token",
            None,
            "the secret a `POST /drainz` from another host sends as `Authorization: Bearer <token>` "
            "(unset: only loopback callers may drain); never logged nor shown",
            none=True,
        ),
        Setting(
            "health_groups",
            "groups",
            None,
            'health groups, each served on `/readyz/<group>`: `{"critical": ["database"]}` or '
            '`{"critical": {"include": ["database", "critical"], "policy": "gate", "timeout": 0.5}}` '
            "(component names and tags; see [Health groups](health.md#health-groups))",
            none=True,
        ),
    )
}

#: Each setting's default, by keyword.
DEFAULTS: dict[str, Any] = {name: s.default for name, s in SETTINGS.items()}
#: The ``INFRABOOT_*`` variables the default system reads.
ENV_VARIABLES: tuple[str, ...] = tuple(s.variable for s in SETTINGS.values() if s.variable is not None)
know_variables(ENV_VARIABLES)  # the did-you-mean check (in _base) learns them here, not by climbing to us
_OFF = ("off", "none", "0")


def settings_problems(given: Mapping[str, object]) -> list[str]:
    """Every problem of the settings in *given* (keyword arguments), one line each."""
    problems: list[str] = []
    for key, value in given.items():
        setting = SETTINGS.get(key)
        if setting is None:
            import difflib

            close = difflib.get_close_matches(key, SETTINGS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"unknown setting {key!r}; {hint}the settings are {', '.join(SETTINGS)}")
            continue
        if setting.kind == "groups":  # one line per mistake of each group
            from ._groups import parse_groups

            problems.extend(parse_groups(value, field=key)[1])
            continue
        problem = setting.problem(key, value)
        if problem:
            problems.append(problem)
    return problems


def read_env(env: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The valid settings among the ``INFRABOOT_*`` variables of *env*, and one problem line per bad one.

    Unset or empty means the default. A line names the variable and the value as written.
    """
    settings: dict[str, Any] = {}
    problems: list[str] = []
    for key, setting in SETTINGS.items():
        var = setting.variable
        raw = None if var is None else env.get(var)
        if var is None or raw is None or raw.strip() == "":
            continue
        if setting.kind == "groups":
            from ._groups import parse_groups

            groups, wrong = parse_groups(raw, field=var)
            problems.extend(wrong)
            if not wrong:
                settings[key] = groups
            continue
        if setting.kind == "token":
            problem = setting.problem(var, raw)
            if problem is None:
                settings[key] = raw
            else:
                problems.append(problem)
            continue
        hint = f"{var}={setting.hint}"
        if setting.off:
            if raw.strip().lower() in _OFF:
                settings[key] = None
                continue
            hint += f" (or {var}=off)"
        value: object
        try:
            value = int(raw) if setting.kind == "count" else float(raw)
        except ValueError:
            value = raw  # not a number: the check below words the problem
        problem = setting.problem(var, value, example=hint)
        if problem is None:
            settings[key] = value
        else:  # name the value as it was written, not as it was parsed
            problems.append(f"{var}={raw!r}" + problem.removeprefix(f"{var}={value!r}"))
    return settings, problems


def docs_table() -> str:
    """The Markdown table of the ``INFRABOOT_*`` variables, as ``docs/configuration.md`` shows it."""
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS.values():
        if s.variable is None:
            continue
        kind = {
            "seconds": "seconds ≥ 0" if s.zero else "seconds > 0",
            "count": "int ≥ 1",
            "switch": "`true` or `false`",
            "token": "string, ≥ 16 characters",
            "groups": "JSON object",
        }[s.kind]
        if s.off:
            kind += ", or `off`"
        default = "unset" if s.default is None or s.kind == "groups" else f"`{_text(s.default)}`"
        rows.append(f"| `{s.variable}` | {kind} | {default} | {s.doc} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(docs_table())
