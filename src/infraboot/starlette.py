"""Starlette adapter: lifespan, probe routes and the probe middleware.

::

    from starlette.applications import Starlette
    from starlette.routing import Mount
    import infraboot.starlette

    app = Starlette(
        lifespan=infraboot.starlette.lifespan(["redis", "database"]),
        routes=[*infraboot.starlette.health_routes(), ...],
    )

Starlette 1.x has no ``on_startup``/``on_shutdown``: the lifespan is the only hook.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ._base._errors import describe
from ._base._log import event
from ._engine._health import CONTENT_TYPE
from ._engine._system import SystemInitializer
from ._engine._traffic import is_outage
from ._web._asgi import (
    DEFAULT_PATHS,
    NO_METRICS,
    MetricsEndpoint,
    ProbeMiddleware,
    answer_drain,
    has_metrics,
    lifespan,
    no_group,
    pending,
    probe,
    render,
    resolve_system,
)
from .exceptions import ComponentUnavailableError, NotInitializedError, UnknownComponentError

__all__ = [
    "RETRY_AFTER",
    "ProbeMiddleware",
    "exception_handlers",
    "health_routes",
    "lifespan",
    "resource",
    "system_of",
]

RETRY_AFTER = "5"
"""Seconds a client is told to wait (``Retry-After``) when a component it needs is unavailable."""


def system_of(request: Request) -> SystemInitializer:
    """The system serving *request*: the lifespan's, else the default system."""
    return resolve_system(None, request.scope.get("state"), request.scope.get("app"))


def resource(request: Request, name: str) -> Any:
    """The resource of component *name* for this request; 503 (with ``Retry-After``) while it is unavailable.

    Install :data:`exception_handlers` on the app so that the 503 has a JSON body.
    """
    return system_of(request).get(name)


async def _unavailable(request: Request, exc: Exception) -> Response:
    """A component a handler needs is unavailable (down, not started, shutting down): 503, not 500."""
    if isinstance(exc, UnknownComponentError):
        raise exc  # a wrong name is a bug in the application: a 500 with the message
    name = getattr(exc, "component", None)
    body = {"detail": f"{name} is unavailable; try again later" if name else "a dependency is unavailable"}
    return JSONResponse(body, status_code=503, headers={"Retry-After": RETRY_AFTER})


async def _outage(request: Request, exc: Exception) -> Response:
    """A server could not be reached (a connection refused or reset, a timeout): 503, not 500; one log line."""
    event(
        logging.WARNING,
        "request_outage",
        method=request.scope.get("method"),
        path=request.scope.get("path"),
        error=describe(exc),
    )
    body = {"detail": "a dependency is unavailable; try again later"}
    return JSONResponse(body, status_code=503, headers={"Retry-After": RETRY_AFTER})


async def _escaped(request: Request, exc: Exception) -> Response:
    """A driver's error class escaping a handler, seen by Starlette's ``ExceptionMiddleware``.

    A connection error or timeout (redis-py's, SQLAlchemy's disconnect, asyncpg's) is an
    outage: a quiet 503 with ``Retry-After`` and one ``request_outage`` log line, no
    traceback, and the server keeps the connection. Anything else (a SQLAlchemy
    ``IntegrityError``) is raised on, to :func:`_server_error`: a 500 and the server's
    traceback, as without infraboot. The lifespan keys this handler on the drivers' classes
    once they are imported (``adopt_driver_outages``): ``import infraboot.starlette`` imports
    no driver.
    """
    if request.scope.get("type") != "http" or not is_outage(exc):
        raise exc
    return await _outage(request, exc)


async def _server_error(request: Request, exc: Exception) -> Response:
    """The last resort (Starlette's ``ServerErrorMiddleware``): an outage is a 503, anything else the usual 500.

    An outage reaches here only from outside the routes (a middleware of the app's own); one
    from a handler or a dependency is answered by :func:`_escaped`. Starlette re-raises the
    error, so the server logs it and closes that keep-alive connection: the answer says
    ``Connection: close``, so a client does not send its next request into the closing
    connection (a reset instead of an answer).
    """
    if is_outage(exc):
        body = {"detail": "a dependency is unavailable; try again later"}
        return JSONResponse(body, status_code=503, headers={"Retry-After": RETRY_AFTER, "Connection": "close"})
    return PlainTextResponse("Internal Server Error", status_code=500, headers={"Connection": "close"})


_server_error.infraboot_escaped = _escaped  # type: ignore[attr-defined]  # what the lifespan keys on drivers

exception_handlers: dict[Any, Any] = {
    ComponentUnavailableError: _unavailable,
    NotInitializedError: _unavailable,
    ConnectionError: _outage,  # the standard ones (asyncpg's connect, a statement's deadline): handled quietly
    TimeoutError: _outage,
    # The drivers' own classes (redis-py's ConnectionError, SQLAlchemy's DBAPIError, ...) are added by the
    # lifespan once the components have imported their drivers: answered by _escaped, quietly.
    Exception: _server_error,  # the last resort (ServerErrorMiddleware): errors raised outside the routes
}
"""For ``Starlette(exception_handlers=...)`` / ``FastAPI(exception_handlers=...)``: a handler that calls
``get()`` (or ``get_redis()``, ``get_session()``) while the component is unavailable answers 503 with a
JSON body and ``Retry-After``, not a 500; so does a driver's connection error or timeout that escapes a
handler (redis-py ``ConnectionError``/``TimeoutError``, SQLAlchemy errors flagged as a disconnect,
asyncpg connection errors, ``OSError``/``TimeoutError``): one ``request_outage`` WARNING line, no
traceback, and the server keeps the connection. Any other error is the usual 500 with the server's
traceback (the ``Exception`` entry: put your own after these to replace it; an entry of yours for a
class, say ``ValueError``, is found before the ``BaseException`` one). An unknown component name stays a 500
(it is a bug). With ``debug=True`` Starlette shows its traceback page instead."""


