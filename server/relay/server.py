"""The relay as a whole: its store, its hub, its connections by device, links, blobs, calls
and rate limits.

A thin trio layer over :mod:`e2e_proto` frames, a :class:`~server.relay.store.RelayStore` and a
:class:`~server.relay.hub.Hub`. It routes envelopes by their addresses and never decrypts,
stores or logs anything else of them. One client's bad bytes get an error frame (and, when the
stream can no longer be parsed, a disconnect); they never stop the server.

With several relay processes on one Redis (DESIGN §17) each process is a *node*: its registry
holds its own connections, and the hub carries events to the nodes that serve the other
devices. Counted per node (they protect one process): the limits per account on requests and
connections, the connections waiting to authenticate, and pending links overall and per source
address; counted in the store, for all nodes: pending links per account, mailbox quotas, blob
quotas, and the limits that protect users (:attr:`Relay.limits`: registrations per address,
prekey bundles and one-time prekeys handed out). Calls stay on the node where they started
(:mod:`server.relay.calls`); their rings and ends reach every node.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from e2e_proto import relay_api as api
from e2e_proto.address import Address
from shared.rate_limits import TokenBuckets

from ..calls.registry import Call, CallRegistry, SfuGrant
from ..common.blobs import BlobFolder, BlobService, default_blob_dir, scratch_blob_dir
from ..common.connection import ConnectionRegistry
from ..common.slots import Slots
from ..common.store_base import StoreUnavailableError
from .config import RelayConfig
from .connection import RelayConnection
from .hub import DISPLACED, MAIL, PUSH, UNLINKED, DeviceEvent, Hub, LocalHub
from .store import LINK_IN_USE, Delivery, PendingLink, RelayStore

if TYPE_CHECKING:
    from ..federation.relay import RelayFederation

log = logging.getLogger("e2e.relay")

CLEANUP_TIMEOUT = 5.0
"""Seconds an ended connection may spend withdrawing its link offer and subscriptions."""


class Relay(ConnectionRegistry[Address, "RelayConnection"]):
    """The relay's logic: serve connections (``handle_stream``) over one store and hub.

    Blobs are files in ``blob_dir`` (default: ``NAME-blobs`` beside the store's ``NAME.db``; the
    nodes of a Redis store share one folder).
    """

    def __init__(self, store: RelayStore, config: RelayConfig | None = None,
                 clock: Callable[[], float] = time.time, hub: Hub | None = None,
                 blob_dir: str | os.PathLike[str] | None = None,
                 sfu: SfuGrant | None = None) -> None:
        self.config = config or RelayConfig()
        super().__init__(self.config)
        self.store = store
        self.clock = clock
        self.hub = hub or LocalHub()
        self.hub.bind(self)
        if blob_dir is None:
            path = getattr(store, "path", None)  # a store in one file keeps blobs beside it
            blob_dir = default_blob_dir(path) if path is not None else scratch_blob_dir()
        self.blobs = BlobService(store.blobs, BlobFolder(Path(blob_dir)), self.config.blobs,
                                 lambda: self.clock(), api.BAD_REQUEST)
        self.calls = CallRegistry(self.config.max_call_participants, sfu,
                                  lambda: int(self.clock() * 1000),
                                  max_calls=self.config.max_calls,
                                  calls_per_account=self.config.calls_per_account,
                                  on_start=self._call_started, on_end=self._call_ended)
        """The calls running on this node (:mod:`server.relay.calls`); ``sfu`` None: calls
        are refused."""
        self._displaced: dict[Address, int] = {}
        """The newest claim on another node heard of, per device served here: a connection
        whose claim was on its way then is closed once it turns out older."""
        self.waiting_links: dict[bytes, RelayConnection] = {}
        """Link offers made on this node's connections, by lookup."""
        self.link_places = Slots(self.config.max_pending_links,
                                 address=self.config.max_pending_links_per_address)
        """Pending links on this node, overall and per source address (per account: the
        store counts them, for every node)."""
        self.account_requests = TokenBuckets(self.config.account_requests_per_second,
                                             self.config.account_request_burst)
        """Requests per account, over all its connections."""
        self.limits = store.limits(self.config)
        """Accounts registered per source address, prekey bundles and one-time prekeys handed
        out (against draining): counted for every node on the store."""
        self.federation: RelayFederation | None = None
        """The link to the social server (:mod:`server.federation.relay`), when configured."""

    def account_connections(self, account: str) -> int:
        """Authenticated connections of all devices of ``account`` on this node."""
        return sum(len(c) for a, c in self._online.items() if a.account == account)

    async def handle_stream(self, stream: trio.abc.Stream, peer: str = "?") -> None:
        """Serve one client connection until it closes; never raises for the client's bytes."""
        await RelayConnection(self, stream, peer).serve()

    # -- this node's connections ---------------------------------------------------------------

    async def join(self, address: Address, connection: RelayConnection) -> None:
        """Serve ``connection`` as ``address``: registered here and heard of from every node,
        with its claim of the device (:meth:`Hub.serve`); closed at once when a newer claim on
        another node was heard of meanwhile.

        :class:`StoreUnavailableError` (nothing registered) when the hub cannot listen.
        """
        self.attach(address, connection)
        try:
            connection.claim = await self.hub.serve(address)
        except BaseException:
            self._forget(address, connection)
            raise
        if connection.claim < self._displaced.get(address, 0):
            self._close_displaced(address, connection)

    async def leave(self, address: Address, connection: RelayConnection) -> None:
        """Forget an ended connection of ``address``."""
        self._forget(address, connection)
        if address not in self._online:
            await self.hub.release(address)

    def _forget(self, address: Address, connection: RelayConnection) -> None:
        self.detach(address, connection)
        if address not in self._online:
            self._displaced.pop(address, None)

    async def offer_link(self, lookup: bytes, link: PendingLink, connection: RelayConnection
                         ) -> str | None:
        """File ``link`` under ``lookup`` for ``connection``, which waits here for its approval.

        None, or what refused it (nothing filed): a full cap of :attr:`link_places` ("total",
        "address"), the account's cap in the store, or ``LINK_IN_USE``. The approval is heard
        from the moment the offer can be found.
        """
        if lookup in self.waiting_links:
            return LINK_IN_USE
        full = self.link_places.take(address=connection.source)
        if full is not None:
            return full
        self.waiting_links[lookup] = connection
        refused: str | None = LINK_IN_USE  # until the store has filed it
        try:
            await self.hub.watch_link(lookup)
            refused = await self.store.offer_link(lookup, link, self.config.link_timeout,
                                                  self.config.max_pending_links_per_account)
        finally:
            if refused is not None:
                del self.waiting_links[lookup]
                self.link_places.give_back(address=connection.source)
                with trio.CancelScope(shield=True):
                    await self.hub.release_link(lookup)
        return refused

    async def stop_waiting(self, lookup: bytes, connection: RelayConnection) -> None:
        """``connection`` no longer waits for its link offer (it authenticated, or ended):
        withdraw it (best effort: an offer left behind by a store that cannot be reached
        expires after ``link_timeout``) and give its places back."""
        if self.waiting_links.get(lookup) is not connection:
            return
        del self.waiting_links[lookup]
        self.link_places.give_back(address=connection.source)
        await self.hub.release_link(lookup)
        with trio.move_on_after(CLEANUP_TIMEOUT):
            try:
                await self.store.withdraw_link(lookup, connection.nonce)
            except StoreUnavailableError as exc:
                log.warning("could not withdraw a link offer: %s", exc)

    # -- events for devices, wherever they are connected ---------------------------------------

    def mail_stored(self, mail: Iterable[tuple[Address, Delivery | None]]) -> None:
        """Tell the connections of each address that new mail is waiting, handing this node's
        the message just stored for it when the store numbered it (None: it did not)."""
        self.hub.mail_stored(mail)

    def push_to_accounts(self, accounts: Iterable[str], frame: dict[str, Any]) -> None:
        """Queue a push frame to every connection of every device of ``accounts``: this node's
        now, the other nodes' through the hub (best effort, never waits: call notices)."""
        wanted = set(accounts)
        for address, connections in self._online.items():
            if address.account in wanted:
                for connection in connections:
                    connection.push(frame)
        self.hub.push_elsewhere(wanted, frame)

    def _call_started(self, call: Call) -> None:
        self.hub.call_started(call.call_id)

    def _call_ended(self, call: Call) -> None:
        self.hub.call_ended(call.call_id)

    async def notify(self, address: Address, frame: dict[str, Any]) -> None:
        """Push a frame to every connection of ``address`` (best effort: a notice)."""
        await self._tell(address, DeviceEvent(PUSH, frame))

    async def disconnect(self, address: Address) -> None:
        """Close every connection of a device that was unlinked (best effort: such a
        connection's requests are refused anyway)."""
        await self._tell(address, DeviceEvent(UNLINKED))

    async def link_approved(self, lookup: bytes, device_id: int) -> None:
        """Tell the new device waiting with ``lookup`` that it is ``device_id`` now (best
        effort: a device that missed it asks again, see ``client.private``)."""
        try:
            await self.hub.tell_link(lookup, device_id)
        except StoreUnavailableError as exc:
            log.warning("could not tell a new device that it was linked: %s", exc)

    async def _tell(self, address: Address, event: DeviceEvent) -> None:
        try:
            await self.hub.tell(address, event)
        except StoreUnavailableError as exc:
            log.warning("could not tell %s of %s: %s", address, event.kind, exc)

    # -- what the hub hears (hub.Listener) ------------------------------------------------------

    def hear(self, address: Address, event: DeviceEvent) -> None:
        """Act on ``event`` for this node's connections of ``address``."""
        connections = self._online.get(address, ())
        if event.kind == MAIL:
            for connection in connections:
                connection.wake(event.detail)
        elif event.kind == PUSH:
            for connection in connections:
                connection.push(event.detail)
        elif event.kind == UNLINKED:
            for connection in list(connections):
                connection.push({"type": "error", "code": api.DEVICE_UNLINKED,
                                 "message": "this device was unlinked from its account"})
                connection.close_after_pushes()
        elif event.kind == DISPLACED and connections:
            claim = event.detail
            self._displaced[address] = max(claim, self._displaced.get(address, 0))
            for connection in list(connections):
                if connection.claim is not None and connection.claim < claim:
                    self._close_displaced(address, connection)

    @staticmethod
    def _close_displaced(address: Address, connection: RelayConnection) -> None:
        log.info("connection from %s as %s displaced by a newer one on another node",
                 connection.peer, address)
        connection.close_after_pushes()

    def hear_link(self, lookup: bytes, device_id: int) -> None:
        """Tell the connection waiting with ``lookup`` (if on this node) that it was linked."""
        connection = self.waiting_links.get(lookup)
        if connection is not None:
            connection.push({"type": "link_approved", "device_id": device_id})

    def hear_all_mail(self) -> None:
        """Wake every connection: events may have been missed."""
        for connections in self._online.values():
            for connection in connections:
                connection.wake()

    def served(self) -> list[Address]:
        """The devices this node has connections of."""
        return list(self._online)

    def serves(self, address: Address) -> bool:
        """Whether this node has a connection of ``address``."""
        return address in self._online

    def links_waiting(self) -> list[bytes]:
        """The lookups of the link offers waiting on this node."""
        return list(self.waiting_links)

    async def expire_forever(self, interval: float = 3600.0) -> None:
        """Delete mail older than the TTL now and every ``interval`` seconds (every node does;
        each deletion is atomic, so nodes may overlap)."""
        while True:
            try:
                removed = await self.store.expire(self.clock() - self.config.mailbox_ttl)
            except StoreUnavailableError as exc:
                log.warning("could not expire old mail: %s", exc)
            else:
                if removed:
                    log.info("expired %d messages past the mailbox TTL", removed)
            await trio.sleep(interval)
