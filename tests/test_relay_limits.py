"""Abuse limits and storage faults at the relay: each refusal is clear and stores nothing."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from client.core.connection import ServerError, open_connection
from client.core.errors import ClientError
from e2e_proto import relay_api as api
from e2e_proto.address import Address
from e2e_proto.blob_api import BLOB_CHUNK_SIZE
from e2e_proto.constants import MAX_FRAME_SIZE
from e2e_proto.devices import DeviceList, link_message
from e2e_proto.groups import GroupState, GroupUpdate, member_devices_digest
from e2e_proto.keys import IdentityKeyPair, SignedPreKey, X25519PrivateKey
from e2e_proto.sender_keys import OwnSenderKey, SenderKeyMessage
from e2e_proto.wire import Envelope, GroupEnvelope, encode_frame, encode_group_message
from server.relay.config import RelayConfig
from server.relay.main import build_parser, relay_config
from server.relay.server import Relay
from server.relay.sqlite_store import SqliteRelayStore
from server.relay.store import (
    Acknowledge,
    Enqueue,
    GroupLimitError,
    GroupRoute,
    Outgoing,
    QuotaExceededError,
)
from tests.fault_support import (
    RelayProcess,
    answers_to_a_stalled_frame,
    answers_to_a_trickled_frame,
    end_storage_fault,
    free_port,
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
from tests.server_harness import MemoryPeer, connect


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


async def test_connections_per_account(nursery, tmp_path: Path, relay_db) -> None:
    relay = await start_relay(nursery, relay_db,
                              RelayConfig(connections_per_account=2))
    alice = make_client(tmp_path / "alice", relay.port)
    await register(alice, "alice")
    async with session_of(alice), session_of(alice):
        with pytest.raises(ClientError, match="too many open connections"):
            async with session_of(alice):
                pass
    async with session_of(alice):  # closed connections no longer count
        pass


async def test_prekey_fetch_rate_stops_opk_draining(nursery, tmp_path: Path, relay_db) -> None:
    relay = await start_relay(nursery, relay_db,
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
    assert (await relay.store.take_bundle("bob", 0))[1] == 100 - 5 - 1


async def test_per_account_rate_limit_spans_connections(nursery, tmp_path: Path, relay_db) -> None:
    relay = await start_relay(nursery, relay_db,
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
    stored = await relay.store.pending("bob", 0, 0, 1000)
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
    stored = [d.seq for d in await relay.store.pending("bob", 0, 0, 10)]
    assert len(stored) == 3
    async with session_of(bob) as b:
        too_many = [*stored, *range(10**6, 10**6 + api.MAX_ACK_SEQS - 2)]
        assert len(too_many) == api.MAX_ACK_SEQS + 1
        with pytest.raises(ServerError) as caught:
            await b.connection.request("ack", seqs=too_many)
        assert caught.value.code == api.BAD_REQUEST
        assert f"at most {api.MAX_ACK_SEQS}" in str(caught.value)
        assert len(await relay.store.pending("bob", 0, 0, 10)) == 3  # nothing was deleted
        await b.connection.request("ack", seqs=too_many[:api.MAX_ACK_SEQS])  # the limit is exact
        assert (await relay.store.pending("bob", 0, 0, 10)) == []


def _with_ciphertext_size(envelope: bytes, size: int, fill: int = 0) -> bytes:
    """``envelope`` (from a real session) with its ciphertext replaced by ``fill`` bytes to
    make it ``size`` bytes long (the relay never decrypts; a different ``fill`` makes another
    message, where the same bytes again would be the same message, stored once)."""
    decoded = Envelope.decode(envelope)
    body = decoded.message.ciphertext
    for length in range(len(body), len(body) + size):
        resized = decoded._replace(message=decoded.message._replace(
            ciphertext=bytes([fill]) * length))
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
        assert len(await relay.store.pending("bob", 0, 0, 10)) == 1  # nothing more was stored
        await a.connection.request("send", to="bob", envelopes=[
            _with_ciphertext_size(template, 2000)])  # the limit is exact
    assert len(await relay.store.pending("bob", 0, 0, 10)) == 2


async def test_a_send_is_bounded_before_any_envelope_is_read(nursery, tmp_path: Path) -> None:
    """One more envelope than a send can need (MAX_SEND_ENVELOPES) is refused before any is
    decoded or even sized: too many oversized envelopes are bad_request, not
    message_too_large."""
    relay, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path,
                                                     RelayConfig(max_envelope_size=2000))
    async with session_of(alice) as a:
        await a.send_text("bob", "make a session")
        template = a.cipher.encrypt(Address("bob", 0), b"x").encode()
        oversized = _with_ciphertext_size(template, 2001)
        with pytest.raises(ServerError) as caught:
            await a.connection.request("send", to="bob", envelopes=[oversized] * (
                api.MAX_SEND_ENVELOPES + 1))
        assert caught.value.code == api.BAD_REQUEST
        assert f"at most {api.MAX_SEND_ENVELOPES}" in str(caught.value)
        with pytest.raises(ServerError) as caught:  # the bound is exact: these are read
            await a.connection.request("send", to="bob", envelopes=[oversized] * (
                api.MAX_SEND_ENVELOPES))
        assert caught.value.code == api.MESSAGE_TOO_LARGE
    assert len(await relay.store.pending("bob", 0, 0, 10)) == 1


async def test_the_mailbox_byte_quota_refuses_and_frees_on_ack(nursery, tmp_path: Path) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(
        nursery, tmp_path, RelayConfig(mailbox_quota_bytes=10_000))
    async with session_of(alice) as a:
        await a.send_text("bob", "make a session")
        template = a.cipher.encrypt(Address("bob", 0), b"x").encode()
        used = len((await relay.store.pending("bob", 0, 0, 10))[0].envelope)
        big = [_with_ciphertext_size(template, 4000, fill) for fill in range(3)]
        for fill in range(2):
            await a.connection.request("send", to="bob", envelopes=[big[fill]])
        assert used + 8000 <= 10_000 < used + 12_000
        with pytest.raises(ServerError) as caught:
            await a.connection.request("send", to="bob", envelopes=[big[2]])
        assert caught.value.code == api.QUOTA_EXCEEDED
        assert "10000 bytes" in str(caught.value)
        stored = (await relay.store.pending("bob", 0, 0, 10))
        assert sum(len(d.envelope) for d in stored) == used + 8000  # nothing more stored
    await drain(bob)  # bob's acks delete the mail and free the quota
    async with session_of(alice) as a:
        await a.send_text("bob", "room again")
    assert len(await relay.store.pending("bob", 0, 0, 10)) == 1


async def test_the_byte_quota_is_checked_in_the_commit_that_inserts(tmp_path: Path) -> None:
    """Two sends of one group-commit round that each fit alone: the second is refused (two
    different envelopes: the same one again would be the first message, stored once)."""
    store = SqliteRelayStore(tmp_path / "relay.db")
    await store.create_account("bob", bytes(32), 1, b"list", bytes(64), {0: bytes(32)}, 0.0)
    first = Enqueue([Outgoing("bob", 0, b"\x01" * 600)], ("alice", 0), 1.0, 10, 1000)
    second = Enqueue([Outgoing("bob", 0, b"\x02" * 600)], ("alice", 0), 1.0, 10, 1000)
    small = Enqueue([Outgoing("bob", 0, bytes(400))], ("alice", 0), 1.0, 10, 1000)
    errors = store.write_mailboxes([first, second, small])
    assert errors[0] is None and isinstance(errors[1], QuotaExceededError) and errors[2] is None
    assert [len(d.envelope) for d in await store.pending("bob", 0, 0, 10)] == [600, 400]
    seqs = [d.seq for d in await store.pending("bob", 0, 0, 10)]
    store.write_mailboxes([Acknowledge("bob", 0, seqs[:1])])
    assert store.write_mailboxes([second]) == [None]  # the ack gave the bytes back
    store.close()


async def test_an_older_relay_database_gets_its_mailbox_usage_counted(tmp_path: Path) -> None:
    """A database made before the byte quota: its stored mail counts against the quota."""
    store = SqliteRelayStore(tmp_path / "relay.db")
    await store.create_account("bob", bytes(32), 1, b"list", bytes(64), {0: bytes(32)}, 0.0)
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


async def test_an_older_relay_database_keeps_its_groups_counted_for_no_one(
        tmp_path: Path) -> None:
    """A database made before groups had a creator: its copies stay, can be updated and
    deleted, and count against no account's limit; new ones count."""
    store = SqliteRelayStore(tmp_path / "relay.db")
    old = GroupRoute(b"\x01" * 16, 1, ("alice",), ("alice",), b"body", bytes(64))
    await store.put_group(old, "alice", 1)
    store._db.executescript("DROP INDEX groups_by_creator; ALTER TABLE groups DROP COLUMN "
                            "creator;")
    store.close()
    store = SqliteRelayStore(tmp_path / "relay.db")
    assert await store.group(old.group_id) == old
    await store.put_group(replace(old, group_id=b"\x02" * 16), "alice", 1)  # old: no one's
    with pytest.raises(GroupLimitError):
        await store.put_group(replace(old, group_id=b"\x03" * 16), "alice", 1)
    await store.put_group(GroupRoute(old.group_id, 2, (), (), b"left", bytes(64)), "alice", 1)
    assert await store.group(old.group_id) is None
    store.close()


