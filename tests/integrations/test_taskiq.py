"""infraboot.taskiq: a real ``taskiq worker`` on the real Redis: SIGTERM mid-task, broker outage, required failure."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("taskiq_redis")

from tests.integrations.conftest import Serve
from tests.integrations.workers import probe, wait_probe
from tests.servers import AppProcess, TcpProxy

pytestmark = pytest.mark.real

APPS = str(Path(__file__).parent / "apps")
WORKER = [
    sys.executable,
    "-m",
    "taskiq",
    "worker",
    "taskiq_worker:broker",
    "--workers",
    "1",
    "--shutdown-timeout",
    "20",
    "--no-configure-logging",
]


def start(serve: Serve, url: str, queue: str, state: Path, *args: str, **env: str) -> AppProcess:
    return serve(
        [*WORKER, *args],
        PYTHONPATH=APPS,
        TASKIQ_REDIS_URL=url,
        TASKIQ_QUEUE=queue,
        **{
            "INFRABOOT_STATE_FILE": str(state),
            "INFRABOOT_STATE_INTERVAL": "0.2",
            "INFRABOOT_CHECK_INTERVAL": "0.3",
            **env,
        },
    )


async def test_sigterm_mid_task_finishes_the_task_then_shuts_down(serve: Serve, redis_url: str, tmp_path: Path) -> None:
    """SIGTERM while a 2 s task runs: readiness fails at once, the task finishes and its result is stored,
    then infraboot's shutdown runs; exit 0."""
    from taskiq.kicker import AsyncKicker
    from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

    queue = f"ib-taskiq-{uuid.uuid4().hex[:8]}"
    state = tmp_path / "state.json"
    worker = start(serve, redis_url, queue, state)
    worker.wait_for_output("gate started")
    assert "ready: pass" == wait_probe("ready", state, 0)
    client = ListQueueBroker(redis_url, queue_name=queue).with_result_backend(RedisAsyncResultBackend(redis_url))
    await client.startup()
    try:
        task = await AsyncKicker("taskiq_worker:slow", client, {}).kiq(1)
        worker.wait_for_output("job 1 started")
        worker.terminate()
        draining = wait_probe("ready", state, 1, timeout=5)
        status = worker.wait(30)
        result = await task.wait_result(timeout=5)
    finally:
        await client.shutdown()
    output = worker.output
    assert (0, 1) == (status, result.return_value)
    assert draining.startswith("ready: fail")
    assert output.index("job 1 finished") < output.index("gate stopped")
    assert (1, "startup: fail (stopped)") == probe("startup", state)


async def test_sigterm_fails_readiness_during_the_drain(serve: Serve, redis_url: str, tmp_path: Path) -> None:
    """#24: taskiq's process manager takes the SIGTERM and sends its worker SIGINT; readiness must say
    ``draining`` while a 5 s task still runs, not ``pass`` until shutdown. The heartbeat is 5 s here, so
    only the write made at the signal can show it in time."""
    from taskiq.kicker import AsyncKicker
    from taskiq_redis import ListQueueBroker

    queue = f"ib-taskiq-{uuid.uuid4().hex[:8]}"
    state = tmp_path / "state.json"
    worker = start(serve, redis_url, queue, state, INFRABOOT_STATE_INTERVAL="5", JOB_SECONDS="5")
    worker.wait_for_output("gate started")
    wait_probe("ready", state, 0)
    client = ListQueueBroker(redis_url, queue_name=queue)
    await client.startup()
    try:
        await AsyncKicker("taskiq_worker:slow", client, {}).kiq(1)
        worker.wait_for_output("job 1 started")
        worker.terminate()
        t0 = time.monotonic()
        draining = wait_probe("ready", state, 1, timeout=4)  # taskiq's manager polls its queue every 1 s
        took = time.monotonic() - t0
        mid_task = "job 1 finished" not in worker.output
        status = worker.wait(30)
    finally:
        await client.shutdown()
    assert "ready: fail (draining)" == draining, (draining, took)
    assert mid_task, worker.output
    assert 0 == status, worker.output


async def test_a_required_failure_exits_non_zero_with_one_line(serve: Serve, redis_url: str, tmp_path: Path) -> None:
    """The required component fails: the worker process exits 2 with one line naming it, no traceback from
    infraboot; taskiq's process manager gives up after --max-fails and exits non-zero."""
    state = tmp_path / "state.json"
    worker = start(serve, redis_url, f"ib-taskiq-{uuid.uuid4().hex[:8]}", state, "--max-fails", "1", GATE="fail")
    status = worker.wait(60)
    assert 0 != status
    assert "infraboot: required component 'gate'" in worker.output
    assert 1 == probe("startup", state)[0]


async def test_a_broker_outage_fails_readiness_and_recovers(
    serve: Serve, redis_proxy: TcpProxy, redis_url: str, tmp_path: Path
) -> None:
    """The broker's Redis refused: readiness fails; taskiq-redis ends the worker process (infraboot shuts down)
    and the process manager starts another, whose startup waits for the broker; restored: ready again."""
    state = tmp_path / "state.json"
    url = f"redis://{redis_proxy.url_host}/{redis_url.rsplit('/', 1)[-1]}"
    worker = start(serve, url, f"ib-taskiq-{uuid.uuid4().hex[:8]}", state)
    worker.wait_for_output("gate started")
    wait_probe("ready", state, 0)
    redis_proxy.set_mode("refuse")
    down = wait_probe("ready", state, 1)
    redis_proxy.set_mode("forward")
    wait_probe("ready", state, 0, timeout=30)
    assert down.startswith("ready: fail"), down
    assert worker.proc.poll() is None
    assert "gate stopped" in worker.output
