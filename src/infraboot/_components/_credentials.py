"""Credentials that rotate without a restart: an async provider, read for every new physical connection.

A provider is any ``async def credentials() -> Credentials`` (a user, a password, and when
they stop working). The built-in Redis and database components ask it for every new
connection, through :class:`CredentialCache`: one fetch at a time however many connections
open together, a cached answer until it goes stale (three quarters of its lifetime, at most
a minute before it expires), and nothing that blocks the event loop (file reads and token
signing run in a thread). Pooled connections opened with credentials that went stale, or
that the source has since replaced, are reconnected when next checked out: they roll over
before the credentials expire. A connection refused for its password asks the source again
and retries with each new answer for up to ROTATION_GRACE (a rotation that reached the server first).

Built-ins: :class:`FileCredentials` (a Kubernetes secret mount, a Vault agent's rendered
file; re-read when it changes) and :class:`RdsIamCredentials` (AWS RDS IAM tokens, boto3
optional). No password is ever logged, shown in a repr or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from infraboot._base._log import event
from infraboot._base._redact import REDACTED, register_secret
from infraboot.exceptions import ConfigError

__all__ = [
    "CredentialCache",
    "CredentialProvider",
    "Credentials",
    "FileCredentials",
    "RdsIamCredentials",
    "credentials_problem",
    "provider_from_setting",
]

#: How long before its expiry a credential stops being handed out (a quarter of its lifetime when that is shorter).
ROLLOVER_MARGIN = 60.0
#: A new connection is used this long at least before its credentials make it roll over.
MIN_CONNECTION_LIFE = 1.0
#: How long a connection refused for its password waits for the source to change before it gives up.
ROTATION_GRACE = 5.0
#: How many times a Redis connection the server drops during its login (a rotation killing connections) reconnects.
HANDSHAKE_RETRIES = 3
_MAX_SCRUBBED = 256  # longer passwords are signed tokens: see Credentials.__post_init__
#: Lifetime of an AWS RDS IAM authentication token (fixed by AWS).
RDS_TOKEN_LIFETIME = 900.0


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user and a password, and when they stop working (``expires_at``: wall time, ``time.time()``; ``None``: never).

    The password never shows in the repr. ``user=None`` keeps the user of the URL.
    """

    user: str | None
    password: str = field(repr=False)
    expires_at: float | None = None

    def __post_init__(self) -> None:
        # Scrubbed from any driver message too. Not a signed token (an RDS IAM token is ~1 KB, a new one
        # every ten minutes): the scrub pattern would grow without end, and no driver echoes a token.
        if self.password and len(self.password) <= _MAX_SCRUBBED:
            register_secret(self.password)

    def __repr__(self) -> str:
        expires = "" if self.expires_at is None else f" expires_at={self.expires_at:.0f}"
        return f"<Credentials user={self.user!r} password={REDACTED}{expires}>"


class CredentialProvider(Protocol):
    """``async def credentials() -> Credentials``: what the built-in components ask for every new connection."""

    def __call__(self) -> Awaitable[Credentials]: ...