def _usage_matches_the_mailbox(store: SqliteRelayStore) -> bool:
    """Whether every device's mail_count and mail_bytes are what its mailbox holds."""
    return store._db.execute(
        "SELECT COUNT(*) FROM devices d WHERE (d.mail_count, d.mail_bytes) != (SELECT COUNT(*), "
        "COALESCE(SUM(length(envelope)), 0) FROM mailbox m "
        "WHERE m.account = d.account AND m.device = d.device)").fetchone()[0] == 0


async def test_a_group_write_leaves_out_mailboxes_over_either_quota(tmp_path: Path) -> None:
    """skip_full (group fan-out) with the byte quota: a device whose mailbox one more copy
    would take past its messages or its bytes is left out and the others are stored; without
    skip_full (a send) the same write is refused whole."""
    store = SqliteRelayStore(tmp_path / "relay.db")
    await store.create_account("bob", bytes(32), 1, b"list", bytes(64),
                               {0: bytes(32), 1: bytes(32)}, 0.0)
    await store.create_account("carol", bytes(32), 1, b"list", bytes(64), {0: bytes(32)}, 0.0)
    quota, quota_bytes = 2, 1000
    store.write_mailboxes([Enqueue([Outgoing("bob", 0, bytes(700))], ("x", 0), 1.0, 10, 10**6),
                           Enqueue([Outgoing("carol", 0, b"1" * 10)], ("x", 0), 1.0, 10, 10**6),
                           Enqueue([Outgoing("carol", 0, b"2" * 10)], ("x", 0), 1.0, 10, 10**6)])
    copies = [Outgoing("bob", 0, bytes(400)), Outgoing("bob", 1, bytes(400)),
              Outgoing("carol", 0, bytes(400))]
    (refused,) = store.write_mailboxes([Enqueue(copies, ("alice", 0), 2.0, quota, quota_bytes)])
    assert isinstance(refused, QuotaExceededError) and "1000 bytes" in str(refused)
    assert (await store.pending("bob", 1, 0, 10)) == []  # refused whole: nothing stored
    group = Enqueue([*copies, Outgoing("bob", 7, bytes(400))], ("alice", 0), 2.0, quota,
                    quota_bytes, skip_full=True)  # bob.7 is no device (unlinked meanwhile)
    after = Enqueue([Outgoing("bob", 1, bytes(700))], ("alice", 0), 2.0, quota, quota_bytes,
                    skip_full=True)  # in the same commit: bob.1's 400 bytes count already
    # Each write names the positions it left out: bob.0 (bytes), carol.0 (count), bob.7 (gone);
    # then bob.1, whose 400 bytes from the first write leave no room for 700 more.
    assert store.write_mailboxes([group, after]) == [(0, 2, 3), (0,)]
    assert [len(d.envelope) for d in await store.pending("bob", 0, 0, 10)] == [700]  # bytes
    assert [len(d.envelope) for d in await store.pending("bob", 1, 0, 10)] == [400]
    assert [len(d.envelope) for d in await store.pending("carol", 0, 0, 10)] == [10, 10]  # count
    assert _usage_matches_the_mailbox(store)
    store.close()


