"""The relay's side of the server-to-server link: what it answers the social server, and the
pump that hands the social server shares and revocations in order (when several relay nodes
share one Redis store, one node at a time: the one that holds the store's hand-over claim).

The social server may ask for an opted-in private account's signed device list and prekey
bundles (to start sessions) and hand over envelopes from its users' devices, which go into the
private devices' mailboxes like any message. Nothing else: the relay never hands it a message,
a contact, a key it does not publish to anyone, or group membership.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

import msgpack
import trio

from e2e_proto import relay_api as api
from e2e_proto.account_link import SharedRecord
from e2e_proto.address import Address, is_valid_account, is_valid_device_id, split_foreign
from e2e_proto.capabilities import PRIVATE, SOCIAL
from e2e_proto.federation import (
    CROSS_DISABLED,
    PEER_BUNDLES,
    PEER_DELIVER,
    PEER_DEVICES,
    PEER_SHARE,
    PEER_UNLINK,
)

from ..common.requests import RequestError
from ..common.store_base import StoreUnavailableError
from ..relay.messages import store_mail
from ..relay.store import AccountRecord, Enqueue, Outgoing
from .envelopes import check_delivery
from .options import PeerSetup
from .peer import (
    REQUEST_TIMEOUT,
    PeerClient,
    PeerHandler,
    PeerRefused,
    PeerUnavailable,
    serve_peer,
)
from .relay_store import SHARE, PeerItem, SharingEntry
from .sharing import outgoing_record, summary

if TYPE_CHECKING:
    from ..relay.server import Relay

log = logging.getLogger("e2e.relay.peer")

RETRY_INTERVAL = 2.0
"""Seconds between attempts to hand queued items to an unreachable social server (or while
another relay node hands them over)."""
HAND_OVER_CLAIM = 2 * REQUEST_TIMEOUT
"""Seconds a relay node's claim to hand the queued items over lasts (renewed before each item):
longer than one item's hand-over, so that only one node of a shared store hands them over."""
IDLE_CHECK = 60.0
"""Seconds between looks at an empty queue: a relay node that stopped while it held items (on a
store several nodes share) leaves them to the others."""
HOLDER_SIZE = 16


class HandedOverElsewhere(Exception):
    """Another relay node on the same store hands the queued items over now."""


