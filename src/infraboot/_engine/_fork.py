"""Loop binding and fork hygiene: what a system must forget when its event loop or its process changes.

A child inherits the parent's sockets; closing (or even finalising) them in the child
breaks the parent. Owners register a hook here; in the child each hook replaces the
owner's live objects, and the parent's objects are kept alive in :data:`orphans` so
that the child's garbage collector never finalises them.

An epoll instance is shared across fork: a child that unregisters a socket from the
epoll of an inherited event loop (what a finalised asyncpg or redis connection does)
removes it for the parent too, whose next read on it then never completes. So, before
any hook runs, every loop a :class:`LoopBinding` is bound to is kept in :data:`orphans`
and given an epoll of the child's own (with the same registrations): whatever the child
then closes, finalises or unregisters, the parent's epoll is left as it was.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import selectors
import warnings
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["LoopBinding", "orphans", "watch"]

#: The parent's objects, held for the child's whole life so that they are never finalised there.
orphans: list[Any] = []

_hooks: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()
_bindings: weakref.WeakSet[LoopBinding] = weakref.WeakSet()


def watch(owner: Any, hook: Callable[[Any], None]) -> None:
    """Call ``hook(owner)`` in every child forked while *owner* is alive (held weakly)."""
    _hooks[owner] = hook


def _in_child() -> None:
    log = logging.getLogger("infraboot")
    for binding in list(_bindings):
        loop = binding.loop
        if loop is None:
            continue
        orphans.append(loop)  # its tasks, transports and protocols stay reachable, never finalised here
        try:
            _detach_selector(loop)
        except Exception:  # pragma: no cover - a selector we do not know: the orphans still hold it
            log.exception("could not give the inherited event loop %r a selector of its own", loop)
    for owner, hook in list(_hooks.items()):
        try:
            hook(owner)
        except Exception:  # one owner's trouble must not leave the others with the parent's sockets
            log.exception("after-fork hook of %r failed", owner)


def _detach_selector(loop: asyncio.AbstractEventLoop) -> None:
    """Give an inherited selector event loop an epoll of the child's own, with the same registrations.

    Only epoll is shared with the parent (kqueue is not inherited; select and poll keep no
    kernel state). The child's copy of the inherited epoll file descriptor is closed: the
    instance lives on in the parent.
    """
    epoll = getattr(select, "epoll", None)
    selector = getattr(loop, "_selector", None)
    inner = getattr(selector, "_selector", None)
    if epoll is None or not isinstance(selector, selectors.EpollSelector) or not isinstance(inner, epoll):
        return
    fresh = epoll()
    for key in list(selector.get_map().values()):
        mask = (select.EPOLLIN if key.events & selectors.EVENT_READ else 0) | (
            select.EPOLLOUT if key.events & selectors.EVENT_WRITE else 0
        )
        try:
            fresh.register(key.fd, mask)
        except OSError:  # closed meanwhile: nothing to watch
            continue
    selector._selector = fresh  # type: ignore[attr-defined]
    inner.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_child)


class LoopBinding:
    """The event loop a system's tasks and connections belong to (held weakly)."""

    __slots__ = ("__weakref__", "_ref")

    def __init__(self) -> None:
        self._ref: weakref.ref[asyncio.AbstractEventLoop] | None = None
        _bindings.add(self)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop bound to, while it exists."""
        return self._ref() if self._ref is not None else None

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
