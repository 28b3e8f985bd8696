"""End-to-end tests of the private transport: an in-process relay and real clients."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest
import trio

from client.core.errors import ClientError
from client.private.received import Received
from e2e_proto.address import Address
from e2e_proto.fingerprint import safety_number
from server.relay.config import RelayConfig
from server.relay.store import Enqueue, Outgoing
from tests.relay_harness import (
    drain,
    make_client,
    register,
    relay_with_alice_and_bob,
    session_of,
    start_relay,
)

DRAINING = RelayConfig(bundle_burst_per_target=1000, one_time_prekey_burst=1000)
"""One account may take a device's bundles and one-time prekeys as fast as it likes (the
defaults stop that, tests/test_relay_limits.py): for the tests that use them all up."""


async def test_stored_but_unshown_message_is_shown_on_next_run(nursery, tmp_path: Path,
                                                               relay_db) -> None:
    _, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    async with session_of(alice) as a:
        await a.send_text("bob", "stored, then the terminal closed")
    async with session_of(bob) as b:
        frame = await b.connection.pushes.receive()
        assert await b._process(frame["seq"], frame["envelope"]) is not None
    assert [m.text for m in await drain(bob)] == ["stored, then the terminal closed"]
    assert await drain(bob) == []


async def test_hundred_messages_each_way_in_order_exactly_once(nursery, tmp_path: Path,
                                                               relay_db) -> None:
    _, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    async with session_of(alice) as a, session_of(bob) as b:
        for i in range(100):
            await a.send_text("bob", f"a->b {i}")
            await b.send_text("alice", f"b->a {i}")
    to_bob, to_alice = await drain(bob), await drain(alice)
    assert [m.text for m in to_bob] == [f"a->b {i}" for i in range(100)]
    assert [m.text for m in to_alice] == [f"b->a {i}" for i in range(100)]
    assert {m.sender for m in to_bob} == {"alice"}
    assert await drain(bob) == [] and await drain(alice) == []
    assert len(bob.state.messages("alice")) == 200  # both directions stored on bob's side


async def test_name_taken_and_unknown_user(nursery, tmp_path: Path, relay_db) -> None:
    relay = await start_relay(nursery, relay_db)
    await register(make_client(tmp_path / "a", relay.port), "alice")
    with pytest.raises(ClientError, match="taken"):
        await register(make_client(tmp_path / "b", relay.port), "alice")
    async with session_of(make_client(tmp_path / "a", relay.port)) as session:
        with pytest.raises(ClientError, match="unknown user"):
            await session.send_text("nobody", "hello?")


async def test_not_registered(nursery, tmp_path: Path, relay_db) -> None:
    relay = await start_relay(nursery, relay_db)
    with pytest.raises(ClientError, match="not registered"):
        async with session_of(make_client(tmp_path / "x", relay.port)):
            pass


def relay_files(relay_db: Path | str, request: pytest.FixtureRequest) -> list[Path]:
    """The files the relay's store writes: the SQLite file (and WAL), or Redis's AOF."""
    if isinstance(relay_db, Path):
        return list(relay_db.parent.glob(relay_db.name + "*"))
    folder = request.getfixturevalue("redis_server").folder
    return [path for path in folder.rglob("*.aof") if path.is_file()]


async def test_relay_never_sees_plaintext(nursery, tmp_path: Path, relay_db,
                                          request: pytest.FixtureRequest,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    canary = "canary-" + secrets.token_hex(16)
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db,
                                                       record=True)
    async with session_of(alice) as a:
        for _ in range(3):
            await a.send_text("bob", f"the secret is {canary}")
    async with session_of(bob) as b:
        await b.send_text("alice", canary)
    # Read the relay's files while messages are still stored (bob has not received yet),
    # then again after delivery.
    for stage in ("stored", "delivered"):
        files = relay_files(relay_db, request)
        assert files and sum(path.stat().st_size for path in files) > 1000
        for path in files:
            assert canary.encode() not in path.read_bytes(), (stage, path.name)
        if stage == "stored":
            got = await drain(bob)
            assert [m.text for m in got] == [f"the secret is {canary}"] * 3
    assert (await drain(alice))[0].text == canary
    assert len(relay.received) > 1000
    assert canary.encode() not in bytes(relay.received)
    assert canary not in caplog.text
    assert "connection from" in caplog.text  # the log was captured at all


async def test_offline_queue_order_and_ack_before_delete(nursery, tmp_path: Path, relay_db) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    async with session_of(alice) as a:
        for i in range(5):
            await a.send_text("bob", f"m{i}")
    # Bob connects but does not acknowledge: the relay keeps everything.
    async with bob.session() as b:
        first = await b.connection.pushes.receive()
        assert first["type"] == "deliver"
        assert first["seq"] > 0
    assert len(await relay.store.pending("bob", 0, 0, 100)) == 5
    assert [m.text for m in await drain(bob)] == [f"m{i}" for i in range(5)]
    assert (await relay.store.pending("bob", 0, 0, 100)) == []


async def test_redelivery_after_lost_ack_is_not_shown_twice(nursery, tmp_path: Path,
                                                            relay_db) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    async with session_of(alice) as a:
        await a.send_text("bob", "once")
    shown: list[Received] = []
    async with bob.session() as b:
        frame = await b.connection.pushes.receive()
        # Process (decrypt + store) but lose the ack: close before acknowledging.
        original = b.connection.request

        async def no_ack(kind: str, **fields: object) -> dict:
            if kind == "ack":
                return {}
            return await original(kind, **fields)

        b.connection.request = no_ack  # type: ignore[method-assign]
        received = await b._process(frame["seq"], frame["envelope"])
        assert received is not None and received.text == "once"
        await b._show(shown.append, received)
    assert [m.text for m in shown] == ["once"]
    assert await drain(bob) == []  # redelivered, recognised, acknowledged, not shown again
    assert (await relay.store.pending("bob", 0, 0, 10)) == []
    assert [m.text for m in bob.state.messages("alice")] == ["once"]


async def test_a_redelivery_behind_a_newer_ratchet_chain_is_recognised(
        nursery, tmp_path: Path, relay_db) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    async with session_of(alice) as a:
        await a.send_text("bob", "first")
    [(_, first)] = await relay.store.pending("bob", 0, 0, 10)  # kept, to deliver it again
    assert [m.text for m in await drain(bob)] == ["first"]
    for n in range(3):  # each exchange moves both sides to new ratchet chains
        async with session_of(bob) as b:
            await b.send_text("alice", f"reply {n}")
        await drain(alice)
        async with session_of(alice) as a:
            await a.send_text("bob", f"then {n}")
        assert [m.text for m in await drain(bob)] == [f"then {n}"]
    await relay.store.enqueue(Enqueue([Outgoing("bob", 0, first)], ("alice", 0),
                                      1_700_000_000.0, 100, 10**9))  # the lost ack's redelivery
    assert await drain(bob) == []  # recognised without decrypting: no "cannot be read" notice
    assert await relay.store.pending("bob", 0, 0, 10) == []
    assert [m.text for m in bob.state.messages("alice")] == [
        "first", "reply 0", "then 0", "reply 1", "then 1", "reply 2", "then 2"]


async def test_a_redelivery_of_an_earlier_session_is_recognised(nursery, tmp_path: Path,
                                                                relay_db) -> None:
    """Both sides start a session at once, so each holds two and promotes whichever the other
    used last; a message redelivered after its session went behind the other is a duplicate.

    alice reads "b1" on the session she started, then "b2" on bob's, which becomes current;
    the lost ack's redelivery of "b1" fails on the current session and is a replay on the
    earlier one: recognised, with no "cannot be read" notice.
    """
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    async with session_of(alice) as a, session_of(bob) as b:  # neither has read the other's
        await a.send_text("bob", "a0")
        await b.send_text("alice", "b0")
    assert [m.text for m in await drain(alice)] == ["b0"]  # bob's session is alice's current
    assert [m.text for m in await drain(bob)] == ["a0"]  # and alice's is bob's
    async with session_of(alice) as a, session_of(bob) as b:
        await a.send_text("bob", "a1")
        await b.send_text("alice", "b1")
    [(_, b1)] = await relay.store.pending("alice", 0, 0, 10)  # kept, to deliver it again
    assert [m.text for m in await drain(alice)] == ["b1"]
    first_base_key = alice.state.protocol.load_session(Address("bob", 0)).base_key
    assert [m.text for m in await drain(bob)] == ["a1"]
    async with session_of(bob) as b:
        await b.send_text("alice", "b2")
    assert [m.text for m in await drain(alice)] == ["b2"]
    record = alice.state.protocol.load_session(Address("bob", 0))
    assert [p.base_key for p in record.previous] == [first_base_key]  # "b1"'s went behind
    await relay.store.enqueue(Enqueue([Outgoing("alice", 0, b1)], ("bob", 0),
                                      1_700_000_000.0, 100, 10**9))  # the lost ack's redelivery
    assert await drain(alice) == []  # recognised: no "cannot be read" notice
    assert await relay.store.pending("alice", 0, 0, 10) == []
    assert [m.text for m in alice.state.messages("bob")] == ["a0", "b0", "a1", "b1", "b2"]


async def test_opks_handed_out_once_and_replenished(nursery, tmp_path: Path, relay_db) -> None:
    relay = await start_relay(nursery, relay_db, DRAINING)
    bob = make_client(tmp_path / "bob", relay.port)
    await register(bob, "bob")
    await register(make_client(tmp_path / "alice", relay.port), "alice")
    async with session_of(make_client(tmp_path / "alice", relay.port)) as a:
        seen = set()
        for _ in range(85):
            response = await a.connection.request("fetch_bundles", account="bob")
            opk_id = response["bundles"][0][5]
            assert opk_id not in seen
            seen.add(opk_id)
    assert len(seen) == 85
    # Bob is told his OPKs run low when he is online; here he tops up on his next session.
    async with session_of(bob) as b:
        count = (await b.connection.request("publish_prekeys"))["one_time_prekeys"]
    assert count == 100


async def test_spk_only_bundle_when_opks_run_out(nursery, tmp_path: Path, relay_db) -> None:
    _, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, DRAINING, db=relay_db)
    async with session_of(alice) as a:
        for _ in range(100):
            await a.connection.request("fetch_bundles", account="bob")
        response = await a.connection.request("fetch_bundles", account="bob")
        assert response["bundles"][0][5] is None
        await a.send_text("bob", "via spk only")
    assert [m.text for m in await drain(bob)] == ["via spk only"]


async def test_prekeys_low_push_tops_up_online_owner(nursery, tmp_path: Path, relay_db) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(  # a budget that reaches the watermark
        nursery, tmp_path, RelayConfig(bundle_burst_per_target=1000, one_time_prekey_burst=95),
        db=relay_db)
    async with session_of(bob) as b, session_of(alice) as a:
        for _ in range(95):
            await a.connection.request("fetch_bundles", account="bob")
        await a.send_text("bob", "wake up")
        got: list[Received] = []
        with trio.fail_after(10):
            async with trio.open_nursery() as inner:
                async def until_message(message: Received) -> None:
                    got.append(message)
                    inner.cancel_scope.cancel()
                inner.start_soon(b.receive, until_message, float("inf"))
        assert got[0].text == "wake up"
    assert (await relay.store.take_bundle("bob", 0))[1] >= 90


async def test_safety_numbers_match(nursery, tmp_path: Path, relay_db) -> None:
    _, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    async with session_of(alice) as a:
        await a.device_list("bob")
    async with session_of(bob) as b:
        await b.device_list("alice")
    alice_keys = (alice.state.contact("alice")[0], alice.state.contact("bob")[0])
    bob_keys = (bob.state.contact("bob")[0], bob.state.contact("alice")[0])
    assert safety_number("alice", alice_keys[0], "bob", alice_keys[1]) == safety_number(
        "bob", bob_keys[0], "alice", bob_keys[1])


async def test_quota_refuses_and_stores_nothing(nursery, tmp_path: Path, relay_db) -> None:
    relay, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path,
                                                     RelayConfig(mailbox_quota=3))
    async with session_of(alice) as a:
        for i in range(3):
            await a.send_text("bob", f"m{i}")
        with pytest.raises(ClientError, match="quota_exceeded|full"):
            await a.send_text("bob", "one too many")
    assert len(await relay.store.pending("bob", 0, 0, 10)) == 3


async def test_ttl_expires_old_mail(nursery, tmp_path: Path, relay_db) -> None:
    now = [1_000_000.0]
    relay = await start_relay(nursery, relay_db, RelayConfig(mailbox_ttl=60))
    relay.server.clock = lambda: now[0]
    alice = make_client(tmp_path / "alice", relay.port)
    await register(alice, "alice")
    await register(make_client(tmp_path / "bob", relay.port), "bob")
    async with session_of(alice) as a:
        await a.send_text("bob", "old")
        now[0] += 61
        await a.send_text("bob", "new")
    assert (await relay.store.expire(now[0] - 60)) == 1
    assert [m.text for m in await drain(make_client(tmp_path / "bob", relay.port))] == ["new"]


async def test_relay_restart_in_process_loses_nothing(nursery, tmp_path: Path, relay_db) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    async with session_of(alice) as a:
        for i in range(10):
            await a.send_text("bob", f"before {i}")
    await relay.stop()
    relay = await start_relay(nursery, relay_db, port=relay.port)
    async with session_of(alice) as a:
        for i in range(10):
            await a.send_text("bob", f"after {i}")
    got = [m.text for m in await drain(bob)]
    assert got == [f"before {i}" for i in range(10)] + [f"after {i}" for i in range(10)]


class ProcessDied(Exception):
    """Stands for the client process being killed at that point."""


async def test_client_killed_between_decrypt_and_ack(nursery, tmp_path: Path, relay_db) -> None:
    """After a restart the message is shown once and the ratchet goes on from the commit."""
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    async with session_of(alice) as a:
        for i in range(3):
            await a.send_text("bob", f"m{i}")
    async with bob.session() as b:
        frame = await b.connection.pushes.receive()
        original = b.connection.request

        async def die_on_ack(kind: str, **fields: object) -> dict:
            if kind == "ack":  # decrypted and committed; the process dies before the ack
                raise ProcessDied
            return await original(kind, **fields)

        b.connection.request = die_on_ack  # type: ignore[method-assign]
        with pytest.raises(ProcessDied):
            await b._process(frame["seq"], frame["envelope"])
    bob.state.close()
    restarted = make_client(tmp_path / "bob", relay.port)  # a new process: state from disk
    assert [m.text for m in await drain(restarted)] == ["m0", "m1", "m2"]
    async with session_of(alice) as a:
        await a.send_text("bob", "m3")
    assert [m.text for m in await drain(restarted)] == ["m3"]
    assert [m.text for m in restarted.state.messages("alice")] == ["m0", "m1", "m2", "m3"]
