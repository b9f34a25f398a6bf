"""Invalidations Redis did not get: held in order, bounded, sent again once Redis answers."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

__all__ = ["MAX_HELD", "Held"]

MAX_HELD = 1000  # beyond that, the whole namespace is held instead (one invalidation that covers them all)


class Held:
    """The invalidations of one cache that did not reach Redis, oldest first.

    At most :data:`MAX_HELD`; one more and they are replaced by a single ``("prefix", namespace)``:
    sending it later drops every key they could have named. ``len()`` counts that as one.
    """

    __slots__ = ("_items", "_overflow", "_prefix", "flushing")

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._items: deque[tuple[str, str]] = deque()
        self._overflow = False
        self.flushing = False

    def add(self, op: str, arg: str) -> None:
        if len(self._items) >= MAX_HELD:
            self._overflow = True
        else:
            self._items.append((op, arg))

    def __len__(self) -> int:
        return len(self._items) + (1 if self._overflow else 0)

    def clear(self) -> int:
        """Forget them all; how many there were."""
        count = len(self)
        self._items.clear()
        self._overflow = False
        return count

    async def flush(self, send: Callable[[str, str], Awaitable[bool]]) -> bool:
        """``await send(op, arg)`` for each, oldest first, until one returns ``False`` (it stays held, and
        the ones after it). ``True`` when none is left. One flush at a time: a second call returns at once."""
        if self.flushing:
            return not self
        self.flushing = True
        try:
            if self._overflow:
                self._overflow = False
                self._items.clear()
                self._items.append(("prefix", self._prefix))
            while self._items:
                op, arg = self._items[0]
                if not await send(op, arg):
                    return False
                self._items.popleft()
            return True
        finally:
            self.flushing = False
