"""Multi-device: linking, the four-device limit at both layers, fan-out, self-sync, unlink."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from client.core.connection import ServerError
from client.core.errors import ClientError
from client.private.linking import parse_link_code
from client.private.session import PrivateClient
from client.private.state import ClientState
from e2e_proto import relay_api as api
from e2e_proto.address import Address
from e2e_proto.devices import DeviceList, link_message
from e2e_proto.errors import InvalidSignatureError, MalformedError
from e2e_proto.keys import IdentityKeyPair
from e2e_proto.wire import Envelope
from server.relay.sqlite_store import SqliteRelayStore
from tests.relay_harness import (
    drain,
    link,
    make_client,
    register,
    register_under_a_new_key,
    session_of,
    start_relay,
)


async def _accounts(nursery, tmp_path: Path, db: Path | str | None = None,
                    alice_linked: int = 4, bob_linked: int = 1):
    """alice and bob with linked devices on a relay on ``db`` (default: an SQLite file, which
    some tests edit behind the relay's back)."""
    relay = await start_relay(nursery, db or tmp_path / "relay.db")
    alice = [make_client(tmp_path / "alice0", relay.port)]
    bob = [make_client(tmp_path / "bob0", relay.port)]
    await register(alice[0], "alice")
    await register(bob[0], "bob")
    for i in range(1, alice_linked + 1):
        alice.append(make_client(tmp_path / f"alice{i}", relay.port))
        assert await link(alice[0], alice[-1], "alice", f"alice-{i}") == i
    for i in range(1, bob_linked + 1):
        bob.append(make_client(tmp_path / f"bob{i}", relay.port))
        assert await link(bob[0], bob[-1], "bob") == i
    return relay, alice, bob


async def _texts(client: PrivateClient) -> list[str]:
    return [m.text for m in await drain(client) if m.warning is None]


async def test_fan_out_reaches_every_device_exactly_once(nursery, tmp_path: Path, relay_db) -> None:
    relay, alice, bob = await _accounts(nursery, tmp_path, relay_db)
    async with session_of(bob[1]) as b1:
        await b1.send_text("alice", "from bob's second device")
    async with session_of(bob[0]) as b0:
        await b0.send_text("alice", "from bob's primary")
    for device in alice:  # all five of alice's devices, each exactly once, in order
        assert await _texts(device) == ["from bob's second device", "from bob's primary"]
    assert await _texts(bob[0]) == ["[device sync]"] * 0 + ["from bob's second device"]
    synced = await drain(bob[1])
    assert [(m.text, m.outgoing, m.peer) for m in synced] == [("from bob's primary", True, "alice")]
    for device in [*alice, *bob]:
        assert await drain(device) == []
    # A relay restart changes none of it.
    await relay.stop()
    relay = await start_relay(nursery, relay_db, port=relay.port)
    async with session_of(alice[3]) as a3:
        await a3.send_text("bob", "after restart")
    assert await _texts(bob[0]) == ["after restart"] and await _texts(bob[1]) == ["after restart"]
    for index, device in enumerate(alice):
        expected = [] if index == 3 else ["after restart"]
        assert await _texts(device) == expected


async def test_linked_device_gets_contacts_by_device_sync(nursery, tmp_path: Path,
                                                          relay_db) -> None:
    relay, alice, _ = await _accounts(nursery, tmp_path, relay_db, alice_linked=0, bob_linked=0)
    async with session_of(alice[0]) as a0:
        await a0.send_text("bob", "make bob a contact")
    laptop = make_client(tmp_path / "laptop", relay.port)
    await link(alice[0], laptop, "alice")
    await drain(laptop)  # receives the device sync
    assert laptop.state.contact("bob") is not None
    assert laptop.state.contact("bob")[0] == alice[0].state.contact("bob")[0]


async def test_fifth_linked_device_refused_by_client(nursery, tmp_path: Path, relay_db) -> None:
    relay, alice, _ = await _accounts(nursery, tmp_path, relay_db, alice_linked=4, bob_linked=0)
    fifth = make_client(tmp_path / "alice5", relay.port)
    with pytest.raises(ClientError, match="4 linked devices"):
        await link(alice[0], fifth, "alice")
    assert [d.device_id for d in await relay.store.device_info("alice")] == [0, 1, 2, 3, 4]


async def test_fifth_linked_device_refused_by_relay(nursery, tmp_path: Path, relay_db) -> None:
    """A client that skips its own check still cannot list six devices."""
    relay, alice, _ = await _accounts(nursery, tmp_path, relay_db, alice_linked=4, bob_linked=0)
    aik = alice[0].state.account_identity()
    record = await relay.store.account("alice")
    async with session_of(alice[0]) as a0:
        current = await a0.device_list("alice", refresh=True)
        extra = IdentityKeyPair.generate().public_key
        # Build the six-device list by hand: DeviceList itself would refuse it.
        too_many = object.__new__(DeviceList)
        object.__setattr__(too_many, "account", "alice")
        object.__setattr__(too_many, "version", current.version + 1)
        object.__setattr__(too_many, "devices", (*current.devices, (5, extra)))
        body = too_many.body()
        with pytest.raises(ServerError) as caught:
            await a0.connection.request("update_devices", device_list=body,
                                        device_list_signature=aik.sign(
                                            too_many.signed_bytes()), link=None)
        assert caught.value.code == api.TOO_MANY_DEVICES
    assert (await relay.store.account("alice")) == record


async def test_device_list_rules_at_the_relay(nursery, tmp_path: Path, relay_db) -> None:
    relay, alice, _ = await _accounts(nursery, tmp_path, relay_db, alice_linked=1, bob_linked=0)
    aik = alice[0].state.account_identity()
    mallory = IdentityKeyPair.generate()
    async with session_of(alice[0]) as a0:
        current = await a0.device_list("alice", refresh=True)
        cases = [
            (DeviceList("alice", current.version, current.devices).sign(aik),
             api.STALE_DEVICE_LIST),
            (DeviceList("alice", current.version + 1, current.devices).sign(mallory),
             api.BAD_REQUEST),
            (DeviceList("alice", current.version + 1,
                        (*current.devices, (2, mallory.public_key))).sign(aik),
             api.UNKNOWN_LINK),
        ]
        for signed, code in cases:
            with pytest.raises(ServerError) as caught:
                await a0.connection.request("update_devices", device_list=signed.body,
                                            device_list_signature=signed.signature)
            assert caught.value.code == code


async def test_linked_device_cannot_approve_or_unlink(nursery, tmp_path: Path, relay_db) -> None:
    relay, alice, _ = await _accounts(nursery, tmp_path, relay_db, alice_linked=1, bob_linked=0)
    async with session_of(alice[1]) as a1:
        with pytest.raises(ClientError, match="only the primary"):
            await a1.unlink(1)
        with pytest.raises(ClientError, match="only the primary"):
            await a1.approve("AAAA-BBBB-CCCC-DDDD")


def test_link_code_typos() -> None:
    for code in ("", "AAAA", "AAAA-BBBB-CCCC-DDD1", "not a code at all!!"):
        with pytest.raises(ClientError):
            parse_link_code(code)


async def test_unlinked_device_receives_nothing_new(nursery, tmp_path: Path, relay_db) -> None:
    relay, alice, bob = await _accounts(nursery, tmp_path, relay_db, alice_linked=2, bob_linked=0)
    async with session_of(bob[0]) as b0:
        await b0.send_text("alice", "before")
    async with session_of(alice[0]) as a0:
        await a0.unlink(2)
    # bob still has a session with alice.2: the relay's mismatch makes him drop it and resend.
    async with session_of(bob[0]) as b0:
        await b0.send_text("alice", "after")
        assert bob[0].state.protocol.session_devices("alice") == [0, 1]
    assert await _texts(alice[0]) == ["before", "after"]
    assert await _texts(alice[1]) == ["before", "after"]
    assert (await relay.store.pending("alice", 2, 0, 10)) == []
    with pytest.raises(ClientError, match="no device 2"):
        await drain(alice[2])
    # ids are never reused: the next link gets id 3
    newcomer = make_client(tmp_path / "alice-new", relay.port)
    assert await link(alice[0], newcomer, "alice") == 3


async def test_wrong_link_code_is_refused(nursery, tmp_path: Path, relay_db) -> None:
    relay, alice, _ = await _accounts(nursery, tmp_path, relay_db, alice_linked=0, bob_linked=0)
    new = make_client(tmp_path / "new", relay.port)
    async with new.connect() as waiting:
        await waiting.request_link("alice", "x")
        async with session_of(alice[0]) as a0:
            with pytest.raises(ClientError, match="no device is waiting"):
                await a0.approve("AAAA-BBBB-CCCC-DDDD")
    assert [d.device_id for d in await relay.store.device_info("alice")] == [0]


async def test_account_key_change_is_a_warning(nursery, tmp_path: Path) -> None:
    relay, alice, bob = await _accounts(nursery, tmp_path, tmp_path / "relay.db",
                                        alice_linked=0, bob_linked=0)
    async with session_of(alice[0]) as a0:
        await a0.send_text("bob", "hi")
    new_bob = await register_under_a_new_key(relay, "bob", tmp_path / "bob-new")
    async with session_of(new_bob) as nb:
        await nb.send_text("alice", "new phone, new keys")
    got = await drain(alice[0])
    assert any(m.warning and "account key of 'bob' changed" in m.warning for m in got)
    assert [m.text for m in got if m.warning is None] == []  # held until accepted
    # Nothing is encrypted to the new key until alice accepts it (a relay could swap keys).
    async with session_of(alice[0]) as a0:
        with pytest.raises(ClientError, match="verify bob"):
            await a0.send_text("bob", "are you really bob?")
    assert (await relay.store.pending("bob", 0, 0, 10)) == []
    assert alice[0].state.accept_key("bob") == 1
    assert await _texts(alice[0]) == ["new phone, new keys"]
    async with session_of(alice[0]) as a0:
        await a0.send_text("bob", "checked the safety number")
    assert [m.text for m in await drain(new_bob)] == ["checked the safety number"]


async def test_every_message_under_an_unaccepted_key_change_is_held(
        nursery, tmp_path: Path) -> None:
    """Not only the first: each later message from the swapped key is held as well, until
    'verify --accept'; then they are all shown, in order."""
    relay, alice, _ = await _accounts(nursery, tmp_path, alice_linked=0, bob_linked=0)
    async with session_of(alice[0]) as a0:
        await a0.send_text("bob", "hi")
    injected = await register_under_a_new_key(relay, "bob", tmp_path / "bob-new")
    for text in ("first injected", "second injected"):
        async with session_of(injected) as nb:
            await nb.send_text("alice", text)
        got = await drain(alice[0])
        assert [m.text for m in got if m.warning is None] == []
        assert any("held" in (m.warning or "") for m in got)
    reminder = await drain(alice[0])  # nothing new: held messages are recalled, not shown
    assert [m.text for m in reminder if m.warning is None] == []
    assert any("2 messages from 'bob' are held" in (m.warning or "") for m in reminder)
    assert alice[0].state.accept_key("bob") == 2
    assert await _texts(alice[0]) == ["first injected", "second injected"]
    assert await drain(alice[0]) == []


async def test_link_interrupted_before_the_proof_resumes(nursery, tmp_path: Path,
                                                         relay_db) -> None:
    """Approved, then the connection drops before the primary's proof: link again resumes."""
    relay, alice, _ = await _accounts(nursery, tmp_path, relay_db, alice_linked=0, bob_linked=0)
    laptop = make_client(tmp_path / "laptop", relay.port)
    async with laptop.connect() as waiting:
        code = await waiting.request_link("alice", "laptop")
        async with session_of(alice[0]) as a0:
            assert await a0.approve(code) == 1
        frame = await waiting.connection.pushes.receive()
        assert frame == {"type": "link_approved", "device_id": 1}
        laptop.state.set_pending_link("alice", alice[0].state.account_identity().public_key,
                                      waiting._link_secret, 1)  # what wait_for_link records
    assert laptop.state.account is None  # not a device of the account yet
    async with laptop.connect() as again:
        assert await again.resume_link() == 1
    assert (laptop.state.account, laptop.state.device_id) == ("alice", 1)
    assert laptop.state.pending_link() is None
    async with session_of(alice[0]) as a0:
        await a0.send_text("alice", "note to my other devices")
    assert await _texts(laptop) == ["note to my other devices"]


def _serve_forged_list(relay, account: str, aik: IdentityKeyPair,
                       devices: tuple[tuple[int, object], ...], links: dict[int, bytes]) -> None:
    """What a hostile relay can hand out for ``account``: any list ``aik`` signs, with any
    link signatures it has seen (here stored as the relay keeps them)."""
    signed = DeviceList(account, 2, devices).sign(aik)
    relay.store._db.execute("UPDATE accounts SET list_version = 2, list_body = ?, "
                            "list_signature = ? WHERE account = ?",
                            (signed.body, signed.signature, account))
    for device_id, key in devices:
        relay.store._db.execute(
            "INSERT OR REPLACE INTO devices (account, device, identity_key, link_signature) "
            "VALUES (?, ?, ?, ?)", (account, device_id, key.raw, links.get(device_id)))
    relay.store._accounts.pop(account, None)


def _relabel_mail(relay, to: str, sender: Address, as_sender: Address) -> int:
    """Rewrite the envelopes ``sender`` sent to ``to`` as if ``as_sender`` had sent them (the
    addresses are the relay's routing data, outside the AEAD)."""
    rows = relay.store._db.execute(
        "SELECT seq, envelope FROM mailbox WHERE account = ? AND sender = ? AND "
        "sender_device = ?", (to, *sender)).fetchall()
    for seq, data in rows:
        envelope = Envelope.decode(data)
        forged = Envelope(as_sender, envelope.recipient, envelope.message, envelope.prekey)
        relay.store._db.execute("UPDATE mailbox SET envelope = ?, sender = ?, sender_device = ? "
                                "WHERE seq = ?", (forged.encode(), *as_sender, seq))
    return len(rows)


async def test_relay_cannot_pass_a_linked_device_off_as_another_accounts(
        nursery, tmp_path: Path) -> None:
    """Identity misbinding: mallory signs a list holding alice's laptop; the relay relabels the
    laptop's message to bob as mallory's. The laptop's link signature names alice, not mallory."""
    relay, alice, bob = await _accounts(nursery, tmp_path, alice_linked=1, bob_linked=0)
    mallory = make_client(tmp_path / "mallory", relay.port)
    await register(mallory, "mallory")
    laptop_key = alice[1].state.protocol.identity_key_pair().public_key
    _serve_forged_list(relay, "mallory", mallory.state.account_identity(),
                       ((0, mallory.state.protocol.identity_key_pair().public_key),
                        (1, laptop_key)),
                       {1: (await relay.store.link_signatures("alice"))[1]})
    async with session_of(alice[1]) as laptop:
        await laptop.send_text("bob", "from alice's laptop")
    assert _relabel_mail(relay, "bob", Address("alice", 1), Address("mallory", 1)) == 1
    got = await drain(bob[0])
    assert [(m.sender, m.text) for m in got if m.warning is None] == []
    assert any("does not verify" in (m.warning or "") for m in got)
    assert bob[0].state.contact("mallory") is None


async def test_device_key_bound_to_one_account_is_refused_for_another(
        nursery, tmp_path: Path) -> None:
    """Bob knows alice; a list of mallory's naming alice's primary key as mallory's primary
    (which needs no link signature) is refused: that key is alice's in bob's records."""
    relay, alice, bob = await _accounts(nursery, tmp_path, alice_linked=0, bob_linked=0)
    mallory = make_client(tmp_path / "mallory", relay.port)
    await register(mallory, "mallory")
    async with session_of(bob[0]) as b:
        await b.device_list("alice")
    alice_key = alice[0].state.protocol.identity_key_pair().public_key
    _serve_forged_list(relay, "mallory", mallory.state.account_identity(),
                       ((0, alice_key),), {})
    async with session_of(alice[0]) as a:
        await a.send_text("bob", "from alice")
    assert _relabel_mail(relay, "bob", Address("alice", 0), Address("mallory", 0)) == 1
    got = await drain(bob[0])
    assert [(m.sender, m.text) for m in got if m.warning is None] == []
    assert any("is a device of 'alice'" in (m.warning or "") for m in got)


async def test_get_devices_hands_out_link_signatures_and_old_relays_heal(
        nursery, tmp_path: Path) -> None:
    relay, alice, bob = await _accounts(nursery, tmp_path, alice_linked=1, bob_linked=0)
    async with session_of(bob[0]) as b:
        response = await b.connection.request("get_devices", account="alice")
    aik = alice[0].state.account_identity().public_key
    laptop_key = alice[1].state.protocol.identity_key_pair().public_key
    assert [i for i, _ in response["link_signatures"]] == [1]
    laptop_key.verify(link_message(aik, "alice"), response["link_signatures"][0][1])
    # A relay made before link signatures were kept has none for the laptop: lists refused...
    relay.store._db.execute("UPDATE devices SET link_signature = NULL")
    async with session_of(bob[0]) as b:
        with pytest.raises(ClientError, match="device 1 has no link signature"):
            await b.device_list("alice", refresh=True)
    # ...until the laptop connects again: it sends its link signature with its prekeys.
    async with session_of(alice[1]):
        pass
    async with session_of(bob[0]) as b:
        assert (await b.device_list("alice", refresh=True)).device_ids == [0, 1]


def test_link_signatures_on_the_wire_are_bounded_and_checked() -> None:
    aik, dik0, dik1 = (IdentityKeyPair.generate() for _ in range(3))
    signed = DeviceList("alice", 2, ((0, dik0.public_key), (1, dik1.public_key))).sign(aik)
    good = dik1.sign(link_message(aik.public_key, "alice"))
    signed.check_links(aik.public_key, api.link_signatures_from_wire([[1, good]]))
    with pytest.raises(MalformedError, match="no link signature"):
        signed.check_links(aik.public_key, {})
    with pytest.raises(InvalidSignatureError):  # signed for another account
        signed.check_links(aik.public_key, {1: dik1.sign(link_message(aik.public_key, "eve"))})
    for bad in ([[1, good], [1, good]], [[1, good[:63]]], [[-1, good]], [[1]], "x",
                [[i, good] for i in range(6)]):
        with pytest.raises(MalformedError):
            api.link_signatures_from_wire(bad)


async def test_files_made_before_link_checks_gain_what_they_need(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "relay.db")  # the devices table of relays made before
    db.execute("CREATE TABLE devices (account TEXT NOT NULL, device INTEGER NOT NULL, "
               "identity_key BLOB NOT NULL, spk_id INTEGER, spk BLOB, spk_signature BLOB, "
               "name TEXT NOT NULL DEFAULT '', linked_at REAL NOT NULL DEFAULT 0, "
               "last_seen REAL, PRIMARY KEY (account, device))")
    db.close()
    store = SqliteRelayStore(tmp_path / "relay.db")
    assert (await store.link_signatures("alice")) == {}
    store.close()
    state = ClientState(tmp_path / "home")  # a home whose contacts predate device_keys
    aik, dik = IdentityKeyPair.generate(), IdentityKeyPair.generate()
    state.save_contact("alice", aik.public_key, DeviceList("alice", 1, ((0, dik.public_key),))
                       .sign(aik), key_changed=False)
    state.db.execute("DELETE FROM device_keys")
    state.close()
    state = ClientState(tmp_path / "home")
    assert state.device_key_owner(dik.public_key) == "alice"
    state.close()
