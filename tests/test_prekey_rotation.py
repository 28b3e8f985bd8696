"""Signed-prekey rotation: the schedule (sans-IO) and both clients keeping to it.

The clients are handed a clock the tests move forward: weeks pass without waiting.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core.protocol_store import SqliteProtocolStore
from client.private.session import PrivateClient
from client.private.state import ClientState
from client.social.session import SocialClient
from client.social.state import SocialState
from e2e_proto.constants import DAY, MAILBOX_TTL, SIGNED_PREKEY_ROTATION_INTERVAL
from e2e_proto.errors import LocalProtocolError
from e2e_proto.keys import IdentityKeyPair, SignedPreKey, X25519PrivateKey
from e2e_proto.prekey_rotation import DEFAULT_POLICY, SignedPreKeyPolicy
from server.relay.config import RelayConfig
from tests.relay_harness import drain, make_client, register, session_of, start_relay
from tests.social_harness import register as social_register
from tests.social_harness import session_of as social_session_of
from tests.social_harness import start_social

T0 = 1_700_000_000.0


class Clock:
    """A clock the test moves forward."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_default_policy_is_weekly_with_the_relays_mailbox_ttl_as_grace() -> None:
    assert DEFAULT_POLICY.interval == SIGNED_PREKEY_ROTATION_INTERVAL == 7 * DAY
    assert DEFAULT_POLICY.grace == MAILBOX_TTL == RelayConfig().mailbox_ttl


def test_policy_refuses_a_grace_shorter_than_the_mailbox_ttl() -> None:
    with pytest.raises(LocalProtocolError, match="mailbox TTL"):
        SignedPreKeyPolicy(grace=MAILBOX_TTL - 1)
    with pytest.raises(LocalProtocolError, match="mailbox TTL"):
        SignedPreKeyPolicy(grace=40 * DAY, mailbox_ttl=60 * DAY)
    with pytest.raises(LocalProtocolError, match="positive"):
        SignedPreKeyPolicy(interval=0)
    assert SignedPreKeyPolicy(interval=DAY, grace=90 * DAY).grace == 90 * DAY


def test_rotation_due_after_the_interval_or_for_an_unknown_age() -> None:
    policy = SignedPreKeyPolicy(interval=7 * DAY)
    assert not policy.rotation_due(T0, T0 + 7 * DAY - 1)
    assert policy.rotation_due(T0, T0 + 7 * DAY)
    assert not policy.rotation_due(T0, T0 - DAY)  # a clock set back does not rotate
    assert policy.rotation_due(None, T0)  # made before creation times were kept


@given(st.lists(st.floats(min_value=0, max_value=400 * DAY), min_size=1, max_size=8),
       st.floats(min_value=0, max_value=500 * DAY))
def test_expired_keeps_current_and_every_key_within_its_grace(ages: list[float],
                                                              now: float) -> None:
    """Ids 1..n made at the given times (ids grow); the current one is the highest."""
    created: dict[int, float | None] = {i + 1: t for i, t in enumerate(sorted(ages))}
    current = max(created)
    expired = DEFAULT_POLICY.expired(created, current, now)
    assert current not in expired
    for key_id in created:
        successor = created.get(key_id + 1)
        past_grace = successor is not None and now - successor >= DEFAULT_POLICY.grace
        assert (key_id in expired) == (key_id != current and past_grace)


def test_expired_never_deletes_a_key_whose_successor_time_is_unknown() -> None:
    assert DEFAULT_POLICY.expired({1: None, 2: None, 3: T0}, 3, T0 + 365 * DAY) == [2]


def test_store_keeps_creation_times_and_migrates_an_old_table(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)  # the table as homes made before rotation have it
    db.execute("CREATE TABLE signed_prekeys (id INTEGER PRIMARY KEY, private BLOB NOT NULL, "
               "signature BLOB NOT NULL)")
    spk = SignedPreKey.create(IdentityKeyPair.generate(), 1, X25519PrivateKey.generate())
    db.execute("INSERT INTO signed_prekeys VALUES (1, ?, ?)",
               (spk.private_key.raw, spk.signature))
    db.commit()
    db.close()
    store = SqliteProtocolStore(path)
    assert store.signed_prekey_times() == {1: None}  # due for rotation at once
    assert store.load_signed_prekey(1) == spk
    store.store_signed_prekey(spk, created_at=T0)
    assert store.signed_prekey_times() == {1: T0}
    store.remove_signed_prekey(1)
    assert store.load_signed_prekey(1) is None
    store.close()


async def test_private_client_rotates_weekly_and_keeps_the_old_key_for_the_grace(
        nursery, tmp_path: Path) -> None:
    relay = await start_relay(nursery, tmp_path / "relay.db")
    clock = Clock()
    alice = PrivateClient(ClientState(tmp_path / "alice"), "127.0.0.1", relay.port, clock=clock)
    bob = make_client(tmp_path / "bob", relay.port)
    await register(alice, "alice")
    await register(bob, "bob")
    first = alice.state.signed_prekey_id()
    assert alice.state.protocol.signed_prekey_times() == {first: T0}
    async with session_of(bob) as b:  # a prekey message on the first signed prekey
        await b.send_text("alice", "sent before the rotation")

    clock.advance(SIGNED_PREKEY_ROTATION_INTERVAL + DAY)
    # Connecting rotates first; the message waiting on the replaced key is still read.
    assert [m.text for m in await drain(alice)] == ["sent before the rotation"]
    second = alice.state.signed_prekey_id()
    assert second != first
    assert alice.state.protocol.signed_prekey_times() == {first: T0, second: clock.now}
    bundle, _ = (await relay.store.take_bundle("alice", 0))
    assert bundle.signed_prekey_id == second  # the new one is published
    rotated_at = clock.now

    clock.advance(MAILBOX_TTL - 1)  # the first key's grace is not over yet
    async with session_of(alice):
        pass
    third = alice.state.signed_prekey_id()
    assert set(alice.state.protocol.signed_prekey_times()) == {first, second, third}

    clock.advance(1)  # grace over for the first key (replaced at rotated_at), not the second
    async with session_of(alice):
        pass
    assert clock.now - rotated_at == MAILBOX_TTL
    assert alice.state.protocol.load_signed_prekey(first) is None
    assert set(alice.state.protocol.signed_prekey_times()) == {second, third}
    assert alice.state.signed_prekey_id() == third  # not due again: made a second ago


async def test_social_client_rotates_its_secret_conversation_signed_prekey(
        nursery, tmp_path: Path) -> None:
    social = await start_social(nursery, tmp_path / "social.db")
    clock = Clock()
    alice = SocialClient(SocialState(tmp_path / "alice"), "127.0.0.1", social.port,
                         clock=clock)
    await social_register(alice, "alice")
    store = alice.state.protocol

    def published() -> int:
        return social.store._db.execute(
            "SELECT spk_id FROM devices WHERE account = 'alice'").fetchone()[0]

    first = published()
    assert store.signed_prekey_times() == {first: T0}
    clock.advance(SIGNED_PREKEY_ROTATION_INTERVAL)
    async with social_session_of(alice):
        pass
    second = published()
    assert second != first and set(store.signed_prekey_times()) == {first, second}
    clock.advance(MAILBOX_TTL)
    async with social_session_of(alice):
        pass
    assert store.load_signed_prekey(first) is None
    assert first not in store.signed_prekey_times()
