"""The relay as a real process, killed with SIGKILL half way: nothing lost, nothing twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.core.connection import ConnectionLost
from client.private.received import Received
from tests.fault_support import RelayProcess, free_port
from tests.relay_harness import drain, make_client, register, session_of


@pytest.fixture
def relay_port(tmp_path: Path):
    port = free_port()
    processes: list[RelayProcess] = []

    def start() -> RelayProcess:
        processes.append(RelayProcess(tmp_path / "relay.db", port))
        return processes[-1]

    yield port, start
    for process in processes:
        process.kill()


async def test_sigkill_half_way_loses_and_duplicates_nothing(tmp_path: Path, relay_port) -> None:
    port, start = relay_port
    relay = start()
    alice = make_client(tmp_path / "alice", port)
    bob = make_client(tmp_path / "bob", port)
    await register(alice, "alice")
    await register(bob, "bob")
    async with session_of(alice) as a, session_of(bob) as b:
        for i in range(50):
            await a.send_text("bob", f"a{i}")
            await b.send_text("alice", f"b{i}")
    relay.kill()
    relay = start()
    async with session_of(alice) as a, session_of(bob) as b:
        for i in range(50, 100):
            await a.send_text("bob", f"a{i}")
            await b.send_text("alice", f"b{i}")

    # Bob is half way through his mailbox when the relay is killed again.
    got: list[Received] = []

    def kill_at_30(message: Received) -> None:
        got.append(message)
        if len(got) == 30:
            relay.kill()

    with pytest.raises(ConnectionLost):
        async with session_of(bob) as b:
            await b.receive(kill_at_30)
    relay = start()
    got += await drain(bob)
    to_alice = await drain(alice)
    assert [m.text for m in got] == [f"a{i}" for i in range(100)]
    assert [m.text for m in to_alice] == [f"b{i}" for i in range(100)]
    assert await drain(bob) == []
