"""Private-transport groups end to end: a real relay and clients, each in its own home."""

from __future__ import annotations

import math
import os
from pathlib import Path

import msgpack
import pytest
import trio

from client.core.connection import ServerError
from client.core.errors import ClientError
from client.private.received import Received
from client.private.session import PrivateClient
from e2e_proto import relay_api as api
from e2e_proto.address import Address
from e2e_proto.constants import GROUP_ROUTING_PREFIX
from e2e_proto.errors import DuplicateMessageError, NoSenderKeyError
from e2e_proto.group_cipher import GroupCipher
from e2e_proto.groups import GroupUpdate
from e2e_proto.media import MEDIA_KIND
from e2e_proto.payload import Payload
from e2e_proto.wire import GroupEnvelope, decode_delivery, encode_group_message
from server.relay.config import RelayConfig
from server.relay.store import GroupRoute
from tests.relay_harness import (
    RunningRelay,
    drain,
    link,
    make_client,
    register,
    session_of,
    start_relay,
)


async def _people(nursery: trio.Nursery, tmp_path: Path, *names: str,
                  db: Path | str | None = None, config: RelayConfig | None = None
                  ) -> tuple[RunningRelay, dict[str, PrivateClient]]:
    """A relay on ``db`` (default: an SQLite file) and ``names`` registered on it."""
    relay = await start_relay(nursery, db or tmp_path / "relay.db", config,
                              blob_dir=tmp_path / "relay-blobs")
    clients = {}
    for name in names:
        clients[name] = make_client(tmp_path / name, relay.port)
        await register(clients[name], name)
    return relay, clients


def _lines(messages: list[Received]) -> list[str]:
    return [f"[{m.group}] {m.sender}: {m.text}" if m.group else f"{m.sender}: {m.text}"
            for m in messages if m.warning is None]


async def _group_envelopes(relay: RunningRelay, account: str, device_id: int = 0
                           ) -> list[GroupEnvelope]:
    """The group messages waiting in a device's mailbox at the relay."""
    found = []
    for item in (await relay.store.pending(account, device_id, 0, 1000)):
        delivery = decode_delivery(item.envelope)
        if isinstance(delivery, GroupEnvelope):
            found.append(delivery)
    return found


async def test_create_send_and_receive(nursery, tmp_path: Path, relay_db) -> None:
    relay, c = await _people(nursery, tmp_path, "alice", "bob", "carol", db=relay_db)
    async with session_of(c["alice"]) as a:
        state = await a.group_create("friends", ["bob", "carol"])
        await a.group_send_text("friends", "hello group")
    assert state.members == ("alice", "bob", "carol") and state.admins == ("alice",)
    assert (await relay.store.group(state.group_id)).members == state.members
    for name in ("bob", "carol"):
        assert _lines(await drain(c[name])) == [
            "[friends] alice: [created the group with bob, carol]",
            "[friends] alice: hello group"]
    async with session_of(c["bob"]) as b:
        await b.group_send_text("friends", "hi from bob")
    assert _lines(await drain(c["alice"])) == ["[friends] bob: hi from bob"]
    assert _lines(await drain(c["carol"])) == ["[friends] bob: hi from bob"]
    # One ciphertext per message: the relay stored the same group message for both.
    assert await drain(c["bob"]) == []


async def test_a_device_left_out_for_a_full_mailbox_gets_the_sender_key_again(
        nursery, tmp_path: Path, relay_db) -> None:
    """bob's mailbox is full when alice first sends to the group: the relay leaves him out of
    her sender key's delivery and of the message, and says so. alice records only the devices
    that stored the key and is told bob missed the message, so once bob collected his mail her
    next message brings the key again and he reads it."""
    relay, c = await _people(nursery, tmp_path, "alice", "bob", "carol", db=relay_db,
                             config=RelayConfig(mailbox_quota=3))
    async with session_of(c["alice"]) as a:
        state = await a.group_create("club", ["bob", "carol"])  # bob: 1 message of 3
        await a.send_text("bob", "one")
        await a.send_text("bob", "two")  # bob: full
        await a.group_send_text("club", "missed")
        own = a.state.sender_keys.load_own_sender_key(state.group_id)
        assert own is not None
        assert a.groups.shared(state.group_id, own.chain_id) == {Address("carol", 0)}
        assert [n for n in a.notices if "bob.0 did not get" in n]
    assert _lines(await drain(c["bob"])) == [
        "[club] alice: [created the group with bob, carol]", "alice: one", "alice: two"]
    assert _lines(await drain(c["carol"])) == [
        "[club] alice: [created the group with bob, carol]", "[club] alice: missed"]
    async with session_of(c["alice"]) as a:
        await a.group_send_text("club", "found")
        assert a.groups.shared(state.group_id, own.chain_id) == {Address("carol", 0),
                                                                 Address("bob", 0)}
    assert _lines(await drain(c["bob"])) == ["[club] alice: found"]
    assert _lines(await drain(c["carol"])) == ["[club] alice: found"]


