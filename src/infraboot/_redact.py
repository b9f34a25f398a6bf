"""Secrets never leave infraboot in clear text.

Every URL that carries a password is held in a :class:`SecretURL` from the moment
it is parsed.  Parsing also records the secret in a process-wide registry, so that
:func:`scrub` can remove it from any text that is about to be logged, raised or
reported -- including messages written by a driver we do not control.
"""

from __future__ import annotations

import re
import threading

__all__ = ["REDACTED", "SecretURL", "register_secret", "scrub"]

REDACTED = "***"

# Query parameters whose values are secrets in the URLs our drivers accept.
_SECRET_PARAMS = frozenset(
    {"password", "passwd", "pass", "pwd", "secret", "token", "sslpassword", "auth", "api_key", "apikey"}
)
# Short strings would turn every "a" in a message into "***"; a real secret this short is
# not worth protecting at the cost of unreadable errors, and it is still hidden in SecretURL.
_MIN_SCRUB_LEN = 3

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register_secret(secret: str) -> None:
    """Remember *secret* (and its percent-encoded forms) so :func:`scrub` removes it."""
    global _pattern
    from urllib.parse import quote, unquote

    forms = {secret, quote(secret, safe=""), quote(secret), unquote(secret)}
    forms = {f for f in forms if len(f) >= _MIN_SCRUB_LEN}
    if not forms or forms <= _secrets:
        return
    with _lock:
        _secrets.update(forms)
        # Longest first, so a secret that contains another is replaced whole.
        alternatives = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(a) for a in alternatives))


def scrub(text: str) -> str:
    """Return *text* with every registered secret replaced by ``***``."""
    pattern = _pattern
    if pattern is None:
        return text
    return pattern.sub(REDACTED, text)


class SecretURL:
    """A connection URL whose password and secret query parameters never print.

    ``str()`` and ``repr()`` show the URL with the secrets replaced by ``***``;
    :meth:`get_secret_value` returns the URL to hand to a driver, with the user
    and password percent-encoded so that ``@ : / % #`` in a password are safe.

    >>> url = SecretURL("redis://:s3cr3t@localhost:6379/0")
    >>> url
    SecretURL('redis://:***@localhost:6379/0')
    """

    __slots__ = ("_clean", "_redacted", "host", "password", "path", "port_text", "query", "scheme", "username")

    def __init__(self, url: str) -> None:
        if not isinstance(url, str):
            msg = f"a URL must be a string, not {type(url).__name__}"
            raise TypeError(msg)
        # urllib.parse loads here, on the first URL, not at `import infraboot`.
        from urllib.parse import quote, unquote

        url = url.strip()
        scheme, sep, rest = url.partition("://")
        if not sep:
            scheme, rest = "", url
        userinfo, at, hostpart = rest.rpartition("@")
        if not at:
            userinfo, hostpart = "", rest
        user, colon, password = userinfo.partition(":")
        self.scheme = scheme.lower()
        self.username = unquote(user) if user else None
        self.password = unquote(password) if colon else None
        if self.password:
            register_secret(self.password)
            register_secret(password)
        hostport, slash, tail = hostpart.partition("/")
        path_and_query = slash + tail
        if not slash:
            hostport, qmark, q = hostpart.partition("?")
            path_and_query = (qmark + q) if qmark else ""
        self.host, self.port_text = _split_host_port(hostport)
        path, qmark, query = path_and_query.partition("?")
        self.path = path
        self.query = query if qmark else None

        secret_query, redacted_query = self._query_forms()
        auth_clean = auth_redacted = ""
        if self.username is not None or self.password is not None:
            auth_clean = quote(self.username or "", safe="")
            auth_redacted = auth_clean
            if self.password is not None:
                auth_clean += ":" + quote(self.password, safe="")
                auth_redacted += ":" + REDACTED
            auth_clean += "@"
            auth_redacted += "@"
        prefix = f"{scheme}://" if sep else ""
        self._clean = f"{prefix}{auth_clean}{hostport}{path}{secret_query}"
        self._redacted = f"{prefix}{auth_redacted}{hostport}{path}{redacted_query}"

    def _query_forms(self) -> tuple[str, str]:
        from urllib.parse import unquote

        if self.query is None:
            return "", ""
        clean: list[str] = []
        redacted: list[str] = []
        for pair in self.query.split("&"):
            key, eq, value = pair.partition("=")
            clean.append(pair)
            if eq and key.lower() in _SECRET_PARAMS and value:
                register_secret(unquote(value))
                register_secret(value)
                redacted.append(f"{key}={REDACTED}")
            else:
                redacted.append(pair)
        return "?" + "&".join(clean), "?" + "&".join(redacted)

    @property
    def port(self) -> int | None:
        """The port as a number, or ``None`` when the URL names none (or an invalid one)."""
        if not self.port_text or not self.port_text.isdigit():
            return None
        return int(self.port_text)

    @property
    def query_params(self) -> dict[str, str]:
        """The query string as a dict (last value wins), values percent-decoded."""
        from urllib.parse import unquote

        if not self.query:
            return {}
        out: dict[str, str] = {}
        for pair in self.query.split("&"):
            key, _, value = pair.partition("=")
            if key:
                out[unquote(key)] = unquote(value)
        return out

    def get_secret_value(self) -> str:
        """The URL with its secrets, for the driver and nothing else."""
        return self._clean

    def __str__(self) -> str:
        return self._redacted

    def __repr__(self) -> str:
        return f"SecretURL({self._redacted!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SecretURL):
            return self._clean == other._clean
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._clean)


def _split_host_port(hostport: str) -> tuple[str | None, str | None]:
    if hostport.startswith("["):  # IPv6 literal: [::1]:6379
        end = hostport.find("]")
        if end == -1:
            return hostport, None
        host = hostport[1:end]
        rest = hostport[end + 1 :]
        return host or None, rest[1:] if rest.startswith(":") else None
    host, colon, port = hostport.rpartition(":")
    if not colon:
        return hostport or None, None
    return host or None, port
