"""HTTP dependencies: one shared ``httpx.AsyncClient`` per dependency, checked actively or passively.

Nothing here imports httpx at module level: it loads when the component starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from infraboot._base._errors import OwnMessage, classify_error
from infraboot._base._log import event
from infraboot._engine._component import Context
from infraboot._engine._traffic import Traffic
from infraboot.exceptions import ConfigError

from ._configured import ConfiguredComponent

if TYPE_CHECKING:
    import httpx

    from ._client_settings import HttpSettings

__all__ = ["HttpDependency", "HttpStatusError", "Outcomes"]

_INSTALL = 'an HTTP dependency needs httpx: pip install "infraboot[http]"'
_TRANSPORT_ERRORS = ("TransportError", "TimeoutException", "NetworkError", "ProtocolError")


class HttpStatusError(OwnMessage, ConnectionError):
    """The dependency answered with a server error (5xx), or its health URL with anything but 2xx."""


class Outcomes:
    """What the service's own requests to one dependency met lately (passive health, no I/O of its own).

    ``failed_at`` / ``succeeded_at`` are wall-clock times of the last outage-class outcome (a
    connection error, a timeout, a 5xx when counted) and of the last answer below 500.
    """

    __slots__ = ("failed_at", "last_error", "requests", "succeeded_at")

    def __init__(self) -> None:
        self.failed_at: float | None = None
        self.succeeded_at: float | None = None
        self.last_error: str | None = None
        self.requests = 0

    def failing(self, window: float) -> str | None:
        """Why the dependency counts as down now, or ``None``: the last outcome failed, less than *window* ago."""
        failed = self.failed_at
        if failed is None or (self.succeeded_at is not None and self.succeeded_at > failed):
            return None
        age = time.time() - failed
        if age > window:
            return None  # let requests try again: with none sent, nothing would ever say it is back
        return f"the last request to it failed {age:.1f}s ago ({self.last_error})"


def _observed_transport(
    transport: httpx.AsyncBaseTransport, outcomes: Outcomes, traffic: Traffic, count_5xx: bool
) -> Any:
    """*transport*, reporting each request's outcome to *outcomes* and to passive health."""
    import httpx

    class ObservedTransport(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            outcomes.requests += 1
            try:
                response = await transport.handle_async_request(request)
            except httpx.TransportError as exc:
                outcomes.failed_at, outcomes.last_error = time.time(), type(exc).__name__
                traffic.failed(exc, disconnect=True)
                raise
            if count_5xx and response.status_code >= 500:
                outcomes.failed_at, outcomes.last_error = time.time(), f"HTTP {response.status_code}"
                traffic.failed(HttpStatusError(f"HTTP {response.status_code}"), disconnect=True)
            else:
                outcomes.succeeded_at = time.time()
                if traffic.failures:
                    traffic.succeeded()
            return response

        async def aclose(self) -> None:
            await transport.aclose()

    return ObservedTransport()


class HttpDependency(ConfiguredComponent["httpx.AsyncClient", "HttpSettings"]):
    """An HTTP API the service calls (an auth service, a payment provider): a shared ``httpx.AsyncClient``.

    ``HttpDependency("auth")`` reads ``AUTH_URL``, ``AUTH_HEALTH_PATH``, ... (``settings=`` in
    code); the resource is an ``httpx.AsyncClient`` with that base URL, pool limits and a
    timeout on every request. Optional by default: the service starts (degraded) without it.
    With a health path, start and readiness GET it (2xx within ``check_timeout``); without
    one, start does no I/O and readiness follows the service's own requests -- it fails while
    the last one met a connection error, a timeout or a 5xx, for up to ``passive_window``
    seconds (then a request may try again)::

        infraboot.register(infraboot.HttpDependency("auth"))
        auth = infraboot.get("auth")            # an httpx.AsyncClient
        response = await auth.get("/v1/me", headers=...)
    """

    kind = "http"

    settings_class = "HttpSettings"
    settings_module = "infraboot._components._client_settings"
    default_name = "http"
    required = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes = Outcomes()

    async def start(self, ctx: Context) -> httpx.AsyncClient:
        try:
            import httpx
        except ImportError:
            raise ConfigError(_INSTALL) from None
        s = cast("HttpSettings", self.settings)
        if s is None or s.url is None:  # pragma: no cover - configure() runs first
            msg = f"HTTP dependency {self.name!r} started before it was configured"
            raise ConfigError(msg)
        options = dict(s.client_options)
        limits = httpx.Limits(max_connections=s.max_connections, max_keepalive_connections=s.max_keepalive)
        verify = options.pop("verify", True)
        http2 = options.pop("http2", False)
        # A transport given in code (httpx.MockTransport in tests) replaces the network; still observed.
        given = options.pop("transport", None)
        inner = given or httpx.AsyncHTTPTransport(limits=limits, verify=verify, http2=http2)
        self.outcomes = Outcomes()
        client = httpx.AsyncClient(
            base_url=s.url.get_secret_value(),
            timeout=httpx.Timeout(s.request_timeout),
            transport=_observed_transport(inner, self.outcomes, ctx.traffic, s.count_5xx),
            **options,
        )
        if s.health_path is not None:
            try:
                await self._probe(client, s)
            except BaseException:
                await client.aclose()
                raise
        return client

    async def _probe(self, client: httpx.AsyncClient, s: HttpSettings) -> None:
        path = cast("str", s.health_path)
        response = await client.get(path, timeout=s.check_timeout)
        if not 200 <= response.status_code < 300:
            msg = f"GET {path} answered {response.status_code}; a health URL must answer 2xx ({s.env('health_path')})"
            raise HttpStatusError(msg)

    async def check(self, resource: httpx.AsyncClient) -> None:
        s = cast("HttpSettings", self.settings)
        if s.health_path is not None:
            await self._probe(resource, s)
            return
        reason = self.outcomes.failing(s.passive_window)
        if reason is not None:
            raise HttpStatusError(reason)

    async def stop(self, resource: httpx.AsyncClient) -> None:
        await resource.aclose()

    def health_details(self, resource: httpx.AsyncClient) -> Mapping[str, Any] | None:
        s = cast("HttpSettings", self.settings)
        o = self.outcomes
        return {
            "mode": "active" if s.health_path is not None else "passive",
            "requests": o.requests,
            "last_error": o.last_error,
            "last_failure_age": None if o.failed_at is None else round(time.time() - o.failed_at, 1),
        }

    def classify(self, exc: BaseException) -> str:
        if isinstance(exc, HttpStatusError):
            return "unavailable"
        kinds = {c.__name__ for c in type(exc).__mro__}
        if "TimeoutException" in kinds:
            return "timeout"
        if "ConnectError" in kinds:
            code = classify_error(exc)
            return "connection" if code == "error" else code
        if kinds & set(_TRANSPORT_ERRORS):
            return "connection"
        return classify_error(exc)

    def after_fork(self, resource: httpx.AsyncClient) -> httpx.AsyncClient | None:
        """A forked child starts its own client (the parent's pooled sockets are not its own)."""
        event(logging.DEBUG, "http_client_after_fork", self.name)
        return None
