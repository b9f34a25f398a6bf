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

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._asgi import (
    DEFAULT_PATHS,
    MetricsEndpoint,
    ProbeMiddleware,
    has_metrics,
    lifespan,
    probe,
    render,
    resolve_system,
)
from ._health import CONTENT_TYPE
from ._system import SystemInitializer

__all__ = ["ProbeMiddleware", "health_routes", "lifespan", "system_of"]


def system_of(request: Request) -> SystemInitializer:
    """The system serving *request*: the lifespan's, else the default system."""
    return resolve_system(None, request.scope.get("state"))


def health_routes(
    system: SystemInitializer | None = None,
    *,
    details: bool = False,
    metrics: bool = True,
    registry: Any = None,
) -> list[Route]:
    """``GET /livez``, ``/readyz``, ``/startupz``, ``/health``, ``/ready`` and ``/metrics`` as Starlette routes.

    Bodies are ``application/health+json`` with status 200 (pass, warn) or 503 (fail);
    ``details=True`` adds latency and error codes. ``/metrics`` is served when
    ``prometheus_client`` is installed and *metrics* is true (*registry*: yours, so
    your own metrics are served beside ours).
    """
    routes: list[Route] = []
    endpoint_metrics = MetricsEndpoint(registry, system) if metrics and has_metrics() else None
    for path, kind in DEFAULT_PATHS.items():
        if kind == "metrics":
            if endpoint_metrics is not None:
                routes.append(
                    Route(path, _metrics_endpoint(endpoint_metrics), methods=["GET"], include_in_schema=False)
                )
            continue
        routes.append(Route(path, _probe_endpoint(kind, system, details), methods=["GET"], include_in_schema=False))
    return routes


def _probe_endpoint(kind: str, system: SystemInitializer | None, details: bool) -> Any:
    async def endpoint(request: Request) -> Response:
        target = system if system is not None else system_of(request)
        report = await probe(kind, target)
        return Response(
            render(report, details=details),
            status_code=report.http_status,
            media_type=CONTENT_TYPE,
            headers={"cache-control": "no-store"},
        )

    endpoint.__name__ = f"infraboot_{kind}"
    return endpoint


def _metrics_endpoint(metrics: MetricsEndpoint) -> Any:
    async def endpoint(request: Request) -> Response:
        return Response(metrics.body(), media_type=metrics.content_type)

    endpoint.__name__ = "infraboot_metrics"
    return endpoint
