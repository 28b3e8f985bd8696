"""Relay requests on groups: the routing copy admins write (``group_put``), one group message
fanned out to every member device (``group_send``), and pairwise envelopes to members in one
request (``group_deliver``: updates and sender keys).

The relay learns a group's member accounts and admins, never its name or anything inside a
message. It checks a routing statement with the same rule members apply to end-to-end updates
(:func:`e2e_proto.groups.apply_update`): signed by the connected device, newer than the stored
copy, from an admin (or a member only removing itself). Clients never trust this copy: it only
says where group messages go.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from e2e_proto import relay_api as api
from e2e_proto.constants import GROUP_ID_SIZE, KEY_SIZE, MAX_DEVICES
from e2e_proto.errors import (
    E2EProtoError,
    InvalidSignatureError,
    MalformedError,
    NotGroupAdminError,
    OversizedGroupError,
    StaleGroupUpdateError,
)
from e2e_proto.groups import GroupState, GroupUpdate, apply_update, member_devices_digest
from e2e_proto.keys import Ed25519PublicKey
from e2e_proto.sender_keys import decode_header
from e2e_proto.wire import GroupEnvelope, decode_group_message

from ..common.fields import check_size
from ..common.requests import RequestError
from .blobs import announced_blobs
from .fields import require_field
from .messages import enqueue, envelopes_field, store_mail
from .store import GroupLimitError, GroupRoute, Outgoing, StaleGroupError

if TYPE_CHECKING:
    from .connection import RelayConnection

log = logging.getLogger("e2e.relay")


def _group_id(frame: dict[str, Any]) -> bytes:
    group_id = require_field(frame, "group_id", bytes)
    if len(group_id) != GROUP_ID_SIZE:
        raise RequestError(api.BAD_REQUEST, "group_id must be 16 bytes")
    return group_id  # type: ignore[no-any-return]


async def _route(conn: RelayConnection, group_id: bytes) -> GroupRoute:
    route = await conn.relay.store.group(group_id)
    if route is None:
        raise RequestError(api.UNKNOWN_GROUP, "no group with this id")
    return route


async def _member_devices(conn: RelayConnection, members: tuple[str, ...]
                          ) -> dict[str, list[int]]:
    """Every current device of every member, as the relay's device lists say."""
    store = conn.relay.store
    devices = {}
    for member in members:
        record = await store.account(member)
        devices[member] = sorted(record.devices) if record is not None else []
    return devices


