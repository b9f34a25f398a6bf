"""Secrets never leave infraboot in clear text.

Every URL that carries a password is held in a :class:`SecretURL` from the moment
it is parsed.  Parsing also records the secret in a process-wide registry, so that
:func:`scrub` can remove it from any text that is about to be logged, raised or
reported -- including messages written by a driver we do not control.
"""

from __future__ import annotations

import re
import threading

__all__ = ["REDACTED", "SecretURL", "register_secret", "scrub", "scrub_foreign"]

REDACTED = "***"

# Query parameters whose values are secrets in the URLs our drivers accept.
_SECRET_PARAMS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "secret",
        "token",
        "sslpassword",
        "ssl_password",
        "auth",
        "api_key",
        "apikey",
    }
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


# Compiled on first use (``import infraboot`` stays light): a secret query parameter in any URL,
# ``?token=SECRET`` (anchored on ``?``/``&``: linear on any input), and a word.
_foreign: tuple[re.Pattern[str], re.Pattern[str]] | None = None


def scrub(text: str) -> str:
    """Return *text* with every registered secret replaced by ``***``."""
    pattern = _pattern
    if pattern is None:
        return text
    return pattern.sub(REDACTED, text)


def scrub_foreign(text: str) -> str:
    """:func:`scrub` for text infraboot did not write (a driver's or an app's error), where a URL nobody
    registered may carry a password: ``scheme://user:PASSWORD@host``, ``?token=SECRET`` and a libpq-style
    ``host=db password=SECRET`` are masked too.

    Our own messages go through :func:`scrub` and keep their ``USER:PASSWORD`` examples. Linear in the
    text's length, whatever it holds (a driver's message is not ours to trust).
    """
    global _foreign
    text = scrub(text)
    if "=" not in text and "://" not in text:
        return text
    if _foreign is None:  # a query parameter, or a libpq-style ``password=...`` pair: after ?, &, a space, ;, , or (
        params = "|".join(sorted(_SECRET_PARAMS))
        _foreign = re.compile(rf"((?<![^?&\s;,(])(?:{params})=)[^&#\s'\";,)]+", re.IGNORECASE), re.compile(r"\S+")
    param, word = _foreign
    if "://" in text:
        text = word.sub(_mask_userinfo, text)
    return param.sub(rf"\g<1>{REDACTED}", text)


def _mask_userinfo(word: re.Match[str]) -> str:
    """In one word holding ``://``: the password of the user part, up to the word's last ``@`` (a raw
    ``@``, ``/`` or ``#`` in a password, a malformed URL, is masked whole; more is masked, never less)."""
    text = word.group()
    scheme = text.find("://")
    if scheme < 0:
        return text
    rest = text[scheme + 3 :]
    at = rest.rfind("@")
    colon = rest.find(":", 0, at) if at > 0 else -1
    if colon < 0:
        return text
    return f"{text[: scheme + 3]}{rest[: colon + 1]}{REDACTED}{rest[at:]}"


