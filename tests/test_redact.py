"""SecretURL and scrub(): a password never prints."""

from __future__ import annotations

import pytest

from infraboot import SecretURL
from infraboot._base._redact import scrub, scrub_foreign

CANARY = "Can@ry:/%#pw"


@pytest.mark.parametrize(
    "raw",
    [
        "redis://:Can%40ry%3A%2F%25%23pw@localhost:6379/0",
        "redis://user:Can@ry:/%#pw@localhost:6379/0",
        "postgresql+asyncpg://app:Can%40ry%3A%2F%25%23pw@db.example:5432/app?sslmode=require",
    ],
)
def test_password_never_prints(raw: str) -> None:
    """str and repr show *** where the password was, encoded or not (raw '/ ? #' only by best guess, and flagged)."""
    url = SecretURL(raw)
    assert CANARY == url.password
    assert ("Can@ry:/" in raw) == url.needs_encoding
    for text in (str(url), repr(url), f"{url}", f"{url!r}"):
        assert CANARY not in text
        assert "Can%40ry" not in text
        assert "***" in text
    assert "localhost" in str(url) or "db.example" in str(url)


def test_secret_value_is_percent_encoded_for_drivers() -> None:
    """The driver gets a well-formed URL when the password holds a raw '@' or ':'.

    Real URL parsing ends the user and password at the last '@' of the authority,
    which itself ends at the first '/', '?' or '#': raw '@' and ':' are therefore
    supported, while a raw '/', '?' or '#' cannot be (it is indistinguishable from
    the path, query or fragment -- see the next test).
    """
    url = SecretURL("redis://user:Can@ry:pw@localhost:6379/2")
    assert "redis://user:Can%40ry%3Apw@localhost:6379/2" == url.get_secret_value()
    assert ("localhost", 6379, "/2", "Can@ry:pw") == (url.host, url.port, url.path, url.password)
    assert not url.needs_encoding


def test_a_raw_slash_or_hash_in_a_password_is_flagged_and_still_hidden() -> None:
    """A raw '/', '?' or '#' in a password sets needs_encoding; the best guess keeps the whole password out of str().

    Before, the URL was split at its last '@', which read this password right but
    moved the host of ``?application_name=a@b`` URLs; the URL checks now refuse the
    raw form and ask for %2F, %3F, %23 -- SecretURL only guesses so that nothing prints.
    """
    url = SecretURL("redis://user:Can@ry:/%#pw@localhost:6379/2")
    assert url.needs_encoding
    assert "redis://user:***@localhost:6379/2" == str(url)
    assert ("localhost", 6379, "/2", CANARY) == (url.host, url.port, url.path, url.password)


def test_an_at_sign_after_the_authority_does_not_move_the_host() -> None:
    """The user and password end at the last '@' before the path, not the last '@' of the URL."""
    url = SecretURL("postgresql+asyncpg://u:Pw-Secret-9@127.0.0.1:5432/test?application_name=a@b")
    assert ("127.0.0.1", 5432, "/test", "Pw-Secret-9") == (url.host, url.port, url.path, url.password)
    assert "a@b" == url.query_params["application_name"]
    assert not url.needs_encoding
    assert "postgresql+asyncpg://u:***@127.0.0.1:5432/test?application_name=a@b" == str(url)


def test_replace_swaps_the_scheme_and_keeps_the_secret() -> None:
    """replace() gives a copy with another scheme or query, the password still hidden."""
    url = SecretURL("postgres://u:Pw-Secret-9@db/app?sslmode=require").replace(scheme="postgresql+asyncpg", query="")
    assert "postgresql+asyncpg://u:Pw-Secret-9@db/app" == url.get_secret_value()
    assert "postgresql+asyncpg://u:***@db/app" == str(url)


def test_secret_query_parameters_are_redacted() -> None:
    """password= and token= in the query string are secrets too."""
    url = SecretURL("postgresql://u@h/db?password=QuerySecret1&application_name=svc")
    assert "QuerySecret1" not in repr(url)
    assert "application_name=svc" in str(url)
    assert "QuerySecret1" == url.query_params["password"]


def test_scrub_removes_known_secrets_from_any_text() -> None:
    """A driver's message that echoes the password is scrubbed."""
    SecretURL("redis://:Zebra-Secret-42@h:1/0")
    assert "auth failed for ***" == scrub("auth failed for Zebra-Secret-42")
    assert "x ***" == scrub("x Zebra-Secret-42".replace("-", "%2D")) or "Zebra" not in scrub("x Zebra-Secret-42")


