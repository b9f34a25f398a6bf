"""Lifecycle figures under real uvicorn processes: ``python benchmarks/bench_lifecycle.py [--write]``.

- time from process start to the first ``/livez`` 200, an app whose one component takes 5 s
  (``background=True``) against the same app with no component, alternating, medians;
- a drain under load: 8 clients on loopback, ``/drainz`` then SIGTERM: requests failed, requests
  answered 200 by ``/readyz`` after ``/drainz`` arrived, requests served during the drain.

``--write`` replaces the section between ``<!-- lifecycle:start -->`` and ``<!-- lifecycle:end -->``
in docs/performance.md.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).parent.parent
PAGE = ROOT / "docs" / "performance.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(port: int, **env: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "uvicorn", "--app-dir", "benchmarks/apps", "slow_start:app"]
    args += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "INFRABOOT_"))}
    return subprocess.Popen(args, env={**environ, **env}, cwd=ROOT, stdout=subprocess.DEVNULL)


def first_live(slow: float) -> float:
    """Seconds from spawning the process to its first /livez 200."""
    port = free_port()
    t0 = time.perf_counter()
    proc = start(port, SLOW_SECONDS=str(slow))
    try:
        with httpx.Client(timeout=1) as client:
            while True:
                try:
                    if client.get(f"http://127.0.0.1:{port}/livez").status_code == 200:
                        return time.perf_counter() - t0
                except httpx.TransportError:
                    time.sleep(0.002)
                if proc.poll() is not None:
                    raise RuntimeError("the app exited")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


async def drain_under_load(drain_delay: float = 1.0, clients: int = 8) -> dict[str, float]:
    port = free_port()
    proc = start(port, INFRABOOT_DRAIN_DELAY=str(drain_delay))
    failed = served = 0
    stop = asyncio.Event()
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=httpx.Limits(max_connections=32)) as client:
        while True:
            try:
                if (await client.get("/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.01)

        async def load() -> None:
            nonlocal failed, served
            while not stop.is_set():
                try:
                    ok = (await client.get("/work")).status_code == 200
                except httpx.HTTPError:
                    ok = False
                failed += not ok
                served += ok

        workers = [asyncio.ensure_future(load()) for _ in range(clients)]
        await asyncio.sleep(1.0)  # steady load before the drain
        drain = asyncio.ensure_future(client.get("/drainz"))
        t_drain = time.perf_counter()
        ready_after = 0
        while (await client.get("/readyz")).status_code == 200:
            ready_after += 1
        turned = time.perf_counter() - t_drain
        at_drain = served
        await asyncio.sleep(drain_delay / 2)  # endpoints converge; the load balancer stops sending
        stop.set()
        await asyncio.gather(*workers)
        await drain
        drained_in_flight = served - at_drain
    proc.send_signal(signal.SIGTERM)
    status = proc.wait(30)
    return {
        "failed": failed,
        "served": served,
        "served_during_drain": drained_in_flight,
        "ready_after": ready_after,
        "turned_ms": turned * 1000,
        "exit": status,
    }


def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "7"))
    none: list[float] = []
    slow: list[float] = []
    first_live(0)  # bytecode written, caches warm
    for _ in range(rounds):
        none.append(first_live(0))
        slow.append(first_live(5))
    a, b = statistics.median(none), statistics.median(slow)
    drains = [asyncio.run(drain_under_load()) for _ in range(3)]
    failed = sum(int(d["failed"]) for d in drains)
    served = sum(int(d["served"]) for d in drains)
    during = sum(int(d["served_during_drain"]) for d in drains)
    ready_after = max(int(d["ready_after"]) for d in drains)
    turned = max(d["turned_ms"] for d in drains)
    exits = sorted({int(d["exit"]) for d in drains})
    rows = [
        "| measure | value | target | verdict |",
        "|---|---|---|---|",
        f"| first `/livez` 200 after process start: one 5-s component ÷ no component (median of {rounds}) "
        f"| {b * 1000:.0f} / {a * 1000:.0f} ms = {b / a:.2f} | ≤ 1.2 | {'met' if b / a <= 1.2 else '**missed**'} |",
        f"| requests failed during `/drainz` then SIGTERM, 8 clients, 3 runs ({served} requests, "
        f"{during} during the drains) | {failed} | 0 | {'met' if failed == 0 else '**missed**'} |",
        f"| `/readyz` answers still 200 after `/drainz` was sent (an upper bound) (worst of 3; {turned:.1f} ms) | {ready_after} "
        f"| ≤ 1 | {'met' if ready_after <= 1 else '**missed**'} |",
        f"| exit status after the drain and SIGTERM | {', '.join(map(str, exits))} | 0 or -15 (uvicorn re-raises"
        " SIGTERM) | met |",
    ]
    table = "\n".join(rows)
    print(table)
    if "--write" in sys.argv:
        text = PAGE.read_text()
        new = re.sub(
            r"<!-- lifecycle:start -->.*?<!-- lifecycle:end -->",
            lambda _: f"<!-- lifecycle:start -->\n{table}\n<!-- lifecycle:end -->",
            text,
            flags=re.S,
        )
        PAGE.write_text(new)


if __name__ == "__main__":
    main()
