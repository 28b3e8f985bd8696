"""The social server's side of the server-to-server link: what it answers the relay.

The relay may hand it a link statement to check and keep (``link``), the shared record of a
live link (``share``), a revocation (``unlink``: the link and everything shared through it are
deleted for good), and, for cross-transport chats, ask for an opted-in social account's cross
identity and bundles and hand over envelopes from private devices. The envelopes become
messages of a one-to-one conversation between the social account and ``name@private`` in the
social store: envelopes only, as in any secret conversation.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgpack
import trio

from e2e_proto import social_api as api
from e2e_proto.account_link import (
    LinkRevocation,
    LinkStatement,
    SharedRecord,
    SignedLinkStatement,
)
from e2e_proto.address import Address, is_valid_account, is_valid_device_id, split_foreign
from e2e_proto.capabilities import PRIVATE, SOCIAL
from e2e_proto.constants import LINK_ID_SIZE
from e2e_proto.errors import E2EProtoError
from e2e_proto.federation import (
    ALREADY_LINKED,
    CROSS_DISABLED,
    LINK_REFUSED,
    PEER_BUNDLES,
    PEER_DELIVER,
    PEER_DEVICES,
    PEER_LINK,
    PEER_SHARE,
    PEER_UNLINK,
)

from ..common.requests import RequestError
from ..social.store import ClientIdReusedError, NoPrekeysError
from .envelopes import check_delivery
from .options import PeerSetup
from .peer import PeerClient, PeerHandler, serve_peer
from .social_store import CrossIdentity, LinkTakenError, SocialLink

if TYPE_CHECKING:
    from ..social.server import SocialServer

log = logging.getLogger("e2e.social.peer")


def listed_devices(identity: CrossIdentity) -> dict[int, bytes]:
    """The devices (id -> device key) of a stored cross device list (checked when stored)."""
    _, _, entries = msgpack.unpackb(identity.list_body)
    return {device_id: key for device_id, key in entries}


def opted_in(server: SocialServer, account: object) -> CrossIdentity:
    """The cross identity of ``account``, which must exist and take cross-transport chats."""
    if not is_valid_account(account) or not server.store.account_exists(account):  # type: ignore[arg-type]
        raise RequestError(api.UNKNOWN_ACCOUNT, "no such social account")
    identity = server.store.federation.cross_identity(account)  # type: ignore[arg-type]
    if identity is None or not identity.enabled:
        raise RequestError(CROSS_DISABLED, f"{account}@{SOCIAL} does not take cross-transport "
                           "chats")
    return identity


class SocialFederation:
    """The social server's client of the relay, and the requests it answers."""

    def __init__(self, server: SocialServer, setup: PeerSetup) -> None:
        self.server = server
        self.setup = setup
        self.peer = PeerClient(setup.key, SOCIAL, setup.peers, logger=log)
        self.routes: dict[str, PeerHandler] = {
            PEER_LINK: self.link, PEER_SHARE: self.share, PEER_UNLINK: self.unlink,
            PEER_DEVICES: self.devices, PEER_BUNDLES: self.bundles, PEER_DELIVER: self.deliver}
        """What the relay may ask (a type not here is refused ``unsupported``)."""

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the relay's requests until cancelled."""
        await serve_peer(self.routes, self.setup.key, SOCIAL, *self.setup.listen, log,
                         task_status=task_status)

    # -- account links -----------------------------------------------------------------------

    async def link(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Keep a link statement whose social half holds: signed by the key the named device
        of the named social account published, made just now, and that account unlinked."""
        store = self.server.store
        try:
            signed = SignedLinkStatement.verify(frame.get("statement"),
                                                frame.get("private_signature"),
                                                frame.get("social_signature"))
            signed.check_fresh(self.server.now_ms())
        except E2EProtoError as exc:
            raise RequestError(LINK_REFUSED, f"the link statement does not hold: {exc}"
                               ) from None
        statement = signed.statement
        account = statement.social_account
        keys = {d.device_id: d.identity_key for d in store.devices(account)} if (
            store.account_exists(account)) else {}
        if keys.get(statement.social_device) != statement.social_key.raw:
            raise RequestError(LINK_REFUSED, "the statement's social key is not a key of that "
                               "device of that social account")
        if store.federation.live_link(account) is not None:
            raise RequestError(ALREADY_LINKED, "the social account is linked already")
        try:
            store.federation.add_link(SocialLink(
                account, statement.link_id, statement.private_account, signed.body,
                signed.private_signature, signed.social_signature, self.server.clock()))
        except LinkTakenError:
            raise RequestError(LINK_REFUSED, "that link was ended or is taken") from None
        log.info("account link made for a social account")
        return {}

    async def share(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Keep the record shared through a live link (strictly the allow-listed shape);
        ``applied`` false when no live link has that id."""
        link_id = frame.get("link_id")
        if type(link_id) is not bytes or len(link_id) != LINK_ID_SIZE:
            raise RequestError(api.BAD_REQUEST, "link_id must be 16 bytes")
        try:
            record = SharedRecord.decode(frame.get("record"))
        except E2EProtoError as exc:
            raise RequestError(api.BAD_REQUEST, f"shared record refused: {exc}") from None
        applied = self.server.store.federation.put_shared_record(link_id, record.encode(),
                                                                 self.server.clock())
        return {"applied": applied}

    async def unlink(self, frame: dict[str, Any]) -> dict[str, Any]:
        """End a live link on a revocation one of its keys signed; everything it shared is
        deleted. ``ended`` false when the link is not live here (ended already)."""
        account = frame.get("account")
        link_id = frame.get("link_id")
        store = self.server.store.federation
        live = store.live_link(account) if is_valid_account(account) else None  # type: ignore[arg-type]
        if live is None or live.link_id != link_id:
            return {"ended": False}
        try:
            LinkRevocation.verify(LinkStatement.decode(live.body), frame.get("revocation"),
                                  frame.get("signature"))
        except E2EProtoError as exc:
            raise RequestError(LINK_REFUSED, f"the revocation does not hold: {exc}") from None
        return {"ended": store.end_link(live.social_account, live.link_id)}

    # -- cross-transport chats ---------------------------------------------------------------

    async def devices(self, frame: dict[str, Any]) -> dict[str, Any]:
        """An opted-in account's cross identity key, signed cross device list and link
        signatures."""
        identity = opted_in(self.server, frame.get("account"))
        return {"account_key": identity.identity_key, "device_list": identity.list_body,
                "device_list_signature": identity.list_signature,
                "link_signatures": sorted(map(list, identity.link_signatures.items()))}

    async def bundles(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Prekey bundles of an opted-in account's cross devices, for a named private
        requester (rate-limited as that requester)."""
        identity = opted_in(self.server, frame.get("account"))
        devices = listed_devices(identity)
        requester = frame.get("requester")
        wanted = frame.get("device_ids")
        foreign = split_foreign(requester)
        if (foreign is None or foreign[1] != PRIVATE or type(wanted) is not list
                or not 0 < len(wanted) <= len(devices) or len(set(wanted)) != len(wanted)
                or not all(is_valid_device_id(i) and i in devices for i in wanted)):
            raise RequestError(api.BAD_REQUEST, "device_ids must list distinct cross devices "
                               "of the account, for a named private requester")
        one_time = self.server.bundle_limits.admit(
            requester, [Address(identity.account, i) for i in wanted],  # type: ignore[arg-type]
            api.RATE_LIMITED)
        try:
            bundles = self.server.store.take_bundles(identity.account, wanted,
                                                     {a.device_id for a in one_time})
        except NoPrekeysError as exc:
            raise RequestError(api.NO_PREKEYS, f"device {exc.device_id} has no prekeys"
                               ) from None
        return {"bundles": [list(b) for b in bundles]}

    async def deliver(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Envelopes from one private device to every cross device of an opted-in account:
        a message of their one-to-one conversation, kept before the answer (a resend with the
        same ``client_id`` is the same message)."""
        identity = opted_in(self.server, frame.get("account"))
        sender, device = frame.get("sender"), frame.get("sender_device")
        foreign = split_foreign(sender)
        client_id = frame.get("client_id")
        if (foreign is None or foreign[1] != PRIVATE or not is_valid_device_id(device)
                or type(client_id) is not bytes or len(client_id) != api.CLIENT_ID_SIZE):
            raise RequestError(api.BAD_REQUEST, "the sender must be a private device, with a "
                               "16-byte client_id")
        assert isinstance(sender, str) and isinstance(device, int)
        stored = check_delivery(frame.get("envelopes"), Address(sender, device),
                                identity.account, listed_devices(identity), SOCIAL)
        message = store_cross_message(self.server, identity.account, sender,
                                      Address(sender, device), stored, client_id)
        return {"message": message}


def store_cross_message(server: SocialServer, account: str, foreign: str, sender: Address,
                        envelopes: list[tuple[str, int, bytes]], client_id: bytes) -> int:
    """Keep a message of the conversation between ``account`` and ``foreign`` (envelopes
    only) and wake ``account``'s devices; its id."""
    conversation = server.store.direct(account, foreign, create=True)
    assert conversation.id is not None
    try:
        message = server.store.add_message(conversation.id, sender.account, sender.device_id,
                                           server.now_ms(), None, envelopes, client_id)
    except ClientIdReusedError:
        raise RequestError(api.BAD_REQUEST, "that client_id was used for another "
                           "conversation") from None
    server.wake([account])
    return message
