"""One social-server connection: login state, request dispatch and event pushes.

What a client may ask is the route tables of :mod:`server.social.routes`; this class holds the
per-connection state the handlers work on and the hooks of the shared frame plumbing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from e2e_proto import social_api as api
from e2e_proto.address import Address
from e2e_proto.errors import describe

from ..common.blobs import BlobService
from ..common.connection import FrameConnection
from ..common.pushes import Outbox
from ..common.requests import ErrorCodes, RequestError
from ..common.store_base import StoreUnavailableError
from . import calls
from .messages import stored_media
from .routes import AUTHENTICATED_ROUTES, PUBLIC_ROUTES
from .store import Event

if TYPE_CHECKING:
    from .server import SocialServer

log = logging.getLogger("e2e.social")

class SocialConnection(FrameConnection):
    """One client connection: login, requests and event delivery."""

    codes = ErrorCodes.of(api)
    logger = log
    public_routes = PUBLIC_ROUTES
    authenticated_routes = AUTHENTICATED_ROUTES
    authenticate_first = "log in first"
    already_authenticated = "this connection is logged in already"

    def __init__(self, server: SocialServer, stream: trio.abc.Stream, peer: str) -> None:
        super().__init__(stream, peer, server.config, server)
        self.server = server
        self.store = server.store
        self.expires = 0.0
        self.outbox = Outbox(256, log, peer)

    def push(self, frame: dict[str, Any]) -> None:
        """Queue a push frame (a call notice); a client too slow to read loses notices only."""
        self.outbox.push(frame)

    @property
    def blobs(self) -> BlobService:
        """The social server's blob store."""
        return self.server.blobs

    async def may_download(self, blob_id: bytes) -> bool:
        """Whether a message announcing ``blob_id`` was sent in a conversation of this account,
        or it is an account's avatar (which every account may fetch)."""
        assert self.address is not None
        return (self.store.may_download(blob_id, self.address.account)
                or self.store.profiles.is_avatar(blob_id))

    async def detach(self) -> None:
        """Forget this connection at its server, and the calls it was in."""
        if self.address is not None:
            self.server.detach(self.address.account, self)
            calls.connection_closed(self)

    async def _opening(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self.outbox.run, self.send)

    async def _auth_timed_out(self) -> None:
        log.info("connection from %s: no login in time", self.peer)
        await self._error(None, api.NOT_AUTHENTICATED, "log in within "
                          f"{self.server.config.auth_timeout:g} seconds")

    async def _handle(self, frame: dict[str, Any]) -> None:
        try:
            await super()._handle(frame)
        except StoreUnavailableError as exc:  # disk full, read-only, ...: refuse, keep serving
            log.error("request %s from %s failed in storage: %s", describe(frame.get("type")),
                      self.address or self.peer, exc)
            await self._error(frame.get("id"), api.UNAVAILABLE, "the social server cannot store "
                              "or read data right now; nothing was stored; try again later")

    async def _dispatch(self, kind: object, frame: dict[str, Any]) -> dict[str, Any]:
        if self.address is not None and self.server.clock() >= self.expires:
            self._closing = True
            raise RequestError(api.TOKEN_EXPIRED, "the session token expired; log in again")
        return await self._handler_for(kind)(self, frame)

    def become(self, account: str, device_id: int, expires: float) -> None:
        """Serve this connection as that device until ``expires``."""
        self._authenticated(Address(account, device_id))
        self.expires = expires
        self.server.attach(account, self)
        log.info("connection from %s logged in as %s", self.peer, self.address)

    def _delivery_frame(self, event: Event) -> dict[str, Any]:
        assert self.address is not None
        conversation = self.store.conversation(event.conversation)
        assert conversation is not None
        frame: dict[str, Any] = {
            "type": "event", "seq": event.seq, "kind": event.kind,
            "conversation": conversation.title_for(self.address.account),
            "from": event.account, "device": event.device_id, "ts": event.ts}
        if event.message is not None:
            frame["message"] = event.message
        if event.kind == "message":
            frame["secret"] = event.secret
            if event.secret:
                frame["envelope"] = event.envelope  # None for the sending device
            else:
                frame["text"] = event.text
                media = stored_media(self, [event.message]) if event.message else {}
                if media:
                    frame["media"] = media[event.message]
        elif event.kind == "reaction":
            frame["emoji"] = event.emoji
        elif event.kind == "group":
            frame["members"] = list(conversation.members)
        return frame

    def _first_cursor(self) -> int:
        assert self.address is not None
        return self.store.cursor(*self.address)

    async def _pending(self, after: int) -> Sequence[Event]:
        assert self.address is not None
        account, device_id = self.address
        return self.store.events(account, device_id, after, self.server.config.delivery_batch)
