"""The relay store contract: SqliteRelayStore and RedisRelayStore answer every call the same way.

Each test runs once per store (the ``relay_db`` fixture: an SQLite file, or a real
``redis-server`` emptied for the test). Values are the inputs given here, never a backend's
encoding. Covered: accounts and device lists, link signatures, prekeys and bundles, mailboxes
(order, acknowledgement, both quotas and the usage counters behind them, dedupe, ``skip_full``,
expiry), pending links and their cap per account, group routing copies and their version
compare, blob records, quotas, grants and expiry, and what the relay keeps for the other
transport (account links, sharing logs, the queue for the social server, cross-transport
opt-ins, the hand-over claim). Many request-level tests (tests/test_relay.py,
tests/test_relay_limits.py, tests/test_multidevice_e2e.py, tests/test_private_e2e.py,
tests/test_blob_store.py, tests/test_groups_e2e.py, tests/test_relay_groups.py) run against
both stores as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from e2e_proto.address import Address
from server.common.blob_index import BlobQuotaError, BlobRecord, BlobTakenError
from server.common.store_base import Bundle, StoreUnavailableError
from server.federation.relay_store import (
    SHARE,
    UNLINK,
    LinkTakenError,
    SharingEntry,
    StoredLink,
)
from server.relay import redis_keys, redis_store
from server.relay.backends import open_backend
from server.relay.hub import PUSH, DeviceEvent
from server.relay.redis_store import RedisRelayStore
from server.relay.store import (
    LINK_IN_USE,
    LINKS_OF_ACCOUNT,
    Acknowledge,
    BlobGoneError,
    DeviceGoneError,
    DeviceInfo,
    Enqueue,
    Enqueued,
    GroupLimitError,
    GroupRoute,
    NameTakenError,
    NewDevice,
    Outgoing,
    PendingLink,
    PrekeyLimitError,
    QuotaExceededError,
    RelayStore,
    StaleGroupError,
    StaleListError,
)
from storage.redis_server import LocalRedis
from tests.relay_harness import store_url

NOW = 1_700_000_000.25
KEY = {i: bytes([0x10 + i]) * 32 for i in range(8)}
SPK = (7, b"\x51" * 32, b"\x52" * 64)
LINK_SIGNATURE = {i: bytes([0x30 + i]) * 64 for i in range(8)}
NO_BYTE_LIMIT = 2**40
OPKS = 1000
"""The one-time prekey cap the tests that do not test it pass."""


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
                       [(1, b"\x61" * 32)], LINK_SIGNATURE[device_id])], NOW + version)


def send(*envelopes: tuple[str, int, bytes], quota: int = 100,
         quota_bytes: int = NO_BYTE_LIMIT, now: float = NOW, skip_full: bool = False,
         blobs: tuple[bytes, ...] = ()) -> Enqueue:
    write = Enqueue([Outgoing(*e) for e in envelopes], ("alice", 0), now, quota, quota_bytes,
                    skip_full)
    return write._replace(blobs=blobs) if blobs else write


async def stored(store: RelayStore, account: str = "bob", device_id: int = 0) -> list[bytes]:
    return [d.envelope for d in await store.pending(account, device_id, 0, 1000)]


async def uploaded(store: RelayStore, *blob_ids: bytes) -> None:
    """Record each of ``blob_ids`` as a complete upload of alice's."""
    for blob_id in blob_ids:
        await store.blobs.begin_blob(blob_id, "alice", 10, NOW, 10**6, 100)
        await store.blobs.complete_blob(blob_id)


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
    assert await store.store_prekeys("bob", 0, SPK, [(9, b"\x09" * 32), (2, b"\x02" * 32)],
                                     limit=OPKS) == 2
    assert await store.store_prekeys("bob", 0, None, [(2, b"\x22" * 32), (5, b"\x05" * 32)],
                                     limit=OPKS) == 3
    assert await store.one_time_prekey_count("bob", 0) == 3
    assert await store.take_bundle("bob", 0) == (
        Bundle(0, KEY[0], *SPK, 2, b"\x22" * 32), 2)  # id 2 again replaced its key
    assert await store.take_bundle("bob", 0) == (Bundle(0, KEY[0], *SPK, 5, b"\x05" * 32), 1)
    assert await store.take_bundle("bob", 0) == (Bundle(0, KEY[0], *SPK, 9, b"\x09" * 32), 0)
    assert await store.take_bundle("bob", 0) == (Bundle(0, KEY[0], *SPK, None, None), 0)
    new_spk = (8, b"\x71" * 32, b"\x72" * 64)
    assert await store.store_prekeys("bob", 0, new_spk, [(2**32 - 1, b"\xff" * 32)],
                                     limit=OPKS) == 1
    assert await store.take_bundle("bob", 0) == (
        Bundle(0, KEY[0], *new_spk, 2**32 - 1, b"\xff" * 32), 0)
    assert await store.store_prekeys("bob", 6, SPK, [(1, b"\x01" * 32)],  # no device 6
                                     limit=OPKS) == 0
    assert await store.take_bundle("bob", 6) is None


