"""The ``nats`` component: a nats-py connection, its JetStream context, and a bounded ``flush()`` as the check.

Nothing here imports nats-py at module level: it loads when the component starts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from infraboot._base._errors import classify_error, error_chain
from infraboot._base._log import event
from infraboot._base._redact import scrub
from infraboot._engine._component import Context
from infraboot._engine._deadlines import shielded
from infraboot.exceptions import ConfigError

from ._configured import ConfiguredComponent

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from ._client_settings import NatsSettings

__all__ = ["NatsComponent", "NatsConnection"]

_INSTALL = 'the nats component needs nats-py: pip install "infraboot[nats]"'


def _connect_budget(connect_timeout: float) -> float:
    """The connect's own bound: a little under the attempt's, so the cause it met is reported, not a bare timeout."""
    return max(connect_timeout * 0.9, connect_timeout - 0.25)


class NatsConnection:
    """The resource of a ``nats`` component: ``.client`` (nats-py's ``Client``) and ``.jetstream``.

    ``await conn.client.publish("orders.created", b"...")``;
    ``await conn.jetstream.publish("orders", b"...")`` (``None`` with ``NATS_JETSTREAM=false``).
    ``disconnects`` / ``reconnects`` count what the client's callbacks reported; readiness never
    relies on them (nats.py#806: ``disconnected_cb`` may not fire for a line that went silent).
    """

    def __init__(self, name: str, client: Client, jetstream: JetStreamContext | None) -> None:
        self.name = name
        self.client = client
        self.jetstream = jetstream
        self.disconnects = 0
        self.reconnects = 0
        self.last_error: str | None = None

    def details(self) -> dict[str, Any]:
        """Health facts (no I/O): connected, the server, the callbacks' counts, the last error."""
        client = self.client
        server = getattr(client, "connected_url", None)
        return {
            "connected": client.is_connected,
            "reconnecting": client.is_reconnecting,
            "server": None if server is None else f"{server.hostname}:{server.port}",
            "disconnects": self.disconnects,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "jetstream": self.jetstream is not None,
        }

    def __repr__(self) -> str:
        return f"<NatsConnection {self.name!r} connected={self.client.is_connected}>"


class NatsComponent(ConfiguredComponent["NatsConnection", "NatsSettings"]):
    """NATS through nats-py: connect under a deadline, a JetStream context, ``flush()`` as readiness.

    ``NatsComponent()`` reads ``NATS_*``; ``NatsComponent("events", env_prefix="EVENTS_NATS_")``
    is a second one. Not registered by default: ``infraboot.register(infraboot.NatsComponent())``,
    then ``infraboot.get("nats")`` is the :class:`NatsConnection`.

    nats-py's first connect ignores ``allow_reconnect=False`` and ``connect_timeout`` as a
    whole (nats.py#645: it keeps trying the servers), so infraboot bounds it: each attempt
    gives up after ``NATS_CONNECT_TIMEOUT`` with the last error the client met (refused,
    reset) or a timeout, and the half-made client is closed. Once connected, the client
    reconnects by itself for ever, every ``NATS_RECONNECT_INTERVAL`` seconds.
    """

    name = "nats"
    kind = "broker"

    settings_class = "NatsSettings"
    settings_module = "infraboot._components._client_settings"
    default_name = "nats"

    async def start(self, ctx: Context) -> NatsConnection:
        try:
            from nats.aio.client import Client
        except ImportError:
            raise ConfigError(_INSTALL) from None
        s = cast("NatsSettings", self.settings)
        if s is None or s.url is None:  # pragma: no cover - configure() runs first
            msg = "nats component started before it was configured"
            raise ConfigError(msg)
        client = Client()
        conn = NatsConnection(self.name, client, None)
        seen: list[BaseException] = []

        async def on_error(exc: Exception) -> None:
            seen.append(exc)
            conn.last_error = scrub(f"{type(exc).__name__}: {exc}")[:200]
            ctx.traffic.failed(exc)

        async def on_disconnect() -> None:
            conn.disconnects += 1
            event(logging.WARNING, "nats_disconnected", self.name)

        async def on_reconnect() -> None:
            conn.reconnects += 1
            event(logging.INFO, "nats_reconnected", self.name, reconnects=conn.reconnects)
            if ctx.traffic.failures:
                ctx.traffic.succeeded()

        options: dict[str, Any] = {
            **s.connection_options,
            "servers": [s.url.get_secret_value(), *s.servers],
            "connect_timeout": s.connect_timeout,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": s.reconnect_interval,
            "ping_interval": s.ping_interval,
            "max_outstanding_pings": 2,
            "drain_timeout": s.drain_timeout,
            "error_cb": on_error,  # nats-py's default prints each error with a traceback
            "disconnected_cb": on_disconnect,
            "reconnected_cb": on_reconnect,
        }
        try:
            try:
                await asyncio.wait_for(client.connect(**options), _connect_budget(s.connect_timeout))
            except TimeoutError:
                if seen:  # what the client met while it kept trying: refused beats "timeout"
                    raise seen[-1] from None
                raise
            if s.jetstream:
                conn.jetstream = client.jetstream(timeout=s.check_timeout)
            await self.check(conn)
        except BaseException:
            await shielded(_close_quietly(client, self.name, s.connect_timeout))
            raise
        return conn

    async def check(self, resource: NatsConnection) -> None:
        """A PING the server answers (``flush``) within ``check_timeout``; and ``check_stream``'s info, when set."""
        s = cast("NatsSettings", self.settings)
        client = resource.client
        if client.is_closed:
            msg = "the NATS connection is closed"
            raise ConnectionError(msg)
        await client.flush(timeout=s.check_timeout)  # type: ignore[arg-type]  # typed int, takes seconds
        if s.check_stream and resource.jetstream is not None:
            await resource.jetstream.stream_info(s.check_stream)

    async def stop(self, resource: NatsConnection) -> None:
        """Drain (bounded by ``drain_timeout``: subscriptions finish what they hold), then close."""
        client = resource.client
        s = cast("NatsSettings", self.settings)
        if client.is_connected:
            try:
                await asyncio.wait_for(client.drain(), s.drain_timeout)
            except Exception as exc:
                event(logging.WARNING, "nats_drain_failed", self.name, error=type(exc).__name__)
        await _close_quietly(client, self.name, s.connect_timeout)

    def health_details(self, resource: NatsConnection) -> Mapping[str, Any] | None:
        return resource.details()

    def is_retryable(self, exc: Exception) -> bool:
        return self.classify(exc) not in ("auth", "config") and super().is_retryable(exc)

    def classify(self, exc: BaseException) -> str:
        for link in error_chain(exc):
            kind = type(link).__name__
            text = str(link).lower()
            if kind == "AuthorizationError" or "authorization violation" in text:
                return "auth"
            if kind in ("NoServersError", "ConnectionClosedError", "StaleConnectionError", "UnexpectedEOF"):
                code = classify_error(exc)
                return "connection" if code == "error" else code
            if kind == "TimeoutError" and type(link).__module__.startswith("nats"):
                return "timeout"
            if kind == "NotFoundError" and type(link).__module__.startswith("nats"):
                return "not_found"
        return classify_error(exc)


async def _close_quietly(client: Client, component: str, budget: float) -> None:
    started = time.monotonic()
    try:
        await asyncio.wait_for(client.close(), budget)
    except Exception as exc:
        event(logging.DEBUG, "nats_close_failed", component, error=type(exc).__name__, after=time.monotonic() - started)
