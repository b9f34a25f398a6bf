"""Herd simulation: 1,000 clients recovering from the same outage, through infraboot's real retry loop.

No servers. Every client runs :func:`infraboot._engine._retry.retry` -- the loop startup and
background recovery use, with its full-jitter backoff (the first wait drawn from
``[0, backoff_initial]``, then doubling, capped: ``_engine._backoff.backoff``) -- in an event loop
whose clock is virtual: a sleep advances the clock instead of waiting, so 1,000 clients
and a 10 s outage take a fraction of a second and each attempt's time is exact.

All clients lose the server at t = 0 (the worst case: they notice together) and it comes
back at t = ``--outage``. Reported per 100 ms bucket: the reconnects (each client's first
successful attempt, what hits the recovering server) and every attempt during the outage.
For comparison the same clients retry with plain exponential backoff and no jitter.

``python benchmarks/bench_herd.py [--clients 1000] [--outage 10] [--write]``; ``--write``
replaces the section between ``<!-- herd:start -->`` and ``<!-- herd:end -->`` of
docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import selectors
import sys
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from infraboot._engine._component import Component
from infraboot._engine._retry import RetryPolicy, retry

__all__ = ["HerdResult", "VirtualClockLoop", "simulate"]

ROOT = Path(__file__).parent.parent
BUCKET = 0.1
TARGET = 0.05  # the busiest 100 ms bucket holds at most 5 % of the reconnects
SEEDS = 20


class _NoWaitSelector(selectors.SelectSelector):
    """Never blocks: a wait for the next timer moves the loop's virtual clock there instead."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0:
            self._loop.now += timeout
        return super().select(0)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is virtual and jumps to the next timer whenever nothing is ready."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(selector=_NoWaitSelector(self))

    def time(self) -> float:
        return self.now


class HerdResult:
    """Attempt times of every client: all attempts, and the time of each client's reconnect."""

    def __init__(self, attempts: list[float], reconnects: list[float], outage: float) -> None:
        self.attempts = attempts
        self.reconnects = reconnects
        self.outage = outage

    def busiest(self, times: list[float]) -> tuple[int, int]:
        """(bucket index, count) of the fullest 100 ms bucket of *times*."""
        counts = Counter(int(t / BUCKET) for t in times)
        bucket, count = max(counts.items(), key=lambda kv: (kv[1], -kv[0]))
        return bucket, count

    @property
    def reconnect_share(self) -> float:
        return self.busiest(self.reconnects)[1] / len(self.reconnects)

    @property
    def spread(self) -> float:
        """Seconds from the server's return to the last client's reconnect."""
        return max(self.reconnects) - self.outage


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    loop = VirtualClockLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def simulate(clients: int, outage: float, policy: RetryPolicy, *, jitter: bool = True) -> HerdResult:
    """*clients* retry loops that fail until the virtual clock reaches *outage*."""
    attempts: list[float] = []
    reconnects: list[float] = []

    async def client() -> None:
        loop = asyncio.get_running_loop()

        async def attempt(number: int) -> None:
            now = loop.time()
            attempts.append(now)
            if now < outage:
                raise ConnectionRefusedError(111, "Connection refused")
            reconnects.append(now)

        if jitter:
            await retry(attempt, policy=policy, retryable=lambda exc: True, forever=True)
        else:  # the comparison: the same exponential waits, no randomness
            n = 0
            while True:
                try:
                    await attempt(n)
                    return
                except ConnectionRefusedError:
                    await asyncio.sleep(min(policy.backoff_max, policy.backoff_initial * 2**n))
                    n += 1

    async def main() -> None:
        await asyncio.gather(*(client() for _ in range(clients)))

    _run(main)
    return HerdResult(attempts, reconnects, outage)


