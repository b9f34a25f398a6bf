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

    from ._base._redact import SecretURL
    from ._components._client_settings import HttpSettings, NatsSettings, RabbitMQSettings
    from ._components._credentials import CredentialProvider, Credentials, FileCredentials, RdsIamCredentials
    from ._components._database import DatabaseComponent
    from ._components._http import HttpDependency
    from ._components._nats import NatsComponent, NatsConnection
    from ._components._once import once
    from ._components._rabbitmq import MessageBroker, RabbitMQComponent
    from ._components._redis import RedisComponent
    from ._components._settings import DatabaseSettings, RedisSettings
    from ._engine._backoff import set_testing
    from ._engine._component import Component, ComponentOptions, Context, NotConfigured, component
    from ._engine._drain import DrainReport
    from ._engine._groups import HealthGroup
    from ._engine._health import ComponentHealth, HealthReport
    from ._engine._report import ComponentResult, ComponentSnapshot, ShutdownReport, StartupReport, StopResult
    from ._engine._state import ComponentState
    from ._engine._system import SystemInitializer
    from ._engine._traffic import Traffic
    from ._front._accessors import (
        close_database,
        close_redis,
        configure,
        get_engine,
        get_message_broker,
        get_redis,
        get_session,
        init_database,
        init_redis,
        pool_stats,
        validate_config,
    )
    from ._front._default import (
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
    "CredentialProvider",
    "Credentials",
    "DatabaseComponent",
    "DatabaseSettings",
    "DependencyError",
    "DrainReport",
    "FileCredentials",
    "HealthGroup",
    "HealthReport",
    "HttpDependency",
    "HttpSettings",
    "InfrabootError",
    "MessageBroker",
    "NatsComponent",
    "NatsConnection",
    "NatsSettings",
    "NotConfigured",
    "NotInitializedError",
    "RabbitMQComponent",
    "RabbitMQSettings",
    "RdsIamCredentials",
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
    "get_message_broker",
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
    "close_database": "._front._accessors",
    "close_redis": "._front._accessors",
    "configure": "._front._accessors",
    "get_engine": "._front._accessors",
    "get_message_broker": "._front._accessors",
    "get_redis": "._front._accessors",
    "get_session": "._front._accessors",
    "init_database": "._front._accessors",
    "init_redis": "._front._accessors",
    "pool_stats": "._front._accessors",
    "validate_config": "._front._accessors",
    "Component": "._engine._component",
    "ComponentOptions": "._engine._component",
    "Context": "._engine._component",
    "NotConfigured": "._engine._component",
    "DatabaseComponent": "._components._database",
    "MessageBroker": "._components._rabbitmq",
    "RabbitMQComponent": "._components._rabbitmq",
    "RabbitMQSettings": "._components._client_settings",
    "HttpDependency": "._components._http",
    "HttpSettings": "._components._client_settings",
    "NatsComponent": "._components._nats",
    "NatsConnection": "._components._nats",
    "NatsSettings": "._components._client_settings",
    "CredentialProvider": "._components._credentials",
    "Credentials": "._components._credentials",
    "FileCredentials": "._components._credentials",
    "RdsIamCredentials": "._components._credentials",
    "RedisComponent": "._components._redis",
    "component": "._engine._component",
    "default_system": "._front._default",
    "ensure_initialized": "._front._default",
    "get": "._front._default",
    "health": "._front._default",
    "liveness": "._front._default",
    "readiness": "._front._default",
    "register": "._front._default",
    "shutdown": "._front._default",
    "startup": "._front._default",
    "state": "._front._default",
    "ComponentHealth": "._engine._health",
    "HealthReport": "._engine._health",
    "HealthGroup": "._engine._groups",
    "once": "._components._once",
    "SecretURL": "._base._redact",
    "ComponentResult": "._engine._report",
    "ComponentSnapshot": "._engine._report",
    "ShutdownReport": "._engine._report",
    "DrainReport": "._engine._drain",
    "StartupReport": "._engine._report",
    "StopResult": "._engine._report",
    "set_testing": "._engine._backoff",
    "DatabaseSettings": "._components._settings",  # pydantic: never loaded by the core itself
    "RedisSettings": "._components._settings",
    "ComponentState": "._engine._state",
    "SystemInitializer": "._engine._system",
    "Traffic": "._engine._traffic",
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