def _group_message_of_size(template: SenderKeyMessage, sender: Address, size: int) -> bytes:
    """A group message (``template`` with its ciphertext replaced) whose group envelope from
    ``sender`` is ``size`` bytes (the relay never decrypts)."""
    for length in range(len(template.ciphertext), len(template.ciphertext) + size):
        message = template._replace(ciphertext=bytes(length))
        if len(GroupEnvelope(sender, message).encode()) == size:
            return encode_group_message(message)
    raise AssertionError(f"no group envelope of {size} bytes")


async def test_group_fan_out_is_bounded_like_envelopes_and_counts_each_devices_bytes(
        nursery, tmp_path: Path) -> None:
    relay = await start_relay(nursery, tmp_path / "relay.db",
                              RelayConfig(max_envelope_size=2000, mailbox_quota_bytes=5000))
    clients = {n: make_client(tmp_path / n, relay.port) for n in ("alice", "bob", "carol")}
    for name, client in clients.items():
        await register(client, name)
    alice = Address("alice", 0)
    state = GroupState.create("g", "alice", ["bob", "carol"])
    routing = GroupUpdate.sign(state, alice, clients["alice"].state.protocol.identity_key_pair(),
                               routing=True)
    template = OwnSenderKey.create(state.group_id).encrypt(b"x" * 16)
    send = {"group_id": state.group_id, "version": 1, "devices_digest": member_devices_digest(
        {"alice": [0], "bob": [0], "carol": [0]})}
    async with session_of(clients["alice"]) as a:
        await a.connection.request("group_put", routing=routing.body, signature=routing.signature)
        with pytest.raises(ServerError) as caught:  # one copy per device: bounded as one
            await a.connection.request("group_send", **send, message=_group_message_of_size(
                template, alice, 2001))
        assert caught.value.code == api.MESSAGE_TOO_LARGE
        assert caught.value.details["limit"] == 2000
        assert await relay.store.pending("bob", 0, 0, 10) == []
        assert await relay.store.pending("carol", 0, 0, 10) == []
        relay.store.write_mailboxes([Enqueue([Outgoing("bob", 0, bytes(3500))], ("carol", 0), 1.0,
                                             10, 10**6)])  # one more copy passes bob's 5000
        await a.connection.request("group_send", **send, message=_group_message_of_size(
            template, alice, 2000))  # the limit is exact
        assert [len(d.envelope) for d in await relay.store.pending("carol", 0, 0, 10)] == [2000]
        assert [len(d.envelope) for d in await relay.store.pending("bob", 0, 0, 10)] == [3500]

        await a._ensure_sessions([Address("carol", 0)])
        pairwise = a.cipher.encrypt(Address("carol", 0), b"p" * 16).encode()
        with pytest.raises(ServerError) as caught:
            await a.connection.request("group_deliver", group_id=state.group_id,
                                       envelopes=[_with_ciphertext_size(pairwise, 2001)])
        assert caught.value.code == api.MESSAGE_TOO_LARGE
        assert caught.value.details["limit"] == 2000
        for fill in range(2):  # the second would take carol past 5000 bytes: left out
            await a.connection.request("group_deliver", group_id=state.group_id,
                                       envelopes=[_with_ciphertext_size(pairwise, 2000, fill)])
        carol = await relay.store.pending("carol", 0, 0, 10)
        assert [len(d.envelope) for d in carol] == [2000, 2000]
    assert _usage_matches_the_mailbox(relay.store)


