"""The benchmark table: ``nox -s bench`` (or ``python benchmarks/run.py [--write]``).

Every figure is a ratio of two sides measured in the same run, alternating, medians of
repeated runs, with the absolute medians beside it. ``--write`` replaces the table in
docs/performance.md. Not part of the test suite; CI does not run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))  # tests.servers: the fault-injecting proxy

import bench_core

import infraboot
from infraboot import SystemInitializer

ROOT = Path(__file__).parent.parent
PY = sys.executable
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE = os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": ""}  # production imports use cached bytecode
ENV.pop("PYTHONDONTWRITEBYTECODE")
Row = tuple[str, str, str, str]  # measure, value, target, verdict


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


# -- process wall time -------------------------------------------------------------------------------


def wall(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - t0


def alternate(sides: dict[str, list[str]], rounds: int = 40) -> dict[str, float]:
    """Median wall time of each command, run in turn, after a warm-up (bytecode written)."""
    samples: dict[str, list[float]] = {k: [] for k in sides}
    for args in sides.values():
        for _ in range(3):
            wall(args)
    for _ in range(rounds):
        for key, args in sides.items():
            samples[key].append(wall(args))
    return {k: statistics.median(v) for k, v in samples.items()}


def installed(module: str) -> bool:
    return subprocess.run([PY, "-c", f"import {module}"], check=False, env=ENV, capture_output=True).returncode == 0


def import_cost() -> list[Row]:
    sides = {
        "asyncio": [PY, "-c", "import asyncio"],
        "infraboot": [PY, "-c", "import infraboot"],
        "infraboot+use": [PY, "-c", "import infraboot; infraboot.SystemInitializer; infraboot.ensure_initialized"],
    }
    for other in ("svcs", "dishka"):
        if installed(other):
            sides[other] = [PY, "-c", f"import {other}"]
    t = alternate(sides)
    base = t["asyncio"]
    rows: list[Row] = []
    ratio = t["infraboot"] / base
    rows.append(
        (
            "import cost: `import infraboot` ÷ `import asyncio`",
            f"{t['infraboot'] * 1e3:.1f} / {base * 1e3:.1f} ms = {ratio:.2f}",
            "≤ 1.15",
            verdict(ratio <= 1.15),
        )
    )
    used = t["infraboot+use"] / base
    rows.append(
        (
            "… with the engine loaded (`SystemInitializer`, `ensure_initialized`)",
            f"{t['infraboot+use'] * 1e3:.1f} ms = {used:.2f}",
            "(context)",
            "",
        )
    )
    for other in ("svcs", "dishka"):
        if other in t:
            rows.append(
                (
                    f"… `import {other}` ÷ `import asyncio`",
                    f"{t[other] * 1e3:.1f} ms = {t[other] / base:.2f}",
                    "(context)",
                    "",
                )
            )
    return rows


def cli_cost() -> list[Row]:
    script = str(Path(PY).parent / "infraboot")
    t = alternate(
        {
            "pass": [PY, "-c", "pass"],
            "script": [script, "--version"],
            "module": [PY, "-m", "infraboot", "--version"],
            "re": [PY, "-c", "import re"],
        }
    )
    base = t["pass"]
    return [
        (
            "CLI: `python -m infraboot --version` ÷ `python -c pass`",
            f"{t['module'] * 1e3:.1f} / {base * 1e3:.1f} ms = {t['module'] / base:.2f}",
            "≤ 1.3",
            verdict(t["module"] / base <= 1.3),
        ),
        (
            "… the `infraboot` console script (pip's wrapper imports `re`: "
            f"`python -c 'import re'` alone is {t['re'] / base:.2f})",
            f"{t['script'] * 1e3:.1f} ms = {t['script'] / base:.2f}",
            "≤ 1.3",
            verdict(t["script"] / base <= 1.3),
        ),
    ]


# -- in-process ----------------------------------------------------------------------------------------


async def core() -> list[Row]:
    per = await bench_core.orchestration_us_per_component()
    dag, ratio = await bench_core.dag_ratio()
    rows: list[Row] = [
        ("orchestration: 1,000 no-op components", f"{per:.1f} µs/component", "≤ 30 µs", verdict(per <= 30)),
        (
            "60 × 20 ms components, depth 3 ÷ critical path",
            f"{dag * 1e3:.1f} / 60 ms = {ratio:.3f}",
            "≤ 1.10",
            verdict(ratio <= 1.10),
        ),
    ]
    real = await bench_core.real_startup()
    if real is not None:
        rows.append(
            (
                "real startup: `ensure_initialized(['redis','database'])` ÷ hand-written `gather`",
                f"{real[0]:.1f} ms = {real[1]:.2f}",
                "≤ 1.20",
                verdict(real[1] <= 1.20),
            )
        )
    return rows


async def ns_per_await(call: Callable[[], Awaitable[object]], n: int = 100_000) -> float:
    """Best of five: nanoseconds per ``await call()``, after one warm-up call."""
    await call()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            await call()
        best = min(best, (time.perf_counter() - t0) / n * 1e9)
    return best


async def accessors() -> list[Row]:
    system = SystemInitializer(bench_core.noop_components(1))
    await system.initialize_all()
    plain = {"c0": 0}
    n = 500_000

    def best(fn: Callable[[], object]) -> float:
        return min(timeit.repeat(fn, number=n, repeat=7)) / n * 1e9

    t_dict = best(lambda: plain["c0"])
    t_get = best(lambda: system.get("c0"))
    await system.shutdown()
    os.environ.setdefault("REDIS_URL", "memory://")
    await infraboot.ensure_initialized(["redis"])
    t_redis = best(infraboot.get_redis)
    await infraboot.shutdown()
    rows: list[Row] = [
        (
            "hot accessor: `system.get(name)` ÷ dict lookup",
            f"{t_get:.0f} / {t_dict:.0f} ns = {t_get / t_dict:.2f}",
            "≤ 3.0",
            verdict(t_get / t_dict <= 3.0),
        ),
        (
            "… `infraboot.get_redis()` ÷ dict lookup",
            f"{t_redis:.0f} ns = {t_redis / t_dict:.2f}",
            "≤ 3.0",
            verdict(t_redis / t_dict <= 3.0),
        ),
    ]
    with contextlib.suppress(ImportError):
        import svcs

        registry = svcs.Registry()
        registry.register_value(int, 0)
        container = svcs.Container(registry)
        t_svcs = await ns_per_await(lambda: container.aget(int))
        rows.append(("… svcs `await Container.aget(T)` (context)", f"{t_svcs:.0f} ns = {t_svcs / t_dict:.1f}", "", ""))
    with contextlib.suppress(ImportError):
        import dishka

        provider = dishka.Provider(scope=dishka.Scope.APP)
        provider.provide(lambda: 0, provides=int)
        dcontainer = dishka.make_async_container(provider)
        t_dishka = await ns_per_await(lambda: dcontainer.get(int))
        await dcontainer.close()
        rows.append(
            ("… dishka `await container.get(T)` (context)", f"{t_dishka:.0f} ns = {t_dishka / t_dict:.1f}", "", "")
        )
    return rows


async def time_to_degrade() -> list[Row]:
    from tests.servers import TcpProxy

    from infraboot._components._redis import RedisComponent

    proxy = TcpProxy(6379)
    proxy.set_mode("blackhole")
    url = f"redis://{proxy.url_host}/0"
    optional, required = [], []
    try:
        for _ in range(5):
            system = SystemInitializer(
                [RedisComponent(infraboot.RedisSettings(url=url, required=False, connect_timeout=0.5))],
                check_interval=None,
                recovery=False,
            )
            t0 = time.perf_counter()
            await system.initialize_all()
            optional.append(time.perf_counter() - t0)
            await system.shutdown()
            budget = 1.0
            system = SystemInitializer(
                [RedisComponent(infraboot.RedisSettings(url=url, connect_timeout=0.5, max_retries=10))],
                startup_timeout=budget,
                check_interval=None,
            )
            t0 = time.perf_counter()
            with contextlib.suppress(infraboot.StartupError):
                await system.initialize_all()
            required.append((time.perf_counter() - t0) / budget)
            await system.shutdown()
    finally:
        proxy.close()
    o, r = statistics.median(optional), statistics.median(required)
    return [
        (
            "time to degrade: optional Redis blackholed, connect timeout 0.5 s",
            f"{o:.3f} s",
            "≤ 0.6 s",
            verdict(o <= 0.6),
        ),
        ("… required: time to `StartupError` ÷ `startup_timeout` (1 s)", f"{r:.3f}", "≤ 1.05", verdict(r <= 1.05)),
    ]


# -- readiness under load -------------------------------------------------------------------------------


async def _load(port: int, path: str, connections: int, seconds: float) -> tuple[float, float]:
    """Keep-alive HTTP/1.1 GETs on *connections* sockets for *seconds*: (requests/s, p99 latency in ms)."""
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE)[1])  # type: ignore[index]
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    took = time.perf_counter() - t0
    latencies.sort()
    return len(latencies) / took, latencies[int(len(latencies) * 0.99)] * 1e3


async def readiness_under_load() -> list[Row]:
    from tests.servers import free_port

    port = free_port()
    app_code = (
        "import infraboot.fastapi as ib\n"
        "from fastapi import FastAPI\n"
        "from fastapi.responses import PlainTextResponse\n"
        "app = FastAPI(lifespan=ib.lifespan(['redis', 'database']))\n"
        "app.include_router(ib.health_router())\n"
        "@app.get('/trivial')\n"
        "async def trivial():\n"
        "    return PlainTextResponse('ok')\n"
    )
    appdir = ROOT / "benchmarks" / ".app"
    appdir.mkdir(exist_ok=True)
    (appdir / "bench_app.py").write_text(app_code)
    env = {
        **ENV,
        "REDIS_URL": REDIS,
        "DATABASE_URL": DATABASE,
        "INFRABOOT_CHECK_TTL": "1",
        "INFRABOOT_CHECK_INTERVAL": "off",
    }
    proc = subprocess.Popen(
        [
            PY,
            "-m",
            "uvicorn",
            "--app-dir",
            str(appdir),
            "bench_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            await asyncio.sleep(0.05)
        await _load(port, "/trivial", 20, 1.0)  # warm-up
        probes_before = await _probe_count(port)
        results: dict[str, list[tuple[float, float]]] = {"/readyz": [], "/trivial": []}
        t0 = time.perf_counter()
        for _ in range(3):
            for path in results:
                results[path].append(await _load(port, path, 200, 3.0))
        elapsed = time.perf_counter() - t0
        probes = await _probe_count(port) - probes_before
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    ready = statistics.median(r for r, _ in results["/readyz"])
    trivial = statistics.median(r for r, _ in results["/trivial"])
    p99 = statistics.median(p for _, p in results["/readyz"])
    per_component = probes / 2 / elapsed  # two components
    return [
        (
            "readiness under load: `/readyz` ÷ trivial endpoint (uvicorn, 200 connections)",
            f"{ready:.0f} / {trivial:.0f} req/s = {ready / trivial:.2f}",
            "≥ 0.80",
            verdict(ready / trivial >= 0.80),
        ),
        ("… `/readyz` p99 latency", f"{p99:.1f} ms", "(context)", ""),
        (
            "… backend probes per component per second (cache TTL 1 s)",
            f"{per_component:.2f}",
            "≤ 1",
            verdict(per_component <= 1.0),
        ),
    ]


async def _probe_count(port: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    body = (await reader.read()).decode()
    writer.close()
    return sum(float(m) for m in re.findall(r"infraboot_check_duration_seconds_count\{[^}]*\} ([0-9.e+]+)", body))


# -- memory and server-side connections -----------------------------------------------------------------

MEMORY_OURS = """
import asyncio, os, resource, infraboot
os.environ.update(REDIS_URL={redis!r}, DATABASE_URL={db!r}, REDIS_WARMUP_CONNECTIONS="1", DATABASE_WARMUP_CONNECTIONS="1")
async def main():
    await infraboot.ensure_initialized(["redis", "database"])
    await infraboot.shutdown()