async def test_a_group_change_a_full_mailbox_missed_is_delivered_again(
        nursery, tmp_path: Path, relay_db) -> None:
    """bob's mailbox is full when alice adds dave: the relay leaves bob out of the change.
    alice is told once, the change stays undelivered for bob alone, and her group commands
    (which deliver pending changes first, in the CLI and the daemon) send it to him, and to no
    one else, until he has room."""
    relay, c = await _people(nursery, tmp_path, "alice", "bob", "carol", "dave", db=relay_db,
                             config=RelayConfig(mailbox_quota=3))
    async with session_of(c["alice"]) as a:
        state = await a.group_create("club", ["bob", "carol"])  # bob: 1 message of 3
        await a.send_text("bob", "one")
        await a.send_text("bob", "two")  # bob: full
        await a.group_add("club", ["dave"])
        told = [n for n in a.notices if "bob.0 did not get the change of 'club'" in n]
        assert len(told) == 1
        assert a.groups.get(state.group_id).resend_to == (Address("bob", 0),)
        await a.deliver_pending_updates()  # bob is still full: no second notice
        assert [n for n in a.notices if "did not get the change" in n] == told
        assert a.groups.get(state.group_id).undelivered
    assert _lines(await drain(c["bob"])) == [
        "[club] alice: [created the group with bob, carol]", "alice: one", "alice: two"]
    assert _lines(await drain(c["carol"])) == [
        "[club] alice: [created the group with bob, carol]", "[club] alice: [added dave]"]
    async with session_of(c["alice"]) as a:
        await a.deliver_pending_updates()
        assert not a.groups.get(state.group_id).undelivered
    assert await relay.store.pending("carol", 0, 0, 10) == []  # bob alone got it again
    assert len(await relay.store.pending("dave", 0, 0, 10)) == 1  # his first copy, unread
    assert _lines(await drain(c["bob"])) == ["[club] alice: [added dave]"]
    async with session_of(c["bob"]) as b:
        assert b.find_group("club").state.members == ("alice", "bob", "carol", "dave")


async def test_removed_member_cannot_read_later_messages(nursery, tmp_path: Path, relay_db) -> None:
    relay, c = await _people(nursery, tmp_path, "alice", "bob", "carol", db=relay_db)
    async with session_of(c["alice"]) as a:
        state = await a.group_create("friends", ["bob", "carol"])
        await a.group_send_text("friends", "before")
    async with session_of(c["bob"]) as b:
        await b.catch_up()
        await b.group_send_text("friends", "bob before")
    async with session_of(c["carol"]) as carol:
        seen: list[Received] = []
        removed = trio.Event()

        def show(message: Received) -> None:
            seen.append(message)
            if "removed carol" in (message.text or ""):
                removed.set()

        async with trio.open_nursery() as inner:
            inner.start_soon(carol.receive, show, math.inf)  # connected and listening
            async with session_of(c["alice"]) as a:
                await a.catch_up()
                await a.group_remove("friends", "carol")
                await a.group_send_text("friends", "after: carol must not read this")
            leaked = await _group_envelopes(relay, "bob")  # as a relay could leak them
            async with session_of(c["bob"]) as b:
                await b.catch_up()
                await b.group_send_text("friends", "bob after")
            with trio.fail_after(10):
                await removed.wait()
            # Carol tries: her client refuses, and so does the relay with her own sender key.
            with pytest.raises(ClientError, match="no group named"):
                await carol.group_send_text("friends", "still here?")
            carol.group_cipher.distribution(state.group_id)
            message = carol.group_cipher.encrypt(state.group_id,
                                                 Payload.new("text", 1, text="x").encode())
            with pytest.raises(ServerError) as refused:
                await carol.connection.request(
                    "group_send", group_id=state.group_id, version=state.version + 1,
                    devices_digest=bytes(32), message=encode_group_message(message))
            assert refused.value.code == api.NOT_GROUP_MEMBER
            inner.cancel_scope.cancel()
    assert _lines(seen) == ["[friends] alice: [created the group with bob, carol]",
                            "[friends] alice: before", "[friends] bob: bob before",
                            "[friends] alice: [removed carol]"]
    # Even given the ciphertexts (as a relay could leak them), carol holds no key for them:
    # both remaining senders rotated before their next message.
    leaked += await _group_envelopes(relay, "alice")
    assert sorted(e.sender.account for e in leaked) == ["alice", "bob"]
    carol_keys = GroupCipher(c["carol"].state.sender_keys)
    for envelope in leaked:
        with pytest.raises(NoSenderKeyError):
            carol_keys.decrypt(envelope.sender, envelope.message)
    assert _lines(await drain(c["bob"])) == [  # taken by catch_up, shown by the next recv
        "[friends] alice: [created the group with bob, carol]", "[friends] alice: before",
        "[friends] alice: [removed carol]", "[friends] alice: after: carol must not read this"]