# -- connections before authentication and pending links (issue 11) ---------------------------


def _register_fields(nonce: bytes, account: str) -> tuple[dict[str, Any], IdentityKeyPair]:
    """A register request for ``account`` (device 0) on the connection of ``nonce``."""
    aik, dik = IdentityKeyPair.generate(), IdentityKeyPair.generate()
    signed = DeviceList(account, 1, ((0, dik.public_key),)).sign(aik)
    return {"account": account, "account_key": aik.public_key.raw, "device_list": signed.body,
            "device_list_signature": signed.signature,
            "signature": dik.sign(api.auth_message(nonce, account, 0))}, aik


def _link_offer(account: str, aik: IdentityKeyPair, one_time: int = 0,
                name: str = "new") -> dict[str, Any]:
    """A valid link_request for ``account`` from a new device with a random link code."""
    dik = IdentityKeyPair.generate()
    spk = SignedPreKey.create(dik, 2**32 - 1, X25519PrivateKey.generate())
    secret = secrets.token_bytes(api.LINK_SECRET_SIZE)
    return {"account": account, "identity_key": dik.public_key.raw, "name": name,
            "lookup": api.link_lookup(secret),
            "tag": api.link_tag(secret, account, dik.public_key.raw),
            "link_signature": dik.sign(link_message(aik.public_key, account)),
            "signed_prekey": [spk.key_id, spk.public_key.raw, spk.signature],
            "one_time_prekeys": [[2**32 - 1 - i, X25519PrivateKey.generate().public_key.raw]
                                 for i in range(one_time)]}