asyncio.run(main())
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
MEMORY_HAND = """
import asyncio, resource
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
async def main():
    client = aioredis.Redis.from_url({redis!r})
    engine = create_async_engine({db!r})
    async def db():
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    await asyncio.gather(client.ping(), db())
    await client.aclose()
    await engine.dispose()
asyncio.run(main())
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss(code: str) -> int:
    out = subprocess.run(
        [PY, "-c", code.format(redis=REDIS, db=DATABASE)], check=True, env=ENV, capture_output=True, text=True, cwd=ROOT
    )
    return int(out.stdout.strip().splitlines()[-1])


async def memory_and_connections() -> list[Row]:
    ours, hand = [], []
    for _ in range(5):
        ours.append(peak_rss(MEMORY_OURS))
        hand.append(peak_rss(MEMORY_HAND))
    o, h = statistics.median(ours), statistics.median(hand)
    import asyncpg
    import redis.asyncio as aioredis

    from infraboot._components._database import DatabaseComponent
    from infraboot._components._redis import RedisComponent

    warmup = 3
    name = f"infraboot-bench-{os.getpid()}"
    probe_redis = aioredis.Redis.from_url(REDIS)
    pg = await asyncpg.connect(DATABASE.replace("postgresql+asyncpg://", "postgresql://"))

    async def counts() -> tuple[int, int]:
        clients = int((await probe_redis.info("clients"))["connected_clients"]) - 1
        rows = await pg.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name)
        return clients, int(rows)

    base = await counts()
    system = SystemInitializer(
        [
            RedisComponent(infraboot.RedisSettings(url=REDIS, warmup_connections=warmup)),
            DatabaseComponent(
                infraboot.DatabaseSettings(url=DATABASE, warmup_connections=warmup, application_name=name)
            ),
        ],
        check_interval=None,
    )
    await system.initialize_all()
    up = await counts()
    await system.shutdown()
    down = await counts()
    await probe_redis.aclose()
    await pg.close()
    opened = (up[0] - base[0], up[1] - base[1])
    return [
        (
            "memory: peak RSS, infraboot starting Redis + database ÷ hand-written",
            f"{o / 1024:.1f} / {h / 1024:.1f} MiB = {o / h:.3f}",
            "≤ 1.10",
            verdict(o / h <= 1.10),
        ),
        (
            f"server-side connections after startup (warmup {warmup}) / after shutdown, Redis and PostgreSQL",
            f"{opened[0]}, {opened[1]} / {down[0] - base[0]}, {down[1] - base[1]}",
            f"{warmup}, {warmup} / 0, 0",
            verdict(opened == (warmup, warmup) and down == base),
        ),
    ]


# -- the table --------------------------------------------------------------------------------------------


async def main() -> list[Row]:
    rows: list[Row] = []
    rows += import_cost()
    rows += cli_cost()
    rows += await core()
    rows += await accessors()
    rows += await time_to_degrade()
    rows += await readiness_under_load()
    rows += await memory_and_connections()
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| measure | value | target | |", "|---|---|---|---|"]
    lines += [f"| {m} | {v} | {t} | {ok} |" for m, v, t, ok in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    result = table(asyncio.run(main()))
    print(result)
    if "--write" in sys.argv:
        doc = ROOT / "docs" / "performance.md"
        text = doc.read_text()
        start, end = "<!-- bench:start -->", "<!-- bench:end -->"
        before, _, rest = text.partition(start)
        _, _, after = rest.partition(end)
        doc.write_text(f"{before}{start}\n{result}\n{end}{after}")
