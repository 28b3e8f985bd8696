"""Group membership on the private transport: states signed by an admin device (DESIGN §13).

A group is a 16-byte random id, a name, members (accounts) and admins (a subset), at a version.
Every change makes a new :class:`GroupState` one version up, which an admin's device signs with
its device identity key (DIK) as a :class:`GroupUpdate`; the admin's account key vouches for that
DIK through its signed device list, so any device of an admin account can act for it.

Two signed forms of a state exist, under different prefixes so that neither can stand for the
other: the **end-to-end** update (``group_update`` payload, over the pairwise sessions: id,
version, name, members, admins) and the **routing** statement the relay checks and keeps (the
same without the name: the relay never learns it).

:func:`apply_update` is the whole acceptance rule, the same at every member and (for routing
statements) at the relay: the signature must verify with the author device's key, the version
must be newer than the copy held, and the author must be an admin of the copy held, or a member
whose update only removes itself (leaving). It returns the new state and changes nothing
else; a refused update raises a typed error and the caller keeps its copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from .address import Address, is_valid_account, is_valid_device_id
from .constants import (
    GROUP_DEVICES_PREFIX,
    GROUP_ID_SIZE,
    GROUP_ROUTING_PREFIX,
    GROUP_UPDATE_PREFIX,
    MAX_ACCOUNT_LENGTH,
    MAX_GROUP_MEMBERS,
    MAX_GROUP_NAME_LENGTH,
    MAX_GROUP_STATE_SIZE,
    MAX_GROUP_VERSION,
    SIGNATURE_SIZE,
)
from .errors import (
    GroupTooLargeError,
    LocalProtocolError,
    MalformedError,
    NotGroupAdminError,
    NotGroupMemberError,
    OversizedGroupError,
    StaleGroupUpdateError,
    describe,
)
from .keys import Ed25519PublicKey, IdentityKeyPair
from .payload import GROUP_UPDATE_KIND, Payload
from .primitives import RandomSource, system_random
from .unpack import UnpackLimits

_E2E_FIELDS = 7
_ROUTING_FIELDS = 6

GROUP_STATE_LIMITS = UnpackLimits(
    # The longest str: the name, 64 characters of at most 4 UTF-8 bytes (accounts are shorter).
    max_str_len=max(4 * MAX_GROUP_NAME_LENGTH, MAX_ACCOUNT_LENGTH),
    max_bin_len=GROUP_ID_SIZE,  # the group id
    # The members and admin indices: their number is bounded by the body's size (at most
    # MAX_GROUP_STATE_SIZE), so that more than MAX_GROUP_MEMBERS is the typed
    # OversizedGroupError (group_too_large at the relay), not a malformed body.
    max_array_len=MAX_GROUP_STATE_SIZE, max_map_len=0,
    max_containers=3)  # the body, its members and its admin indices
"""A signed group state's body (end-to-end or routing), unpacked before its signature is
checked: ``[group_id, version, (name,) members, admin_indices, author, device_id]``."""


def is_valid_group_name(name: object) -> bool:
    """Whether ``name`` is 1 to 64 printable characters (spaces allowed, not at the ends)."""
    return (type(name) is str and 0 < len(name) <= MAX_GROUP_NAME_LENGTH and name.isprintable()
            and name == name.strip())


@dataclass(frozen=True, slots=True)
class GroupState:
    """One version of a group: id, name (None in a routing copy), members and admins.

    ``members`` and ``admins`` are sorted and distinct; every admin is a member; a group with
    members has at least one admin; at most :data:`MAX_GROUP_MEMBERS` members.
    :class:`GroupTooLargeError` beyond that, :class:`LocalProtocolError` for anything else.
    """

    group_id: bytes
    version: int
    name: str | None
    members: tuple[str, ...]
    admins: tuple[str, ...]

    def __post_init__(self) -> None:
        if type(self.group_id) is not bytes or len(self.group_id) != GROUP_ID_SIZE:
            raise LocalProtocolError("a group id is 16 bytes")
        if type(self.version) is not int or not 0 < self.version <= MAX_GROUP_VERSION:
            raise LocalProtocolError("a group version is an integer in 1 .. 2**63-1")
        if self.name is not None and not is_valid_group_name(self.name):
            raise LocalProtocolError("a group name is 1 to 64 printable characters")
        members, admins = self.members, self.admins
        if type(members) is not tuple or type(admins) is not tuple:
            raise LocalProtocolError("members and admins are tuples")
        if len(members) > MAX_GROUP_MEMBERS:
            raise GroupTooLargeError(f"a group has at most {MAX_GROUP_MEMBERS} members "
                                     f"(this one would have {len(members)})")
        if not all(is_valid_account(m) for m in members) or list(members) != sorted(
                set(members)):
            raise LocalProtocolError("members must be distinct account names, sorted")
        if list(admins) != sorted(set(admins)) or not set(admins) <= set(members):
            raise LocalProtocolError("admins must be distinct members, sorted")
        if members and not admins:
            raise LocalProtocolError("a group with members needs at least one admin")

    @classmethod
    def create(cls, name: str, creator: str, members: Iterable[str],
               random: RandomSource = system_random) -> GroupState:
        """A new group at version 1 with a random id; ``creator`` is a member and its admin."""
        return cls(random(GROUP_ID_SIZE), 1, name, tuple(sorted({creator, *members})),
                   (creator,))

    def is_member(self, account: str) -> bool:
        """Whether ``account`` is a member."""
        return account in self.members

    def is_admin(self, account: str) -> bool:
        """Whether ``account`` is an admin."""
        return account in self.admins

    def require_member(self, account: str) -> None:
        """:class:`NotGroupMemberError` unless ``account`` is a member (for what it sends)."""
        if account not in self.members:
            raise NotGroupMemberError(f"{account!r} is not a member of this group")

    # -- changes: each returns the next version ----------------------------------------------

    def _next(self, **changes: Any) -> GroupState:
        return replace(self, version=self.version + 1, **changes)

    def with_members(self, added: Iterable[str]) -> GroupState:
        """The next version with ``added`` members (:class:`GroupTooLargeError` past the cap)."""
        return self._next(members=tuple(sorted({*self.members, *added})))

    def without_member(self, account: str) -> GroupState:
        """The next version without ``account`` (removed, or leaving).

        When it was the last admin and members remain, the first remaining member becomes
        admin, so that the group can still change.
        """
        members = tuple(m for m in self.members if m != account)
        admins = tuple(a for a in self.admins if a != account)
        if members and not admins:
            admins = (members[0],)
        return self._next(members=members, admins=admins)

    def renamed(self, name: str) -> GroupState:
        """The next version under another name."""
        return self._next(name=name)

    def with_admin(self, account: str, admin: bool) -> GroupState:
        """The next version with ``account`` made an admin (or no longer one)."""
        if account not in self.members:
            raise LocalProtocolError(f"{account!r} is not a member")
        admins = set(self.admins) | {account} if admin else set(self.admins) - {account}
        return self._next(admins=tuple(sorted(admins)))

    def routing(self) -> GroupState:
        """This state as the relay keeps it: without the name."""
        return replace(self, name=None)

    # -- encoding -----------------------------------------------------------------------------

    def body(self, author: Address) -> bytes:
        """The msgpack body an update signs (see :class:`GroupUpdate`)."""
        index = {m: i for i, m in enumerate(self.members)}
        fields: list[Any] = [self.group_id, self.version, list(self.members),
                             [index[a] for a in self.admins], author.account, author.device_id]
        if self.name is not None:
            fields.insert(2, self.name)
        return msgpack.packb(fields)


def _decode_body(body: bytes, routing: bool) -> tuple[GroupState, Address]:
    """The state and author in a body; :class:`MalformedError` unless exactly well formed."""
    if type(body) is not bytes or len(body) > MAX_GROUP_STATE_SIZE:
        raise MalformedError(f"a group state is bytes, at most {MAX_GROUP_STATE_SIZE} of them")
    try:
        fields = GROUP_STATE_LIMITS.unpack(body)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise MalformedError("a group state is not valid msgpack within its limits") from None
    if type(fields) is not list or len(fields) != (_ROUTING_FIELDS if routing else _E2E_FIELDS):
        raise MalformedError("a group state has the wrong number of fields")
    name = None if routing else fields.pop(2)
    group_id, version, members, admin_indices, author, device_id = fields
    if type(members) is not list or type(admin_indices) is not list:
        raise MalformedError("group members and admins must be arrays")
    if not (is_valid_account(author) and is_valid_device_id(device_id)):
        raise MalformedError("a group state's author is not a valid device address")
    if not all(type(i) is int and 0 <= i < len(members) for i in admin_indices) or (
            admin_indices != sorted(set(admin_indices))):
        raise MalformedError("admins must be ascending, distinct indices into the members")
    try:
        state = GroupState(group_id, version, name, tuple(members),
                           tuple(members[i] for i in admin_indices))
    except GroupTooLargeError as exc:
        raise OversizedGroupError(str(exc)) from None
    except LocalProtocolError as exc:
        raise MalformedError(f"group state refused: {exc}") from None
    return state, Address(author, device_id)


@dataclass(frozen=True, slots=True)
class GroupUpdate:
    """A group state signed by its author device: ``signature = Ed25519(DIK, prefix || body)``.

    ``routing`` tells the two forms apart: the end-to-end update (prefix
    ``e2e-proto/group-update/v1``, body ``[group_id, version, name, members, admin_indices,
    author_account, author_device]``) and the relay's routing statement (prefix
    ``e2e-proto/group-routing/v1``, the same body without the name).
    """

    state: GroupState
    author: Address
    body: bytes
    signature: bytes
    routing: bool = False

    @classmethod
    def sign(cls, state: GroupState, author: Address, identity: IdentityKeyPair,
             routing: bool = False) -> GroupUpdate:
        """Sign ``state`` (its routing form when ``routing``) as ``author`` with its DIK."""
        if routing:
            state = state.routing()
        elif state.name is None:
            raise LocalProtocolError("an end-to-end group update needs the group's name")
        body = state.body(author)
        return cls(state, author, body, identity.sign(_prefix(routing) + body), routing)

    @classmethod
    def decode(cls, body: object, signature: object, routing: bool = False) -> GroupUpdate:
        """Parse an update strictly (:class:`MalformedError`); the signature is checked by
        :meth:`verify` or :func:`apply_update`, once the author's key is known."""
        if type(signature) is not bytes or len(signature) != SIGNATURE_SIZE:
            raise MalformedError("a group update's signature is 64 bytes")
        state, author = _decode_body(body, routing)  # type: ignore[arg-type]
        return cls(state, author, body, signature, routing)  # type: ignore[arg-type]

    def signed_bytes(self) -> bytes:
        """What the signature covers: the prefix of this form, then the body."""
        return _prefix(self.routing) + self.body

    def verify(self, author_identity: Ed25519PublicKey) -> None:
        """:class:`InvalidSignatureError` unless the author's DIK signed this update."""
        author_identity.verify(self.signed_bytes(), self.signature)

    def to_payload(self, ts: int, random: RandomSource = system_random) -> Payload:
        """A ``group_update`` payload (fields ``state`` and ``signature``), end-to-end form."""
        if self.routing:
            raise LocalProtocolError("a routing statement is for the relay, not a payload")
        return Payload.new(GROUP_UPDATE_KIND, ts, random, state=self.body,
                           signature=self.signature)

    @classmethod
    def from_payload(cls, payload: Payload) -> GroupUpdate:
        """The update in a ``group_update`` payload (:class:`MalformedError` if invalid)."""
        if payload.kind != GROUP_UPDATE_KIND:
            raise LocalProtocolError(f"a {payload.kind!r} payload is not a group update")
        return cls.decode(payload.fields.get("state"), payload.fields.get("signature"))


