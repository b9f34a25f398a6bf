"""The asyncio runner's tiny health port: /livez, /readyz, /startupz as health+json, 200 or 503."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import infraboot
from infraboot._engine._healthport import HealthPort
from tests.servers import free_port


async def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, object] | None]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body else None


async def test_the_three_probes_and_a_component_down() -> None:
    """Running: 200 on all three; a required component down: /readyz 503 naming it, /livez still 200."""
    healthy = {"up": True}

    async def check(resource: int) -> None:
        if not healthy["up"]:
            raise ConnectionRefusedError

    @infraboot.component("thing", check=check)
    async def thing(ctx: infraboot.Context) -> AsyncIterator[int]:
        yield 1

    system = infraboot.SystemInitializer([thing], check_ttl=0.01)
    async with HealthPort(system, 0, host="127.0.0.1") as port:
        before = await get(port.bound_port, "/startupz")
        async with system:
            up = [await get(port.bound_port, p) for p in ("/livez", "/readyz", "/startupz")]
            healthy["up"] = False
            await asyncio.sleep(0.05)
            down = [await get(port.bound_port, p) for p in ("/livez", "/readyz")]
            other = [await get(port.bound_port, "/nope"), await get(port.bound_port, "/livez", "POST")]
            head = await get(port.bound_port, "/livez", "HEAD")
    assert 503 == before[0]
    assert [200, 200, 200] == [code for code, _ in up]
    assert [200, 503] == [code for code, _ in down]
    assert "thing: refused" == down[1][1]["output"]  # type: ignore[index]
    assert [404, 405] == [code for code, _ in other]
    assert (200, None) == head


def test_a_bad_port_is_a_config_error() -> None:
    """A negative or too large port: ConfigError naming health_port, before anything listens."""
    system = infraboot.SystemInitializer()
    for port in (-1, 70000):
        with pytest.raises(infraboot.ConfigError, match="health_port"):
            HealthPort(system, port)


def test_run_serves_the_port_for_the_life_of_the_process(tmp_path: Path) -> None:
    """infraboot.asyncio.run(..., health_port=N): the probes answer while main runs; SIGTERM ends it (exit 0)."""
    port = free_port()
    script = tmp_path / "worker.py"
    script.write_text(
        "import asyncio, infraboot, infraboot.asyncio\n"
        "async def main():\n"
        "    await asyncio.Event().wait()\n"
        f"infraboot.asyncio.run(main, system=infraboot.SystemInitializer(drain_delay=0), health_port={port})\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 20
        status = None
        while status is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                    status = response.status
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        proc.terminate()
        code = proc.wait(20)
    finally:
        proc.kill()
        proc.wait()
    assert (200, 0) == (status, code)
