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

# Not ``from typing import TYPE_CHECKING``: typing alone costs more than the rest of this file.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._accessors import (
        close_database,
        close_redis,
        configure,
        get_engine,
        get_redis,
        get_session,
        init_database,
        init_redis,
        pool_stats,
        validate_config,
    )
    from ._component import Component, ComponentOptions, Context, NotConfigured, component
    from ._database import DatabaseComponent
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
    from ._drain import DrainReport
    from ._health import ComponentHealth, HealthReport
    from ._once import once
    from ._redact import SecretURL
    from ._redis import RedisComponent
    from ._report import ComponentResult, ComponentSnapshot, ShutdownReport, StartupReport, StopResult
    from ._retry import set_testing
    from ._settings import DatabaseSettings, RedisSettings
    from ._state import ComponentState
    from ._system import SystemInitializer
    from ._traffic import Traffic
    from .exceptions import (
        ComponentUnavailableError,
        ConfigError,
        DependencyError,
        InfrabootError,
        NotInitializedError,
        StartupError,
        UnknownComponentError,
    )

__version__ = "0.1.0"

__all__ = [
    "Component",
    "ComponentHealth",
    "ComponentOptions",
    "ComponentResult",
    "ComponentSnapshot",
    "ComponentState",
    "ComponentUnavailableError",
    "ConfigError",
    "Context",
    "DatabaseComponent",
    "DatabaseSettings",
    "DependencyError",
    "DrainReport",
    "HealthReport",
    "InfrabootError",
    "NotConfigured",
    "NotInitializedError",
    "RedisComponent",
    "RedisSettings",
    "SecretURL",
    "ShutdownReport",
    "StartupError",
    "StartupReport",
    "StopResult",
    "SystemInitializer",
    "Traffic",
    "UnknownComponentError",
    "__version__",
    "close_database",
    "close_redis",
    "component",
    "configure",
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
    "once",
    "pool_stats",
    "readiness",
    "register",
    "set_testing",
    "shutdown",
    "startup",
    "state",
    "validate_config",
]

# Every public name loads on first use (PEP 562): ``import infraboot`` costs almost
# nothing, and the console script's ``--version`` starts as fast as Python itself.
_LAZY = {
    "close_database": "._accessors",
    "close_redis": "._accessors",
    "configure": "._accessors",
    "get_engine": "._accessors",
    "get_redis": "._accessors",
    "get_session": "._accessors",
    "init_database": "._accessors",
    "init_redis": "._accessors",
    "pool_stats": "._accessors",
    "validate_config": "._accessors",
    "Component": "._component",
    "ComponentOptions": "._component",
    "Context": "._component",
    "NotConfigured": "._component",
    "DatabaseComponent": "._database",
    "RedisComponent": "._redis",
    "component": "._component",
    "default_system": "._default",
    "ensure_initialized": "._default",
    "get": "._default",
    "health": "._default",
    "liveness": "._default",
    "readiness": "._default",
    "register": "._default",
    "shutdown": "._default",
    "startup": "._default",
    "state": "._default",
    "ComponentHealth": "._health",
    "HealthReport": "._health",
    "once": "._once",
    "SecretURL": "._redact",
    "ComponentResult": "._report",
    "ComponentSnapshot": "._report",
    "ShutdownReport": "._report",
    "DrainReport": "._drain",
    "StartupReport": "._report",
    "StopResult": "._report",
    "set_testing": "._retry",
    "DatabaseSettings": "._settings",  # pydantic: never loaded by the core itself
    "RedisSettings": "._settings",
    "ComponentState": "._state",
    "SystemInitializer": "._system",
    "Traffic": "._traffic",
    "ComponentUnavailableError": ".exceptions",
    "ConfigError": ".exceptions",
    "DependencyError": ".exceptions",
    "InfrabootError": ".exceptions",
    "NotInitializedError": ".exceptions",
    "StartupError": ".exceptions",
    "UnknownComponentError": ".exceptions",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'infraboot' has no attribute {name!r}"
        raise AttributeError(msg)
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
