"""What a Redis or database URL may say, checked before any I/O.

Pure functions over a :class:`~infraboot._base._redact.SecretURL`: each problem is one
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

    from infraboot._base._redact import SecretURL

__all__ = [
    "REDIS_TOPOLOGY_SCHEMES",
    "database_driver_url",
    "database_hosts",
    "database_url_problems",
    "redis_db",
    "redis_nodes",
    "redis_service_name",
    "redis_url_problems",
]

REDIS_TOPOLOGY_SCHEMES = ("redis+sentinel", "redis+cluster")
REDIS_SCHEMES = ("redis", "rediss", "unix", "memory", *REDIS_TOPOLOGY_SCHEMES)
DATABASE_SCHEMES = (
    "postgresql+asyncpg",
    "postgresql",
    "postgres",
    "sqlite+aiosqlite",
    "mysql+asyncmy",
    "mysql+aiomysql",
    "mysql",
    "mariadb+asyncmy",
    "mariadb+aiomysql",
    "mariadb",
)
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
    ``unix:///path/redis.sock?db=1``, ``memory://`` / ``memory://NAME``, and the
    topologies ``redis+sentinel://[:PASSWORD@]H1:26379,H2:26379/SERVICE[/DB]`` and
    ``redis+cluster://[:PASSWORD@]H1:6379,H2:6379`` (ports default to 26379 / 6379).
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
    elif scheme in REDIS_TOPOLOGY_SCHEMES:
        _topology_problems(out, where, url)
    else:
        _host_problems(out, where, url, f"{scheme}://HOST:6379/0")
        if _REDIS_PATH.fullmatch(url.path) is None:
            out.append(
                f"{where}: bad db {url.path!r}; the path is the db index, a whole number >= 0, "
                f"e.g. {scheme}://HOST:6379/0"
            )
    pairs = url.query_pairs
    for key, value in _first_values(pairs).items():
        if key == "db" and scheme in REDIS_TOPOLOGY_SCHEMES:
            out.append(f"{where}: ?db= does not apply here; remove it ({_TOPOLOGY_DB[scheme]})")
        elif key == "db" and not _WHOLE.fullmatch(value):
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
    """The db index a Redis URL selects: ``?db=`` first (as redis-py reads it), then the path, else 0.

    A Sentinel URL's db is the segment after the service name; a Cluster has only db 0.
    """
    if url.scheme == "redis+sentinel":
        parts = url.path.strip("/").split("/")
        value: str | None = parts[1] if len(parts) > 1 else None
    elif url.scheme == "redis+cluster":
        return 0
    else:
        value = _first_values(url.query_pairs).get("db")
    if value is None and url.scheme in ("redis", "rediss"):
        value = url.path.strip("/")
    return int(value) if value and _WHOLE.fullmatch(value) else 0


# -- Redis Sentinel and Cluster: redis+sentinel://[:PASSWORD@]H1:26379,H2:26379/SERVICE[/DB], redis+cluster://...

_TOPOLOGY_PORT = {"redis+sentinel": 26379, "redis+cluster": 6379}
_TOPOLOGY_EXAMPLE = {
    "redis+sentinel": "redis+sentinel://:PASSWORD@HOST1:26379,HOST2:26379,HOST3:26379/mymaster/0",
    "redis+cluster": "redis+cluster://:PASSWORD@HOST1:6379,HOST2:6379,HOST3:6379",
}
_TOPOLOGY_DB = {
    "redis+sentinel": "the db is the path segment after the service name, e.g. /mymaster/0",
    "redis+cluster": "a Redis Cluster has only db 0",
}
_SERVICE_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


def redis_nodes(url: SecretURL) -> list[tuple[str, int]]:
    """The (host, port) pairs a ``redis+sentinel://`` or ``redis+cluster://`` URL lists, in order.

    A host without a port gets the default (26379 for Sentinel, 6379 for Cluster); an
    IPv6 literal comes back without its brackets. Unparseable entries are left out (the
    URL checks name them).
    """
    default = _TOPOLOGY_PORT.get(url.scheme, 6379)
    out: list[tuple[str, int]] = []
    for host, port in _listed_nodes(url):
        if not host or (port is not None and not _WHOLE.fullmatch(port)):
            continue
        out.append((host.strip("[]"), int(port) if port is not None else default))
    return out


def redis_service_name(url: SecretURL) -> str:
    """The Sentinel service (master group) name of a ``redis+sentinel://`` URL: its first path segment."""
    return url.path.strip("/").split("/")[0]


