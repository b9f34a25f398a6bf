"""A fault-injecting TCP proxy: put it between your application and a real server, then break the line.

Loopback only. It runs in a thread of its own with an event loop of its own, so it keeps
answering while the test's loop is blocked or busy, and a blocking test can use it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Literal, TypeVar

from infraboot._base._redact import SecretURL

__all__ = ["Mode", "TcpProxy", "open_proxies", "proxy_factory"]

#: What a :class:`TcpProxy` does with connections.
Mode = Literal["forward", "refuse", "blackhole", "reset", "delay"]

T = TypeVar("T")

HOST = "127.0.0.1"
# Ports the drivers assume when a URL names none.
_DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "postgresql": 5432, "postgres": 5432, "mysql": 3306}
_CHUNK = 65536
_BACKLOG = 128
# Every wait on the proxy's thread is bounded: a mode switch, the start, each step of the close.
_CALL_TIMEOUT = 5.0
_DRAIN_TIMEOUT = 1.0
# Every proxy started and not closed yet, in the order they started: the pytest plugin closes and
# reports those a test left open. A running proxy's thread holds it anyway, so strong references.
_open: dict[TcpProxy, None] = {}
_open_lock = threading.Lock()


def open_proxies() -> list[TcpProxy]:
    """Every :class:`TcpProxy` started and not closed yet, oldest first."""
    with _open_lock:
        return list(_open)


class TcpProxy:
    """A TCP proxy on ``127.0.0.1`` in front of *target*, whose behaviour you switch at any time.

    *target* is a URL (``redis://:pw@127.0.0.1:6379/0``, ``postgresql+asyncpg://…``; only its
    host and port are used, and nothing of it is ever printed) or a ``(host, port)`` pair.
    The proxy listens on a free port of the loopback interface, never on any other.

    - :meth:`restore` -- forward bytes both ways (the mode it starts in);
    - :meth:`refuse` -- stop listening: connections are refused;
    - :meth:`blackhole` -- accept connections and never answer (they stay open);
    - :meth:`reset` -- accept, then reset the connection (RST) at once;
    - :meth:`delay` -- forward, every answer from the server held back *seconds*.

    Every switch first aborts the connections already open (a client's pooled connection
    sees the outage too), unless ``drop_existing=False``: then they carry on as they were,
    except that in blackhole mode forwarding ones go silent (a network partition: nobody
    sends a reset) and in delay mode they are delayed. Each switch has taken effect when
    the call returns. ``target`` is the ``(host, port)`` the proxy forwards to.

    Use it as ``async with TcpProxy(url) as proxy:``, ``with TcpProxy(url) as proxy:``, or
    ``proxy = TcpProxy(url).start()`` … ``proxy.close()``. Closing aborts every connection
    and stops the thread within a few seconds at most, also when clients hang on a blackhole::

        async with TcpProxy(REDIS_URL) as proxy:
            client = redis.asyncio.Redis.from_url(proxy.url_for(REDIS_URL))
            proxy.blackhole()
            ...  # your degraded path
            proxy.restore()

    A TLS client (``rediss://``) works through it, but its certificate check sees the name
    in the URL, which is now ``127.0.0.1``.
    """

    def __init__(self, target: str | tuple[str, int]) -> None:
        self._target_url: SecretURL | None = None
        if isinstance(target, str):
            self._target_url = SecretURL(target)
            self.target = _address_of(self._target_url)
        elif (
            isinstance(target, tuple)
            and len(target) == 2
            and isinstance(target[0], str)
            and isinstance(target[1], int)
            and not isinstance(target[1], bool)
        ):
            self.target = (target[0], target[1])
        else:
            msg = f"TcpProxy needs a URL or a (host, port) pair, not {type(target).__name__}"
            raise TypeError(msg)
        #: The interface the proxy listens on: always the loopback.
        self.host = HOST
        self._port: int | None = None
        self._mode: Mode = "forward"
        self._delay = 0.0
        self._accepted = 0
        self._closing = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._listener: socket.socket | None = None
        self._links: set[_Link] = set()

    # -- what it is --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the proxy listens on (the same one for its whole life, refusing or not)."""
        if self._port is None:
            msg = "the TcpProxy is not started; use `async with TcpProxy(...) as proxy:` or call start()"
            raise RuntimeError(msg)
        return self._port

    @property
    def mode(self) -> Mode:
        """``"forward"``, ``"refuse"``, ``"blackhole"``, ``"reset"`` or ``"delay"``."""
        return self._mode

    @property
    def accepted(self) -> int:
        """How many connections the proxy has accepted so far, in any mode."""
        return self._accepted

    def url_for(self, url: str | None = None) -> str:
        """*url* with its host and port replaced by the proxy's; everything else is kept as written.

        The user, the password (percent-encoded as given), the database, path and query stay;
        without *url*, the URL the proxy was built from. The result holds the password: hand it
        to a driver or a component's settings, do not print it::

            proxy.url_for("redis://:s3cret@redis.internal:6379/2")  # 'redis://:s3cret@127.0.0.1:41234/2'
        """
        if url is None:
            if self._target_url is None:
                msg = "url_for() needs a URL when the proxy was built from a (host, port) pair"
                raise ValueError(msg)
            url = self._target_url.get_secret_value()
        parsed = SecretURL(url)
        if parsed.needs_encoding:
            msg = f"{parsed}: percent-encode '/', '?' and '#' in the password (%2F, %3F, %23)"
            raise ValueError(msg)
        scheme, sep, rest = url.strip().partition("://")
        if not sep:
            msg = f"{parsed}: url_for() needs a URL with a scheme, such as redis://host:6379/0"
            raise ValueError(msg)
        ends = [i for i in (rest.find(c) for c in "/?#") if i != -1]
        end = min(ends) if ends else len(rest)
        userinfo, at, _ = rest[:end].rpartition("@")
        return f"{scheme}://{userinfo}{at}{self.host}:{self.port}{rest[end:]}"

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port is not None else "not started"
        if self._closed:
            where = "closed"
        target = f"[{self.target[0]}]" if ":" in self.target[0] else self.target[0]
        delay = f", delay={self._delay}" if self._mode == "delay" else ""
        return f"<TcpProxy {where} -> {target}:{self.target[1]} mode={self._mode!r}{delay} accepted={self._accepted}>"

    # -- switching ---------------------------------------------------------------------------

    def restore(self, *, drop_existing: bool = True) -> None:
        """Forward bytes both ways again, without added latency."""
        self._switch("forward", 0.0, drop_existing)

    def refuse(self, *, drop_existing: bool = True) -> None:
        """Stop listening: new connections are refused (``ConnectionRefusedError``); the port stays the proxy's."""
        self._switch("refuse", 0.0, drop_existing)

    def blackhole(self, *, drop_existing: bool = True) -> None:
        """Accept connections and never answer, keeping them open: clients wait for their own timeouts."""
        self._switch("blackhole", 0.0, drop_existing)

    def reset(self, *, drop_existing: bool = True) -> None:
        """Accept each connection, then reset it (RST) at once: clients see ``ConnectionResetError``."""
        self._switch("reset", 0.0, drop_existing)

    def delay(self, seconds: float, *, drop_existing: bool = True) -> None:
        """Forward, holding back every answer from the server *seconds*: each round trip takes that much longer."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
            msg = f"delay() needs a number of seconds >= 0, not {seconds!r}"
            raise ValueError(msg)
        self._switch("delay", float(seconds), drop_existing)

    def drop_connections(self) -> None:
        """Abort every open connection (both sides see a reset); the mode stays as it is."""
        self._run(self._drop_async())

    def _switch(self, mode: Mode, delay: float, drop_existing: bool) -> None:
        self._run(self._switch_async(mode, delay, drop_existing))

    # -- life --------------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        """Start listening (in forward mode) in the proxy's own thread; returns the proxy. Idempotent."""
        if self._closed:
            msg = "this TcpProxy is closed; make a new one"
            raise RuntimeError(msg)
        if self._thread is not None:
            return self
        started = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._thread_main, args=(started, failure), daemon=True, name=f"infraboot-proxy-{self.target[1]}"
        )
        self._thread = thread
        thread.start()
        if not started.wait(_CALL_TIMEOUT):
            self._closed = True
            msg = f"the TcpProxy did not start within {_CALL_TIMEOUT}s"
            raise RuntimeError(msg)
        if failure:
            self._closed = True
            thread.join(_CALL_TIMEOUT)
            raise failure[0]
        with _open_lock:
            _open[self] = None
        return self

    def close(self) -> None:
        """Abort every connection, stop listening and stop the thread (bounded: never hangs). Idempotent."""
        if self._closed:
            return
        self._closed = True
        with _open_lock:
            _open.pop(self, None)
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already stopped
            loop.call_soon_threadsafe(stop.set)
        thread.join(3 * _CALL_TIMEOUT)
        if thread.is_alive():  # pragma: no cover - every step of the teardown is bounded
            msg = f"the TcpProxy thread did not stop within {3 * _CALL_TIMEOUT}s"
            raise RuntimeError(msg)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> TcpProxy:
        return self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the proxy's thread ------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run *coro* on the proxy's loop and wait (bounded) for its result."""
        loop = self._loop
        if loop is None or self._closed:
            coro.close()
            state = "closed" if self._closed else "not started"
            msg = f"the TcpProxy is {state}; use `async with TcpProxy(...) as proxy:` or call start()"
            raise RuntimeError(msg)
        if self._thread is threading.current_thread():
            coro.close()
            msg = "TcpProxy methods are called from the test, not from the proxy's own thread"
            raise RuntimeError(msg)
        return asyncio.run_coroutine_threadsafe(coro, loop).result(_CALL_TIMEOUT)

    def _thread_main(self, started: threading.Event, failure: list[BaseException]) -> None:
        try:
            asyncio.run(self._serve(started))
        except BaseException as exc:  # the bind failed: start() raises it in the caller's thread
            failure.append(exc)
        finally:
            started.set()

    async def _serve(self, started: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._listen()
        started.set()
        try:
            await self._stop.wait()
        finally:
            await self._teardown()

    # The listening socket is ours, not an asyncio.Server: accepting is one synchronous callback,
    # so a connection is either not accepted yet or already a link that a drop or the close ends.
    # (An asyncio.Server closed while it accepts leaks the accepted socket on Python 3.11.)

    def _listen(self) -> None:
        if self._listener is not None:
            return
        port = self._port or 0
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((HOST, port))
            listener.listen(_BACKLOG)
            listener.setblocking(False)
        except OSError as exc:
            listener.close()
            msg = f"the TcpProxy cannot listen on {HOST}:{port}: {exc.strerror or exc}"
            raise OSError(exc.errno, msg) from None
        self._port = listener.getsockname()[1]
        self._listener = listener
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept)

    def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()  # connections not accepted yet are refused with it

    def _accept(self) -> None:
        listener = self._listener
        for _ in range(_BACKLOG):
            if listener is None:
                return
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the client gave up before we took it, or no file descriptor is left
                continue
            self._accepted += 1
            if self._closing or self._mode == "reset":
                _reset(conn)
                continue
            conn.setblocking(False)
            link = _Link(conn)
            self._links.add(link)
            link.task = asyncio.get_running_loop().create_task(self._serve_link(link))

    async def _switch_async(self, mode: Mode, delay: float, drop_existing: bool) -> None:
        if drop_existing:
            self._drop_links()
        self._mode, self._delay = mode, delay
        if mode == "refuse":
            self._unlisten()
        else:
            self._listen()

    async def _drop_async(self) -> None:
        self._drop_links()

    def _drop_links(self) -> None:
        for link in list(self._links):
            link.abort()
        self._links.clear()

    async def _teardown(self) -> None:
        self._closing = True
        self._unlisten()
        tasks = [link.task for link in self._links if link.task is not None]
        self._drop_links()
        if tasks:
            await asyncio.wait(tasks, timeout=_DRAIN_TIMEOUT)
        for _ in range(3):
            await asyncio.sleep(0)  # the aborted transports close their sockets

    # -- one connection ----------------------------------------------------------------------

    async def _serve_link(self, link: _Link) -> None:
        link.started = True
        try:
            reader, writer = await asyncio.open_connection(sock=link.sock, limit=_CHUNK)
            link.downstream = writer
            if self._mode == "blackhole":
                while await reader.read(_CHUNK):
                    pass  # hold the connection, say nothing
                writer.close()
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target, limit=_CHUNK)
            except OSError:
                link.abort()  # the server itself is down: the client sees its connection reset
                return
            link.upstream = up_writer
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer, answers=True))
        except Exception:  # a peer that vanished mid-way: end the connection, nothing to report
            link.abort()
            if link.downstream is None:
                link.sock.close()
        finally:
            self._links.discard(link)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, answers: bool = False) -> None:
        try:
            while data := await reader.read(_CHUNK):
                if self._mode == "blackhole":
                    continue
                if answers and self._mode == "delay" and self._delay:
                    await asyncio.sleep(self._delay)
                writer.write(data)
                await writer.drain()
        except OSError:
            _abort(writer)  # a reset on one side is a reset on the other
        else:
            writer.close()


class _Link:
    """One accepted connection: its socket, the streams once open on both sides, the task serving it."""

    __slots__ = ("downstream", "sock", "started", "task", "upstream")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.started = False
        self.downstream: asyncio.StreamWriter | None = None
        self.upstream: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    def abort(self) -> None:
        if self.downstream is not None:
            _abort(self.downstream)
        elif not self.started:
            _reset(self.sock)  # no transport owns the socket yet
        else:
            _linger(self.sock)  # a transport is being made: the cancel below closes it, with a reset
        if self.upstream is not None:
            _abort(self.upstream)
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()


def _linger(sock: socket.socket) -> None:
    """Make closing *sock* send a reset (RST), not a polite FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _reset(sock: socket.socket) -> None:
    _linger(sock)
    sock.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a reset (RST): what a client sees when a server or a network fails."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        _linger(sock)
    writer.transport.abort()