async def test_new_member_cannot_read_earlier_messages(nursery, tmp_path: Path) -> None:
    relay, c = await _people(nursery, tmp_path, "alice", "bob", "dave")
    async with session_of(c["alice"]) as a:
        await a.group_create("friends", ["bob"])
        await a.group_send_text("friends", "before dave")
    earlier = await _group_envelopes(relay, "bob")
    async with session_of(c["alice"]) as a:
        await a.group_add("friends", ["dave"])
        await a.group_send_text("friends", "dave may read this")
    assert _lines(await drain(c["dave"])) == [
        "[friends] alice: [added you to the group]", "[friends] alice: dave may read this"]
    with pytest.raises(DuplicateMessageError):  # before the chain key dave was given
        GroupCipher(c["dave"].state.sender_keys).decrypt(earlier[0].sender, earlier[0].message)
    assert _lines(await drain(c["bob"])) == [
        "[friends] alice: [created the group with bob]", "[friends] alice: before dave",
        "[friends] alice: [added dave]", "[friends] alice: dave may read this"]


async def test_linked_devices_and_unlink_rotates_the_key(nursery, tmp_path: Path, relay_db) -> None:
    relay, c = await _people(nursery, tmp_path, "alice", "bob", db=relay_db)
    laptop = make_client(tmp_path / "bob-laptop", relay.port)
    assert await link(c["bob"], laptop, "bob", "laptop") == 1
    await drain(laptop)
    async with session_of(c["alice"]) as a:
        state = await a.group_create("friends", ["bob"])
        await a.group_send_text("friends", "to both of bob's devices")
    first_chain = c["alice"].state.sender_keys.load_own_sender_key(state.group_id).chain_id
    assert _lines(await drain(laptop))[-1] == "[friends] alice: to both of bob's devices"
    async with session_of(laptop) as bl:
        await bl.group_send_text("friends", "from the laptop")
    shown = await drain(c["bob"])
    assert _lines(shown)[-2:] == ["[friends] alice: to both of bob's devices",
                                  "[friends] bob: from the laptop"]
    assert shown[-1].outgoing  # bob's own message, from his other device
    async with session_of(c["bob"]) as b:
        await b.unlink(1)
    async with session_of(c["alice"]) as a:
        await a.catch_up()
        await a.group_send_text("friends", "the laptop is gone")
    rotated = c["alice"].state.sender_keys.load_own_sender_key(state.group_id)
    assert rotated.chain_id != first_chain and rotated.iteration == 1
    assert c["alice"].state.groups.shared(state.group_id, rotated.chain_id) == {Address("bob", 0)}
    assert (await relay.store.pending("bob", 1, 0, 10)) == []
    assert _lines(await drain(c["bob"])) == ["[friends] alice: the laptop is gone"]


