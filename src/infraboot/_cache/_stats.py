"""The cache's counters: plain integers bumped on the hot path, read as a dict."""

from __future__ import annotations

from typing import Any

__all__ = ["COUNTERS", "Counters"]

COUNTERS = (
    "l1_hits",
    "l1_misses",
    "l2_hits",
    "l2_misses",
    "l1_stale",
    "l2_stale",
    "coalesced",
    "calls",
    "refreshes",
    "refresh_errors",
    "lock_waits",
    "not_stored",
    "invalidations",
    "remote_invalidations",
    "unshared_sets",
    "invalidations_dropped",
    "oversized_reads",
)


class Counters:
    """Hits and misses per level, stale serves, coalesced calls, function calls, refreshes, invalidations.

    ``unshared_sets``: ``set`` calls that did not reach Redis (kept in this process only, until Redis
    answers); ``invalidations_dropped``: invalidations still held for Redis at shutdown;
    ``oversized_reads``: entries in Redis over ``max_value_size`` (decoded), read as misses.

    ``hit_ratio`` is the share of lookups answered from a cache (L1 or L2, stale included);
    ``l1_hit_ratio`` the share L1 answered alone; ``stale_serves`` is ``l1_stale + l2_stale``.
    ``None`` before the first lookup.
    """

    __slots__ = COUNTERS

    def __init__(self) -> None:
        self.l1_hits = self.l1_misses = self.l2_hits = self.l2_misses = 0
        self.l1_stale = self.l2_stale = self.coalesced = self.calls = 0
        self.refreshes = self.refresh_errors = self.lock_waits = self.not_stored = 0
        self.invalidations = self.remote_invalidations = 0
        self.unshared_sets = self.invalidations_dropped = self.oversized_reads = 0

    def as_dict(self, **extra: Any) -> dict[str, Any]:
        values: dict[str, Any] = {name: getattr(self, name) for name in COUNTERS}
        # Every lookup is one of: an L1 hit, an L1 stale serve, an L1 miss (then L2 hit / stale / miss / bypass).
        lookups = values["l1_hits"] + values["l1_stale"] + values["l1_misses"]
        served = values["l1_hits"] + values["l1_stale"] + values["l2_hits"] + values["l2_stale"]
        values["stale_serves"] = values["l1_stale"] + values["l2_stale"]
        values["lookups"] = lookups
        values["hit_ratio"] = None if lookups == 0 else round(served / lookups, 4)
        values["l1_hit_ratio"] = None if lookups == 0 else round((values["l1_hits"] + values["l1_stale"]) / lookups, 4)
        return {**extra, **values}