class CredentialCache:
    """One provider's answers, shared by every connection of a component; never blocks the loop.

    ``await cache.get()`` returns the cached credentials until they go stale, then fetches once
    (concurrent callers share the fetch). A fetch that fails while the cached ones still work
    keeps those (logged). ``generation`` grows each time the source gives different credentials:
    a pooled connection opened under an older one (or past ``stale_at``) is reconnected.
    """

    def __init__(self, provider: CredentialProvider, *, component: str) -> None:
        self.provider = provider
        self.component = component
        self.current: Credentials | None = None
        self.generation = 0
        self.stale_at = math.inf  # wall time after which the source is asked again
        self.valid_until = math.inf  # wall time after which connections opened with the current ones roll over
        self._fetching: asyncio.Future[Credentials] | None = None

    async def get(self) -> Credentials:
        """The credentials to open a connection with."""
        current = self.current
        if current is not None and time.time() < self.stale_at:
            return current
        return await self._fetch()

    async def refreshed(self, wait: float = 0.0, *, since: int | None = None) -> bool:
        """Ask the source again (a connection was refused); ``True`` when it now gives other credentials.

        *since* is the generation the refused connection used (default: the current one): when
        another connection's refresh moved past it meanwhile, the answer is ``True`` at once.
        With *wait*, keep asking for up to that long (a rotation on the server that the source
        has not caught up with yet).
        """
        before = self.generation if since is None else since
        end = time.monotonic() + wait
        while True:
            with contextlib.suppress(Exception):  # a failing source: the caller's error stands
                await self._fetch()
            if self.generation != before or time.monotonic() >= end:
                return self.generation != before
            await asyncio.sleep(min(0.1, max(0.0, end - time.monotonic())))

    def rolls_over(self, generation: int, valid_until: float) -> bool:
        """Whether a pooled connection opened under *generation* (good until *valid_until*) must reconnect now.

        No I/O: when the source is due to be asked again, that happens in the background and a
        change is seen by the next checkout.
        """
        now = time.time()
        if now >= self.stale_at and (self._fetching is None or self._fetching.done()):
            self._start_fetch()
        return generation != self.generation or now >= valid_until

    def stamp(self) -> tuple[int, float]:
        """What a connection opened now remembers: the generation, and when it rolls over (a second at least,
        so that credentials handed out already stale never make a new connection roll over at once)."""
        return self.generation, max(self.valid_until, time.time() + MIN_CONNECTION_LIFE)

    async def _fetch(self) -> Credentials:
        fetching = self._fetching
        if fetching is None or fetching.done() or fetching.get_loop() is not asyncio.get_running_loop():
            fetching = self._start_fetch()  # (a fetch of another loop: a forked child's, or a test's)
        return await asyncio.shield(fetching)

    def _start_fetch(self) -> asyncio.Future[Credentials]:
        fetching = self._fetching = asyncio.ensure_future(self._ask())
        fetching.add_done_callback(_retrieve)  # a caller cancelled meanwhile leaves no unretrieved error
        return fetching

    async def _ask(self) -> Credentials:
        current = self.current
        try:
            answer = await self.provider()
        except Exception as exc:
            if current is not None and (current.expires_at is None or time.time() < current.expires_at):
                event(logging.WARNING, "credentials_refresh_failed", self.component, error=type(exc).__name__)
                self.stale_at = time.time() + 1.0  # the cached ones still work: ask again in a second
                return current
            raise
        fresh = _as_credentials(answer, self.provider)
        if current is None or (fresh.user, fresh.password) != (current.user, current.password):
            self.generation += 1
            if current is not None:
                event(logging.INFO, "credentials_rotated", self.component, generation=self.generation)
        now = time.time()
        self.current = fresh
        self.valid_until = valid_until(fresh, now)
        poll = getattr(self.provider, "poll", None)
        self.stale_at = min(self.valid_until, math.inf if poll is None else now + poll)
        return fresh


def valid_until(credentials: Credentials, fetched: float) -> float:
    """When *credentials* fetched at *fetched* stop being handed out: a margin before they expire (never: inf)."""
    if credentials.expires_at is None:
        return math.inf
    life = max(0.0, credentials.expires_at - fetched)
    return credentials.expires_at - min(ROLLOVER_MARGIN, life / 4)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # a background fetch that failed: the next get() asks again and raises


def _as_credentials(answer: object, provider: object) -> Credentials:
    if isinstance(answer, Credentials):
        return answer
    if isinstance(answer, tuple) and len(answer) == 2 and all(isinstance(p, str | None) for p in answer):
        return Credentials(answer[0], answer[1] or "")
    what = type(answer).__name__
    msg = f"credential provider {provider!r} returned a {what}; return infraboot.Credentials(user, password)"
    raise TypeError(msg)


class FileCredentials:
    """Credentials read from files that something else rotates: a Kubernetes secret mount, a Vault agent.

    *path* is a directory holding ``username`` and ``password`` files (a mounted Secret),
    or one file: JSON ``{"username": ..., "password": ..., "expires_at": ...}`` (``expires_at``
    in epoch seconds or ISO 8601; optional), or the password alone. The files are checked
    (a ``stat`` in a thread) at most every *poll* seconds and re-read when they changed;
    *username* is used when the files name none (else the URL's user is kept).
    """

    def __init__(self, path: str | os.PathLike[str], *, username: str | None = None, poll: float = 1.0) -> None:
        self.path = Path(path)
        self.username = username
        self.poll = poll
        self._seen: tuple[Any, ...] | None = None
        self._last: Credentials | None = None

    async def __call__(self) -> Credentials:
        return await asyncio.to_thread(self._read)

    def _read(self) -> Credentials:
        files = [self.path / "username", self.path / "password"] if self.path.is_dir() else [self.path]
        seen = tuple((f, s.st_mtime_ns, s.st_size, s.st_ino) for f in files if (s := _stat(f)) is not None)
        if self._last is not None and seen == self._seen:
            return self._last
        if self.path.is_dir():
            password_file = self.path / "password"
            if not password_file.is_file():
                msg = (
                    f"credentials directory {str(self.path)!r} has no 'password' file; mount the secret's password key"
                )
                raise ConfigError(msg)
            user_file = self.path / "username"
            user = user_file.read_text().strip() if user_file.is_file() else self.username
            found = Credentials(user, password_file.read_text().strip())
        else:
            found = _parse_file(self.path.read_text(), self.username, self.path)
        self._seen, self._last = seen, found
        return found

    def __repr__(self) -> str:
        return f"FileCredentials({str(self.path)!r})"


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def _parse_file(text: str, username: str | None, path: Path) -> Credentials:
    stripped = text.strip()
    if not stripped.startswith("{"):
        return Credentials(username, stripped)
    try:
        data = json.loads(stripped)
    except ValueError:
        msg = f"credentials file {str(path)!r} starts with '{{' but is not valid JSON; write {_FILE_EXAMPLE}"
        raise ConfigError(msg) from None
    password = data.get("password") if isinstance(data, dict) else None
    if not isinstance(password, str):
        msg = f'credentials file {str(path)!r} has no "password" string; write {_FILE_EXAMPLE}'
        raise ConfigError(msg)
    user = data.get("username", data.get("user", username))
    return Credentials(user if isinstance(user, str) else username, password, _epoch(data.get("expires_at"), path))


