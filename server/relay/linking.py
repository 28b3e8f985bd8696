"""Linking a new device: its offer (``link_request``), the primary's look-up (``get_link``) and
the new signed device list that adds it or removes others (``update_devices``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from e2e_proto import relay_api as api
from e2e_proto.address import Address
from e2e_proto.devices import SignedDeviceList, TooManyDevicesError, link_message
from e2e_proto.errors import E2EProtoError
from e2e_proto.keys import Ed25519PublicKey

from ..common.fields import published_prekeys
from ..common.requests import RequestError
from ..common.store_base import StoreUnavailableError
from .fields import account_field, require_field
from .store import LINK_IN_USE, LINKS_OF_ACCOUNT, NewDevice, PendingLink, StaleListError

if TYPE_CHECKING:
    from .connection import RelayConnection

log = logging.getLogger("e2e.relay")

_WAITING_LINKS = {"total": "at this relay", LINKS_OF_ACCOUNT: "to this account",
                  "address": "from this address"}
"""How a refusal names the full cap: :attr:`Relay.link_places` (overall and per source address,
counted by each relay node) or the store's count per account (shared by the nodes)."""


async def link_request(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """A new device offers its key and prekeys and waits for the primary's approval."""
    if conn.link_lookup is not None:
        raise RequestError(api.BAD_REQUEST, "this connection already waits for a link")
    account = account_field(frame)
    record = await conn.relay.store.account(account)
    if record is None:
        raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {account!r}")
    lookup = require_field(frame, "lookup", bytes)
    tag = require_field(frame, "tag", bytes)
    name = require_field(frame, "name", str)
    if (len(lookup) != api.LOOKUP_SIZE or len(tag) != 32
            or not 0 < len(name) <= api.MAX_DEVICE_NAME_LENGTH):
        raise RequestError(api.BAD_REQUEST, "lookup, tag or name has a wrong size")
    try:
        identity = Ed25519PublicKey(require_field(frame, "identity_key", bytes))
        identity.verify(link_message(Ed25519PublicKey(record.account_key), account),
                        require_field(frame, "link_signature", bytes))
    except (ValueError, TypeError, E2EProtoError):
        raise RequestError(api.BAD_REQUEST, "the new device's key or link signature does not "
                           "verify") from None
    spk, opks = published_prekeys(frame, identity, api.MAX_ONE_TIME_PREKEYS_PER_REQUEST,
                                  code=api.BAD_REQUEST)  # (bounded before any key is read)
    if spk is None:
        raise RequestError(api.BAD_REQUEST, "a new device offers its signed prekey")
    link = PendingLink(account, identity.raw, name, tag, frame["link_signature"], spk, opks,
                       conn.nonce)
    refused = await conn.relay.offer_link(lookup, link, conn)
    if refused == LINK_IN_USE:
        raise RequestError(api.BAD_REQUEST, "that link code is in use; make a new one")
    if refused is not None:
        raise RequestError(api.RATE_LIMITED, f"too many new devices are waiting to link "
                           f"{_WAITING_LINKS[refused]}; try again later")
    conn.link_lookup = lookup  # from now on this connection's end withdraws the offer
    log.info("connection from %s waits for a link to %s", conn.peer, account)
    return {"account_key": record.account_key}


async def get_link(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """What a waiting new device offered, for its primary to check before approving."""
    assert conn.address is not None
    pending = await conn.relay.store.pending_link(require_field(frame, "lookup", bytes))
    if pending is None or pending.account != conn.address.account:
        raise RequestError(api.UNKNOWN_LINK, "no device is waiting with this link code "
                           "(it may have given up; run link again)")
    return {"identity_key": pending.identity_key, "name": pending.name,
            "tag": pending.tag, "link_signature": pending.link_signature}


async def update_devices(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """A new signed device list: links at most one waiting device, may remove others."""
    assert conn.address is not None
    me = conn.address
    record = await conn.relay.store.account(me.account)
    assert record is not None
    try:
        signed = SignedDeviceList.verify(Ed25519PublicKey(record.account_key),
                                         require_field(frame, "device_list", bytes),
                                         require_field(frame, "device_list_signature", bytes))
    except TooManyDevicesError as exc:
        raise RequestError(api.TOO_MANY_DEVICES, str(exc)) from None
    except E2EProtoError as exc:
        raise RequestError(api.BAD_REQUEST, f"device list refused: {exc}") from None
    new = signed.device_list
    if new.account != me.account:
        raise RequestError(api.BAD_REQUEST, "the device list names another account")
    if new.version <= record.list_version:
        raise RequestError(api.STALE_DEVICE_LIST, f"device list version {new.version} is "
                           f"not newer than {record.list_version}")
    devices = {i: key.raw for i, key in new.devices}
    if devices.get(0) != record.devices.get(0):
        raise RequestError(api.BAD_REQUEST, "the primary device cannot change")
    if any(i in record.devices and key != record.devices[i] for i, key in devices.items()):
        raise RequestError(api.BAD_REQUEST, "a listed device cannot change its key")
    added_ids = [i for i in devices if i not in record.devices]
    lookup = frame.get("link")
    pending = await conn.relay.store.pending_link(lookup) if type(lookup) is bytes else None
    added = []
    if added_ids:
        if (len(added_ids) != 1 or pending is None or pending.account != me.account
                or devices[added_ids[0]] != pending.identity_key):
            raise RequestError(api.UNKNOWN_LINK, "a new device must be a waiting link "
                               "with the same key")
        if added_ids[0] <= record.max_device_id:
            raise RequestError(api.BAD_REQUEST, f"device id {added_ids[0]} was used "
                               "before; ids are never reused")
        added.append(NewDevice(added_ids[0], pending.identity_key, pending.name,
                               pending.signed_prekey, pending.one_time_prekeys,
                               pending.link_signature))
    try:
        removed = await conn.relay.store.replace_device_list(
            me.account, new.version, signed.body, signed.signature, devices, added,
            conn.relay.clock())
    except StaleListError:  # another connection's list won meanwhile
        raise RequestError(api.STALE_DEVICE_LIST, f"device list version {new.version} is "
                           "no longer newer than the stored one") from None
    log.info("device list of %s is now version %d (added %s, removed %s)", me.account,
             new.version, added_ids, removed)
    if added:
        try:
            await conn.relay.store.take_link(lookup)  # type: ignore[arg-type]
        except StoreUnavailableError as exc:  # the offer expires after link_timeout
            log.warning("could not remove an approved link offer: %s", exc)
        await conn.relay.link_approved(lookup, added_ids[0])  # type: ignore[arg-type]
    for device_id in removed:
        await conn.relay.disconnect(Address(me.account, device_id))
    return {"version": new.version, "removed": removed}
