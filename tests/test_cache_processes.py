"""L1 coherence across processes: an invalidation in one process reaches another's L1, on the real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

pytestmark = pytest.mark.real

WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from infraboot import RedisComponent, RedisSettings, SystemInitializer
    from infraboot.cache import cached

    async def main(url):
        system = SystemInitializer([RedisComponent(RedisSettings(url=url))], check_interval=None)
        await system.initialize_all()
        client = system.get("redis")

        @cached(ttl=300, key="item:{n}", system=system, namespace="t-proc")
        async def item(n):
            raw = await client.get(f"t-proc-src:{n}")   # the source of truth the cache sits in front of
            return None if raw is None else raw.decode()

        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().strip():
            op, n = line.split()
            if op == "get":
                answer = await item(int(n))
            elif op == "inv":
                await item.invalidate(int(n))
                answer = "ok"
            else:
                answer = item.cache.stats()["coherent"]
            print(json.dumps(answer), flush=True)
        await system.shutdown()

    asyncio.run(main(sys.argv[1]))
    """
)


class Worker:
    def __init__(self, script: Path, url: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "INFRABOOT_"))}
        self.proc = subprocess.Popen(
            [sys.executable, str(script), url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def ask(self, op: str, n: int = 0) -> object:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(f"{op} {n}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def workers(tmp_path: Path, redis_url: str) -> Iterator[tuple[Worker, Worker, redis.Redis]]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    source = redis.Redis.from_url(redis_url)
    for key in source.scan_iter(match="t-proc*"):
        source.delete(key)
    a, b = Worker(script, redis_url), Worker(script, redis_url)
    try:
        yield a, b, source
    finally:
        a.close()
        b.close()
        for key in source.scan_iter(match="t-proc*"):
            source.delete(key)
        source.close()


def poll(condition: object, timeout: float = 5.0) -> float:
    t0 = time.monotonic()
    while not condition():  # type: ignore[operator]
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"not within {timeout}s")
        time.sleep(0.002)
    return time.monotonic() - t0


def test_an_invalidation_in_one_process_reaches_the_other_processs_l1(
    workers: tuple[Worker, Worker, redis.Redis],
) -> None:
    """B holds item 1 in L1; A invalidates it; B serves the new value within half a second."""
    a, b, source = workers
    source.set("t-proc-src:1", "old")
    assert "old" == b.ask("get", 1)
    assert "old" == a.ask("get", 1)
    poll(lambda: a.ask("coherent") is True and b.ask("coherent") is True)
    source.set("t-proc-src:1", "new")
    assert "old" == b.ask("get", 1)  # B's L1 (and Redis) still hold the old value: the cache is doing its job
    assert "ok" == a.ask("inv", 1)
    took = poll(lambda: b.ask("get", 1) == "new", timeout=5.0)
    assert took < 0.5
    assert "new" == a.ask("get", 1)
