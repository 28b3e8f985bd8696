"""End-to-end tests of the social transport: an in-process social server and real clients."""

from __future__ import annotations

import dataclasses
import logging
import secrets
from pathlib import Path

import pytest

from client.core.connection import ServerError
from client.core.errors import ClientError
from client.social.session import SocialClient
from client.social.state import SocialEvent
from e2e_proto import social_api as api
from e2e_proto.capabilities import CAPABILITIES, SOCIAL
from tests.social_harness import (
    FAST,
    drain,
    login,
    make_client,
    raw,
    raw_register,
    register,
    session_of,
    start_social,
)


def _kinds(events: list[SocialEvent]) -> list[tuple[str, int | None]]:
    return [(e.kind, e.message) for e in events]


async def _devices(tmp_path: Path, port: int, name: str) -> list[SocialClient]:
    """Three devices of ``name``: the first registers, the others log in."""
    devices = [make_client(tmp_path / f"{name}{i}", port) for i in range(3)]
    assert await register(devices[0], name) == 0
    assert [await login(d, name) for d in devices[1:]] == [1, 2]
    return devices


async def test_three_devices_each_messages_reactions_pins_then_restart(
        nursery, tmp_path: Path) -> None:
    db = tmp_path / "social.db"
    social = await start_social(nursery, db)
    alice = await _devices(tmp_path, social.port, "alice")
    bob = await _devices(tmp_path, social.port, "bob")

    async with session_of(alice[0]) as a:
        hello = await a.send_text("bob", "hello bob, lunch on thursday?")
    async with session_of(bob[1]) as b:
        reply = await b.send_text("alice", "thursday works")
        assert await b.react(hello, "👍")
    async with session_of(bob[2]) as b:
        assert await b.react(hello, "❤️")  # replaces bob's reaction: one per user
    async with session_of(alice[2]) as a:
        assert await a.pin(reply)
        assert await a.react(reply, "🎉")
        assert not await a.pin(reply)  # pinned already

    # Every device sees every event but those it caused itself, in order, exactly once.
    everything = [("message", hello, ("alice", 0)), ("message", reply, ("bob", 1)),
                  ("reaction", hello, ("bob", 1)), ("reaction", hello, ("bob", 2)),
                  ("pin", reply, ("alice", 2)), ("reaction", reply, ("alice", 2))]
    for device in alice + bob:
        me = (device.state.account, device.state.device_id)
        got = await drain(device)
        assert _kinds(got) == [(kind, m) for kind, m, actor in everything if actor != me]
        assert await drain(device) == []  # acknowledged: nothing twice
    got = await drain(bob[0])
    assert got == []
    late = make_client(tmp_path / "bob-late", social.port)  # a fourth device, logged in now:
    assert await login(late, "bob") == 3                   # it starts after the backlog
    assert await drain(late) == []

    await social.stop()
    social = await start_social(nursery, db)
    fresh = make_client(tmp_path / "alice0", social.port)  # same home, new server process
    async with session_of(fresh) as a:
        messages, more = await a.history("bob")
        assert not more
        assert [(m.id, m.sender, m.text) for m in messages] == [
            (hello, "alice", "hello bob, lunch on thursday?"), (reply, "bob", "thursday works")]
        assert messages[0].reactions == [("bob", "❤️")]
        assert messages[1].reactions == [("alice", "🎉")] and messages[1].pinned
        assert [m.id for m in await a.pins("bob")] == [reply]
        assert [m.id for m in await a.search("THURSDAY")] == [reply, hello]
        assert [m.id for m in await a.search("lunch thursday")] == [hello]
        assert await a.search("dinner") == []
        assert await a.unreact(reply) and not await a.unreact(reply)
        assert await a.unpin(reply)
    async with session_of(make_client(tmp_path / "bob2", social.port)) as b:
        messages, _ = await b.history("alice")
        assert messages[1].reactions == [] and not messages[1].pinned
        assert [m.id for m in await b.search("lunch")] == [hello]
    for device in bob:
        reopened = make_client(device.state.home, social.port)
        assert _kinds(await drain(reopened)) == [("reaction", reply), ("unpin", reply)]


