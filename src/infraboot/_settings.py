"""Settings of the built-in components, read from the environment (12-factor names).

Built on pydantic-settings; this module is imported only when settings are used,
never by ``import infraboot``.  Type errors and semantic problems alike become one
:class:`~infraboot.ConfigError` that names every bad field (by its environment
variable) and its fix, with secrets redacted.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._checks import count_problem, seconds_problem
from ._redact import SecretURL
from .exceptions import ConfigError

__all__ = ["DatabaseSettings", "RedisSettings", "load_settings", "validate_config"]


def _to_url(value: Any) -> Any:
    if value is None or isinstance(value, SecretURL):
        return value
    if isinstance(value, str):
        return SecretURL(value) if value.strip() else None
    return value


URL = Annotated[SecretURL | None, BeforeValidator(_to_url)]

_SSLMODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
_REDIS_SCHEMES = ("redis", "rediss", "unix", "memory")
_DB_SCHEMES = ("postgresql+asyncpg", "sqlite+aiosqlite")


class SettingsBase(BaseSettings):
    model_config = SettingsConfigDict(
        arbitrary_types_allowed=True, extra="forbid", validate_default=False, frozen=True, env_ignore_empty=True
    )
    _prefix: ClassVar[str] = ""

    url: URL = None
    enabled: bool = True
    required: bool = True
    connect_timeout: float = 5.0
    check_timeout: float = 2.0
    max_retries: int = 3

    def env(self, field: str) -> str:
        return f"{self._prefix}{field.upper()}"

    def disabled_reason(self) -> str | None:
        if not self.enabled:
            return f"{self.env('enabled')}=false"
        if self.url is None:
            return f"{self.env('url')} is not set"
        return None

    def problems(self) -> list[str]:
        """Every semantic problem of these settings, one line each, naming the fix."""
        return []

    def _seconds(self, out: list[str], field: str, *, allow_zero: bool = False, example: str = "5") -> None:
        problem = seconds_problem(self.env(field), getattr(self, field), allow_zero=allow_zero, example=example)
        if problem:
            out.append(problem)

    def _count(self, out: list[str], field: str, minimum: int, example: str) -> None:
        problem = count_problem(self.env(field), getattr(self, field), minimum=minimum, example=example)
        if problem:
            out.append(problem)

    def _url_problems(self, out: list[str], schemes: tuple[str, ...]) -> None:
        url = self.url
        if url is None:
            return
        name = self.env("url")
        if url.scheme not in schemes:
            shown = url.scheme or "(none)"
            out.append(f"{name}={url}: unknown scheme {shown!r}; use one of {', '.join(s + '://' for s in schemes)}")
            return
        if url.scheme in ("redis", "rediss", "postgresql+asyncpg"):
            if not url.host:
                out.append(f"{name}={url}: missing host; write it as {url.scheme}://HOST:PORT/...")
            if url.port_text is not None and (url.port is None or not 0 < url.port < 65536):
                out.append(f"{name}={url}: bad port {url.port_text!r}; use a number from 1 to 65535")
        if url.scheme == "unix" and not url.path:
            out.append(f"{name}={url}: missing socket path; write it as unix:///run/redis/redis.sock")


class RedisSettings(SettingsBase):
    """Settings of the built-in ``redis`` component, from ``REDIS_*`` variables.

    ``REDIS_URL`` (``redis://``, ``rediss://``, ``unix://``, or ``memory://`` for an
    embedded in-process Redis); unset means the component is disabled.
    ``REDIS_CONNECT_TIMEOUT`` bounds each start attempt (infraboot's own deadline);
    ``REDIS_SOCKET_TIMEOUT`` is the driver's per-command timeout.
    """

    model_config = SettingsConfigDict(env_prefix="REDIS_")
    _prefix: ClassVar[str] = "REDIS_"

    socket_timeout: float = 5.0
    max_connections: int = 50
    health_check_interval: float = 30.0
    warmup_connections: int = 1
    tls_verify: bool = True
    ssl_ca_certs: str | None = None

    def problems(self) -> list[str]:
        out: list[str] = []
        self._url_problems(out, _REDIS_SCHEMES)
        self._seconds(out, "connect_timeout", example="REDIS_CONNECT_TIMEOUT=5")
        self._seconds(out, "check_timeout", example="REDIS_CHECK_TIMEOUT=2")
        self._seconds(out, "socket_timeout", example="REDIS_SOCKET_TIMEOUT=5")
        self._seconds(out, "health_check_interval", allow_zero=True, example="REDIS_HEALTH_CHECK_INTERVAL=30")
        self._count(out, "max_retries", 0, "REDIS_MAX_RETRIES=3")
        self._count(out, "max_connections", 1, "REDIS_MAX_CONNECTIONS=50")
        self._count(out, "warmup_connections", 0, "REDIS_WARMUP_CONNECTIONS=1")
        if self.warmup_connections > self.max_connections:
            out.append(
                f"REDIS_WARMUP_CONNECTIONS={self.warmup_connections} exceeds REDIS_MAX_CONNECTIONS="
                f"{self.max_connections}; lower the warmup or raise the maximum"
            )
        if self.url is not None and self.url.scheme != "rediss":
            if not self.tls_verify:
                out.append("REDIS_TLS_VERIFY=false only applies to rediss:// URLs; remove it or use rediss://")
            if self.ssl_ca_certs:
                out.append("REDIS_SSL_CA_CERTS only applies to rediss:// URLs; remove it or use rediss://")
        return out


class DatabaseSettings(SettingsBase):
    """Settings of the built-in ``database`` component, from ``DATABASE_*`` variables.

    ``DATABASE_URL`` (``postgresql+asyncpg://`` or ``sqlite+aiosqlite://``); unset
    means the component is disabled. ``DATABASE_PGBOUNCER=true`` switches on the
    settings that work behind PgBouncer in transaction pooling.
    """

    model_config = SettingsConfigDict(env_prefix="DATABASE_")
    _prefix: ClassVar[str] = "DATABASE_"

    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 30.0
    pool_recycle: float = 1800.0
    pre_ping: bool = True
    warmup_connections: int = 1
    pgbouncer: bool = False
    echo: bool = False
    application_name: str | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.url is not None and self.url.scheme.startswith("sqlite")

    def problems(self) -> list[str]:
        out: list[str] = []
        self._url_problems(out, _DB_SCHEMES)
        self._count(out, "pool_size", 1, "DATABASE_POOL_SIZE=5")
        self._count(out, "max_overflow", 0, "DATABASE_MAX_OVERFLOW=10")
        self._count(out, "max_retries", 0, "DATABASE_MAX_RETRIES=3")
        self._count(out, "warmup_connections", 0, "DATABASE_WARMUP_CONNECTIONS=1")
        self._seconds(out, "pool_timeout", example="DATABASE_POOL_TIMEOUT=30")
        self._seconds(out, "connect_timeout", example="DATABASE_CONNECT_TIMEOUT=5")
        self._seconds(out, "check_timeout", example="DATABASE_CHECK_TIMEOUT=2")
        recycle = self.pool_recycle
        if math.isnan(recycle) or math.isinf(recycle) or (recycle <= 0 and recycle != -1):
            out.append(f"DATABASE_POOL_RECYCLE={recycle!r}: must be seconds > 0, or -1 to never recycle, e.g. 1800")
        if self.warmup_connections > self.pool_size + self.max_overflow:
            out.append(
                f"DATABASE_WARMUP_CONNECTIONS={self.warmup_connections} exceeds DATABASE_POOL_SIZE + "
                f"DATABASE_MAX_OVERFLOW ({self.pool_size + self.max_overflow}); lower the warmup or raise the pool"
            )
        url = self.url
        if url is not None:
            params = url.query_params
            sslmode = params.get("sslmode", params.get("ssl"))
            if sslmode is not None and sslmode not in _SSLMODES and sslmode.lower() not in ("true", "false"):
                out.append(
                    f"DATABASE_URL={url}: unknown sslmode {sslmode!r}; use one of {', '.join(sorted(_SSLMODES))}"
                )
            if self.pgbouncer and self.is_sqlite:
                out.append("DATABASE_PGBOUNCER=true needs a postgresql+asyncpg:// URL; remove it for SQLite")
            if self.is_sqlite and self.application_name:
                out.append("DATABASE_APPLICATION_NAME does not apply to SQLite; remove it")
            if self.is_sqlite and sslmode is not None:
                out.append(f"DATABASE_URL={url}: sslmode does not apply to SQLite; remove it")
        return out


def load_settings(cls: type[SettingsBase], settings: SettingsBase | None = None) -> SettingsBase:
    """Build *cls* from the environment (or check *settings*); raise ConfigError listing every problem."""
    if settings is None:
        try:
            settings = cls()
        except ValidationError as exc:
            raise _config_error(cls, exc) from None
    problems = settings.problems()
    if problems and settings.disabled_reason() is None:
        raise ConfigError.from_problems(problems)
    return settings


def _config_error(cls: type[SettingsBase], exc: ValidationError) -> ConfigError:
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        field = str(err["loc"][0]) if err["loc"] else "?"
        env = f"{cls._prefix}{field.upper()}"
        if err["type"] == "extra_forbidden":
            problems.append(f"{cls.__name__}: unknown setting {field!r}; check the spelling")
            continue
        problems.append(f"{env}: {err['msg']}; set it to a valid value (see docs/configuration.md)")
    return ConfigError.from_problems(problems)


def validate_config(*, redis: RedisSettings | None = None, database: DatabaseSettings | None = None) -> None:
    """Check the settings of the built-in components before any network I/O.

    Reads ``REDIS_*`` and ``DATABASE_*`` from the environment (or checks the given
    settings) and raises one :class:`~infraboot.ConfigError` that lists every bad
    field with its fix. Disabled components (no URL) are not checked further.
    """
    problems: list[str] = []
    for cls, given in ((RedisSettings, redis), (DatabaseSettings, database)):
        try:
            load_settings(cls, given)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError.from_problems(problems)
