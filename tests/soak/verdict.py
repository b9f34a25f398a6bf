"""Judges a :class:`~tests.soak.driver.SoakRecord`: what failed where it must not, what grew, the figures.

Windows, per component: an outage runs from the moment just before the kill (or the cut) to the
moment the server is back. A request on a component's route is *excused* when it overlaps an
outage of that component widened by a small lead before and ``config.grace`` after (the time a
restored server takes to be back in service). Any other non-200 answer, or no answer, is a failure.
Readiness is never 503 (both components are optional); per component it must say ``pass`` when
no outage is near, ``warn`` once an outage has lasted ``config.detect`` and until it ends, and
either in between.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .driver import CANARY, Outage, Reply, SoakRecord

__all__ = ["LIMITS", "Verdict", "judge"]

LEAD = 0.05  # a request sent this long before a kill may already meet the dying server

#: Growth allowed between the sample after warm-up and the one after the settle (load paused both
#: times): a few tasks or descriptors of timing noise (a keep-alive connection being replaced), and
#: memory that one-time work (first tracebacks, lazily built caches) may take.
LIMITS = {"tasks": 2, "fds": 6, "rss_mib": 20.0}


@dataclass
class Verdict:
    """Problems by kind (each a list of sentences; empty is good) and the figures for the report."""

    request_errors: list[str] = field(default_factory=list)
    # 500s from pooled Redis connections that outlived a server restart (see tests/test_soak.py): kept
    # apart so the known library problem does not hide any other error outside an outage.
    stale_redis_errors: list[str] = field(default_factory=list)
    readiness_errors: list[str] = field(default_factory=list)
    recovery_errors: list[str] = field(default_factory=list)
    connection_errors: list[str] = field(default_factory=list)
    growth_errors: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


def _overlaps(reply: Reply, start: float, end: float) -> bool:
    return reply.start <= end and reply.end >= start


def _excused(reply: Reply, outages: list[Outage], grace: float) -> bool:
    return any(_overlaps(reply, o.down - LEAD, o.up + grace) for o in outages)


def _window(reply: Reply, outages: list[Outage], record: SoakRecord) -> str:
    """``up``, ``down`` or ``transition`` for *reply* with respect to one component's *outages*."""
    cfg = record.config
    for o in outages:
        if reply.start >= o.down + cfg.detect and reply.end <= o.restoring:
            return "down"
    if _excused(reply, outages, cfg.grace):
        return "transition"
    return "up"


def _at(record: SoakRecord, t: float) -> str:
    return f"t={t - record.t0:.2f}s"


_JOURNAL = re.compile(r"^soak_error t=(?P<t>[0-9.]+) path=(?P<path>\S+) error=(?P<error>\S+)$", re.MULTILINE)
_PATHS = {"redis": "/soak/redis", "database": "/soak/db"}


def _why(record: SoakRecord, reply: Reply) -> str:
    """The exception chain the app logged for a 500 answered to *reply* (the app's clock is ours), or ``""``."""
    for m in _JOURNAL.finditer(record.output):
        if m["path"] == _PATHS[reply.route] and reply.start <= float(m["t"]) <= reply.end:
            return m["error"]
    return ""


def _stale(reply: Reply, why: str, outages: list[Outage]) -> bool:
    """A Redis command that met a pooled connection to a server killed earlier: "Connection closed by server"
    (a bare ConnectionError), on the Redis route, after a restart."""
    return reply.route == "redis" and why == "ConnectionError" and any(o.up <= reply.start for o in outages)