async def test_the_one_time_prekey_cap_is_checked_in_the_write(store: RelayStore) -> None:
    """A publish that would take the device past the cap stores nothing, its signed prekey
    neither, and says how many the device holds; the count is checked in the step that writes,
    so publishes from several connections never pass it together."""
    await make_account(store)
    assert await store.store_prekeys("bob", 0, SPK, [(i, b"\x01" * 32) for i in range(6)],
                                     limit=8) == 6
    new_spk = (8, b"\x71" * 32, b"\x72" * 64)
    with pytest.raises(PrekeyLimitError) as caught:
        await store.store_prekeys("bob", 0, new_spk, [(i, b"\x02" * 32) for i in range(6, 9)],
                                  limit=8)
    assert (caught.value.held, caught.value.limit) == (6, 8)
    assert await store.one_time_prekey_count("bob", 0) == 6
    assert await store.take_bundle("bob", 0) == (Bundle(0, KEY[0], *SPK, 0, b"\x01" * 32), 5)
    assert await store.store_prekeys("bob", 0, new_spk, [(6, b"\x02" * 32), (7, b"\x02" * 32),
                                                         (8, b"\x02" * 32)], limit=8) == 8
    assert await store.take_bundle("bob", 0, one_time=False) == (
        Bundle(0, KEY[0], *new_spk, None, None), 8)


async def test_a_linked_device_brings_its_prekeys(store: RelayStore) -> None:
    await make_account(store, linked=(1,))
    assert await store.take_bundle("bob", 1) == (Bundle(1, KEY[1], *SPK, 1, b"\x61" * 32), 0)


async def test_a_bundle_without_a_one_time_prekey_keeps_them(store: RelayStore) -> None:
    await make_account(store)
    await store.store_prekeys("bob", 0, SPK, [(3, b"\x03" * 32)], limit=OPKS)
    assert await store.take_bundle("bob", 0, one_time=False) == (
        Bundle(0, KEY[0], *SPK, None, None), 1)
    assert await store.take_bundle("bob", 0) == (Bundle(0, KEY[0], *SPK, 3, b"\x03" * 32), 0)
    assert await store.take_bundle("bob", 5, one_time=False) is None


# -- link signatures ----------------------------------------------------------------------------


async def test_link_signatures_of_linked_devices(store: RelayStore) -> None:
    await make_account(store, linked=(1, 2))
    assert await store.link_signatures("bob") == {1: LINK_SIGNATURE[1], 2: LINK_SIGNATURE[2]}
    await store.set_link_signature("bob", 2, b"\x77" * 64)  # sent again by the device
    await store.set_link_signature("bob", 0, b"\x78" * 64)  # the primary's is never handed out
    await store.set_link_signature("bob", 6, b"\x79" * 64)  # no device 6: nothing happens
    assert await store.link_signatures("bob") == {1: LINK_SIGNATURE[1], 2: b"\x77" * 64}
    await store.replace_device_list("bob", 4, b"list-4", b"S" * 64, {0: KEY[0], 2: KEY[2]}, [],
                                    NOW)
    assert await store.link_signatures("bob") == {2: b"\x77" * 64}  # gone with its device
    assert await store.link_signatures("nobody") == {}


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


async def test_enqueue_names_the_seq_of_each_new_message_where_they_are_contiguous(
        store: RelayStore) -> None:
    """Redis numbers each device's messages one by one and says which seq each new message got
    (a retried one, stored already, gets none); SQLite's seqs are global: it names none."""
    await make_account(store, linked=(1,))
    first = await store.enqueue(send(("bob", 0, b"a"), ("bob", 1, b"b")))
    again = await store.enqueue(send(("bob", 0, b"a"), ("bob", 1, b"c")))  # "a" retried
    seq = {d.envelope: d.seq for i in (0, 1) for d in await store.pending("bob", i, 0, 10)}
    if isinstance(store, RedisRelayStore):
        assert first.seqs == ((0, seq[b"a"]), (1, seq[b"b"]))
        assert again.seqs == ((1, seq[b"c"]),) and seq[b"c"] == seq[b"b"] + 1
    else:
        assert first.seqs == again.seqs == ()
    assert first.skipped == again.skipped == ()
    assert await stored(store) == [b"a"]  # the retry was not stored twice


async def test_calls_that_share_a_round_succeed_or_fail_each_on_its_own(
        store: RelayStore) -> None:
    """Sends, acknowledgements and reads that arrive together share one round (on Redis one
    call of one script, each call on its own slice of its keys and arguments); each gets its
    own answer, and a send refused in the round changes nothing of the others."""
    await make_account(store, linked=(1,))
    await make_account(store, "carol")
    await store.enqueue(send(("bob", 0, b"old"), ("bob", 1, b"old1")))
    await store.enqueue(send(("carol", 0, b"c1")))
    await store.enqueue(send(("carol", 0, b"c2")))
    (old,) = await store.pending("bob", 0, 0, 10)
    carols = await store.pending("carol", 0, 0, 10)
    answers: dict[str, object] = {}  # (in any order: device 0 has room for all three)

    async def run(name: str, call: Any, argument: Any) -> None:
        try:
            answers[name] = await call(argument)
        except QuotaExceededError as exc:
            answers[name] = exc

    rounds = store._mailboxes.rounds if isinstance(store, RedisRelayStore) else 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "ack", store.acknowledge, Acknowledge("bob", 0, [old.seq]))
        nursery.start_soon(run, "full", store.enqueue,
                           send(("bob", 0, b"b"), ("bob", 1, b"x" * 10), quota_bytes=8))
        nursery.start_soon(run, "new", store.enqueue, send(("bob", 0, b"new"), ("bob", 1, b"n")))
        nursery.start_soon(run, "read", lambda _: store.pending("carol", 0, carols[0].seq, 10),
                           None)
    if isinstance(store, RedisRelayStore):
        assert store._mailboxes.rounds == rounds + 1
    assert answers["ack"] is None
    assert isinstance(answers["full"], QuotaExceededError)
    assert answers["full"].device_id == 1
    assert answers["new"].skipped == ()  # type: ignore[attr-defined]
    assert answers["read"] == carols[1:]
    assert await stored(store) == [b"new"]
    assert await stored(store, "bob", 1) == [b"old1", b"n"]


