"""Redis and database URLs are checked before any I/O, and no problem line shows the password."""

from __future__ import annotations

import pytest

from infraboot._base._redact import SecretURL
from infraboot._components._urls import database_driver_url, database_url_problems, redis_db, redis_url_problems

CANARY = "Ca@n:a/r%y#42"
ENCODED = "Ca%40n%3Aa%2Fr%25y%2342"


def leaks(text: str) -> bool:
    return CANARY in text or ENCODED in text or "Ca@n" in text


def redis(url: str, var: str = "REDIS_URL") -> list[str]:
    return redis_url_problems(SecretURL(url), var)


def database(url: str, var: str = "DATABASE_URL") -> list[str]:
    return database_url_problems(SecretURL(url), var)


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "redis://h",
        "redis://h/15/",
        "rediss://u:p@cache.internal:6380/1?ssl_ciphers=HIGH&client_name=svc",
        "redis://[::1]:6380/0",
        f"redis://default:{ENCODED}@127.0.0.1:6379/0",
        "unix:///run/redis/redis.sock?db=1",
        "memory://",
        "memory://NAME",
    ],
)
def test_valid_redis_urls_have_no_problems(url: str) -> None:
    """Ordinary Redis URLs, unix sockets and the embedded fake pass."""
    assert [] == redis(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h/abc", "REDIS_URL=redis://h/abc: bad db '/abc'"),
        ("redis://h?db=-1", "bad db '-1'; use a whole number >= 0"),
        ("redis://h/1?db=2", "the db is given twice"),
        ("redis://[::1:6379/0", "malformed IPv6 host '[::1:6379'; close the brackets"),
        ("redis://[nope]:6379/0", "malformed IPv6 host [nope]"),
        ("redis://::1:6379/0", "an IPv6 host must be in brackets"),
        ("redis://:6379/0", "missing host; write it as redis://HOST:6379/0"),
        ("redis://h:99999/0", "bad port '99999'"),
        ("redis://h:abc/0", "bad port 'abc'"),
        ("redis://bad host/0", "malformed host 'bad host'"),
        ("unix://", "missing socket path"),
        ("memory://x:1", "memory:// takes only a name"),
        ("redis://h?foo=1", "unknown query parameter 'foo'; remove it (allowed: client_name, db,"),
        ("redis://h?timeout=1", "unknown query parameter 'timeout'"),
        ("redis://h?ssl_keyfile=k.pem", "ssl_keyfile only applies to rediss:// URLs"),
        ("unix:///r.sock?socket_keepalive=1", "socket_keepalive does not apply to unix sockets"),
        ("redis://h?protocol=4", "bad protocol '4'; use 2 or 3"),
        ("redis://h/0#x", "a connection URL has no '#' part"),
        ("http://h:1", "unknown scheme 'http'; use one of redis://, rediss://, unix://, memory://"),
    ],
)
def test_bad_redis_urls_name_the_problem_and_the_fix(url: str, expected: str) -> None:
    """Each malformed Redis URL gives one line naming the variable, the problem and the fix."""
    problems = redis(url)
    assert 1 == len(problems)
    assert expected in problems[0]
    assert problems[0].startswith("REDIS_URL=")


@pytest.mark.parametrize(
    ("param", "setting"),
    [
        ("socket_timeout=1", "CACHE_REDIS_SOCKET_TIMEOUT"),
        ("socket_connect_timeout=1", "CACHE_REDIS_CONNECT_TIMEOUT"),
        ("max_connections=9", "CACHE_REDIS_MAX_CONNECTIONS"),
        ("health_check_interval=9", "CACHE_REDIS_HEALTH_CHECK_INTERVAL"),
        ("ssl_cert_reqs=none", "CACHE_REDIS_TLS_VERIFY"),
        ("ssl_ca_certs=/ca.pem", "CACHE_REDIS_SSL_CA_CERTS"),
        ("decode_responses=False", "REDIS_CLIENT_OPTIONS='{\"decode_responses\": true}'"),
        ("encoding=latin-1", "RedisSettings(client_options={...})"),
    ],
)
def test_redis_parameters_infraboot_owns_name_the_setting(param: str, setting: str) -> None:
    """A query parameter that would override a setting names the setting of this instance to use instead."""
    problems = redis(f"rediss://cache:6380/0?{param}", "CACHE_REDIS_URL")
    assert 1 == len(problems)
    assert setting in problems[0]


