"""The caches' Prometheus collector (``pip install "infraboot[metrics]"``); labels are cache names only."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._core import Cache

__all__ = ["CacheCollector", "live", "register_cache_metrics", "track"]

_live: weakref.WeakSet[Cache] = weakref.WeakSet()

_COUNTERS = {
    "calls": "Calls of the cached function (its work actually done)",
    "coalesced": "Concurrent misses that shared another call's work",
    "stale_serves": "Stale values served while a refresh ran",
    "l2_bypasses": "Redis skipped because it was down, unhealthy or not started",
    "l2_errors": "Redis calls that failed or timed out (never raised to the caller)",
    "invalidations": "Invalidations made in this process",
    "remote_invalidations": "Invalidations received from other processes",
    "unshared_sets": "set() calls Redis did not take (kept in this process only until Redis answers)",
    "invalidations_dropped": "Invalidations still held for Redis at shutdown (Redis may serve those keys)",
    "oversized_reads": "Entries in Redis over max_value_size, read as misses",
}


def track(cache: Cache) -> None:
    _live.add(cache)


def live() -> list[Cache]:
    """Every cache of this process still referenced somewhere."""
    return list(_live)


class CacheCollector:
    """A ``prometheus_client`` collector for the given caches (``None``: every live cache, at each scrape).

    - ``infraboot_cache_hits_total{cache,level}`` / ``infraboot_cache_misses_total{cache,level}`` (``l1``, ``l2``);
    - ``infraboot_cache_<counter>_total{cache}`` for calls, coalesced, stale serves, L2 bypasses and errors,
      invalidations made and received, sets Redis did not take, invalidations dropped at shutdown,
      oversized entries read;
    - ``infraboot_cache_hit_ratio{cache}``, ``infraboot_cache_l2_up{cache}``, ``infraboot_cache_l1_entries{cache}``.

    Caches with the same ``namespace`` are added up under one label.
    """

    def __init__(self, caches: Iterable[Cache] | None = None) -> None:
        self._caches = None if caches is None else weakref.WeakSet(caches)

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        totals: dict[str, dict[str, float]] = {}
        for cache in list(self._caches if self._caches is not None else _live):
            stats = cache.stats()
            row = totals.setdefault(cache.namespace, {"up": 1.0})
            for k, v in stats.items():
                if isinstance(v, int | float) and not isinstance(v, bool) and not k.endswith("ratio"):
                    row[k] = row.get(k, 0) + v
            row["up"] = min(row["up"], 1.0 if stats["l2_state"] == "up" else 0.0)
        hits = CounterMetricFamily("infraboot_cache_hits", "Cache hits by level", labels=["cache", "level"])
        misses = CounterMetricFamily("infraboot_cache_misses", "Cache misses by level", labels=["cache", "level"])
        others = {k: CounterMetricFamily(f"infraboot_cache_{k}", doc, labels=["cache"]) for k, doc in _COUNTERS.items()}
        ratio = GaugeMetricFamily("infraboot_cache_hit_ratio", "Share of lookups served from a cache", labels=["cache"])
        up = GaugeMetricFamily("infraboot_cache_l2_up", "1 while the cache uses Redis", labels=["cache"])
        size = GaugeMetricFamily("infraboot_cache_l1_entries", "Entries in the local level", labels=["cache"])
        for name, row in sorted(totals.items()):
            for level in ("l1", "l2"):
                hits.add_metric([name, level], row.get(f"{level}_hits", 0) + row.get(f"{level}_stale", 0))
                misses.add_metric([name, level], row.get(f"{level}_misses", 0))
            for k, family in others.items():
                family.add_metric([name], row.get(k, 0))
            lookups = row.get("lookups", 0)
            served = sum(row.get(k, 0) for k in ("l1_hits", "l1_stale", "l2_hits", "l2_stale"))
            ratio.add_metric([name], served / lookups if lookups else 0.0)
            up.add_metric([name], row["up"])
            size.add_metric([name], row.get("l1_size", 0))
        yield from (hits, misses, *others.values(), ratio, up, size)


def register_cache_metrics(registry: Any = None, caches: Iterable[Cache] | None = None) -> CacheCollector:
    """Register a :class:`CacheCollector` on *registry* (default: prometheus_client's global one)."""
    try:
        from prometheus_client.registry import REGISTRY
    except ImportError:
        msg = 'cache metrics need prometheus_client: pip install "infraboot[metrics]"'
        raise ImportError(msg) from None
    collector = CacheCollector(caches)
    (REGISTRY if registry is None else registry).register(collector)
    return collector
