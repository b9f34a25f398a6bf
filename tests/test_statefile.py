"""The state file and ``infraboot probe``: atomic writes, a staleness bound, one line and an exit status."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import infraboot
from infraboot._engine._statefile import StateFile, judge, read_state, write_state
from infraboot._front._probe import main as probe


def body(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"time": time.time(), "stale_after": 7.0, "live": "pass", "ready": "pass"}
    base["startup"] = "pass"
    base.update(fields)
    return base


def test_a_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    """Two writes: the file holds the second, whole, and nothing else is left in the folder."""
    path = str(tmp_path / "state.json")
    write_state(path, body(ready="fail"))
    write_state(path, body(ready="warn"))
    assert ("warn", ["state.json"]) == (read_state(path)["ready"], os.listdir(tmp_path))  # type: ignore[index]


def test_the_verdicts() -> None:
    """pass and warn are ok; fail, a missing file and a stale one are not, each saying why in one line."""
    now = time.time()
    verdicts = [
        judge(body(), "ready", now=now),
        judge(body(ready="warn", output={"ready": "cache: refused"}), "ready", now=now),
        judge(body(ready="fail", output={"ready": "redis: timeout"}), "ready", now=now),
        judge(None, "live", now=now)[0],
        judge(body(time=now - 8), "live", now=now)[0],
        judge(body(time=now - 8), "live", now=now, max_age=10)[0],
    ]
    assert [
        (True, "ready: pass"),
        (True, "ready: warn (cache: refused)"),
        (False, "ready: fail (redis: timeout)"),
        False,
        False,
        True,
    ] == verdicts
    assert "stale: written 8.0 s ago, bound 7 s" in judge(body(time=now - 8), "live", now=now)[1]


def test_probe_exit_status_and_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """0 for pass, 1 for fail or no file, 2 for a wrong command (naming the fix)."""
    path = str(tmp_path / "state.json")
    write_state(path, body(startup="fail", output={"startup": "starting"}))
    codes = [
        probe(["live", "--file", path]),
        probe(["startup", "--file", path]),
        probe(["ready", "--file", str(tmp_path / "missing.json")]),
        probe(["--file", path]),
        probe(["ready", "--file", path, "--max-age", "-3"]),
    ]
    out, err = capsys.readouterr()
    assert [0, 1, 1, 2, 2] == codes
    assert ["live: pass", "startup: fail (starting)"] == out.splitlines()[:2]
    assert "which probe? one of live, ready, startup" in err
    assert "--max-age='-3': must be a finite number of seconds > 0" in err


def test_probe_without_a_file_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """No INFRABOOT_STATE_FILE and no --file: exit 2, the line names both."""
    monkeypatch.delenv("INFRABOOT_STATE_FILE", raising=False)
    result = subprocess.run(
        [sys.executable, "-m", "infraboot", "probe", "ready"], capture_output=True, text=True, check=False
    )
    assert 2 == result.returncode
    assert "set INFRABOOT_STATE_FILE (as the running process has it) or pass --file PATH" in result.stderr


def test_the_probe_imports_no_asyncio_no_logging_no_driver(tmp_path: Path) -> None:
    """The probe reads a file: nothing of the event loop, the logger or a driver is imported."""
    path = tmp_path / "state.json"
    write_state(str(path), body())
    code = (
        "import sys; from infraboot.__main__ import main; assert main(['probe', 'ready', '--file', sys.argv[1]]) == 0; "
        "heavy = {'asyncio', 'logging', 'redis', 'sqlalchemy', 'argparse'}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert "[]" == result.stdout.splitlines()[-1]


async def test_the_heartbeat_follows_the_system(tmp_path: Path) -> None:
    """Starting: startup fails; running: every probe passes; stopped: every probe fails, saying stopped."""
    path = str(tmp_path / "state.json")

    @infraboot.component("thing")
    async def thing(ctx: infraboot.Context) -> AsyncIterator[int]:
        yield 1

    system = infraboot.SystemInitializer([thing])
    state = StateFile(system, path, interval=0.05)
    await state.write()
    before = read_state(path)
    async with system:
        await state.write()
        running = read_state(path)
    await state.stop()
    after = read_state(path)
    assert before is not None and running is not None and after is not None
    assert ("fail", "not started") == (before["startup"], before["output"]["startup"])
    assert ("pass", "pass", "pass") == (running["live"], running["ready"], running["startup"])
    assert ("fail", "fail", "fail", "stopped") == (
        after["live"],
        after["ready"],
        after["startup"],
        after["output"]["live"],
    )
    assert 0.05 * 3 + 1 == after["stale_after"]


async def test_write_soon_writes_out_of_beat_and_never_after_stop(tmp_path: Path) -> None:
    """#24: a drain is in the file before the next beat (60 s away here); a write asked for just before
    stop() does not land over the final ``stopped``."""
    import asyncio

    path = str(tmp_path / "state.json")

    @infraboot.component("thing")
    async def thing(ctx: infraboot.Context) -> AsyncIterator[int]:
        yield 1

    system = infraboot.SystemInitializer([thing])
    state = StateFile(system, path, interval=60)
    async with system:
        state.start()
        await asyncio.sleep(0)
        system.drainer.begin()
        state.write_soon()
        await asyncio.sleep(0.05)
        draining = read_state(path)
        state.write_soon()
        await state.stop()
    state.write_soon()  # after stop: nothing
    await asyncio.sleep(0.05)
    after = read_state(path)
    assert draining is not None and after is not None
    assert ("fail", "draining") == (draining["ready"], draining["output"]["ready"])
    assert ("fail", "stopped") == (after["live"], after["output"]["live"])


def test_settings_are_checked_before_anything_runs(tmp_path: Path) -> None:
    """A bad interval or a missing folder: ConfigError naming the variable and the fix."""
    system = infraboot.SystemInitializer()
    with pytest.raises(infraboot.ConfigError, match="INFRABOOT_STATE_INTERVAL='soon'"):
        StateFile.from_env(system, {"INFRABOOT_STATE_FILE": str(tmp_path / "s"), "INFRABOOT_STATE_INTERVAL": "soon"})
    with pytest.raises(infraboot.ConfigError, match="does not exist; create it"):
        StateFile.from_env(system, {"INFRABOOT_STATE_FILE": str(tmp_path / "nope" / "s")})
    assert None is StateFile.from_env(system, {})


WORKER = """
import asyncio, infraboot, infraboot.asyncio