def _prefix(routing: bool) -> bytes:
    return GROUP_ROUTING_PREFIX if routing else GROUP_UPDATE_PREFIX


def check_change(current: GroupState | None, new: GroupState, author: str) -> None:
    """Whether ``author`` may move a group from ``current`` (None: unknown) to ``new``.

    Raises, in this order: :class:`LocalProtocolError` for another group's state,
    :class:`StaleGroupUpdateError` when ``new`` is not a newer version, and
    :class:`NotGroupAdminError` unless ``author`` is an admin of ``current`` (of ``new`` for a
    group not held yet), or a member of ``current`` whose change only removes itself.
    """
    if current is None:
        if author not in new.admins:
            raise NotGroupAdminError(f"{describe(author)} is not an admin of the group it "
                                     "announces")
        return
    if new.group_id != current.group_id:
        raise LocalProtocolError("the update is for another group")
    if new.version <= current.version:
        raise StaleGroupUpdateError(f"group version {new.version} is not newer than the "
                                    f"version {current.version} held")
    if author in current.admins:
        return
    leaving = (author in current.members
               and new.members == tuple(m for m in current.members if m != author)
               and new.admins == current.admins and new.name == current.name)
    if not leaving:
        raise NotGroupAdminError(f"{describe(author)} is not an admin of the group")


def apply_update(current: GroupState | None, update: GroupUpdate,
                 author_identity: Ed25519PublicKey) -> GroupState:
    """The new state ``update`` makes of ``current``, after checking its signature and rules.

    ``author_identity`` is the author device's DIK as the author account's verified device list
    gives it (the caller looks it up). Raises :class:`InvalidSignatureError` first, then as
    :func:`check_change`; nothing is changed either way, the caller stores the result.
    """
    update.verify(author_identity)
    if current is not None and (current.name is None) != (update.state.name is None):
        raise LocalProtocolError("a routing copy and an end-to-end state do not mix")
    check_change(current, update.state, update.author.account)
    return update.state


def member_devices_digest(devices: Mapping[str, Iterable[int]]) -> bytes:
    """SHA-256 of ``e2e-proto/group-devices/v1 || msgpack([[account, [device ids]], ...])``,
    accounts and ids ascending: how a sender and the relay compare the devices a group message
    goes to (every device of every member, the sender's own included)."""
    canonical = [[account, sorted(devices[account])] for account in sorted(devices)]
    return hashlib.sha256(GROUP_DEVICES_PREFIX + msgpack.packb(canonical)).digest()