def _listed_nodes(url: SecretURL) -> list[tuple[str, str | None]]:
    """The authority ``h1:26379,[::1]:26380,h3`` as (host, port text) entries; brackets kept on IPv6."""
    host = url.host or ""
    if ":" in host and "," not in host and not host.startswith("["):
        host = f"[{host}]"  # one IPv6 literal, whose brackets SecretURL took off
    text = host if url.port_text is None else f"{host}:{url.port_text}"
    if not text:
        return []
    out: list[tuple[str, str | None]] = []
    for entry in text.split(","):
        if entry.startswith("["):
            close = entry.find("]")
            rest = entry[close + 1 :] if close != -1 else ""
            name = entry[: close + 1] if close != -1 else entry
            out.append((name, rest[1:] if rest.startswith(":") else (rest or None)))
            continue
        name, colon, port = entry.rpartition(":")
        out.append((name, port) if colon else (entry, None))
    return out


def _topology_problems(out: list[str], where: str, url: SecretURL) -> None:
    scheme = url.scheme
    example = _TOPOLOGY_EXAMPLE[scheme]
    nodes = _listed_nodes(url)
    what = "sentinel" if scheme == "redis+sentinel" else "cluster node"
    if not nodes:
        out.append(f"{where}: missing host; list one or more {what}s, e.g. {example}")
    for host, port in nodes:
        bare = host.strip("[]")
        if not host:
            out.append(f"{where}: an empty host in the host list; write it as {example}")
        elif host.startswith("["):
            if not host.endswith("]") or not _is_ipv6(bare):
                out.append(f"{where}: malformed IPv6 host {host!r}; use an IPv6 address in brackets, e.g. [::1]:26379")
        elif ":" in host:
            out.append(f"{where}: an IPv6 host must be in brackets, e.g. [::1]:26379; or the port is not a number")
        elif _HOSTNAME.fullmatch(host) is None:
            out.append(f"{where}: malformed host {host!r}; use host names or IP addresses, e.g. {example}")
        if port is not None and (not _WHOLE.fullmatch(port) or not 0 < int(port) < 65536):
            out.append(f"{where}: bad port {port!r} for host {host!r}; use a number from 1 to 65535")
    parts = url.path.strip("/").split("/") if url.path.strip("/") else []
    if scheme == "redis+sentinel":
        if not parts:
            out.append(f"{where}: missing service name; the path is /SERVICE_NAME[/DB], e.g. {example}")
            return
        if _SERVICE_NAME.fullmatch(parts[0]) is None:
            out.append(
                f"{where}: bad service name {parts[0]!r}; use the name the sentinels monitor "
                f"(letters, digits, '_', '-', '.'), e.g. {example}"
            )
        if len(parts) > 2 or (len(parts) == 2 and not _WHOLE.fullmatch(parts[1])):
            out.append(
                f"{where}: bad path {url.path!r}; it is /SERVICE_NAME[/DB] with the db a whole number >= 0, "
                f"e.g. {example}"
            )
    elif parts and parts != ["0"]:
        out.append(f"{where}: bad path {url.path!r}; {_TOPOLOGY_DB[scheme]}: remove it, e.g. {example}")