@infraboot.component("thing")
async def thing(ctx):
    yield 1

async def main():
    print("worker ready", flush=True)
    await asyncio.Event().wait()

infraboot.asyncio.run(main, system=infraboot.SystemInitializer([thing], drain_delay=0))
"""


def test_a_stopped_process_goes_stale_and_a_finished_one_says_stopped(tmp_path: Path) -> None:
    """infraboot.asyncio.run keeps the file: live passes; SIGSTOP: stale, live fails; SIGCONT: passes again;
    SIGTERM: exit 0 and every probe says stopped."""
    import signal

    path = tmp_path / "state.json"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "INFRABOOT_STATE_FILE": str(path), "INFRABOOT_STATE_INTERVAL": "0.1"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and "worker ready" in proc.stdout.readline()

        def verdict(kind: str = "live") -> bool:
            return judge(read_state(str(path)), kind, now=time.time())[0]  # type: ignore[arg-type]

        def until(expected: bool, timeout: float = 10.0) -> bool:
            deadline = time.monotonic() + timeout
            while verdict() is not expected and time.monotonic() < deadline:
                time.sleep(0.05)
            return verdict()

        running = until(True)
        proc.send_signal(signal.SIGSTOP)
        stopped = until(False)
        proc.send_signal(signal.SIGCONT)
        resumed = until(True)
        proc.terminate()
        status = proc.wait(20)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    last = read_state(str(path))
    assert (True, False, True, 0) == (running, stopped, resumed, status)
    assert last is not None and "stopped" == last["output"]["live"]
    assert [False, False, False] == [judge(last, k, now=time.time())[0] for k in ("live", "ready", "startup")]


def test_help_lists_the_probe() -> None:
    """`infraboot --help` shows `probe` (answered before argparse, for speed) beside the other commands."""
    result = subprocess.run(
        [sys.executable, "-m", "infraboot", "--help"], capture_output=True, text=True, check=True, timeout=60
    )
    assert "{check,wait,graph,demo,probe}" in result.stdout
    assert "exec probe from the state file" in " ".join(result.stdout.split())


def test_the_probe_answers_the_same_through_argparse(tmp_path: Path) -> None:
    """A caller of the argparse path (not main()'s fast one) gets the same probe."""
    from infraboot.__main__ import _main

    path = str(tmp_path / "state.json")
    write_state(path, body(startup="fail", output={"startup": "starting"}))
    assert [0, 1] == [
        _main(["probe", "live", "--file", path], 0.0),
        _main(["probe", "startup", "--file", path, "--max-age", "9"], 0.0),
    ]