@pytest.mark.parametrize(
    ("url", "expected"),
    [("redis://h", 0), ("redis://h/3", 3), ("redis://h/3?db=5", 5), ("unix:///r.sock?db=2", 2), ("memory://", 0)],
)
def test_redis_db_reads_the_query_then_the_path(url: str, expected: int) -> None:
    """The db index is ?db= first (as redis-py reads it), then the path, else 0."""
    assert expected == redis_db(SecretURL(url))


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://u:p@db:5432/app?sslmode=verify-full",
        "postgresql+asyncpg://u:p@127.0.0.1/app?ssl=require&target_session_attrs=primary",
        "postgresql+asyncpg://u:p@db/app?prepared_statement_cache_size=0",
        "postgresql+asyncpg://user@/test?host=/var/run/postgresql",
        "postgresql://u:p@db/app",
        "postgres://u:p@db/app?sslmode=require",
        "postgresql+asyncpg://u:p@[::1]:5432/app",
        "sqlite+aiosqlite://",
        "sqlite+aiosqlite:///:memory:",
        "sqlite+aiosqlite:///relative.db",
        "sqlite+aiosqlite:////abs/path.db",
        "sqlite+aiosqlite:///x.db?mode=ro&uri=true",
    ],
)
def test_valid_database_urls_have_no_problems(url: str) -> None:
    """PostgreSQL (also a unix socket, also postgres://) and SQLite URLs pass."""
    assert [] == database(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+asyncpg:///app", "missing host"),
        ("postgresql+asyncpg://db", "missing database name"),
        ("postgresql+asyncpg://db/a/b", "bad database name 'a/b'"),
        ("postgresql+asyncpg://db:0/app", "bad port '0'"),
        ("postgresql+asyncpg://[::1/app", "malformed IPv6 host '[::1'"),
        ("postgresql+asyncpg://user@/app?host=run/pg", "?host=run/pg is not a unix socket directory"),
        ("postgresql+asyncpg://db/app?host=/run/pg", "the host is given twice"),
        ("postgresql+asyncpg://db/app?sslmode=sometimes", "unknown sslmode 'sometimes'"),
        ("postgresql+asyncpg://db/app?ssl=true", "unknown ssl 'true'; use ssl=require"),
        ("postgresql+asyncpg://db/app?ssl=require&sslmode=require", "both ssl= and sslmode= are given"),
        ("postgresql+asyncpg://db/app?target_session_attrs=any-one", "unknown target_session_attrs"),
        ("postgresql+asyncpg://db/app?prepared_statement_cache_size=lots", "bad prepared_statement_cache_size"),
        ("postgresql+asyncpg://db/app?options=-c", "unknown query parameter 'options'; remove it (allowed: gsslib,"),
        ("postgresql+asyncpg://db/app?sslrootcert=/ca.pem", "set the PGSSLROOTCERT environment variable"),
        ("postgresql+asyncpg://db/app?channel_binding=require", "asyncpg does not take channel_binding"),
        ("sqlite+aiosqlite://host/x.db", "a SQLite URL names no host"),
        ("sqlite+aiosqlite:///x.db?mode=memory", "add uri=true"),
        ("sqlite+aiosqlite:///x.db?journal=wal", "unknown query parameter 'journal'"),
        ("oracle://h/db", "unknown scheme 'oracle'; use one of postgresql+asyncpg://, postgresql://, postgres://"),
    ],
)
def test_bad_database_urls_name_the_problem_and_the_fix(url: str, expected: str) -> None:
    """Each malformed database URL gives one line naming the variable, the problem and the fix."""
    problems = database(url)
    assert 1 == len(problems)
    assert expected in problems[0]
    assert problems[0].startswith("DATABASE_URL=")


@pytest.mark.parametrize(
    ("param", "setting"),
    [
        ("application_name=a@b", "DATABASE_APPLICATION_NAME"),
        ("timeout=3", "DATABASE_CONNECT_TIMEOUT"),
        ("connect_timeout=3", "DATABASE_CONNECT_TIMEOUT"),
        ("pool_size=3", "DATABASE_POOL_SIZE"),
        ("max_overflow=3", "DATABASE_MAX_OVERFLOW"),
        ("statement_cache_size=0", "DATABASE_PGBOUNCER=true"),
    ],
)
def test_database_parameters_infraboot_owns_name_the_setting(param: str, setting: str) -> None:
    """A query parameter that infraboot sets itself names the setting to use instead."""
    problems = database(f"postgresql+asyncpg://u:p@db/app?{param}")
    assert 1 == len(problems)
    assert setting in problems[0]


def test_named_instances_get_their_own_variable_names() -> None:
    """The setting named in a problem carries the prefix of the variable."""
    problems = database("postgresql+asyncpg://db/app?pool_size=3", "ANALYTICS_DATABASE_URL")
    assert "set ANALYTICS_DATABASE_POOL_SIZE=5" in problems[0]
    assert problems[0].startswith("ANALYTICS_DATABASE_URL=")