@pytest.mark.parametrize("round_bytes", [redis_store.ROUND_BYTES, 1])
async def test_redis_a_call_that_fails_in_its_round_fails_alone(
        redis_server: LocalRedis, monkeypatch: pytest.MonkeyPatch, round_bytes: int) -> None:
    """A Redis error in one call of a round (here a key of the wrong type) answers that call
    ``unavailable`` and no other: a send that shares its round is stored and answered as such,
    whether the round is one script call or, past ``ROUND_BYTES``, one per part."""
    monkeypatch.setattr(redis_store, "ROUND_BYTES", round_bytes)
    redis_server.flush()
    async with open_backend(store_url(redis_server.url())) as (store, _hub):
        assert isinstance(store, RedisRelayStore)
        await make_account(store)
        await store.client.set(redis_keys.mailbox_key("carol", 0), "not a mailbox")
        answers: dict[str, object] = {}

        async def run(name: str, call: Any, argument: Any) -> None:
            try:
                answers[name] = await call(argument)
            except StoreUnavailableError as exc:
                answers[name] = exc

        rounds = store._mailboxes.rounds
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "send", store.enqueue, send(("bob", 0, b"hello")))
            nursery.start_soon(run, "broken", lambda _: store.pending("carol", 0, 0, 10), None)
            nursery.start_soon(run, "later", store.enqueue, send(("bob", 0, b"later")))
        assert store._mailboxes.rounds == rounds + 1
        assert isinstance(answers["broken"], StoreUnavailableError)
        assert "WRONGTYPE" in str(answers["broken"])
        assert isinstance(answers["send"], Enqueued) and isinstance(answers["later"], Enqueued)
        assert sorted(await stored(store)) == [b"hello", b"later"]


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
    await store.enqueue(send(("bob", 0, b"x" * 60), quota_bytes=100))
    with pytest.raises(QuotaExceededError, match="100 bytes"):
        await store.enqueue(send(("bob", 0, b"y" * 41), quota_bytes=100))
    await store.enqueue(send(("bob", 0, b"z" * 40), quota_bytes=100))  # exactly full
    with pytest.raises(QuotaExceededError):
        await store.enqueue(send(("bob", 0, b"1"), quota_bytes=100))
    await store.enqueue(send(("bob", 0, b"1")))  # a larger byte quota: only the message count
    first = (await store.pending("bob", 0, 0, 1))[0]
    await store.acknowledge(Acknowledge("bob", 0, [first.seq]))
    await store.enqueue(send(("bob", 0, b"w" * 59), quota_bytes=100))  # 40 + 1 + 59
    assert await stored(store) == [b"z" * 40, b"1", b"w" * 59]
    assert await store.expire(NOW + 1) == 3
    await store.enqueue(send(("bob", 0, b"v" * 100), quota_bytes=100))  # expiry freed it all


async def test_usage_counters_follow_every_insert_and_delete(store: RelayStore) -> None:
    """The quotas read per-device counters: each path that stores or deletes mail keeps them,
    so a mailbox holds exactly its quota, never more, after acks, expiry and unlinking."""
    await make_account(store, linked=(1,))
    for i in range(3):
        await store.enqueue(send(("bob", 0, b"%d" % i * 10), ("bob", 1, b"%d" % i * 10),
                                 quota=3, quota_bytes=30, now=NOW + i))
    for device_id in (0, 1):
        with pytest.raises(QuotaExceededError, match="3 messages"):
            await store.enqueue(send(("bob", device_id, b"x"), quota=3))
        with pytest.raises(QuotaExceededError, match="30 bytes"):
            await store.enqueue(send(("bob", device_id, b"x"), quota=4, quota_bytes=30))
    seqs = [d.seq for d in await store.pending("bob", 0, 0, 10)]
    await store.acknowledge(Acknowledge("bob", 0, seqs[:1] + seqs[:1]))  # one ack counts once
    await store.enqueue(send(("bob", 0, b"a" * 10), quota=3, quota_bytes=30))  # room for one
    with pytest.raises(QuotaExceededError):
        await store.enqueue(send(("bob", 0, b"b"), quota=3))
    assert await store.expire(NOW + 1) == 2  # bob.0's and bob.1's first messages
    await store.enqueue(send(("bob", 1, b"c" * 10), quota=3, quota_bytes=30))
    with pytest.raises(QuotaExceededError):
        await store.enqueue(send(("bob", 1, b"d"), quota=4, quota_bytes=30))
    removed = await store.replace_device_list("bob", 3, b"list-3", b"S" * 64, {0: KEY[0]}, [],
                                              NOW)
    assert removed == [1]
    await store.replace_device_list(  # a new device 2: its mailbox starts empty
        "bob", 4, b"list-4", b"S" * 64, {0: KEY[0], 2: KEY[2]},
        [NewDevice(2, KEY[2], "tablet", SPK, [], LINK_SIGNATURE[2])], NOW)
    await store.enqueue(send(*[("bob", 2, b"%d" % i * 10) for i in range(3)], quota=3,
                             quota_bytes=30))
    assert len(await stored(store, "bob", 2)) == 3


