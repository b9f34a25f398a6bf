"""The module-level default system behind ``infraboot.ensure_initialized`` and friends."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._component import Component
from ._report import ShutdownReport, StartupReport
from ._state import ComponentState
from ._system import SystemInitializer
from .exceptions import ConfigError

__all__ = [
    "default_system",
    "ensure_initialized",
    "get",
    "load_entry_points",
    "register",
    "reset_default_system",
    "shutdown",
    "state",
]

ENTRY_POINT_GROUP = "infraboot.components"

_system: SystemInitializer | None = None


def default_system() -> SystemInitializer:
    """The process-wide system, created on first use.

    It holds the built-in ``redis`` and ``database`` components (configured from
    ``REDIS_*`` / ``DATABASE_*`` environment variables; an unset URL disables one)
    and every component contributed through the ``infraboot.components`` entry points.
    """
    global _system
    if _system is None:
        from ._builtin import builtin_components

        system = SystemInitializer(builtin_components())
        load_entry_points(system)
        _system = system
    return _system


def reset_default_system(system: SystemInitializer | None = None) -> SystemInitializer | None:
    """Replace the default system (``None``: build a fresh one on next use); returns the old one.

    For test kits; an application has no reason to call it.
    """
    global _system
    old, _system = _system, system
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


async def shutdown() -> ShutdownReport:
    """Stop every started component of the default system, dependents first."""
    if _system is None:
        return ShutdownReport()
    return await _system.shutdown()


def get(name: str) -> Any:
    """The live resource of a ready component of the default system."""
    return default_system().get(name)


def state(name: str) -> ComponentState:
    """The state of a component of the default system."""
    return default_system().state(name)


def register(component: Component[Any]) -> Component[Any]:
    """Add *component* to the default system; returns it."""
    return default_system().register(component)