def _requests(record: SoakRecord, by: dict[str, list[Outage]], verdict: Verdict) -> None:
    figures = verdict.figures
    for route in ("redis", "database"):
        replies = [r for r in record.replies if r.route == route]
        outcomes: Counter[str] = Counter()
        for r in replies:
            ok = r.status == 200
            inside = _excused(r, by[route], record.config.grace)
            outcomes[("ok" if ok else (r.error or str(r.status))) + (" in outage" if inside and not ok else "")] += 1
            if not ok and not inside:
                why = "" if r.error else _why(record, r)
                what = r.error or f"HTTP {r.status} ({why or 'no exception logged'})"
                line = f"{route} route at {_at(record, r.start)}: {what}, outside any outage"
                if _stale(r, why, by[route]):
                    verdict.stale_redis_errors.append(line)
                else:
                    verdict.request_errors.append(line)
        figures[f"{route}_requests"] = len(replies)
        figures[f"{route}_outcomes"] = dict(outcomes)
    for r in record.replies:
        if r.route == "stats" and r.status != 200:
            verdict.request_errors.append(f"stats route at {_at(record, r.start)}: {r.error or r.status}")
    verdict.request_errors.extend(f"a load loop ended with {e}" for e in record.loop_errors)


def _readiness(record: SoakRecord, by: dict[str, list[Outage]], verdict: Verdict) -> None:
    seen: Counter[str] = Counter()
    for r in (r for r in record.replies if r.route == "readiness"):
        where = f"readiness at {_at(record, r.start)}"
        if r.status != 200 or not isinstance(r.body, dict):
            verdict.readiness_errors.append(f"{where}: {r.error or r.status} (both components are optional)")
            continue
        statuses = []
        for comp in ("redis", "database"):
            window = _window(r, by[comp], record)
            seen[window] += 1
            checks = r.body.get("checks", {}).get(f"{comp}:responseTime", [{}])
            actual = checks[0].get("status")
            statuses.append(actual)
            expected = {"up": {"pass"}, "down": {"warn"}, "transition": {"pass", "warn"}}[window]
            if actual not in expected:
                verdict.readiness_errors.append(f"{where}: {comp} {actual!r} while {window}, expected {expected}")
        overall = "warn" if "warn" in statuses else "pass"
        if r.body.get("status") != overall or any(s not in ("pass", "warn") for s in statuses):
            verdict.readiness_errors.append(f"{where}: status {r.body.get('status')!r} for components {statuses}")
    verdict.figures["readiness_samples"] = dict(seen)


def _recovery(record: SoakRecord, by: dict[str, list[Outage]], verdict: Verdict) -> None:
    """Per outage: how long until readiness said so, and until the route served again after the restore."""
    cfg = record.config
    detections: dict[str, list[float]] = {"redis": [], "database": []}
    recoveries: dict[str, list[float]] = {"redis": [], "database": []}
    for comp, outages in by.items():
        replies = sorted((r for r in record.replies if r.route == comp), key=lambda r: r.start)
        ready = sorted((r for r in record.replies if r.route == "readiness"), key=lambda r: r.start)
        for o in outages:
            label = f"{comp} {o.mode} at {_at(record, o.down)}"
            if o.up == float("inf"):
                verdict.recovery_errors.append(f"{label}: never restored")
                continue
            warned = [
                r.end - o.down
                for r in ready
                if o.down <= r.start <= o.restoring
                and isinstance(r.body, dict)
                and r.body.get("checks", {}).get(f"{comp}:responseTime", [{}])[0].get("status") == "warn"
            ]
            if warned:
                detections[comp].append(warned[0])
            elif o.restoring - o.down >= cfg.detect + cfg.readiness_every:
                verdict.recovery_errors.append(f"{label}: readiness never said warn during the outage")
            back = [r.end - o.up for r in replies if r.start >= o.up and r.status == 200]
            if not back:
                verdict.recovery_errors.append(f"{label}: the route never served again")
                continue
            recoveries[comp].append(back[0])
            if back[0] > cfg.grace + 1.0 / cfg.rate + 0.5:
                verdict.recovery_errors.append(f"{label}: served again only {back[0]:.2f}s after the restore")
    for comp in ("redis", "database"):
        for what, values in (("detect", detections[comp]), ("recover", recoveries[comp])):
            verdict.figures[f"{comp}_{what}_median"] = statistics.median(values) if values else None
            verdict.figures[f"{comp}_{what}_max"] = max(values) if values else None


