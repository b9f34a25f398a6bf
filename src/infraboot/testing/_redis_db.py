"""The Redis pytest plugin (entry point ``pytest11``): a Redis database of its own per test, flushed.

- ``infraboot_redis_dbs`` (session): the database numbers the tests may take, from the
  ``infraboot_redis_dbs`` ini option (``"1-15"``, ``"3,4,5"``); by default only the test server
  URL's own database (tests then take turns on it).
- ``infraboot_redis_url`` (function): takes a free database among those (an ``SET NX`` lock
  in it, so concurrent runs and xdist workers never share one), flushes it, points the
  default system's ``redis`` component at it, yields its URL, and flushes it again at the end.

The server is ``INFRABOOT_TEST_REDIS_URL``, else ``REDIS_URL``. Everything in the databases it
takes is deleted. redis-py's synchronous client does the bookkeeping: no event loop involved.
Nothing here imports redis until a fixture runs.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from infraboot._front._accessors import held_by_kit
from infraboot._front._default import default_system

__all__ = ["infraboot_redis_dbs", "infraboot_redis_url"]

LOCK_KEY = "infraboot:test-lock"
LOCK_TTL = 600  # seconds: a crashed run's databases come free again after this
WAIT = 60.0  # seconds a test waits for a free database before failing


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "infraboot_redis_dbs",
        'Redis database numbers infraboot_redis_url may take and flush ("1-15", "3,4"); default: the URL\'s own',
        default="",
    )


def _server() -> str:
    url = os.environ.get("INFRABOOT_TEST_REDIS_URL") or os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("no test Redis: set INFRABOOT_TEST_REDIS_URL (a server whose databases the tests may flush)")
    return url


def _parse(spec: str) -> list[int]:
    numbers: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            msg = f'infraboot_redis_dbs = {spec!r}: use numbers and ranges, e.g. "1-15" or "3,4,5"'
            raise pytest.UsageError(msg)
        numbers.extend(range(int(low), int(high or low) + 1))
    return numbers


@pytest.fixture(scope="session")
def infraboot_redis_dbs(pytestconfig: pytest.Config) -> list[int]:
    """The Redis database numbers this run may take (and flush): the ini option, else the test URL's own."""
    spec = str(pytestconfig.getini("infraboot_redis_dbs") or "")
    if spec:
        return _parse(spec)
    return [_db_of(_server())]


@pytest.fixture
def infraboot_redis_url(infraboot_redis_dbs: list[int]) -> Iterator[str]:
    """The URL of a Redis database this test has alone, empty; the default ``redis`` component points at it.

    An app factory's ``configure(redis=...)``, before or after this fixture, keeps its other
    settings (``client_options``, timeouts) and gets this URL.
    """
    import redis

    base = _server()
    token = secrets.token_hex(8)
    deadline = time.monotonic() + WAIT
    taken: tuple[int, redis.Redis] | None = None
    while taken is None:
        for number in infraboot_redis_dbs:
            client = redis.Redis.from_url(_with_db(base, number))
            if client.set(LOCK_KEY, token, nx=True, ex=LOCK_TTL):
                taken = (number, client)
                break
            client.close()
        else:
            if time.monotonic() > deadline:
                msg = (
                    f"no free Redis database among {infraboot_redis_dbs} after {WAIT:.0f} s; give the tests more: "
                    'infraboot_redis_dbs = "1-15" in the pytest ini'
                )
                pytest.fail(msg, pytrace=False)
            time.sleep(0.05)
    number, client = taken
    _flush_keeping_lock(client, token)
    url = _with_db(base, number)
    system = default_system()
    component = system.components.get("redis")
    if component is not None:
        system.use("redis", _with_url(getattr(component, "_given", None), url))

    def take(settings: Any) -> None:
        system.use("redis", _with_url(settings, url))

    try:
        with held_by_kit(system, "redis", take):
            yield url
    finally:
        try:
            with client.pipeline() as pipe:  # ours still: flush it all, the lock with it
                pipe.watch(LOCK_KEY)  # type: ignore[no-untyped-call]
                if pipe.get(LOCK_KEY) == token.encode():
                    pipe.multi()
                    pipe.flushdb()
                    pipe.execute()
        finally:
            client.close()


def _flush_keeping_lock(client: Any, token: str) -> None:
    with client.pipeline(transaction=True) as pipe:
        pipe.flushdb()
        pipe.set(LOCK_KEY, token, ex=LOCK_TTL)
        pipe.execute()


def _db_of(url: str) -> int:
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    path = parts.path.strip("/")
    if parts.scheme != "unix" and path.isdigit():
        return int(path)
    found = parse_qs(parts.query).get("db", ["0"])[0]
    return int(found) if found.isdigit() else 0


def _with_db(url: str, number: int) -> str:
    from urllib.parse import SplitResult, urlsplit, urlunsplit

    scheme, netloc, path, query, fragment = urlsplit(url)
    if scheme == "unix":
        kept = [q for q in query.split("&") if q and not q.startswith("db=")]
        return urlunsplit(SplitResult(scheme, netloc, path, "&".join([*kept, f"db={number}"]), fragment))
    return urlunsplit(SplitResult(scheme, netloc, f"/{number}", query, fragment))


def _with_url(settings: Any, url: str) -> dict[str, Any]:
    if settings is None:
        return {"url": url}
    if isinstance(settings, Mapping):
        return {**settings, "url": url}
    given = {name: getattr(settings, name) for name in getattr(settings, "model_fields_set", ())}
    return {**given, "url": url}
