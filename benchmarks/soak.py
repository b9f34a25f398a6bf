"""The flapping soak, long: ``nox -s soak`` (or ``python benchmarks/soak.py [--seconds 600] [--write]``).

The same run as tests/test_soak.py (tests/soak/: the app, the driver, the verdict), ten minutes by
default, against the local PostgreSQL (``BENCH_DATABASE_URL``) and a redis-server it owns. It prints
the figures and every problem found; ``--write`` replaces the section between ``<!-- soak:start -->``
and ``<!-- soak:end -->`` at the end of docs/performance.md. Exits 1 when a bound is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent))  # tests.soak: the app, the driver and the verdict

from tests.soak.driver import SoakConfig, SoakRecord, run_soak
from tests.soak.verdict import LIMITS, Verdict, judge

__all__ = ["main", "table"]

ROOT = Path(__file__).parent.parent
DATABASE = os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
START, END = "<!-- soak:start -->", "<!-- soak:end -->"
Row = tuple[str, str, str, str]


def _ok(good: bool) -> str:
    return "met" if good else "**missed**"


def _seconds(f: dict[str, Any], comp: str, what: str) -> str:
    median, worst = f[f"{comp}_{what}_median"], f[f"{comp}_{what}_max"]
    return "—" if median is None else f"{median:.2f} / {worst:.2f} s"


def _degraded(outcomes: dict[str, int]) -> str:
    inside = {k.removesuffix(" in outage"): n for k, n in outcomes.items() if k.endswith(" in outage")}
    return ", ".join(f"{n} × {k}" for k, n in sorted(inside.items(), key=lambda kv: -kv[1])) or "none"


def _quarters(record: SoakRecord) -> str:
    """RSS under load at the end of each quarter of the run (MiB): flat means nothing accumulates."""
    if not record.stats:
        return "—"
    span = record.stats[-1][0] - record.t0
    picks = []
    for q in (0.25, 0.5, 0.75, 1.0):
        at = [s for t, s in record.stats if t - record.t0 <= span * q]
        if at:
            picks.append(f"{at[-1]['rss_kib'] / 1024:.1f}")
    return " → ".join(picks) + " MiB"


def table(record: SoakRecord, verdict: Verdict) -> list[Row]:
    f, cfg = verdict.figures, record.config
    outages = f["outages"]
    cuts = ", ".join(f"{n} {k.split()[1]}" for k, n in sorted(outages.items()) if k.startswith("database"))
    requests = f["redis_requests"] + f["database_requests"]
    ready = f["readiness_samples"]
    base, final, grown = f.get("baseline", {}), f.get("final", {}), f.get("growth", {})
    under = f.get("max_under_load", {})
    redis_end, pg_end = record.final_connections
    detect_bound = cfg.detect + cfg.readiness_every
    detected = max(f["redis_detect_max"] or 1e9, f["database_detect_max"] or 1e9)
    return [
        (
            "run: outages (Redis SIGKILL + restart; database cut through the proxy)",
            f"{f['seconds']:.0f} s: {outages.get('redis kill', 0)} kills; {cuts}",
            "",
            "",
        ),
        (
            "load: requests on the Redis and database routes",
            f"{requests} ({f['requests_per_second']:.0f} req/s)",
            "",
            "",
        ),
        (
            "requests failing outside an outage (+ grace)",
            str(len(verdict.request_errors) + len(verdict.stale_redis_errors)),
            "0",
            _ok(not verdict.request_errors and not verdict.stale_redis_errors),
        ),
        (
            "… of which: a pooled Redis connection that outlived a restart",
            str(len(verdict.stale_redis_errors)),
            "0",
            _ok(not verdict.stale_redis_errors),
        ),
        ("… answers inside Redis outages", _degraded(f["redis_outcomes"]), "(context)", ""),
        ("… answers inside database outages", _degraded(f["database_outcomes"]), "(context)", ""),
        (
            "readiness samples contradicting their window (never 503; `warn` while down)",
            f"{len(verdict.readiness_errors)} of {sum(ready.values()) // 2}",
            "0",
            _ok(not verdict.readiness_errors),
        ),
        (
            "outage shows in readiness, median / max: Redis; database",
            f"{_seconds(f, 'redis', 'detect')}; {_seconds(f, 'database', 'detect')}",
            f"≤ {detect_bound:.1f} s",
            _ok(detected <= detect_bound),
        ),
        (
            "route serves again after the restore, median / max: Redis; database",
            f"{_seconds(f, 'redis', 'recover')}; {_seconds(f, 'database', 'recover')}",
            f"≤ {cfg.grace:.1f} s",
            _ok(not verdict.recovery_errors),
        ),
        (
            "server-side connections under load, max: Redis; PostgreSQL",
            f"{f['max_redis_connections']}; {f['max_pg_connections']}",
            f"≤ {cfg.redis_max_connections}; ≤ {cfg.db_pool_size + cfg.db_max_overflow}",
            _ok(not verdict.connection_errors),
        ),
        (
            "… at the end, idle: Redis; PostgreSQL / after shutdown",
            f"{redis_end}; {pg_end} / {record.after_shutdown[0]}; {record.after_shutdown[1]}",
            f"≤ pool; ≤ {cfg.db_pool_size} / 0; 0",
            _ok(not verdict.connection_errors),
        ),
        (
            "tasks after warm-up → end (idle; max under load)",
            f"{base.get('tasks')} → {final.get('tasks')} ({under.get('tasks')})",
            f"+≤ {LIMITS['tasks']}",
            _ok(grown.get("tasks", 1e9) <= LIMITS["tasks"]),
        ),
        (
            "file descriptors after warm-up → end (idle; max under load)",
            f"{base.get('fds')} → {final.get('fds')} ({under.get('fds')})",
            f"+≤ {LIMITS['fds']}",
            _ok(grown.get("fds", 1e9) <= LIMITS["fds"]),
        ),
        (
            "RSS after warm-up → end",
            f"{base.get('rss_kib', 0) / 1024:.1f} → {final.get('rss_kib', 0) / 1024:.1f} MiB",
            f"+≤ {LIMITS['rss_mib']:.0f} MiB",
            _ok(grown.get("rss_mib", 1e9) <= LIMITS["rss_mib"]),
        ),
        ("… RSS under load at each quarter of the run", _quarters(record), "(context)", ""),
        (
            "SIGTERM to exit, after the soak",
            f"{record.shutdown_seconds:.2f} s (status {record.exit_status})",
            "≤ 15 s",
            _ok(record.shutdown_seconds < 15 and record.exit_status in (0, -15)),
        ),
    ]


def render(rows: list[Row], when: str) -> str:
    lines = ["| measure | value | bound | |", "|---|---|---|---|"]
    lines += [f"| {m} | {v} | {b} | {ok} |" for m, v, b, ok in rows]
    return "\n".join(lines) + f"\n\n{when}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the run (default 600)")
    parser.add_argument("--write", action="store_true", help="replace the soak section of docs/performance.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="infraboot-soak-") as workdir:
        record = asyncio.run(run_soak(SoakConfig(duration=args.seconds), Path(workdir), DATABASE))
    verdict = judge(record)
    when = (
        f"One run of {args.seconds:.0f} s on {time.strftime('%Y-%m-%d', time.gmtime())}, "
        f"on the shared 2-core machine (load average {load:.1f} at the start, other work running beside it)."
    )
    result = render(table(record, verdict), when)
    print(result)
    problems = [
        *verdict.request_errors,
        *verdict.stale_redis_errors,
        *verdict.readiness_errors,
        *verdict.recovery_errors,
        *verdict.connection_errors,
        *verdict.growth_errors,
    ]
    for p in problems[:50]:
        print("problem:", p)
    if args.write:
        doc = ROOT / "docs" / "performance.md"
        text = doc.read_text()
        before, found, rest = text.partition(START)
        if not found:
            print(f"{doc}: no {START} marker; add the soak section first", file=sys.stderr)
            return 2
        _, _, after = rest.partition(END)
        doc.write_text(f"{before}{START}\n{result}\n{END}{after}")
    print(f"median request span: {statistics.median(r.end - r.start for r in record.replies) * 1000:.1f} ms")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