class SecretURL:
    """A connection URL whose password and secret query parameters never print.

    Parsed with real URL semantics: the authority runs from ``://`` to the first
    ``/``, ``?`` or ``#``; the user and password are what precedes its last ``@``.
    So ``?application_name=a@b`` cannot move the host, and a raw ``@`` or ``:`` in
    a password keeps working.  A raw ``/``, ``?`` or ``#`` in a password cannot be
    told apart from the path, query or fragment: such a URL sets
    :attr:`needs_encoding` (the URL checks refuse it and ask for ``%2F``, ``%3F``,
    ``%23``) and is read by best guess, only so that no part of the password prints.

    ``str()`` and ``repr()`` show the URL with the secrets replaced by ``***``;
    :meth:`get_secret_value` returns the URL to hand to a driver, with the user
    and password percent-encoded.

    >>> url = SecretURL("redis://:s3cr3t@localhost:6379/0")
    >>> url
    SecretURL('redis://:***@localhost:6379/0')
    """

    __slots__ = (
        "_authority",
        "_clean",
        "_prefix",
        "_redacted",
        "fragment",
        "host",
        "needs_encoding",
        "password",
        "path",
        "port_text",
        "query",
        "scheme",
        "username",
    )

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
        end = _authority_end(rest, 0)
        userinfo, _, hostport = rest[:end].rpartition("@")
        tail = rest[end:]
        # A file path (sqlite:////tmp/a@b/db, unix:///run/a@b.sock) comes after an empty authority:
        # an '@' in it is part of the path, not the end of a password cut short.
        path_url = end == 0 and (scheme.lower().startswith("sqlite") or scheme.lower() == "unix")
        #: True when a ``/``, ``?`` or ``#`` in the user or password was not percent-encoded.
        self.needs_encoding = not path_url and "@" in tail and _looks_misparsed(tail, _split_host_port(hostport)[1])
        if self.needs_encoding:
            userinfo, hostport, tail = _guess_authority(rest, end)
        user, colon, password = userinfo.partition(":")
        self.scheme = scheme.lower()
        self.username = unquote(user) if user else None
        self.password = unquote(password) if colon else None
        if self.password:
            register_secret(self.password)
            register_secret(password)
        self.host, self.port_text = _split_host_port(hostport)
        self.path, self.query, self.fragment = _split_tail(tail)

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
        self._prefix = f"{scheme}://" if sep else ""
        self._authority = auth_clean + hostport
        fragment = f"#{self.fragment}" if self.fragment is not None else ""
        self._clean = f"{self._prefix}{self._authority}{self.path}{secret_query}{fragment}"
        self._redacted = f"{self._prefix}{auth_redacted}{hostport}{self.path}{redacted_query}{fragment}"

    def _query_forms(self) -> tuple[str, str]:
        from urllib.parse import unquote_plus

        if self.query is None:
            return "", ""
        redacted: list[str] = []
        for pair in self.query.split("&"):
            key, eq, value = pair.partition("=")
            if eq and unquote_plus(key).lower() in _SECRET_PARAMS and value:
                register_secret(unquote_plus(value))
                register_secret(value)
                redacted.append(f"{key}={REDACTED}")
            else:
                redacted.append(pair)
        return "?" + self.query, "?" + "&".join(redacted)

    @property
    def port(self) -> int | None:
        """The port as a number, or ``None`` when the URL names none (or an invalid one)."""
        if not self.port_text or not self.port_text.isdigit():
            return None
        return int(self.port_text)

    @property
    def query_pairs(self) -> list[tuple[str, str]]:
        """Every ``key=value`` of the query string in order, decoded as the drivers decode them."""
        from urllib.parse import unquote_plus

        if not self.query:
            return []
        out: list[tuple[str, str]] = []
        for pair in self.query.split("&"):
            key, _, value = pair.partition("=")
            if key:
                out.append((unquote_plus(key), unquote_plus(value)))
        return out

    @property
    def query_params(self) -> dict[str, str]:
        """The query string as a dict (last value wins), values percent-decoded."""
        return dict(self.query_pairs)

    def replace(self, *, scheme: str | None = None, query: str | None = None) -> SecretURL:
        """A copy with another *scheme* and/or raw *query* string (``""`` drops the query)."""
        prefix = f"{scheme}://" if scheme is not None else self._prefix
        query = self.query if query is None else query
        shown_query = f"?{query}" if query else ""
        fragment = f"#{self.fragment}" if self.fragment is not None else ""
        return SecretURL(f"{prefix}{self._authority}{self.path}{shown_query}{fragment}")

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


def _authority_end(text: str, start: int) -> int:
    """Where the authority that begins at *start* ends: the first ``/``, ``?`` or ``#``."""
    ends = [i for i in (text.find(c, start) for c in "/?#") if i != -1]
    return min(ends) if ends else len(text)


def _split_tail(tail: str) -> tuple[str, str | None, str | None]:
    """Path, query (``None`` when there is no ``?``) and fragment (``None`` without ``#``)."""
    rest, hash_, fragment = tail.partition("#")
    path, qmark, query = rest.partition("?")
    return path, (query if qmark else None), (fragment if hash_ else None)


def _looks_misparsed(tail: str, port_text: str | None) -> bool:
    """Whether an ``@`` after the authority is more likely the end of an unencoded password.

    An ``@`` inside a query value (``?application_name=a@b``) is ordinary; one in the
    path, the fragment or a query key, or next to an authority whose "port" is not a
    number (``u:pa/ss@h`` reads as host ``u``, port ``pa``), is a password cut short.
    """
    path, query, fragment = _split_tail(tail)
    if "@" in path or "@" in (fragment or ""):
        return True
    if port_text is not None and not port_text.isdigit():
        return True
    for pair in (query or "").split("&"):
        key, eq, _ = pair.partition("=")
        if "@" in key or (not eq and "@" in pair):
            return True
    return False


_HOSTPORT = r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._%~-]*)(:[0-9]+)?"  # compiled (and cached) by re on first use


def _guess_authority(rest: str, end: int) -> tuple[str, str, str]:
    """Userinfo, host:port and tail, taking the first ``@`` after *end* that a plain host follows."""
    at = rest.find("@", end)
    while at != -1:
        stop = _authority_end(rest, at + 1)
        candidate = rest[at + 1 : stop]
        if re.fullmatch(_HOSTPORT, candidate):
            return rest[:at], candidate, rest[stop:]
        at = rest.find("@", at + 1)
    userinfo, _, remainder = rest.rpartition("@")
    stop = _authority_end(remainder, 0)
    return userinfo, remainder[:stop], remainder[stop:]


def _split_host_port(hostport: str) -> tuple[str | None, str | None]:
    """Host (brackets removed from an IPv6 literal) and port text; a malformed ``[`` host is kept whole."""
    if hostport.startswith("["):  # IPv6 literal: [::1]:6379
        end = hostport.find("]")
        if end == -1:
            return hostport, None
        host = hostport[1:end]
        rest = hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            return hostport, None
        return host or None, rest[1:] if rest else None
    host, colon, port = hostport.rpartition(":")
    if not colon:
        return hostport or None, None
    return host or None, port
