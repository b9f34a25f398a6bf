"""What ``infraboot.otel`` costs, in CPU instructions (valgrind's callgrind): noise-free figures.

- ``startup``: marginal instructions per no-op component (define, register, start, stop), with no
  instrumentation, with ``infraboot.otel.instrument()`` on the API's no-op tracer (infraboot's own
  share: the listener and its bookkeeping), and exporting every span to the SDK's in-memory exporter
  through a ``SimpleSpanProcessor`` (the most a span can cost: no batching);
- ``probe``: marginal instructions per health probe (``health(fresh=True)`` of one component),
  without and with probe suppression active (one context attach per probe);
- ``request``: marginal instructions per request of a FastAPI app (``infraboot.fastapi.lifespan``,
  driven in process through ``httpx.ASGITransport``), one route doing a Redis ``GET`` through
  ``ib.RedisClient`` and one a ``select 1`` through ``ib.DatabaseSession`` (SQLite in memory):
  no instrumentation, ``infraboot.otel.instrument()`` with its defaults (the global provider: the
  API's no-op one unless the app set another), and ``instrument(clients=True)`` with the SDK and
  its in-memory exporter -- that one counts the client spans the redis/SQLAlchemy instrumentors
  add (printed per request).

    python benchmarks/bench_otel.py                  # all three, with this Python (needs opentelemetry-sdk)
    python benchmarks/bench_otel.py request          # one of them
    REDIS_URL=redis://127.0.0.1:6379/11 python benchmarks/bench_otel.py request

The request routes use ``REDIS_URL`` (``memory://`` when unset: fakeredis, which ``clients=True``
does not instrument -- it is not redis-py's client -- so set a real server to count the Redis
span). Needs valgrind.
"""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap

import bench_engine

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    what, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    from infraboot import SystemInitializer, component
    if mode == "noop":  # the listener's own work: spans that the API drops at once
        from opentelemetry.trace import NoOpTracerProvider
        import infraboot.otel
        provider = NoOpTracerProvider()
    if mode == "otel":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import infraboot.otel
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))


    def build(count):
        comps = []
        for i in range(count):
            @component(f"c{i}")
            async def c(ctx):
                yield None
            comps.append(c)
        return SystemInitializer(comps, check_interval=None)

    async def main():
        system = build(n if what == "startup" else 1)
        telemetry = None
        if mode != "plain":
            telemetry = infraboot.otel.instrument(system, tracer_provider=provider, pool_metrics=False)
        await system.initialize_all()
        if what == "probe":
            for _ in range(n):
                await system.health(fresh=True)
        await system.shutdown()
        if telemetry is not None:
            telemetry.close()

    asyncio.run(main())
    """
)


REQUEST_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys
    what, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.environ.setdefault("REDIS_URL", "memory://")
    os.environ["DATABASE_URL"] = "sqlite+aiosqlite:///:memory:"
    import httpx
    import sqlalchemy
    from fastapi import FastAPI
    import infraboot.fastapi as ib
    telemetry = None
    if mode == "default":  # the global providers: the API's no-op ones here
        import infraboot.otel
        telemetry = infraboot.otel.instrument()
    if mode == "clients":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import infraboot.otel
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        telemetry = infraboot.otel.instrument(tracer_provider=provider, clients=True)

    app = FastAPI(lifespan=ib.lifespan(["redis", "database"]))

    @app.get("/redis")
    async def get_redis(redis: ib.RedisClient) -> object:
        return await redis.get("key")

    @app.get("/db")
    async def get_db(session: ib.DatabaseSession) -> object:
        return (await session.execute(sqlalchemy.text("select 1"))).scalar()

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                await client.get(f"/{what}")  # warm: the first request builds what later ones reuse
                if mode == "clients":
                    exporter.clear()
                for _ in range(n):
                    response = await client.get(f"/{what}")
                    assert response.status_code == 200, response.text
                if mode == "clients" and n:
                    spans = [s for s in exporter.get_finished_spans() if not s.name.startswith("infraboot.")]
                    print(f"client spans per request: {len(spans) / n:g}", file=sys.stderr)
        if telemetry is not None:
            telemetry.close()

    asyncio.run(main())
    """
)


def instructions(args: list[str]) -> int:
    """Instructions executed by this Python running *args* (bench_engine's counter)."""
    return bench_engine.instructions(sys.executable, args)


def marginal(path: str, what: str, mode: str, lo: int, hi: int) -> float:
    return (instructions([path, what, mode, str(hi)]) - instructions([path, what, mode, str(lo)])) / (hi - lo)


def requests(path: str) -> None:
    for route in ("redis", "db"):
        per = {mode: marginal(path, route, mode, 20, 120) for mode in ("plain", "default", "clients")}
        print(
            f"request ({route}): instructions per request: plain {per['plain']:,.0f}, "
            f"instrument() {per['default']:,.0f} (x{per['default'] / per['plain']:.2f}), "
            f"instrument(clients=True), SDK + in-memory export {per['clients']:,.0f} "
            f"(x{per['clients'] / per['plain']:.2f})"
        )


def main() -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(SCRIPT)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as r:
        r.write(REQUEST_SCRIPT)
    try:
        instructions([f.name, "startup", "otel", "1"])  # warm the bytecode cache
        wanted = sys.argv[1:] or ["startup", "probe", "request"]
        for what in wanted:
            if what == "request":
                requests(r.name)
                continue
            lo, hi = (100, 200) if what == "startup" else (200, 400)
            per = {mode: marginal(f.name, what, mode, lo, hi) for mode in ("plain", "noop", "otel")}
            print(
                f"{what}: instructions per {'component' if what == 'startup' else 'probe'}: "
                f"plain {per['plain']:,.0f}, no-op tracer {per['noop']:,.0f} (x{per['noop'] / per['plain']:.2f}), "
                f"SDK + in-memory export {per['otel']:,.0f} (x{per['otel'] / per['plain']:.2f})"
            )
    finally:
        os.unlink(f.name)
        os.unlink(r.name)


if __name__ == "__main__":
    main()
