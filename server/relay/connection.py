"""One relay connection: the challenge, authentication state, request dispatch and pushes.

What a client may ask is the route tables of :mod:`server.relay.routes`; this class holds the
per-connection state the handlers work on and the hooks of the shared frame plumbing.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from e2e_proto import relay_api as api
from e2e_proto.address import Address
from e2e_proto.errors import E2EProtoError, describe
from e2e_proto.keys import Ed25519PublicKey

from ..common.blobs import BlobService
from ..common.connection import FrameConnection
from ..common.requests import ErrorCodes, RequestError
from ..common.store_base import StoreUnavailableError
from . import calls
from .routes import AUTHENTICATED_ROUTES, PUBLIC_ROUTES
from .store import Delivery

if TYPE_CHECKING:
    from .server import Relay

log = logging.getLogger("e2e.relay")

class RelayConnection(FrameConnection):
    """One client connection: authentication, requests, deliveries and pushes."""

    codes = ErrorCodes.of(api)
    logger = log
    public_routes = PUBLIC_ROUTES
    authenticated_routes = AUTHENTICATED_ROUTES

    def __init__(self, relay: Relay, stream: trio.abc.Stream, peer: str) -> None:
        super().__init__(stream, peer, relay.config, relay)
        self.relay = relay
        self.nonce = secrets.token_bytes(api.NONCE_SIZE)
        self._outbox_send, self._outbox_receive = trio.open_memory_channel[dict[str, Any]](256)
        self.link_lookup: bytes | None = None
        self.claim: int | None = None
        """This connection's claim of its device (:meth:`~server.relay.hub.Hub.serve`), once
        it has one: a newer claim on another node closes it."""
        self._link_deadline_set = False

    @property
    def blobs(self) -> BlobService:
        """The relay's blob store."""
        return self.relay.blobs

    async def may_download(self, blob_id: bytes) -> bool:
        """Whether ``blob_id`` was sent to this connection's device."""
        assert self.address is not None
        return await self.relay.store.blobs.may_download(blob_id, *self.address)

    def push(self, frame: dict[str, Any]) -> None:
        """Queue a push frame; a client too slow to read loses notices, never the relay, and a
        connection that is ending (displaced or unlinked: its outbox is closed, its last pushes
        still being written) takes no more."""
        try:
            self._outbox_send.send_nowait(frame)
        except trio.WouldBlock:  # a client too slow to read its notices loses notices only
            log.warning("dropped a notice to %s: outbox full", self.address)
        except trio.ClosedResourceError:
            log.debug("dropped a notice to %s: the connection is ending", self.address)

    async def detach(self) -> None:
        """Forget this connection, the calls it was in and the link offer it made."""
        if self.address is not None:
            calls.connection_closed(self)
            await self.relay.leave(self.address, self)
        if self.link_lookup is not None:
            await self.relay.stop_waiting(self.link_lookup, self)

    def close_after_pushes(self) -> None:
        """End the connection once the queued pushes are written."""
        self._outbox_send.close()

    async def _opening(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._push_loop)
        await self.send({"type": "challenge", "nonce": self.nonce})

    def _auth_deadline(self) -> float | None:
        if self.link_lookup is None or self._link_deadline_set:
            return None
        self._link_deadline_set = True  # set once: later frames do not extend the wait
        return trio.current_time() + self.relay.config.link_timeout  # waiting for approval

    async def _auth_timed_out(self) -> None:
        log.info("connection from %s: no authentication in time", self.peer)
        await self._error(None, api.NOT_AUTHENTICATED, "authentication timed out")

    async def _handle(self, frame: dict[str, Any]) -> None:
        try:
            await super()._handle(frame)
        except StoreUnavailableError as exc:
            log.error("request %s from %s failed in storage: %s", describe(frame.get("type")),
                      self.address or self.peer, exc)
            await self._error(frame.get("id"), api.UNAVAILABLE, "the relay cannot store or "
                              "read data right now; nothing was stored; try again later")

    async def _dispatch(self, kind: object, frame: dict[str, Any]) -> dict[str, Any]:
        handler = self._handler_for(kind)
        if self.address is not None and not self.relay.account_requests.take(
                self.address.account):
            raise RequestError(api.RATE_LIMITED, "too many requests from this account")
        return await handler(self, frame)

    def check_auth_signature(self, key: Ed25519PublicKey, account: str, device_id: int,
                              signature: object) -> None:
        """Refuse (``auth_failed``) unless ``signature`` signs this connection's challenge."""
        try:
            message = api.auth_message(self.nonce, account, device_id)
            key.verify(message, signature)  # type: ignore[arg-type]
        except E2EProtoError:
            raise RequestError(api.AUTH_FAILED,
                               "authentication signature does not verify") from None

    async def become(self, address: Address) -> None:
        """Serve this connection as ``address`` from now on (refused past the connection cap).

        Returns once every event for ``address`` reaches this connection (deliveries start
        after); :class:`StoreUnavailableError` (nothing changed) when that cannot be arranged.
        """
        if self.relay.account_connections(address.account) >= (
                self.relay.config.connections_per_account):
            raise RequestError(api.TOO_MANY_CONNECTIONS, f"{address.account} has too many "
                               "open connections; close some first")
        await self.relay.join(address, self)
        self._authenticated(address)
        if self.link_lookup is not None:  # linked: it no longer waits (nor holds a place)
            await self.relay.stop_waiting(self.link_lookup, self)
            self.link_lookup = None
        try:
            await self.relay.store.touch(address.account, address.device_id, self.relay.clock())
        except StoreUnavailableError:
            log.warning("could not record the last sight of %s", address)  # serve anyway
        log.info("connection from %s authenticated as %s", self.peer, address)

    async def _pending(self, after: int) -> Sequence[Delivery]:
        assert self.address is not None
        account, device_id = self.address
        return await self.relay.store.pending(account, device_id, after,
                                              self.relay.config.delivery_batch)

    def _delivery_frame(self, item: Delivery) -> dict[str, Any]:
        return {"type": "deliver", "seq": item.seq, "envelope": item.envelope}

    async def _push_loop(self) -> None:
        async for frame in self._outbox_receive:
            await self.send(frame)
        if self._nursery is not None:  # closed by close_after_pushes: unlinked or displaced
            await self.detach()
            self.address = None
            await self.stream.aclose()
            self._nursery.cancel_scope.cancel()
