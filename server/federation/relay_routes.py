"""What a private device may ask the relay about the other transport.

Cross-transport chats: opting in or out (``cross_set``), a social account's signed cross
device list and prekey bundles (``cross_devices``, ``cross_bundles``, fetched from the social
server), and sending (``cross_send``: the envelopes for the social recipient's devices go over
the server-to-server link, those for this account's other devices into their mailboxes).
Account links: ``link_account`` (a statement both sides signed), ``unlink_account`` (a signed
revocation), ``share_update`` (the allow-listed profile part, from the client that holds it)
and ``sharing`` (the sharing log). docs/PROTOCOL.md §19.6 lists every field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e2e_proto import relay_api as api
from e2e_proto.account_link import PRIVATE_SIDE, LinkRevocation, SignedLinkStatement
from e2e_proto.address import Address, is_valid_device_id, qualify
from e2e_proto.capabilities import PRIVATE, SOCIAL
from e2e_proto.constants import MAX_DEVICES
from e2e_proto.errors import E2EProtoError
from e2e_proto.federation import (
    ALREADY_LINKED,
    CROSS_DISABLED,
    LINK_REFUSED,
    NOT_LINKED,
    PEER_BUNDLES,
    PEER_DELIVER,
    PEER_DEVICES,
    PEER_LINK,
    PEER_UNAVAILABLE,
    to_peer_view,
)
from e2e_proto.social_api import CLIENT_ID_SIZE

from ..common.requests import RequestError, Route, RouteTable
from ..common.store_base import StoreUnavailableError
from ..relay.fields import require_field
from ..relay.messages import enqueue, store_mail
from ..relay.store import Outgoing
from .envelopes import foreign_name_field, mismatch_details, split_send
from .peer import PeerRefused, PeerUnavailable, refusal
from .relay import HandedOverElsewhere, RelayFederation, unlink_item
from .relay_store import UNLINK, LinkTakenError, SharingEntry, StoredLink
from .sharing import build_record, queue_share, shared_profile

if TYPE_CHECKING:
    from ..relay.connection import RelayConnection

MAX_SHARING_LOG = 100
CODES = frozenset(value for name, value in vars(api).items()
                  if name.isupper() and isinstance(value, str))
"""The relay's error codes: a refusal from the social server keeps its code if it is one."""


def _federation(conn: RelayConnection) -> RelayFederation:
    federation = conn.relay.federation
    if federation is None:
        raise RequestError(PEER_UNAVAILABLE, "this relay is not connected to a social server")
    return federation


async def _opted_in(conn: RelayConnection) -> str:
    """This device's account, which must take cross-transport chats."""
    assert conn.address is not None
    account = conn.address.account
    if not await conn.relay.store.federation.cross_enabled(account):
        raise RequestError(CROSS_DISABLED, "cross-transport chats are off for this account; "
                           "turn them on with 'e2e-chat cross on'")
    return account


async def _ask(conn: RelayConnection, kind: str, **fields: Any) -> dict[str, Any]:
    """A request to the other server; its refusal (code kept when this API has it) or
    absence as this server's."""
    try:
        return await _federation(conn).peer.request(kind, **fields)
    except (PeerUnavailable, PeerRefused) as exc:
        raise refusal(exc, CODES, PEER_UNAVAILABLE) from None


async def _hand_over_now(conn: RelayConnection) -> None:
    """Hand what was just queued (a link's first record, a revocation) to the social server
    before answering; when it cannot be reached now, the pump does it later."""
    federation = conn.relay.federation
    if federation is None:
        return
    try:
        await federation.hand_over_queue()
    except (PeerUnavailable, StoreUnavailableError, HandedOverElsewhere):
        federation.wake_pump()


# -- cross-transport chats --------------------------------------------------------------------


