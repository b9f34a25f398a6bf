"""Passive health: what live traffic says about a component, between two probes.

A built-in component hooks its driver (a redis-py ``Retry`` around every command, a
SQLAlchemy ``handle_error`` listener) and reports here: a connection-class error seen by a
caller counts against the component at once, as a failed probe would; a success resets
the count. After ``failure_threshold`` failures in a row the monitor calls the component
unhealthy -- readiness fails, ``get()`` raises :class:`~infraboot.ComponentUnavailableError`
-- without waiting for the next probe; the probe brings it back.

Reporting is cheap on purpose: a success costs one attribute read while nothing failed.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeVar

from infraboot._base._errors import classify_error, error_chain

if TYPE_CHECKING:
    from ._slot import Probe

__all__ = ["OUTAGE_CODES", "Traffic", "is_outage", "loaded_outage_classes", "probe_hooks", "probing"]

T = TypeVar("T")

# Set inside the monitor's probes: their calls go through the same driver hooks, but a probe's
# outcome is already counted as a probe.
_probing: ContextVar[bool] = ContextVar("infraboot_probing", default=False)


#: Called with no argument at the start of every probe, in the probe's own task (so a context
#: variable it sets lasts for that probe only): ``infraboot.otel`` suppresses client spans there.
probe_hooks: list[Callable[[], object]] = []


async def probing(work: Awaitable[T]) -> T:
    """Await *work* as a probe: what it meets is not reported as live traffic (run it in a task of its own)."""
    _probing.set(True)
    for hook in probe_hooks:
        hook()
    return await work


#: The error codes (:meth:`~infraboot.Component.classify`) that say "the server cannot be reached or
#: went away", as opposed to "the server answered with an error" (a bad query, a wrong key type).
OUTAGE_CODES = frozenset(
    {"timeout", "refused", "reset", "dns", "tls", "connection", "shutdown", "loading", "no_master", "cluster_down"}
)


class Traffic:
    """The passive-health line of one component: its built-in driver hooks (or yours) report here.

    A custom component reports through ``ctx.traffic`` in its ``start``, typically from a
    driver callback::

        async def start(self, ctx):
            client = await SearchClient.connect(on_error=ctx.traffic.failed, on_ok=ctx.traffic.succeeded)
            return client

    Only errors that mean the server cannot be reached count (timeouts, refused or reset
    connections, a server shutting down); a server's answer, even an error, never does.
    """

    __slots__ = ("_classify", "_on_failure", "_probe")

    def __init__(
        self,
        probe: Probe | None = None,
        on_failure: Callable[[str], None] | None = None,
        classify: Callable[[BaseException], str] = classify_error,
    ) -> None:
        self._probe = probe
        self._on_failure = on_failure
        self._classify = classify

    def bind(self, classify: Callable[[BaseException], str]) -> None:
        """Use *classify* (the component's own) to turn an error into a code."""
        self._classify = classify

    @property
    def failures(self) -> int:
        """Failures in a row seen so far, probes and traffic together (0 while all is well)."""
        return 0 if self._probe is None else self._probe.failures

    def succeeded(self) -> None:
        """A call reached the server: the run of failures, if any, is over."""
        probe = self._probe
        if probe is not None and probe.failures and probe.healthy:
            probe.failures = 0

    def failed(self, exc: BaseException, *, disconnect: bool = False) -> bool:
        """A call failed with *exc*; ``True`` when it counted (an outage-class error, not a cancellation).

        ``disconnect=True``: the driver already knows the connection is gone (SQLAlchemy's
        ``is_disconnect``), so it counts whatever the error's code.
        """
        if self._on_failure is None or isinstance(exc, asyncio.CancelledError) or _probing.get():
            return False
        code = self._classify(exc)
        if code not in OUTAGE_CODES:
            if not disconnect:
                return False
            code = "connection"
        self._on_failure(code)
        return True

    def __repr__(self) -> str:
        return f"<Traffic failures={self.failures}>"


def is_outage(exc: BaseException) -> bool:
    """Whether *exc* (or an error behind it) says a server could not be reached or went away.

    Used by the framework adapters to answer 503 instead of 500. Recognised without
    importing any driver: the standard ``ConnectionError``/``TimeoutError`` family, redis-py's
    ``ConnectionError``/``TimeoutError``, SQLAlchemy's errors flagged as a disconnect
    (``connection_invalidated``) and asyncpg's connection errors; for the client components,
    httpx's ``TransportError``, aiormq's ``AMQPConnectionError`` and nats-py's connection errors.
    """
    for link in error_chain(exc):
        if isinstance(link, asyncio.CancelledError):
            return False
        if getattr(link, "connection_invalidated", False):  # SQLAlchemy: the driver said "disconnect"
            return True
        if isinstance(link, ConnectionError | TimeoutError | socket.gaierror):  # refused, reset, silent, no DNS
            return True
        module = type(link).__module__
        name = type(link).__name__
        if module.startswith("redis") and any(
            c.__name__ in ("ConnectionError", "TimeoutError") for c in type(link).__mro__ if c.__module__ == module
        ):
            return name not in _NOT_OUTAGES
        if module.startswith("asyncpg") and (
            name in _ASYNCPG_OUTAGES or any(c.__name__ == "PostgresConnectionError" for c in type(link).__mro__)
        ):
            return True
        family = _DRIVER_OUTAGES.get(module.split(".", 1)[0])
        if family is not None and any(c.__name__ in family for c in type(link).__mro__):
            return True
    return False


# The client components' drivers: the classes (or their bases) that mean "could not reach it".
_DRIVER_OUTAGES = {
    "httpx": frozenset({"TransportError"}),
    "aiormq": frozenset({"AMQPConnectionError"}),
    "aio_pika": frozenset({"ChannelInvalidStateError"}),
    "nats": frozenset({"ConnectionClosedError", "NoServersError", "StaleConnectionError", "TimeoutError"}),
}


# redis-py ConnectionError subclasses that are no outage: a full pool, a wrong password.
_NOT_OUTAGES = frozenset({"MaxConnectionsError", "AuthenticationError", "AuthenticationWrongNumberOfArgsError"})
_ASYNCPG_OUTAGES = frozenset(
    {"ConnectionDoesNotExistError", "CannotConnectNowError", "AdminShutdownError", "CrashShutdownError"}
)


# The drivers' outage classes (or bases whose outages is_outage() recognises), by module: what an adapter's
# exception handlers are keyed on once the driver is imported. Never imported from here.
_OUTAGE_CLASSES = (
    ("redis.exceptions", ("ConnectionError", "TimeoutError")),
    ("sqlalchemy.exc", ("DBAPIError",)),
    ("asyncpg.exceptions", ("PostgresConnectionError", *sorted(_ASYNCPG_OUTAGES))),
    ("httpx", ("TransportError",)),
    ("aiormq.exceptions", ("AMQPConnectionError",)),
    ("aio_pika.exceptions", ("ChannelInvalidStateError",)),
    ("nats.errors", tuple(sorted(_DRIVER_OUTAGES["nats"]))),
)


def loaded_outage_classes() -> list[type[Exception]]:
    """The drivers' connection-error classes of the drivers imported so far (none is imported here)."""
    found: list[type[Exception]] = []
    for module_name, names in _OUTAGE_CLASSES:
        module = sys.modules.get(module_name)
        for name in names:
            cls = getattr(module, name, None)
            if isinstance(cls, type) and issubclass(cls, Exception) and cls not in found:
                found.append(cls)
    return found