async def test_history_pages_with_before(nursery, tmp_path: Path) -> None:
    social = await start_social(nursery, tmp_path / "social.db")
    alice = make_client(tmp_path / "alice", social.port)
    await register(alice, "alice")
    await raw_register(social.port, "bob")
    async with session_of(alice) as a:
        ids = [await a.send_text("bob", f"message {i}") for i in range(7)]
        page, more = await a.history("bob", limit=3)
        assert [m.id for m in page] == ids[4:] and more
        page, more = await a.history("bob", before=page[0].id, limit=3)
        assert [m.id for m in page] == ids[1:4] and more
        page, more = await a.history("bob", before=page[0].id, limit=3)
        assert [m.id for m in page] == ids[:1] and not more


async def test_group_of_250_works_and_251st_member_is_refused(nursery, tmp_path: Path) -> None:
    limit = CAPABILITIES[SOCIAL].max_group_members
    assert limit == 250
    social = await start_social(nursery, tmp_path / "social.db",  # 251 accounts from one address
                                dataclasses.replace(FAST, registration_burst=limit + 1))
    owner = make_client(tmp_path / "owner", social.port)
    await register(owner, "owner")
    member = make_client(tmp_path / "m001", social.port)
    await register(member, "m001")
    names = [f"m{i:03}" for i in range(2, limit + 1)]  # 249 more accounts: 251 in all
    tokens = {name: (await raw_register(social.port, name))["token"] for name in names}
    first_249 = ["m001", *names[:-1]]  # with the owner: 250
    async with session_of(owner) as o:
        with pytest.raises(ClientError, match="at most 250 members"):
            await o.group_create("too-big", ["m001", *names])
        info = await o.group_create("everyone", first_249)
        assert len(info["members"]) == limit
        with pytest.raises(ClientError, match="group_too_large"):
            await o.group_add("everyone", [names[-1]])
        sent = await o.send_text("everyone", "welcome, all 250 of you")
    async with raw(social.port) as connection:  # the server refuses on its own as well
        await connection.request("auth", token=tokens[names[-1]])
        with pytest.raises(ServerError) as refused:
            await connection.request("group_create", name="too-big",
                                     members=["owner", "m001", *names[:-1]])
        assert refused.value.code == api.GROUP_TOO_LARGE
        with pytest.raises(ServerError) as refused:
            await connection.request("history", conversation="everyone")
        assert refused.value.code == api.NOT_MEMBER
    group = social.store.group("everyone")
    assert group is not None and len(group.members) == limit
    assert names[-1] not in group.members and names[-2] in group.members
    got = await drain(member)
    assert [(e.kind, e.conversation) for e in got] == [("group", "everyone"),
                                                       ("message", "everyone")]
    assert got[1].message == sent and got[1].text == "welcome, all 250 of you"
    async with raw(social.port) as connection:  # the last member in reads the history too
        await connection.request("auth", token=tokens[names[-2]])
        page = await connection.request("history", conversation="everyone")
        assert [m["text"] for m in page["messages"]] == ["welcome, all 250 of you"]


