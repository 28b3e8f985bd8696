"""The private-transport client: register, keep prekeys stocked, send with fan-out, receive.

:class:`PrivateClient` owns the local state; :meth:`PrivateClient.connect` yields a
:class:`PrivateSession` on one relay connection. Received messages are decrypted, stored and
committed together with the ratchet step (one SQLite transaction) before they are acknowledged,
and are deduplicated by payload id, so a crash at any point neither loses nor repeats a message.

The session is one class per concept, composed here: :mod:`.prekeys`, :mod:`.linking`,
:mod:`.device_lists`, :mod:`.sending`, :mod:`.receiving`, :mod:`.groups`, :mod:`.media`
(files), :mod:`.calls`, :mod:`.profiles`, :mod:`.cross` (chats with the social transport) and
:mod:`.account_link`; this module adds registering and authenticating.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import trio

from e2e_proto import relay_api as api
from e2e_proto.address import Address
from e2e_proto.devices import DeviceList
from e2e_proto.errors import E2EProtoError
from e2e_proto.keys import IdentityKeyPair

from ..core.connection import ConnectionLost, ServerClient, ServerError
from ..core.errors import ClientError
from .account_link import AccountLink
from .calls import Calls
from .cross import Cross
from .device_lists import DeviceLists
from .groups import Groups
from .linking import Linking
from .media import Media
from .prekeys import Prekeys
from .profiles import Profiles
from .receiving import Receiving
from .sending import Sending
from .state import ClientState

log = logging.getLogger("e2e.client")


class PrivateClient(ServerClient[ClientState]):
    """A device's client for the relay, over the state in ``state``."""

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[PrivateSession]:
        """Open a connection and read the relay's challenge; authenticate or register next."""
        async with self.open_connection() as connection:
            challenge: dict[str, Any] = {}
            with trio.move_on_after(self.request_timeout):
                try:
                    challenge = await connection.pushes.receive()
                except trio.EndOfChannel:
                    raise ConnectionLost("the relay closed the connection") from None
            nonce = challenge.get("nonce")
            if (challenge.get("type") != "challenge" or type(nonce) is not bytes
                    or len(nonce) != api.NONCE_SIZE):
                raise ConnectionLost("the server did not send an authentication challenge")
            yield PrivateSession(self, connection, nonce)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[PrivateSession]:
        """A connected, authenticated session with prekeys topped up."""
        async with self.connect() as session:
            await session.authenticate()
            try:
                await session.ensure_prekeys()
            except ServerError as exc:  # e.g. the relay's storage is read-only: read anyway
                log.warning("could not publish prekeys: %s", exc)
            await session.flush_cross_quietly()  # messages to the other transport kept before
            yield session


class PrivateSession(Prekeys, Linking, DeviceLists, Sending, Receiving, Groups, Media, Calls,
                     Profiles, Cross, AccountLink):
    """One relay connection of a :class:`PrivateClient`: every part's methods on one object."""

    async def register(self, account: str) -> None:
        """Register ``account`` with a new account key and this device as primary (device 0)."""
        if self.state.account is not None:
            raise ClientError(f"this home is already registered as {self.state.account!r}")
        try:
            Address.checked(account, 0)
        except E2EProtoError:
            raise ClientError(f"invalid name {account!r}: use 1-64 lowercase letters, digits, "
                              "'_', '.' or '-', starting with a letter or digit") from None
        aik = self.state.account_identity()
        if aik is None:
            aik = IdentityKeyPair.generate(self.client.random)
            self.state.create_keys(aik, IdentityKeyPair.generate(self.client.random))
        dik = self.state.protocol.identity_key_pair()
        signed = DeviceList(account, 1, ((0, dik.public_key),)).sign(aik)
        try:
            await self.connection.request(
                "register", account=account, account_key=aik.public_key.raw,
                device_list=signed.body, device_list_signature=signed.signature,
                signature=dik.sign(api.auth_message(self.nonce, account, 0)))
        except ServerError as exc:
            if exc.code == api.NAME_TAKEN:
                raise ClientError(f"the name {account!r} is taken") from None
            raise ClientError(f"registration refused: {exc}") from None
        self.state.set_registered(account, 0)
        self.state.save_contact(account, aik.public_key, signed, key_changed=False)
        self.address = Address(account, 0)
        await self.ensure_prekeys()

    async def authenticate(self, as_address: Address | None = None) -> None:
        """Prove this device's identity to the relay (as the registered address by default)."""
        if as_address is None:
            if self.state.account is None:
                raise ClientError("not registered: run 'e2e-chat register NAME' first")
            as_address = Address(self.state.account, self.state.device_id)
        account, device_id = as_address
        dik = self.state.protocol.identity_key_pair()
        try:
            await self.connection.request(
                "auth", account=account, device_id=device_id,
                signature=dik.sign(api.auth_message(self.nonce, account, device_id)))
        except ServerError as exc:
            raise ClientError(f"the relay refused this device: {exc}") from None
        self.address = Address(account, device_id)