def test_ipv6_and_unix_urls_parse() -> None:
    """Hosts in brackets and socket paths are understood."""
    url = SecretURL("redis://:pw1234@[::1]:6380/0")
    assert ("::1", 6380) == (url.host, url.port)
    sock = SecretURL("unix:///run/redis.sock?db=1")
    assert ("unix", None, "/run/redis.sock") == (sock.scheme, sock.host, sock.path)
    pg = SecretURL("postgresql+asyncpg://user@/test?host=/var/run/postgresql")
    assert (None, "user", "/test", "/var/run/postgresql") == (pg.host, pg.username, pg.path, pg.query_params["host"])
    bad = SecretURL("redis://[::1:6379/0")
    assert ("[::1:6379", None) == (bad.host, bad.port)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://u:canary-never-registered@127.0.0.1:1 refused", "redis://u:***@127.0.0.1:1 refused"),
        ("rediss://:canary-pw@h:6380/0", "rediss://:***@h:6380/0"),
        (
            "postgresql://app@h/db?sslmode=require&password=canary-q",
            "postgresql://app@h/db?sslmode=require&password=***",
        ),
        ("https://api.example/x?TOKEN=canary-t&page=2", "https://api.example/x?TOKEN=***&page=2"),
        ("redis://127.0.0.1:6379/0 timed out", "redis://127.0.0.1:6379/0 timed out"),
        ("mail a:b@c when redis://h:1/0 is down", "mail a:b@c when redis://h:1/0 is down"),
        ("postgresql://myadmin@myserver:hunter2x@host/db", "postgresql://myadmin@myserver:***@host/db"),
        ("1redis://u:pw@h x_redis://u:pw@h", "1redis://u:***@h x_redis://u:***@h"),
        ("连接postgres://u:pw@h", "连接postgres://u:***@h"),
        ("redis://u:<hunter2x>@h", "redis://u:***@h"),
        (
            "could not connect: host=db user=app password=canary-dsn sslmode=require",
            "could not connect: host=db user=app password=*** sslmode=require",
        ),
        ("dsn(password=canary-p, host=x)", "dsn(password=***, host=x)"),
        ("mypassword=visible is not a key of its own", "mypassword=visible is not a key of its own"),
        ("redis://u:HUNTERTWO@h:1", "redis://u:***@h:1"),
        ("postgresql://app:Ca@n:a/r%y#42@db:5432/app down", "postgresql://app:***@db:5432/app down"),
    ],
)
def test_a_password_in_any_url_is_scrubbed_even_if_nobody_registered_it(text: str, expected: str) -> None:
    """An app's own component may put a URL with a password in its error: it never prints either."""
    assert expected == scrub_foreign(text)


def test_our_own_messages_keep_their_example_urls() -> None:
    """A message infraboot writes shows how to spell a URL; that example is not a secret."""
    example = "write it as redis://:pa%2Fss@HOST:6379/0 or postgresql+asyncpg://user:pass@HOST/DB"
    assert example == scrub(example)


async def test_an_own_components_error_with_a_password_in_a_url_never_reaches_the_log_or_the_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The failure line, the report and its render() carry the error with the password masked."""
    from collections.abc import AsyncIterator

    import infraboot

    @infraboot.component("own", retries=0, required=False)
    async def own(ctx: infraboot.Context) -> AsyncIterator[int]:
        raise ConnectionRefusedError("redis://u:canary-own-s3cret@127.0.0.1:1 refused")
        yield 1

    system = infraboot.SystemInitializer([own], recovery=False)
    report = await system.initialize_all()
    health = await system.health()
    await system.shutdown()
    seen = caplog.text + report.render() + repr(report) + repr(health) + str(report.to_dict())
    assert "u:***@127.0.0.1:1" in seen
    assert "canary-own-s3cret" not in seen


@pytest.mark.parametrize(
    "hostile",
    [
        "a://:" * 20_000,
        "a-" * 50_000 + "://",
        "a." * 50_000 + " x://",
        ("x://" + ":" * 1000 + "@" * 1000) * 50,
        "redis://u:" + "p" * 100_000 + "@h",
    ],
)
def test_scrubbing_hostile_text_takes_linear_time(hostile: str) -> None:
    """A driver's message is not ours to trust: 100 KB of any shape is scrubbed in well under a second."""
    import time

    started = time.perf_counter()
    out = scrub_foreign(hostile)
    assert time.perf_counter() - started < 1.0
    assert "p" * 100 not in out
