"""The relay store contract: SqliteRelayStore and RedisRelayStore answer every call the same way.

Each test runs once per store (the ``relay_db`` fixture: an SQLite file, or a real
``redis-server`` emptied for the test). Values are the inputs given here, never a backend's
encoding; the request-level tests (tests/test_relay.py, tests/test_relay_limits.py,
tests/test_multidevice_e2e.py) run against both stores as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.common.store_base import Bundle
from server.relay.backends import open_backend
from server.relay.store import (
    Acknowledge,
    DeviceGoneError,
    DeviceInfo,
    Enqueue,
    NameTakenError,
    NewDevice,
    Outgoing,
    PendingLink,
    QuotaExceededError,
    RelayStore,
    StaleListError,
)
from tests.relay_harness import store_url

NOW = 1_700_000_000.25
KEY = {i: bytes([0x10 + i]) * 32 for i in range(8)}
SPK = (7, b"\x51" * 32, b"\x52" * 64)


@pytest.fixture
async def store(relay_db: Path | str) -> AsyncIterator[RelayStore]:
    async with open_backend(store_url(relay_db)) as (opened, _hub):
        yield opened


async def make_account(store: RelayStore, name: str = "bob", devices: tuple[int, ...] = (0,),
                       linked: tuple[int, ...] = ()) -> None:
    """``name`` with device 0, then each of ``linked`` added by a new device list."""
    await store.create_account(name, b"A" * 32, 1, b"list-1", b"S" * 64,
                               {i: KEY[i] for i in devices}, NOW)
    for version, device_id in enumerate(linked, start=2):
        record = await store.account(name)
        assert record is not None
        await store.replace_device_list(
            name, version, f"list-{version}".encode(), b"S" * 64,
            {**record.devices, device_id: KEY[device_id]},
            [NewDevice(device_id, KEY[device_id], f"phone {device_id}", SPK,
                       [(1, b"\x61" * 32)])], NOW + version)


def send(*envelopes: tuple[str, int, bytes], quota: int = 100, byte_quota: int | None = None,
         now: float = NOW) -> Enqueue:
    return Enqueue([Outgoing(*e) for e in envelopes], ("alice", 0), now, quota, byte_quota)


async def stored(store: RelayStore, account: str = "bob", device_id: int = 0) -> list[bytes]:
    return [d.envelope for d in await store.pending(account, device_id, 0, 1000)]


# -- accounts and device lists ----------------------------------------------------------------


async def test_account_round_trip_and_name_taken(store: RelayStore) -> None:
    assert await store.account("bob") is None
    await store.create_account("bob", b"A" * 32, 1, b"list-1", b"S" * 64, {0: KEY[0]}, NOW)
    record = await store.account("bob")
    assert record is not None
    assert (record.account, record.account_key, record.list_version, record.list_body,
            record.list_signature, record.devices, record.max_device_id) == (
        "bob", b"A" * 32, 1, b"list-1", b"S" * 64, {0: KEY[0]}, 0)
    with pytest.raises(NameTakenError):
        await store.create_account("bob", b"B" * 32, 1, b"other", b"T" * 64, {0: KEY[1]}, NOW)
    assert await store.account("bob") == record  # the refusal changed nothing
    assert await store.device_info("bob") == [DeviceInfo(0, "primary", NOW, None)]


async def test_new_device_list_adds_and_removes_devices(store: RelayStore) -> None:
    await make_account(store, linked=(3, 5))
    record = await store.account("bob")
    assert record is not None
    assert list(record.devices) == [0, 3, 5] and record.max_device_id == 5
    assert [(i.device_id, i.name, i.linked_at) for i in await store.device_info("bob")] == [
        (0, "primary", NOW), (3, "phone 3", NOW + 2), (5, "phone 5", NOW + 3)]
    await store.enqueue(send(("bob", 3, b"for three"), ("bob", 5, b"for five")))
    removed = await store.replace_device_list("bob", 4, b"list-4", b"U" * 64,
                                              {0: KEY[0], 5: KEY[5]}, [], NOW + 4)
    assert removed == [3]
    record = await store.account("bob")
    assert record is not None
    assert (record.list_version, record.list_body, record.list_signature) == (
        4, b"list-4", b"U" * 64)
    assert record.devices == {0: KEY[0], 5: KEY[5]} and record.max_device_id == 5
    assert [i.device_id for i in await store.device_info("bob")] == [0, 5]
    assert await stored(store, "bob", 3) == []
    assert await store.take_bundle("bob", 3) is None
    assert await store.one_time_prekey_count("bob", 3) == 0
    assert await stored(store, "bob", 5) == [b"for five"]
    assert await store.expire(NOW + 10) == 1  # the removed device's mail is gone everywhere


async def test_a_device_whose_key_changes_is_removed(store: RelayStore) -> None:
    await make_account(store, linked=(1,))
    removed = await store.replace_device_list("bob", 3, b"list-3", b"S" * 64,
                                              {0: KEY[0], 1: KEY[7]}, [], NOW)
    assert removed == [1]
    record = await store.account("bob")
    assert record is not None and record.devices == {0: KEY[0]}


@pytest.mark.parametrize("version", [1, 0])
async def test_stale_device_list_changes_nothing(store: RelayStore, version: int) -> None:
    await make_account(store)
    before = await store.account("bob")
    with pytest.raises(StaleListError):
        await store.replace_device_list("bob", version, b"old", b"S" * 64, {0: KEY[0]}, [], NOW)
    with pytest.raises(StaleListError):
        await store.replace_device_list("nobody", 2, b"list", b"S" * 64, {0: KEY[0]}, [], NOW)
    assert await store.account("bob") == before
    assert await store.account("nobody") is None


async def test_touch_records_the_last_authentication(store: RelayStore) -> None:
    await make_account(store)
    await store.touch("bob", 0, NOW + 60.5)
    await store.touch("bob", 9, NOW)  # no such device: nothing happens
    assert await store.device_info("bob") == [DeviceInfo(0, "primary", NOW, NOW + 60.5)]
    assert [i.device_id for i in await store.device_info("bob")] == [0]


# -- prekeys ------------------------------------------------------------------------------------


async def test_bundles_hand_out_each_one_time_prekey_once_lowest_id_first(
        store: RelayStore) -> None:
    await make_account(store)
    assert await store.take_bundle("bob", 0) is None  # no signed prekey yet
    assert await store.take_bundle("bob", 4) is None
    assert await store.store_prekeys("bob", 0, SPK, [(9, b"\x09" * 32), (2, b"\x02" * 32)]) == 2
    assert await store.store_prekeys("bob", 0, None, [(2, b"\x22" * 32), (5, b"\x05" * 32)]) == 3
    assert await store.one_time_prekey_count("bob", 0) == 3
    assert await store.take_bundle("bob", 0) == (
        Bundle(0, KEY[0], *SPK, 2, b"\x22" * 32), 2)  # id 2 again replaced its key
    assert await store.take_bundle("bob", 0) == (Bundle(0, KEY[0], *SPK, 5, b"\x05" * 32), 1)
    assert await store.take_bundle("bob", 0) == (Bundle(0, KEY[0], *SPK, 9, b"\x09" * 32), 0)
    assert await store.take_bundle("bob", 0) == (Bundle(0, KEY[0], *SPK, None, None), 0)
    new_spk = (8, b"\x71" * 32, b"\x72" * 64)
    assert await store.store_prekeys("bob", 0, new_spk, [(2**32 - 1, b"\xff" * 32)]) == 1
    assert await store.take_bundle("bob", 0) == (
        Bundle(0, KEY[0], *new_spk, 2**32 - 1, b"\xff" * 32), 0)
    assert await store.store_prekeys("bob", 6, SPK, [(1, b"\x01" * 32)]) == 0  # no device 6
    assert await store.take_bundle("bob", 6) is None


async def test_a_linked_device_brings_its_prekeys(store: RelayStore) -> None:
    await make_account(store, linked=(1,))
    assert await store.take_bundle("bob", 1) == (Bundle(1, KEY[1], *SPK, 1, b"\x61" * 32), 0)


# -- mailboxes ----------------------------------------------------------------------------------


async def test_mail_is_delivered_in_order_after_a_cursor_and_acknowledged(
        store: RelayStore) -> None:
    await make_account(store, linked=(1,))
    for i in range(5):
        await store.enqueue(send(("bob", 0, b"m%d" % i), ("bob", 1, b"n%d" % i)))
    everything = await store.pending("bob", 0, 0, 100)
    seqs = [d.seq for d in everything]
    assert [d.envelope for d in everything] == [b"m%d" % i for i in range(5)]
    assert seqs == sorted(set(seqs)) and seqs[0] > 0
    assert await store.pending("bob", 0, 0, 2) == everything[:2]
    assert await store.pending("bob", 0, seqs[1], 100) == everything[2:]
    assert await store.pending("bob", 0, seqs[-1], 100) == []
    await store.acknowledge(Acknowledge("bob", 0, [seqs[0], seqs[3], 2**63 - 1]))
    assert await stored(store) == [b"m1", b"m2", b"m4"]
    assert await stored(store, "bob", 1) == [b"n%d" % i for i in range(5)]  # its own mailbox
    await store.acknowledge(Acknowledge("bob", 0, [d.seq for d in everything]))
    await store.enqueue(send(("bob", 0, b"later")))
    (later,) = await store.pending("bob", 0, 0, 100)
    assert later.envelope == b"later" and later.seq > seqs[-1]  # seqs are never reused
    await store.acknowledge(Acknowledge("nobody", 3, [later.seq]))
    assert await stored(store) == [b"later"]


async def test_message_quota_refuses_the_whole_send(store: RelayStore) -> None:
    await make_account(store, linked=(1,))
    await store.enqueue(send(("bob", 0, b"a"), ("bob", 1, b"a1"), quota=2))
    await store.enqueue(send(("bob", 1, b"b1"), quota=2))
    with pytest.raises(QuotaExceededError) as caught:
        await store.enqueue(send(("bob", 0, b"b"), ("bob", 1, b"c1"), quota=2))
    assert (caught.value.account, caught.value.device_id) == ("bob", 1)
    assert await stored(store) == [b"a"]  # device 0 had room, and got nothing either
    (first, _) = await store.pending("bob", 1, 0, 10)
    await store.acknowledge(Acknowledge("bob", 1, [first.seq]))
    await store.enqueue(send(("bob", 0, b"b"), ("bob", 1, b"c1"), quota=2))
    assert await stored(store, "bob", 1) == [b"b1", b"c1"]


async def test_byte_quota_counts_envelope_bytes(store: RelayStore) -> None:
    await make_account(store)
    await store.enqueue(send(("bob", 0, b"x" * 60), byte_quota=100))
    with pytest.raises(QuotaExceededError):
        await store.enqueue(send(("bob", 0, b"y" * 41), byte_quota=100))
    await store.enqueue(send(("bob", 0, b"z" * 40), byte_quota=100))  # exactly full
    with pytest.raises(QuotaExceededError):
        await store.enqueue(send(("bob", 0, b"1"), byte_quota=100))
    await store.enqueue(send(("bob", 0, b"1")))  # no byte quota: only the message count
    first = (await store.pending("bob", 0, 0, 1))[0]
    await store.acknowledge(Acknowledge("bob", 0, [first.seq]))
    await store.enqueue(send(("bob", 0, b"w" * 59), byte_quota=100))  # 40 + 1 + 59
    assert await stored(store) == [b"z" * 40, b"1", b"w" * 59]
    assert await store.expire(NOW + 1) == 3
    await store.enqueue(send(("bob", 0, b"v" * 100), byte_quota=100))  # expiry freed it all


async def test_a_send_to_a_removed_device_stores_nothing(store: RelayStore) -> None:
    await make_account(store)
    with pytest.raises(DeviceGoneError) as caught:
        await store.enqueue(send(("bob", 0, b"x"), ("bob", 5, b"y")))
    assert (caught.value.account, caught.value.device_id) == ("bob", 5)
    with pytest.raises(DeviceGoneError):
        await store.enqueue(send(("nobody", 0, b"x")))
    assert await stored(store) == []


async def test_the_same_envelope_is_stored_once(store: RelayStore) -> None:
    await make_account(store, linked=(1,))
    await store.enqueue(send(("bob", 0, b"same"), ("bob", 1, b"same")))
    await store.enqueue(send(("bob", 0, b"same"), ("bob", 1, b"other"), quota=2))
    assert await stored(store) == [b"same"]
    assert await stored(store, "bob", 1) == [b"same", b"other"]
    await store.enqueue(send(("bob", 1, b"other"), quota=2))  # a retry of a stored send,
    assert await stored(store, "bob", 1) == [b"same", b"other"]  # even with the box full
    await store.enqueue(Enqueue([Outgoing("bob", 0, b"twice"), Outgoing("bob", 0, b"twice")],
                                ("alice", 0), NOW, 100))
    assert await stored(store) == [b"same", b"twice"]
    (first, _) = await store.pending("bob", 0, 0, 10)
    await store.acknowledge(Acknowledge("bob", 0, [first.seq]))
    await store.enqueue(send(("bob", 0, b"same")))  # acknowledged, so this is new mail
    assert await stored(store) == [b"twice", b"same"]


async def test_expiry_deletes_only_older_mail(store: RelayStore) -> None:
    await make_account(store, linked=(1,))
    await store.enqueue(send(("bob", 0, b"old"), ("bob", 1, b"old1"), now=NOW - 100))
    await store.enqueue(send(("bob", 0, b"edge"), now=NOW))
    await store.enqueue(send(("bob", 1, b"new1"), now=NOW + 100))
    assert await store.expire(NOW - 100) == 0
    assert await store.expire(NOW) == 2
    assert await stored(store) == [b"edge"]
    assert await stored(store, "bob", 1) == [b"new1"]
    assert await store.expire(NOW) == 0
    assert await store.expire(NOW + 1000) == 2
    assert await stored(store) == [] and await stored(store, "bob", 1) == []


async def test_expiry_of_many_messages(store: RelayStore) -> None:
    await make_account(store)
    for i in range(1100):  # more than one expiry batch of the Redis store
        await store.enqueue(send(("bob", 0, b"%d" % i), quota=10_000, now=NOW + i))
    assert await store.expire(NOW + 1050) == 1050
    assert await stored(store) == [b"%d" % i for i in range(1050, 1100)]


# -- pending links ------------------------------------------------------------------------------


def offer(waiter: bytes = b"W" * 32) -> PendingLink:
    return PendingLink("bob", KEY[4], "tablet", b"T" * 32, b"L" * 64, SPK,
                       [(1, b"\x61" * 32), (2, b"\x62" * 32)], waiter)


async def test_link_offers(store: RelayStore) -> None:
    lookup, other = b"\x01" * 16, b"\x02" * 16
    assert await store.pending_link(lookup) is None
    assert await store.offer_link(lookup, offer(), 600.0)
    assert not await store.offer_link(lookup, offer(b"X" * 32), 600.0)  # in use
    assert await store.pending_link(lookup) == offer()
    await store.withdraw_link(lookup, b"X" * 32)  # not the waiter: nothing happens
    assert await store.pending_link(lookup) == offer()
    await store.withdraw_link(lookup, b"W" * 32)
    assert await store.pending_link(lookup) is None
    assert await store.offer_link(lookup, offer(b"X" * 32), 600.0)
    assert await store.offer_link(other, offer(), 600.0)
    assert await store.take_link(lookup) == offer(b"X" * 32)
    assert await store.take_link(lookup) is None
    assert await store.pending_link(other) == offer()
