"""The relay's group requests refuse bad input with typed codes and store nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from client.core.connection import ServerError
from client.private.session import PrivateSession
from e2e_proto import relay_api as api
from e2e_proto.address import Address
from e2e_proto.groups import GroupState, GroupUpdate, member_devices_digest
from e2e_proto.keys import IdentityKeyPair
from e2e_proto.payload import Payload
from e2e_proto.sender_keys import OwnSenderKey
from e2e_proto.wire import encode_group_message
from server.relay.config import RelayConfig
from server.relay.store import Enqueue, Outgoing
from tests.relay_harness import make_client, register, session_of, start_relay


async def _refused(session: PrivateSession, kind: str, **fields: Any) -> ServerError:
    with pytest.raises(ServerError) as caught:
        await session.connection.request(kind, **fields)
    return caught.value


async def test_group_requests_refuse_bad_input(nursery, tmp_path: Path, relay_db) -> None:
    relay = await start_relay(nursery, relay_db)
    clients = {n: make_client(tmp_path / n, relay.port) for n in ("alice", "bob", "carol")}
    for name, client in clients.items():
        await register(client, name)
    alice_dik = clients["alice"].state.protocol.identity_key_pair()
    bob_dik = clients["bob"].state.protocol.identity_key_pair()
    state = GroupState.create("g", "alice", ["bob"])
    routing = GroupUpdate.sign(state, Address("alice", 0), alice_dik, routing=True)
    async with session_of(clients["alice"]) as a, session_of(clients["bob"]) as b:
        # group_put: signature, author, malformed, unknown member, then the real one.
        wrong_key = GroupUpdate.sign(state, Address("alice", 0), IdentityKeyPair.generate(),
                                     routing=True)
        for fields, code in (
                ({"routing": routing.body, "signature": wrong_key.signature}, api.BAD_REQUEST),
                ({"routing": b"\x93\x01", "signature": bytes(64)}, api.BAD_REQUEST),
                ({"routing": routing.body}, api.BAD_REQUEST)):
            assert (await _refused(a, "group_put", **fields)).code == code
        assert (await _refused(b, "group_put", routing=routing.body,
                               signature=routing.signature)).code == api.BAD_REQUEST
        ghost = GroupUpdate.sign(GroupState.create("g", "alice", ["nobody"]),
                                 Address("alice", 0), alice_dik, routing=True)
        assert (await _refused(a, "group_put", routing=ghost.body,
                               signature=ghost.signature)).code == api.UNKNOWN_ACCOUNT
        assert (await relay.store.group(state.group_id)) is None
        await a.connection.request("group_put", routing=routing.body,
                                   signature=routing.signature)
        stale = await _refused(a, "group_put", routing=routing.body,
                               signature=routing.signature)
        assert stale.code == api.STALE_GROUP and stale.details["version"] == 1
        # bob is a member, not an admin: he may leave, not add.
        grow = GroupUpdate.sign(state.with_members(["carol"]), Address("bob", 0), bob_dik,
                                routing=True)
        assert (await _refused(b, "group_put", routing=grow.body,
                               signature=grow.signature)).code == api.NOT_GROUP_ADMIN
        assert (await relay.store.group(state.group_id)).version == 1

        # group_send: unknown group, version, digest, header, garbage.
        key = OwnSenderKey.create(state.group_id)
        other = OwnSenderKey.create(b"\x09" * 16)
        good = encode_group_message(key.encrypt(Payload.new("text", 1, text="x").encode()))
        devices = {"alice": [0], "bob": [0]}
        base = {"group_id": state.group_id, "version": 1,
                "devices_digest": member_devices_digest(devices), "message": good}
        for changes, code in (
                ({"group_id": b"\x08" * 16}, api.UNKNOWN_GROUP),
                ({"group_id": b"\x08" * 15}, api.BAD_REQUEST),
                ({"version": 2}, api.STALE_GROUP),
                ({"message": b"garbage"}, api.BAD_REQUEST),
                ({"message": encode_group_message(other.encrypt(b"y" * 16))}, api.BAD_REQUEST),
                ({"devices_digest": member_devices_digest({"alice": [0]})},
                 api.DEVICE_MISMATCH)):
            error = await _refused(a, "group_send", **{**base, **changes})
            assert error.code == code
        mismatch = await _refused(a, "group_send", **{**base, "devices_digest": bytes(32)})
        assert mismatch.details["devices"] == [["alice", [0]], ["bob", [0]]]
        assert (await relay.store.pending("bob", 0, 0, 10)) == []
        assert (await a.connection.request("group_send", **base))["devices"] == 1
        assert len(await relay.store.pending("bob", 0, 0, 10)) == 1

        # group_deliver: only devices of members (and one's own), each once, bounded.
        cipher = a.cipher
        await a._ensure_sessions([Address("carol", 0), Address("bob", 0)])
        to_carol = cipher.encrypt(Address("carol", 0), b"p" * 16).encode()
        to_bob = cipher.encrypt(Address("bob", 0), b"p" * 16).encode()
        refused = await _refused(a, "group_deliver", group_id=state.group_id,
                                 envelopes=[to_carol])
        assert refused.code == api.DEVICE_MISMATCH and refused.details["stale"] == [["carol", 0]]
        assert (await _refused(a, "group_deliver", group_id=state.group_id,
                               envelopes=[to_bob, to_bob])).code == api.BAD_REQUEST
        assert (await _refused(a, "group_deliver", group_id=state.group_id,
                               envelopes=[b"x"] * 20)).code == api.BAD_REQUEST
        assert (await relay.store.pending("carol", 0, 0, 10)) == []


async def test_a_full_mailbox_is_left_out_named_not_woken_and_granted_nothing(
        nursery, tmp_path: Path, relay_db) -> None:
    """group_send and group_deliver leave out a device whose mailbox is full: the answer names
    it in ``skipped`` and counts only the others, only they are woken, and only they may
    download the blob the message announces."""
    relay = await start_relay(nursery, relay_db, RelayConfig(mailbox_quota=2),
                              blob_dir=tmp_path / "blobs")
    clients = {n: make_client(tmp_path / n, relay.port) for n in ("alice", "bob", "carol")}
    for name, client in clients.items():
        await register(client, name)
    state = GroupState.create("g", "alice", ["bob", "carol"])
    routing = GroupUpdate.sign(state, Address("alice", 0),
                               clients["alice"].state.protocol.identity_key_pair(), routing=True)
    await relay.store.enqueue(Enqueue([Outgoing("bob", 0, b"one"), Outgoing("bob", 0, b"two")],
                                      ("carol", 0), 0.0, 10, 10**6))  # bob's mailbox: full
    woken: list[Address] = []
    relay.server.mail_stored = lambda mail: woken.extend(a for a, _ in mail)  # type: ignore
    data = b"a file" * 100
    blob_id = hashlib.sha256(data).digest()
    async with session_of(clients["alice"]) as a:
        await a.connection.request("group_put", routing=routing.body,
                                   signature=routing.signature)
        await a.connection.request("upload_begin", blob_id=blob_id, size=len(data))
        await a.connection.request("upload_chunk", blob_id=blob_id, offset=0, data=data)
        await a.connection.request("upload_finish", blob_id=blob_id)
        message = OwnSenderKey.create(state.group_id).encrypt(b"x" * 16)
        answer = await a.connection.request(
            "group_send", group_id=state.group_id, version=1, message=encode_group_message(
                message), devices_digest=member_devices_digest(
                {"alice": [0], "bob": [0], "carol": [0]}), blobs=[blob_id])
        assert (answer["devices"], answer["skipped"]) == (1, [["bob", 0]])
        assert woken == [Address("carol", 0)]
        assert [await relay.store.blobs.may_download(blob_id, name, 0)
                for name in ("bob", "carol")] == [False, True]
        await a._ensure_sessions([Address("bob", 0), Address("carol", 0)])
        woken.clear()
        answer = await a.connection.request("group_deliver", group_id=state.group_id, envelopes=[
            a.cipher.encrypt(Address(name, 0), b"p" * 16).encode() for name in ("bob", "carol")])
        assert (answer["stored"], answer["skipped"]) == (1, [["bob", 0]])
        assert woken == [Address("carol", 0)]
    assert [d.envelope for d in await relay.store.pending("bob", 0, 0, 10)] == [b"one", b"two"]
    assert len(await relay.store.pending("carol", 0, 0, 10)) == 2


async def test_an_account_creates_at_most_max_groups_per_account(
        nursery, tmp_path: Path, relay_db) -> None:
    """Past its limit a new group is refused ``quota_exceeded`` (with the ``limit``) and not
    stored; an update of its groups is not refused; a group whose last member left is deleted
    and no longer counts, so its creator may make another."""
    relay = await start_relay(nursery, relay_db, RelayConfig(max_groups_per_account=2))
    clients = {n: make_client(tmp_path / n, relay.port) for n in ("alice", "bob")}
    for name, client in clients.items():
        await register(client, name)
    dik = {n: c.state.protocol.identity_key_pair() for n, c in clients.items()}

    async def put(session: PrivateSession, state: GroupState) -> dict[str, Any]:
        account = session.address.account
        routing = GroupUpdate.sign(state, Address(account, 0), dik[account], routing=True)
        return await session.connection.request("group_put", routing=routing.body,
                                                signature=routing.signature)

    mine, ours, third = (GroupState.create("g", "alice", members) for members in
                         ([], ["bob"], ["bob"]))
    async with session_of(clients["alice"]) as a, session_of(clients["bob"]) as b:
        await put(a, mine)
        await put(a, ours)
        routing = GroupUpdate.sign(third, Address("alice", 0), dik["alice"], routing=True)
        refused = await _refused(a, "group_put", routing=routing.body,
                                 signature=routing.signature)
        assert refused.code == api.QUOTA_EXCEEDED and refused.details["limit"] == 2
        assert await relay.store.group(third.group_id) is None
        assert (await put(a, mine.renamed("h")))["version"] == 2  # an update is not refused
        alice_left = ours.without_member("alice")  # bob remains, and becomes admin
        await put(a, alice_left)
        assert (await _refused(a, "group_put", routing=routing.body,
                               signature=routing.signature)).code == api.QUOTA_EXCEEDED
        assert (await put(b, alice_left.without_member("bob")))["version"] == 3
        assert await relay.store.group(ours.group_id) is None  # its last member left
        unknown = await _refused(b, "group_send", group_id=ours.group_id, version=3,
                                 devices_digest=bytes(32), message=b"x")
        assert unknown.code == api.UNKNOWN_GROUP
        assert (await put(a, third))["version"] == 1  # alice's place is free again
