from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from infraboot._default import default_system
from infraboot._default import reset_default_system as _reset
from infraboot._system import SystemInitializer

__all__ = ["override", "reset_default_system"]


@contextlib.contextmanager
def override(name: str, resource: Any, *, system: SystemInitializer | None = None) -> Iterator[Any]:
    """Make ``get(name)`` return *resource* inside the block; restore the original on exit.

    Works whether or not the component was started, and restores also when the
    block raises::

        with override("redis", fake_client):
            await handler()          # infraboot.get("redis") is fake_client here
    """
    target = system if system is not None else default_system()
    target.state(name)  # an unknown name fails here, with the list of registered ones
    had = name in target._resources
    previous = target._resources.get(name)
    target._resources[name] = resource
    try:
        yield resource
    finally:
        if had:
            target._resources[name] = previous
        else:
            target._resources.pop(name, None)


def reset_default_system() -> None:
    """Forget the default system, so the next use builds a fresh one."""
    _reset(None)
