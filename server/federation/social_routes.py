"""What a social device may ask its server about the other transport.

Its account's cross identity (``cross_publish`` a signed cross device list, ``cross_join`` a
device's link signature waiting for approval, ``cross_get``, ``cross_set``), a private
account's signed device list and bundles (``cross_devices``, ``cross_bundles``, fetched from
the relay), sending to a private account (``cross_send``) and what a linked private account
shared with this one (``linked``). docs/PROTOCOL.md §19.7 lists every field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e2e_proto import relay_api, social_api
from e2e_proto.address import Address, is_valid_device_id, qualify
from e2e_proto.capabilities import PRIVATE, SOCIAL
from e2e_proto.constants import MAX_DEVICES, SIGNATURE_SIZE
from e2e_proto.cross_identity import SignedCrossDeviceList, cross_link_message
from e2e_proto.errors import E2EProtoError
from e2e_proto.federation import (
    CROSS_DISABLED,
    PEER_BUNDLES,
    PEER_DELIVER,
    PEER_DEVICES,
    PEER_UNAVAILABLE,
    to_peer_view,
)
from e2e_proto.keys import Ed25519PublicKey

from ..common.requests import RequestError, Route, RouteTable
from ..social.fields import require_field
from .envelopes import foreign_name_field, mismatch_details, split_send
from .peer import PeerRefused, PeerUnavailable, refusal
from .social import listed_devices, store_cross_message
from .social_store import CrossIdentity, CrossJoin, StaleCrossListError

if TYPE_CHECKING:
    from ..social.connection import SocialConnection
    from .social import SocialFederation


CODES = frozenset(value for name, value in vars(social_api).items()
                  if name.isupper() and isinstance(value, str))
"""The social server's error codes: a refusal from the relay keeps its code if it is one."""


def _federation(conn: SocialConnection) -> SocialFederation:
    federation = conn.server.federation
    if federation is None:
        raise RequestError(PEER_UNAVAILABLE, "this social server is not connected to a relay")
    return federation


def _my_identity(conn: SocialConnection, enabled: bool = True) -> CrossIdentity:
    """This account's cross identity (opted in, when ``enabled``)."""
    assert conn.address is not None
    identity = conn.store.federation.cross_identity(conn.address.account)
    if identity is None or (enabled and not identity.enabled):
        raise RequestError(CROSS_DISABLED, "cross-transport chats are off for this account; "
                           "turn them on with 'e2e-chat --transport social cross on'")
    return identity


async def _ask(conn: SocialConnection, kind: str, **fields: Any) -> dict[str, Any]:
    """A request to the other server; its refusal (code kept when this API has it) or
    absence as this server's."""
    try:
        return await _federation(conn).peer.request(kind, **fields)
    except (PeerUnavailable, PeerRefused) as exc:
        raise refusal(exc, CODES, PEER_UNAVAILABLE) from None


# -- this account's cross identity ------------------------------------------------------------


