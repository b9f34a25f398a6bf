"""What a Redis or database URL may say, checked before any I/O.

Pure functions over a :class:`~infraboot._redact.SecretURL`: each problem is one
line that names the variable, shows the URL redacted, says what is wrong and how
to fix it, with an example.  No line ever contains the password.

The query parameters allowed here are the ones the drivers really accept from a
URL: redis-py's ``parse_url`` passes every query parameter on to the connection
class (``redis/asyncio/connection.py``, ``URL_QUERY_ARGUMENT_PARSERS`` and the
``AbstractConnection`` / ``Connection`` / ``SSLConnection`` /
``UnixDomainSocketConnection`` initialisers), so an unknown one fails only at the
first connect; SQLAlchemy's asyncpg dialect passes the whole query to
``asyncpg.connect()`` (``create_connect_args``: ``opts.update(url.query)``), which
takes no ``sslmode`` or ``application_name``; the pysqlite/aiosqlite dialect takes
a fixed list and, with ``uri=true``, SQLite's own URI parameters.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from ._redact import SecretURL

__all__ = ["database_driver_url", "database_url_problems", "redis_db", "redis_url_problems"]

REDIS_SCHEMES = ("redis", "rediss", "unix", "memory")
DATABASE_SCHEMES = ("postgresql+asyncpg", "postgresql", "postgres", "sqlite+aiosqlite")
_POSTGRES_SCHEMES = frozenset({"postgresql+asyncpg", "postgresql", "postgres"})
ASYNC_POSTGRES = "postgresql+asyncpg"

# redis-py: AbstractConnection options that survive arriving as text.
_REDIS_PARAMS = frozenset(
    {"db", "username", "password", "client_name", "lib_name", "lib_version", "socket_read_size", "retry_on_timeout"}
    | {"protocol"}
)
_REDIS_TCP_PARAMS = frozenset({"socket_keepalive"})
_REDIS_TLS_PARAMS = frozenset(
    {
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_ca_path",
        "ssl_ca_data",
        "ssl_ciphers",
        "ssl_min_version",
        "ssl_include_verify_flags",
        "ssl_exclude_verify_flags",
        "ssl_password",
    }
)
# Options infraboot passes itself: in the URL they would silently override the setting.
_REDIS_OWNED = {
    "socket_timeout": "SOCKET_TIMEOUT=5",
    "socket_connect_timeout": "CONNECT_TIMEOUT=5",
    "max_connections": "MAX_CONNECTIONS=50",
    "health_check_interval": "HEALTH_CHECK_INTERVAL=30",
    "ssl_cert_reqs": "TLS_VERIFY=true",
    "ssl_check_hostname": "TLS_VERIFY=true",
    "ssl_ca_certs": "SSL_CA_CERTS=/path/to/ca.pem",
}
# Client options: redis-py reads ``?decode_responses=False`` as true (any non-empty text is).
_REDIS_CLIENT_OPTIONS = frozenset({"decode_responses", "encoding", "encoding_errors", "legacy_responses"})
_REDIS_CLIENT_FIX = "RedisSettings(client_options={...}) or REDIS_CLIENT_OPTIONS='{\"decode_responses\": true}'"

# asyncpg.connect() keywords that take text, plus the two SQLAlchemy's dialect pops itself.
_PG_PARAMS = frozenset(
    {"host", "port", "password", "passfile", "service", "servicefile", "ssl", "target_session_attrs"}
    | {"krbsrvname", "gsslib", "sslmode", "prepared_statement_cache_size"}
)
_PG_OWNED = {
    "timeout": "CONNECT_TIMEOUT=5",
    "connect_timeout": "CONNECT_TIMEOUT=5",
    "application_name": "APPLICATION_NAME=my-service",
    "statement_cache_size": "PGBOUNCER=true (it turns the statement caches off)",
    "pool_size": "POOL_SIZE=5",
    "max_overflow": "MAX_OVERFLOW=10",
    "pool_timeout": "POOL_TIMEOUT=30",
    "pool_recycle": "POOL_RECYCLE=1800",
    "pool_pre_ping": "PRE_PING=true",
    "echo": "ECHO=true",
}
# libpq options asyncpg takes from its environment instead of the URL.
_PG_ENVIRONMENT = {
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "sslpassword": "PGSSLPASSWORD",
    "sslnegotiation": "PGSSLNEGOTIATION",
}
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")

_SQLITE_PARAMS = frozenset({"uri", "timeout", "isolation_level", "detect_types", "check_same_thread"})
_SQLITE_PARAMS_ALL = _SQLITE_PARAMS | {"cached_statements"}
_SQLITE_URI_PARAMS = frozenset({"mode", "cache", "immutable", "nolock", "vfs", "psow", "modeof"})

_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_WHOLE = re.compile(r"[0-9]+")
_REDIS_PATH = re.compile(r"(/([0-9]+/?)?)?")


def redis_url_problems(url: SecretURL, var: str) -> list[str]:
    """Every problem of a Redis URL in *var*: scheme, host, port, db, query parameters.

    Accepts ``redis://`` and ``rediss://`` (``HOST[:PORT][/DB]``, IPv6 in brackets),
    ``unix:///path/redis.sock?db=1`` and ``memory://`` / ``memory://NAME``.
    """
    where = f"{var}={url}"
    prefix = _prefix(var)
    scheme = url.scheme
    if scheme not in REDIS_SCHEMES:
        shown = scheme or "(none)"
        return [f"{where}: unknown scheme {shown!r}; use one of {', '.join(s + '://' for s in REDIS_SCHEMES)}"]
    if url.needs_encoding:
        return [_encoding_problem(where, "redis://:pa%2Fss@HOST:6379/0")]
    out: list[str] = []
    _fragment_problem(out, where, url)
    if scheme == "memory":
        if url.port_text is not None or url.path.strip("/") or url.query:
            out.append(f"{where}: memory:// takes only a name; write it as memory:// or memory://NAME")
        return out
    if scheme == "unix":
        if url.host or url.port_text is not None:
            out.append(f"{where}: a unix:// URL names no host; write it as unix:///run/redis/redis.sock?db=0")
        if not url.path.startswith("/") or url.path == "/":
            out.append(f"{where}: missing socket path; write it as unix:///run/redis/redis.sock?db=0")
    else:
        _host_problems(out, where, url, f"{scheme}://HOST:6379/0")
        if _REDIS_PATH.fullmatch(url.path) is None:
            out.append(
                f"{where}: bad db {url.path!r}; the path is the db index, a whole number >= 0, "
                f"e.g. {scheme}://HOST:6379/0"
            )
    pairs = url.query_pairs
    for key, value in _first_values(pairs).items():
        if key == "db" and not _WHOLE.fullmatch(value):
            out.append(f"{where}: bad db {value!r}; use a whole number >= 0, e.g. ?db=0")
        elif key == "db" and scheme != "unix" and url.path.strip("/") and url.path.strip("/") != value:
            out.append(f"{where}: the db is given twice (path and ?db=); keep one, e.g. {scheme}://HOST:6379/{value}")
        elif key == "protocol" and value not in ("2", "3"):
            out.append(f"{where}: bad protocol {value!r}; use 2 or 3, e.g. ?protocol=3")
        elif key in ("socket_read_size", "ssl_min_version") and not _WHOLE.fullmatch(value):
            out.append(f"{where}: bad {key} {value!r}; use a whole number")
    for key in _unique(k for k, _ in pairs):
        if key in _REDIS_OWNED:
            out.append(
                f"{where}: {key} is set by infraboot; remove it from the URL and set {prefix}{_REDIS_OWNED[key]}"
            )
        elif key in _REDIS_CLIENT_OPTIONS:
            out.append(f"{where}: {key} is a client option, not a URL parameter; remove it and use {_REDIS_CLIENT_FIX}")
        elif key in _REDIS_TLS_PARAMS and scheme != "rediss":
            out.append(f"{where}: {key} only applies to rediss:// URLs; remove it or use rediss://")
        elif key in _REDIS_TCP_PARAMS and scheme == "unix":
            out.append(f"{where}: {key} does not apply to unix sockets; remove it")
        elif key not in _REDIS_PARAMS | _REDIS_TCP_PARAMS | _REDIS_TLS_PARAMS:
            allowed = _REDIS_PARAMS | (_REDIS_TLS_PARAMS if scheme == "rediss" else frozenset())
            if scheme != "unix":
                allowed |= _REDIS_TCP_PARAMS
            out.append(_unknown_param(where, key, allowed))
    return out


def redis_db(url: SecretURL) -> int:
    """The db index a Redis URL selects: ``?db=`` first (as redis-py reads it), then the path, else 0."""
    value = _first_values(url.query_pairs).get("db")
    if value is None and url.scheme in ("redis", "rediss"):
        value = url.path.strip("/")
    return int(value) if value and _WHOLE.fullmatch(value) else 0


def database_url_problems(url: SecretURL, var: str) -> list[str]:
    """Every problem of a database URL in *var*: scheme, host or socket, port, database, query parameters.

    Accepts ``postgresql+asyncpg://``, ``postgresql://`` and ``postgres://`` (the last
    two are connected with asyncpg, see :func:`database_driver_url`), including a
    unix socket as ``postgresql://user@/db?host=/var/run/postgresql``, and
    ``sqlite+aiosqlite://`` (``:memory:``, relative or absolute paths).
    """
    where = f"{var}={url}"
    scheme = url.scheme
    if scheme not in DATABASE_SCHEMES:
        shown = scheme or "(none)"
        return [f"{where}: unknown scheme {shown!r}; use one of {', '.join(s + '://' for s in DATABASE_SCHEMES)}"]
    if url.needs_encoding:
        return [_encoding_problem(where, "postgresql+asyncpg://user:pa%2Fss@HOST:5432/DBNAME")]
    out: list[str] = []
    _fragment_problem(out, where, url)
    if scheme == "sqlite+aiosqlite":
        _sqlite_problems(out, where, url)
    else:
        _postgres_problems(out, where, url, _prefix(var))
    return out


def database_driver_url(url: SecretURL, *, var: str = "DATABASE_URL") -> tuple[SecretURL, str | None]:
    """The URL to give SQLAlchemy, and a one-line note for the log when it differs (never a secret).

    ``postgresql://`` and ``postgres://`` -- what hosting providers hand out -- become
    ``postgresql+asyncpg://``; libpq's ``sslmode=`` becomes asyncpg's ``ssl=`` (same
    values), which is the only name asyncpg accepts.  Other URLs come back unchanged
    with ``None``.
    """
    if url.scheme not in _POSTGRES_SCHEMES:
        return url, None
    notes: list[str] = []
    scheme: str | None = None
    if url.scheme != ASYNC_POSTGRES:
        scheme = ASYNC_POSTGRES
        notes.append(f"{var} uses {url.scheme}://; connecting with the asyncpg driver ({ASYNC_POSTGRES}://)")
    query: str | None = None
    keys = {k for k, _ in url.query_pairs}
    if "sslmode" in keys and "ssl" not in keys:
        query = "&".join("ssl" + p[len("sslmode") :] if p.split("=", 1)[0] == "sslmode" else p for p in _raw_pairs(url))
        notes.append(f"{var} has sslmode=; passing it to asyncpg as ssl= (asyncpg's name for it)")
    if not notes:
        return url, None
    return url.replace(scheme=scheme, query=query), "; ".join(notes)


def _postgres_problems(out: list[str], where: str, url: SecretURL, prefix: str) -> None:
    pairs = url.query_pairs
    sockets = [v for k, v in pairs if k == "host"]
    example = f"{url.scheme}://USER:PASSWORD@HOST:5432/DBNAME"
    if sockets:
        if url.host:
            out.append(f"{where}: the host is given twice (before the path and as ?host=); keep one, e.g. {example}")
        for value in sockets:
            if not value.startswith("/"):
                out.append(
                    f"{where}: ?host={value} is not a unix socket directory; give an absolute path, "
                    f"e.g. {url.scheme}://USER@/DBNAME?host=/var/run/postgresql, or put the host before the path"
                )
        if url.port_text is not None:
            _port_problem(out, where, url)
    else:
        _host_problems(
            out, where, url, f"{example} (or a unix socket: {url.scheme}://USER@/DBNAME?host=/var/run/postgresql)"
        )
    database = url.path[1:] if url.path.startswith("/") else url.path
    if not database:
        out.append(f"{where}: missing database name; write it after the host, e.g. {example}")
    elif "/" in database:
        out.append(f"{where}: bad database name {database!r}; a PostgreSQL URL has one path segment, e.g. {example}")
    values = _first_values(pairs)
    if "ssl" in values and "sslmode" in values:
        out.append(f"{where}: both ssl= and sslmode= are given; keep one, e.g. ?sslmode=require")
    for key in ("sslmode", "ssl"):
        mode = values.get(key)
        if mode is None or mode in _SSLMODES:
            continue
        if mode.lower() in ("true", "1", "yes", "on"):
            fix = f"use {key}=require (or verify-full to check the certificate)"
        elif mode.lower() in ("false", "0", "no", "off"):
            fix = f"use {key}=disable"
        else:
            fix = f"use one of {', '.join(sorted(_SSLMODES))}"
        out.append(f"{where}: unknown {key} {mode!r}; {fix}")
    attrs = values.get("target_session_attrs")
    if attrs is not None and attrs not in _SESSION_ATTRS:
        out.append(f"{where}: unknown target_session_attrs {attrs!r}; use one of {', '.join(_SESSION_ATTRS)}")
    for key in ("prepared_statement_cache_size", "port"):
        given = values.get(key)
        if given is not None and not _WHOLE.fullmatch(given):
            out.append(f"{where}: bad {key} {given!r}; use a whole number, e.g. ?{key}=100")
    for key in _unique(k for k, _ in pairs):
        if key in _PG_OWNED:
            out.append(f"{where}: {key} is set by infraboot; remove it from the URL and set {prefix}{_PG_OWNED[key]}")
        elif key in _PG_ENVIRONMENT:
            out.append(
                f"{where}: asyncpg does not take {key} in the URL; remove it and set the "
                f"{_PG_ENVIRONMENT[key]} environment variable instead"
            )
        elif key == "channel_binding":
            out.append(f"{where}: asyncpg does not take channel_binding in the URL; remove it (sslmode=require stays)")
        elif key not in _PG_PARAMS:
            out.append(_unknown_param(where, key, _PG_PARAMS))


def _sqlite_problems(out: list[str], where: str, url: SecretURL) -> None:
    example = "sqlite+aiosqlite:///relative.db, sqlite+aiosqlite:////abs/path.db or sqlite+aiosqlite:///:memory:"
    if url.host or url.port_text is not None or url.username or url.password is not None:
        out.append(f"{where}: a SQLite URL names no host, user or port; write it as {example}")
    pairs = url.query_pairs
    values = _first_values(pairs)
    uri = values.get("uri", "").lower() in ("true", "1", "yes", "on")
    timeout = values.get("timeout")
    if timeout is not None and not re.fullmatch(r"[0-9]+(\.[0-9]*)?", timeout):
        out.append(f"{where}: bad timeout {timeout!r}; use seconds, e.g. ?timeout=5")
    for key in _unique(k for k, _ in pairs):
        if key in _SQLITE_URI_PARAMS and not uri:
            out.append(f"{where}: {key}= is a SQLite URI parameter; add uri=true, e.g. ?{key}=...&uri=true")
        elif key not in _SQLITE_PARAMS_ALL | _SQLITE_URI_PARAMS:
            out.append(_unknown_param(where, key, _SQLITE_PARAMS_ALL | (_SQLITE_URI_PARAMS if uri else frozenset())))


def _host_problems(out: list[str], where: str, url: SecretURL, example: str) -> None:
    host = url.host
    if not host:
        out.append(f"{where}: missing host; write it as {example}")
    elif host.startswith("["):
        out.append(f"{where}: malformed IPv6 host {host!r}; close the brackets, e.g. [::1]")
        return
    elif f"[{host}]" in str(url):
        if not _is_ipv6(host):
            out.append(f"{where}: malformed IPv6 host [{host}]; use an IPv6 address in brackets, e.g. [::1]")
    elif ":" in host:
        out.append(f"{where}: an IPv6 host must be in brackets, e.g. [::1]:6379; or the port is not a number")
    elif _HOSTNAME.fullmatch(host) is None:
        out.append(f"{where}: malformed host {host!r}; use a host name or an IP address, e.g. {example}")
    if url.port_text is not None:
        _port_problem(out, where, url)


def _port_problem(out: list[str], where: str, url: SecretURL) -> None:
    port = url.port
    if port is None or not 0 < port < 65536:
        out.append(f"{where}: bad port {url.port_text!r}; use a number from 1 to 65535")


def _is_ipv6(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _fragment_problem(out: list[str], where: str, url: SecretURL) -> None:
    if url.fragment is not None:
        out.append(f"{where}: a connection URL has no '#' part; remove it (write a '#' in a password as %23)")


def _encoding_problem(where: str, example: str) -> str:
    return (
        f"{where}: the user name or password holds a raw '/', '?' or '#', which ends it early; "
        f"percent-encode them ('/' as %2F, '?' as %3F, '#' as %23, '%' as %25), e.g. {example}"
    )


def _unknown_param(where: str, key: str, allowed: Iterable[str]) -> str:
    return f"{where}: unknown query parameter {key!r}; remove it (allowed: {', '.join(sorted(allowed))})"


def _prefix(var: str) -> str:
    """``CACHE_REDIS_URL`` -> ``CACHE_REDIS_``: the variable names of the same settings."""
    return var[: -len("URL")] if var.endswith("_URL") else f"{var}_"


def _first_values(pairs: Iterable[tuple[str, str]]) -> Mapping[str, str]:
    # redis-py reads the first of repeated parameters (parse_qs()[name][0]).
    out: dict[str, str] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def _unique(keys: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(keys))


def _raw_pairs(url: SecretURL) -> list[str]:
    return url.query.split("&") if url.query else []
