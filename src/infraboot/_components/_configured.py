"""The shared frame of the built-in components: settings given in code or read from the environment."""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, Unpack

from infraboot._engine._component import Component, ComponentOptions
from infraboot._engine._switches import env_prefix
from infraboot.exceptions import ConfigError

if TYPE_CHECKING:
    from ._settings import SettingsBase

__all__ = ["SETTINGS_FIELDS", "ConfiguredComponent"]

T = TypeVar("T")
S = TypeVar("S", bound="SettingsBase")

_COMMON = ("url", "enabled", "required", "connect_timeout", "check_timeout", "max_retries", "credentials")
#: The fields of each built-in settings class, by ``(settings_module, settings_class)``: what the
#: did-you-mean check for misspelt variables knows without importing pydantic (a bare install with
#: custom components only must not need it). ``tests/test_variables.py`` keeps this in step with
#: the classes' ``model_fields``.
SETTINGS_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("infraboot._components._settings", "RedisSettings"): (
        *_COMMON,
        *("socket_timeout", "max_connections", "health_check_interval", "warmup_connections", "tls_verify"),
        *("ssl_ca_certs", "client_options", "sentinel_username", "sentinel_password"),
        *("cluster_require_full_coverage", "cluster_dynamic_startup_nodes"),
    ),
    ("infraboot._components._settings", "DatabaseSettings"): (
        *_COMMON,
        *("pool_size", "max_overflow", "pool_timeout", "pool_recycle", "pre_ping", "statement_timeout"),
        *("warmup_connections", "pgbouncer", "echo", "application_name", "role", "engine_options"),
        "session_options",
    ),
    ("infraboot._components._client_settings", "NatsSettings"): (
        *_COMMON,
        *("servers", "reconnect_interval", "ping_interval", "jetstream", "check_stream", "drain_timeout"),
        "connection_options",
    ),
    ("infraboot._components._client_settings", "RabbitMQSettings"): (
        *_COMMON,
        *("heartbeat", "reconnect_interval", "channel_pool_size", "publisher_confirms", "operation_timeout"),
        *("check_queue", "connection_options"),
    ),
    ("infraboot._components._client_settings", "HttpSettings"): (
        *_COMMON,
        *("health_path", "request_timeout", "max_connections", "max_keepalive", "count_5xx", "passive_window"),
        "client_options",
    ),
}


