"""Group membership states and their signed updates (e2e_proto.groups): rules, codec, bounds."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from e2e_proto.address import Address
from e2e_proto.constants import GROUP_ROUTING_PREFIX, GROUP_UPDATE_PREFIX, MAX_GROUP_MEMBERS
from e2e_proto.errors import (
    GroupTooLargeError,
    InvalidSignatureError,
    LocalProtocolError,
    MalformedError,
    NotGroupAdminError,
    NotGroupMemberError,
    OversizedGroupError,
    RemoteProtocolError,
    StaleGroupUpdateError,
)
from e2e_proto.groups import (
    GroupState,
    GroupUpdate,
    apply_update,
    check_change,
    member_devices_digest,
)
from e2e_proto.keys import IdentityKeyPair
from e2e_proto.payload import Payload

ALICE, BOB = Address("alice", 0), Address("bob", 1)
ALICE_DIK, BOB_DIK = IdentityKeyPair(bytes(range(32))), IdentityKeyPair(bytes(range(1, 33)))


def _group() -> GroupState:
    return GroupState.create("friends", "alice", ["bob", "carol"], lambda n: b"\x07" * n)


def test_create_makes_the_creator_the_only_admin() -> None:
    group = _group()
    assert group.group_id == b"\x07" * 16 and group.version == 1
    assert group.members == ("alice", "bob", "carol") and group.admins == ("alice",)
    group.require_member("bob")
    with pytest.raises(NotGroupMemberError):
        group.require_member("mallory")


def test_update_round_trips_in_both_forms() -> None:
    group = _group()
    for routing in (False, True):
        update = GroupUpdate.sign(group, ALICE, ALICE_DIK, routing=routing)
        decoded = GroupUpdate.decode(update.body, update.signature, routing=routing)
        assert decoded == update
        decoded.verify(ALICE_DIK.public_key)
        assert decoded.state.name == (None if routing else "friends")
    e2e = GroupUpdate.sign(group, ALICE, ALICE_DIK)
    assert e2e.signed_bytes() == GROUP_UPDATE_PREFIX + e2e.body
    assert msgpack.unpackb(e2e.body) == [b"\x07" * 16, 1, "friends", ["alice", "bob", "carol"],
                                         [0], "alice", 0]
    routing = GroupUpdate.sign(group, ALICE, ALICE_DIK, routing=True)
    assert routing.signed_bytes() == GROUP_ROUTING_PREFIX + routing.body
    assert GroupUpdate.from_payload(Payload.decode(e2e.to_payload(5).encode())) == e2e


def test_the_two_forms_cannot_stand_for_each_other() -> None:
    group = _group()
    e2e = GroupUpdate.sign(group, ALICE, ALICE_DIK)
    routing = GroupUpdate.sign(group, ALICE, ALICE_DIK, routing=True)
    with pytest.raises(MalformedError):  # field counts differ
        GroupUpdate.decode(e2e.body, e2e.signature, routing=True)
    # Even a body of the right shape under the other prefix does not verify.
    forged = GroupUpdate(routing.state, ALICE, routing.body, e2e.signature, routing=True)
    with pytest.raises(InvalidSignatureError):
        forged.verify(ALICE_DIK.public_key)


def test_rules_admin_stale_and_leave() -> None:
    group = _group()
    add = group.with_members(["dave"])
    assert apply_update(group, GroupUpdate.sign(add, ALICE, ALICE_DIK),
                        ALICE_DIK.public_key) == add
    # A non-admin may not add, rename or promote.
    for change in (group.with_members(["mallory"]), group.renamed("pwned"),
                   group.with_admin("bob", True)):
        with pytest.raises(NotGroupAdminError):
            apply_update(group, GroupUpdate.sign(change, BOB, BOB_DIK), BOB_DIK.public_key)
    # Old or equal versions change nothing.
    with pytest.raises(StaleGroupUpdateError):
        check_change(add, group, "alice")
    with pytest.raises(StaleGroupUpdateError):
        check_change(add, GroupState(**{**_fields(add), "name": "x"}), "alice")  # same version
    # A member may leave (only itself, changing nothing else).
    leave = group.without_member("bob")
    check_change(group, leave, "bob")
    with pytest.raises(NotGroupAdminError):
        check_change(group, group.without_member("carol"), "bob")
    sneaky = GroupState(leave.group_id, leave.version, "other", leave.members, leave.admins)
    with pytest.raises(NotGroupAdminError):
        check_change(group, sneaky, "bob")
    # An unknown group is accepted only from one of its admins.
    check_change(None, group, "alice")
    with pytest.raises(NotGroupAdminError):
        check_change(None, group, "bob")
    with pytest.raises(LocalProtocolError):
        check_change(group, GroupState.create("x", "alice", [], lambda n: b"\x01" * n), "alice")


def _fields(state: GroupState) -> dict[str, Any]:
    return {"group_id": state.group_id, "version": state.version, "name": state.name,
            "members": state.members, "admins": state.admins}


def test_bad_signature_and_wrong_key_change_nothing() -> None:
    group = _group()
    update = GroupUpdate.sign(group.renamed("new"), ALICE, ALICE_DIK)
    with pytest.raises(InvalidSignatureError):
        apply_update(group, update, BOB_DIK.public_key)
    tampered = GroupUpdate(update.state, ALICE, update.body[:-1] + b"\x01", update.signature)
    with pytest.raises(InvalidSignatureError):
        apply_update(group, tampered, ALICE_DIK.public_key)
    assert group.name == "friends" and group.version == 1


def test_last_admin_leaving_hands_over() -> None:
    group = _group().without_member("alice")
    assert group.members == ("bob", "carol") and group.admins == ("bob",)
    empty = GroupState.create("solo", "alice", [], lambda n: b"\x02" * n).without_member("alice")
    assert empty.members == () and empty.admins == ()


def test_member_cap_is_1024_locally_and_on_the_wire() -> None:
    names = [f"member{i:04d}" for i in range(MAX_GROUP_MEMBERS - 1)]
    full = GroupState.create("big", "alice", names, lambda n: b"\x03" * n)
    assert len(full.members) == MAX_GROUP_MEMBERS
    with pytest.raises(GroupTooLargeError, match="at most 1024"):
        full.with_members(["one.too.many"])
    update = GroupUpdate.sign(full, ALICE, ALICE_DIK)
    assert GroupUpdate.decode(update.body, update.signature).state == full
    body = msgpack.packb([full.group_id, 2, "big", sorted([*full.members, "zz"]), [0],
                          "alice", 0])
    with pytest.raises(OversizedGroupError, match="at most 1024"):
        GroupUpdate.decode(body, update.signature)


def test_longest_state_fits_the_size_bound() -> None:
    names = [f"{i:04d}".ljust(64, "x") for i in range(MAX_GROUP_MEMBERS)]
    state = GroupState(b"\x04" * 16, 2**63 - 1, "n" * 64, tuple(names), tuple(names))
    update = GroupUpdate.sign(state, Address("a" * 64, 2**32 - 1), ALICE_DIK)
    assert GroupUpdate.decode(update.body, update.signature).state == state


@pytest.mark.parametrize("fields,reason", [
    ([b"\x00" * 15, 1, "g", ["a"], [0], "a", 0], "16 bytes"),
    ([b"\x00" * 16, 0, "g", ["a"], [0], "a", 0], "version"),
    ([b"\x00" * 16, 1, "", ["a"], [0], "a", 0], "name"),
    ([b"\x00" * 16, 1, "g", ["b", "a"], [0], "a", 0], "sorted"),
    ([b"\x00" * 16, 1, "g", ["a", "a"], [0], "a", 0], "sorted"),
    ([b"\x00" * 16, 1, "g", ["a"], [1], "a", 0], "indices"),
    ([b"\x00" * 16, 1, "g", ["a", "b"], [1, 0], "a", 0], "indices"),
    ([b"\x00" * 16, 1, "g", ["a"], [], "a", 0], "admin"),
    ([b"\x00" * 16, 1, "g", ["a"], [True], "a", 0], "indices"),
    ([b"\x00" * 16, 1, "g", ["A"], [0], "a", 0], "sorted"),
    ([b"\x00" * 16, 1, "g", ["a"], [0], "a", -1], "author"),
    ([b"\x00" * 16, 1, "g", ["a"], [0], "a"], "number of fields"),
])
def test_malformed_states_are_refused(fields: list[object], reason: str) -> None:
    with pytest.raises(MalformedError, match=reason):
        GroupUpdate.decode(msgpack.packb(fields), bytes(64))


@given(st.binary(max_size=200), st.booleans())
def test_decoder_raises_only_malformed(data: bytes, routing: bool) -> None:
    try:
        GroupUpdate.decode(data, bytes(64), routing)
    except RemoteProtocolError as exc:
        assert isinstance(exc, MalformedError)


def test_oversized_body_refused_before_parsing() -> None:
    with pytest.raises(MalformedError, match="at most"):
        GroupUpdate.decode(b"\x00" * (80 * 1024 + 1), bytes(64))


def test_devices_digest_is_canonical() -> None:
    one = member_devices_digest({"bob": [1, 0], "alice": [0]})
    assert one == member_devices_digest({"alice": (0,), "bob": (0, 1)})
    assert one != member_devices_digest({"alice": [0], "bob": [0]})
    assert one != member_devices_digest({"alice": [0], "bob": [0, 1], "carol": []})
    assert len(one) == 32
