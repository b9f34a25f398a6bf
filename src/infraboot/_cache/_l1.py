"""The in-process level: a bounded LRU whose entries carry a fresh and a stale deadline."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from typing import Any

__all__ = ["Entry", "LocalLevel"]


class Entry:
    """One cached value: fresh until ``fresh_until``, servable as stale until ``stale_until`` (monotonic)."""

    __slots__ = ("fresh_until", "stale_until", "tags", "value")

    def __init__(self, value: Any, fresh_until: float, stale_until: float, tags: Collection[str] = ()) -> None:
        self.value = value
        self.fresh_until = fresh_until
        self.stale_until = stale_until
        self.tags = frozenset(tags)


class LocalLevel:
    """A bounded LRU with per-entry deadlines: the least recently used entry goes first when full.

    Not thread-safe by design: one event loop owns it.
    """

    __slots__ = ("_entries", "evictions", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self.evictions = 0

    def get(self, key: str, now: float) -> Entry | None:
        """The entry of *key* if it is still servable (fresh or stale) at *now*; it becomes the most recent."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry.stale_until:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def set(self, key: str, entry: Entry) -> None:
        entries = self._entries
        entries[key] = entry
        entries.move_to_end(key)
        while len(entries) > self.maxsize:
            entries.popitem(last=False)
            self.evictions += 1

    def delete(self, key: str) -> bool:
        return self._entries.pop(key, None) is not None

    def delete_prefix(self, prefix: str) -> int:
        doomed = [k for k in self._entries if k.startswith(prefix)]
        for k in doomed:
            del self._entries[k]
        return len(doomed)

    def delete_tag(self, tag: str) -> int:
        doomed = [k for k, e in self._entries.items() if tag in e.tags]
        for k in doomed:
            del self._entries[k]
        return len(doomed)

    def delete_where(self, matches: Callable[[str], bool]) -> int:
        doomed = [k for k in self._entries if matches(k)]
        for k in doomed:
            del self._entries[k]
        return len(doomed)

    def clear(self) -> int:
        count = len(self._entries)
        self._entries.clear()
        return count

    def purge_expired(self, now: float | None = None) -> int:
        """Drop every entry past its stale deadline; returns how many."""
        at = time.monotonic() if now is None else now
        doomed = [k for k, e in self._entries.items() if at >= e.stale_until]
        for k in doomed:
            del self._entries[k]
        return len(doomed)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))
