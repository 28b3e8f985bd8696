"""Multi-device: linking, the four-device limit at both layers, fan-out, self-sync, unlink."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.core.connection import ServerError
from client.core.errors import ClientError
from client.private.linking import parse_link_code
from client.private.session import PrivateClient
from e2e_proto import relay_api as api
from e2e_proto.devices import DeviceList
from e2e_proto.keys import IdentityKeyPair
from tests.relay_harness import drain, link, make_client, register, session_of, start_relay


async def _accounts(nursery, tmp_path: Path, alice_linked: int = 4, bob_linked: int = 1):
    relay = await start_relay(nursery, tmp_path / "relay.db")
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


async def test_fan_out_reaches_every_device_exactly_once(nursery, tmp_path: Path) -> None:
    relay, alice, bob = await _accounts(nursery, tmp_path)
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
    relay = await start_relay(nursery, tmp_path / "relay.db", port=relay.port)
    async with session_of(alice[3]) as a3:
        await a3.send_text("bob", "after restart")
    assert await _texts(bob[0]) == ["after restart"] and await _texts(bob[1]) == ["after restart"]
    for index, device in enumerate(alice):
        expected = [] if index == 3 else ["after restart"]
        assert await _texts(device) == expected


async def test_linked_device_gets_contacts_by_device_sync(nursery, tmp_path: Path) -> None:
    relay, alice, _ = await _accounts(nursery, tmp_path, alice_linked=0, bob_linked=0)
    async with session_of(alice[0]) as a0:
        await a0.send_text("bob", "make bob a contact")
    laptop = make_client(tmp_path / "laptop", relay.port)
    await link(alice[0], laptop, "alice")
    await drain(laptop)  # receives the device sync
    assert laptop.state.contact("bob") is not None
    assert laptop.state.contact("bob")[0] == alice[0].state.contact("bob")[0]


async def test_fifth_linked_device_refused_by_client(nursery, tmp_path: Path) -> None:
    relay, alice, _ = await _accounts(nursery, tmp_path, alice_linked=4, bob_linked=0)
    fifth = make_client(tmp_path / "alice5", relay.port)
    with pytest.raises(ClientError, match="4 linked devices"):
        await link(alice[0], fifth, "alice")
    assert [d.device_id for d in relay.store.device_info("alice")] == [0, 1, 2, 3, 4]


async def test_fifth_linked_device_refused_by_relay(nursery, tmp_path: Path) -> None:
    """A client that skips its own check still cannot list six devices."""
    relay, alice, _ = await _accounts(nursery, tmp_path, alice_linked=4, bob_linked=0)
    aik = alice[0].state.account_identity()
    record = relay.store.account("alice")
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
    assert relay.store.account("alice") == record


async def test_device_list_rules_at_the_relay(nursery, tmp_path: Path) -> None:
    relay, alice, _ = await _accounts(nursery, tmp_path, alice_linked=1, bob_linked=0)
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


async def test_linked_device_cannot_approve_or_unlink(nursery, tmp_path: Path) -> None:
    relay, alice, _ = await _accounts(nursery, tmp_path, alice_linked=1, bob_linked=0)
    async with session_of(alice[1]) as a1:
        with pytest.raises(ClientError, match="only the primary"):
            await a1.unlink(1)
        with pytest.raises(ClientError, match="only the primary"):
            await a1.approve("AAAA-BBBB-CCCC-DDDD")


def test_link_code_typos() -> None:
    for code in ("", "AAAA", "AAAA-BBBB-CCCC-DDD1", "not a code at all!!"):
        with pytest.raises(ClientError):
            parse_link_code(code)


async def test_unlinked_device_receives_nothing_new(nursery, tmp_path: Path) -> None:
    relay, alice, bob = await _accounts(nursery, tmp_path, alice_linked=2, bob_linked=0)
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
    assert relay.store.pending("alice", 2, 0, 10) == []
    with pytest.raises(ClientError, match="no device 2"):
        await drain(alice[2])
    # ids are never reused: the next link gets id 3
    newcomer = make_client(tmp_path / "alice-new", relay.port)
    assert await link(alice[0], newcomer, "alice") == 3


async def test_wrong_link_code_is_refused(nursery, tmp_path: Path) -> None:
    relay, alice, _ = await _accounts(nursery, tmp_path, alice_linked=0, bob_linked=0)
    new = make_client(tmp_path / "new", relay.port)
    async with new.connect() as waiting:
        await waiting.request_link("alice", "x")
        async with session_of(alice[0]) as a0:
            with pytest.raises(ClientError, match="no device is waiting"):
                await a0.approve("AAAA-BBBB-CCCC-DDDD")
    assert [d.device_id for d in relay.store.device_info("alice")] == [0]


async def test_account_key_change_is_a_warning(nursery, tmp_path: Path) -> None:
    relay, alice, bob = await _accounts(nursery, tmp_path, alice_linked=0, bob_linked=0)
    async with session_of(alice[0]) as a0:
        await a0.send_text("bob", "hi")
    # bob's account is re-created under the same name with a new key (relay-side reset).
    for table in ("one_time_prekeys", "mailbox", "devices", "accounts"):
        relay.store._db.execute(f"DELETE FROM {table} WHERE account = 'bob'")
    new_bob = make_client(tmp_path / "bob-new", relay.port)
    await register(new_bob, "bob")
    async with session_of(new_bob) as nb:
        await nb.send_text("alice", "new phone, new keys")
    got = await drain(alice[0])
    assert any(m.warning and "account key of 'bob' changed" in m.warning for m in got)
    assert [m.text for m in got if m.warning is None] == ["new phone, new keys"]
    # Nothing is encrypted to the new key until alice accepts it (a relay could swap keys).
    async with session_of(alice[0]) as a0:
        with pytest.raises(ClientError, match="verify bob"):
            await a0.send_text("bob", "are you really bob?")
    assert relay.store.pending("bob", 0, 0, 10) == []
    alice[0].state.accept_key("bob")
    async with session_of(alice[0]) as a0:
        await a0.send_text("bob", "checked the safety number")
    assert [m.text for m in await drain(new_bob)] == ["checked the safety number"]


async def test_link_interrupted_before_the_proof_resumes(nursery, tmp_path: Path) -> None:
    """Approved, then the connection drops before the primary's proof: link again resumes."""
    relay, alice, _ = await _accounts(nursery, tmp_path, alice_linked=0, bob_linked=0)
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
