"""Overrides that a test kit can undo, and the default system's registrations as the application made them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from infraboot._engine._component import Component
from infraboot._engine._system import SystemInitializer
from infraboot._engine._system_settings import SETTINGS
from infraboot._front._default import default_system, settings_from_env
from infraboot._front._default import reset_default_system as _reset
from infraboot.exceptions import ConfigError

__all__ = [
    "Baseline",
    "Override",
    "close_open_overrides",
    "iter_held",
    "open_overrides",
    "override",
    "reset_default_system",
]

#: Overrides entered through :func:`override` and not exited yet, oldest first.
_open: list[Override] = []


class Override:
    """Returned by :func:`override`: a context manager that the pytest plugin closes if a test never does."""

    __slots__ = ("_block", "name", "resource", "system")

    def __init__(self, name: str, resource: Any, system: SystemInitializer) -> None:
        self.name = name
        self.resource = resource
        self.system = system
        self._block: contextlib.AbstractContextManager[Any] | None = None

    def __enter__(self) -> Any:
        block = self.system.override(self.name, self.resource)
        block.__enter__()
        self._block = block
        _open.append(self)
        return self.resource

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        block, self._block = self._block, None
        if self in _open:
            _open.remove(self)
        if block is not None:
            block.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        state = "open" if self._block is not None else "closed"
        return f"<infraboot.testing.override {self.name!r} -> {self.resource!r} ({state})>"


def override(name: str, resource: Any, *, system: SystemInitializer | None = None) -> Override:
    """Make ``get(name)`` return *resource* inside the block; on exit ``get()`` says the truth again.

    Works whether or not the component was started, and also when the block raises or
    stops or restarts the component (see :meth:`SystemInitializer.override`)::

        with override("redis", fake_client):
            await handler()          # infraboot.get("redis") is fake_client here

    An override a test enters and never exits is undone by the pytest plugin after that test.
    """
    return Override(name, resource, default_system() if system is None else system)


def close_open_overrides(since: int = 0) -> list[Override]:
    """Exit, newest first, every override entered through :func:`override` after the first *since*; returns them."""
    leftover = _open[since:]
    for block in reversed(leftover):
        with contextlib.suppress(Exception):  # a system gone or reset under it: nothing left to undo
            block.__exit__(None, None, None)
    del _open[since:]
    return leftover


def open_overrides() -> int:
    """How many overrides entered through :func:`override` are still open."""
    return len(_open)


def reset_default_system() -> None:
    """Forget the default system, so the next use builds a fresh one."""
    _reset(None)


_SETTINGS = tuple(SETTINGS)


class Baseline:
    """The default system's registrations as the application made them (at import time, in conftest).

    Every test gets a fresh system holding the same component objects, with the settings
    the session's system has; after the test, each component's attributes are put back as
    they were when the baseline first saw it (a test that set ``required = False`` on one,
    or a start that read settings into it, leaks nothing into the next test).
    """

    def __init__(self) -> None:
        self._attributes: dict[int, tuple[Component[Any], dict[str, Any]]] = {}

    def fresh_system(self, session: SystemInitializer | None) -> SystemInitializer | None:
        """A fresh, unstarted system registering *session*'s components (``None``: none was made yet)."""
        if session is None:
            return None
        components = list(session.components.values())
        for c in components:
            self._attributes.setdefault(id(c), (c, dict(vars(c))))
        settings: dict[str, Any] = {key: getattr(session, key) for key in _SETTINGS}
        system = SystemInitializer(components, **settings)
        try:
            settings_from_env()
        except ConfigError as exc:  # raised by the first start, as the default system does
            system.defer_config_error(exc)
        return system

    def restore_components(self) -> None:
        """Put every component's attributes back as the baseline first saw them."""
        for component, saved in self._attributes.values():
            attributes = vars(component)
            if attributes != saved:
                attributes.clear()
                attributes.update(saved)


def iter_held(system: SystemInitializer) -> Iterator[str]:
    """The names of *system*'s components that hold a resource (started and not stopped)."""
    return (name for name, snap in system.snapshot().items() if snap.has_resource)