def health_routes(
    system: SystemInitializer | None = None,
    *,
    details: bool = False,
    metrics: bool | None = None,
    registry: Any = None,
    drain: bool = True,
) -> list[Route]:
    """``GET /livez``, ``/readyz``, ``/startupz``, ``/health``, ``/ready``, ``/metrics`` and ``/drainz`` as routes.

    Bodies are ``application/health+json`` with status 200 (pass, warn) or 503 (fail);
    ``details=True`` adds latency and error codes. ``/metrics`` (*registry*: yours, so
    your own metrics are served beside ours): by default served when ``prometheus_client``
    is installed and left out when it is not; ``metrics=True`` asks for it (without the
    ``metrics`` extra it answers 501 naming the install command), ``metrics=False`` leaves it out.
    ``POST /drainz`` (for a Kubernetes ``preStop`` hook; ``drain=False`` leaves it out) runs the
    system's drain: readiness fails at once, requests keep being served, and it answers after
    ``drain_delay``. Only a loopback caller may drain, or, with ``drain_token`` set, one sending
    ``Authorization: Bearer <token>``; ``DELETE /drainz`` undoes a drain; ``GET``/``HEAD`` answer
    405 and change nothing. Requests in flight are counted by :class:`ProbeMiddleware` only.
    ``GET /readyz/<group>`` answers a health group (``health_groups``): its members only, with its
    policy and time budget; 404 naming the groups for an unknown one.
    """
    routes: list[Route] = []
    endpoint_metrics = MetricsEndpoint(registry, system) if metrics is not False and has_metrics() else None
    for path, kind in DEFAULT_PATHS.items():
        if kind == "drain":
            if drain:
                routes.append(Route(path, _drain_endpoint(system), methods=_EVERY_METHOD, include_in_schema=False))
            continue
        if kind == "metrics":
            if endpoint_metrics is not None:
                routes.append(
                    Route(path, _metrics_endpoint(endpoint_metrics), methods=["GET"], include_in_schema=False)
                )
            elif metrics:  # asked for, but the extra is missing: say so instead of a silent 404
                routes.append(Route(path, _no_metrics, methods=["GET"], include_in_schema=False))
            continue
        routes.append(Route(path, _probe_endpoint(kind, system, details), methods=["GET"], include_in_schema=False))
    routes.append(Route("/readyz/{group}", _group_endpoint(system, details), methods=["GET"], include_in_schema=False))
    return routes


# /drainz takes every method: POST drains, DELETE undoes, the rest get our 405 (GET and HEAD never drain).
_EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _probe_endpoint(kind: str, system: SystemInitializer | None, details: bool) -> Any:
    async def endpoint(request: Request) -> Response:
        target = system if system is not None else system_of(request)
        report = await probe(kind, target, starting=pending(request.scope.get("state"), request.scope.get("app")))
        return Response(
            render(report, details=details),
            status_code=report.http_status,
            media_type=CONTENT_TYPE,
            headers={"cache-control": "no-store"},
        )

    endpoint.__name__ = f"infraboot_{kind}"
    return endpoint


def _group_endpoint(system: SystemInitializer | None, details: bool) -> Any:
    async def endpoint(request: Request) -> Response:
        target = system if system is not None else system_of(request)
        group = request.path_params["group"]
        if group not in (target.health_groups or ()):
            return Response(no_group(target, group), status_code=404, media_type="application/json")
        starting = pending(request.scope.get("state"), request.scope.get("app"))
        report = await probe("readiness", target, starting=starting, group=group)
        return Response(
            render(report, details=details),
            status_code=report.http_status,
            media_type=CONTENT_TYPE,
            headers={"cache-control": "no-store"},
        )

    endpoint.__name__ = "infraboot_readiness_group"
    return endpoint


def _drain_endpoint(system: SystemInitializer | None) -> Any:
    async def endpoint(request: Request) -> Response:
        target = system if system is not None else system_of(request)
        status, body, extra = await answer_drain(target, request.scope)
        headers = {"cache-control": "no-store", **{k.decode(): v.decode() for k, v in extra}}
        return Response(body, status_code=status, media_type="application/json", headers=headers)

    endpoint.__name__ = "infraboot_drain"
    return endpoint


async def _no_metrics(request: Request) -> Response:
    return Response(NO_METRICS, status_code=501, media_type="text/plain")


def _metrics_endpoint(metrics: MetricsEndpoint) -> Any:
    async def endpoint(request: Request) -> Response:
        return Response(metrics.body(), media_type=metrics.content_type)

    endpoint.__name__ = "infraboot_metrics"
    return endpoint
