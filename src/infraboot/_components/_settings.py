"""Settings of the built-in components: given in code, read from the environment (12-factor names), or both.

Built on pydantic-settings; this module is imported only when settings are used,
never by ``import infraboot``. Precedence, highest first: values given in code
(``infraboot.configure(redis={...})``, ``RedisSettings(...)``), then environment
variables, then the env file, then the defaults. Every problem -- type and range
alike, all of them at once -- becomes one :class:`~infraboot.ConfigError` whose lines
name the environment variable (or the keyword, when the value was given in code),
the bad value (redacted when secret) and an example.
"""

from __future__ import annotations

import contextvars
import json
import math
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BeforeValidator, PrivateAttr, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from infraboot._base._checks import count_problem, seconds_problem
from infraboot._base._redact import REDACTED, SecretURL, register_secret, scrub
from infraboot._engine._component import NotConfigured
from infraboot.exceptions import ConfigError

from ._urls import database_url_problems, redis_url_problems

__all__ = ["DatabaseSettings", "RedisSettings", "SettingsBase", "load_settings", "validate_config"]


def _to_url(value: Any) -> Any:
    """A URL as apps' own Settings classes hold it -- ``str``, pydantic's ``RedisDsn`` /
    ``PostgresDsn`` / ``AnyUrl``, a ``SecretStr`` holding one (or any secret with
    ``get_secret_value()``), or SQLAlchemy's ``URL`` -- as a :class:`SecretURL`."""
    reveal = getattr(value, "get_secret_value", None)
    if isinstance(value, SecretStr) or (callable(reveal) and not isinstance(value, str | SecretURL)):
        value = value.get_secret_value()
    render = getattr(value, "render_as_string", None)
    if callable(render) and not isinstance(value, str | SecretURL):  # SQLAlchemy's URL: str() would hide the password
        value = render(hide_password=False)
    if isinstance(value, _pydantic_url_types()):
        value = str(value)
    if value is None or isinstance(value, SecretURL):
        return value
    if isinstance(value, str):
        return SecretURL(value) if value.strip() else None
    return value


def _pydantic_url_types() -> tuple[type, ...]:
    """pydantic's URL classes: ``pydantic_core.Url`` before pydantic 2.10, ``pydantic.networks`` classes since."""
    import pydantic_core
    from pydantic import networks

    found: list[type] = [pydantic_core.Url, pydantic_core.MultiHostUrl]
    found.extend(t for t in (getattr(networks, "_BaseUrl", None), getattr(networks, "_BaseMultiHostUrl", None)) if t)
    return tuple(found)


URL = Annotated[SecretURL | None, BeforeValidator(_to_url)]

EnvFile = str | Path | None

# Driver options infraboot sets itself: each names the setting to use instead.
_OWNED_CLIENT_OPTIONS = {
    "url": "url",
    "host": "url",
    "port": "url",
    "db": "url",
    "username": "url",
    "password": "url",
    "unix_socket_path": "url",
    "socket_timeout": "socket_timeout",
    "socket_connect_timeout": "connect_timeout",
    "max_connections": "max_connections",
    "health_check_interval": "health_check_interval",
    "ssl_cert_reqs": "tls_verify",
    "ssl_check_hostname": "tls_verify",
    "ssl_ca_certs": "ssl_ca_certs",
    "connection_pool": "max_connections",
    "credential_provider": "credentials",
    "server": "url",
}
_OWNED_ENGINE_OPTIONS = {
    "url": "url",
    "echo": "echo",
    "pool_size": "pool_size",
    "max_overflow": "max_overflow",
    "pool_timeout": "pool_timeout",
    "pool_recycle": "pool_recycle",
    "pool_pre_ping": "pre_ping",
}
_OWNED_CONNECT_ARGS = {"timeout": "connect_timeout", "command_timeout": "statement_timeout"}
_OWNED_SESSION_OPTIONS = {"bind": "url", "binds": "url"}


class _EnvSource(EnvSettingsSource):
    """The environment, where a JSON setting that does not parse is handed on as its text.

    pydantic-settings raises a bare ``SettingsError`` (a traceback) for it; as text it fails
    validation like any other bad value, and the ConfigError names the variable.
    """

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        if field_name in _LIST_EXAMPLES and isinstance(value, str):
            return _list_or_text(value)
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            return value


