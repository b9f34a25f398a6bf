"""The state file: the probes of a process that serves no HTTP (a worker), written for ``infraboot probe``.

A running process rewrites one small JSON file every ``interval`` seconds (a heartbeat): its
liveness, readiness and startup answers, when it wrote them and how old the file may grow before a
reader must call it stale. Each write goes to a temporary file beside it and is renamed over it, so
a reader sees the old whole file or the new whole file, never half of one. A process whose event
loop is blocked, or that died without a word, stops writing: its file goes stale and every probe
fails, liveness included -- which is what a liveness probe is for.

The file holds statuses and short outputs only (``"redis: refused"``): never a URL nor a secret.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any, Literal

from infraboot._base._names import STATE_FILE_VARIABLE, STATE_INTERVAL_VARIABLE

# The reading half (read_state, judge) is what ``infraboot probe`` runs on every probe: it keeps to
# json, os and time. The writing half imports asyncio, logging and the checks when first used.
if TYPE_CHECKING:
    import asyncio

    from ._health import HealthReport
    from ._system import SystemInitializer

__all__ = [
    "DEFAULT_INTERVAL",
    "ENV_FILE",
    "ENV_INTERVAL",
    "KINDS",
    "ProbeKind",
    "StateFile",
    "judge",
    "read_state",
    "write_state",
]

ENV_FILE = STATE_FILE_VARIABLE  # the names live in _base, where the did-you-mean check knows them
ENV_INTERVAL = STATE_INTERVAL_VARIABLE
DEFAULT_INTERVAL = 2.0
#: A file older than ``STALE_BEATS`` heartbeats (plus one second of slack for a slow disk) is stale.
STALE_BEATS = 3
VERSION = 1
ProbeKind = Literal["live", "ready", "startup"]
KINDS: tuple[ProbeKind, ...] = ("live", "ready", "startup")


def write_state(path: str, body: dict[str, Any]) -> None:
    """Replace *path* with *body* as JSON, atomically: a temporary file in the same folder, then a rename."""
    tmp = f"{path}.{os.getpid()}.tmp"
    data = json.dumps(body, separators=(",", ":")).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_state(path: str) -> dict[str, Any] | None:
    """The state in *path*, or ``None`` when there is no such file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    body = json.loads(data)
    if not isinstance(body, dict):
        msg = f"{path} is not an infraboot state file"
        raise ValueError(msg)
    return body


def judge(
    body: dict[str, Any] | None, kind: ProbeKind, *, now: float, max_age: float | None = None
) -> tuple[bool, str]:
    """The probe's verdict on a state file's *body*: ``(ok, one line saying why)``.

    ``fail`` (the process's last word, however old), missing, or a ``pass``/``warn`` gone stale (older
    than its own ``stale_after``, or *max_age* when given): not ok.
    """
    if body is None:
        return False, f"{kind}: fail (no state file yet: the process has not started, or {ENV_FILE} differs)"
    status = str(body.get(kind, "fail"))
    output = body.get("output", {}).get(kind)
    line = f"{kind}: {status}" + (f" ({output})" if output else "")
    if status == "fail":  # what the process last said (stopped, starting, a component down), however old
        return False, line
    age = now - float(body.get("time", 0.0))
    bound = float(max_age if max_age is not None else body.get("stale_after", 0.0))
    if age > bound:
        pid = body.get("pid")
        return False, f"{kind}: fail (state file stale: written {age:.1f} s ago, bound {bound:g} s; pid {pid})"
    return True, line


