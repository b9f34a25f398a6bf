"""The module-level default system behind ``infraboot.ensure_initialized`` and friends."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from infraboot._engine import _system_settings
from infraboot._engine._component import Component
from infraboot._engine._health import HealthReport
from infraboot._engine._report import ShutdownReport, StartupReport
from infraboot._engine._state import ComponentState
from infraboot._engine._system import SystemInitializer
from infraboot.exceptions import ConfigError

__all__ = [
    "ENV_VARIABLES",
    "default_system",
    "ensure_initialized",
    "get",
    "health",
    "liveness",
    "load_entry_points",
    "readiness",
    "register",
    "reset_default_system",
    "shutdown",
    "startup",
    "state",
]

ENTRY_POINT_GROUP = "infraboot.components"

_system: SystemInitializer | None = None


def _first_lookup(name: str) -> Any:
    return default_system().get(name)


#: ``get`` of the default system, bound: the accessors' hot path (rebound when the default system changes).
lookup: Callable[[str], Any] = _first_lookup


def default_system() -> SystemInitializer:
    """The process-wide system, created on first use.

    It holds the built-in ``redis`` and ``database`` components (configured from
    ``REDIS_*`` / ``DATABASE_*`` environment variables; an unset URL disables one)
    and every component contributed through the ``infraboot.components`` entry points.

    Bad ``INFRABOOT_*`` values never raise here (a worker that registers components at
    import time must still import): the system takes the valid ones, and the
    :class:`ConfigError` listing the rest is raised by the first ``ensure_initialized``.
    """
    global _system, lookup
    if _system is None:
        from infraboot._components._builtin import builtin_components

        settings, problems = _system_settings.read_env(os.environ)
        system = SystemInitializer(builtin_components(), **settings)
        if problems:
            system.defer_config_error(ConfigError.from_problems(problems, title=_TITLE))
        load_entry_points(system)
        _system = system
        lookup = system.get
    return _system


#: The ``INFRABOOT_*`` variables the default system reads (defined in ``_engine._system_settings``).
ENV_VARIABLES = _system_settings.ENV_VARIABLES
_TITLE = "invalid INFRABOOT_* environment variables"


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The default system's settings from ``INFRABOOT_*`` variables (unset or empty: the default).

    Every variable is checked, type and range: one :class:`ConfigError` lists every bad
    one, each line naming the variable, its value and an example
    (``INFRABOOT_SHUTDOWN_TIMEOUT='-1': must be a finite number of seconds > 0, e.g.
    INFRABOOT_SHUTDOWN_TIMEOUT=30``). ``INFRABOOT_CHECK_INTERVAL=off`` turns the
    background monitor off; the thresholds are whole numbers >= 1.
    """
    settings, problems = _system_settings.read_env(os.environ if environ is None else environ)
    if problems:
        raise ConfigError.from_problems(problems, title=_TITLE)
    return settings


def reset_default_system(system: SystemInitializer | None = None) -> SystemInitializer | None:
    """Replace the default system (``None``: build a fresh one on next use); returns the old one.

    For test kits; an application has no reason to call it.
    """
    global _system, lookup
    old, _system = _system, system
    lookup = _first_lookup if system is None else system.get
    return old


def load_entry_points(system: SystemInitializer, group: str = ENTRY_POINT_GROUP) -> list[Component[Any]]:
    """Register the components that installed packages contribute through *group*.

    An entry point may name a :class:`Component` instance, a ``Component``
    subclass, or a function returning a component (or a list of them).
    """
    from importlib.metadata import entry_points

    added: list[Component[Any]] = []
    for ep in entry_points(group=group):
        obj = ep.load()
        if (isinstance(obj, type) and issubclass(obj, Component)) or (callable(obj) and not isinstance(obj, Component)):
            obj = obj()
        items = obj if isinstance(obj, list | tuple) else [obj]
        for item in items:
            if not isinstance(item, Component):
                msg = (
                    f"entry point {ep.name!r} ({ep.value}) in group {group!r} gave {type(item).__name__}; "
                    "it must name a Component, a Component subclass, or a function returning one"
                )
                raise ConfigError(msg)
            if item.name in system.components:
                continue  # an explicit registration wins over discovery
            system.register(item)
            added.append(item)
    return added


async def ensure_initialized(names: Iterable[str] | None = None) -> StartupReport:
    """Start the named components of the default system and all they require.

    ``await infraboot.ensure_initialized(["redis", "database"])`` -- idempotent and
    safe to call from many tasks at once. See :meth:`SystemInitializer.ensure_initialized`.
    """
    return await default_system().ensure_initialized(names)


async def shutdown(*, timeout: float | None = None) -> ShutdownReport:  # noqa: ASYNC109 - a budget, enforced inside
    """Stop every started component of the default system, dependents first, within *timeout*
    (default ``INFRABOOT_SHUTDOWN_TIMEOUT``): :meth:`SystemInitializer.shutdown`."""
    if _system is None:
        if timeout is not None:  # a wrong budget is an error even with nothing to stop
            from infraboot._base._checks import seconds_problem

            problem = seconds_problem("timeout", timeout)
            if problem:
                raise ConfigError(f"shutdown({problem})")
        return ShutdownReport()
    return await _system.shutdown(timeout=timeout)


def get(name: str) -> Any:
    """The live resource of a ready component of the default system."""
    return default_system().get(name)


def state(name: str) -> ComponentState:
    """The state of a component of the default system."""
    return default_system().state(name)


def register(component: Component[Any], *, replace: bool = False) -> Component[Any]:
    """Add *component* to the default system; returns it. ``replace=True`` swaps a built-in before startup."""
    return default_system().register(component, replace=replace)


def liveness() -> HealthReport:
    """Liveness of the default system; see :meth:`SystemInitializer.liveness`."""
    return default_system().liveness()


async def readiness() -> HealthReport:
    """Readiness of the default system; see :meth:`SystemInitializer.health`."""
    return await default_system().readiness()


async def health(*, fresh: bool = False) -> HealthReport:
    """Readiness with per-component detail; see :meth:`SystemInitializer.health`."""
    return await default_system().health(fresh=fresh)


def startup() -> HealthReport:
    """Whether the default system finished starting; see :meth:`SystemInitializer.startup`."""
    return default_system().startup()
