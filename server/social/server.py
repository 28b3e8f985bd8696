"""The social server as a whole: its store, connections by account, password hashing and
rate limits.

A thin trio layer over :mod:`e2e_proto` frames and a :class:`~server.social.store.SocialStore`,
built on the same connection plumbing as the relay (:mod:`server.common`: route tables,
request errors with this API's codes, a token bucket per connection) but sharing no process,
database or credentials with it. Unlike the relay it sees plaintext, except in secret
conversations, where it routes and stores e2e_proto envelopes it cannot read. It logs requests
and refusals by code, never texts, envelopes, passwords or tokens. docs/SOCIAL.md lists every
request.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nacl.exceptions
import nacl.pwhash
import trio

from e2e_proto import social_api as api
from e2e_proto.capabilities import CAPABILITIES, SOCIAL
from shared.rate_limits import TokenBuckets

from ..calls.registry import CallRegistry, SfuGrant
from ..common.blobs import BlobFolder, BlobService, default_blob_dir, scratch_blob_dir
from ..common.bundle_limits import BundleLimits
from ..common.connection import ConnectionRegistry
from .config import SocialConfig
from .connection import SocialConnection
from .logins import LoginFailures
from .store import SocialStore

if TYPE_CHECKING:
    from ..federation.social import SocialFederation


class SocialServer(ConnectionRegistry[str, "SocialConnection"]):
    """The social server's logic: serve connections (``handle_stream``) over one store.

    Blobs are files in ``blob_dir`` (default: ``NAME-blobs`` beside the store's ``NAME.db``).
    """

    def __init__(self, store: SocialStore, config: SocialConfig | None = None,
                 clock: Callable[[], float] = time.time,
                 blob_dir: str | os.PathLike[str] | None = None,
                 sfu: SfuGrant | None = None) -> None:
        self.config = config or SocialConfig()
        super().__init__(self.config)
        self.store = store
        self.clock = clock
        if blob_dir is None:
            path = getattr(store, "path", None)  # a store in one file keeps blobs beside it
            blob_dir = default_blob_dir(path) if path is not None else scratch_blob_dir()
        self.blobs = BlobService(store.blobs, BlobFolder(Path(blob_dir)), self.config.blobs,
                                 lambda: self.clock(), api.BAD_REQUEST)
        self.calls = CallRegistry(self.config.max_call_participants, sfu, self.now_ms,
                                  max_calls=self.config.max_calls,
                                  calls_per_account=self.config.calls_per_account)
        """The calls running (:mod:`server.social.calls`); ``sfu`` None: calls are refused."""
        self.capabilities = CAPABILITIES[SOCIAL]
        self._hashing = trio.CapacityLimiter(self.config.hashing_threads)
        self._dummy_hash: bytes | None = None
        config = self.config
        self.bundle_limits = BundleLimits(config)
        """Prekey bundles and one-time prekeys handed out (against draining)."""
        self.registrations = TokenBuckets[str](config.registrations_per_hour / 3600,
                                               config.registration_burst)
        """Accounts registered per source address."""
        self.login_failures = LoginFailures(config)
        """Failed logins per account, per source address and per both."""
        self.federation: SocialFederation | None = None
        """The link to the relay (:mod:`server.federation.social`), when configured."""

    async def handle_stream(self, stream: trio.abc.Stream, peer: str = "?") -> None:
        """Serve one client connection until it closes; never raises for the client's bytes."""
        await SocialConnection(self, stream, peer).serve()

    def wake(self, accounts: Sequence[str]) -> None:
        """Tell every connection of these accounts that new events are waiting."""
        for account in accounts:
            for connection in self._online.get(account, ()):
                connection.wake()

    def push_to_accounts(self, accounts: Iterable[str], frame: dict[str, Any]) -> None:
        """Queue a push frame (a call notice) to every connection of ``accounts``."""
        for account in set(accounts):
            for connection in self._online.get(account, ()):
                connection.push(frame)

    def end_device(self, account: str, device_id: int, message: str,
                   keep: SocialConnection | None = None) -> None:
        """End every connection of a revoked device (but ``keep``) with ``bad_token``."""
        for connection in list(self._online.get(account, ())):
            address = connection.address
            if connection is not keep and address is not None and address.device_id == device_id:
                connection.end(api.BAD_TOKEN, message)

    def now_ms(self) -> int:
        """The server's clock in milliseconds (message and event timestamps)."""
        return int(self.clock() * 1000)

    # -- passwords (Argon2id, in a worker thread so the event loop keeps serving) -------------

    async def hash_password(self, password: bytes) -> bytes:
        """The Argon2id hash string of ``password`` at the configured limits."""
        config = self.config
        return await trio.to_thread.run_sync(
            lambda: nacl.pwhash.argon2id.str(password, opslimit=config.password_opslimit,
                                             memlimit=config.password_memlimit),
            limiter=self._hashing)

    async def check_password(self, stored: bytes | None, password: bytes) -> bool:
        """Whether ``password`` matches ``stored``; an unknown account costs the same work."""
        if stored is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash_password(secrets.token_bytes(16))
            stored = self._dummy_hash

        def verify() -> bool:
            try:
                return bool(nacl.pwhash.argon2id.verify(stored, password))
            except nacl.exceptions.InvalidkeyError:
                return False

        return await trio.to_thread.run_sync(verify, limiter=self._hashing)