async def test_a_group_write_leaves_out_full_and_removed_devices(store: RelayStore) -> None:
    await make_account(store, linked=(1, 2))
    assert (await store.enqueue(send(("bob", 0, b"a" * 70)))).skipped == ()  # 70 of 100 bytes
    await store.enqueue(send(("bob", 1, b"one"), ("bob", 1, b"two")))  # bob.1: 2 of 2 messages
    copies = [("bob", 7, b"g" * 40)] + [("bob", i, b"g" * 40) for i in (0, 1, 2)]
    with pytest.raises(DeviceGoneError):  # a send: refused whole, at its first refusal
        await store.enqueue(send(*copies, quota=2, quota_bytes=100))
    with pytest.raises(QuotaExceededError):
        await store.enqueue(send(*copies[1:], quota=2, quota_bytes=100))
    assert await stored(store, "bob", 2) == []
    stored_copies = await store.enqueue(send(*copies, quota=2, quota_bytes=100,
                                             skip_full=True))
    assert stored_copies.skipped == (0, 1, 2)  # the positions left out: gone, bytes, messages
    assert await stored(store, "bob", 0) == [b"a" * 70]  # bytes: left out
    assert await stored(store, "bob", 1) == [b"one", b"two"]  # messages: left out
    assert await stored(store, "bob", 2) == [b"g" * 40]
    again = send(("bob", 2, b"g" * 40), ("bob", 1, b"g" * 40), quota=1, quota_bytes=100,
                 skip_full=True)
    assert (await store.enqueue(again)).skipped == (1,)  # bob.2 has it already: stored, not skipped
    assert await stored(store, "bob", 2) == [b"g" * 40]  # stored already: not twice
    assert (await store.enqueue(send(("bob", 2, b"h"), skip_full=True))).skipped == ()


async def test_blobs_are_granted_with_the_mail_to_the_devices_it_is_stored_for(
        store: RelayStore) -> None:
    """A send's blobs are granted in the step that stores it: a refused send grants nothing, a
    group write only to the devices it stored the message for (or held it already)."""
    await make_account(store, linked=(1, 2))
    await make_account(store, "carol")
    await uploaded(store, BLOB[0], BLOB[1])
    await store.enqueue(send(("bob", 1, b"full")))
    may = store.blobs.may_download
    with pytest.raises(QuotaExceededError):
        await store.enqueue(send(("bob", 0, b"m"), ("bob", 1, b"m"), quota=1, blobs=(BLOB[0],)))
    with pytest.raises(DeviceGoneError):
        await store.enqueue(send(("bob", 0, b"m"), ("bob", 7, b"m"), blobs=(BLOB[0],)))
    assert not any([await may(BLOB[0], "bob", d) for d in (0, 1, 7)])
    await store.enqueue(send(("carol", 0, b"c")))
    group = send(("bob", 0, b"g"), ("bob", 1, b"g"), ("bob", 7, b"g"), ("carol", 0, b"c"),
                 quota=1, skip_full=True, blobs=(BLOB[0], BLOB[1]))
    assert (await store.enqueue(group)).skipped == (1, 2)
    assert [await may(b, "bob", 0) for b in BLOB[:2]] == [True, True]
    assert [await may(b, "carol", 0) for b in BLOB[:2]] == [True, True]  # held it already
    assert not any([await may(b, a, d) for b in BLOB[:2] for a, d in (("bob", 1), ("bob", 7),
                                                                      ("bob", 2))])
    await store.enqueue(send(("bob", 2, b"d")))  # no blobs: none granted
    assert not await may(BLOB[0], "bob", 2)


async def test_a_send_announcing_a_deleted_blob_stores_and_grants_nothing(
        store: RelayStore) -> None:
    """The blobs a send announces are looked for in the step that stores it: one deleted
    after the relay checked it (its last granted device fetched it) refuses the send whole, a
    group write too, and leaves no grant behind (which no blob expiry would remove)."""
    await make_account(store, linked=(1,))
    await uploaded(store, BLOB[0], BLOB[1])
    blobs = store.blobs
    await store.enqueue(send(("bob", 0, b"first"), blobs=(BLOB[0],)))
    assert await blobs.mark_fetched(BLOB[0], "bob", 0) is True
    await blobs.delete_blob(BLOB[0])
    for skip_full in (False, True):
        with pytest.raises(BlobGoneError) as caught:
            await store.enqueue(send(("bob", 0, b"again"), ("bob", 1, b"again"),
                                     skip_full=skip_full, blobs=(BLOB[1], BLOB[0])))
        assert caught.value.blob_id == BLOB[0]
    assert await stored(store) == [b"first"] and await stored(store, "bob", 1) == []
    assert not any([await blobs.may_download(b, "bob", d) for b in BLOB[:2] for d in (0, 1)])
    assert await blobs.mark_fetched(BLOB[0], "bob", 1) is None
    assert await blobs.blob(BLOB[0]) is None and await blobs.blob(BLOB[1]) is not None
    if isinstance(store, RedisRelayStore):  # no grant key was made for the deleted blob
        assert not await store.client.exists([redis_keys.grants_key(BLOB[0])])


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
    await store.enqueue(send(("bob", 0, b"twice"), ("bob", 0, b"twice")))
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
    assert await store.offer_link(lookup, offer(), 600.0, 16) is None
    assert await store.offer_link(lookup, offer(b"X" * 32), 600.0, 16) == LINK_IN_USE
    assert await store.pending_link(lookup) == offer()
    await store.withdraw_link(lookup, b"X" * 32)  # not the waiter: nothing happens
    assert await store.pending_link(lookup) == offer()
    await store.withdraw_link(lookup, b"W" * 32)
    assert await store.pending_link(lookup) is None
    assert await store.offer_link(lookup, offer(b"X" * 32), 600.0, 16) is None
    assert await store.offer_link(other, offer(), 600.0, 16) is None
    assert await store.take_link(lookup) == offer(b"X" * 32)
    assert await store.take_link(lookup) is None
    assert await store.pending_link(other) == offer()


