"""A tiny health port for a process with no web framework: ``GET /livez``, ``/readyz``, ``/startupz``.

Plain asyncio streams, HTTP/1.0 style: one request per connection, answered with the report's
``application/health+json`` body and 200 (``pass``/``warn``) or 503 (``fail``); anything else is 404
(405 for a method other than GET/HEAD). Nothing in a body is a secret (see ``_health``). A request
that does not arrive whole within 5 s is dropped, so a stuck client holds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._health import HealthReport
    from ._system import SystemInitializer

__all__ = ["HealthPort"]

_READ_TIMEOUT = 5.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HealthPort:
    """Serves *system*'s probes on *host*:*port* while running (``async with HealthPort(...)``)."""

    def __init__(self, system: SystemInitializer, port: int, *, host: str = "0.0.0.0") -> None:
        from infraboot._base._checks import count_problem
        from infraboot.exceptions import ConfigError

        problem = count_problem("health_port", port, minimum=0, example="health_port=8081")
        if problem is None and port > 65535:
            problem = f"health_port={port!r}: must be a TCP port (0-65535), e.g. health_port=8081"
        if problem:
            raise ConfigError.from_problems([problem], title="invalid health port")
        self.system = system
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    @property
    def bound_port(self) -> int:
        """The port listened on (the one the OS chose when *port* was 0)."""
        if self._server is None:
            msg = "the health port is not serving: read bound_port inside 'async with HealthPort(...)'"
            raise RuntimeError(msg)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> HealthPort:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            method, _, rest = head.decode("latin-1").partition(" ")
            path = rest.partition(" ")[0].partition("?")[0]
            status, body = await self._answer(method, path)
            payload = b"" if method == "HEAD" else body
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/health+json\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, method: str, path: str) -> tuple[int, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, b'{"status":"fail","output":"GET only"}'
        report: HealthReport
        if path == "/livez":
            report = self.system.liveness()
        elif path == "/readyz":
            report = await self.system.readiness()
        elif path == "/startupz":
            report = self.system.startup()
        else:
            return 404, b'{"status":"fail","output":"try /livez, /readyz or /startupz"}'
        return report.http_status, json.dumps(report.to_dict()).encode()