def _address_of(url: SecretURL) -> tuple[str, int]:
    if url.scheme in ("unix", "memory") or url.scheme.startswith("sqlite"):
        msg = f"TcpProxy proxies TCP: {url} has no host and port to stand in front of"
        raise ValueError(msg)
    if not url.host:
        msg = f"{url}: TcpProxy needs a host in the URL, such as redis://127.0.0.1:6379/0"
        raise ValueError(msg)
    port = url.port
    if port is None and not url.port_text:
        port = _DEFAULT_PORTS.get(url.scheme.split("+")[0])
    if port is None:
        msg = f"{url}: TcpProxy needs a port in the URL, such as {url.scheme}://{url.host}:6379"
        raise ValueError(msg)
    return url.host, port


def proxy_factory() -> Iterator[Callable[[str | tuple[str, int]], TcpProxy]]:
    """The body of the ``infraboot_proxy`` fixture: yields ``make(target)``, closes what it made at the end.

    ``make(target)`` returns a started :class:`TcpProxy`; on exit every one is closed,
    the last made first, each also when closing an earlier one failed.
    """
    made: list[TcpProxy] = []

    def make(target: str | tuple[str, int]) -> TcpProxy:
        proxy = TcpProxy(target).start()
        made.append(proxy)
        return proxy

    try:
        yield make
    finally:
        with contextlib.ExitStack() as stack:
            for proxy in made:
                stack.callback(proxy.close)
