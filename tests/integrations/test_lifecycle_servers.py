"""Serve while starting and drain before stopping, under a real uvicorn and a real worker process."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")

from tests.integrations.conftest import APPS, Serve, uvicorn_args
from tests.servers import AppProcess

pytestmark = pytest.mark.real

# uvicorn re-raises the SIGTERM it handled once it has shut down gracefully.
GRACEFUL = (0, -signal.SIGTERM)


def uvicorn(port: int, host: str = "127.0.0.1") -> list[str]:
    return uvicorn_args("lifecycle_app:app", port, "--timeout-graceful-shutdown", "10", app_dir=APPS, host=host)


async def statuses(client: httpx.AsyncClient, *paths: str) -> list[int]:
    return [(await client.get(p)).status_code for p in paths]


async def until(condition_status: int, client: httpx.AsyncClient, path: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (await client.get(path)).status_code != condition_status:
        assert time.monotonic() < deadline, f"{path} never answered {condition_status}"
        await asyncio.sleep(0.02)


async def test_uvicorn_listens_and_answers_liveness_while_a_component_is_still_starting(
    serve: Serve, port: int, tmp_path: Path
) -> None:
    """With background=True the server listens at once: /livez 200, /startupz, /readyz and handlers 503, then 200."""
    gate = tmp_path / "gate"
    app = serve(uvicorn(port), port=port, GATE_FILE=str(gate))
    app.wait_listening()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        while_starting = await statuses(client, "/livez", "/startupz", "/readyz", "/work")
        retry_after = (await client.get("/work")).headers.get("retry-after")
        gate.touch()
        await until(200, client, "/startupz")
        once_started = await statuses(client, "/livez", "/startupz", "/readyz", "/work")
        caching = [(await client.get(p)).headers.get("cache-control") for p in ("/readyz", "/livez", "/work")]
        work = (await client.get("/work")).json()
    app.terminate()

    assert [200, 503, 503, 503] == while_starting
    assert "5" == retry_after
    assert [200, 200, 200, 200] == once_started
    assert {"resource": "backend", "warmed": "backend warmed"} == work  # inner ran once the backend was up
    # app.add_middleware(ProbeMiddleware) last: the app's own Cache-Control stamp never reaches a probe.
    assert ["no-store", "no-store", "public, max-age=60"] == caching
    assert "probes_wrapped" not in app.output
    assert app.wait(timeout=20) in GRACEFUL


async def test_a_required_failure_in_the_background_ends_the_process_with_status_2_and_one_line(
    serve: Serve, port: int, tmp_path: Path
) -> None:
    """on_failure="exit": the failure is one CRITICAL line, the process exits by itself with status 2."""
    fail = tmp_path / "fail"
    fail.touch()
    app = serve(uvicorn(port), port=port, FAIL_FILE=str(fail))

    status = app.wait(timeout=30)

    assert 2 == status, app.output[-3000:]
    failures = [line for line in app.output.splitlines() if "startup_failed" in line and "background=True" in line]
    assert 1 == len(failures), app.output[-3000:]
    assert "backend refused the connection" in failures[0]
    assert "Traceback" not in app.output


async def test_on_failure_retry_keeps_the_process_up_and_unready_until_the_component_works(
    serve: Serve, port: int, tmp_path: Path
) -> None:
    """on_failure="retry": liveness passes, readiness fails while it keeps starting again; then it is ready."""
    fail = tmp_path / "fail"
    fail.touch()
    app = serve(uvicorn(port), port=port, FAIL_FILE=str(fail), ON_FAILURE="retry")
    app.wait_listening()
    app.wait_for_output("attempt=2", timeout=30)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        failing = await statuses(client, "/livez", "/readyz", "/startupz")
        fail.unlink()
        await until(200, client, "/readyz", timeout=60)
    app.terminate()

    assert [200, 503, 503] == failing
    assert app.wait(timeout=20) in GRACEFUL


async def test_drain_then_sigterm_under_load_fails_no_request_and_exits_cleanly(serve: Serve, port: int) -> None:
    """preStop's POST /drainz from loopback: readiness fails at once; load is served; SIGTERM, none failed."""
    app = serve(uvicorn(port), port=port, INFRABOOT_DRAIN_DELAY="3")
    app.wait_listening()
    failures: list[str] = []
    served = 0
    stop_load = asyncio.Event()
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, limits=limits) as client:
        await until(200, client, "/readyz")

        async def load() -> None:
            nonlocal served
            while not stop_load.is_set():
                try:
                    answer = await client.get("/work", params={"ms": 30})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")
                served += 1

        async def served_beyond(count: int) -> None:
            deadline = time.monotonic() + 20
            while served < count:  # the load goes on: a machine this loaded needs longer, not a looser test
                assert time.monotonic() < deadline, f"the load stalled at {served} < {count}: {failures[:3]}"
                await asyncio.sleep(0.01)

        workers = [asyncio.ensure_future(load()) for _ in range(8)]
        await served_beyond(20)  # the load is up before the drain begins
        # What a preStop hook `curl -X POST http://127.0.0.1:8000/drainz` sends: loopback, no token needed.
        drain = asyncio.ensure_future(client.post("/drainz"))
        # The server logs drain_started in the same step that turns readiness off: from then on, no 200.
        await asyncio.to_thread(app.wait_for_output, "drain_started", 20)
        ready_after_drain = [(await client.get("/readyz")).status_code for _ in range(3)]
        served_at_drain = served
        await served_beyond(served_at_drain + 16)  # requests keep being served while draining
        stop_load.set()  # the load balancer has let go: new traffic stops, what is in flight finishes
        await asyncio.gather(*workers)
        drained = await drain
    app.terminate()
    status = app.wait(timeout=20)

    assert [] == failures
    assert [503, 503, 503] == ready_after_drain
    assert served > served_at_drain >= 20
    assert 200 == drained.status_code
    assert ("draining", 0) == (drained.json()["status"], drained.json()["in_flight"])
    assert status in GRACEFUL


