"""infraboot.celery: a real ``celery worker`` on the real RabbitMQ: SIGTERM mid-task, outage, required failure."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

pytest.importorskip("celery")

from tests.integrations.conftest import Serve
from tests.integrations.workers import probe, rabbitmq_or_skip, wait_probe
from tests.servers import AppProcess, TcpProxy

pytestmark = pytest.mark.real

APPS = str(Path(__file__).parent / "apps")
WORKER = [sys.executable, "-m", "celery", "-A", "celery_worker", "worker", "--pool", "solo", "--loglevel", "INFO"]
AMQP = ("127.0.0.1", 5672)


@pytest.fixture
def amqp() -> str:
    rabbitmq_or_skip()
    return "amqp://guest:guest@127.0.0.1:5672//"


def start(serve: Serve, url: str, queue: str, state: Path, **env: str) -> AppProcess:
    return serve(
        WORKER,
        PYTHONPATH=APPS,
        CELERY_BROKER_URL=url,
        CELERY_QUEUE=queue,
        INFRABOOT_STATE_FILE=str(state),
        INFRABOOT_STATE_INTERVAL="0.2",
        INFRABOOT_CHECK_INTERVAL="0.3",
        **env,
    )


def send(url: str, queue: str, n: int) -> None:
    from celery import Celery

    client = Celery("client", broker=url)
    client.send_task("slow", args=[n], queue=queue)
    client.close()


async def test_sigterm_mid_task_finishes_it_then_shuts_down(serve: Serve, amqp: str, tmp_path: Path) -> None:
    """SIGTERM while a 2 s task runs (it used a component through call()): readiness fails at once, the task
    finishes, then infraboot's shutdown runs; exit 0."""
    queue = f"ib-celery-{uuid.uuid4().hex[:8]}"
    state = tmp_path / "state.json"
    worker = start(serve, amqp, queue, state)
    worker.wait_for_output("gate started")
    assert "ready: pass" == wait_probe("ready", state, 0)
    send(amqp, queue, 1)
    worker.wait_for_output("job 1 started via gate")
    worker.terminate()
    draining = wait_probe("ready", state, 1, timeout=5)
    status = worker.wait(40)
    output = worker.output
    assert 0 == status, output
    assert draining.startswith("ready: fail")
    assert output.index("job 1 finished") < output.index("gate stopped")
    assert (1, "startup: fail (stopped)") == probe("startup", state)


async def test_a_required_failure_exits_2_with_one_line(serve: Serve, amqp: str, tmp_path: Path) -> None:
    """The required component fails: exit 2, one line naming it; the probes say stopped."""
    state = tmp_path / "state.json"
    worker = start(serve, amqp, f"ib-celery-{uuid.uuid4().hex[:8]}", state, GATE="fail")
    status = worker.wait(30)
    assert 2 == status, worker.output
    assert "infraboot: required component 'gate'" in worker.output
    assert (1, "startup: fail (stopped)") == probe("startup", state)


async def test_a_broker_outage_fails_readiness_and_recovers(serve: Serve, amqp: str, tmp_path: Path) -> None:
    """RabbitMQ refused: readiness fails naming ``celery``, liveness holds, the worker lives on;
    restored: ready again, and a task sent then runs."""
    proxy = TcpProxy(AMQP[1], target_host=AMQP[0])
    try:
        queue = f"ib-celery-{uuid.uuid4().hex[:8]}"
        state = tmp_path / "state.json"
        worker = start(serve, f"amqp://guest:guest@{proxy.url_host}//", queue, state, JOB_SECONDS="0")
        worker.wait_for_output("gate started")
        wait_probe("ready", state, 0)
        proxy.set_mode("refuse")
        down = wait_probe("ready", state, 1)
        live = probe("live", state)
        proxy.set_mode("forward")
        wait_probe("ready", state, 0, timeout=40)
        send(amqp, queue, 7)
        worker.wait_for_output("job 7 finished", timeout=40)
    finally:
        proxy.close()
    assert down.startswith("ready: fail (celery:"), down
    assert 0 == live[0]
    assert worker.proc.poll() is None
