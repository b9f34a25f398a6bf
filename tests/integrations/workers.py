"""What the worker adapters' tests share: the exec probe, asked until it answers, and the local RabbitMQ."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

AMQP = ("127.0.0.1", 5672)


def probe(kind: str, state: Path) -> tuple[int, str]:
    """``infraboot probe KIND --file STATE`` as a kubelet runs it: its exit status and its one line."""
    result = subprocess.run(
        [sys.executable, "-m", "infraboot", "probe", kind, "--file", str(state)],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode, result.stdout.strip()


def wait_probe(kind: str, state: Path, code: int, timeout: float = 30.0) -> str:
    """Ask the probe until it exits with *code* (within *timeout*); its line."""
    deadline = time.monotonic() + timeout
    got = probe(kind, state)
    while got[0] != code and time.monotonic() < deadline:
        time.sleep(0.1)
        got = probe(kind, state)
    assert code == got[0], got
    return got[1]


def rabbitmq_or_skip() -> None:
    """Skip the test when no RabbitMQ listens on 127.0.0.1:5672."""
    try:
        socket.create_connection(AMQP, timeout=1).close()
    except OSError:
        pytest.skip("no RabbitMQ on 127.0.0.1:5672")
