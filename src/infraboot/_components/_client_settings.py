"""Settings of the client components: RabbitMQ, NATS and HTTP dependencies (pydantic; loaded only when used).

Each is a :class:`~infraboot.SettingsBase` like ``RedisSettings``: given in code, read from
``<PREFIX>_*`` variables (``RABBITMQ_``, ``NATS_``, and ``<NAME>_`` for an HTTP dependency),
or both; every problem is one line of one :class:`~infraboot.ConfigError`, naming the
variable (or keyword) and the fix, before any network I/O.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ._client_urls import amqp_url_problems, http_url_problems, nats_url_problems
from ._settings import SettingsBase

__all__ = ["HttpSettings", "NatsSettings", "RabbitMQSettings"]

# Driver options infraboot sets itself: each names the setting to use instead.
_OWNED_AMQP_OPTIONS = {
    "url": "url",
    "host": "url",
    "port": "url",
    "login": "url",
    "password": "url",
    "virtualhost": "url",
    "timeout": "connect_timeout",
    "heartbeat": "heartbeat",
    "reconnect_interval": "reconnect_interval",
    "fail_fast": "connect_timeout",
}
_OWNED_NATS_OPTIONS = {
    "servers": "url",
    "user": "url",
    "password": "url",
    "token": "url",
    "connect_timeout": "connect_timeout",
    "allow_reconnect": "reconnect_interval",
    "max_reconnect_attempts": "reconnect_interval",
    "reconnect_time_wait": "reconnect_interval",
    "ping_interval": "ping_interval",
    "error_cb": "url",
    "disconnected_cb": "url",
    "reconnected_cb": "url",
    "closed_cb": "url",
}
_OWNED_HTTP_OPTIONS = {
    "base_url": "url",
    "timeout": "request_timeout",
    "limits": "max_connections",
}


class RabbitMQSettings(SettingsBase):
    """Settings of the ``rabbitmq`` component, from ``RABBITMQ_*`` variables (or given in code).

    ``RABBITMQ_URL=amqp://USER:PASSWORD@HOST:5672/VHOST`` (``amqps://`` for TLS). The
    connection is aio-pika's robust one: after a lost connection it reconnects every
    ``RABBITMQ_RECONNECT_INTERVAL`` seconds (default 1) and restores its channels, queues,
    bindings and consumers. ``RABBITMQ_HEARTBEAT`` (seconds, default 60) is how long a
    silent line takes to be found dead. ``RABBITMQ_CHANNEL_POOL_SIZE`` channels (default 10)
    are shared by ``publish()`` and ``channel()``; publishes wait for the broker's confirm
    (``RABBITMQ_PUBLISHER_CONFIRMS``) up to ``RABBITMQ_OPERATION_TIMEOUT`` seconds.
    Readiness: the connection is up and a passive declare answers -- of
    ``RABBITMQ_CHECK_QUEUE`` when set (the queue must exist), else of the ``amq.direct``
    exchange every broker has. ``connection_options`` (``RABBITMQ_CONNECTION_OPTIONS`` as
    JSON) go to ``aio_pika.connect_robust`` as they are (``client_properties``, ``ssl_context``).
    """

    model_config = SettingsConfigDict(env_prefix="RABBITMQ_")
    _prefix: ClassVar[str] = "RABBITMQ_"
    _example_url: ClassVar[str] = "amqp://USER:PASSWORD@127.0.0.1:5672/"

    heartbeat: float = 60.0
    reconnect_interval: float = 1.0
    channel_pool_size: int = 10
    publisher_confirms: bool = True
    operation_timeout: float = 5.0
    check_queue: str | None = None
    connection_options: dict[str, Any] = Field(default_factory=dict)

    def problems(self) -> list[str]:
        out: list[str] = []
        self._url_problems(out, amqp_url_problems)
        self._seconds(out, "connect_timeout", example="5")
        self._seconds(out, "check_timeout", example="2")
        self._seconds(out, "heartbeat", example="60")
        self._seconds(out, "reconnect_interval", example="1")
        self._seconds(out, "operation_timeout", example="5")
        self._count(out, "max_retries", 0, "3")
        self._count(out, "channel_pool_size", 1, "10")
        if self.heartbeat < 1 and self.heartbeat > 0:
            label = self.env("heartbeat")
            out.append(f"{label}={self.heartbeat!r}: AMQP heartbeats are whole seconds >= 1, e.g. {label}=60")
        if self.check_queue is not None and not self.check_queue.strip():
            out.append(f"{self.env('check_queue')} is empty; name a queue that exists, or leave it unset")
        self._owned(out, "connection_options", self.connection_options, _OWNED_AMQP_OPTIONS)
        return out


class NatsSettings(SettingsBase):
    """Settings of the ``nats`` component, from ``NATS_*`` variables (or given in code).

    ``NATS_URL=nats://[USER:PASSWORD@|TOKEN@]HOST:4222`` (``tls://`` for TLS); more servers
    of the same cluster in ``NATS_SERVERS`` (a JSON list of URLs, or comma-separated). After a lost connection
    the client reconnects every ``NATS_RECONNECT_INTERVAL`` seconds (default 1), for ever.
    ``NATS_PING_INTERVAL`` (default 20 s) is how often the client pings the server; two
    unanswered pings mark a silent line dead. Readiness is a ``flush()`` (a PING answered by
    the server) bounded by ``NATS_CHECK_TIMEOUT`` -- never the client's own idea of being
    connected, which a silent network does not change for a long time. ``NATS_JETSTREAM``
    (default true) makes a JetStream context; ``NATS_CHECK_STREAM`` adds that stream's info
    to the readiness check. ``connection_options`` (``NATS_CONNECTION_OPTIONS``) go to
    ``nats.connect`` as they are (``name``, ``tls``, ``user_credentials``, ``inbox_prefix``).
    """

    model_config = SettingsConfigDict(env_prefix="NATS_")
    _prefix: ClassVar[str] = "NATS_"
    _example_url: ClassVar[str] = "nats://127.0.0.1:4222"

    servers: list[str] = Field(default_factory=list)
    reconnect_interval: float = 1.0
    ping_interval: float = 20.0
    jetstream: bool = True
    check_stream: str | None = None
    drain_timeout: float = 5.0
    connection_options: dict[str, Any] = Field(default_factory=dict)

    def problems(self) -> list[str]:
        out: list[str] = []
        self._url_problems(out, nats_url_problems)
        from infraboot._base._redact import SecretURL

        for i, server in enumerate(self.servers):
            for line in nats_url_problems(SecretURL(server), f"{self.env('servers')}[{i}]"):
                out.append(line)
        if self.servers and self.url is None:
            out.append(f"{self.env('servers')} needs {self.env('url')} too: the first server goes there")
        self._seconds(out, "connect_timeout", example="5")
        self._seconds(out, "check_timeout", example="2")
        self._seconds(out, "reconnect_interval", example="1")
        self._seconds(out, "ping_interval", example="20")
        self._seconds(out, "drain_timeout", example="5")
        self._count(out, "max_retries", 0, "3")
        if self.check_stream is not None and not self.jetstream:
            out.append(f"{self.env('check_stream')} needs {self.env('jetstream')}=true; remove one of them")
        self._owned(out, "connection_options", self.connection_options, _OWNED_NATS_OPTIONS)
        return out


class HttpSettings(SettingsBase):
    """Settings of an HTTP dependency (``HttpDependency("auth")`` reads ``AUTH_*``), or given in code.

    ``AUTH_URL=https://auth.example.com/`` is the base URL of the shared ``httpx.AsyncClient``.
    Optional by default (``AUTH_REQUIRED=true`` to refuse to start without it). Readiness:
    with ``AUTH_HEALTH_PATH=/healthz``, a GET of it that must answer 2xx within
    ``AUTH_CHECK_TIMEOUT``; without one (the default: probing a third-party API may cost
    quota), passively from the outcomes of the service's own requests -- connection errors
    and timeouts, and 5xx answers when ``AUTH_COUNT_5XX=true`` (default), count against it
    until a later request succeeds or ``AUTH_PASSIVE_WINDOW`` seconds (default 30) pass.
    ``AUTH_REQUEST_TIMEOUT`` (default 5 s) bounds every request (connect, read, write and pool
    wait alike); ``AUTH_MAX_CONNECTIONS`` / ``AUTH_MAX_KEEPALIVE`` bound the pool.
    ``client_options`` (``AUTH_CLIENT_OPTIONS``) go to ``httpx.AsyncClient`` as they are
    (``headers``, ``verify``, ``http2``, ``follow_redirects``); in code, ``transport`` may be an
    ``httpx.AsyncBaseTransport`` (``httpx.MockTransport`` in tests) that replaces the network.
    """

    _prefix: ClassVar[str] = "HTTP_"
    _example_url: ClassVar[str] = "https://auth.example.com/"

    required: bool = False
    health_path: str | None = None
    request_timeout: float = 5.0
    max_connections: int = 100
    max_keepalive: int = 20
    count_5xx: bool = True
    passive_window: float = 30.0
    client_options: dict[str, Any] = Field(default_factory=dict)

    def problems(self) -> list[str]:
        out: list[str] = []
        self._url_problems(out, http_url_problems)
        self._seconds(out, "connect_timeout", example="5")
        self._seconds(out, "check_timeout", example="2")
        self._seconds(out, "request_timeout", example="5")
        self._seconds(out, "passive_window", example="30")
        self._count(out, "max_retries", 0, "3")
        self._count(out, "max_connections", 1, "100")
        self._count(out, "max_keepalive", 0, "20")
        if self.max_keepalive > self.max_connections:
            out.append(
                f"{self.env('max_keepalive')}={self.max_keepalive} exceeds {self.env('max_connections')}="
                f"{self.max_connections}; lower it or raise the maximum"
            )
        path = self.health_path
        if path is not None and not path.startswith("/"):
            label = self.env("health_path")
            out.append(f"{label}={path!r}: a path on the dependency's URL starts with '/', e.g. {label}=/healthz")
        self._owned(out, "client_options", self.client_options, _OWNED_HTTP_OPTIONS)
        transport = self.client_options.get("transport")
        if transport is not None and not callable(getattr(transport, "handle_async_request", None)):
            out.append(
                f"{self.env('client_options')}: 'transport' is a {type(transport).__name__}; give an "
                "httpx.AsyncBaseTransport in code (httpx.MockTransport(handler) in tests), or leave it out"
            )
        return out
