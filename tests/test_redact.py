"""SecretURL and scrub(): a password never prints."""

from __future__ import annotations

import pytest

from infraboot import SecretURL
from infraboot._redact import scrub

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
    """str and repr show *** where the password was, encoded or not."""
    url = SecretURL(raw)
    assert CANARY == url.password
    for text in (str(url), repr(url), f"{url}", f"{url!r}"):
        assert CANARY not in text
        assert "Can%40ry" not in text
        assert "***" in text
    assert "localhost" in str(url) or "db.example" in str(url)


def test_secret_value_is_percent_encoded_for_drivers() -> None:
    """The driver gets a well-formed URL even when the password was written raw."""
    url = SecretURL("redis://user:Can@ry:/%#pw@localhost:6379/2")
    assert "redis://user:Can%40ry%3A%2F%25%23pw@localhost:6379/2" == url.get_secret_value()
    assert ("localhost", 6379, "/2") == (url.host, url.port, url.path)


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
