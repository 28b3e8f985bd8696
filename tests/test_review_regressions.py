"""Regression tests for the defects a final review found (each failed before its fix)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio
import trio.testing

from client.core.errors import ClientError
from client.private.state import ClientState
from client.social.state import SocialState
from e2e_proto.address import Address
from e2e_proto.at_rest import MINIMUM, AtRestKey, WrongPassphraseError
from e2e_proto.devices import DeviceList
from e2e_proto.errors import LocalProtocolError
from e2e_proto.keys import IdentityKeyPair
from server.relay.connection import RelayConnection
from server.relay.group_commit import GroupCommit
from server.relay.hub import DISPLACED, PUSH, UNLINKED, DeviceEvent
from server.relay.server import Relay
from server.relay.sqlite_store import SqliteRelayStore
from server.relay.store import Acknowledge, DeviceGoneError, Enqueue, Outgoing
from server.social.sqlite_store import SqliteSocialStore
from server.social.store import ClientIdReusedError
from tests.relay_harness import (
    link,
    make_client,
    relay_with_alice_and_bob,
    session_of,
)


def _serve_list(relay, account: str, aik: IdentityKeyPair, device_list: DeviceList,
                links: dict[int, bytes] | None = None) -> None:
    """Make the relay hand out ``device_list`` signed by ``aik``, as a hostile relay could,
    with the link signatures ``links`` (ones it saw earlier, say)."""
    signed = device_list.sign(aik)
    relay.store._db.execute(
        "UPDATE accounts SET account_key = ?, list_version = ?, list_body = ?, "
        "list_signature = ? WHERE account = ?",
        (aik.public_key.raw, device_list.version, signed.body, signed.signature, account))
    for device_id, signature in (links or {}).items():
        relay.store._db.execute(
            "INSERT OR REPLACE INTO devices (account, device, identity_key, link_signature) "
            "VALUES (?, ?, ?, ?)",
            (account, device_id, device_list.identity_of(device_id).raw, signature))
    relay.store._accounts.pop(account, None)


async def test_no_device_list_rollback_across_a_key_change(nursery, tmp_path: Path) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path)
    laptop = make_client(tmp_path / "laptop", relay.port)
    await link(bob, laptop, "bob")
    laptop_link = (await relay.store.link_signatures("bob"))[1]  # kept after the unlink
    async with session_of(bob) as b:
        await b.unlink(1)  # bob's list is now version 3, without device 1
    async with session_of(alice) as a:
        current = await a.device_list("bob", refresh=True)
    assert current.version == 3
    aik = bob.state.account_identity()
    dik0 = bob.state.protocol.identity_key_pair().public_key
    dik1 = laptop.state.protocol.identity_key_pair().public_key
    _serve_list(relay, "bob", IdentityKeyPair.generate(),
                DeviceList("bob", 1, ((0, dik0),)))  # a key change
    async with session_of(alice) as a:
        await a.device_list("bob", refresh=True)
        _serve_list(relay, "bob", aik, DeviceList("bob", 2, ((0, dik0), (1, dik1))),
                    {1: laptop_link})
        with pytest.raises(ClientError, match="older than version 3"):
            await a.device_list("bob", refresh=True)


def test_old_social_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "social.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, conversation "
               "INTEGER NOT NULL, sender TEXT NOT NULL, device INTEGER NOT NULL, ts INTEGER "
               "NOT NULL, text TEXT, secret INTEGER NOT NULL)")
    db.commit()
    db.close()
    store = SqliteSocialStore(path)
    columns = {row[1] for row in store._db.execute("PRAGMA table_info(messages)")}
    store.close()
    assert "client_id" in columns


def test_sealing_refuses_a_home_with_plaintext_client_data(tmp_path: Path) -> None:
    state = SocialState(tmp_path / "home")
    state.set("token", b"a plaintext bearer token")
    state.close()
    with pytest.raises(LocalProtocolError, match="without a passphrase"):
        SocialState(tmp_path / "home", "late passphrase", MINIMUM)
    key = AtRestKey.derive("p", bytes(16), MINIMUM)
    with pytest.raises(WrongPassphraseError):
        key.open(b"short", b"token")


async def test_group_commit_failure_reaches_every_member() -> None:
    async def broken(writes: object) -> list[Exception | None]:
        raise RuntimeError("the disk caught fire")

    commit: GroupCommit[Acknowledge, None] = GroupCommit(broken)
    failures: list[str] = []

    async def one(seq: int) -> None:
        try:
            await commit.run(Acknowledge("a", 0, [seq]))
        except RuntimeError as exc:
            failures.append(str(exc))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for seq in range(1, 4):
                nursery.start_soon(one, seq)
    assert failures == ["the disk caught fire"] * 3


def test_contact_cache_forgets_a_rolled_back_write(tmp_path: Path) -> None:
    state = ClientState(tmp_path / "home")
    aik, dik = IdentityKeyPair.generate(), IdentityKeyPair.generate()
    signed = DeviceList("bob", 1, ((0, dik.public_key),)).sign(aik)
    with pytest.raises(RuntimeError), state.transaction():
        state.save_contact("bob", aik.public_key, signed, key_changed=False)
        raise RuntimeError("the commit failed")
    assert state.contact("bob") is None
    state.close()


def test_device_list_keys_are_distinct() -> None:
    key = IdentityKeyPair.generate().public_key
    with pytest.raises(LocalProtocolError, match="share an identity key"):
        DeviceList("bob", 2, ((0, key), (1, key)))


def test_client_id_is_per_sender_and_conversation(tmp_path: Path) -> None:
    store = SqliteSocialStore(tmp_path / "social.db")
    first = store.add_message(1, "alice", 0, 1, "to bob", (), b"k" * 16)
    assert store.add_message(1, "alice", 0, 2, "to bob", (), b"k" * 16) == first
    with pytest.raises(ClientIdReusedError):
        store.add_message(2, "alice", 0, 3, "to carol", (), b"k" * 16)
    assert store.add_message(2, "bob", 0, 3, "bob's own key space", (), b"k" * 16) != first
    store.close()


async def test_send_to_a_device_unlinked_meanwhile_is_not_stored(tmp_path: Path) -> None:
    """The fan-out check and the commit are apart (group commit): the commit checks again."""
    store = SqliteRelayStore(tmp_path / "relay.db")
    await store.create_account("bob", bytes(32), 1, b"list", bytes(64), {0: bytes(32)}, 0.0)
    gone = Enqueue([Outgoing("bob", 0, b"x"), Outgoing("bob", 5, b"y")], ("alice", 0), 1.0, 10,
                   1000)
    fine = Enqueue([Outgoing("bob", 0, b"z")], ("alice", 0), 1.0, 10, 1000)
    errors = store.write_mailboxes([gone, fine])
    assert isinstance(errors[0], DeviceGoneError) and errors[1] is None
    assert [d.envelope for d in await store.pending("bob", 0, 0, 10)] == [b"z"]
    store.close()


async def test_events_for_a_connection_that_is_ending_are_dropped(tmp_path: Path) -> None:
    relay = Relay(SqliteRelayStore(tmp_path / "relay.db"), blob_dir=tmp_path / "blobs")
    ours, _theirs = trio.testing.memory_stream_pair()
    connection = RelayConnection(relay, ours, "peer")
    bob = Address("bob", 1)
    connection.address, connection.claim = bob, 1
    relay.attach(bob, connection)
    relay.hear(bob, DeviceEvent(DISPLACED, 2))  # a newer claim: its outbox closes; still attached
    relay.hear(bob, DeviceEvent(PUSH, {"type": "prekeys_low", "count": 1}))  # raised before
    relay.hear(bob, DeviceEvent(UNLINKED))
    relay.push_to_accounts(["bob"], {"type": "call_ended", "call_id": bytes(16)})
