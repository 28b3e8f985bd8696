"""What the social client keeps for itself: the secret flag of a conversation (a lying server
cannot turn it off) and received events (stored before shown, so a crash loses none)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from client.core.errors import ClientError
from client.social.session import SocialClient
from client.social.state import SocialEvent, SocialState
from e2e_proto.at_rest import MINIMUM, WrongPassphraseError
from server.social.sqlite_store import SqliteSocialStore
from tests.social_harness import (
    drain,
    make_client,
    register,
    session_of,
    social_with_alice_and_bob,
    start_social,
)


def _server_counts(store: SqliteSocialStore) -> tuple[int, ...]:
    db = store._db
    return tuple(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                 for table in ("messages", "message_text", "reactions", "events"))


async def test_a_secret_conversation_stays_secret_when_the_server_lies(
        nursery, tmp_path: Path) -> None:
    social = await start_social(nursery, tmp_path / "social.db")
    await register(make_client(tmp_path / "alice", social.port), "alice")
    await register(make_client(tmp_path / "bob", social.port), "bob")
    async with session_of(make_client(tmp_path / "alice", social.port)) as a:
        before = await a.send_text("bob", "before the switch")
        assert await a.make_secret("bob")  # alice learns it from her own request
    got = await drain(make_client(tmp_path / "bob", social.port))  # bob from the event
    assert [(e.kind, e.conversation) for e in got] == [("message", "alice"),
                                                       ("secret", "alice")]

    social.store._db.execute("UPDATE conversations SET secret = 0")  # the server now lies
    counts = _server_counts(social.store)
    canary = "canary-" + secrets.token_hex(16)
    for name, other in (("alice", "bob"), ("bob", "alice")):
        client = make_client(tmp_path / name, social.port)  # state reopened from disk
        async with session_of(client) as session:
            assert (await session.conversation(other))["secret"] is False
            with pytest.raises(ClientError, match="refusing to send it in the clear"):
                await session.send_text(other, canary)
            with pytest.raises(ClientError, match="secret conversation"):
                await session.react(before, "👍")
    assert _server_counts(social.store) == counts  # no plaintext message, no reaction
    assert canary.encode() not in b"".join(p.read_bytes()
                                           for p in tmp_path.glob("social.db*"))

    social.store._db.execute("UPDATE conversations SET secret = 1")  # honest again
    async with session_of(make_client(tmp_path / "bob", social.port)) as b:
        assert await b.send_text("alice", canary) > 0  # encrypted, as before
    got = await drain(make_client(tmp_path / "alice", social.port))
    assert [(e.kind, e.text, e.secret) for e in got] == [("message", canary, True)]


class _Crash(Exception):
    """The process dies while an event is being shown."""


def _crash_on(text: str, shown: list[SocialEvent]) -> Callable[[SocialEvent], None]:
    def show(event: SocialEvent) -> None:
        if event.text == text:
            raise _Crash(text)
        shown.append(event)
    return show


async def _receive_until_crash(client: SocialClient, show: Callable[[SocialEvent], None]
                               ) -> None:
    """Receive until ``show`` raises :class:`_Crash` (perhaps inside exception groups)."""
    with pytest.raises(BaseException) as caught:  # the leaf is checked below
        async with session_of(client) as session:
            await session.receive(show)
    leaf: BaseException = caught.value
    while isinstance(leaf, BaseExceptionGroup):
        (leaf,) = leaf.exceptions
    assert isinstance(leaf, _Crash)


async def test_an_event_stored_but_not_shown_is_shown_on_the_next_receive(
        nursery, tmp_path: Path) -> None:
    social, alice, bob = await social_with_alice_and_bob(nursery, tmp_path)
    async with session_of(alice) as a:
        await a.send_text("bob", "one")
        await a.send_text("bob", "two")
        await a.make_secret("bob")
        await a.send_text("bob", "three, secret")

    shown: list[SocialEvent] = []
    await _receive_until_crash(bob, _crash_on("one", shown))
    assert shown == []
    await _receive_until_crash(make_client(tmp_path / "bob", social.port),
                               _crash_on("three, secret", shown))  # a decrypted one
    assert [(e.kind, e.text) for e in shown] == [("message", "one"), ("message", "two"),
                                                 ("secret", None)]
    got = await drain(make_client(tmp_path / "bob", social.port))
    assert [(e.kind, e.text, e.secret) for e in got] == [("message", "three, secret", True)]
    assert await drain(make_client(tmp_path / "bob", social.port)) == []  # each shown once
    async with session_of(alice) as a:
        await a.send_text("bob", "four")
    assert [e.text for e in await drain(bob)] == ["four"]


async def test_social_state_sealed_with_a_passphrase(nursery, tmp_path: Path) -> None:
    """With a passphrase the token and the keys are sealed; the device still logs in."""
    social = await start_social(nursery, tmp_path / "social.db")
    home = tmp_path / "alice"
    client = SocialClient(SocialState(home, "open sesame", MINIMUM), "127.0.0.1", social.port)
    async with client.connect() as session:
        await session.register("alice", "a long password")
    token = client.state.protocol.unseal(client.state.get("token"), "token")
    client.state.close()
    stored = b"".join(p.read_bytes() for p in home.glob("social.db*"))
    assert token not in stored
    with pytest.raises(WrongPassphraseError):
        SocialState(home, "wrong", MINIMUM)
    again = SocialClient(SocialState(home, "open sesame", MINIMUM), "127.0.0.1", social.port)
    async with again.session() as session:
        assert session.address is not None and session.address.account == "alice"
    again.state.close()