def database_url_problems(url: SecretURL, var: str) -> list[str]:
    """Every problem of a database URL in *var*: scheme, host or socket, port, database, query parameters.

    Accepts ``postgresql+asyncpg://``, ``postgresql://`` and ``postgres://`` (the last
    two are connected with asyncpg, see :func:`database_driver_url`), including a
    unix socket as ``postgresql://user@/db?host=/var/run/postgresql``, several hosts as
    ``…@h1:5432,h2:5433/db`` or ``…@/db?host=h1:5432&host=h2:5433`` (with
    ``target_session_attrs``), ``sqlite+aiosqlite://`` (``:memory:``, relative or absolute paths),
    and MySQL / MariaDB as ``mysql+asyncmy://``, ``mysql+aiomysql://``, ``mysql://`` (asyncmy) or ``mariadb…``.
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
    elif scheme.startswith(("mysql", "mariadb")):
        from ._mysql import mysql_url_problems

        mysql_url_problems(out, where, url, _prefix(var))
    else:
        _postgres_problems(out, where, url, _prefix(var))
    return out


def database_driver_url(url: SecretURL, *, var: str = "DATABASE_URL") -> tuple[SecretURL, str | None]:
    """The URL to give SQLAlchemy, and a one-line note for the log when it differs (never a secret).

    ``postgresql://`` and ``postgres://`` -- what hosting providers hand out -- become
    ``postgresql+asyncpg://``; libpq's ``sslmode=`` becomes asyncpg's ``ssl=`` (same
    values), which is the only name asyncpg accepts; a host list ``h1,h2:5433`` becomes
    ``?host=h1:5432&host=h2:5433``, the only form SQLAlchemy reads (no note for that);
    ``mysql://`` / ``mariadb://`` become ``mysql+asyncmy://`` / ``mariadb+asyncmy://``.
    Other URLs come back unchanged with ``None``.
    """
    if url.scheme in ("mysql", "mariadb"):
        chosen = f"{url.scheme}+asyncmy"
        return url.replace(
            scheme=chosen
        ), f"{var} uses {url.scheme}://; connecting with the asyncmy driver ({chosen}://)"
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
    hosts = _netloc_hosts(url)
    if hosts is not None:
        # SQLAlchemy reads several hosts only from the query (?host=h1:p1&host=h2:p2), each with its port.
        return _as_query_hosts(url.replace(scheme=scheme, query=query), hosts), "; ".join(notes) or None
    if not notes:
        return url, None
    return url.replace(scheme=scheme, query=query), "; ".join(notes)


def _as_query_hosts(url: SecretURL, hosts: list[tuple[str, str | None]]) -> SecretURL:
    from urllib.parse import quote

    from infraboot._base._redact import SecretURL

    auth = ""
    if url.username is not None or url.password is not None:
        auth = quote(url.username or "", safe="")
        if url.password is not None:
            auth += ":" + quote(url.password, safe="")
        auth += "@"
    listed = "&".join(f"host={host}:{port or 5432}" for host, port in hosts)
    query = f"{listed}&{url.query}" if url.query else listed
    fragment = f"#{url.fragment}" if url.fragment is not None else ""
    return SecretURL(f"{url.scheme}://{auth}{url.path}?{query}{fragment}")


def _postgres_problems(out: list[str], where: str, url: SecretURL, prefix: str) -> None:
    pairs = url.query_pairs
    sockets = [v for k, v in pairs if k == "host"]
    example = f"{url.scheme}://USER:PASSWORD@HOST:5432/DBNAME"
    hosts = _netloc_hosts(url)
    if hosts is not None:
        _multihost_problems(out, where, url, hosts, bool(sockets))
    elif sockets:
        if url.host:
            out.append(f"{where}: the host is given twice (before the path and as ?host=); keep one, e.g. {example}")
        _query_host_problems(out, where, url, sockets)
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


def _netloc_hosts(url: SecretURL) -> list[tuple[str, str | None]] | None:
    """The hosts of a multi-host authority (``h1:5432,h2:5433``) as (host, port text), or ``None`` for one host."""
    host = url.host or ""
    if "," not in host and "," not in (url.port_text or ""):
        return None
    hostport = host if url.port_text is None else f"{host}:{url.port_text}"
    found: list[tuple[str, str | None]] = []
    for entry in hostport.split(","):
        name, colon, port = entry.rpartition(":")
        found.append((name, port) if colon and "]" not in port else (entry, None))
    return found


def _multihost_problems(
    out: list[str], where: str, url: SecretURL, hosts: list[tuple[str, str | None]], query_hosts: bool
) -> None:
    example = f"{url.scheme}://USER:PASSWORD@HOST1:5432,HOST2:5432/DBNAME?target_session_attrs=read-write"
    if query_hosts:
        out.append(f"{where}: the hosts are given twice (before the path and as ?host=); keep one list, e.g. {example}")
    for host, port in hosts:
        if not host:
            out.append(f"{where}: an empty host in the host list; write it as {example}")
        elif "[" in host or ":" in host:
            out.append(
                f"{where}: {host!r}: IPv6 addresses cannot be listed (SQLAlchemy splits hosts at ':'); "
                f"use host names or IPv4 addresses, e.g. {example}"
            )
        elif _HOSTNAME.fullmatch(host) is None:
            out.append(f"{where}: malformed host {host!r}; use host names or IP addresses, e.g. {example}")
        if port is not None and (not _WHOLE.fullmatch(port) or not 0 < int(port) < 65536):
            out.append(f"{where}: bad port {port!r} for host {host!r}; use a number from 1 to 65535")
    if any(k == "port" for k, _ in url.query_pairs):
        out.append(f"{where}: ?port= cannot go with a host list; give each host its port, e.g. {example}")


def _query_host_problems(out: list[str], where: str, url: SecretURL, values: list[str]) -> None:
    """``?host=`` is a unix socket directory, or -- repeated -- ``HOST:PORT`` entries of a multi-host URL."""
    tcp = [v for v in values if not v.startswith("/")]
    for value in tcp:
        name, colon, port = value.rpartition(":")
        if not colon or not name or _HOSTNAME.fullmatch(name) is None or not _WHOLE.fullmatch(port):
            out.append(
                f"{where}: ?host={value} is not a unix socket directory nor HOST:PORT; give an absolute path, "
                f"e.g. {url.scheme}://USER@/DBNAME?host=/var/run/postgresql, list hosts with their ports "
                f"(?host=h1:5432&host=h2:5432), or put the host before the path"
            )
        elif not 0 < int(port) < 65536:
            out.append(f"{where}: bad port {port!r} in ?host={value}; use a number from 1 to 65535")
    if tcp and len(tcp) != len(values):
        out.append(f"{where}: ?host= mixes unix sockets and HOST:PORT entries; list one kind")
    if tcp and any(k == "port" for k, _ in url.query_pairs):
        out.append(f"{where}: ?port= cannot go with ?host=HOST:PORT entries; give each host its port")


def database_hosts(url: SecretURL) -> list[tuple[str, int]]:
    """Every (host, port) a PostgreSQL URL may connect to, in order (the port 5432 when none is given).

    ``h1:5432,h2:5433`` and ``?host=h1:5432&host=h2:5433`` list several hosts; a unix
    socket directory is given as (path, port). Nothing here ever holds the password.
    """
    listed = _netloc_hosts(url)
    if listed is None:
        listed = []
        for key, value in url.query_pairs:
            if key == "host":
                name, colon, port = value.rpartition(":")
                listed.append((name, port) if colon else (value, None))
    if not listed:
        listed = [(url.host or "", url.port_text)]
    # As libpq reads h1,h2:5433: a port belongs to its own host; the others take 5432.
    return [(host, int(port) if port and port.isdigit() else 5432) for host, port in listed]


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
