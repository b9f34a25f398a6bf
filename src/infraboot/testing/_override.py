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
    """Make ``get(name)`` return *resource* inside the block; on exit ``get()`` says the truth again.

    Works whether or not the component was started, and also when the block raises or
    stops or restarts the component (see :meth:`SystemInitializer.override`)::

        with override("redis", fake_client):
            await handler()          # infraboot.get("redis") is fake_client here
    """
    target = system if system is not None else default_system()
    with target.override(name, resource):
        yield resource


def reset_default_system() -> None:
    """Forget the default system, so the next use builds a fresh one."""
    _reset(None)