def histogram(result: HerdResult, width: int = 50) -> str:
    """Reconnects per 100 ms bucket after the server's return, as text bars."""
    counts = Counter(int((t - result.outage) / BUCKET) for t in result.reconnects)
    top = max(counts.values())
    lines = ["after return  reconnects"]
    for bucket in range(max(counts) + 1):
        n = counts.get(bucket, 0)
        bar = "#" * max(1 if n else 0, round(n / top * width))
        lines.append(f"{bucket * BUCKET:5.1f} s      {n:4d} {bar}")
    return "\n".join(lines)


def report(clients: int, outage: float, seed: int) -> tuple[str, bool]:
    # The backoff every component has unless it sets its own.
    policy = RetryPolicy(Component.retries, Component.backoff_initial, Component.backoff_max)
    random.seed(seed)
    jittered = simulate(clients, outage, policy)
    plain = simulate(clients, outage, policy, jitter=False)
    shares = []
    for other in (3.0, 30.0):
        random.seed(seed)
        shares.append((other, simulate(clients, other, policy).reconnect_share))
    seeds = []
    for other_seed in range(seed, seed + SEEDS):
        random.seed(other_seed)
        seeds.append(simulate(clients, outage, policy).reconnect_share)
    seeds.sort()
    random.seed(seed)
    wider = simulate(clients, outage, RetryPolicy(policy.retries, policy.backoff_initial, 2 * policy.backoff_max))
    share = jittered.reconnect_share
    ok = share <= TARGET
    during = [t for t in jittered.attempts if t < outage]
    b0, n0 = jittered.busiest(during)
    rows = [
        "| measure | value | target | |",
        "|---|---|---|---|",
        f"| {clients:,}-client herd, {outage:g} s outage: busiest 100 ms bucket of reconnects (full jitter) | "
        f"{jittered.busiest(jittered.reconnects)[1]} = {share:.1%} | ≤ 5 % | {'met' if ok else '**missed**'} |",
        *(
            f"| … the same, {o:g} s outage | {s:.1%} | ≤ 5 % | {'met' if s <= TARGET else '**missed**'} |"
            for o, s in shares
        ),
        f"| … over {SEEDS} seeds: median / worst | {seeds[len(seeds) // 2]:.1%} / {seeds[-1]:.1%} | ≤ 5 % | "
        f"{'met' if seeds[-1] <= TARGET else '**missed** (worst)'} |",
        f"| … reconnects spread over (server back → last client back) | {jittered.spread:.2f} s | (context) | |",
        f"| … with `backoff_max={2 * policy.backoff_max:g}` | {wider.reconnect_share:.1%} | (context) | |",
        f"| … no jitter (plain exponential), busiest bucket of reconnects | "
        f"{plain.busiest(plain.reconnects)[1]} = {plain.reconnect_share:.1%} | (context) | |",
        f"| … attempts during the outage, busiest bucket ({b0 * BUCKET:.1f}–{(b0 + 1) * BUCKET:.1f} s: "
        f"the first retry, drawn from [0, backoff_initial]) | {n0} of {len(during)} = {n0 / len(during):.1%} "
        "| (context) | |",
    ]
    text = (
        "\n".join(rows)
        + f"\n\nReconnects per 100 ms after the server came back ({clients:,} clients, {outage:g} s outage, "
        f"backoff {policy.backoff_initial:g} s → {policy.backoff_max:g} s, full jitter, seed {seed}):\n\n"
        "```text\n" + histogram(jittered) + "\n```"
    )
    return text, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--outage", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    text, ok = report(args.clients, args.outage, args.seed)
    print(text)
    if args.write:
        doc = ROOT / "docs" / "performance.md"
        page = doc.read_text()
        start, end = "<!-- herd:start -->", "<!-- herd:end -->"
        before, _, rest = page.partition(start)
        _, found, after = rest.partition(end)
        if not found:
            print(f"{doc}: no {start} ... {end} section; add one", file=sys.stderr)
            return 2
        doc.write_text(f"{before}{start}\n{text}\n{end}{after}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
