"""The social-transport client: log in with a password, send, receive, react, pin, search.

:class:`SocialClient` owns the device's state (:mod:`.state`, ``HOME/social.db``);
:meth:`SocialClient.session` yields a logged-in :class:`SocialSession` on one connection. The
session is one class per concept, composed here: :mod:`.conversations`, :mod:`.secret`,
:mod:`.device_pins`, :mod:`.reactions` (and pins), :mod:`.history` (and search),
:mod:`.receiving`, :mod:`.media` (files), :mod:`.calls`, :mod:`.profiles` and :mod:`.cross`
(chats with the private transport); this module adds registering,
logging in and publishing prekeys. The capability table (DESIGN §9) is checked before anything
is sent.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from e2e_proto import social_api as api
from e2e_proto.address import Address
from e2e_proto.keys import OneTimePreKey, X25519PrivateKey

from ..core.connection import ServerClient, ServerError
from ..core.errors import ClientError
from ..core.pushes import prekeys_to_add
from ..core.signed_prekeys import signed_prekey_to_publish
from .calls import Calls
from .checks import check_name
from .conversations import Conversations
from .cross import Cross
from .device_pins import DevicePins
from .errors import SocialError, refused
from .history import History
from .media import Media
from .own_devices import OwnDevices
from .profiles import Profiles
from .reactions import Reactions
from .receiving import Receiving
from .secret import Secret
from .state import SocialState

ONE_TIME_PREKEY_TARGET = 40
ONE_TIME_PREKEY_LOW = 10


class SocialClient(ServerClient[SocialState]):
    """A device's client for the social server, over the state in ``state``."""

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[SocialSession]:
        """An unauthenticated connection: register or log in next."""
        async with self.open_connection() as connection:
            yield SocialSession(self, connection)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[SocialSession]:
        """A connection authenticated with this device's token, its prekeys published."""
        async with self.connect() as session:
            await session.authenticate()
            try:
                await session.ensure_prekeys()
            except SocialError as exc:
                if exc.code != api.UNAVAILABLE:
                    raise
                # The server cannot write now (disk full, read-only): reading and receiving
                # still work, and the keys are published on the next connection.
            await session.flush_cross_quietly()  # messages to the other transport kept before
            yield session


class SocialSession(Conversations, Secret, DevicePins, OwnDevices, Reactions, History,
                    Receiving, Media, Calls, Profiles, Cross):
    """One connection of a :class:`SocialClient`: every part's methods on one object."""

    async def register(self, account: str, password: str) -> int:
        """Create ``account`` and log this device in; returns the device id."""
        return await self._log_in("register", account, password)

    async def login(self, account: str, password: str) -> int:
        """Log this device in to ``account`` (a new device id each time); the device id."""
        return await self._log_in("login", account, password)

    async def _log_in(self, kind: str, account: str, password: str) -> int:
        check_name(account, "account name")
        current = self.state.account
        if current is not None and current != account:
            raise ClientError(f"this home is logged in as {current!r}; use another --home")
        if kind == "register" and len(password) < api.MIN_PASSWORD_LENGTH:
            raise ClientError(f"a password needs at least {api.MIN_PASSWORD_LENGTH} characters")
        response = await self.request(kind, account=account, password=password)
        device_id = int(response["device_id"])
        with self.state.protocol.transaction():
            self.state.set("account", account)
            self.state.set("device_id", device_id)
            self.state.set("token", self.state.protocol.seal(response["token"], "token"))
            self.state.set("last_seq", 0)
        self.address = Address(account, device_id)
        await self.ensure_prekeys()
        return device_id

    async def authenticate(self) -> None:
        """Log this connection in with the stored session token."""
        sealed = self.state.get("token")
        token = None if sealed is None else self.state.protocol.unseal(sealed, "token")
        if self.state.account is None or token is None:
            raise ClientError("not logged in: run 'e2e-chat --transport social register NAME' "
                              "or 'login NAME' first")
        try:
            response = await self.connection.request("auth", token=token)
        except ServerError as exc:
            if exc.code in (api.BAD_TOKEN, api.TOKEN_EXPIRED):
                raise ClientError(f"{exc}: run 'e2e-chat --transport social login "
                                  f"{self.state.account}'") from None
            raise refused(exc) from None
        self.address = Address(response["account"], int(response["device_id"]))

    async def ensure_prekeys(self) -> None:
        """Publish this device's identity, signed prekey and enough one-time prekeys.

        The signed prekey is made on first use and replaced when due (the client's
        ``prekey_policy`` and clock); replaced ones past their grace period are deleted.
        """
        store = self.state.protocol
        identity = self.state.identity()
        spk_id = self.state.get("spk_id")
        spk = signed_prekey_to_publish(
            store, identity, None if spk_id is None else int(spk_id),
            lambda: self.state.next_id("spk_counter"), self.client.prekey_policy,
            self.client.clock(), self.client.random)
        self.state.set("spk_id", spk.key_id)
        response = await self.request(
            "publish_prekeys", identity_key=identity.public_key.raw,
            signed_prekey=[spk.key_id, spk.public_key.raw, spk.signature])
        wanted = prekeys_to_add(response.get("one_time_prekeys"), ONE_TIME_PREKEY_LOW,
                                ONE_TIME_PREKEY_TARGET)
        if wanted:
            keys = [OneTimePreKey(self.state.next_id("opk_counter"),
                                  X25519PrivateKey.generate(self.client.random))
                    for _ in range(wanted)]
            store.store_one_time_prekeys(keys)  # kept before they are published
            await self.request("publish_prekeys", identity_key=identity.public_key.raw,
                               one_time_prekeys=[[k.key_id, k.public_key.raw] for k in keys])