class StateFile:
    """Keeps a state file fresh for *system*: ``start()`` begins the heartbeat, ``stop()`` writes the last state.

    ::

        state = StateFile.from_env(system)   # None unless INFRABOOT_STATE_FILE is set
        if state: state.start()
        ...
        if state: await state.stop()

    Or ``async with StateFile(system, "/tmp/infraboot-state.json"): ...``. Each beat asks
    :meth:`SystemInitializer.readiness` (cached, bounded by ``health_timeout``).
    """

    def __init__(self, system: SystemInitializer, path: str, *, interval: float = DEFAULT_INTERVAL) -> None:
        from infraboot._base._checks import seconds_problem
        from infraboot.exceptions import ConfigError

        problems = [
            p
            for p in (
                seconds_problem("interval", interval, example=f"{ENV_INTERVAL}=2"),
                None
                if path
                else f"{ENV_FILE}: the path is empty; set it to a writable file, e.g. /tmp/infraboot-state.json",
            )
            if p
        ]
        if problems:
            raise ConfigError.from_problems(problems, title="invalid state file settings")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            msg = f"{ENV_FILE}={path!r}: the folder {folder!r} does not exist; create it (an emptyDir volume)"
            raise ConfigError.from_problems([msg], title="invalid state file settings")
        self.system = system
        self.path = path
        self.interval = float(interval)
        self.stale_after = STALE_BEATS * self.interval + 1.0
        self._task: asyncio.Task[None] | None = None
        self._soon: set[asyncio.Task[None]] = set()  # writes asked for out of beat (write_soon), not yet done
        self._stopped = False

    @classmethod
    def from_env(cls, system: SystemInitializer, environ: dict[str, str] | None = None) -> StateFile | None:
        """A state file at ``INFRABOOT_STATE_FILE``, one beat every ``INFRABOOT_STATE_INTERVAL`` s (default 2).

        ``None`` when the variable is unset or empty."""
        from infraboot._base._checks import seconds_problem
        from infraboot.exceptions import ConfigError

        env = os.environ if environ is None else environ
        path = env.get(ENV_FILE, "").strip()
        if not path:
            return None
        raw = env.get(ENV_INTERVAL, "").strip()
        interval: Any = DEFAULT_INTERVAL
        if raw:
            try:
                interval = float(raw)
            except ValueError:
                interval = raw
            problem = seconds_problem(ENV_INTERVAL, interval, example=f"{ENV_INTERVAL}=2")
            if problem:
                raise ConfigError.from_problems([problem], title="invalid state file settings")
        return cls(system, path, interval=interval)

    def body(self, ready: HealthReport, *, stopped: bool = False) -> dict[str, Any]:
        startup = self.system.startup()
        output = {"ready": ready.output, "startup": startup.output}
        return {
            "version": VERSION,
            "pid": os.getpid(),
            "time": time.time(),
            "interval": self.interval,
            "stale_after": self.stale_after,
            "live": "fail" if stopped else "pass",
            "ready": ready.status,
            "startup": startup.status,
            "output": {k: v for k, v in output.items() if v} | ({"live": "stopped"} if stopped else {}),
        }

    async def write(self) -> None:
        """Write the current answers now."""
        ready = await self.system.readiness()
        self._write(self.body(ready))

    def write_soon(self) -> None:
        """Write the current answers as soon as the loop is free, out of beat (a drain began: the probes
        must not wait for the next heartbeat). Nothing after :meth:`stop` or outside a running loop."""
        import asyncio

        if self._stopped:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._write_soon(), name="infraboot-state-file-now")
        self._soon.add(task)
        task.add_done_callback(self._soon.discard)

    async def _write_soon(self) -> None:
        try:
            await self.write()
        except Exception as exc:  # as a beat: the heartbeat writes again anyway
            import logging

            from infraboot._base._log import event

            event(logging.WARNING, "state_file_beat_failed", error=type(exc).__name__)

    def _write(self, body: dict[str, Any]) -> None:
        try:
            write_state(self.path, body)
        except OSError as exc:  # a full or read-only disk: the probes will say stale; the worker goes on
            import logging

            from infraboot._base._log import event

            event(logging.WARNING, "state_file_unwritable", path=self.path, error=type(exc).__name__)

    async def _beat(self) -> None:
        import asyncio

        while True:
            try:
                await self.write()
            except Exception as exc:  # a beat that fails must not end the heartbeat: the next one tries again
                import logging

                from infraboot._base._log import event

                event(logging.WARNING, "state_file_beat_failed", error=type(exc).__name__)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Begin the heartbeat in the running loop (the first write happens at once)."""
        import asyncio

        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._beat(), name="infraboot-state-file")

    async def stop(self) -> None:
        """Stop the heartbeat and write the final state: nothing live, ready nor started."""
        import asyncio
        import contextlib

        self._stopped = True
        task, self._task = self._task, None
        pending = [t for t in (task, *self._soon) if t is not None]
        self._soon.clear()
        for t in pending:  # an out-of-beat write must not land after the final one
            t.cancel()
        for t in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        from ._health import HealthReport

        self._write(self.body(HealthReport("readiness", "fail", output="stopped"), stopped=True))

    async def __aenter__(self) -> StateFile:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"<StateFile {self.path!r} every {self.interval:g} s, stale after {self.stale_after:g} s>"