_FILE_EXAMPLE = '{"username": "app", "password": "...", "expires_at": "2030-01-01T00:00:00Z"}'


def _epoch(value: object, path: Path) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    msg = f"credentials file {str(path)!r}: expires_at must be epoch seconds or ISO 8601, e.g. {_FILE_EXAMPLE}"
    raise ConfigError(msg)


Signer = Callable[[str, int, str, str | None], str]


class RdsIamCredentials:
    """AWS RDS IAM authentication tokens, used as the database password (valid 15 minutes).

    The token is signed with boto3's ``generate_db_auth_token`` in a thread (boto3 may ask
    the instance metadata service for its own credentials: never on the loop). A new token is
    signed a minute before the last one expires, and pooled connections opened with it roll over
    then. *signer* replaces boto3 (``signer(host, port, user, region) -> token``),
    for tests or another SDK. The URL needs ``sslmode``/TLS as RDS requires; the user is the
    URL's unless *user* is given.
    """

    poll = None

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        *,
        region: str | None = None,
        signer: Signer | None = None,
        lifetime: float = RDS_TOKEN_LIFETIME,
    ) -> None:
        self.host, self.port, self.user, self.region = host, port, user, region
        self.lifetime = lifetime
        self._signer = signer

    async def __call__(self) -> Credentials:
        signer = self._signer or _boto3_signer()
        issued = time.time()
        token = await asyncio.to_thread(signer, self.host, self.port, self.user, self.region)
        return Credentials(self.user, token, issued + self.lifetime)

    def __repr__(self) -> str:
        return f"RdsIamCredentials(host={self.host!r}, port={self.port}, user={self.user!r}, region={self.region!r})"


def _boto3_signer() -> Signer:
    try:
        import boto3  # type: ignore[import-not-found,unused-ignore]  # optional, untyped
    except ImportError:
        msg = "RDS IAM tokens need boto3: pip install boto3 (or give RdsIamCredentials(..., signer=...))"
        raise ConfigError(msg) from None
    clients: dict[str | None, Any] = {}

    def sign(host: str, port: int, user: str, region: str | None) -> str:
        client = clients.get(region)
        if client is None:
            client = clients[region] = boto3.client("rds", region_name=region)
        token: str = client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region)
        return token

    return sign


def credentials_problem(label: str, value: object, *, url_has_password: bool) -> str | None:
    """A problem line for a ``credentials`` setting (an async callable, ``file:PATH``, ``aws-rds-iam``), or ``None``."""
    if value is None:
        return None
    example = f"{label}=file:/var/run/secrets/db (or {label}=aws-rds-iam, or an async function in code)"
    if isinstance(value, str):
        kind, _, rest = value.partition(":")
        if value == "aws-rds-iam":
            pass
        elif kind == "file" and rest:
            if not Path(rest).exists():
                return f"{label}=file:{rest}: no such file or directory; mount the secret there, e.g. {example}"
        else:
            return f"{label}={value!r}: must be file:PATH or aws-rds-iam, e.g. {example}"
    elif not callable(value):
        return f"{label} must be an async function returning infraboot.Credentials, e.g. {example}"
    elif not (inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(getattr(value, "__call__", None))):  # noqa: B004
        name = getattr(value, "__name__", type(value).__name__)
        return f"{label}: {name} is not async; write 'async def {name}() -> infraboot.Credentials' (nothing blocking)"
    if url_has_password:
        return f"{label} is set and the URL holds a password too; remove the password from the URL"
    return None


def provider_from_setting(value: object, *, host: str | None, port: int | None, user: str | None) -> CredentialProvider:
    """The provider a ``credentials`` setting names (already checked by :func:`credentials_problem`)."""
    if isinstance(value, str):
        if value == "aws-rds-iam":
            if not host or not user:
                example = "postgresql://app@db.rds.amazonaws.com/app"
                msg = f"credentials=aws-rds-iam needs the database URL's host and user, e.g. {example}"
                raise ConfigError(msg)
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            return RdsIamCredentials(host, port or 5432, user, region=region)
        return FileCredentials(value.partition(":")[2], username=user)
    provider: CredentialProvider = value  # type: ignore[assignment]  # callable, checked before
    return provider
