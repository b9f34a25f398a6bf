"""Rotating credentials: the provider interface, the cache, the file and RDS IAM providers, the settings."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import pytest

import infraboot
from infraboot import ConfigError, Credentials, FileCredentials, RdsIamCredentials
from infraboot._base._redact import scrub
from infraboot._components._credentials import CredentialCache
from infraboot._components._rotation import database_connect, without_userinfo
from infraboot._components._settings import validate_config

CANARY = "canary-s3cret-rotating-9f2"


def write(path: Path, text: str) -> None:
    """Replace *path* at once, as a Kubernetes secret mount or a Vault agent does (write, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_credentials_never_show_the_password() -> None:
    """The repr hides the password, and a driver message holding it is scrubbed."""
    creds = Credentials("app", CANARY, 100.0)
    assert CANARY not in repr(creds)
    assert "<Credentials user='app' password=*** expires_at=100>" == repr(creds)
    assert CANARY not in scrub(f'password authentication failed: "{CANARY}"')


async def test_concurrent_connects_share_one_fetch() -> None:
    """Fifty connections opening together ask the provider once."""
    calls = 0

    async def provider() -> Credentials:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return Credentials("app", "pw-pair-7c3")

    cache = CredentialCache(provider, component="db")
    got = await asyncio.gather(*(cache.get() for _ in range(50)))
    assert (1, {("app", "pw-pair-7c3")}) == (calls, {(c.user, c.password) for c in got})


async def test_stale_credentials_are_fetched_again_and_counted_as_a_generation() -> None:
    """Credentials near their expiry are replaced; a change is a new generation that rolls connections over."""
    answers = [
        Credentials("app", "pw-first-7c1", time.time() + 0.2),
        Credentials("app", "pw-second-7c2", time.time() + 100),
    ]

    async def provider() -> Credentials:
        return answers.pop(0)

    cache = CredentialCache(provider, component="db")
    first = await cache.get()
    assert ("pw-first-7c1", 1) == (first.password, cache.generation)
    assert cache.rolls_over(0, cache.valid_until)
    async with asyncio.timeout(5):
        while (await cache.get()).password == "pw-first-7c1":
            await asyncio.sleep(0.02)
    assert (2, True) == (cache.generation, cache.rolls_over(1, first.expires_at or 0.0))


async def test_a_login_refused_after_another_connection_saw_the_rotation_retries_at_once() -> None:
    """The source moved on while this login was in flight (another connection's refresh): the refused
    login tries the new password at once, not after waiting for yet another change."""
    server = {"password": "pw-old-5a1"}
    source = {"password": "pw-old-5a1"}

    async def provider() -> Credentials:
        return Credentials("app", source["password"])

    cache = CredentialCache(provider, component="db")
    tried: list[str] = []
    opened = asyncio.Event()  # stands for the driver's connection (weakly referenced by the rollover stamps)

    async def connect(**kwargs: str) -> asyncio.Event:
        tried.append(kwargs["password"])
        if len(tried) == 1:  # the rotation lands mid-login; another connection refreshes the cache
            server["password"] = source["password"] = "pw-new-5a2"
            assert await cache.refreshed()
        if kwargs["password"] != server["password"]:
            raise PermissionError("password authentication failed")
        return opened

    login = database_connect(cache, connect, lambda exc: isinstance(exc, PermissionError))
    t0 = time.monotonic()
    assert opened is await login()
    assert (["pw-old-5a1", "pw-new-5a2"], True) == (tried, time.monotonic() - t0 < 1.0)


async def test_a_failing_refresh_keeps_credentials_that_still_work(caplog: pytest.LogCaptureFixture) -> None:
    """The source failing while the cached credentials are valid is logged; the cached ones are used."""
    answers: list[object] = [Credentials("app", CANARY, time.time() + 0.4), OSError("vault unreachable")]

    async def provider() -> Credentials:
        answer = answers.pop(0) if answers else OSError("still down")
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, Credentials)
        return answer

    cache = CredentialCache(provider, component="db")
    await cache.get()
    async with asyncio.timeout(5):
        while "credentials_refresh_failed" not in caplog.text:
            assert CANARY == (await cache.get()).password
            await asyncio.sleep(0.02)
    assert CANARY not in caplog.text


async def test_a_provider_returning_something_else_names_the_fix() -> None:
    """A provider must return Credentials (or a (user, password) pair)."""

    async def pair() -> tuple[str, str]:
        return ("app", "pw-pair-7c3")

    async def wrong() -> str:
        return "pw-str-7c4"

    assert ("app", "pw-pair-7c3") == ((c := await CredentialCache(pair, component="x").get()).user, c.password)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"returned a str; return infraboot.Credentials\(user, password\)"):
        await CredentialCache(wrong, component="x").get()  # type: ignore[arg-type]


async def test_file_credentials_from_a_secret_mount(tmp_path: Path) -> None:
    """A directory with username and password files (a mounted Secret) is re-read when it changes, in a thread."""
    (tmp_path / "username").write_text("app\n")
    write(tmp_path / "password", "pw-first-7c1\n")
    source = FileCredentials(tmp_path)
    assert ("app", "pw-first-7c1", None) == ((c := await source()).user, c.password, c.expires_at)
    write(tmp_path / "password", "pw-second-7c2")
    assert "pw-second-7c2" == (await source()).password
    seen: list[str] = []
    real = source._read

    def spy() -> Credentials:
        seen.append(threading.current_thread().name)
        return real()

    source._read = spy  # type: ignore[method-assign]
    await source()
    assert [threading.main_thread().name] != seen