async def cross_set(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Turn cross-transport chats on or off for this account."""
    assert conn.address is not None
    enabled = require_field(frame, "enabled", bool)
    await conn.relay.store.federation.set_cross_enabled(conn.address.account, enabled)
    return {"enabled": enabled}


async def cross_devices(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """A social account's cross identity key, signed cross device list and link signatures
    (the fields of ``get_devices``)."""
    me = await _opted_in(conn)
    qualified, name = foreign_name_field(frame, "account", SOCIAL)
    answer = await _ask(conn, PEER_DEVICES, account=name, requester=qualify(me, PRIVATE))
    return {"account": qualified, **{k: answer.get(k) for k in (
        "account_key", "device_list", "device_list_signature", "link_signatures")}}


async def cross_bundles(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Prekey bundles of a social account's cross devices (each one-time prekey once)."""
    me = await _opted_in(conn)
    qualified, name = foreign_name_field(frame, "account", SOCIAL)
    wanted = frame.get("device_ids")
    if (type(wanted) is not list or not 0 < len(wanted) <= MAX_DEVICES
            or not all(is_valid_device_id(i) for i in wanted)):
        raise RequestError(api.BAD_REQUEST, f"device_ids must list 1 to {MAX_DEVICES} devices")
    await conn.relay.limits.admit_bundles(me, [Address(qualified, i) for i in wanted],
                                          api.RATE_LIMITED)  # as for local ones; the peer too
    answer = await _ask(conn, PEER_BUNDLES, account=name, device_ids=wanted,
                        requester=qualify(me, PRIVATE))
    return {"account": qualified, "bundles": answer.get("bundles")}


async def cross_send(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Send to a social account: its devices' envelopes go to the social server (which keeps
    them before it answers), then this account's other devices' into their mailboxes."""
    assert conn.address is not None
    me = conn.address
    await _opted_in(conn)
    qualified, name = foreign_name_field(frame, "to", SOCIAL)
    client_id = require_field(frame, "client_id", bytes)
    if len(client_id) != CLIENT_ID_SIZE:
        raise RequestError(api.BAD_REQUEST, f"client_id must be {CLIENT_ID_SIZE} bytes")
    own_record = await conn.relay.store.account(me.account)
    assert own_record is not None
    own, foreign = split_send(frame.get("envelopes"), me, own_record.devices, qualified)
    try:
        await _ask(conn, PEER_DELIVER, sender=qualify(me.account, PRIVATE),
                   sender_device=me.device_id,
                   account=name, client_id=client_id,
                   envelopes=[to_peer_view(e, PRIVATE).encode() for e in foreign])
    except RequestError as exc:
        if exc.code == api.DEVICE_MISMATCH:
            raise RequestError(api.DEVICE_MISMATCH, str(exc),
                               **mismatch_details(exc.details, qualified, name)) from None
        raise
    if own:  # (a device unlinked meanwhile: device_mismatch, as for a send)
        await store_mail(conn.relay, enqueue(conn, [Outgoing(*o) for o in own]))
    return {"stored": len(own) + len(foreign)}


# -- account links ----------------------------------------------------------------------------


async def link_account(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Link this account to a social account: the statement must be signed by this account's
    key and by the social device key it names (which the social server checks), made just
    now, with a link id never used; then the first record is shared."""
    assert conn.address is not None
    account = conn.address.account
    try:
        signed = SignedLinkStatement.verify(frame.get("statement"),
                                            frame.get("private_signature"),
                                            frame.get("social_signature"))
        signed.check_fresh(int(conn.relay.clock() * 1000))
    except E2EProtoError as exc:
        raise RequestError(LINK_REFUSED, f"the link statement does not hold: {exc}") from None
    statement = signed.statement
    record = await conn.relay.store.account(account)
    assert record is not None
    if statement.private_account != account or statement.private_key.raw != record.account_key:
        raise RequestError(LINK_REFUSED, "the link statement is not this account's: it must "
                           "name it and be signed by its account key")
    if await conn.relay.store.federation.live_link(account) is not None:
        raise RequestError(ALREADY_LINKED, "this account is linked already; unlink it first")
    profile, statuses = shared_profile(frame)
    await _ask(conn, PEER_LINK, statement=signed.body,
               private_signature=signed.private_signature,
               social_signature=signed.social_signature)
    link = StoredLink(statement.link_id, account, signed.body, signed.private_signature,
                      signed.social_signature, conn.relay.clock())
    try:
        await conn.relay.store.federation.add_link(link, SharingEntry(
            link.linked_at, "linked", link.link_id,
            f"linked to {statement.social_account}@{SOCIAL}", None))
    except LinkTakenError:
        raise RequestError(LINK_REFUSED, "that link id was used before") from None
    await queue_share(conn.relay, link, await build_record(conn.relay, link, profile, statuses))
    await _hand_over_now(conn)
    return {"link_id": link.link_id, "social_account": statement.social_account}


async def unlink_account(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """End this account's live link with a revocation its account key signed: sharing stops
    now, and the social server is told to delete what it received."""
    assert conn.address is not None
    account = conn.address.account
    live = await conn.relay.store.federation.live_link(account)
    if live is None:
        raise RequestError(NOT_LINKED, "this account is not linked")
    body, signature = frame.get("revocation"), frame.get("signature")
    try:
        revocation = LinkRevocation.verify(live.statement, body, signature)
    except E2EProtoError as exc:
        raise RequestError(LINK_REFUSED, f"the revocation does not hold: {exc}") from None
    if revocation.side != PRIVATE_SIDE:
        raise RequestError(LINK_REFUSED, "a revocation sent here is the private side's")
    assert isinstance(body, bytes) and isinstance(signature, bytes)
    now = conn.relay.clock()
    item = unlink_item(body, signature, live.statement.social_account)
    if not await conn.relay.store.federation.revoke_link(
            account, live.link_id, now,
            SharingEntry(now, "unlinked", live.link_id, "sharing stopped", None),
            (UNLINK, item)):
        raise RequestError(NOT_LINKED, "this account is not linked")
    await _hand_over_now(conn)
    return {}


async def share_update(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Share the account's profile and live status updates (the allow-listed part, from the
    client) with the linked social account; ``not_linked`` without a live link."""
    assert conn.address is not None
    live = await conn.relay.store.federation.live_link(conn.address.account)
    if live is None:
        raise RequestError(NOT_LINKED, "this account is not linked")
    profile, statuses = shared_profile(frame)
    await queue_share(conn.relay, live, await build_record(conn.relay, live, profile, statuses))
    return {}


async def sharing(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """The account's sharing log: ``[[at, kind, link_id, summary, record or nil], ...]``,
    oldest first (the newest ``limit``, at most 100), and the live link if any."""
    assert conn.address is not None
    limit = frame.get("limit", MAX_SHARING_LOG)
    if type(limit) is not int or not 0 < limit <= MAX_SHARING_LOG:
        raise RequestError(api.BAD_REQUEST, f"limit must be 1 to {MAX_SHARING_LOG}")
    store = conn.relay.store.federation
    live = await store.live_link(conn.address.account)
    return {"entries": [list(e) for e in await store.sharing_log(conn.address.account, limit)],
            "linked": None if live is None else [live.link_id,
                                                 live.statement.social_account,
                                                 live.linked_at],
            "cross": await store.cross_enabled(conn.address.account)}


ROUTES: RouteTable = {
    "cross_set": Route(cross_set, ("enabled",)),
    "cross_devices": Route(cross_devices, ("account",)),
    "cross_bundles": Route(cross_bundles, ("account", "device_ids")),
    "cross_send": Route(cross_send, ("to", "envelopes", "client_id")),
    "link_account": Route(link_account, ("statement", "private_signature", "social_signature",
                                         "profile", "statuses")),
    "unlink_account": Route(unlink_account, ("revocation", "signature")),
    "share_update": Route(share_update, ("profile", "statuses")),
    "sharing": Route(sharing, ("limit",)),
}
"""The relay's requests about the other transport (part of its authenticated route table)."""