# The fields of the settings being built that come from an env file, not from code (see _build).
_FROM_FILE: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "infraboot_from_file", default=MappingProxyType({})
)


class SettingsBase(BaseSettings):
    """What every built-in component's settings have: the URL, on/off, required, timeouts, retries.

    A bad value given here -- ``RedisSettings(connect_timeout="soon")`` -- is a
    :class:`~infraboot.ConfigError` naming the keyword; a value out of range is reported,
    under its keyword, when the component is configured.
    """

    model_config = SettingsConfigDict(
        arbitrary_types_allowed=True, extra="forbid", validate_default=False, frozen=True, env_ignore_empty=True
    )
    _prefix: ClassVar[str] = ""
    _in_code: frozenset[str] = PrivateAttr(default_factory=frozenset)
    _written: dict[str, Any] = PrivateAttr(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        from_file = _FROM_FILE.get()
        code = {k: v for k, v in values.items() if k not in from_file}
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _config_error(type(self), exc, code, from_file) from None
        self._in_code = frozenset(code)
        self._written = code  # as the code wrote them, for the messages

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _EnvSource(settings_cls), dotenv_settings, file_secret_settings

    url: URL = None
    enabled: bool = True
    required: bool = True
    connect_timeout: float = 5.0
    check_timeout: float = 2.0
    max_retries: int = 3
    credentials: Any = None  # file:PATH, aws-rds-iam, or an async provider given in code (see _credentials)

    @classmethod
    def with_prefix(cls, prefix: str) -> type[SettingsBase]:
        """This settings class reading ``<prefix>URL``, ``<prefix>REQUIRED``, ... (named instances)."""
        if prefix == cls._prefix:
            return cls
        key = (cls, prefix)
        found = _PREFIXED.get(key)
        if found is None:
            namespace = {
                "__annotations__": {"_prefix": "ClassVar[str]"},
                "__module__": cls.__module__,
                "__doc__": cls.__doc__,
                "model_config": SettingsConfigDict(env_prefix=prefix),
                "_prefix": prefix,
            }
            found = _PREFIXED[key] = type(cls.__name__, (cls,), namespace)
        return found

    def env(self, field: str) -> str:
        """How the user wrote *field*: its keyword when given in code, else its environment variable."""
        return field if field in self._in_code else f"{self._prefix}{field.upper()}"

    def unavailable(self, component: str) -> str | None:
        """Why the component cannot start as configured, or ``None``.

        An explicit ``ENABLED=false`` is a quiet ``disabled``; an unset URL on an optional
        component is :class:`NotConfigured` (a ``warn`` in health); on a required one it
        is a :class:`ConfigError` naming the three ways out.
        """
        if not self.enabled:
            return f"{self.env('enabled')}=false"
        if self.url is None:
            url, enabled, required = self.env("url"), self.env("enabled"), self.env("required")
            if self.required:
                msg = (
                    f"{url} is not set and {component!r} is required: set {url} (e.g. {url}={self._example_url}), "
                    f"or {enabled}=false to switch it off, or {required}=false to start without it"
                )
                raise ConfigError.from_problems([msg])
            return NotConfigured(f"{url} is not set")
        return None

    _example_url: ClassVar[str] = "scheme://host/..."

    def problems(self) -> list[str]:
        """Every semantic problem of these settings, one line each, naming the fix."""
        return []

    def _seconds(self, out: list[str], field: str, *, allow_zero: bool = False, example: str = "5") -> None:
        label = self.env(field)
        problem = seconds_problem(label, getattr(self, field), allow_zero=allow_zero, example=f"{label}={example}")
        if problem:
            out.append(self._as_written(problem, field))

    def _count(self, out: list[str], field: str, minimum: int, example: str) -> None:
        label = self.env(field)
        problem = count_problem(label, getattr(self, field), minimum=minimum, example=f"{label}={example}")
        if problem:
            out.append(self._as_written(problem, field))

    def _as_written(self, problem: str, field: str) -> str:
        """*problem* showing the value as the code wrote it (``-1``), not as it was parsed (``-1.0``)."""
        if field not in self._written:
            return problem
        label, parsed, written = self.env(field), getattr(self, field), self._written[field]
        return problem.replace(f"{label}={parsed!r}", f"{label}={written!r}", 1)

    def _owned(self, out: list[str], field: str, options: Mapping[str, Any], owned: Mapping[str, str]) -> None:
        for key in options:
            if key in owned:
                instead = self.env(owned[key])
                out.append(f"{self.env(field)}: {key!r} is set by infraboot; use {instead} instead")

    def _url_problems(self, out: list[str], check: Any) -> None:
        if self.url is not None:
            out.extend(check(self.url, self.env("url")))

    def _credentials_problems(self, out: list[str]) -> None:
        from ._credentials import credentials_problem

        has_password = self.url is not None and bool(self.url.password)
        problem = credentials_problem(self.env("credentials"), self.credentials, url_has_password=has_password)
        if problem:
            out.append(problem)


_PREFIXED: dict[tuple[type[SettingsBase], str], type[SettingsBase]] = {}


def _remember_secret(value: SecretStr | None) -> SecretStr | None:
    if value is not None and value.get_secret_value():
        register_secret(value.get_secret_value())  # scrubbed from any driver message too
    return value


Secret = Annotated[SecretStr | None, AfterValidator(_remember_secret)]


class RedisSettings(SettingsBase):
    """Settings of the built-in ``redis`` component, from ``REDIS_*`` variables (or given in code).

    ``REDIS_URL`` (``redis://``, ``rediss://``, ``unix://``, or ``memory://`` for an
    embedded in-process Redis). Unset, a required component is a configuration error and
    an optional one is "not configured"; ``REDIS_ENABLED=false`` switches it off.
    ``REDIS_CONNECT_TIMEOUT`` bounds each start attempt (infraboot's own deadline);
    ``REDIS_SOCKET_TIMEOUT`` is the driver's per-command timeout. ``client_options``
    (``REDIS_CLIENT_OPTIONS`` as JSON) go to the client as they are, ``memory://`` too:
    ``client_options={"decode_responses": True}``.

    Redis Sentinel: ``REDIS_URL=redis+sentinel://[:PASSWORD@]H1:26379,H2:26379/SERVICE[/DB]``
    (the password is the master's); ``REDIS_SENTINEL_USERNAME`` / ``REDIS_SENTINEL_PASSWORD``
    authenticate to the sentinels themselves (unset: the sentinels need no password).
    Redis Cluster: ``REDIS_URL=redis+cluster://[:PASSWORD@]H1:6379,H2:6379``;
    ``REDIS_CLUSTER_REQUIRE_FULL_COVERAGE`` (default true) makes a start fail unless all
    16384 slots are served; ``REDIS_CLUSTER_DYNAMIC_STARTUP_NODES`` says whether the nodes
    the cluster reports replace the URL's hosts when the client re-reads the topology --
    unset, they do only when every URL host is an IP address, so DNS names are kept.

    ``REDIS_CREDENTIALS``: where the user and password of every new connection come from,
    instead of the URL: ``file:/var/run/secrets/redis`` (a mounted Secret or a Vault agent's
    file, re-read when it changes) or, in code, an ``async def credentials()`` returning
    :class:`~infraboot.Credentials` (see ``docs/credentials.md``).
    """

    model_config = SettingsConfigDict(env_prefix="REDIS_")
    _prefix: ClassVar[str] = "REDIS_"
    _example_url: ClassVar[str] = "redis://127.0.0.1:6379/0"

    socket_timeout: float = 5.0
    max_connections: int = 50
    health_check_interval: float = 30.0
    warmup_connections: int = 1
    tls_verify: bool = True
    ssl_ca_certs: str | None = None
    client_options: dict[str, Any] = {}
    sentinel_username: str | None = None
    sentinel_password: Secret = None
    cluster_require_full_coverage: bool = True
    cluster_dynamic_startup_nodes: bool | None = None

    @property
    def topology(self) -> str:
        """``sentinel``, ``cluster`` or ``single``: what the URL points at."""
        scheme = self.url.scheme if self.url is not None else ""
        return {"redis+sentinel": "sentinel", "redis+cluster": "cluster"}.get(scheme, "single")

    def problems(self) -> list[str]:
        out: list[str] = []
        self._url_problems(out, redis_url_problems)
        self._topology_problems(out)
        self._seconds(out, "connect_timeout", example="5")
        self._seconds(out, "check_timeout", example="2")
        self._seconds(out, "socket_timeout", example="5")
        self._seconds(out, "health_check_interval", allow_zero=True, example="30")
        self._count(out, "max_retries", 0, "3")
        self._count(out, "max_connections", 1, "50")
        self._count(out, "warmup_connections", 0, "1")
        if self.warmup_connections > self.max_connections:
            out.append(
                f"{self.env('warmup_connections')}={self.warmup_connections} exceeds {self.env('max_connections')}="
                f"{self.max_connections}; lower the warmup or raise the maximum"
            )
        if self.url is not None and self.url.scheme != "rediss":
            if not self.tls_verify:
                out.append(f"{self.env('tls_verify')}=false only applies to rediss:// URLs; remove it or use rediss://")
            if self.ssl_ca_certs:
                out.append(f"{self.env('ssl_ca_certs')} only applies to rediss:// URLs; remove it or use rediss://")
        self._owned(out, "client_options", self.client_options, _OWNED_CLIENT_OPTIONS)
        self._credentials_problems(out)
        if self.credentials is not None and self.url is not None:
            label = self.env("credentials")
            if self.topology != "single" or self.url.scheme == "memory":
                out.append(f"{label} applies to redis://, rediss:// and unix:// URLs only; remove it")
            elif self.credentials == "aws-rds-iam":
                out.append(f"{label}=aws-rds-iam is for databases; use file:PATH or an async function for Redis")
        return out

    def _topology_problems(self, out: list[str]) -> None:
        if self.url is None:
            return
        topology, url = self.topology, self.env("url")
        if topology != "sentinel":
            for field in ("sentinel_username", "sentinel_password"):
                if getattr(self, field) is not None:
                    out.append(f"{self.env(field)} only applies to redis+sentinel:// URLs; remove it or use one")
        if topology != "cluster":
            if not self.cluster_require_full_coverage:
                label = self.env("cluster_require_full_coverage")
                out.append(f"{label}=false only applies to redis+cluster:// URLs; remove it or use one")
            if self.cluster_dynamic_startup_nodes is not None:
                label = self.env("cluster_dynamic_startup_nodes")
                out.append(f"{label} only applies to redis+cluster:// URLs; remove it or use one")
        elif self.warmup_connections > 1:
            label = self.env("warmup_connections")
            out.append(
                f"{label}={self.warmup_connections} does not apply to {url}=redis+cluster://... "
                f"(a cluster client opens connections per node on first use); set {label}=1"
            )


class DatabaseSettings(SettingsBase):
    """Settings of the built-in ``database`` component, from ``DATABASE_*`` variables (or given in code).

    ``DATABASE_URL`` (``postgresql+asyncpg://`` or ``sqlite+aiosqlite://``). Unset, a
    required component is a configuration error and an optional one is "not configured".
    ``DATABASE_PGBOUNCER=true`` switches on the settings that work behind PgBouncer in
    transaction pooling. ``engine_options`` go to ``create_async_engine`` (``connect_args``
    is merged with infraboot's); ``session_options`` to every ``AsyncSession`` that
    ``get_session()`` and the framework dependencies open (per-call arguments win), e.g.
    ``session_options={"expire_on_commit": False, "autoflush": False}``.

    ``DATABASE_STATEMENT_TIMEOUT`` (seconds, default 30; ``0``: none) bounds every statement,
    also on a network that went silent: the server cancels a slow statement at that time
    (``statement_timeout``; not sent behind PgBouncer), and one second later the client
    gives up on a server that never answered, drops that connection (and the idle ones
    beside it) and raises ``TimeoutError``. Raise it for long reports or migrations.

    ``DATABASE_ROLE`` says what the database is for: ``primary`` (writable: readiness fails
    while it is connected to a standby, ``pg_is_in_recovery()``), ``replica`` (read-only
    sessions, ``default_transaction_read_only=on``) or ``any``. Unset, it follows the URL's
    ``target_session_attrs``: ``standby``, ``prefer-standby`` and ``read-only`` mean
    ``replica``, anything else ``primary`` (``any`` for SQLite).

    ``DATABASE_CREDENTIALS``: where the password (and user) of every new connection come
    from, instead of the URL: ``file:/var/run/secrets/db`` (re-read when it changes),
    ``aws-rds-iam`` (RDS IAM tokens, boto3) or, in code, an ``async def credentials()``
    returning :class:`~infraboot.Credentials` (see ``docs/credentials.md``).
    """

    model_config = SettingsConfigDict(env_prefix="DATABASE_")
    _prefix: ClassVar[str] = "DATABASE_"
    _example_url: ClassVar[str] = "postgresql+asyncpg://app@127.0.0.1:5432/app"

    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 30.0
    pool_recycle: float = 1800.0
    pre_ping: bool = True
    statement_timeout: float = 30.0
    warmup_connections: int = 1
    pgbouncer: bool = False
    echo: bool = False
    application_name: str | None = None
    role: str | None = None
    engine_options: dict[str, Any] = {}
    session_options: dict[str, Any] = {}

    @property
    def is_mysql(self) -> bool:
        """MySQL or MariaDB (``mysql…://`` or ``mariadb…://``)."""
        return self.url is not None and self.url.scheme.startswith(("mysql", "mariadb"))

    @property
    def is_sqlite(self) -> bool:
        return self.url is not None and self.url.scheme.startswith("sqlite")

    @property
    def effective_role(self) -> str:
        """``primary``, ``replica`` or ``any``: :attr:`role`, else what the URL's ``target_session_attrs`` implies."""
        if self.role is not None:
            return self.role
        if self.url is None or self.is_sqlite or self.is_mysql:
            return "any"
        attrs = self.url.query_params.get("target_session_attrs", "")
        return "replica" if attrs in _REPLICA_ATTRS else "primary"

    def problems(self) -> list[str]:
        out: list[str] = []
        self._url_problems(out, database_url_problems)
        self._count(out, "pool_size", 1, "5")
        self._count(out, "max_overflow", 0, "10")
        self._count(out, "max_retries", 0, "3")
        self._count(out, "warmup_connections", 0, "1")
        self._seconds(out, "pool_timeout", example="30")
        self._seconds(out, "statement_timeout", allow_zero=True, example="30")
        self._seconds(out, "connect_timeout", example="5")
        self._seconds(out, "check_timeout", example="2")
        recycle = self.pool_recycle
        if math.isnan(recycle) or math.isinf(recycle) or (recycle <= 0 and recycle != -1):
            label = self.env("pool_recycle")
            out.append(f"{label}={recycle!r}: must be seconds > 0, or -1 to never recycle, e.g. {label}=1800")
        if self.warmup_connections > self.pool_size + self.max_overflow:
            out.append(
                f"{self.env('warmup_connections')}={self.warmup_connections} exceeds {self.env('pool_size')} + "
                f"{self.env('max_overflow')} ({self.pool_size + self.max_overflow}); lower the warmup or raise the pool"
            )
        if self.url is not None:  # the URL itself is checked by _urls, scheme by scheme
            other = "SQLite" if self.is_sqlite else "MySQL" if self.is_mysql else None
            if self.pgbouncer and other:
                out.append(f"{self.env('pgbouncer')}=true needs a PostgreSQL URL; remove it for {other}")
            if other and self.application_name:
                out.append(f"{self.env('application_name')} does not apply to {other}; remove it")
        self._role_problems(out)
        self._owned(out, "engine_options", self.engine_options, _OWNED_ENGINE_OPTIONS)
        connect_args = self.engine_options.get("connect_args", {})
        if isinstance(connect_args, Mapping):
            self._owned(out, "engine_options", connect_args, _OWNED_CONNECT_ARGS)
        self._owned(out, "session_options", self.session_options, _OWNED_SESSION_OPTIONS)
        self._credentials_problems(out)
        if self.credentials is not None and self.is_sqlite:
            out.append(f"{self.env('credentials')} needs a PostgreSQL URL; remove it for SQLite")
        elif self.credentials == "aws-rds-iam" and self.url is not None and not self.url.username:
            url = self.env("url")
            out.append(
                f"{self.env('credentials')}=aws-rds-iam signs a token for the user of {url}, which names none; "
                f"e.g. {url}=postgresql+asyncpg://app@app.abc.eu-west-1.rds.amazonaws.com:5432/app?ssl=require"
            )
        return out

    def _role_problems(self, out: list[str]) -> None:
        label = self.env("role")
        if self.role is None:
            return
        if self.role not in _ROLES:
            out.append(f"{label}={self.role!r}: must be one of {', '.join(_ROLES)}, e.g. {label}=primary")
            return
        if self.url is None:
            return
        if (self.is_sqlite or self.is_mysql) and self.role != "any":
            other = "SQLite" if self.is_sqlite else "MySQL"
            out.append(f"{label}={self.role} needs a PostgreSQL URL; remove it for {other}")
            return
        attrs = self.url.query_params.get("target_session_attrs")
        if attrs is None:
            return
        if self.role == "primary" and attrs in _REPLICA_ATTRS:
            out.append(
                f"{label}=primary but {self.env('url')} asks for target_session_attrs={attrs}; "
                "use target_session_attrs=read-write for a writable database, or set the role to replica"
            )
        elif self.role == "replica" and attrs in ("read-write", "primary"):
            out.append(
                f"{label}=replica but {self.env('url')} asks for target_session_attrs={attrs}; "
                "use target_session_attrs=prefer-standby for a read replica, or set the role to primary"
            )


_ROLES = ("primary", "replica", "any")
_REPLICA_ATTRS = frozenset({"standby", "prefer-standby", "read-only"})


def load_settings(
    cls: type[SettingsBase],
    given: SettingsBase | Mapping[str, Any] | None = None,
    *,
    env_file: EnvFile = None,
) -> SettingsBase:
    """*cls* built from *given* (a settings object, or a mapping that beats the environment), the
    environment and *env_file*; one ConfigError lists every problem, type and range alike."""
    if isinstance(given, SettingsBase):
        settings = given
    else:
        values = dict(given or {})
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            msg = f"unknown setting(s) {', '.join(map(repr, unknown))}; the settings are {', '.join(cls.model_fields)}"
            raise ConfigError.from_problems([msg])
        settings = _build(cls, values, _from_env_file(cls, env_file, values))
    problems = settings.problems()
    if problems and settings.enabled:
        raise ConfigError.from_problems(problems)
    return settings


def _build(cls: type[SettingsBase], values: Mapping[str, Any], from_file: Mapping[str, Any]) -> SettingsBase:
    """*cls* from code *values* and env-file values; a bad one names its keyword or its variable."""
    token = _FROM_FILE.set(from_file)
    try:
        return cls(**from_file, **values)
    finally:
        _FROM_FILE.reset(token)


_URL_NOUN = "a URL: a str, a pydantic URL (RedisDsn, PostgresDsn, AnyUrl), a SecretStr holding one, or a SQLAlchemy URL"
_NOUNS = {bool: ("true or false", "false"), int: ("a whole number", "3"), float: ("a number", "5")}
_JSON_EXAMPLES = {
    "client_options": '{"decode_responses": true}',
    "engine_options": '{"pool_use_lifo": true}',
    "session_options": '{"expire_on_commit": false}',
    "connection_options": '{"client_properties": {"connection_name": "api"}}',
}
# The list settings: a JSON list, or (in a variable) comma-separated items.
_LIST_EXAMPLES = {"servers": '["nats://127.0.0.1:4222", "nats://127.0.0.2:4222"]'}


def _from_env_file(cls: type[SettingsBase], env_file: EnvFile, values: Mapping[str, Any]) -> dict[str, Any]:
    """The fields *env_file* sets for *cls* (its own prefix only), where neither code nor the environment does."""
    if env_file is None:
        return {}
    path = Path(env_file)
    if not path.is_file():
        msg = f"env_file={str(env_file)!r}: no such file; give the path of an existing .env file, or None"
        raise ConfigError.from_problems([msg])
    import os

    from dotenv import dotenv_values

    prefix = cls._prefix.upper()
    # An empty variable is an unset one (env_ignore_empty): it does not hide the file's value.
    environ = {k.upper() for k, v in os.environ.items() if v.strip()}
    out: dict[str, Any] = {}
    for key, value in dotenv_values(path).items():
        name = key.upper()
        if value is None or not name.startswith(prefix) or name in environ:
            continue
        field = name[len(prefix) :].lower()
        if field in cls.model_fields and field not in values and value.strip():
            if field in _LIST_EXAMPLES:
                out[field] = _list_or_text(value)
            else:
                out[field] = _json_or_text(value) if field in _JSON_EXAMPLES else value
    return out


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value  # validation names the variable


def _list_or_text(value: str) -> Any:
    """A list variable: a JSON list, else comma-separated items (``nats://a:4222,nats://b:4222``)."""
    if value.lstrip().startswith(("[", "{")):
        return _json_or_text(value)
    return [item.strip() for item in value.split(",") if item.strip()]


def _config_error(
    cls: type[SettingsBase], exc: ValidationError, values: Mapping[str, Any], from_file: Mapping[str, Any]
) -> ConfigError:
    """Every type problem (by variable or keyword, with the bad value) plus the range problems of the rest."""
    problems: list[str] = []
    bad: set[str] = set()
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else "?"
        bad.add(field)
        label = field if field in values else f"{cls._prefix}{field.upper()}"  # a file value is named by its variable
        if err["type"] == "extra_forbidden":
            problems.append(f"{cls.__name__}: unknown setting {field!r}; check the spelling")
            continue
        annotation = cls.model_fields[field].annotation if field in cls.model_fields else None
        noun, example = _NOUNS.get(annotation, ("a valid value", "..."))  # type: ignore[arg-type]
        if field == "url":
            noun, example = _URL_NOUN, cls._example_url
        if field in _JSON_EXAMPLES:
            problems.append(_json_problem(label, field, err.get("input"), in_code=field in values))
            continue
        if field in _LIST_EXAMPLES:
            problems.append(_list_problem(label, field, err.get("input"), in_code=field in values))
            continue
        secret = "SecretStr" in str(annotation) or field == "url"
        shown = REDACTED if secret else scrub(repr(err.get("input")))
        problems.append(f"{label}={shown}: must be {noun}, e.g. {label}={example}")
    # The range problems of every other field, found with the bad ones at their defaults.
    defaults = {f: cls.model_fields[f].default for f in bad if f in cls.model_fields}
    token = _FROM_FILE.set(from_file)
    try:
        rest = cls(**{**from_file, **values, **defaults})
    except (ValidationError, ConfigError):
        rest = None
    finally:
        _FROM_FILE.reset(token)
    if rest is not None:
        problems.extend(p for p in rest.problems() if not any(rest.env(f) in p for f in bad))
    return ConfigError.from_problems(problems)


def _json_problem(label: str, field: str, value: object, *, in_code: bool) -> str:
    """A JSON setting that is not an object; the value is not shown (options may hold secrets)."""
    example = _JSON_EXAMPLES[field]
    if in_code:
        return f"{label} must be a dict, e.g. {label}={json.loads(example)!r}"
    why = "is not a JSON object"
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError as exc:
            why = f"is not valid JSON ({getattr(exc, 'msg', 'unreadable')} at character {getattr(exc, 'pos', 0) + 1})"
    return f"{label} {why}; give a JSON object, e.g. {label}='{example}'"


def _list_problem(label: str, field: str, value: object, *, in_code: bool) -> str:
    """A list setting that is not a list of strings; the value is not shown (URLs may hold passwords)."""
    example = _LIST_EXAMPLES[field]
    if in_code:
        return f"{label} must be a list of strings, e.g. {label}={json.loads(example)!r}"
    why = "is not a list of strings"
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError as exc:
            why = f"is not valid JSON ({getattr(exc, 'msg', 'unreadable')} at character {getattr(exc, 'pos', 0) + 1})"
    first = json.loads(example)[0]
    return (
        f"{label} {why}; give a JSON list, e.g. {label}='{example}', "
        f"or comma-separated items, e.g. {label}={first},{json.loads(example)[1]}"
    )


def validate_config(*, redis: RedisSettings | None = None, database: DatabaseSettings | None = None) -> None:
    """Check the settings of the built-in components before any network I/O.

    Reads ``REDIS_*`` and ``DATABASE_*`` from the environment (or checks the given
    settings) and raises one :class:`~infraboot.ConfigError` that lists every bad
    field with its fix. Components switched off (``*_ENABLED=false``) are not checked further.
    """
    problems: list[str] = []
    for name, cls, given in (("redis", RedisSettings, redis), ("database", DatabaseSettings, database)):
        try:
            load_settings(cls, given).unavailable(name)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError.from_problems(problems)
