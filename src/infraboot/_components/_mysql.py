"""MySQL and MariaDB for the ``database`` component: URL rules, driver choice, error codes, ``wait_timeout``.

SQLAlchemy's ``mysql+asyncmy`` / ``mysql+aiomysql`` dialects (and their ``mariadb+`` twins)
do the work; this module holds what differs from PostgreSQL. The query parameters allowed
are the ones SQLAlchemy's MySQL dialect turns into driver arguments (``create_connect_args``:
``charset``, ``unix_socket``, the ``ssl_*`` files, ``init_command``, ``local_infile``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._urls import _first_values, _host_problems, _unique, _unknown_param

if TYPE_CHECKING:
    from infraboot._base._redact import SecretURL

__all__ = [
    "MYSQL_SCHEMES",
    "mysql_code",
    "mysql_url_problems",
    "recycle_problem",
]

MYSQL_SCHEMES = ("mysql+asyncmy", "mysql+aiomysql", "mysql", "mariadb+asyncmy", "mariadb+aiomysql", "mariadb")
_PARAMS = frozenset(
    {"charset", "unix_socket", "ssl_ca", "ssl_cert", "ssl_key", "ssl_capath", "ssl_cipher", "ssl_check_hostname"}
    | {"init_command", "local_infile", "program_name"}
)
_OWNED = {"connect_timeout": "CONNECT_TIMEOUT=5", "read_timeout": "STATEMENT_TIMEOUT=30"}
# MySQL's client and server error numbers -> infraboot's error codes.
_CODES = {
    1045: "auth",  # access denied
    1044: "auth",  # access denied to the database
    1049: "not_found",  # unknown database
    1040: "loading",  # too many connections
    1203: "loading",  # max_user_connections
    1053: "shutdown",  # server shutdown in progress
    2003: "refused",  # can't connect
    2002: "refused",  # can't connect through the socket
    2006: "reset",  # server has gone away
    2013: "reset",  # lost connection during query
    2005: "dns",  # unknown host
}


def mysql_url_problems(out: list[str], where: str, url: SecretURL, prefix: str) -> None:
    """The problems of a ``mysql[+driver]://USER:PASSWORD@HOST:3306/DBNAME`` URL, appended to *out*."""
    example = f"{url.scheme}://USER:PASSWORD@HOST:3306/DBNAME"
    values = _first_values(url.query_pairs)
    if "unix_socket" in values:
        if url.host:
            out.append(
                f"{where}: give the host or ?unix_socket=, not both; e.g. {url.scheme}://USER@/DBNAME?unix_socket=/run/mysqld/mysqld.sock"
            )
    else:
        _host_problems(out, where, url, example)
    name = url.path.strip("/")
    if not name:
        out.append(f"{where}: missing database name; write it as {example}")
    elif "/" in name:
        out.append(f"{where}: bad database name {name!r}; the path is one database, e.g. {example}")
    charset = values.get("charset")
    if charset is not None and charset.lower() in ("utf8", "utf8mb3"):
        out.append(f"{where}: charset={charset} stores no 4-byte characters (emoji); use charset=utf8mb4")
    for key in _unique(k for k, _ in url.query_pairs):
        if key in _OWNED:
            out.append(f"{where}: {key} is set by infraboot; remove it from the URL and set {prefix}{_OWNED[key]}")
        elif key.startswith("ssl_") and key not in _PARAMS:
            out.append(_unknown_param(where, key, {k for k in _PARAMS if k.startswith("ssl_")}))
        elif key not in _PARAMS:
            out.append(_unknown_param(where, key, _PARAMS))


def mysql_code(exc: BaseException) -> str | None:
    """infraboot's error code for a MySQL driver error (asyncmy's or PyMySQL's), by its error number."""
    module = type(exc).__module__
    if not module.startswith(("asyncmy", "pymysql", "aiomysql")):
        return None
    args = getattr(exc, "args", ())
    number = args[0] if args and isinstance(args[0], int) else None
    if number in (2002, 2003, 2006, 2013):  # the client's "could not talk to it": the socket error says which
        text = str(exc).lower()
        if "errno 104" in text or "reset by peer" in text:
            return "reset"
        if "errno 111" in text or "refused" in text:
            return "refused"
    return _CODES.get(number) if number is not None else None


def recycle_problem(recycle: float, wait_timeout: int, label: str) -> str | None:
    """Why ``pool_recycle`` must come down: the server closes idle connections after ``wait_timeout`` seconds."""
    if recycle != -1 and recycle < wait_timeout:
        return None
    suggested = max(1, wait_timeout - 60) if wait_timeout > 120 else max(1, wait_timeout // 2)
    what = "never recycles" if recycle == -1 else f"recycles after {recycle:g}s"
    return (
        f"{label}={recycle:g} {what}, but the server closes connections idle for {wait_timeout}s "
        f"(@@wait_timeout): a pooled connection would be found dead; set {label}={suggested}"
    )