async def test_forged_membership_changes_change_nothing(nursery, tmp_path: Path) -> None:
    relay, c = await _people(nursery, tmp_path, "alice", "bob", "carol", "mallory")
    async with session_of(c["alice"]) as a:
        state = await a.group_create("friends", ["bob", "carol"])
    await drain(c["carol"])
    # bob (not an admin) signs a change adding mallory and sends it to carol end to end.
    forged = GroupUpdate.sign(state.with_members(["mallory"]), Address("bob", 0),
                              c["bob"].state.protocol.identity_key_pair())
    async with session_of(c["bob"]) as b:
        await b.catch_up()
        await b._deliver_pairwise(state.group_id, forged.to_payload(1).encode(),
                                  [Address("carol", 0)])
    got = await drain(c["carol"])
    assert any("not an admin" in (m.warning or "") for m in got)
    assert c["carol"].state.groups.get(state.group_id).state == state
    # The relay's routing copy is not trusted: one rewritten to add mallory moves nothing.
    rewritten = GroupRoute(state.group_id, state.version + 1, (*state.members, "mallory"),
                           state.admins, b"", b"")
    await relay.store.put_group(rewritten, "alice", 1)
    async with session_of(c["bob"]) as b:
        with pytest.raises(ClientError, match="changed at the relay"):
            await b.group_send_text("friends", "who is here?")
    assert c["bob"].state.groups.get(state.group_id).state == state
    assert (await relay.store.pending("mallory", 0, 0, 10)) == []


async def test_replayed_tampered_and_unsigned_group_messages(nursery, tmp_path: Path) -> None:
    relay, c = await _people(nursery, tmp_path, "alice", "bob")
    async with session_of(c["alice"]) as a:
        await a.group_create("friends", ["bob"])
        for i in range(3):
            await a.group_send_text("friends", f"m{i}")
    stored = [item for item in (await relay.store.pending("bob", 0, 0, 100))
              if isinstance(decode_delivery(item.envelope), GroupEnvelope)]
    m0, m1, m2 = stored
    async with session_of(c["bob"]) as b:
        for _ in range(2):  # the update and the sender key come first, then m2 before m0, m1
            frame = await b.connection.pushes.receive()
            await b._process(frame["seq"], frame["envelope"])
        before = len(c["bob"].state.messages())
        envelope = decode_delivery(m2.envelope)
        tampered = GroupEnvelope(envelope.sender, envelope.message._replace(
            ciphertext=bytes([envelope.message.ciphertext[0] ^ 1])
            + envelope.message.ciphertext[1:]))
        unsigned = GroupEnvelope(envelope.sender, envelope.message._replace(
            signature=bytes(64)))
        forged_sender = GroupEnvelope(Address("bob", 0), envelope.message)
        for bad in (tampered, unsigned, forged_sender):
            notice = await b._process(999, bad.encode())
            assert notice is not None and notice.warning is not None
        assert len(c["bob"].state.messages()) == before
        order = [m2, m0, m1, m2, m0]  # out of order, then replays
        shown = [await b._process(item.seq, item.envelope) for item in order]
    assert [m.text if m else None for m in shown] == ["m2", "m0", "m1", None, None]
    assert len(c["bob"].state.messages()) == before + 3


async def test_leave_rename_and_admins(nursery, tmp_path: Path, relay_db) -> None:
    relay, c = await _people(nursery, tmp_path, "alice", "bob", "carol", db=relay_db)
    async with session_of(c["alice"]) as a:
        state = await a.group_create("friends", ["bob", "carol"])
        with pytest.raises(ClientError, match="already in a group named"):
            await a.group_create("friends", ["bob"])
    async with session_of(c["bob"]) as b:
        await b.catch_up()
        with pytest.raises(ClientError, match="only an admin"):
            await b.group_rename("friends", "bobs")
        await b.group_leave("friends")
    async with session_of(c["alice"]) as a:
        await a.catch_up()
        await a.group_rename("friends", "best friends")
        await a.group_admin("best friends", "carol", True)
        final = await a.group_leave("best friends")
    assert final.members == ("carol",) and final.admins == ("carol",)
    assert final.version == state.version + 4
    assert (await relay.store.group(state.group_id)).members == ("carol",)
    assert _lines(await drain(c["carol"]))[1:] == [
        "[friends] bob: [left]",
        "[best friends] alice: [renamed the group to 'best friends']",
        "[best friends] alice: [made carol an admin]",
        "[best friends] alice: [left]"]
    assert not c["bob"].state.groups.get(state.group_id).state.is_member("bob")


