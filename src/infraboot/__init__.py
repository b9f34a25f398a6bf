"""infraboot: start, check and stop the infrastructure of an async Python service.

::

    import infraboot

    await infraboot.ensure_initialized(["redis", "database"])
    redis = infraboot.get_redis()
    ...
    await infraboot.shutdown()

The core imports no driver and no framework; built-in components import theirs
when they start, and each framework adapter is its own module
(``infraboot.fastapi``, ``infraboot.starlette``, ``infraboot.asyncio``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._accessors import (
    close_database,
    close_redis,
    get_engine,
    get_redis,
    get_session,
    init_database,
    init_redis,
    pool_stats,
    validate_config,
)
from ._component import Component, Context, component
from ._default import (
    default_system,
    ensure_initialized,
    get,
    health,
    liveness,
    readiness,
    register,
    shutdown,
    startup,
    state,
)
from ._health import ComponentHealth, HealthReport
from ._redact import SecretURL
from ._report import ComponentResult, ShutdownReport, StartupReport, StopResult
from ._retry import set_testing
from ._state import ComponentState
from ._system import SystemInitializer
from .exceptions import (
    ComponentUnavailableError,
    ConfigError,
    DependencyError,
    InfrabootError,
    NotInitializedError,
    StartupError,
)

if TYPE_CHECKING:
    from ._settings import DatabaseSettings, RedisSettings

__version__ = "0.1.0"

__all__ = [
    "Component",
    "ComponentHealth",
    "ComponentResult",
    "ComponentState",
    "ComponentUnavailableError",
    "ConfigError",
    "Context",
    "DatabaseSettings",
    "DependencyError",
    "HealthReport",
    "InfrabootError",
    "NotInitializedError",
    "RedisSettings",
    "SecretURL",
    "ShutdownReport",
    "StartupError",
    "StartupReport",
    "StopResult",
    "SystemInitializer",
    "__version__",
    "close_database",
    "close_redis",
    "component",
    "default_system",
    "ensure_initialized",
    "get",
    "get_engine",
    "get_redis",
    "get_session",
    "health",
    "init_database",
    "init_redis",
    "liveness",
    "pool_stats",
    "readiness",
    "register",
    "set_testing",
    "shutdown",
    "startup",
    "state",
    "validate_config",
]

# The settings classes are built on pydantic, which the core must not import:
# they load on first attribute access (PEP 562), nothing else does.
_LAZY = {"RedisSettings": "._settings", "DatabaseSettings": "._settings"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'infraboot' has no attribute {name!r}"
        raise AttributeError(msg)
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