async def test_link_offers_per_account_are_capped(store: RelayStore) -> None:
    lookups = [bytes([i]) * 16 for i in range(4)]
    for lookup in lookups[:2]:
        assert await store.offer_link(lookup, offer(), 600.0, 2) is None
    assert await store.offer_link(lookups[2], offer(), 600.0, 2) == LINKS_OF_ACCOUNT
    assert await store.pending_link(lookups[2]) is None  # the refusal filed nothing
    carol = PendingLink("carol", KEY[5], "phone", b"T" * 32, b"L" * 64, SPK, [], b"W" * 32)
    assert await store.offer_link(lookups[2], carol, 600.0, 2) is None  # another account
    await store.withdraw_link(lookups[0], b"W" * 32)  # a device that gives up frees a place
    assert await store.offer_link(lookups[3], offer(), 600.0, 2) is None
    assert await store.offer_link(lookups[0], offer(), 600.0, 2) == LINKS_OF_ACCOUNT
    await store.take_link(lookups[1])  # so does an approval
    assert await store.offer_link(lookups[0], offer(), 600.0, 2) is None


# -- group routing copies -----------------------------------------------------------------------


def route(version: int, members: tuple[str, ...] = ("alice", "bob"),
          group_id: bytes = b"\x42" * 16) -> GroupRoute:
    return GroupRoute(group_id, version, members, members[:1], b"body-%d" % version, b"S" * 64)


async def put(store: RelayStore, route: GroupRoute, account: str = "alice",
              limit: int = 1000) -> None:
    await store.put_group(route, account, limit)


async def test_group_routing_copies_only_move_forward(store: RelayStore) -> None:
    assert await store.group(b"\x42" * 16) is None
    await put(store, route(1))
    assert await store.group(b"\x42" * 16) == route(1)
    await put(store, route(5, ("alice", "bob", "carol")))
    assert await store.group(b"\x42" * 16) == route(5, ("alice", "bob", "carol"))
    for stale in (5, 4, 0):
        with pytest.raises(StaleGroupError):
            await put(store, route(stale))
    assert await store.group(b"\x42" * 16) == route(5, ("alice", "bob", "carol"))
    assert await store.group(b"\x43" * 16) is None


async def test_concurrent_group_writes_store_exactly_one(store: RelayStore) -> None:
    """Two admins write version 2 at once: the compare and the write are one step."""
    await put(store, route(1))
    outcomes: list[str] = []

    async def write(members: tuple[str, ...]) -> None:
        try:
            await put(store, route(2, members))
            outcomes.append("stored")
        except StaleGroupError:
            outcomes.append("stale")

    async with trio.open_nursery() as nursery:
        for members in (("alice", "bob"), ("alice", "carol")):
            nursery.start_soon(write, members)
    assert sorted(outcomes) == ["stale", "stored"]
    stored_route = await store.group(b"\x42" * 16)
    assert stored_route is not None and stored_route.version == 2


# -- blob metadata and grants -------------------------------------------------------------------

BLOB = [bytes([0xB0 + i]) * 32 for i in range(6)]


async def test_blob_records_and_quotas(store: RelayStore) -> None:
    blobs = store.blobs
    assert await blobs.blob(BLOB[0]) is None
    begun = await blobs.begin_blob(BLOB[0], "alice", 600, NOW, 1000, 2)
    assert begun == BlobRecord(BLOB[0], "alice", 600, NOW, False) == await blobs.blob(BLOB[0])
    again = await blobs.begin_blob(BLOB[0], "alice", 999, NOW + 5, 1000, 2)
    assert again == begun  # resumed: the record as begun (the caller checks the size)
    with pytest.raises(BlobTakenError):
        await blobs.begin_blob(BLOB[0], "bob", 600, NOW, 1000, 2)
    with pytest.raises(BlobQuotaError) as caught:  # 600 + 401 bytes
        await blobs.begin_blob(BLOB[1], "alice", 401, NOW, 1000, 2)
    assert (caught.value.used, caught.value.limit) == (600, 1000)
    await blobs.begin_blob(BLOB[1], "alice", 400, NOW, 1000, 3)  # exactly the quota
    await blobs.begin_blob(BLOB[2], "bob", 10, NOW, 1000, 1)  # quotas are per owner
    with pytest.raises(BlobQuotaError, match="unfinished uploads"):
        await blobs.begin_blob(BLOB[3], "bob", 10, NOW, 1000, 1)
    await blobs.complete_blob(BLOB[2])
    await blobs.complete_blob(BLOB[2])  # twice: still one finished upload
    assert await blobs.blob(BLOB[2]) == BlobRecord(BLOB[2], "bob", 10, NOW, True)
    await blobs.begin_blob(BLOB[3], "bob", 10, NOW, 1000, 1)  # a finished one frees a place
    with pytest.raises(BlobQuotaError, match="unfinished uploads"):
        await blobs.begin_blob(BLOB[4], "bob", 10, NOW, 1000, 1)
    await blobs.delete_blob(BLOB[0])
    assert await blobs.blob(BLOB[0]) is None
    await blobs.begin_blob(BLOB[4], "alice", 600, NOW, 1000, 3)  # deletion gave the bytes back