def _connections(record: SoakRecord, verdict: Verdict) -> None:
    cfg, out = record.config, verdict.connection_errors
    max_redis = max((c[1] for c in record.connections), default=0)
    max_pg = max((c[2] for c in record.connections), default=0)
    verdict.figures.update(max_redis_connections=max_redis, max_pg_connections=max_pg)
    if max_redis > cfg.redis_max_connections:
        limit = cfg.redis_max_connections
        out.append(f"Redis saw {max_redis} connections of the app under load; the pool allows {limit}")
    pg_limit = cfg.db_pool_size + cfg.db_max_overflow
    if max_pg > pg_limit:
        out.append(f"PostgreSQL saw {max_pg} connections of the app under load; the pool allows {pg_limit}")
    redis_end, pg_end = record.final_connections
    pools = record.final.get("pools", {})
    redis_pool, db_pool = pools.get("redis") or {}, pools.get("database") or {}
    verdict.figures.update(final_connections=record.final_connections, final_pools=pools)
    if not redis_pool or not db_pool:
        out.append(f"a component was still down after the settle: pools {pools}")
    else:
        if redis_pool["in_use"] != 0:
            out.append(f"{redis_pool['in_use']} Redis connections still checked out with no request in flight")
        if db_pool["checked_out"] != 0:
            out.append(f"{db_pool['checked_out']} database connections still checked out with no request in flight")
        if redis_end > redis_pool["in_use"] + redis_pool["available"]:
            out.append(f"Redis has {redis_end} connections of the app; its pool holds {redis_pool}")
    if redis_end > cfg.redis_max_connections:
        limit = cfg.redis_max_connections
        out.append(f"Redis has {redis_end} connections of the app at the end; the pool allows {limit}")
    if pg_end > cfg.db_pool_size:
        out.append(f"PostgreSQL has {pg_end} connections of the app at the end; the pool keeps {cfg.db_pool_size}")
    if record.after_shutdown != (0, 0):
        out.append(f"after shutdown, (Redis, PostgreSQL) still see {record.after_shutdown} connections of the app")


def _growth(record: SoakRecord, verdict: Verdict) -> None:
    base, final = record.baseline, record.final
    if not base or not final:
        verdict.growth_errors.append("no stats sample after warm-up or after the settle")
        return
    grown = {
        "tasks": final["tasks"] - base["tasks"],
        "fds": final["fds"] - base["fds"],
        "rss_mib": (final["rss_kib"] - base["rss_kib"]) / 1024,
    }
    under_load = [s for _, s in record.stats]
    verdict.figures.update(
        baseline={k: base[k] for k in ("tasks", "fds", "rss_kib")},
        final={k: final[k] for k in ("tasks", "fds", "rss_kib")},
        growth=grown,
        max_under_load={k: max((s[k] for s in under_load), default=0) for k in ("tasks", "fds", "rss_kib")},
    )
    for key, limit in LIMITS.items():
        if grown[key] > limit:
            verdict.growth_errors.append(
                f"{key} grew by {grown[key]:.1f} (from {base} to {final}) across the outages; at most {limit}"
            )


def judge(record: SoakRecord) -> Verdict:
    """Every problem in *record*, by kind, and the figures."""
    verdict = Verdict()
    by: dict[str, list[Outage]] = {"redis": [], "database": []}
    for o in record.outages:
        by[o.component].append(o)
    _requests(record, by, verdict)
    _readiness(record, by, verdict)
    _recovery(record, by, verdict)
    _connections(record, verdict)
    _growth(record, verdict)
    span = max((r.end for r in record.replies), default=record.t0) - record.t0
    verdict.figures.update(
        seconds=span,
        outages=dict(Counter(f"{o.component} {o.mode}" for o in record.outages)),
        requests_per_second=sum(1 for r in record.replies if r.route in _PATHS) / span if span else 0.0,
        shutdown_seconds=record.shutdown_seconds,
        exit_status=record.exit_status,
        canary_seen=CANARY in record.output or any(CANARY in b for b in record.bodies),
    )
    return verdict