class ConfiguredComponent(Component[T], Generic[T, S]):
    """A component configured by a settings class: values given in code, else the environment.

    ``settings`` is a settings object or a mapping of its fields (a mapping beats the
    environment field by field; an object is used as it is). ``env_prefix`` names the
    variables of a named instance: ``RedisComponent("cache", env_prefix="CACHE_REDIS_")``
    reads ``CACHE_REDIS_URL``; the default is ``REDIS_`` / ``DATABASE_`` for the built-in
    names and ``<NAME>_`` for any other. The settings decide ``required``, the attempt
    ``timeout`` (the connect timeout) and ``retries``; keyword options win. An optional
    component never holds startup longer than one connect timeout (``deadline``).
    """

    settings_class: ClassVar[str]  # the name of the settings class in settings_module
    #: The module holding ``settings_class`` (imported on first use: pydantic loads then, not at import).
    settings_module: ClassVar[str] = "infraboot._components._settings"
    default_name: ClassVar[str]

    def __init__(
        self,
        first: str | S | None = None,
        /,
        *,
        name: str | None = None,
        settings: S | Mapping[str, Any] | None = None,
        env_prefix: str | None = None,
        env_file: str | Path | None = None,
        **options: Unpack[ComponentOptions],
    ) -> None:
        if isinstance(first, str):
            name = first
        elif first is not None:  # the older form: RedisComponent(settings, name=...)
            settings = first
        chosen = name or self.default_name
        if env_prefix is None:
            env_prefix = self._prefix_for(chosen)
        elif not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env_prefix):
            msg = f"{type(self).__name__}({chosen!r}): env_prefix={env_prefix!r} must look like 'CACHE_REDIS_'"
            raise ConfigError(msg)
        self.env_prefix = env_prefix
        self._given: S | Mapping[str, Any] | None = settings
        self._env_file = env_file
        self.settings: S | None = None
        self._options = options
        super().__init__(chosen, **options)
        if settings is not None and not isinstance(settings, Mapping):
            self._apply(settings)  # a settings object: required, timeouts and retries are known at once

    def _prefix_for(self, name: str) -> str:
        if name == self.default_name:
            return f"{self.default_name.upper()}_"
        return env_prefix(name)

    def _settings_type(self) -> type[SettingsBase]:
        module = importlib.import_module(self.settings_module)  # pydantic loads here, not at import
        base: type[SettingsBase] = getattr(module, self.settings_class)
        return base.with_prefix(self.env_prefix)

    def use(self, settings: S | Mapping[str, Any] | None = None, *, env_file: str | Path | None = None) -> None:
        """Settings given in code (an object, or a mapping that beats the environment), read at the next start."""
        self._given = settings
        self._env_file = env_file

    @property
    def given(self) -> tuple[S | Mapping[str, Any] | None, str | Path | None]:
        """The settings given in code and the env file, as :meth:`use` last took them (a test kit puts them back)."""
        return self._given, self._env_file

    def given_fields(self) -> dict[str, Any]:
        """The fields given in code, as a mapping (a settings object: the fields it was made with)."""
        given = self._given
        if given is None:
            return {}
        if isinstance(given, Mapping):
            return dict(given)
        return {field: getattr(given, field) for field in given.model_fields_set}

    def env_names(self) -> tuple[str, frozenset[str], str | None]:
        """The prefix, the variables the settings read under it (``REDIS_URL``, ...) and the env file, if any.

        A built-in settings class's fields come from :data:`SETTINGS_FIELDS`: listing them loads no pydantic.
        """
        fields = SETTINGS_FIELDS.get((self.settings_module, self.settings_class))
        if fields is None:  # a settings class of another package's component
            fields = tuple(self._settings_type().model_fields)
        names = frozenset(f"{self.env_prefix}{field}".upper() for field in fields)
        return self.env_prefix.upper(), names, None if self._env_file is None else str(self._env_file)

    def settings_problems(
        self, settings: S | Mapping[str, Any] | None = None, *, env_file: str | Path | None = None
    ) -> list[str]:
        """What would be wrong with these settings (and the environment as it is now), one line each.

        For checking before :meth:`use`: ``infraboot.configure()`` applies nothing when anything is wrong.
        """
        module = importlib.import_module("infraboot._components._settings")
        try:
            module.load_settings(self._settings_type(), settings, env_file=env_file)
        except ConfigError as exc:
            return list(exc.problems)
        return []

    def _apply(self, settings: S) -> None:
        self.settings = settings
        o = self._options
        self.required = o.get("required", settings.required)
        self.timeout = o.get("timeout", settings.connect_timeout)
        self.retries = o.get("retries", settings.max_retries)
        self.check_timeout = o.get("check_timeout", settings.check_timeout)
        self.deadline = o.get("deadline", None if self.required else settings.connect_timeout)

    @property
    def target(self) -> str | None:
        url = self.settings.url if self.settings is not None else None
        return None if url is None else str(url)

    def configure(self) -> str | None:
        module = importlib.import_module("infraboot._components._settings")
        settings: S = module.load_settings(self._settings_type(), self._given, env_file=self._env_file)
        self._apply(settings)
        reason: str | None = settings.unavailable(self.name)
        if reason is None and settings.url is not None:
            preload_drivers(settings.url.scheme)
        return reason


# The modules a start imports for each URL scheme. configure() imports them before the first
# attempt's clock starts, so the waterfall shows the connect time, not the driver's import
# (0.2-0.4 s for redis-py or SQLAlchemy on a cold interpreter), and the import never eats the
# attempt's timeout. A missing one is left to the start, whose message names the extra to install.
_POSTGRES = ("sqlalchemy.ext.asyncio", "asyncpg", "sqlalchemy.dialects.postgresql.asyncpg")
DRIVERS: Mapping[str, tuple[str, ...]] = {
    "memory": ("fakeredis",),
    "redis": ("redis.asyncio",),
    "rediss": ("redis.asyncio",),
    "unix": ("redis.asyncio",),
    "redis+sentinel": ("redis.asyncio", "redis.asyncio.sentinel"),
    "redis+cluster": ("redis.asyncio", "redis.asyncio.cluster"),
    "postgresql+asyncpg": _POSTGRES,
    "postgresql": _POSTGRES,  # becomes postgresql+asyncpg://
    "postgres": _POSTGRES,
    "sqlite+aiosqlite": ("sqlalchemy.ext.asyncio", "aiosqlite", "sqlalchemy.dialects.sqlite.aiosqlite"),
    "mysql+asyncmy": ("sqlalchemy.ext.asyncio", "asyncmy", "sqlalchemy.dialects.mysql.asyncmy"),
    "mysql": ("sqlalchemy.ext.asyncio", "asyncmy", "sqlalchemy.dialects.mysql.asyncmy"),
    "mysql+aiomysql": ("sqlalchemy.ext.asyncio", "aiomysql", "sqlalchemy.dialects.mysql.aiomysql"),
    "amqp": ("aio_pika",),
    "amqps": ("aio_pika",),
    "nats": ("nats", "nats.js"),
    "tls": ("nats", "nats.js"),
    "http": ("httpx",),
    "https": ("httpx",),
}


def preload_drivers(scheme: str) -> None:
    """Import the driver modules a URL of *scheme* needs, when they are installed."""
    for name in DRIVERS.get(scheme, ()):
        try:
            importlib.import_module(name)
        except ImportError:
            return