async def test_secret_conversation_leaves_no_plaintext_on_the_server(
        nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    canary = "canary-" + secrets.token_hex(16)
    reply_canary = "reply-" + secrets.token_hex(16)
    social = await start_social(nursery, tmp_path / "social.db", record=True)
    alice = [make_client(tmp_path / f"alice{i}", social.port) for i in range(2)]
    bob = [make_client(tmp_path / f"bob{i}", social.port) for i in range(2)]
    await register(alice[0], "alice")
    await login(alice[1], "alice")
    await register(bob[0], "bob")
    await login(bob[1], "bob")
    async with session_of(alice[0]) as a:
        plain = await a.send_text("bob", "before the switch")
        assert await a.make_secret("bob")
        assert not await a.make_secret("bob")
        secret_id = await a.send_text("bob", f"the secret is {canary}")
        second_id = await a.send_text("bob", canary)
    async with session_of(bob[1]) as b:
        with pytest.raises(ClientError, match="secret_conversation"):
            await b.react(secret_id, "👍")
        assert await b.pin(secret_id)  # a pin names an id only
        reply_id = await b.send_text("alice", reply_canary)

    for stage in ("stored", "delivered"):
        for path in tmp_path.glob("social.db*"):
            data = path.read_bytes()
            assert canary.encode() not in data and reply_canary.encode() not in data, (
                stage, path.name)
        assert {p.name for p in tmp_path.glob("social.db*")} >= {"social.db", "social.db-wal"}
        if stage == "stored":
            for device in bob:
                got = await drain(device)
                texts = [e.text for e in got if e.kind == "message"]
                if device is bob[0]:
                    assert texts == ["before the switch", f"the secret is {canary}", canary,
                                     reply_canary]
                else:
                    assert texts == ["before the switch", f"the secret is {canary}", canary]
            for device in alice:
                got = [e for e in await drain(device) if e.kind == "message"]
                assert [e.text for e in got] == (
                    ["before the switch", f"the secret is {canary}", canary, reply_canary]
                    if device is alice[1]
                    else [reply_canary])
                assert not any(e.warning for e in got)
    async with session_of(bob[0]) as b:
        history, _ = await b.history("alice")
        assert [(m.id, m.text, m.secret) for m in history] == [
            (plain, "before the switch", False), (secret_id, f"the secret is {canary}", True),
            (second_id, canary, True), (reply_id, reply_canary, True)]
    assert canary.encode() not in bytes(social.received)  # every byte clients sent
    assert reply_canary.encode() not in bytes(social.received)
    assert canary not in caplog.text and reply_canary not in caplog.text
    assert "connection from" in caplog.text and "internal error" not in caplog.text
    async with session_of(bob[1]) as b:  # now send the canary in plaintext on purpose:
        with pytest.raises(ServerError) as refused:  # refused, nothing stored
            await b.connection.request("send", conversation="alice", text=canary)
        assert refused.value.code == api.SECRET_CONVERSATION
        assert await b.search(canary) == []  # ciphertext is never indexed
    for path in tmp_path.glob("social.db*"):
        assert canary.encode() not in path.read_bytes(), path.name


async def test_a_device_added_later_gets_no_secret_message_until_accepted(
        nursery, tmp_path: Path) -> None:
    """A new login on bob's account (which the server alone can also make) receives nothing
    secret until alice accepts bob's devices; its messages to alice are held until then."""
    social = await start_social(nursery, tmp_path / "social.db")
    alice, bob = make_client(tmp_path / "alice", social.port), make_client(tmp_path / "bob",
                                                                         social.port)
    await register(alice, "alice")
    await register(bob, "bob")
    async with session_of(alice) as a:
        await a.make_secret("bob")
        await a.send_text("bob", "first, to bob's one device")
    assert [e.text for e in await drain(bob) if e.kind == "message"] == [
        "first, to bob's one device"]
    added = make_client(tmp_path / "added", social.port)
    assert await login(added, "bob") == 1
    async with session_of(alice) as a:
        report = await a.device_report("bob")
        assert [(d, status) for d, _, status in report] == [(0, "accepted"), (1, "new")]
        with pytest.raises(ClientError, match="verify bob --accept"):
            await a.send_text("bob", "second")
    async with session_of(added) as n:
        await n.send_text("alice", "hello from bob's new device")
    got = await drain(alice)
    assert [e.text for e in got if e.kind == "message"] == []
    assert any("held" in (e.warning or "") for e in got)
    async with session_of(alice) as a:
        history, _ = await a.history("bob")
        assert history[-1].text == "[held: from a device not accepted yet]"
    assert [e.text for e in await drain(added) if e.kind == "message"] == []
    async with session_of(alice) as a:
        assert await a.accept_devices("bob") == (2, 1)
    assert [e.text for e in await drain(alice) if e.kind == "message"] == [
        "hello from bob's new device"]
    async with session_of(alice) as a:
        await a.send_text("bob", "second")
    assert [e.text for e in await drain(added) if e.kind == "message"] == ["second"]
