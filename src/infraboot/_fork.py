"""Loop binding and fork hygiene: what a system must forget when its event loop or its process changes.

A child inherits the parent's sockets; closing (or even finalising) them in the child
breaks the parent. Owners register a hook here; in the child each hook replaces the
owner's live objects, and the parent's objects are kept alive in :data:`orphans` so
that the child's garbage collector never finalises them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["LoopBinding", "orphans", "watch"]

#: The parent's objects, held for the child's whole life so that they are never finalised there.
orphans: list[Any] = []

_hooks: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()


def watch(owner: Any, hook: Callable[[Any], None]) -> None:
    """Call ``hook(owner)`` in every child forked while *owner* is alive (held weakly)."""
    _hooks[owner] = hook


def _in_child() -> None:
    for owner, hook in list(_hooks.items()):
        try:
            hook(owner)
        except Exception:  # one owner's trouble must not leave the others with the parent's sockets
            logging.getLogger("infraboot").exception("after-fork hook of %r failed", owner)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_child)


class LoopBinding:
    """The event loop a system's tasks and connections belong to (held weakly)."""

    __slots__ = ("_ref",)

    def __init__(self) -> None:
        self._ref: weakref.ref[asyncio.AbstractEventLoop] | None = None

    def bind(self, running: Callable[[], list[str]]) -> bool:
        """Bind to the running loop; ``True`` when the system must first forget a previous, finished loop.

        Warns (``ResourceWarning``) when components, named by *running*, were left running
        in that loop. Raises ``RuntimeError`` when the previous loop is still running elsewhere.
        """
        loop = asyncio.get_running_loop()
        old = self._ref() if self._ref is not None else None
        if old is loop:
            return False
        if old is not None and not old.is_closed() and old.is_running():
            msg = (
                "this system was started in another event loop that is still running; "
                "use one SystemInitializer per event loop (or shut it down first)"
            )
            raise RuntimeError(msg)
        stale = self._ref is not None
        self._ref = weakref.ref(loop)
        leaked = running() if stale else []
        if leaked:
            warnings.warn(
                f"infraboot: components {leaked} were never shut down and their event loop is gone; "
                "call await system.shutdown() before the loop ends",
                ResourceWarning,
                stacklevel=4,
            )
        return stale

    def release(self) -> None:
        """Bound to no loop: the next start binds afresh, with nothing to forget."""
        self._ref = None
