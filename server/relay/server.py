"""The relay as a whole: its store, its connections by device, pending links and rate limits.

A thin trio layer over :mod:`e2e_proto` frames and a :class:`~server.relay.store.RelayStore`.
It routes envelopes by their addresses and never decrypts, stores or logs anything else of
them. One client's bad bytes get an error frame (and, when the stream can no longer be parsed, a
disconnect); they never stop the server.
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

from ..calls.registry import CallRegistry, SfuGrant
from ..common.blobs import BlobFolder, BlobService, default_blob_dir, scratch_blob_dir
from ..common.bundle_limits import BundleLimits
from ..common.connection import ConnectionRegistry
from ..common.slots import Slots
from .config import RelayConfig
from .connection import RelayConnection
from .group_commit import GroupCommit
from .linking import PendingLink
from .store import RelayStore

if TYPE_CHECKING:
    from ..federation.relay import RelayFederation

log = logging.getLogger("e2e.relay")


class Relay(ConnectionRegistry[Address, "RelayConnection"]):
    """The relay's logic: serve connections (``handle_stream``) over one store.

    Blobs are files in ``blob_dir`` (default: ``NAME-blobs`` beside the store's ``NAME.db``).
    """

    def __init__(self, store: RelayStore, config: RelayConfig | None = None,
                 clock: Callable[[], float] = time.time,
                 blob_dir: str | os.PathLike[str] | None = None,
                 sfu: SfuGrant | None = None) -> None:
        self.config = config or RelayConfig()
        super().__init__(self.config)
        self.store = store
        self.clock = clock
        if blob_dir is None:
            path = getattr(store, "path", None)  # a store in one file keeps blobs beside it
            blob_dir = default_blob_dir(path) if path is not None else scratch_blob_dir()
        self.blobs = BlobService(store.blobs, BlobFolder(Path(blob_dir)), self.config.blobs,
                                 lambda: self.clock(), api.BAD_REQUEST)
        self.calls = CallRegistry(self.config.max_call_participants, sfu,
                                  lambda: int(self.clock() * 1000),
                                  max_calls=self.config.max_calls,
                                  calls_per_account=self.config.calls_per_account)
        """The calls running (:mod:`server.relay.calls`); ``sfu`` None: calls are refused."""
        self.pending_links: dict[bytes, PendingLink] = {}
        self.link_places = Slots(self.config.max_pending_links,
                                 account=self.config.max_pending_links_per_account,
                                 address=self.config.max_pending_links_per_address)
        """Pending links, overall, per account and per source address."""
        self.mailboxes = GroupCommit(store)
        self.account_requests = TokenBuckets(self.config.account_requests_per_second,
                                             self.config.account_request_burst)
        """Requests per account, over all its connections."""
        config = self.config
        self.bundle_limits = BundleLimits(config)
        """Prekey bundles and one-time prekeys handed out (against draining)."""
        self.registrations = TokenBuckets[str](config.registrations_per_hour / 3600,
                                               config.registration_burst)
        """Accounts registered per source address."""
        self.federation: RelayFederation | None = None
        """The link to the social server (:mod:`server.federation.relay`), when configured."""

    def add_link(self, lookup: bytes, pending: PendingLink) -> str | None:
        """File a pending link under ``lookup``; None, or the cap that is full ("total",
        "account" or "address") and nothing filed."""
        full = self.link_places.take(account=pending.account, address=pending.connection.source)
        if full is None:
            self.pending_links[lookup] = pending
        return full

    def drop_link(self, lookup: bytes) -> PendingLink | None:
        """Forget the pending link under ``lookup`` (approved, or its device gave up)."""
        pending = self.pending_links.pop(lookup, None)
        if pending is not None:
            self.link_places.give_back(account=pending.account,
                                       address=pending.connection.source)
        return pending

    def account_connections(self, account: str) -> int:
        """Authenticated connections of all devices of ``account``."""
        return sum(len(c) for a, c in self._online.items() if a.account == account)

    async def handle_stream(self, stream: trio.abc.Stream, peer: str = "?") -> None:
        """Serve one client connection until it closes; never raises for the client's bytes."""
        await RelayConnection(self, stream, peer).serve()

    def wake(self, address: Address) -> None:
        """Tell the connections of ``address`` that new mail is waiting."""
        for connection in self._online.get(address, ()):
            connection.wakeup.set()

    def push_to_accounts(self, accounts: Iterable[str], frame: dict[str, Any]) -> None:
        """Queue a push frame to every connection of every device of ``accounts``."""
        wanted = set(accounts)
        for address, connections in self._online.items():
            if address.account in wanted:
                for connection in connections:
                    connection.push(frame)

    def notify(self, address: Address, frame: dict[str, Any]) -> None:
        """Queue a push frame to every connection of ``address``."""
        for connection in self._online.get(address, ()):
            connection.push(frame)

    def disconnect(self, address: Address) -> None:
        """Close every connection of a device that was unlinked."""
        for connection in list(self._online.get(address, ())):
            connection.push({"type": "error", "code": api.DEVICE_UNLINKED,
                             "message": "this device was unlinked from its account"})
            connection.close_after_pushes()

    def connections_of(self, address: Address) -> int:
        """How many connections ``address`` has open."""
        return len(self._online.get(address, ()))

    async def expire_forever(self, interval: float = 3600.0) -> None:
        """Delete mail older than the TTL now and every ``interval`` seconds."""
        while True:
            removed = self.store.expire(self.clock() - self.config.mailbox_ttl)
            if removed:
                log.info("expired %d messages past the mailbox TTL", removed)
            await trio.sleep(interval)
