"""What a RabbitMQ, NATS or HTTP dependency URL may say, checked before any I/O.

Pure functions over a :class:`~infraboot._base._redact.SecretURL`, in the manner of
:mod:`._urls`: each problem is one line naming the variable, the URL redacted, what is
wrong and the fix. The query parameters allowed for ``amqp://`` are the ones aiormq reads
from a URL (``aiormq/connection.py``: ``name``, the TLS files, ``auth``, ``channel_max``,
``frame_max``); the ones infraboot sets itself are refused with the setting to use instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._urls import _encoding_problem, _first_values, _fragment_problem, _host_problems, _unique, _unknown_param

if TYPE_CHECKING:
    from infraboot._base._redact import SecretURL

__all__ = [
    "AMQP_SCHEMES",
    "HTTP_SCHEMES",
    "NATS_SCHEMES",
    "amqp_url_problems",
    "http_url_problems",
    "nats_url_problems",
]

AMQP_SCHEMES = ("amqp", "amqps")
NATS_SCHEMES = ("nats", "tls", "ws", "wss")
HTTP_SCHEMES = ("http", "https")

_AMQP_PARAMS = frozenset({"name", "auth", "channel_max", "frame_max", "cafile", "capath", "cadata"})
_AMQP_TLS_PARAMS = frozenset({"keyfile", "certfile", "no_verify_ssl"})
# Set by infraboot from the settings: in the URL they would silently fight them.
_AMQP_OWNED = {
    "heartbeat": "HEARTBEAT=60",
    "reconnect_interval": "RECONNECT_INTERVAL=1",
    "connection_timeout": "CONNECT_TIMEOUT=5",
    "fail_fast": "CONNECT_TIMEOUT=5 (a first connect always fails fast; infraboot retries it)",
}
_WHOLE = frozenset("0123456789")


def amqp_url_problems(url: SecretURL, var: str) -> list[str]:
    """Every problem of a RabbitMQ URL in *var*: ``amqp[s]://[USER:PASSWORD@]HOST[:PORT][/VHOST]``."""
    where = f"{var}={url}"
    prefix = var[: -len("URL")]
    if url.scheme not in AMQP_SCHEMES:
        shown = url.scheme or "(none)"
        return [
            f"{where}: unknown scheme {shown!r}; use amqp:// or amqps://, e.g. amqp://USER:PASSWORD@HOST:5672/VHOST"
        ]
    if url.needs_encoding:
        return [_encoding_problem(where, "amqp://app:pa%2Fss@HOST:5672/vhost")]
    out: list[str] = []
    _fragment_problem(out, where, url)
    _host_problems(out, where, url, f"{url.scheme}://HOST:5672/")
    vhost = url.path[1:] if url.path.startswith("/") else url.path
    if "/" in vhost:
        out.append(
            f"{where}: the path is the virtual host; write a '/' in its name as %2F, e.g. amqp://HOST/my%2Fvhost"
        )
    for key, value in _first_values(url.query_pairs).items():
        if key in ("channel_max", "frame_max") and not (value and set(value) <= _WHOLE):
            out.append(f"{where}: bad {key} {value!r}; use a whole number")
    for key in _unique(k for k, _ in url.query_pairs):
        if key in _AMQP_OWNED:
            setting = _AMQP_OWNED[key]
            # A URL given in code (var "url") names the keyword, one from the environment the variable.
            fix = f"{prefix}{setting}" if var.endswith("_URL") else setting.lower()
            out.append(f"{where}: {key} is set by infraboot; remove it from the URL and set {fix}")
        elif key in _AMQP_TLS_PARAMS and url.scheme != "amqps":
            out.append(f"{where}: {key} only applies to amqps:// URLs; remove it or use amqps://")
        elif key not in _AMQP_PARAMS | _AMQP_TLS_PARAMS:
            out.append(_unknown_param(where, key, _AMQP_PARAMS | _AMQP_TLS_PARAMS))
    return out


def nats_url_problems(url: SecretURL, var: str) -> list[str]:
    """Every problem of a NATS URL in *var*: ``nats://[USER:PASSWORD@|TOKEN@]HOST[:PORT]``, several comma-separated."""
    where = f"{var}={url}"
    if url.scheme not in NATS_SCHEMES:
        shown = url.scheme or "(none)"
        schemes = ", ".join(s + "://" for s in NATS_SCHEMES)
        return [f"{where}: unknown scheme {shown!r}; use one of {schemes}, e.g. nats://127.0.0.1:4222"]
    if url.needs_encoding:
        return [_encoding_problem(where, "nats://app:pa%2Fss@HOST:4222")]
    out: list[str] = []
    _fragment_problem(out, where, url)
    if "," in (url.host or "") or "," in (url.port_text or ""):
        out.append(f"{where}: give one server per URL here; list the others in the servers setting")
        return out
    _host_problems(out, where, url, f"{url.scheme}://HOST:4222")
    if url.path.strip("/") or url.query:
        out.append(f"{where}: a NATS URL has no path or query; write it as {url.scheme}://HOST:4222")
    return out


def http_url_problems(url: SecretURL, var: str) -> list[str]:
    """Every problem of an HTTP dependency's base URL in *var*: ``http[s]://HOST[:PORT][/PATH]``."""
    where = f"{var}={url}"
    if url.scheme not in HTTP_SCHEMES:
        shown = url.scheme or "(none)"
        return [f"{where}: unknown scheme {shown!r}; use http:// or https://, e.g. https://auth.example.com/"]
    if url.needs_encoding:
        return [_encoding_problem(where, "https://user:pa%2Fss@HOST/")]
    out: list[str] = []
    _fragment_problem(out, where, url)
    _host_problems(out, where, url, f"{url.scheme}://HOST/")
    return out