async def test_the_1025th_member_is_refused_by_client_and_relay(nursery, tmp_path: Path) -> None:
    relay, c = await _people(nursery, tmp_path, "alice")
    others = [f"m{i:04d}" for i in range(1024)]
    async with session_of(c["alice"]) as a:
        with pytest.raises(ClientError, match="at most 1024 members"):
            await a.group_create("huge", others)
        body = msgpack.packb([b"\x01" * 16, 1, sorted(["alice", *others]), [0], "alice", 0])
        signature = c["alice"].state.protocol.identity_key_pair().sign(
            GROUP_ROUTING_PREFIX + body)
        with pytest.raises(ServerError) as refused:
            await a.connection.request("group_put", routing=body, signature=signature)
    assert refused.value.code == api.GROUP_TOO_LARGE and "at most 1024" in str(refused.value)
    assert (await relay.store.group(b"\x01" * 16)) is None


async def test_a_device_linked_later_takes_the_groups_and_reads_on(nursery, tmp_path: Path) -> None:
    relay, c = await _people(nursery, tmp_path, "alice", "bob")
    async with session_of(c["alice"]) as a:
        await a.group_create("friends", ["bob"])
        await a.group_send_text("friends", "before the laptop")
    assert _lines(await drain(c["bob"]))[-1] == "[friends] alice: before the laptop"
    laptop = make_client(tmp_path / "bob-laptop", relay.port)
    await link(c["bob"], laptop, "bob", "laptop")
    async with session_of(c["alice"]) as a:
        await a.group_send_text("friends", "after the laptop")  # alice learns of it, shares
    assert _lines(await drain(laptop)) == ["[friends] alice: after the laptop"]


async def test_a_file_to_a_group(nursery, tmp_path: Path, relay_db) -> None:
    """group send-file: one group message announces the blob, the relay grants it to every
    member device it stores the message for (not to others), and deletes it once they all have
    it. Members save it as they would a file sent to them alone."""
    relay, c = await _people(nursery, tmp_path, "alice", "bob", "carol", "dave", db=relay_db)
    source = tmp_path / "plan.pdf"
    source.write_bytes(os.urandom(200_000))
    async with session_of(c["alice"]) as a:
        await a.group_create("club", ["bob", "carol"])
        sent = await a.group_send_file("club", source, caption="the plan")
        blob_id = sent.file.media.blob_id
        with pytest.raises(ServerError) as foreign:  # only a blob this account uploaded
            await a.connection.request("group_send", group_id=bytes(16), version=1,
                                       devices_digest=bytes(32), message=b"",
                                       blobs=[bytes(32)])
        assert foreign.value.code == api.UNKNOWN_BLOB
    assert (sent.group, sent.kind, sent.text) == ("club", MEDIA_KIND, "the plan")
    assert len(await _group_envelopes(relay, "bob")) == 1  # one group message, no pairwise copy
    async with session_of(c["dave"]) as d:  # not a member: nothing granted
        with pytest.raises(ServerError, match="no such file|unknown"):
            await d.connection.request("download", blob_id=blob_id, offset=0)
    for name in ("bob", "carol"):
        got = [m for m in await drain(c[name]) if m.kind == MEDIA_KIND]
        assert [(m.group, m.sender, m.text) for m in got] == [("club", "alice", "the plan")]
        assert got[0].file is not None
        saved = Path(got[0].file.path or "")
        assert saved == tmp_path / name / "files" / "plan.pdf"
        assert saved.read_bytes() == source.read_bytes()
        assert relay.server.blobs.folder.stored() == ([] if name == "carol" else [blob_id])


async def test_the_last_member_leaving_tells_its_other_devices(
        nursery, tmp_path: Path, relay_db) -> None:
    """When the last member leaves, the relay deletes the routing copy (and ``group_deliver``
    knows the group no more): the leaving device tells its account's other devices by ``send``.
    """
    relay, c = await _people(nursery, tmp_path, "alice", "bob", db=relay_db)
    laptop = make_client(tmp_path / "bob-laptop", relay.port)
    await link(c["bob"], laptop, "bob", "laptop")
    await drain(laptop)
    async with session_of(c["alice"]) as a:
        state = await a.group_create("friends", ["bob"])
        await a.group_leave("friends")
    await drain(c["bob"])
    async with session_of(c["bob"]) as b:
        final = await b.group_leave("friends")
    assert final.members == () and await relay.store.group(state.group_id) is None
    assert not c["bob"].state.groups.get(state.group_id).undelivered
    assert _lines(await drain(laptop))[-1] == "[friends] bob: [left]"
    assert laptop.state.groups.get(state.group_id).state == final