async def cross_publish(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Publish this account's cross identity key and a cross device list it signed: every
    listed device a device of this account with the key it published, each with its link
    signature; under the same key only a newer version."""
    assert conn.address is not None
    account = conn.address.account
    try:
        key = Ed25519PublicKey(require_field(frame, "identity_key", bytes))
        signed = SignedCrossDeviceList.verify(
            key, frame.get("device_list"), frame.get("device_list_signature"))  # type: ignore[arg-type]
        signatures = relay_api.link_signatures_from_wire(frame.get("link_signatures"))
        signed.check_links(key, signatures)
    except E2EProtoError as exc:
        raise RequestError(social_api.BAD_REQUEST, f"cross device list refused: {exc}"
                           ) from None
    published = {d.device_id: d.identity_key for d in conn.store.devices(account)}
    if signed.device_list.account != account or any(
            published.get(device_id) != device_key.raw
            for device_id, device_key in signed.device_list.devices):
        raise RequestError(social_api.BAD_REQUEST, "the list must name this account and "
                           "devices of it with the keys they published")
    try:
        conn.store.federation.put_cross_identity(CrossIdentity(
            account, key.raw, signed.device_list.version, signed.body, signed.signature,
            {d: signatures[d] for d in signed.device_list.device_ids}, False))
    except StaleCrossListError:
        raise RequestError(relay_api.STALE_DEVICE_LIST, "the stored list is as new or newer"
                           ) from None
    return {"version": signed.device_list.version}


async def cross_join(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Ask to join this account's cross identity: this device's link signature for the key
    it names, kept until the device holding the identity key lists it."""
    assert conn.address is not None
    account, device_id = conn.address
    own = {d.device_id: d.identity_key for d in conn.store.devices(account)}.get(device_id)
    signature = frame.get("signature")
    try:
        key = Ed25519PublicKey(require_field(frame, "identity_key", bytes))
        if own is None or type(signature) is not bytes or len(signature) != SIGNATURE_SIZE:
            raise ValueError
        Ed25519PublicKey(own).verify(cross_link_message(key, account), signature)
    except (ValueError, E2EProtoError):
        raise RequestError(social_api.BAD_REQUEST, "publish this device's keys first, and sign "
                           "the cross link message with its key") from None
    conn.store.federation.add_cross_join(account, CrossJoin(device_id, own, signature))
    return {}


async def cross_get(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """This account's cross identity (nil fields without one), whether it is on, and the
    devices waiting to join."""
    assert conn.address is not None
    account = conn.address.account
    identity = conn.store.federation.cross_identity(account)
    joins = [list(j) for j in conn.store.federation.cross_joins(account)]
    if identity is None:
        return {"identity_key": None, "enabled": False, "joins": joins}
    return {"identity_key": identity.identity_key, "device_list": identity.list_body,
            "device_list_signature": identity.list_signature,
            "link_signatures": sorted(map(list, identity.link_signatures.items())),
            "enabled": identity.enabled, "joins": joins}


async def cross_set(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Turn cross-transport chats on or off for this account (it needs a cross identity)."""
    assert conn.address is not None
    enabled = require_field(frame, "enabled", bool)
    if not conn.store.federation.set_cross_enabled(conn.address.account, enabled):
        raise RequestError(social_api.BAD_REQUEST, "this account has no cross identity yet")
    return {"enabled": enabled}


# -- chats with private accounts --------------------------------------------------------------


async def cross_devices(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """A private account's key, signed device list and link signatures, from the relay."""
    assert conn.address is not None
    _my_identity(conn)
    qualified, name = foreign_name_field(frame, "account", PRIVATE)
    answer = await _ask(conn, PEER_DEVICES, account=name,
                        requester=qualify(conn.address.account, SOCIAL))
    return {"account": qualified, **{k: answer.get(k) for k in (
        "account_key", "device_list", "device_list_signature", "link_signatures")}}


async def cross_bundles(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Prekey bundles of a private account's devices, from the relay."""
    assert conn.address is not None
    _my_identity(conn)
    qualified, name = foreign_name_field(frame, "account", PRIVATE)
    wanted = frame.get("device_ids")
    if (type(wanted) is not list or not 0 < len(wanted) <= MAX_DEVICES
            or not all(is_valid_device_id(i) for i in wanted)):
        raise RequestError(social_api.BAD_REQUEST, f"device_ids must list 1 to {MAX_DEVICES} "
                           "devices")
    conn.server.bundle_limits.admit(conn.address.account,
                                    [Address(qualified, i) for i in wanted],
                                    social_api.RATE_LIMITED)  # the relay limits too
    answer = await _ask(conn, PEER_BUNDLES, account=name, device_ids=wanted,
                        requester=qualify(conn.address.account, SOCIAL))
    return {"account": qualified, "bundles": answer.get("bundles")}


async def cross_send(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Send to a private account from one of this account's cross devices: the envelopes for
    its devices go to the relay (which stores them before it answers), then those for this
    account's other cross devices are kept here as a message of the conversation."""
    assert conn.address is not None
    me = conn.address
    identity = _my_identity(conn)
    own_devices = listed_devices(identity)
    if me.device_id not in own_devices:
        raise RequestError(CROSS_DISABLED, "this device is not one of this account's "
                           "cross-transport devices (run 'cross on' here and approve it)")
    qualified, name = foreign_name_field(frame, "to", PRIVATE)
    client_id = require_field(frame, "client_id", bytes)
    if len(client_id) != social_api.CLIENT_ID_SIZE:
        raise RequestError(social_api.BAD_REQUEST, "client_id must be 16 bytes")
    own, foreign = split_send(frame.get("envelopes"), me, own_devices, qualified)
    try:
        await _ask(conn, PEER_DELIVER, sender=qualify(me.account, SOCIAL),
                   sender_device=me.device_id,
                   account=name, client_id=client_id,
                   envelopes=[to_peer_view(e, SOCIAL).encode() for e in foreign])
    except RequestError as exc:
        if exc.code == social_api.DEVICE_MISMATCH:
            raise RequestError(social_api.DEVICE_MISMATCH, str(exc),
                               **mismatch_details(exc.details, qualified, name)) from None
        raise
    message = store_cross_message(conn.server, me.account, qualified, me, own, client_id) \
        if own else None
    return {"message": message, "ts": conn.server.now_ms()}


async def linked(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """This account's live account link and the record last shared through it (for this
    account's own devices only)."""
    assert conn.address is not None
    account = conn.address.account
    live = conn.store.federation.live_link(account)
    shared = conn.store.federation.shared_record(account)
    return {"linked": None if live is None else [live.private_account, live.link_id,
                                                 live.linked_at],
            "record": None if shared is None else shared[0],
            "received_at": None if shared is None else shared[1]}


ROUTES: RouteTable = {
    "cross_publish": Route(cross_publish, ("identity_key", "device_list",
                                           "device_list_signature", "link_signatures")),
    "cross_join": Route(cross_join, ("identity_key", "signature")),
    "cross_get": Route(cross_get),
    "cross_set": Route(cross_set, ("enabled",)),
    "cross_devices": Route(cross_devices, ("account",)),
    "cross_bundles": Route(cross_bundles, ("account", "device_ids")),
    "cross_send": Route(cross_send, ("to", "envelopes", "client_id")),
    "linked": Route(linked),
}
"""The social server's requests about the other transport (part of its authenticated route
table)."""
