"""A test that leaves a TcpProxy open: the plugin closes it at the test's end and the warning names that test."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from infraboot.testing import TcpProxy

LEFT: list[TcpProxy] = []


@pytest.fixture(scope="session")
def shared() -> Iterator[TcpProxy]:
    with TcpProxy(("127.0.0.1", 9)) as proxy:
        yield proxy


def test_leaves_a_proxy_open(shared: TcpProxy) -> None:
    LEFT.append(TcpProxy(("127.0.0.1", 9)).start())


def test_a_later_test_finds_it_closed(shared: TcpProxy) -> None:
    with socket.socket() as probe:
        refused = probe.connect_ex(("127.0.0.1", LEFT[0].port)) != 0
    assert (True, "forward") == (refused, shared.mode)  # the session's proxy still serves
    shared.restore()
