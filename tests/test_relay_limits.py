"""Abuse limits and storage faults at the relay: each refusal is clear and stores nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.connection import ServerError, open_connection
from client.private import ClientError
from e2e_proto import relay_api as api
from server.relay.config import RelayConfig
from server.relay.server import Relay
from server.relay.sqlite_store import SqliteRelayStore
from tests.fault_support import (
    answers_to_a_stalled_frame,
    answers_to_a_trickled_frame,
    end_storage_fault,
    start_storage_fault,
)
from tests.relay_harness import (
    drain,
    make_client,
    register,
    relay_with_alice_and_bob,
    session_of,
    start_relay,
)


async def test_slow_loris_frame_times_out(nursery, tmp_path: Path, autojump_clock) -> None:
    relay = await start_relay(nursery, tmp_path / "relay.db", RelayConfig(frame_timeout=10))
    frames, took = await answers_to_a_stalled_frame(relay.port)
    assert frames[-1]["error"]["message"] == "a frame did not complete in time"
    assert 10 <= took < 30  # the frame timeout, not the auth timeout


async def test_a_trickled_frame_has_one_deadline_from_its_first_byte(
        tmp_path: Path, autojump_clock) -> None:
    """One byte every 10 s does not keep a frame alive past the 30 s frame timeout."""
    store = SqliteRelayStore(tmp_path / "relay.db")
    relay = Relay(store, RelayConfig(auth_timeout=10_000))  # only the frame timeout applies
    try:
        frames, took = await answers_to_a_trickled_frame(relay, interval=10)
    finally:
        store.close()
    assert frames[0]["type"] == "challenge"
    assert frames[-1]["error"]["message"] == "a frame did not complete in time"
    assert 30 <= took <= 31


async def test_connections_per_account(nursery, tmp_path: Path) -> None:
    relay = await start_relay(nursery, tmp_path / "relay.db",
                              RelayConfig(connections_per_account=2))
    alice = make_client(tmp_path / "alice", relay.port)
    await register(alice, "alice")
    async with session_of(alice), session_of(alice):
        with pytest.raises(ClientError, match="too many open connections"):
            async with session_of(alice):
                pass
    async with session_of(alice):  # closed connections no longer count
        pass


async def test_prekey_fetch_rate_stops_opk_draining(nursery, tmp_path: Path) -> None:
    relay = await start_relay(nursery, tmp_path / "relay.db",
                              RelayConfig(bundles_per_minute=0.001, bundle_burst=5))
    await register(make_client(tmp_path / "bob", relay.port), "bob")
    mallory = make_client(tmp_path / "mallory", relay.port)
    await register(mallory, "mallory")
    async with session_of(mallory) as m:
        for _ in range(5):
            await m.connection.request("fetch_bundles", account="bob")
        with pytest.raises(ServerError) as caught:
            await m.connection.request("fetch_bundles", account="bob")
        assert caught.value.code == api.RATE_LIMITED
    assert relay.store.take_bundle("bob", 0)[1] == 100 - 5 - 1


async def test_per_account_rate_limit_spans_connections(nursery, tmp_path: Path) -> None:
    relay = await start_relay(nursery, tmp_path / "relay.db",
                              RelayConfig(account_requests_per_second=0.001,
                                          account_request_burst=6))
    alice = make_client(tmp_path / "alice", relay.port)
    await register(alice, "alice")  # its prekey uploads spend some of alice's 6 requests
    async with session_of(alice) as first:
        await first.connection.request("ping")
        async with open_connection("127.0.0.1", relay.port) as second:
            nonce = (await second.pushes.receive())["nonce"]
            dik = alice.state.protocol.identity_key_pair()
            await second.request("auth", account="alice", device_id=0,
                                 signature=dik.sign(api.auth_message(nonce, "alice", 0)))
            answered = 0
            with pytest.raises(ServerError) as caught:
                for _ in range(10):
                    await second.request("ping")
                    answered += 1
            assert caught.value.code == api.RATE_LIMITED
            assert answered < 6  # the first connection's requests counted too


@pytest.mark.parametrize("fault", ["read-only", "disk-full"])
async def test_storage_fault_refuses_sends_and_serves_reads(nursery, tmp_path: Path,
                                                            fault: str) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path)
    async with session_of(alice) as a:
        await a.send_text("bob", "stored before the fault")
        await a.device_list("bob")
        await a.send_text("bob", "and a session exists")
        db = relay.store._db
        start_storage_fault(db, fault)
        with pytest.raises(ClientError, match="cannot store"):
            for i in range(200):  # a full disk shows once the pages run out
                await a.send_text("bob", f"during the fault {i} " + "x" * 2000)
    stored = relay.store.pending("bob", 0, 0, 1000)
    async with session_of(bob) as b:  # reads still served; the ack may fail and be retried
        got = []
        await b.receive(got.append)
    texts = [m.text for m in got]
    assert texts[:2] == ["stored before the fault", "and a session exists"]
    assert len(texts) == len(stored)  # exactly what the relay acknowledged, nothing more
    end_storage_fault(db)
    assert await drain(bob) == []  # redeliveries of unacknowledged mail are recognised


async def test_an_ack_lists_at_most_max_ack_seqs(nursery, tmp_path: Path) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path)
    async with session_of(alice) as a:
        for i in range(3):
            await a.send_text("bob", f"m{i}")
    stored = [d.seq for d in relay.store.pending("bob", 0, 0, 10)]
    assert len(stored) == 3
    async with session_of(bob) as b:
        too_many = [*stored, *range(10**6, 10**6 + api.MAX_ACK_SEQS - 2)]
        assert len(too_many) == api.MAX_ACK_SEQS + 1
        with pytest.raises(ServerError) as caught:
            await b.connection.request("ack", seqs=too_many)
        assert caught.value.code == api.BAD_REQUEST
        assert f"at most {api.MAX_ACK_SEQS}" in str(caught.value)
        assert len(relay.store.pending("bob", 0, 0, 10)) == 3  # nothing was deleted
        await b.connection.request("ack", seqs=too_many[:api.MAX_ACK_SEQS])  # the limit is exact
        assert relay.store.pending("bob", 0, 0, 10) == []