def _ping_of_size(size: int) -> bytes:
    """A ping frame whose body is ``size`` bytes (padded with an extra field)."""
    frames = (encode_frame({"id": 1, "type": "ping", "pad": bytes(n)}) for n in range(size))
    return next(frame for frame in frames if len(frame) - 4 == size)


async def _registered(nursery: trio.Nursery, relay: Relay, account: str) -> IdentityKeyPair:
    peer = await connect(nursery, relay, "203.0.113.200:1")
    nonce = (await peer.read())[0]["nonce"]
    fields, aik = _register_fields(nonce, account)
    assert (await peer.request("register", **fields))["ok"]
    await peer.close()
    return aik


async def test_connections_waiting_to_authenticate_are_capped(
        nursery, tmp_path: Path, autojump_clock) -> None:
    store = SqliteRelayStore(tmp_path / "relay.db")
    relay = Relay(store, RelayConfig(max_unauthenticated_connections=4,
                                     max_unauthenticated_per_address=2))
    first = [await connect(nursery, relay, f"198.51.100.1:{port}") for port in (1, 2)]
    for peer in first:
        assert (await peer.read())[0]["type"] == "challenge"
    third = await connect(nursery, relay, "198.51.100.1:3")  # a third from the same address
    (refusal,) = await third.read()
    assert refusal["error"]["code"] == api.TOO_MANY_CONNECTIONS and third.closed
    others = [await connect(nursery, relay, f"198.51.100.{host}:1") for host in (2, 3)]
    for peer in others:
        assert (await peer.read())[0]["type"] == "challenge"
    fifth = await connect(nursery, relay, "198.51.100.4:1")  # four wait: the relay is full
    (refusal,) = await fifth.read()
    assert refusal["error"]["code"] == api.TOO_MANY_CONNECTIONS and fifth.closed
    await first[1].close()  # a connection that ends gives its place back...
    registering = await connect(nursery, relay, "198.51.100.4:2")
    nonce = (await registering.read())[0]["nonce"]
    fields, _ = _register_fields(nonce, "alice")
    assert (await registering.request("register", **fields))["ok"]  # ...and so does one
    again = await connect(nursery, relay, "198.51.100.1:4")  # that authenticates
    assert (await again.read())[0]["type"] == "challenge"
    assert relay.unauthenticated.held == 4  # first[0], others, again
    store.close()


async def test_frames_before_authentication_are_small(nursery, tmp_path: Path,
                                                      autojump_clock) -> None:
    store = SqliteRelayStore(tmp_path / "relay.db")
    relay = Relay(store)
    limit = relay.config.max_unauthenticated_frame_size
    assert limit == api.MAX_UNAUTHENTICATED_REQUEST_SIZE < relay.config.max_frame_size
    account = "a" * 64
    aik = await _registered(nursery, relay, account)
    largest = _link_offer(account, aik, api.MAX_ONE_TIME_PREKEYS_PER_REQUEST,
                          name="\U0001f600" * api.MAX_DEVICE_NAME_LENGTH)
    assert limit - 64 < len(encode_frame({"id": 2**64 - 1, "type": "link_request",
                                          **largest})) - 4 <= limit
    waiting = await connect(nursery, relay, "192.0.2.7:1")
    await waiting.read()
    answer = await waiting.request("link_request", **largest)  # the largest offer fits
    assert answer.get("ok"), answer
    peer = await connect(nursery, relay, "192.0.2.8:1")
    await peer.read()
    await peer.stream.send_all(_ping_of_size(limit))  # exactly the limit
    assert (await peer.read())[0].get("ok")
    await peer.stream.send_all(_ping_of_size(limit + 1))  # one byte more
    (refusal,) = await peer.read()
    assert refusal["error"]["code"] == api.FRAME_TOO_LARGE and peer.closed
    assert "before authentication" in refusal["error"]["message"]
    peer = await connect(nursery, relay, "192.0.2.8:2")  # once authenticated, frames are large
    fields, _ = _register_fields((await peer.read())[0]["nonce"], "bob")
    assert (await peer.request("register", **fields))["ok"]
    assert (await peer.request("ping", pad=bytes(100_000)))["ok"]
    store.close()


