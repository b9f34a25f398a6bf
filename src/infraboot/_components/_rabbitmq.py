"""The ``rabbitmq`` component: aio-pika's robust connection, a channel pool, and the consumers it keeps alive.

Nothing here imports aio-pika at module level: it loads when the component starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from infraboot._base._errors import OwnMessage, classify_error, error_chain
from infraboot._base._log import event
from infraboot._engine._component import Context
from infraboot._engine._deadlines import shielded
from infraboot._engine._traffic import Traffic
from infraboot.exceptions import ConfigError

from ._configured import ConfiguredComponent

if TYPE_CHECKING:
    from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel, AbstractRobustConnection

    from ._client_settings import RabbitMQSettings

__all__ = ["BrokerRefusedError", "MessageBroker", "RabbitMQComponent"]

_INSTALL = 'the rabbitmq component needs aio-pika: pip install "infraboot[rabbitmq]"'
# Every broker has it; a passive declare of it is a round trip that changes nothing.
_CHECK_EXCHANGE = "amq.direct"


class BrokerRefusedError(OwnMessage, ConnectionError):
    """The broker closed the connection while it was being opened (an unknown virtual host, no permission)."""


class BrokerAuthError(OwnMessage, ConnectionError):
    """The broker refused the user or password (ACCESS_REFUSED at login)."""


class MessageBroker:
    """The resource of a ``rabbitmq`` component: one robust connection, a pool of channels, the consumers.

    ``await broker.publish(b"body", routing_key="jobs")`` publishes on a pooled channel and,
    with publisher confirms (the default), returns once the broker has the message.
    ``async with broker.channel() as channel:`` lends a pooled channel for anything else.
    ``await broker.consume("jobs", handler)`` declares the queue on a channel of its own and
    consumes it; the broker keeps the queue and its consumer for its whole life, so aio-pika
    restores both after a reconnect (a queue object only the caller held could be collected,
    and its consumer silently not restored: aio-pika keeps weak references).
    ``broker.connection`` is aio-pika's ``RobustConnection`` itself.
    """

    def __init__(self, name: str, connection: AbstractRobustConnection, settings: RabbitMQSettings, traffic: Traffic):
        self.name = name
        self.connection = connection
        self._settings = settings
        self._traffic = traffic
        self._idle: list[AbstractRobustChannel] = []
        self._lent = 0
        self._slots = asyncio.Semaphore(settings.channel_pool_size)
        self._check_channel: AbstractRobustChannel | None = None
        self._consumers: list[tuple[AbstractRobustChannel, AbstractQueue, str]] = []
        self.reconnects = 0
        self.last_reconnect: float | None = None
        connection.reconnect_callbacks.add(self._on_reconnect)

    def _on_reconnect(self, *_: Any) -> None:
        self.reconnects += 1
        self.last_reconnect = time.time()
        event(logging.INFO, "broker_reconnected", self.name, reconnects=self.reconnects)

    @property
    def connected(self) -> bool:
        """Whether the connection is up now (``False`` while aio-pika reconnects)."""
        return not self.connection.is_closed and self.connection.connected.is_set()

    async def _open_channel(self) -> AbstractRobustChannel:
        channel = self.connection.channel(publisher_confirms=self._settings.publisher_confirms)
        await asyncio.wait_for(channel.initialize(), self._settings.operation_timeout)
        return channel

    @contextlib.asynccontextmanager
    async def channel(self) -> AsyncIterator[AbstractRobustChannel]:
        """A pooled channel for the block; one the broker closed (a channel-level error) is replaced."""
        async with self._slots:
            channel = None
            while self._idle and channel is None:
                candidate = self._idle.pop()
                if not candidate.is_closed:
                    channel = candidate
            if channel is None:
                channel = await self._open_channel()
            self._lent += 1
            try:
                yield channel
            finally:
                self._lent -= 1
                if not channel.is_closed:
                    self._idle.append(channel)

    async def publish(
        self, message: Any, routing_key: str, *, exchange: str = "", mandatory: bool = True, **properties: Any
    ) -> None:
        """Publish *message* (``bytes``, or an ``aio_pika.Message``) to *exchange* (default: the default exchange).

        Waits for the broker's confirm up to ``operation_timeout``; a connection error or a timeout
        counts against the component's passive health and is raised (503 in the web adapters).
        """
        import aio_pika

        body = message if isinstance(message, aio_pika.Message) else aio_pika.Message(message, **properties)
        try:
            async with self.channel() as channel:
                target = await channel.get_exchange(exchange, ensure=False) if exchange else channel.default_exchange
                await target.publish(body, routing_key, mandatory=mandatory, timeout=self._settings.operation_timeout)
        except Exception as exc:
            self._traffic.failed(exc)
            raise
        if self._traffic.failures:
            self._traffic.succeeded()

    async def consume(
        self,
        queue: str,
        handler: Callable[[AbstractIncomingMessage], Awaitable[Any]],
        *,
        prefetch_count: int = 10,
        **declare: Any,
    ) -> AbstractQueue:
        """Declare *queue* (``durable=True`` and such in *declare*) and consume it with *handler*.

        Each consumer has a channel of its own (its ``prefetch_count`` apart from the others);
        the broker holds the queue and the consumer, and aio-pika declares and consumes them
        again after every reconnect. Returns the queue; the consumer stops at shutdown.
        """
        channel = await self._open_channel()
        try:
            await channel.set_qos(prefetch_count=prefetch_count, timeout=self._settings.operation_timeout)
            declared = await channel.declare_queue(queue, timeout=self._settings.operation_timeout, **declare)
            tag = await declared.consume(handler, timeout=self._settings.operation_timeout)
        except BaseException:
            await shielded(_close_quietly(channel, self.name))
            raise
        self._consumers.append((channel, declared, tag))
        return declared

    async def ping(self) -> None:
        """Readiness: the connection is up and a passive declare answers (``check_queue``, else ``amq.direct``)."""
        if not self.connected:
            msg = "the connection to the broker is down (aio-pika is reconnecting)"
            raise ConnectionError(msg)
        channel = self._check_channel
        if channel is None or channel.is_closed:
            channel = self._check_channel = await self._open_channel()
        queue, budget = self._settings.check_queue, self._settings.check_timeout
        if queue:
            await channel.declare_queue(queue, passive=True, robust=False, timeout=budget)
        else:
            await channel.declare_exchange(_CHECK_EXCHANGE, passive=True, robust=False, timeout=budget)

    def details(self) -> dict[str, Any]:
        """Health facts (no I/O): connected, reconnects, channels idle and lent, consumers."""
        return {
            "connected": self.connected,
            "reconnects": self.reconnects,
            "channels_idle": len(self._idle),
            "channels_lent": self._lent,
            "consumers": len(self._consumers),
        }

    async def close(self) -> None:
        """Cancel the consumers, close the channels and the connection; each step bounded, none stops the others."""
        budget = self._settings.operation_timeout
        for channel, queue, tag in reversed(self._consumers):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(queue.cancel(tag), budget)
            await _close_quietly(channel, self.name, budget)
        self._consumers.clear()
        for channel in [*self._idle, *([self._check_channel] if self._check_channel else [])]:
            await _close_quietly(channel, self.name, budget)
        self._idle.clear()
        self._check_channel = None
        await asyncio.wait_for(self.connection.close(), budget)

    def __repr__(self) -> str:
        state = "connected" if self.connected else "reconnecting"
        return f"<MessageBroker {self.name!r} {state} consumers={len(self._consumers)}>"


class RabbitMQComponent(ConfiguredComponent["MessageBroker", "RabbitMQSettings"]):
    """RabbitMQ through aio-pika: a robust connection, checked with a passive declare, and a channel pool.

    ``RabbitMQComponent()`` reads ``RABBITMQ_*``; ``RabbitMQComponent("events",
    env_prefix="EVENTS_RABBITMQ_")`` is a second broker; ``settings=`` gives them in code.
    Not registered by default: ``infraboot.register(infraboot.RabbitMQComponent())``, then
    ``infraboot.get_message_broker()`` is the :class:`MessageBroker`.
    """

    name = "rabbitmq"
    kind = "broker"

    settings_class = "RabbitMQSettings"
    settings_module = "infraboot._components._client_settings"
    default_name = "rabbitmq"

    async def start(self, ctx: Context) -> MessageBroker:
        try:
            import aio_pika
        except ImportError:
            raise ConfigError(_INSTALL) from None
        s = cast("RabbitMQSettings", self.settings)
        if s is None or s.url is None:  # pragma: no cover - configure() runs first
            msg = "rabbitmq component started before it was configured"
            raise ConfigError(msg)
        from aio_pika.connection import make_url

        # infraboot's settings ride in the URL's query, where aio-pika reads them.
        url = make_url(
            s.url.get_secret_value(), heartbeat=max(1, round(s.heartbeat)), reconnect_interval=s.reconnect_interval
        )
        # Built here rather than by connect_robust(), which leaves a failed or cancelled connection's
        # reconnect task running: this one is closed whatever ends the attempt.
        connection = aio_pika.RobustConnection(url, **s.connection_options)
        try:
            await connection.connect(timeout=s.connect_timeout)
        except BaseException as exc:
            await shielded(_close_connection_quietly(connection, self.name, s.connect_timeout))
            refused = _refused_at_open(exc) if isinstance(exc, Exception) else None
            if refused is not None:
                raise BrokerRefusedError(refused.format(var=s.env("url"))) from None
            if isinstance(exc, Exception) and self.classify(exc) == "auth":
                var = s.env("url")
                msg = (
                    f"the broker refused the login: check the user and password in {var} "
                    f"(amqp://USER:PASSWORD@HOST:5672/; a password with @, : or / must be percent-encoded), "
                    f"and that the user exists (rabbitmqctl list_users; guest may log in from localhost only)"
                )
                raise BrokerAuthError(msg) from None
            raise
        broker = MessageBroker(self.name, connection, s, ctx.traffic)
        try:
            await broker.ping()
        except BaseException:
            await shielded(_close_broker_quietly(broker))
            raise
        return broker

    async def check(self, resource: MessageBroker) -> None:
        await resource.ping()

    async def stop(self, resource: MessageBroker) -> None:
        await resource.close()

    def health_details(self, resource: MessageBroker) -> Mapping[str, Any] | None:
        return resource.details()

    def pool_stats(self, resource: MessageBroker) -> dict[str, int]:
        """Channels idle and lent, and the consumers' own channels."""
        details = resource.details()
        return {"idle": details["channels_idle"], "in_use": details["channels_lent"], "consumers": details["consumers"]}

    def is_retryable(self, exc: Exception) -> bool:
        return self.classify(exc) not in ("auth", "not_allowed", "config") and super().is_retryable(exc)

    def classify(self, exc: BaseException) -> str:
        for link in error_chain(exc):
            kind = type(link).__name__
            if isinstance(link, BrokerAuthError) or kind in ("ProbableAuthenticationError", "AuthenticationError"):
                return "auth"
            if isinstance(link, BrokerRefusedError):
                return "not_allowed"
            if kind == "ChannelNotFoundEntity":
                return "not_found"
            if kind in ("AMQPConnectionError", "ConnectionChannelError", "ChannelInvalidStateError"):
                code = classify_error(exc)
                return "connection" if code == "error" else code
        return classify_error(exc)


