"""Runs the flapping soak: the app under uvicorn, steady load, and outages on a schedule.

:func:`run_soak` owns everything it starts: a redis-server (killed with SIGKILL and restarted
on the same port), a :class:`TcpProxy` between the app and the real PostgreSQL (cut in
``reset``, ``refuse`` and ``blackhole`` modes in turn, then restored), the uvicorn process,
and the load: a few httpx workers per route at a bounded rate, a readiness sampler, a stats
sampler and a server-side connection counter. It records what happened, with monotonic
timestamps of this process; :mod:`tests.soak.verdict` judges the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.servers import AppProcess, RedisServer, TcpProxy, free_port

from .app import BACKOFF_MAX

__all__ = [
    "CANARY",
    "Outage",
    "Reply",
    "SoakConfig",
    "SoakRecord",
    "app_environment",
    "run_soak",
    "schedule",
]

#: The password of the owned redis-server (and of the database URL): it must never show anywhere.
CANARY = "s3cr3t-canary"
DB_MODES = ("reset", "refuse", "blackhole")


@dataclass(frozen=True)
class SoakConfig:
    """How long, how hard and how often things break. Times in seconds."""

    duration: float = 60.0
    warmup: float = 5.0  # both up, load running, before the first outage
    settle: float = 7.0  # both up at the end, before the final figures
    redis_up: float = 4.5
    redis_down: float = 2.5
    db_up: float = 5.0
    db_down: float = 2.5
    db_offset: float = 2.0  # the database's cycle starts this much later than Redis's
    workers: int = 3  # per route
    rate: float = 40.0  # requests per second per worker, at most
    readiness_every: float = 0.2
    stats_every: float = 2.0
    check_interval: float = 0.5
    check_timeout: float = 0.5
    connect_timeout: float = 1.0
    redis_max_connections: int = 8
    db_pool_size: int = 4
    db_max_overflow: int = 2
    request_timeout: float = 10.0

    @property
    def detect(self) -> float:
        """An outage shows in readiness within this long: the next monitor probe, its timeout, a margin."""
        return self.check_interval + self.check_timeout + 0.5

    @property
    def grace(self) -> float:
        """A restored server serves requests again within this long: one recovery backoff, a probe, a margin."""
        return BACKOFF_MAX + self.check_timeout + 0.5


@dataclass
class Outage:
    """One outage: *component* went down at *down* (just before the kill or the cut) and was back at *up*."""

    component: str  # "redis" | "database"
    mode: str  # "kill" for Redis; the proxy's mode for the database
    down: float
    restoring: float = float("inf")  # the restart (or the restore) began: the server may answer from here on
    up: float = float("inf")  # the restart (or the restore) call returned


@dataclass(frozen=True)
class Reply:
    """One request: when it was sent and answered, and the HTTP status (0: no answer, see *error*)."""

    route: str  # "redis" | "database" | "readiness" | "stats"
    start: float
    end: float
    status: int
    error: str | None = None
    body: Any = None  # readiness only: the JSON body


@dataclass
class SoakRecord:
    """Everything the soak saw."""

    config: SoakConfig
    t0: float = 0.0
    outages: list[Outage] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    stats: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (time, /soak/stats) under load
    connections: list[tuple[float, int, int]] = field(default_factory=list)  # (time, redis, postgres) under load
    baseline: dict[str, Any] = field(default_factory=dict)  # /soak/stats after warm-up, load paused
    final: dict[str, Any] = field(default_factory=dict)  # /soak/stats after the settle, load paused
    final_connections: tuple[int, int] = (-1, -1)  # server-side (redis, postgres), load paused
    after_shutdown: tuple[int, int] = (-1, -1)  # server-side (redis, postgres) once the app has exited
    exit_status: int | None = None
    loop_errors: list[str] = field(default_factory=list)  # exceptions that ended a worker or sampler early
    shutdown_seconds: float = 0.0
    bodies: list[str] = field(default_factory=list)  # /health, /metrics and /soak/stats texts, for the canary
    output: str = ""  # the app's log
    shutdown_output: str = ""  # what it logged from SIGTERM to its exit
    app_name: str = ""


def schedule(config: SoakConfig) -> list[tuple[str, str, float, float]]:
    """The planned outages, ``(component, mode, down, up)`` in seconds after the start, in the chaos phase."""
    end = config.duration - config.settle
    plan: list[tuple[str, str, float, float]] = []
    t = config.warmup
    while t + config.redis_down <= end:
        plan.append(("redis", "kill", t, t + config.redis_down))
        t += config.redis_down + config.redis_up
    t, n = config.warmup + config.db_offset, 0
    while t + config.db_down <= end:
        plan.append(("database", DB_MODES[n % len(DB_MODES)], t, t + config.db_down))
        t += config.db_down + config.db_up
        n += 1
    return sorted(plan, key=lambda p: p[2])


def with_password(url: str, password: str) -> str:
    """*url* with *password* when it has none (PostgreSQL's trust authentication ignores it)."""
    parts = urlsplit(url)
    if parts.password is not None or parts.username is None:
        return url
    netloc = f"{parts.username}:{quote(password, safe='')}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def app_environment(config: SoakConfig, redis_url: str, database_url: str, name: str) -> dict[str, str]:
    """The app's environment: ours without any REDIS_* / DATABASE_* / INFRABOOT_* variable, then the soak's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "INFRABOOT_"))}
    return env | {
        "REDIS_URL": redis_url,
        "REDIS_REQUIRED": "false",
        "REDIS_CONNECT_TIMEOUT": str(config.connect_timeout),
        "REDIS_CHECK_TIMEOUT": str(config.check_timeout),
        "REDIS_SOCKET_TIMEOUT": str(config.connect_timeout),
        "REDIS_MAX_CONNECTIONS": str(config.redis_max_connections),
        "REDIS_CLIENT_OPTIONS": f'{{"client_name": "{name}"}}',
        "DATABASE_URL": database_url,
        "DATABASE_REQUIRED": "false",
        "DATABASE_CONNECT_TIMEOUT": str(config.connect_timeout),
        "DATABASE_CHECK_TIMEOUT": str(config.check_timeout),
        "DATABASE_POOL_SIZE": str(config.db_pool_size),
        "DATABASE_MAX_OVERFLOW": str(config.db_max_overflow),
        "DATABASE_POOL_TIMEOUT": str(config.request_timeout / 2),
        "DATABASE_APPLICATION_NAME": name,
        "INFRABOOT_CHECK_INTERVAL": str(config.check_interval),
        "INFRABOOT_CHECK_TTL": str(config.check_interval / 2),
        "INFRABOOT_HEALTH_TIMEOUT": str(config.check_timeout),
        "INFRABOOT_SHUTDOWN_TIMEOUT": "10",
    }


class _Counter:
    """Server-side connections of the app: Redis ``CLIENT LIST`` by client name, ``pg_stat_activity`` by application."""

    def __init__(self, redis: aioredis.Redis, pg: asyncpg.Connection, name: str) -> None:
        self.redis, self.pg, self.name = redis, pg, name

    async def redis_count(self) -> int:
        try:
            clients = await self.redis.client_list()
        except (aioredis.ConnectionError, OSError):
            return 0  # the server is down (killed): nobody is connected to it
        return sum(1 for c in clients if c.get("name") == self.name)

    async def pg_count(self) -> int:
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        return int(await self.pg.fetchval(query, self.name))

    async def both(self) -> tuple[int, int]:
        return await self.redis_count(), await self.pg_count()


class _Load:
    """The clients: workers per route at a bounded rate, samplers; all pause together."""

    def __init__(self, config: SoakConfig, base: str, record: SoakRecord, counter: _Counter) -> None:
        self.config, self.record, self.counter = config, record, counter
        # One client (its own connections) per route: uvicorn closes a connection after an exception in the
        # app, and a request of another route must not inherit that connection and its ReadError.
        # Idle keep-alive connections expire well before uvicorn's 5 s, or a request may race the server's close.
        limits = httpx.Limits(max_connections=config.workers, keepalive_expiry=2.0)
        self.clients = {
            route: httpx.AsyncClient(base_url=base, timeout=config.request_timeout, limits=limits)
            for route in ("redis", "database", "readiness", "stats")
        }
        self.client = self.clients["stats"]
        self.go = asyncio.Event()
        self.inflight = 0
        self.stopped = False

    async def _paced(self, every: float, step: Callable[[], Awaitable[None]]) -> None:
        while not self.stopped:
            await self.go.wait()
            if self.stopped:
                return
            began = time.monotonic()
            self.inflight += 1
            try:
                await step()
            finally:
                self.inflight -= 1
            await asyncio.sleep(max(0.0, began + every - time.monotonic()))  # pacing: the rate bound

    async def _request(self, route: str, path: str) -> None:
        start = time.monotonic()
        try:
            response = await self.clients[route].get(path)
        except httpx.HTTPError as exc:
            self.record.replies.append(Reply(route, start, time.monotonic(), 0, type(exc).__name__))
            return
        body = response.json() if route == "readiness" and response.content else None
        self.record.replies.append(Reply(route, start, time.monotonic(), response.status_code, body=body))

    async def _stats(self) -> None:
        start = time.monotonic()
        try:
            response = await self.client.get("/soak/stats")
        except httpx.HTTPError as exc:  # the stats route needs no component: the verdict counts this as a failure
            self.record.replies.append(Reply("stats", start, time.monotonic(), 0, type(exc).__name__))
            return
        self.record.replies.append(Reply("stats", start, time.monotonic(), response.status_code))
        if response.status_code == 200:
            self.record.stats.append((time.monotonic(), response.json()))
        self.record.connections.append((time.monotonic(), *(await self.counter.both())))

    def loops(self) -> list[Coroutine[Any, Any, None]]:
        """The workers of both routes, the readiness sampler and the stats sampler, to run as tasks."""
        cfg = self.config
        out = [
            self._paced(1 / cfg.rate, functools.partial(self._request, route, path))
            for route, path in (("redis", "/soak/redis"), ("database", "/soak/db"))
            for _ in range(cfg.workers)
        ]
        out.append(self._paced(cfg.readiness_every, functools.partial(self._request, "readiness", "/readyz")))
        out.append(self._paced(cfg.stats_every, self._stats))
        return out

    async def pause(self) -> None:
        """Stop sending and wait for every request in flight to finish."""
        self.go.clear()
        deadline = time.monotonic() + self.config.request_timeout + 5
        while self.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.inflight:
            msg = f"{self.inflight} requests still in flight {self.config.request_timeout + 5}s after the pause"
            raise AssertionError(msg)


async def _at(t0: float, offset: float) -> None:
    await asyncio.sleep(max(0.0, t0 + offset - time.monotonic()))  # the outage schedule, not synchronisation


async def _chaos(
    plan: list[tuple[str, str, float, float]], t0: float, redis: RedisServer, proxy: TcpProxy, record: SoakRecord
) -> None:
    """Carry out *plan*: each component's outages in order, the two components independently."""

    async def run(component: str) -> None:
        for comp, mode, down, up in plan:
            if comp != component:
                continue
            await _at(t0, down)
            outage = Outage(comp, mode, time.monotonic())
            record.outages.append(outage)
            if comp == "redis":
                await asyncio.to_thread(redis.kill)
            else:
                await asyncio.to_thread(proxy.set_mode, mode)  # type: ignore[arg-type]
            await _at(t0, up)
            outage.restoring = time.monotonic()
            if comp == "redis":
                await asyncio.to_thread(redis.start)  # returns once it listens again
            else:
                await asyncio.to_thread(proxy.set_mode, "forward")
            outage.up = time.monotonic()

    await asyncio.gather(run("redis"), run("database"))


async def _wait_for(what: str, check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            msg = f"{what}: not true after {timeout}s"
            raise AssertionError(msg)
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _servers(workdir: Path, database_url: str) -> AsyncIterator[tuple[RedisServer, TcpProxy, asyncpg.Connection]]:
    redis = RedisServer(workdir, password=CANARY)
    redis.start()
    parts = urlsplit(database_url)
    proxy = TcpProxy(parts.port or 5432, target_host=parts.hostname or "127.0.0.1")
    try:
        pg = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            yield redis, proxy, pg
        finally:
            await pg.close()
    finally:
        proxy.close()
        redis.kill()


async def run_soak(config: SoakConfig, workdir: Path, database_url: str) -> SoakRecord:
    """Run the soak for ``config.duration`` seconds against the PostgreSQL at *database_url* (direct)."""
    record = SoakRecord(config)
    name = record.app_name = f"infraboot-soak-{os.getpid()}-{free_port()}"
    async with _servers(workdir, database_url) as (redis_server, proxy, pg):
        app_db_url = proxy.url_for(with_password(database_url, CANARY))
        env = app_environment(config, redis_server.url(CANARY), app_db_url, name)
        port = free_port()
        uvicorn = [sys.executable, "-m", "uvicorn", "tests.soak.app:app", "--host", "127.0.0.1", "--port", str(port)]
        uvicorn += ["--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "5"]
        app = AppProcess(uvicorn, env=env, workdir=workdir, port=port)
        probe = aioredis.Redis.from_url(
            redis_server.url(CANARY), socket_timeout=2, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        counter = _Counter(probe, pg, name)
        load = _Load(config, f"http://127.0.0.1:{port}", record, counter)
        try:
            await asyncio.to_thread(app.wait_listening, 60)
            runners = [asyncio.create_task(loop) for loop in load.loops()]
            record.t0 = t0 = time.monotonic()
            load.go.set()
            try:
                await _at(t0, config.warmup - 1.0)
                await load.pause()
                record.baseline = (await load.client.get("/soak/stats")).json()
                load.go.set()
                await _chaos(schedule(config), t0, redis_server, proxy, record)
                await _at(t0, config.duration)
                await load.pause()
                record.final = (await load.client.get("/soak/stats")).json()
                record.final_connections = await counter.both()
                for path in ("/health", "/metrics", "/soak/stats"):
                    record.bodies.append((await load.client.get(path)).text)
            finally:
                load.stopped = True
                load.go.set()
                for result in await asyncio.gather(*runners, return_exceptions=True):
                    if isinstance(result, BaseException):  # a bug of the load itself: the verdict reports it
                        record.loop_errors.append(repr(result))
                for client in load.clients.values():
                    await client.aclose()
            began, logged = time.monotonic(), len(app.output)
            app.terminate()
            record.exit_status = await asyncio.to_thread(app.wait, 30)
            record.shutdown_seconds = time.monotonic() - began
            record.shutdown_output = app.output[logged:]

            async def drained() -> bool:
                record.after_shutdown = await counter.both()
                return record.after_shutdown == (0, 0)

            with contextlib.suppress(AssertionError):  # the verdict reports what is left
                await _wait_for("no connection left after shutdown", drained, 10)
        finally:
            await probe.aclose()
            app.close()
            record.output = app.output
    return record