async def test_a_link_offers_prekeys_are_bounded_before_any_is_read(
        nursery, tmp_path: Path, autojump_clock) -> None:
    """link_request's one-time prekeys: more than MAX_ONE_TIME_PREKEYS_PER_REQUEST are refused
    for their number, before one is read (these are not even pairs: as many pairs would pass
    the frame's container limit)."""
    store = SqliteRelayStore(tmp_path / "relay.db")
    relay = Relay(store)
    aik = await _registered(nursery, relay, "alice")
    offer = _link_offer("alice", aik)
    too_many = api.MAX_ONE_TIME_PREKEYS_PER_REQUEST + 1
    peer = await connect(nursery, relay, "192.0.2.9:1")
    await peer.read()
    refused = await peer.request("link_request", **{
        **offer, "one_time_prekeys": list(range(too_many))})
    assert refused["error"]["code"] == api.BAD_REQUEST
    assert f"at most {api.MAX_ONE_TIME_PREKEYS_PER_REQUEST}" in refused["error"]["message"]
    assert await store.pending_link(offer["lookup"]) is None
    answer = await peer.request("link_request", **{**offer, "one_time_prekeys": [
        [i, X25519PrivateKey.generate().public_key.raw] for i in range(too_many - 1)]})
    assert answer.get("ok"), answer
    store.close()


async def test_a_whole_upload_chunk_passes_only_after_authentication(
        nursery, tmp_path: Path, autojump_clock) -> None:
    """A 1 MiB upload_chunk frame is refused before authentication, stored after."""
    store = SqliteRelayStore(tmp_path / "relay.db")
    relay = Relay(store)
    data = secrets.token_bytes(BLOB_CHUNK_SIZE)
    blob_id = hashlib.sha256(data).digest()
    chunk = {"blob_id": blob_id, "offset": 0, "data": data}
    assert BLOB_CHUNK_SIZE < len(encode_frame({"id": 2**64 - 1, "type": "upload_chunk",
                                               **chunk})) - 4 <= MAX_FRAME_SIZE
    early = await connect(nursery, relay, "192.0.2.9:1")
    await early.read()
    await early.stream.send_all(encode_frame({"id": 1, "type": "upload_chunk", **chunk}))
    (refusal,) = await early.read()
    assert refusal["error"]["code"] == api.FRAME_TOO_LARGE and early.closed
    peer = await connect(nursery, relay, "192.0.2.9:2")
    fields, _ = _register_fields((await peer.read())[0]["nonce"], "alice")
    assert (await peer.request("register", **fields))["ok"]
    assert (await peer.request("upload_begin", blob_id=blob_id, size=len(data)))["ok"]
    assert (await peer.request("upload_chunk", **chunk))["offset"] == len(data)
    assert (await peer.request("upload_finish", blob_id=blob_id))["size"] == len(data)
    store.close()


