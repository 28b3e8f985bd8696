"""The call registry both signalling servers keep: who may join, the cap, a participant per
device and per connection, bounds, the tokens it issues, and a server-keyed call's keys."""

from __future__ import annotations

import itertools

import pytest

from e2e_proto.address import Address
from e2e_proto.call_keys import CallKeys
from e2e_proto.call_tokens import packet_key, verify_token
from e2e_proto.errors import UnknownKeyIdError
from e2e_proto.sframe import split_sender_key_kid
from server.calls.registry import (
    CallFullError,
    CallRegistry,
    CallsUnavailableError,
    NotInvitedError,
    NotParticipantError,
    SfuGrant,
    TooManyCallsError,
    UnknownCallError,
)

KEY = bytes(range(32))
GRANT = SfuGrant("127.0.0.1", 7600, KEY)
ALICE, BOB, CAROL = Address("alice", 0), Address("bob", 0), Address("carol", 1)
_COUNTER = itertools.count()


def registry(limit: int = 3, **options: object) -> CallRegistry:
    return CallRegistry(limit, GRANT, lambda: 1_000, lambda n: bytes(
        [next(_COUNTER) % 256]) * n, **options)  # type: ignore[arg-type]


def test_join_leave_and_end() -> None:
    calls = registry()
    call = calls.start(ALICE, {"bob"}, None)
    assert calls.get(call.call_id) is call and call.invited == {"alice", "bob"}
    first, new = calls.join(call, ALICE, "conn-a")
    again, new_again = calls.join(call, ALICE, "conn-a2")
    assert new and not new_again and again is first and first.connection == "conn-a2"
    with pytest.raises(NotInvitedError):
        calls.join(call, CAROL, "conn-c")
    second, _ = calls.join(call, BOB, "conn-b")
    assert (first.pid, second.pid) == (1, 2) and call.roster() == [[1, "alice", 0],
                                                                    [2, "bob", 0]]
    assert [c.call_id for c in calls.calls_for("bob")] == [call.call_id]
    calls.leave(call, ALICE)
    with pytest.raises(NotParticipantError):
        calls.leave(call, ALICE)
    assert not calls.ended(call)
    assert calls.dropped("conn-a2") == []  # alice's participant left already
    assert calls.dropped("conn-b") == [(call, second)] and calls.ended(call)
    assert not calls._joined  # nothing kept of a call that ended
    with pytest.raises(UnknownCallError):
        calls.get(call.call_id)
    with pytest.raises(UnknownCallError):
        calls.get("not bytes")


def test_bounds_and_the_cap() -> None:
    calls = registry(limit=2, max_calls=3, calls_per_account=2)
    group = calls.start(ALICE, {"bob", "carol"}, b"g" * 16)
    calls.join(group, ALICE, 1)
    calls.join(group, BOB, 2)
    with pytest.raises(CallFullError) as full:
        calls.join(group, CAROL, 3)
    assert full.value.code == "call_full" and full.value.details == {"limit": 2}
    calls.start(ALICE, {"bob"}, None)
    with pytest.raises(TooManyCallsError):
        calls.start(ALICE, {"bob"}, None)  # alice runs two already
    ended = calls.start(BOB, {"alice"}, None)
    calls.join(ended, BOB, 4)
    calls.end(ended)
    assert calls.dropped(4) == []
    calls.start(BOB, {"alice"}, None)
    with pytest.raises(TooManyCallsError):
        calls.start(CAROL, {"bob"}, None)  # the server runs three
    with pytest.raises(CallsUnavailableError):
        CallRegistry(8).start(ALICE, {"bob"}, None)


def test_tokens_verify_under_the_shared_key() -> None:
    calls = registry()
    call = calls.start(ALICE, {"bob"}, None)
    participant, _ = calls.join(call, ALICE, None)
    answer = calls.token(call, participant)
    token = verify_token(KEY, answer["token"], 1_000)
    assert (token.call_id, token.participant, token.address, token.limit) == (
        call.call_id, 1, ALICE, 3)
    assert answer["packet_key"] == packet_key(KEY, token.body)
    assert answer["sfu"] == "127.0.0.1:7600" and answer["e2e"] and answer["expires"] == 61_000
    assert SfuGrant("::1", 7600, KEY).address == "[::1]:7600"


def test_a_server_keyed_call_steps_keys_on_join_and_renews_them_on_leave() -> None:
    calls = registry()
    call = calls.start(ALICE, {"bob", "carol"}, b"g" * 16, e2e=False)
    alice, _ = calls.join(call, ALICE, None)
    first = call.keys[alice.pid]
    alice_keys = CallKeys.fresh(call.call_id, alice.pid)
    alice_keys.set_own(first.kid, first.base_key)
    before = alice_keys.encrypt(b"before bob")
    bob, _ = calls.join(call, BOB, None)
    stepped = call.keys[alice.pid]
    assert split_sender_key_kid(stepped.kid) == (0, 1) and bob.pid in call.keys
    bob_keys = CallKeys.fresh(call.call_id, bob.pid)
    bob_keys.add(stepped)
    with pytest.raises(UnknownKeyIdError):
        bob_keys.decrypt(alice.pid, before)  # the newcomer's key opens nothing earlier
    alice_keys.set_own(stepped.kid, stepped.base_key)
    assert bob_keys.decrypt(alice.pid, alice_keys.encrypt(b"after")) == b"after"
    calls.leave(call, BOB)
    renewed = call.keys[alice.pid]
    assert split_sender_key_kid(renewed.kid) == (1, 0) and bob.pid not in call.keys
    alice_keys.set_own(renewed.kid, renewed.base_key)
    with pytest.raises(UnknownKeyIdError):
        bob_keys.decrypt(alice.pid, alice_keys.encrypt(b"after bob left"))
    assert calls.keys_of(call) == [renewed.to_wire()]
