"""Abuse limits and storage faults at the relay: each refusal is clear and stores nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.connection import ServerError, open_connection
from client.private import ClientError
from e2e_proto import relay_api as api
from e2e_proto.address import Address
from e2e_proto.wire import Envelope
from server.relay.config import RelayConfig
from server.relay.server import Relay
from server.relay.sqlite_store import SqliteRelayStore
from server.relay.store import Acknowledge, Enqueue, Outgoing, QuotaExceededError
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


def _with_ciphertext_size(envelope: bytes, size: int) -> bytes:
    """``envelope`` (from a real session) with its ciphertext replaced to make it ``size``
    bytes long (the relay never decrypts)."""
    decoded = Envelope.decode(envelope)
    body = decoded.message.ciphertext
    for length in range(len(body), len(body) + size):
        resized = decoded._replace(message=decoded.message._replace(ciphertext=bytes(length)))
        data = resized.encode()
        if len(data) == size:
            return data
    raise AssertionError(f"no envelope of {size} bytes")


async def test_an_envelope_over_max_envelope_size_is_refused(nursery, tmp_path: Path) -> None:
    assert RelayConfig().max_envelope_size == api.MAX_ENVELOPE_SIZE
    relay, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path,
                                                     RelayConfig(max_envelope_size=2000))
    async with session_of(alice) as a:
        await a.send_text("bob", "make a session")
        template = a.cipher.encrypt(Address("bob", 0), b"x").encode()
        with pytest.raises(ServerError) as caught:
            await a.connection.request("send", to="bob", envelopes=[
                _with_ciphertext_size(template, 2001)])
        assert caught.value.code == api.MESSAGE_TOO_LARGE
        assert caught.value.details["limit"] == 2000
        assert len(relay.store.pending("bob", 0, 0, 10)) == 1  # nothing more was stored
        await a.connection.request("send", to="bob", envelopes=[
            _with_ciphertext_size(template, 2000)])  # the limit is exact
    assert len(relay.store.pending("bob", 0, 0, 10)) == 2


async def test_the_mailbox_byte_quota_refuses_and_frees_on_ack(nursery, tmp_path: Path) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(
        nursery, tmp_path, RelayConfig(mailbox_quota_bytes=10_000))
    async with session_of(alice) as a:
        await a.send_text("bob", "make a session")
        template = a.cipher.encrypt(Address("bob", 0), b"x").encode()
        used = len(relay.store.pending("bob", 0, 0, 10)[0].envelope)
        big = _with_ciphertext_size(template, 4000)
        for _ in range(2):
            await a.connection.request("send", to="bob", envelopes=[big])
        assert used + 8000 <= 10_000 < used + 12_000
        with pytest.raises(ServerError) as caught:
            await a.connection.request("send", to="bob", envelopes=[big])
        assert caught.value.code == api.QUOTA_EXCEEDED
        assert "10000 bytes" in str(caught.value)
        stored = relay.store.pending("bob", 0, 0, 10)
        assert sum(len(d.envelope) for d in stored) == used + 8000  # nothing more stored
    await drain(bob)  # bob's acks delete the mail and free the quota
    async with session_of(alice) as a:
        await a.send_text("bob", "room again")
    assert len(relay.store.pending("bob", 0, 0, 10)) == 1


def test_the_byte_quota_is_checked_in_the_commit_that_inserts(tmp_path: Path) -> None:
    """Two sends of one group-commit round that each fit alone: the second is refused."""
    store = SqliteRelayStore(tmp_path / "relay.db")
    store.create_account("bob", bytes(32), 1, b"list", bytes(64), {0: bytes(32)}, 0.0)
    first = Enqueue([Outgoing("bob", 0, bytes(600))], ("alice", 0), 1.0, 10, 1000)
    second = Enqueue([Outgoing("bob", 0, bytes(600))], ("alice", 0), 1.0, 10, 1000)
    small = Enqueue([Outgoing("bob", 0, bytes(400))], ("alice", 0), 1.0, 10, 1000)
    errors = store.write_mailboxes([first, second, small])
    assert errors[0] is None and isinstance(errors[1], QuotaExceededError) and errors[2] is None
    assert [len(d.envelope) for d in store.pending("bob", 0, 0, 10)] == [600, 400]
    seqs = [d.seq for d in store.pending("bob", 0, 0, 10)]
    store.write_mailboxes([Acknowledge("bob", 0, seqs[:1])])
    assert store.write_mailboxes([second]) == [None]  # the ack gave the bytes back
    store.close()


def test_an_older_relay_database_gets_its_mailbox_usage_counted(tmp_path: Path) -> None:
    """A database made before the byte quota: its stored mail counts against the quota."""
    store = SqliteRelayStore(tmp_path / "relay.db")
    store.create_account("bob", bytes(32), 1, b"list", bytes(64), {0: bytes(32)}, 0.0)
    store.write_mailboxes([Enqueue([Outgoing("bob", 0, bytes(700))], ("alice", 0), 1.0, 10,
                                   1000)])
    db = store._db
    db.executescript("DROP TRIGGER mailbox_stored; DROP TRIGGER mailbox_deleted; "
                     "ALTER TABLE devices DROP COLUMN mail_count; "
                     "ALTER TABLE devices DROP COLUMN mail_bytes;")
    store.close()
    store = SqliteRelayStore(tmp_path / "relay.db")
    again = Enqueue([Outgoing("bob", 0, bytes(400))], ("alice", 0), 1.0, 10, 1000)
    assert isinstance(store.write_mailboxes([again])[0], QuotaExceededError)
    store.close()