async def test_pending_link_offers_are_capped(nursery, tmp_path: Path, autojump_clock) -> None:
    store = SqliteRelayStore(tmp_path / "relay.db")
    relay = Relay(store, RelayConfig(max_pending_links=3, max_pending_links_per_account=2,
                                     max_pending_links_per_address=2))
    keys = {name: await _registered(nursery, relay, name) for name in ("alice", "bob", "carol")}

    async def offer(account: str, source: str) -> tuple[MemoryPeer, dict[str, Any]]:
        peer = await connect(nursery, relay, f"{source}:1")
        await peer.read()
        return peer, await peer.request("link_request", **_link_offer(account, keys[account]))

    a1, answer = await offer("alice", "192.0.2.1")
    assert answer.get("ok")
    assert (await offer("alice", "192.0.2.1"))[1].get("ok")
    _, refused = await offer("alice", "192.0.2.2")  # alice has two waiting
    assert refused["error"]["code"] == api.RATE_LIMITED and "this account" in str(refused)
    _, refused = await offer("bob", "192.0.2.1")  # the address has two waiting
    assert refused["error"]["code"] == api.RATE_LIMITED and "this address" in str(refused)
    assert (await offer("bob", "192.0.2.2"))[1].get("ok")
    _, refused = await offer("carol", "192.0.2.3")  # three wait at the relay
    assert refused["error"]["code"] == api.RATE_LIMITED and "relay" in str(refused)
    await a1.close()  # a waiting device that gives up frees its places
    carol, answer = await offer("carol", "192.0.2.3")
    assert answer.get("ok")
    assert len(relay.waiting_links) == 3
    store.close()


# -- one-time prekey draining and registrations (issue 11) ------------------------------------


async def test_one_account_cannot_drain_a_device(nursery, tmp_path: Path, mock_clock) -> None:
    relay, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path)
    config = relay.server.config
    async with session_of(alice) as a:
        for _ in range(config.bundle_burst_per_target):
            await a.connection.request("fetch_bundles", account="bob")
        with pytest.raises(ServerError) as caught:
            await a.connection.request("fetch_bundles", account="bob")
        assert caught.value.code == api.RATE_LIMITED
        wait = caught.value.details["retry_after"]
        assert wait == 3600 / config.bundles_per_target_per_hour
        assert f"try again in {wait} s" in str(caught.value) and "bob.0" in str(caught.value)
        mock_clock.jump(wait)
        await a.connection.request("fetch_bundles", account="bob")  # one more, an hour later
    assert (await relay.store.one_time_prekey_count("bob", 0)) == 100 - 11


async def test_many_accounts_take_at_most_a_devices_one_time_prekey_budget(
        nursery, tmp_path: Path, mock_clock) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path)
    budget = relay.server.config.one_time_prekey_burst
    with_opk = 0
    for index in range(5):
        mallory = make_client(tmp_path / f"mallory{index}", relay.port)
        await register(mallory, f"mallory{index}")
        async with session_of(mallory) as m:
            for _ in range(10):
                (bundle,) = (await m.connection.request("fetch_bundles", account="bob"))["bundles"]
                with_opk += bundle[5] is not None
    assert with_opk == budget  # 50 bundles, of which only the budget carried one-time prekeys
    assert (await relay.store.one_time_prekey_count("bob", 0)) == 100 - budget
    async with session_of(alice) as a:  # nobody is refused a session: it runs without an OPK
        await a.send_text("bob", "hello without a one-time prekey")
    assert [m.text for m in await drain(bob)] == ["hello without a one-time prekey"]
    mock_clock.jump(3600)  # the budget refills over an hour
    async with session_of(alice) as a:
        (bundle,) = (await a.connection.request("fetch_bundles", account="bob"))["bundles"]
        assert bundle[5] is not None


def _one_time_prekeys(first_id: int, count: int) -> list[list[Any]]:
    """``count`` one-time prekeys (public keys only: the relay stores them as given)."""
    return [[first_id + i, X25519PrivateKey.generate().public_key.raw] for i in range(count)]