async def group_put(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Store a newer routing copy, signed by this device for an admin (or a leaving member).

    A new group counts for this account until its last member leaves (then the relay deletes
    the copy): past ``max_groups_per_account`` a new one is refused ``quota_exceeded``.
    """
    assert conn.address is not None
    me = conn.address
    limit = conn.relay.config.max_group_members
    try:
        update = GroupUpdate.decode(require_field(frame, "routing", bytes),
                                    require_field(frame, "signature", bytes), routing=True)
    except OversizedGroupError as exc:
        raise RequestError(api.GROUP_TOO_LARGE, str(exc), limit=limit) from None
    except MalformedError as exc:
        raise RequestError(api.BAD_REQUEST, f"routing statement refused: {exc}") from None
    if update.author != me:
        raise RequestError(api.BAD_REQUEST, "a routing statement is signed by the device "
                           "that sends it")
    state = update.state
    if len(state.members) > limit:
        raise RequestError(api.GROUP_TOO_LARGE, f"a group has at most {limit} members (this "
                           f"one would have {len(state.members)})", limit=limit)
    stored = await conn.relay.store.group(state.group_id)
    current = None if stored is None else GroupState(
        stored.group_id, stored.version, None, stored.members, stored.admins)
    record = await conn.relay.store.account(me.account)
    assert record is not None
    try:
        apply_update(current, update, Ed25519PublicKey(record.devices[me.device_id]))
    except InvalidSignatureError:
        raise RequestError(api.BAD_REQUEST, "the routing statement's signature does not "
                           "verify with this device's key") from None
    except StaleGroupUpdateError as exc:
        raise RequestError(api.STALE_GROUP, str(exc), version=current.version  # type: ignore
                           ) from None
    except NotGroupAdminError as exc:
        raise RequestError(api.NOT_GROUP_ADMIN, str(exc)) from None
    unknown = [m for m in state.members if await conn.relay.store.account(m) is None]
    if unknown:
        raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {unknown[0]!r}",
                           accounts=unknown[:20])
    try:
        await conn.relay.store.put_group(GroupRoute(
            state.group_id, state.version, state.members, state.admins, update.body,
            update.signature), me.account, conn.relay.config.max_groups_per_account)
    except GroupLimitError as exc:
        raise RequestError(api.QUOTA_EXCEEDED, str(exc), limit=exc.limit) from None
    except StaleGroupError:  # another admin's copy was stored meanwhile
        latest = await conn.relay.store.group(state.group_id)
        raise RequestError(api.STALE_GROUP, "the group changed meanwhile",
                           version=latest.version if latest else 0) from None
    log.info("group routing copy now at version %d (%d members)", state.version,
             len(state.members))
    return {"version": state.version}


async def group_send(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Fan one group message out to every device of every member, the sender's others too.

    The sender names the routing copy's version and the digest of the devices it distributed
    its sender key to; either differing refuses the send (``stale_group``, ``device_mismatch``
    with the relay's ``devices``), so no device gets a message it holds no key for. The group
    envelope is stored once per device, so it is bounded as one envelope (``message_too_large``)
    and counts against each device's quotas of messages and bytes; a device whose mailbox
    either would pass is left out, and named in the answer's ``skipped``. The blob ids in
    ``blobs`` (a file the message announces) are granted to every device it is stored for.
    """
    assert conn.address is not None
    me = conn.address
    group_id = _group_id(frame)
    version = require_field(frame, "version", int)
    digest = require_field(frame, "devices_digest", bytes)
    blob_ids = await announced_blobs(conn, frame)
    route = await _route(conn, group_id)
    if me.account not in route.members:
        raise RequestError(api.NOT_GROUP_MEMBER, "you are not a member of this group")
    if version != route.version:
        raise RequestError(api.STALE_GROUP, f"the group is at version {route.version}, not "
                           f"{version}", version=route.version)
    try:
        message = decode_group_message(require_field(frame, "message", bytes))
        header_group, _, _ = decode_header(message.header)
    except E2EProtoError as exc:
        raise RequestError(api.BAD_REQUEST, f"group message refused: {exc}") from None
    if header_group != group_id:
        raise RequestError(api.BAD_REQUEST, "the message's header names another group")
    delivery = GroupEnvelope(me, message).encode()  # stored once per device: bounded as one
    check_size(len(delivery), conn.relay.config.max_envelope_size, api.MESSAGE_TOO_LARGE,
               "a group envelope")
    devices = await _member_devices(conn, route.members)
    if len(digest) != KEY_SIZE or digest != member_devices_digest(devices):
        raise RequestError(api.DEVICE_MISMATCH, "the member devices changed",
                           devices=[[a, ids] for a, ids in devices.items()])
    outgoing = [Outgoing(account, device_id, delivery) for account, ids in devices.items()
                for device_id in ids if (account, device_id) != me]
    skipped = await store_mail(conn.relay, enqueue(conn, outgoing, skip_full=True,
                                                   blobs=blob_ids))
    return {"devices": len(outgoing) - len(skipped), "skipped": [list(a) for a in skipped]}


async def group_deliver(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Store pairwise envelopes for devices of a group's members (and this account's others).

    What a ``send`` per member would do, in one request: each envelope is from this device and
    for a current device of a member, at most the largest envelope (``message_too_large``); a
    device whose mailbox would pass its quota of messages or bytes is left out, and named in
    the answer's ``skipped``.
    """
    assert conn.address is not None
    me = conn.address
    route = await _route(conn, _group_id(frame))
    decoded = envelopes_field(conn, frame, (len(route.members) + 1) * MAX_DEVICES)
    allowed = {*route.members, me.account}
    store = conn.relay.store
    outgoing, addressed, stale = [], set(), []
    for envelope, data in decoded:
        recipient = envelope.recipient
        if recipient == me or recipient in addressed:
            raise RequestError(api.BAD_REQUEST, "envelopes are from this device, each for "
                               "another device, once")
        addressed.add(recipient)
        record = None
        if recipient.account in allowed:
            record = await store.account(recipient.account)
        if record is None or recipient.device_id not in record.devices:
            stale.append(list(recipient))
        outgoing.append(Outgoing(*recipient, data))
    if stale:
        raise RequestError(api.DEVICE_MISMATCH, "envelopes for devices that are not current "
                           "devices of the group's members", missing=[], stale=stale[:100])
    skipped = await store_mail(conn.relay, enqueue(conn, outgoing, skip_full=True))
    return {"stored": len(outgoing) - len(skipped), "skipped": [list(a) for a in skipped]}
