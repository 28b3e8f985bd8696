"""Calls on the social transport, in process: a group call the server keys (and says so), an
end-to-end call in a secret conversation whose keys the server never sees, the 51st participant
refused by the server and by the client, and a client that refuses a server-keyed call in a
conversation it knows is secret."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import trio

from client.core.calls import CallReport
from client.core.connection import ServerError
from client.core.errors import ClientError
from e2e_proto.call_media import AUDIO_PROFILE
from e2e_proto.primitives import system_random
from tests.call_harness import phones, start_sfu, start_social_with_calls
from tests.social_harness import make_client, register


async def _clients(tmp_path: Path, port: int, *names: str) -> list:
    clients = [make_client(tmp_path / name, port) for name in names]
    for client, name in zip(clients, names, strict=True):
        await register(client, name)
    return clients


async def test_a_group_call_is_server_keyed_and_says_so(nursery: trio.Nursery,
                                                       tmp_path: Path) -> None:
    unit = await start_sfu(nursery)
    social = await start_social_with_calls(nursery, tmp_path / "social.db", unit.grant)
    alice, bob, carol = await _clients(tmp_path, social.port, "alice", "bob", "carol")
    reports: dict[str, CallReport] = {}
    async with phones(alice, bob, carol) as (a, b, c):
        await a.session.group_create("friends", ["bob", "carol"])
        grant = await a.session.call_start("friends")
        assert not grant.e2e and grant.limit == 50
        assert [k.participant for k in grant.keys] == [grant.participant]

        async def alice_call() -> None:
            reports["alice"] = await a.session.run_call(grant, AUDIO_PROFILE, 2.0)

        async with trio.open_nursery() as calls:
            calls.start_soon(alice_call)
            ring = await b.until(lambda item: item.kind == "call")
            assert ring.conversation == "friends" and "not end-to-end encrypted" in ring.text
            [info] = await b.session.calls_ringing()
            assert info.group == "friends" and not info.e2e
            joined = await b.session.call_join(info)
            assert {k.participant for k in joined.keys} == {1, 2}
            reports["bob"] = await b.session.run_call(joined, AUDIO_PROFILE, 1.0)
        await c.until(lambda item: item.kind == "call")
    [from_alice] = reports["bob"].participants
    assert from_alice.received > 20 and from_alice.failed == 0
    [from_bob] = reports["alice"].participants
    assert from_bob.received == reports["bob"].sent and not reports["alice"].e2e


async def test_a_call_in_a_secret_conversation_is_end_to_end(nursery: trio.Nursery,
                                                            tmp_path: Path) -> None:
    unit = await start_sfu(nursery, record=True)
    social = await start_social_with_calls(nursery, tmp_path / "social.db", unit.grant,
                                           record=True)
    alice, bob = await _clients(tmp_path, social.port, "alice", "bob")
    keys: list[bytes] = []

    def key_random(size: int) -> bytes:
        value = system_random(size)
        if size == 32:
            keys.append(value)
        return value

    reports: dict[str, CallReport] = {}
    async with phones(alice, bob) as (a, b):
        await a.session.make_secret("bob")
        grant = await a.session.call_start("bob")
        assert grant.e2e and grant.keys == ()

        async def alice_call() -> None:
            reports["alice"] = await a.session.run_call(grant, AUDIO_PROFILE, 2.0, peer="bob",
                                                        random=key_random)

        async with trio.open_nursery() as calls:
            calls.start_soon(alice_call)
            await b.rang.wait()
            joined = await b.session.call_join((await b.session.calls_ringing())[0])
            reports["bob"] = await b.session.run_call(joined, AUDIO_PROFILE, 1.0,
                                                      peer="alice", random=key_random)
    [from_alice] = reports["bob"].participants
    assert from_alice.received > 20 and (from_alice.failed, from_alice.no_key) == (0, 0)
    assert reports["alice"].participants[0].received == reports["bob"].sent
    assert keys  # the base keys were made here, and neither server saw one
    for key in keys:
        assert key not in bytes(social.received) and key not in b"".join(unit.received)


async def test_the_51st_participant_is_refused_by_the_server_and_the_client(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    unit = await start_sfu(nursery)
    social = await start_social_with_calls(nursery, tmp_path / "social.db", unit.grant)
    names = [f"m{i}" for i in range(51)]
    clients = await _clients(tmp_path, social.port, *names)
    async with contextlib.AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(c.session()) for c in clients]
        await sessions[0].group_create("crowd", names[1:])
        grant = await sessions[0].call_start("crowd")
        for session in sessions[1:50]:
            await session.call_join((await session.calls_ringing())[0])
        [info] = await sessions[50].calls_ringing()
        assert info.participants == 50
        with pytest.raises(ClientError, match="at most 50 participants"):
            await sessions[50].call_join(info)
        with pytest.raises(ServerError) as refused:
            await sessions[50].connection.request("call_join", call_id=grant.call_id)
        assert refused.value.code == "call_full" and refused.value.details["limit"] == 50


async def test_a_server_keyed_call_in_a_conversation_known_secret_is_refused(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    unit = await start_sfu(nursery)
    social = await start_social_with_calls(nursery, tmp_path / "social.db", unit.grant)
    alice, _ = await _clients(tmp_path, social.port, "alice", "bob")
    alice.state.mark_secret("bob")  # this device knows the conversation is secret
    async with alice.session() as session:
        with pytest.raises(ClientError, match="is secret, but the server offered"):
            await session.call_start("bob")
        assert len(social.server.calls) == 0  # and it left the call it was put in