async def test_file_credentials_from_a_vault_agent_file(tmp_path: Path) -> None:
    """One JSON file with username, password and expires_at (epoch or ISO 8601); a plain file is the password."""
    path = tmp_path / "db.json"
    write(path, json.dumps({"username": "v-app-1", "password": "pw-first-7c1", "expires_at": "2030-01-01T00:00:00Z"}))
    creds = await FileCredentials(path)()
    assert ("v-app-1", "pw-first-7c1", 1893456000.0) == (creds.user, creds.password, creds.expires_at)
    write(path, "plain-password\n")
    assert ("default-user", "plain-password") == (
        (c := await FileCredentials(path, username="default-user")()).user,
        c.password,
    )
    write(path, '{"username": "x"}')
    with pytest.raises(ConfigError, match='has no "password" string'):
        await FileCredentials(path)()


async def test_rds_iam_tokens_are_signed_off_the_loop_and_expire_in_15_minutes() -> None:
    """The stub signer runs in a thread; the token is the password; it is valid 900 s."""
    calls: list[tuple[str, int, str, str | None, str]] = []

    def signer(host: str, port: int, user: str, region: str | None) -> str:
        calls.append((host, port, user, region, threading.current_thread().name))
        return f"token-{len(calls)}"

    source = RdsIamCredentials("db.example.rds.amazonaws.com", 5432, "app", region="eu-west-1", signer=signer)
    before = time.time()
    creds = await source()
    assert ("app", "token-1") == (creds.user, creds.password)
    assert creds.expires_at is not None and 899 <= creds.expires_at - before <= 901
    assert ("db.example.rds.amazonaws.com", 5432, "app", "eu-west-1") == calls[0][:4]
    assert threading.main_thread().name != calls[0][4]


async def test_rds_iam_without_boto3_names_the_install() -> None:
    """Without boto3 (and no signer) the error says what to install."""
    pytest.importorskip("pytest")
    try:
        import boto3  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install boto3"):
            await RdsIamCredentials("h", 5432, "app")()
    else:
        pytest.skip("boto3 is installed")


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"credentials": "vault"}, "credentials='vault': must be file:PATH or aws-rds-iam"),
        ({"credentials": "file:/no/such/dir"}, "credentials=file:/no/such/dir: no such file or directory"),
        ({"credentials": 3}, "credentials must be an async function returning infraboot.Credentials"),
    ],
)
def test_bad_credentials_settings_name_the_fix(settings: dict[str, object], expected: str) -> None:
    """Each mistake is found before any I/O, naming the setting and the fix."""
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        validate_config(database=infraboot.DatabaseSettings(url="postgresql+asyncpg://db/app", **settings))


def test_a_password_in_the_url_and_credentials_are_refused(tmp_path: Path) -> None:
    """Two sources for one password: the message says which to remove, and never shows it."""
    url = f"redis://:{CANARY}@127.0.0.1:6379/0"
    with pytest.raises(ConfigError) as info:
        validate_config(redis=infraboot.RedisSettings(url=url, credentials=f"file:{tmp_path}"))
    assert "the URL holds a password too; remove the password from the URL" in str(info.value)
    assert CANARY not in str(info.value)


def test_environment_spelling(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """DATABASE_CREDENTIALS=file:PATH and aws-rds-iam are read from the environment."""
    monkeypatch.setenv("REDIS_ENABLED", "false")
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://app@db/app")
    monkeypatch.setenv("DATABASE_CREDENTIALS", f"file:{tmp_path}")
    validate_config()
    monkeypatch.setenv("DATABASE_CREDENTIALS", "aws-rds-iam")
    validate_config()
    monkeypatch.setenv("REDIS_ENABLED", "true")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("REDIS_CREDENTIALS", "aws-rds-iam")
    with pytest.raises(ConfigError, match="REDIS_CREDENTIALS=aws-rds-iam is for databases"):
        validate_config()


def test_the_url_loses_its_user_when_the_provider_gives_it() -> None:
    """The provider's user and password replace the URL's."""
    assert "redis://127.0.0.1:6379/8?x=a@b" == without_userinfo("redis://app@127.0.0.1:6379/8?x=a@b")
    assert "unix:///run/redis.sock?db=1" == without_userinfo("unix:///run/redis.sock?db=1")


def test_a_blocking_provider_is_refused() -> None:
    """A plain function would block the loop at every connect: the setting asks for an async one."""

    def fetch() -> Credentials:
        return Credentials("app", "pw-pair-7c3")

    with pytest.raises(ConfigError, match=r"fetch is not async; write 'async def fetch\(\) -> infraboot.Credentials'"):
        validate_config(database=infraboot.DatabaseSettings(url="postgresql+asyncpg://db/app", credentials=fetch))


def test_rds_iam_needs_the_user_in_the_url() -> None:
    """The token is signed for the URL's user: a URL without one is refused before any I/O."""
    with pytest.raises(ConfigError, match="aws-rds-iam signs a token for the user of url, which names none"):
        validate_config(
            redis=infraboot.RedisSettings(enabled=False),
            database=infraboot.DatabaseSettings(url="postgresql+asyncpg://db.example/app", credentials="aws-rds-iam"),
        )
