"""Calls on the private transport, in process: an in-process relay, a forwarding unit on real
UDP sockets and clients with their own homes (real time: each call lasts a second or two).

What is proved: a one-to-one call rings and carries every frame end to end; a newcomer cannot
open frames sent before it joined and a leaver cannot open frames sent after it left (checked
on what the unit forwarded); the 9th participant is refused by the relay and by the client; the
random content of frames and keys never reaches the unit or the relay in the clear; a
participant whose media stops is timed out and the others move to a new key; the unit
restarting mid-call makes the clients join it again.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import trio

from client.core.calls import CallInfo, CallReport
from client.core.connection import ServerError
from client.core.errors import ClientError
from e2e_proto import call_packets as packets
from e2e_proto.address import Address
from e2e_proto.call_media import AUDIO_PROFILE, VIDEO_PROFILE
from e2e_proto.errors import MalformedError, UnknownKeyIdError
from e2e_proto.primitives import system_random
from e2e_proto.sframe import decode_header, split_sender_key_kid
from server.calls.registry import CallRegistry
from server.calls.sfu import SfuConfig
from tests.call_harness import (
    open_call,
    phones,
    run_open_call,
    start_relay_with_calls,
    start_sfu,
)
from tests.relay_harness import make_client, register


async def _clients(tmp_path: Path, port: int, *names: str) -> list:
    clients = [make_client(tmp_path / name, port) for name in names]
    for client, name in zip(clients, names, strict=True):
        await register(client, name)
    return clients


def _sframe_of(data: bytes, pid: int) -> bytes | None:
    """The SFrame ciphertext of ``pid``'s MEDIA datagram ``data`` (None: not one)."""
    try:
        kind, sender, _ = packets.sealed_head(data)
    except MalformedError:
        return None
    if kind != packets.MEDIA or sender != pid:
        return None
    return data[packets.MEDIA_HEAD_SIZE:-16]


def _kid_of(data: bytes, pid: int) -> tuple[int, int] | None:
    sframe = _sframe_of(data, pid)
    return None if sframe is None else split_sender_key_kid(decode_header(sframe)[0])


async def test_one_to_one_call_rings_and_carries_every_frame(nursery: trio.Nursery,
                                                             tmp_path: Path) -> None:
    unit = await start_sfu(nursery)
    relay = await start_relay_with_calls(nursery, tmp_path / "relay.db", unit.grant)
    alice, bob = await _clients(tmp_path, relay.port, "alice", "bob")
    reports: dict[str, CallReport] = {}
    async with phones(alice, bob) as (a, b):
        grant = await a.session.call_start("bob")
        assert grant.e2e and grant.limit == 8
        assert list(grant.participants.values()) == [Address("alice", 0)]

        async def alice_call() -> None:
            reports["alice"] = await a.session.run_call(grant, VIDEO_PROFILE, 2.0, peer="bob")

        async with trio.open_nursery() as calls:
            calls.start_soon(alice_call)
            await b.rang.wait()
            ring = b.shown[-1]
            assert (ring.kind, ring.sender, ring.id) == ("call", "alice", grant.call_id)
            assert "e2e-chat call --answer" in ring.text
            [info] = await b.session.calls_ringing()
            assert (info.caller, info.participants, info.joined) == (Address("alice", 0), 1,
                                                                    False)
            joined = await b.session.call_join(info)
            assert joined.participants == {1: Address("alice", 0), 2: Address("bob", 0)}
            reports["bob"] = await b.session.run_call(joined, VIDEO_PROFILE, 1.0, peer="alice")
    [from_bob] = reports["alice"].participants
    [from_alice] = reports["bob"].participants
    assert from_bob.address == Address("bob", 0) and from_alice.address == Address("alice", 0)
    assert from_bob.received == reports["bob"].sent  # every frame, decrypted and checked
    assert (from_bob.lost, from_bob.failed, from_bob.no_key) == (0, 0, 0)
    assert 0 < from_alice.received < reports["alice"].sent  # only what was sent after the join
    assert (from_alice.failed, from_alice.no_key) == (0, 0)
    assert from_alice.p99_ms is not None and from_alice.p99_ms < 1000
    stats = unit.sfu.stats
    assert (stats.bad_tag, stats.replayed, stats.unknown_address, stats.dropped) == (0, 0, 0, 0)
    assert stats.joins == 2 and not unit.sfu.rooms  # both left: the call is gone at the unit