async def test_blob_expiry_by_kind(store: RelayStore) -> None:
    blobs = store.blobs
    for index, (complete, begun) in enumerate(((True, NOW - 100), (True, NOW),
                                               (False, NOW - 10), (False, NOW))):
        await blobs.begin_blob(BLOB[index], "alice", 100, begun, 10_000, 10)
        if complete:
            await blobs.complete_blob(BLOB[index])
    assert await blobs.expire_blobs(NOW - 100, NOW - 10) == []  # strictly before
    assert sorted(await blobs.expire_blobs(NOW - 50, NOW - 5)) == sorted([BLOB[0], BLOB[2]])
    assert [await blobs.blob(b) is None for b in BLOB[:4]] == [True, False, True, False]
    assert sorted(await blobs.expire_blobs(NOW + 1, NOW + 1)) == sorted([BLOB[1], BLOB[3]])
    with pytest.raises(BlobQuotaError):  # usage is counted again from nothing: 100 + 101
        await blobs.begin_blob(BLOB[4], "alice", 100, NOW, 200, 10)
        await blobs.begin_blob(BLOB[5], "alice", 101, NOW, 200, 10)
    await blobs.delete_blob(BLOB[4])
    await blobs.begin_blob(BLOB[5], "alice", 200, NOW, 200, 1)  # and no unfinished upload


async def test_many_blobs_expire(store: RelayStore) -> None:
    blobs = store.blobs
    ids = [i.to_bytes(32, "big") for i in range(1100)]  # more than one Redis expiry batch
    for blob_id in ids:
        await blobs.begin_blob(blob_id, "alice", 1, NOW, 10**6, 10**6)
    assert sorted(await blobs.expire_blobs(NOW, NOW + 1)) == ids


async def test_blob_grants_and_the_last_fetch(store: RelayStore) -> None:
    blobs = store.blobs
    await make_account(store, linked=(1,))
    await make_account(store, "carol")
    await blobs.begin_blob(BLOB[0], "alice", 10, NOW, 1000, 5)
    await blobs.complete_blob(BLOB[0])
    await store.enqueue(send(("bob", 0, b"1"), ("bob", 1, b"1"), blobs=(BLOB[0],)))
    await store.enqueue(send(("bob", 1, b"2"), ("carol", 0, b"2"), blobs=(BLOB[0],)))  # once
    assert [await blobs.may_download(BLOB[0], *d) for d in
            (("bob", 0), ("bob", 1), ("carol", 0), ("carol", 1), ("alice", 0))] == [
        True, True, True, False, False]
    assert await blobs.mark_fetched(BLOB[0], "carol", 1) is None  # never granted
    assert await blobs.mark_fetched(BLOB[0], "bob", 0) is False
    assert await blobs.mark_fetched(BLOB[0], "bob", 0) is False  # twice: counted once
    assert await blobs.mark_fetched(BLOB[0], "carol", 0) is False
    assert await blobs.mark_fetched(BLOB[0], "bob", 1) is True  # the last one
    assert await blobs.may_download(BLOB[0], "bob", 1)  # until the caller deletes it
    await blobs.delete_blob(BLOB[0])
    assert not await blobs.may_download(BLOB[0], "bob", 0)  # grants go with the blob
    assert await blobs.mark_fetched(BLOB[0], "bob", 0) is None
    await blobs.begin_blob(BLOB[0], "alice", 10, NOW, 1000, 5)  # the id may come back
    assert not await blobs.may_download(BLOB[0], "bob", 0)


# -- what the relay keeps for the other transport ---------------------------------------------


LINK = {i: bytes([0x70 + i]) * 16 for i in range(4)}


def stored_link(link: int, account: str = "alice", at: float = NOW) -> StoredLink:
    return StoredLink(LINK[link], account, b"statement %d" % link, b"P" * 64, b"Q" * 64, at)


def entry(kind: str, link: int, record: bytes | None = None, at: float = NOW) -> SharingEntry:
    return SharingEntry(at, kind, LINK[link], f"{kind} {link}", record)


async def test_an_account_has_one_live_link_and_a_link_id_is_spent_once(
        store: RelayStore) -> None:
    links = store.federation
    assert await links.live_link("alice") is None
    await links.add_link(stored_link(0), entry("linked", 0))
    assert await links.live_link("alice") == stored_link(0)
    with pytest.raises(LinkTakenError):  # a second live link
        await links.add_link(stored_link(1), entry("linked", 1))
    with pytest.raises(LinkTakenError):  # the same id for another account
        await links.add_link(stored_link(0, "bob"), entry("linked", 0))
    assert await links.live_link("bob") is None
    unlink = (UNLINK, b"revocation 0")
    assert not await links.revoke_link("alice", LINK[1], NOW + 1, entry("unlinked", 1), unlink)
    assert not await links.revoke_link("bob", LINK[0], NOW + 1, entry("unlinked", 0), unlink)
    assert await links.live_link("alice") == stored_link(0)
    assert await links.sharing_log("alice", 10) == [entry("linked", 0)]
    assert await links.peer_items(10) == []
    assert await links.revoke_link("alice", LINK[0], NOW + 1, entry("unlinked", 0), unlink)
    assert await links.live_link("alice") is None
    assert not await links.revoke_link("alice", LINK[0], NOW + 2, entry("unlinked", 0), unlink)
    with pytest.raises(LinkTakenError):  # a revoked link's id is never accepted again
        await links.add_link(stored_link(0), entry("linked", 0))
    await links.add_link(stored_link(1, at=NOW + 3), entry("linked", 1))
    assert await links.live_link("alice") == stored_link(1, at=NOW + 3)
    assert [e.kind for e in await links.sharing_log("alice", 10)] == ["linked", "unlinked",
                                                                      "linked"]


