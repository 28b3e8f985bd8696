"""Profiles and status updates on both transports: end to end encrypted to contacts on the
private one (the relay keeps ciphertext only), kept by the server on the social one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from client.core.errors import ClientError
from client.private.session import PrivateClient
from client.private.state import ClientState
from e2e_proto.constants import STATUS_TTL_MS
from tests import relay_harness, social_harness
from tests.federation_harness import database_bytes

NAME, ABOUT, STATUS = "Alice Liddell", "curiouser and curiouser", "painting the roses red"


async def test_private_profiles_and_statuses_go_end_to_end_to_contacts(nursery,
                                                                         tmp_path: Path) -> None:
    relay, alice, bob = await relay_harness.relay_with_alice_and_bob(nursery, tmp_path)
    now = [time.time()]  # carol's clock, moved on below
    carol = PrivateClient(ClientState(tmp_path / "carol"), "127.0.0.1", relay.port,
                          clock=lambda: now[0])
    await relay_harness.register(carol, "carol")
    laptop = relay_harness.make_client(tmp_path / "laptop", relay.port)
    await relay_harness.link(alice, laptop, "alice", "laptop")
    avatar = tmp_path / "me.png"
    avatar.write_bytes(b"\x89PNG not really" * 100)
    async with relay_harness.session_of(alice) as a:
        await a.send_text("bob", "hi")  # bob is a contact; carol is not (yet)
        await a.set_profile(NAME, ABOUT, avatar)
        await a.post_status(STATUS)
    assert [m.text for m in await relay_harness.drain(bob)] == ["hi"]  # not shown as messages
    async with relay_harness.session_of(bob) as b:
        known, picture = await b.profile_of("alice")
        statuses = b.statuses()
    assert known is not None and (known.profile.name, known.profile.about) == (NAME, ABOUT)
    assert picture is not None and picture.path is not None
    assert Path(picture.path).read_bytes() == avatar.read_bytes()
    assert [(s.account, s.status.text) for s in statuses] == [("alice", STATUS)]
    await relay_harness.drain(laptop)  # this account's other devices keep the same profile
    own = laptop.state.profiles.profile("alice")
    assert own is not None and own.profile.name == NAME and own.version == 1
    assert carol.state.profiles.profile("alice") is None
    # The relay holds none of it in the clear.
    on_disk = database_bytes(tmp_path / "relay.db")
    for text in (NAME, ABOUT, STATUS):
        assert text.encode() not in on_disk
    # A status update expires 24 hours after it was posted; an older version changes nothing.
    async with relay_harness.session_of(carol) as c:
        await c.send_text("alice", "hello")
    assert [m.text for m in await relay_harness.drain(alice)] == ["hello"]  # now a contact
    async with relay_harness.session_of(alice) as a:
        await a.post_status("for carol too")
        await a.set_profile(about="version two")
    await relay_harness.drain(carol)
    async with relay_harness.session_of(carol) as c:
        assert [s.status.text for s in c.statuses("alice")] == ["for carol too"]
        now[0] = time.time() + STATUS_TTL_MS / 1000  # a day after it was posted
        assert c.statuses("alice") == []
    assert carol.state.profiles.profile("alice").profile.about == "version two"  # type: ignore[union-attr]
    async with relay_harness.session_of(alice) as a:
        with pytest.raises(ClientError, match="display name"):
            await a.set_profile("x" * 65)


async def test_social_profiles_and_statuses_are_kept_by_the_server(nursery,
                                                                   tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    social = await social_harness.start_social(nursery, tmp_path / "social.db",
                                               clock=lambda: now[0])
    alice = social_harness.make_client(tmp_path / "alice", social.port)
    bob = social_harness.make_client(tmp_path / "bob", social.port)
    carol = social_harness.make_client(tmp_path / "carol", social.port)
    for client, name in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        await social_harness.register(client, name)
    avatar = tmp_path / "me.png"
    avatar.write_bytes(b"a picture" * 50)
    async with social_harness.session_of(alice) as a:
        await a.send_text("bob", "hi")
        shown = await a.set_profile(NAME, ABOUT, avatar)
        assert (shown.profile.name, shown.profile.about) == (NAME, ABOUT)
        await a.post_status(STATUS)
        await a.set_profile(about="changed")  # what is not given stays
    async with social_harness.session_of(carol) as c:
        seen = await c.profile_of("alice")
        assert (seen.profile.name, seen.profile.about) == (NAME, "changed")
        assert seen.avatar is not None and seen.avatar.path is not None
        assert Path(seen.avatar.path).read_bytes() == avatar.read_bytes()
        assert await c.statuses() == []  # carol shares no conversation with alice
    async with social_harness.session_of(bob) as b:
        assert [(a, s.text) for a, s in await b.statuses()] == [("alice", STATUS)]
        now[0] += STATUS_TTL_MS / 1000
        assert await b.statuses() == []
        with pytest.raises(ClientError, match="about text"):
            await b.set_profile(about="x" * 501)