async def test_newcomers_cannot_open_earlier_frames_nor_leavers_later_ones(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    unit = await start_sfu(nursery, record=True)
    relay = await start_relay_with_calls(nursery, tmp_path / "relay.db", unit.grant)
    alice, bob, carol = await _clients(tmp_path, relay.port, "alice", "bob", "carol")
    async with phones(alice, bob, carol) as (a, b, c):
        await a.session.group_create("trio", ["bob", "carol"])
        for phone in (b, c):  # each has taken the group in before the call
            await phone.until(lambda item: item.group == "trio")
        grant = await a.session.call_start(group="trio")
        group_id = a.session.find_group("trio").state.group_id
        alice_call = open_call(a.session, grant, AUDIO_PROFILE, group_id=group_id)
        async with trio.open_nursery() as calls:
            calls.start_soon(run_open_call, a.session, alice_call, 3.0)
            await alice_call.streaming.wait()
            info = next(i for i in await b.session.calls_ringing() if i.call_id == grant.call_id)
            bob_call = open_call(b.session, await b.session.call_join(info), AUDIO_PROFILE,
                                 group_id=group_id)
            calls.start_soon(run_open_call, b.session, bob_call, 1.2)
            await unit.until(lambda data: _kid_of(data, grant.participant) == (0, 1))
            carol_call = open_call(c.session, await c.session.call_join(info), AUDIO_PROFILE,
                                   group_id=group_id)
            await run_open_call(c.session, carol_call, 2.0)
    by_kid: dict[tuple[int, int], list[bytes]] = {}
    for data in unit.received:
        sframe = _sframe_of(data, grant.participant)
        if sframe is not None:
            by_kid.setdefault(split_sender_key_kid(decode_header(sframe)[0]), []).append(sframe)
    # alice: (0, 0) alone, (0, 1) after bob joined, (0, 2) after carol, (1, 0) after bob
    # left, (2, 0) after carol left
    assert {(0, 0), (0, 1), (0, 2), (1, 0)} <= set(by_kid)

    def opens(call: object, kid: tuple[int, int]) -> list[bool]:
        results = []
        for sframe in by_kid[kid]:
            try:
                call.keys.decrypt(grant.participant, sframe)  # type: ignore[attr-defined]
                results.append(True)
            except UnknownKeyIdError:
                results.append(False)
        return results

    assert not any(opens(carol_call, (0, 0))) and not any(opens(carol_call, (0, 1)))
    assert all(opens(carol_call, (0, 2))) and all(opens(carol_call, (1, 0)))
    assert not any(opens(bob_call, (0, 0)))  # bob joined after these too
    assert all(opens(bob_call, (0, 1))) and all(opens(bob_call, (0, 2)))
    assert not any(opens(bob_call, (1, 0)))  # sent after bob left


async def test_the_ninth_participant_is_refused_by_the_relay_and_the_client(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    unit = await start_sfu(nursery)
    relay = await start_relay_with_calls(nursery, tmp_path / "relay.db", unit.grant)
    names = [f"p{i}" for i in range(9)]
    clients = await _clients(tmp_path, relay.port, *names)
    async with contextlib.AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(c.session()) for c in clients]
        await sessions[0].group_create("nine", names[1:])
        grant = await sessions[0].call_start(group="nine")
        for session in sessions[1:8]:
            infos = await session.calls_ringing()
            await session.call_join(infos[0])
        [info] = await sessions[8].calls_ringing()
        assert info.participants == 8
        with pytest.raises(ClientError, match="at most 8 participants"):
            await sessions[8].call_join(info)  # refused here, before asking
        with pytest.raises(ServerError) as refused:  # and by the relay, asked directly
            await sessions[8].connection.request("call_join", call_id=grant.call_id)
        assert refused.value.code == "call_full" and refused.value.details["limit"] == 8
        early = CallInfo(grant.call_id, info.caller, 7, 8, True, info.group)
        with pytest.raises(ClientError, match="the call is full"):
            await sessions[8].call_join(early)  # the client tells the relay's refusal clearly
        assert len(relay.server.calls.get(grant.call_id).participants) == 8


async def test_a_relay_offering_a_call_it_keys_itself_is_refused(
        nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unit = await start_sfu(nursery)
    relay = await start_relay_with_calls(nursery, tmp_path / "relay.db", unit.grant)
    alice, bob = await _clients(tmp_path, relay.port, "alice", "bob")
    honest = CallRegistry.token

    def downgraded(self: CallRegistry, call: Any, participant: Any) -> dict[str, Any]:
        return {**honest(self, call, participant), "e2e": False, "keys": []}

    monkeypatch.setattr(CallRegistry, "token", downgraded)  # a relay turned hostile
    async with alice.session() as session:
        with pytest.raises(ClientError, match="without end-to-end encryption"):
            await session.call_start("bob")


async def test_no_frame_content_or_key_reaches_the_unit_or_the_relay_in_clear(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    unit = await start_sfu(nursery, record=True)
    relay = await start_relay_with_calls(nursery, tmp_path / "relay.db", unit.grant,
                                         record=True)
    alice, bob = await _clients(tmp_path, relay.port, "alice", "bob")
    secrets: list[bytes] = []

    def canary_random(size: int) -> bytes:
        value = system_random(size)
        if size >= 32:  # frame contents (140 B) and base keys (32 B); not public nonces
            secrets.append(value)
        return value

    async with phones(alice, bob) as (a, b):
        grant = await a.session.call_start("bob")
        async with trio.open_nursery() as calls:
            calls.start_soon(lambda: a.session.run_call(grant, AUDIO_PROFILE, 1.5, peer="bob",
                                                        random=canary_random))
            await b.rang.wait()
            joined = await b.session.call_join((await b.session.calls_ringing())[0])
            report = await b.session.run_call(joined, AUDIO_PROFILE, 1.0, peer="alice",
                                              random=canary_random)
    assert report.participants[0].received > 0
    at_unit = b"".join(unit.received)
    at_relay = bytes(relay.received)
    assert grant.token in at_unit and joined.token not in at_relay  # what each one saw
    media = sum(1 for d in unit.received if packets.sealed_head(d)[0] == packets.MEDIA)
    assert len(secrets) >= media > 50
    for secret in secrets:
        for start in range(0, len(secret) - 15, 8):
            window = secret[start:start + 16]
            assert window not in at_unit and window not in at_relay


async def test_a_participant_whose_media_stops_is_timed_out_and_the_key_moves_on(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    unit = await start_sfu(nursery, SfuConfig(participant_timeout=0.5, tick_interval=0.05))
    relay = await start_relay_with_calls(nursery, tmp_path / "relay.db", unit.grant)
    alice, bob = await _clients(tmp_path, relay.port, "alice", "bob")
    async with phones(alice, bob) as (a, b):
        grant = await a.session.call_start("bob")
        alice_call = open_call(a.session, grant, AUDIO_PROFILE, peer="bob")
        async with trio.open_nursery() as calls:
            calls.start_soon(run_open_call, a.session, alice_call, 2.5)
            await b.rang.wait()
            joined = await b.session.call_join((await b.session.calls_ringing())[0])
            bob_call = open_call(b.session, joined, AUDIO_PROFILE, peer="alice")

            async def bob_runs(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
                with trio.CancelScope() as scope:
                    task_status.started(scope)
                    await run_open_call(b.session, bob_call, 10.0)

            vanish = await calls.start(bob_runs)
            await bob_call.streaming.wait()
            vanish.cancel()  # bob's media stops, no LEAVE; his relay connection stays open
    assert any("timed out" in n for n in alice_call.notices), alice_call.notices
    assert split_sender_key_kid(alice_call.keys.own_key.kid)[0] == 1  # a new key, not for bob
    assert unit.sfu.stats.timeouts == 1


async def test_the_unit_restarting_mid_call_makes_the_clients_join_again(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    first = await start_sfu(nursery)
    relay = await start_relay_with_calls(nursery, tmp_path / "relay.db", first.grant)
    alice, bob = await _clients(tmp_path, relay.port, "alice", "bob")
    reports: dict[str, CallReport] = {}
    async with phones(alice, bob) as (a, b):
        grant = await a.session.call_start("bob")
        alice_call = open_call(a.session, grant, AUDIO_PROFILE, peer="bob")

        async def alice_runs() -> None:
            reports["alice"] = await run_open_call(a.session, alice_call, 4.0)

        async with trio.open_nursery() as calls:
            calls.start_soon(alice_runs)
            await b.rang.wait()
            joined = await b.session.call_join((await b.session.calls_ringing())[0])
            bob_call = open_call(b.session, joined, AUDIO_PROFILE, peer="alice")
            calls.start_soon(run_open_call, b.session, bob_call, 3.5)
            await bob_call.streaming.wait()
            await first.stop()
            second = await start_sfu(nursery, port=first.grant.port)
    assert alice_call.rejoins >= 1 and bob_call.rejoins >= 1
    assert second.sfu.stats.joins == 2 and second.sfu.stats.forwarded > 20
    [from_bob] = reports["alice"].participants
    assert from_bob.failed == 0 and from_bob.received > 20