async def test_the_queue_for_the_social_server_keeps_order_and_the_newest_share(
        store: RelayStore) -> None:
    links = store.federation
    await links.queue_for_peer("alice", SHARE, LINK[0], b"record a1")
    await links.queue_for_peer("bob", UNLINK, LINK[1], b"revocation b")
    await links.queue_for_peer("carol", SHARE, LINK[2], b"record c1")
    await links.queue_for_peer("alice", SHARE, LINK[0], b"record a2")  # replaces a1
    items = await links.peer_items(10)
    assert [(i.account, i.kind, i.link_id, i.body) for i in items] == [
        ("bob", UNLINK, LINK[1], b"revocation b"), ("carol", SHARE, LINK[2], b"record c1"),
        ("alice", SHARE, LINK[0], b"record a2")]
    assert items[0].seq < items[1].seq < items[2].seq
    assert await links.peer_items(2) == items[:2]
    await links.peer_item_done(items[1].seq, entry("shared", 2, b"record c1"))
    await links.peer_item_done(items[0].seq, None)
    assert await links.peer_items(10) == items[2:]
    assert await links.sharing_log("carol", 10) == [entry("shared", 2, b"record c1")]
    assert await links.sharing_log("bob", 10) == []
    await links.peer_item_done(items[0].seq, entry("shared", 1, b"again"))  # gone: no log
    assert await links.sharing_log("bob", 10) == []
    await links.peer_item_done(items[2].seq, entry("shared", 0, b"record a2"))
    await links.queue_for_peer("alice", SHARE, LINK[0], b"record a3")  # a new one, after it
    assert [i.body for i in await links.peer_items(10)] == [b"record a3"]


async def test_unlinking_drops_queued_shares_queues_the_revocation_and_forgets_records(
        store: RelayStore) -> None:
    links = store.federation
    for account, link in (("alice", 0), ("bob", 1)):
        await links.add_link(stored_link(link, account), entry("linked", link))
        await links.queue_for_peer(account, SHARE, LINK[link], b"record %d" % link)
    for item in await links.peer_items(10):
        await links.peer_item_done(item.seq, entry("shared", item.link_id[0] - 0x70,
                                                   item.body))
    await links.queue_for_peer("alice", SHARE, LINK[0], b"second record")
    in_flight = await links.peer_items(10)  # read by the pump before the unlink
    await links.queue_for_peer("bob", SHARE, LINK[1], b"bob's second")
    assert await links.revoke_link("alice", LINK[0], NOW + 5, entry("unlinked", 0),
                                   (UNLINK, b"revocation"))
    queued = await links.peer_items(10)
    assert [(i.account, i.kind, i.body) for i in queued] == [
        ("bob", SHARE, b"bob's second"), ("alice", UNLINK, b"revocation")]
    await links.peer_item_done(in_flight[0].seq, entry("shared", 0, b"second record"))
    log = await links.sharing_log("alice", 10)
    assert [(e.kind, e.summary, e.record) for e in log] == [
        ("linked", "linked 0", None), ("shared", "shared 0", None),
        ("unlinked", "unlinked 0", None)]
    assert await links.sharing_log("bob", 10) == [entry("linked", 1),
                                                  entry("shared", 1, b"record 1")]


async def test_the_sharing_log_gives_the_newest_entries_oldest_first(store: RelayStore) -> None:
    links = store.federation
    await links.add_link(stored_link(0), entry("linked", 0, at=NOW))
    for n in range(1, 6):
        await links.queue_for_peer("alice", SHARE, LINK[0], b"record %d" % n)
        (item,) = await links.peer_items(10)
        await links.peer_item_done(item.seq, entry("shared", 0, item.body, at=NOW + n))
    newest = await links.sharing_log("alice", 3)
    assert [(e.at, e.record) for e in newest] == [(NOW + 3, b"record 3"), (NOW + 4, b"record 4"),
                                                  (NOW + 5, b"record 5")]
    assert len(await links.sharing_log("alice", 100)) == 6
    assert await links.sharing_log("bob", 100) == []


async def test_cross_transport_chats_are_off_until_turned_on(store: RelayStore) -> None:
    links = store.federation
    assert not await links.cross_enabled("alice")
    await links.set_cross_enabled("alice", True)
    await links.set_cross_enabled("alice", True)
    assert await links.cross_enabled("alice") and not await links.cross_enabled("bob")
    await links.set_cross_enabled("alice", False)
    await links.set_cross_enabled("bob", False)
    assert not await links.cross_enabled("alice") and not await links.cross_enabled("bob")


async def test_one_holder_hands_the_queue_over_at_a_time(store: RelayStore) -> None:
    links = store.federation
    first, second = b"first node", b"second node"
    assert await links.claim_hand_over(first, 600.0)
    assert not await links.claim_hand_over(second, 600.0)
    assert await links.claim_hand_over(first, 600.0)  # renewed
    await links.release_hand_over(second)  # not its claim: nothing changes
    assert not await links.claim_hand_over(second, 600.0)
    await links.release_hand_over(first)
    assert await links.claim_hand_over(second, 0.05)
    assert not await links.claim_hand_over(first, 600.0)
    with trio.fail_after(5):
        while not await links.claim_hand_over(first, 600.0):
            await trio.sleep(0.02)  # waiting for the store's clock to pass the claim's TTL
    assert not await links.claim_hand_over(second, 600.0)


# -- Redis only: what expires by itself ---------------------------------------------------------


async def test_redis_link_offers_expire_and_stop_counting(redis_server: LocalRedis) -> None:
    redis_server.flush()
    async with open_backend(redis_server.url()) as (store, _hub):
        assert await store.offer_link(b"\x01" * 16, offer(), 0.05, 1) is None
        assert await store.offer_link(b"\x02" * 16, offer(), 600.0, 1) == LINKS_OF_ACCOUNT
        with trio.fail_after(5):
            while await store.pending_link(b"\x01" * 16) is not None:
                await trio.sleep(0.02)  # waiting for Redis's clock to pass the TTL
        assert await store.offer_link(b"\x02" * 16, offer(), 600.0, 1) is None