def this_hosts_other_address() -> str:
    """An address of this host that is not loopback (a request from it is "another host" to the server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: the kernel only picks the outgoing address
        except OSError:
            pytest.skip("this host has no non-loopback IPv4 address")
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        pytest.skip("this host has no non-loopback IPv4 address")
    return address


TOKEN = "a-drain-token-for-the-uvicorn-test"


@pytest.mark.parametrize("token", [None, TOKEN])
async def test_under_uvicorn_only_the_prestop_post_drains(serve: Serve, port: int, token: str | None) -> None:
    """Real uvicorn on 0.0.0.0: GET/HEAD 405, a POST from elsewhere 403 (401 with a token); loopback drains."""
    other = this_hosts_other_address()
    env = {"INFRABOOT_DRAIN_DELAY": "0.2"} | ({"INFRABOOT_DRAIN_TOKEN": token} if token else {})
    app = serve(uvicorn(port, host="0.0.0.0"), port=port, **env)
    app.wait_listening()
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=f"http://{other}:{port}", timeout=10) as stranger:
        await until(200, stranger, "/readyz")
        attacks = [
            (await stranger.get("/drainz")).status_code,
            (await stranger.head("/drainz")).status_code,
            (await stranger.post("/drainz")).status_code,
            (await stranger.post("/drainz", headers={"Authorization": "Bearer " + "x" * 32})).status_code,
        ]
        still_ready = (await stranger.get("/readyz")).status_code
    # The preStop hook: `curl -X POST http://127.0.0.1:8000/drainz` (with -H "Authorization: Bearer $TOKEN" if set).
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as local:
        drained = await local.post("/drainz", headers=auth)
        ready = (await local.get("/readyz")).status_code
    app.terminate()
    status = app.wait(timeout=20)

    refused = 401 if token else 403
    assert [405, 405, refused, refused] == attacks
    assert 200 == still_ready
    assert (200, "draining") == (drained.status_code, drained.json()["status"])
    assert 503 == ready
    assert status in GRACEFUL
    assert (token or "never-set") not in app.output
    assert 2 == app.output.count("drain_refused")  # the two POSTs; GET and HEAD change nothing and are not logged


def worker(serve: Serve, **env: str) -> AppProcess:
    return serve([sys.executable, "tests/integrations/apps/draining_worker.py"], **env)


@pytest.mark.parametrize("second_signal", [False, True])
def test_sigterm_drains_a_worker_and_a_second_signal_cuts_it_short(serve: Serve, second_signal: bool) -> None:
    """SIGTERM: main keeps running while draining for INFRABOOT_DRAIN_DELAY; a second signal stops it at once."""
    app = worker(serve, INFRABOOT_DRAIN_DELAY="30" if second_signal else "1")
    app.wait_for_output("tick draining=False")
    t0 = time.monotonic()
    app.proc.send_signal(signal.SIGTERM)
    app.wait_for_output("tick draining=True")
    if second_signal:
        app.proc.send_signal(signal.SIGTERM)
    status = app.wait(timeout=20)
    elapsed = time.monotonic() - t0

    assert 0 == status, app.output[-3000:]
    assert "worker stopped" in app.output
    ticks_while_draining = app.output.count("tick draining=True")
    assert ticks_while_draining >= 1
    if second_signal:
        assert "drain_cut_short" in app.output
        assert elapsed < 10
    else:
        assert "drain_complete" in app.output
        assert 1.0 <= elapsed < 1.0 + 8