def _refused_at_open(exc: BaseException) -> str | None:
    """A message naming the fix when the broker answered the connection's open with a close (vhost, permission)."""
    for link in error_chain(exc):
        if type(link).__name__ == "InvalidFrameError" and "Connection.Close" in str(link):
            return (
                "the broker closed the connection at open: the virtual host in {var} (the URL's path) "
                "does not exist, or the user may not use it; create it (rabbitmqctl add_vhost NAME, "
                "set_permissions) or fix the path (amqp://HOST:5672/ is the default vhost '/')"
            )
    return None


async def _close_quietly(channel: AbstractRobustChannel, component: str, budget: float = 5.0) -> None:
    try:
        await asyncio.wait_for(channel.close(), budget)
    except Exception as exc:
        event(logging.DEBUG, "channel_close_failed", component, error=type(exc).__name__)


async def _close_connection_quietly(connection: AbstractRobustConnection, component: str, budget: float) -> None:
    try:
        await asyncio.wait_for(connection.close(), budget)
    except Exception as exc:
        event(logging.DEBUG, "close_after_failed_start_failed", component, error=type(exc).__name__)


async def _close_broker_quietly(broker: MessageBroker) -> None:
    try:
        await broker.close()
    except Exception as exc:
        event(logging.DEBUG, "close_after_failed_start_failed", broker.name, error=type(exc).__name__)