class RelayFederation:
    """The relay's client of the social server, the requests it answers, and the pump."""

    def __init__(self, relay: Relay, setup: PeerSetup) -> None:
        self.relay = relay
        self.setup = setup
        self.peer = PeerClient(setup.key, PRIVATE, setup.peers, logger=log)
        self._wake = trio.Event()
        self._handing_over = trio.Lock()
        self._holder = secrets.token_bytes(HOLDER_SIZE)  # names this node's hand-over claim
        self.drained = trio.Event()
        """Set while nothing waits for the social server (a new item clears it)."""
        self.routes: dict[str, PeerHandler] = {
            PEER_DEVICES: self.devices, PEER_BUNDLES: self.bundles, PEER_DELIVER: self.deliver}
        """What the social server may ask (a type not here is refused ``unsupported``)."""

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the social server's requests and pump queued items, until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_peer, self.routes, self.setup.key, PRIVATE,
                                *self.setup.listen, log)
            nursery.start_soon(self.pump)
            task_status.started()

    def wake_pump(self) -> None:
        """Something was queued: hand it over now."""
        if self.drained.is_set():
            self.drained = trio.Event()
        self._wake.set()

    async def pump(self) -> None:
        """Hand queued items to the social server, in order, each until it is taken."""
        while True:
            self._wake = trio.Event()
            try:
                await self.hand_over_queue()
            except (PeerUnavailable, StoreUnavailableError, HandedOverElsewhere) as exc:
                log.info("queued items for the social server wait: %s", exc)
                with trio.move_on_after(RETRY_INTERVAL):  # retry backoff, or new work
                    await self._wake.wait()
                continue
            self.drained.set()
            with trio.move_on_after(IDLE_CHECK):  # new work, or items another node left
                await self._wake.wait()

    async def hand_over_queue(self) -> None:
        """Hand every queued item over now, in order (one caller at a time: the pump, or a
        request that wants its item taken before it answers, and one relay node at a time);
        :class:`PeerUnavailable` when the social server cannot be reached,
        :class:`HandedOverElsewhere` while another node hands them over."""
        store = self.relay.store.federation
        async with self._handing_over:
            try:
                while True:
                    await self._claim()
                    items = await store.peer_items(20)
                    if not items:
                        return
                    for item in items:
                        await self._claim()  # renewed: no other node hands over meanwhile
                        await self._hand_over(item)
            finally:
                with trio.move_on_after(RETRY_INTERVAL) as cleanup:
                    cleanup.shield = True
                    try:
                        await store.release_hand_over(self._holder)
                    except StoreUnavailableError:
                        pass  # the claim expires

    async def _claim(self) -> None:
        """Claim (or renew the claim) to hand the queued items over, or
        :class:`HandedOverElsewhere`."""
        if not await self.relay.store.federation.claim_hand_over(self._holder,
                                                                 HAND_OVER_CLAIM):
            raise HandedOverElsewhere("another relay node hands the queued items over")

    async def _hand_over(self, item: PeerItem) -> None:
        """Deliver one item and log it; a refusal is logged and the item dropped."""
        now = self.relay.clock()
        entry: SharingEntry | None
        try:
            if item.kind == SHARE:
                body = outgoing_record(item.body)
                answer = await self.peer.request(PEER_SHARE, link_id=item.link_id, record=body)
                entry = SharingEntry(now, "shared" if answer.get("applied") else "not taken",
                                     item.link_id, summary(SharedRecord.decode(body)), body)
            else:
                revocation, signature, account = _unlink_fields(item.body)
                await self.peer.request(PEER_UNLINK, link_id=item.link_id, account=account,
                                        revocation=revocation, signature=signature)
                entry = SharingEntry(now, "deleted", item.link_id,
                                     "the social server deleted what it received", None)
        except PeerRefused as exc:
            log.warning("the social server refused a queued %s: %s", item.kind, exc.code)
            entry = SharingEntry(now, "refused", item.link_id, f"refused: {exc.code}", None)
        await self.relay.store.federation.peer_item_done(item.seq, entry)

    # -- what the social server asks ---------------------------------------------------------

    async def _opted_in(self, frame: dict[str, Any]) -> AccountRecord:
        """The request's private ``account``, which must exist and take cross chats."""
        account = frame.get("account")
        record = await self.relay.store.account(account) if is_valid_account(account) else None
        if record is None:
            raise RequestError(api.UNKNOWN_ACCOUNT, "no such private account")
        if not await self.relay.store.federation.cross_enabled(record.account):
            raise RequestError(CROSS_DISABLED, f"{record.account}@{PRIVATE} does not take "
                               "cross-transport chats")
        return record

    async def devices(self, frame: dict[str, Any]) -> dict[str, Any]:
        """An opted-in account's key, signed device list and link signatures."""
        record = await self._opted_in(frame)
        return {"account_key": record.account_key, "device_list": record.list_body,
                "device_list_signature": record.list_signature,
                "link_signatures": sorted(map(list, (await self.relay.store.link_signatures(
                    record.account)).items()))}

    async def bundles(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Prekey bundles of an opted-in account's devices (each one-time prekey once), as
        many as the asking social account may take (its own rate limit)."""
        record = await self._opted_in(frame)
        account = record.account
        requester = split_foreign(frame.get("requester"))
        wanted = frame.get("device_ids")
        if (requester is None or requester[1] != SOCIAL or type(wanted) is not list
                or not 0 < len(wanted) <= len(record.devices)
                or not all(is_valid_device_id(i) and i in record.devices for i in wanted)
                or len(set(wanted)) != len(wanted)):
            raise RequestError(api.BAD_REQUEST, "device_ids must list distinct devices of the "
                               "account, for a named social requester")
        one_time = await self.relay.limits.admit_bundles(
            frame["requester"], [Address(account, i) for i in wanted], api.RATE_LIMITED)
        bundles = []
        for device_id in wanted:
            taken = await self.relay.store.take_bundle(account, device_id,
                                                       Address(account, device_id) in one_time)
            if taken is None:
                raise RequestError(api.NO_PREKEYS, f"{account}.{device_id} has no prekeys")
            bundles.append(list(taken[0]))
        return {"bundles": bundles}

    async def deliver(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Envelopes from one social device to every device of an opted-in private account,
        stored in their mailboxes (all or none) before the answer."""
        record = await self._opted_in(frame)
        account = record.account
        sender = frame.get("sender")
        device = frame.get("sender_device")
        foreign = split_foreign(sender)
        if foreign is None or foreign[1] != SOCIAL or not is_valid_device_id(device):
            raise RequestError(api.BAD_REQUEST, "the sender must be a social device")
        assert isinstance(sender, str) and isinstance(device, int)
        stored = check_delivery(frame.get("envelopes"), Address(sender, device), account,
                                record.devices, PRIVATE)
        await store_mail(self.relay, Enqueue(
            [Outgoing(*s) for s in stored], (sender, device), self.relay.clock(),
            self.relay.config.mailbox_quota, self.relay.config.mailbox_quota_bytes))
        return {"stored": len(stored)}


def unlink_item(revocation: bytes, signature: bytes, social_account: str) -> bytes:
    """A queued unlink item's body: ``msgpack([revocation, signature, social_account])``."""
    return msgpack.packb([revocation, signature, social_account])


def _unlink_fields(body: bytes) -> tuple[bytes, bytes, str]:
    """Inverse of :func:`unlink_item`."""
    revocation, signature, account = msgpack.unpackb(body)
    return revocation, signature, account
