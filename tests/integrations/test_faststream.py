"""infraboot.faststream: a real ``faststream run`` on the real RabbitMQ: SIGTERM mid-message, outage, failure."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("faststream.rabbit")

from tests.integrations.conftest import Serve
from tests.integrations.workers import probe, rabbitmq_or_skip, wait_probe
from tests.servers import AppProcess, TcpProxy

pytestmark = pytest.mark.real

APPS = str(Path(__file__).parent / "apps")
WORKER = [sys.executable, "-m", "faststream", "run", "faststream_worker:app"]
AMQP = ("127.0.0.1", 5672)


@pytest.fixture
def amqp() -> str:
    rabbitmq_or_skip()
    return "amqp://guest:guest@127.0.0.1:5672/"


def start(serve: Serve, url: str, queue: str, state: Path, **env: str) -> AppProcess:
    return serve(
        WORKER,
        PYTHONPATH=APPS,
        AMQP_URL=url,
        FS_QUEUE=queue,
        **{
            "INFRABOOT_STATE_FILE": str(state),
            "INFRABOOT_STATE_INTERVAL": "0.2",
            "INFRABOOT_CHECK_INTERVAL": "0.3",
            **env,
        },
    )


async def test_sigterm_mid_message_finishes_it_then_shuts_down(serve: Serve, amqp: str, tmp_path: Path) -> None:
    """SIGTERM while a 2 s handler runs: readiness fails at once, the handler finishes, then infraboot's
    shutdown runs; exit 0."""
    from faststream.rabbit import RabbitBroker

    queue = f"ib-fs-{uuid.uuid4().hex[:8]}"
    state = tmp_path / "state.json"
    worker = start(serve, amqp, queue, state)
    worker.wait_for_output("gate started")
    assert "ready: pass" == wait_probe("ready", state, 0)
    async with RabbitBroker(amqp) as client:
        await client.publish(1, queue)
    worker.wait_for_output("job 1 started")
    worker.terminate()
    draining = wait_probe("ready", state, 1, timeout=5)
    status = worker.wait(40)
    output = worker.output
    assert 0 == status, output
    assert draining.startswith("ready: fail")
    assert output.index("job 1 finished") < output.index("gate stopped")
    assert (1, "startup: fail (stopped)") == probe("startup", state)


async def test_sigterm_fails_readiness_at_once(serve: Serve, amqp: str, tmp_path: Path) -> None:
    """#24: the state file says ``draining`` right at SIGTERM, not at the next heartbeat (5 s here)."""
    from faststream.rabbit import RabbitBroker

    queue = f"ib-fs-{uuid.uuid4().hex[:8]}"
    state = tmp_path / "state.json"
    worker = start(serve, amqp, queue, state, INFRABOOT_STATE_INTERVAL="5", JOB_SECONDS="5")
    worker.wait_for_output("gate started")
    wait_probe("ready", state, 0)
    async with RabbitBroker(amqp) as client:
        await client.publish(1, queue)
    worker.wait_for_output("job 1 started")
    worker.terminate()
    t0 = time.monotonic()
    draining = wait_probe("ready", state, 1, timeout=3)
    took = time.monotonic() - t0
    mid_message = "job 1 finished" not in worker.output
    status = worker.wait(40)
    assert "ready: fail (draining)" == draining, (draining, took)
    assert mid_message, worker.output
    assert 0 == status, worker.output


async def test_a_required_failure_exits_2_with_one_line(serve: Serve, amqp: str, tmp_path: Path) -> None:
    """The required component fails: exit 2, one line naming it; the probes say stopped."""
    state = tmp_path / "state.json"
    worker = start(serve, amqp, f"ib-fs-{uuid.uuid4().hex[:8]}", state, GATE="fail")
    status = worker.wait(30)
    assert 2 == status, worker.output
    assert "infraboot: required component 'gate'" in worker.output
    # #24: the one line, not ~50 of asyncio.run's report of the SystemExit inside anyio's task group
    assert "Traceback" not in worker.output, worker.output
    assert "unhandled exception" not in worker.output, worker.output
    assert (1, "startup: fail (stopped)") == probe("startup", state)


async def test_a_broker_outage_fails_readiness_and_recovers(serve: Serve, amqp: str, tmp_path: Path) -> None:
    """RabbitMQ refused: readiness fails naming ``faststream``, liveness holds, the process lives on;
    restored: ready again, and a message published then is handled."""
    from faststream.rabbit import RabbitBroker

    proxy = TcpProxy(AMQP[1], target_host=AMQP[0])
    try:
        queue = f"ib-fs-{uuid.uuid4().hex[:8]}"
        state = tmp_path / "state.json"
        worker = start(serve, f"amqp://guest:guest@{proxy.url_host}/", queue, state, JOB_SECONDS="0")
        worker.wait_for_output("gate started")
        wait_probe("ready", state, 0)
        proxy.set_mode("refuse")
        down = wait_probe("ready", state, 1)
        live = probe("live", state)
        proxy.set_mode("forward")
        wait_probe("ready", state, 0, timeout=40)
        async with RabbitBroker(amqp) as client:
            await client.publish(7, queue)
        worker.wait_for_output("job 7 finished")
    finally:
        proxy.close()
    assert down.startswith("ready: fail (faststream:"), down
    assert 0 == live[0]
    assert worker.proc.poll() is None