async def test_redis_forgets_a_removed_devices_presence_and_claim(redis_server: LocalRedis
                                                                   ) -> None:
    redis_server.flush()
    async with open_backend(redis_server.url()) as (store, _hub):
        await make_account(store, "bob", linked=(1,))
        phone = Address("bob", 1)
        presence, claim = redis_keys.presence_key(phone), redis_keys.claim_key(phone)
        await store.client.set(presence, b"node-one")  # type: ignore[attr-defined]
        await store.client.set(claim, b"3")  # type: ignore[attr-defined]
        await store.replace_device_list("bob", 3, b"list-3", b"S" * 64, {0: KEY[0]}, [], NOW)
        assert await store.client.exists([presence, claim]) == 0  # type: ignore[attr-defined]


class _Hearing:
    """A relay as its hub sees it: serves bob.0, and fails on the first event it hears."""

    def __init__(self) -> None:
        self.heard: list[DeviceEvent] = []

    def hear(self, address: Address, event: DeviceEvent) -> None:
        self.heard.append(event)
        if len(self.heard) == 1:
            raise RuntimeError("a bug acting on one event")

    def hear_link(self, lookup: bytes, device_id: int) -> None:
        return None

    def hear_all_mail(self) -> None:
        return None

    def served(self) -> list[Address]:
        return [Address("bob", 0)]

    def serves(self, address: Address) -> bool:
        return address == Address("bob", 0)

    def links_waiting(self) -> list[bytes]:
        return []


async def test_redis_hub_outlives_a_failure_acting_on_one_event(
        redis_server: LocalRedis) -> None:
    redis_server.flush()
    listener = _Hearing()
    async with open_backend(redis_server.url()) as (_store, hub):
        hub.bind(listener)  # type: ignore[arg-type]
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hub.run)
                await hub._listening.wait()  # type: ignore[attr-defined]
                for n in range(2):
                    await hub.tell(Address("bob", 0), DeviceEvent(PUSH, {"n": n}))
                while len(listener.heard) < 2:
                    await trio.sleep(0.01)  # published: arrives when Redis delivers it
                nursery.cancel_scope.cancel()
    assert [event.detail for event in listener.heard] == [{"n": 0}, {"n": 1}]


async def test_an_account_creates_at_most_its_limit_of_groups(store: RelayStore) -> None:
    """Only a new group id counts, for the account that puts it first; past the limit it is
    refused and nothing is stored, while updates of its groups (by anyone) still pass."""
    ids = [bytes([0x50 + i]) * 16 for i in range(4)]
    for group_id in ids[:3]:
        await put(store, route(1, group_id=group_id), "alice", 3)
    with pytest.raises(GroupLimitError) as refused:
        await put(store, route(1, group_id=ids[3]), "alice", 3)
    assert refused.value.limit == 3
    assert await store.group(ids[3]) is None
    await put(store, route(2, ("alice", "carol"), ids[0]), "alice", 3)  # an update passes
    await put(store, route(3, group_id=ids[1]), "bob", 3)  # another admin's update: alice's
    assert (await store.group(ids[0])) == route(2, ("alice", "carol"), ids[0])
    for group_id in ids[1:3]:
        await put(store, route(9, group_id=group_id), "bob", 2)  # counts for bob: nothing
    await put(store, route(1, group_id=ids[3]), "bob", 3)  # bob's own first group
    with pytest.raises(GroupLimitError):
        await put(store, route(1, group_id=b"\x60" * 16), "alice", 3)
    with pytest.raises(StaleGroupError):  # a stale copy is stale, whatever the count
        await put(store, route(1, group_id=ids[0]), "alice", 3)


async def test_a_group_whose_last_member_left_is_deleted_and_frees_a_place(
        store: RelayStore) -> None:
    ids = [bytes([0x70 + i]) * 16 for i in range(3)]
    for group_id in ids[:2]:
        await put(store, route(1, group_id=group_id), "alice", 2)
    await put(store, route(2, ("bob",), ids[0]), "alice", 2)  # alice left: bob remains
    with pytest.raises(GroupLimitError):
        await put(store, route(1, group_id=ids[2]), "alice", 2)
    with pytest.raises(StaleGroupError):  # an empty copy is compared like any other
        await put(store, route(2, (), ids[0]), "bob", 2)
    await put(store, route(3, (), ids[0]), "bob", 2)  # the last member, bob, left
    assert await store.group(ids[0]) is None
    await put(store, route(1, group_id=ids[2]), "alice", 2)  # alice's place is free again
    assert await store.group(ids[2]) == route(1, group_id=ids[2])
    with pytest.raises(GroupLimitError):
        await put(store, route(1, group_id=ids[0]), "alice", 2)
    await put(store, route(1, (), b"\x7f" * 16), "alice", 2)  # nothing to keep: not counted
    assert await store.group(b"\x7f" * 16) is None


async def test_concurrent_new_groups_stop_at_the_limit(store: RelayStore) -> None:
    """Many new groups of one account at once: the count and the write are one step."""
    outcomes: list[str] = []

    async def create(group_id: bytes) -> None:
        try:
            await put(store, route(1, group_id=group_id), "alice", 3)
            outcomes.append("stored")
        except GroupLimitError:
            outcomes.append("refused")

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(create, bytes([0x80 + i]) * 16)
    assert sorted(outcomes) == ["refused"] * 5 + ["stored"] * 3
    assert sum([await store.group(bytes([0x80 + i]) * 16) is not None
                for i in range(8)]) == 3