async def test_publishes_from_two_connections_of_a_device_never_pass_the_prekey_cap(
        nursery, tmp_path: Path, relay_db) -> None:
    """Two connections of bob's device each publish a batch that fits under the cap alone, the
    first one's write held until the second's is done: the cap is checked in the write, so the
    first is refused as one over the cap alone is, and the device holds the cap, not more."""
    relay = await start_relay(nursery, relay_db)
    bob = make_client(tmp_path / "bob", relay.port)
    await register(bob, "bob")
    cap, batch = relay.server.config.max_one_time_prekeys, api.MAX_ONE_TIME_PREKEYS_PER_REQUEST
    store = relay.store
    async with session_of(bob) as b:
        held = await store.one_time_prekey_count("bob", 0)
        next_id = 10_000
        while held < cap - batch:  # fill up to one batch below the cap
            count = min(batch, cap - batch - held)
            held = (await b.connection.request("publish_prekeys", one_time_prekeys=(
                _one_time_prekeys(next_id, count))))["one_time_prekeys"]
            next_id += count
    assert held == cap - batch
    store_prekeys = store.store_prekeys
    first_waits, second_written = trio.Event(), trio.Event()
    writes: list[str] = []

    async def second_first(*args: Any, **kwargs: Any) -> int:
        writes.append("first" if not writes else "second")
        if writes[-1] == "first":
            first_waits.set()
            await second_written.wait()
            return await store_prekeys(*args, **kwargs)
        try:
            return await store_prekeys(*args, **kwargs)
        finally:
            second_written.set()

    answers: dict[str, dict[str, Any] | ServerError] = {}

    async def publish(session: Any, name: str, first_id: int) -> None:
        try:
            answers[name] = await session.connection.request(
                "publish_prekeys", one_time_prekeys=_one_time_prekeys(first_id, batch))
        except ServerError as exc:
            answers[name] = exc

    async with session_of(bob) as one, session_of(bob) as two, trio.open_nursery() as both:
        store.store_prekeys = second_first  # type: ignore[method-assign]
        both.start_soon(publish, one, "first", 20_000)
        await first_waits.wait()
        both.start_soon(publish, two, "second", 30_000)
    assert answers["second"] == {"id": answers["second"]["id"], "ok": True,  # type: ignore[index]
                                 "one_time_prekeys": cap}
    refused = answers["first"]
    assert isinstance(refused, ServerError) and refused.code == api.BAD_REQUEST
    assert str(refused).endswith(f"a device may hold at most {cap} one-time prekeys "
                                 f"(it holds {cap})")
    assert await store.one_time_prekey_count("bob", 0) == cap


async def test_registrations_per_source_address(nursery, tmp_path: Path, autojump_clock) -> None:
    store = SqliteRelayStore(tmp_path / "relay.db")
    relay = Relay(store)
    config = relay.config

    async def register_from(source: str, account: str) -> dict[str, Any]:
        peer = await connect(nursery, relay, f"{source}:1")
        fields, _ = _register_fields((await peer.read())[0]["nonce"], account)
        answer = await peer.request("register", **fields)
        await peer.close()
        return answer

    for index in range(config.registration_burst):
        assert (await register_from("203.0.113.1", f"user{index}"))["ok"]
        if index == 0:
            taken = await register_from("203.0.113.1", "user0")  # a taken name costs nothing
            assert taken["error"]["code"] == api.NAME_TAKEN
    refused = (await register_from("203.0.113.1", "one-more"))["error"]
    assert refused["code"] == api.RATE_LIMITED
    assert 0 < refused["retry_after"] <= 3600 / config.registrations_per_hour  # one token
    assert "from this address" in refused["message"]
    assert (await register_from("2001:db8::1", "elsewhere"))["ok"]  # another address
    assert (await register_from("2001:db8::2", "same-64"))["ok"]  # same /64: counted together
    autojump_clock.jump(refused["retry_after"])
    assert (await register_from("203.0.113.1", "one-more"))["ok"]
    store.close()


async def test_the_registration_limit_is_an_option_of_serve(tmp_path: Path) -> None:
    port = free_port()
    relay = RelayProcess(tmp_path / "relay.db", port, ["--registrations-per-hour", "1"])
    try:
        await register(make_client(tmp_path / "alice", port), "alice")
        with pytest.raises(ClientError, match="rate_limited|from this address"):
            await register(make_client(tmp_path / "bob", port), "bob")
    finally:
        relay.kill()


def test_serve_options_set_the_relay_limits() -> None:
    """``e2e-relay serve --max-groups`` (and the mailbox quota) reach the relay's config; left
    out, each is RelayConfig's default."""
    parser = build_parser()
    assert relay_config(parser.parse_args(["serve"])) == RelayConfig()
    config = relay_config(parser.parse_args(["serve", "--max-groups", "7", "--quota", "5"]))
    assert (config.max_groups_per_account, config.mailbox_quota) == (7, 5)
