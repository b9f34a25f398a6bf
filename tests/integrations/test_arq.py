"""infraboot.arq: a real arq worker (arq's own CLI) on the real Redis: SIGTERM mid-job, outage, failure.

arq pins redis<6 and infraboot[redis] needs redis>=8, so these run in a venv of their own:
``bash scripts/test-arq.sh`` (called by ``.ci/run``). In the main venv they are skipped.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

pytest.importorskip("arq")

from arq import create_pool
from arq.connections import RedisSettings

from tests.integrations.conftest import Serve
from tests.integrations.workers import probe, wait_probe
from tests.servers import AppProcess, TcpProxy

pytestmark = pytest.mark.real

APPS = str(Path(__file__).parent / "apps")
WORKER = [sys.executable, "-m", "arq", "arq_worker.WorkerSettings"]


@pytest.fixture
def queue() -> str:
    return f"ib-arq-{uuid.uuid4().hex[:8]}"


def start(serve: Serve, url: str, queue: str, state: Path, **env: str) -> AppProcess:
    return serve(
        WORKER,
        PYTHONPATH=APPS,
        ARQ_REDIS_URL=url,
        ARQ_QUEUE=queue,
        INFRABOOT_STATE_FILE=str(state),
        INFRABOOT_STATE_INTERVAL="0.2",
        INFRABOOT_CHECK_INTERVAL="0.3",
        INFRABOOT_DRAIN_DELAY="5",
        **env,
    )


async def test_sigterm_mid_job_finishes_the_job_then_shuts_down(
    serve: Serve, redis_url: str, queue: str, tmp_path: Path
) -> None:
    """SIGTERM while a 2 s job runs: the job finishes and is recorded, then infraboot's shutdown runs; exit 0."""
    state = tmp_path / "state.json"
    worker = start(serve, redis_url, queue, state)
    worker.wait_for_output("gate started")
    assert "ready: pass" == wait_probe("ready", state, 0)
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=queue)
    try:
        job = await pool.enqueue_job("slow", 1)
        assert job is not None
        worker.wait_for_output("job 1 started")
        worker.terminate()
        draining = wait_probe("ready", state, 1, timeout=5)
        status = worker.wait(30)
        result = await job.result(timeout=5)
    finally:
        await pool.aclose()
    output = worker.output
    assert (0, 1) == (status, result)
    assert draining.startswith("ready: fail")
    assert output.index("job 1 finished") < output.index("gate stopped")
    assert (1, "startup: fail (stopped)") == probe("startup", state)


async def test_a_required_failure_exits_2_with_one_line(
    serve: Serve, redis_url: str, queue: str, tmp_path: Path
) -> None:
    """The required component fails: exit 2, one line naming it, no traceback; the probe says not started."""
    state = tmp_path / "state.json"
    worker = start(serve, redis_url, queue, state, GATE="fail")
    status = worker.wait(30)
    assert 2 == status
    assert "infraboot: required component 'gate'" in worker.output
    assert "Traceback" not in worker.output
    assert 1 == probe("startup", state)[0]


async def test_arq_ending_on_an_outage_still_shuts_infraboot_down(
    serve: Serve, redis_proxy: TcpProxy, redis_url: str, queue: str, tmp_path: Path
) -> None:
    """A refused Redis ends arq's worker (non-zero: arq's poll loop does not survive its Redis going away, and its
    close() then skips on_shutdown): infraboot's shutdown runs all the same, and every probe fails."""
    state = tmp_path / "state.json"
    url = f"redis://{redis_proxy.url_host}/{redis_url.rsplit('/', 1)[-1]}"
    worker = start(serve, url, queue, state)
    worker.wait_for_output("gate started")
    wait_probe("ready", state, 0)
    redis_proxy.set_mode("refuse")
    status = worker.wait(30)
    assert 0 != status
    assert "gate stopped" in worker.output
    assert "arq_on_shutdown_skipped" in worker.output
    assert 1 == probe("live", state)[0]