def test_an_at_sign_in_the_query_does_not_move_the_host() -> None:
    """?application_name=a@b keeps host 127.0.0.1 and the problem line keeps the password out."""
    url = SecretURL(f"postgresql+asyncpg://u:{ENCODED}@127.0.0.1:5432/test?application_name=a@b")
    assert ("127.0.0.1", 5432, "/test", CANARY) == (url.host, url.port, url.path, url.password)
    problems = database_url_problems(url, "DATABASE_URL")
    assert ["application_name"] == [p.split(": ")[1].split(" ")[0] for p in problems]
    assert not any(leaks(p) for p in problems)


@pytest.mark.parametrize(
    ("url", "check"),
    [
        (f"redis://u:{ENCODED}@h:1/x?socket_timeout=1&foo=2#frag", redis_url_problems),
        (f"rediss://u:{ENCODED}@[::1:6379/0", redis_url_problems),
        (f"unix://u:{ENCODED}@host/?db=x", redis_url_problems),
        (f"postgresql+asyncpg://u:{ENCODED}@db:99999/?sslmode=x&pool_size=1&foo=1", database_url_problems),
        (f"postgres://u:{ENCODED}@/app?host=relative&password={ENCODED}", database_url_problems),
        (f"rediss://u:{CANARY}@cache:6380/0", redis_url_problems),
        (f"postgresql://app:{CANARY}@db:5432/app?application_name=a@b", database_url_problems),
    ],
)
def test_no_problem_line_shows_the_password(url: str, check: object) -> None:
    """Whatever is wrong, encoded or raw, the password never appears in a problem line."""
    assert callable(check)
    problems = check(SecretURL(url), "X_URL")
    assert problems
    assert [] == [p for p in problems if leaks(p)]


@pytest.mark.parametrize(
    ("url", "check"),
    [
        (f"rediss://u:{CANARY}@cache:6380/0", redis_url_problems),
        ("redis://:pa?ss@h:6379/0", redis_url_problems),
        ("postgresql+asyncpg://app:12/34@db:5432/app", database_url_problems),
    ],
)
def test_a_raw_slash_question_mark_or_hash_in_a_password_asks_for_percent_encoding(url: str, check: object) -> None:
    """A password that a real URL parser cannot end correctly is refused with the encoding to use."""
    assert callable(check)
    problems = check(SecretURL(url), "X_URL")
    assert 1 == len(problems)
    assert "percent-encode them ('/' as %2F, '?' as %3F, '#' as %23" in problems[0]
    assert ":***@" in problems[0]


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_hosting_provider_urls_connect_with_asyncpg(scheme: str) -> None:
    """postgresql:// and postgres:// become postgresql+asyncpg://, with a note that holds no secret."""
    url, note = database_driver_url(SecretURL(f"{scheme}://u:{ENCODED}@db:5432/app"))
    assert f"postgresql+asyncpg://u:{ENCODED}@db:5432/app" == url.get_secret_value()
    assert f"DATABASE_URL uses {scheme}://; connecting with the asyncpg driver (postgresql+asyncpg://)" == note


def test_sslmode_is_passed_to_asyncpg_as_ssl() -> None:
    """libpq's sslmode= becomes asyncpg's ssl=, the only name asyncpg accepts."""
    url, note = database_driver_url(SecretURL("postgres://u:p@db/app?sslmode=require&target_session_attrs=any"))
    assert "postgresql+asyncpg://u:p@db/app?ssl=require&target_session_attrs=any" == url.get_secret_value()
    assert note is not None
    assert "ssl=" in note


@pytest.mark.parametrize(
    "raw",
    ["postgresql+asyncpg://u:p@db/app?ssl=require", "sqlite+aiosqlite:///x.db", "redis://h/0"],
)
def test_other_urls_reach_the_driver_unchanged(raw: str) -> None:
    """A URL already in the driver's form comes back as it is, with no note."""
    url = SecretURL(raw)
    assert (url, None) == database_driver_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:////tmp/a@b/db.sqlite",
        "sqlite+aiosqlite:///data/team@home/app.db",
        "unix:///run/redis@6379/redis.sock?db=1",
    ],
)
def test_an_at_sign_in_a_file_path_is_part_of_the_path(url: str) -> None:
    """A SQLite or unix-socket path with an '@' is a path, shown as written, not a password to percent-encode."""
    parsed = SecretURL(url)
    check = redis_url_problems if url.startswith("unix") else database_url_problems
    assert ([], url, None) == (check(parsed, "X_URL"), str(parsed), parsed.password)


def test_a_password_after_three_slashes_of_a_server_url_still_never_prints() -> None:
    """The path exemption is for file URLs only: postgresql:///u:<password>@h/db is still refused and hidden."""
    problems = database_url_problems(SecretURL(f"postgresql+asyncpg:///u:{CANARY}@h/db"), "DATABASE_URL")
    assert 1 == len(problems)
    assert "percent-encode" in problems[0]
    assert not leaks(problems[0])
