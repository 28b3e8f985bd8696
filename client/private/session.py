"""The private-transport client: register, keep prekeys stocked, send with fan-out, receive.

:class:`PrivateClient` owns the local state; :meth:`PrivateClient.connect` yields a
:class:`PrivateSession` on one relay connection. Received messages are decrypted, stored and
committed together with the ratchet step (one SQLite transaction) before they are acknowledged,
and are deduplicated by payload id, so a crash at any point neither loses nor repeats a message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from e2e_proto import relay_api as api
from e2e_proto.address import Address
from e2e_proto.constants import MAX_LINKED_DEVICES
from e2e_proto.devices import DeviceList, SignedDeviceList, TooManyDevicesError, link_message
from e2e_proto.errors import DuplicateMessageError, E2EProtoError, RemoteProtocolError
from e2e_proto.keys import (
    Ed25519PublicKey,
    IdentityKeyPair,
    OneTimePreKey,
    SignedPreKey,
    X25519PrivateKey,
)
from e2e_proto.payload import Payload
from e2e_proto.session import SessionCipher, process_prekey_bundle
from e2e_proto.wire import Envelope

from ..core.connection import Connection, ConnectionLost, ServerClient, ServerError
from ..core.errors import ClientError
from .state import ClientState, StoredMessage

log = logging.getLogger("e2e.client")

ONE_TIME_PREKEY_TARGET = 100
ONE_TIME_PREKEY_LOW = 20
MAX_REACTION_LENGTH = 32


def format_link_code(secret: bytes) -> str:
    """A link secret as the code a person types: 16 base32 characters in groups of four."""
    text = base64.b32encode(secret).decode()
    return "-".join(text[i:i + 4] for i in range(0, len(text), 4))


def parse_link_code(code: str) -> bytes:
    """Inverse of :func:`format_link_code`; :class:`ClientError` for a mistyped code."""
    text = code.replace("-", "").replace(" ", "").upper()
    try:
        secret = base64.b32decode(text)
    except (binascii.Error, ValueError):
        secret = b""
    if len(secret) != api.LINK_SECRET_SIZE:
        raise ClientError("that is not a link code (expected XXXX-XXXX-XXXX-XXXX)")
    return secret


@dataclass(frozen=True, slots=True)
class Received:
    """A message as shown to the user; ``warning`` is set for a notice instead of a message."""

    sender: str
    sender_device: int
    peer: str
    id: bytes
    ts: int
    kind: str
    text: str | None
    outgoing: bool = False
    warning: str | None = None


MessageHandler = Callable[[Received], Awaitable[None] | None]


class PrivateClient(ServerClient[ClientState]):
    """A device's client for the relay, over the state in ``state``."""

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[PrivateSession]:
        """Open a connection and read the relay's challenge; authenticate or register next."""
        async with self.open_connection() as connection:
            with trio.fail_after(30):
                try:
                    challenge = await connection.pushes.receive()
                except trio.EndOfChannel:
                    raise ConnectionLost("the relay closed the connection") from None
            nonce = challenge.get("nonce")
            if challenge.get("type") != "challenge" or type(nonce) is not bytes:
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
            yield session


class PrivateSession:
    """One relay connection of a :class:`PrivateClient`."""

    def __init__(self, client: PrivateClient, connection: Connection, nonce: bytes) -> None:
        self.client = client
        self.state = client.state
        self.connection = connection
        self.nonce = nonce
        self.address: Address | None = None
        self.notices: list[str] = []
        self._pending_link: tuple[str, Ed25519PublicKey] | None = None
        self._link_secret = b""
        self._link_proven = False

    # -- identity -----------------------------------------------------------------------------

    @property
    def cipher(self) -> SessionCipher:
        """The session cipher of this device."""
        assert self.address is not None
        return SessionCipher(self.state.protocol, self.address, self.client.random)

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

    async def ensure_prekeys(self) -> None:
        """Publish the signed prekey (made on first use) and top one-time prekeys up.

        The signed prekey is sent every time: cheap, and it heals a publish lost to a crash.
        """
        store = self.state.protocol
        spk_id = self.state.signed_prekey_id()
        spk = None if spk_id is None else store.load_signed_prekey(spk_id)
        if spk is None:
            spk_id = self.state.reserve_ids("signed_prekey_counter", 1)[0]
            spk = SignedPreKey.create(store.identity_key_pair(), spk_id,
                                      X25519PrivateKey.generate(self.client.random))
            store.store_signed_prekey(spk)
            self.state.set_signed_prekey(spk_id)
        response = await self.connection.request(
            "publish_prekeys", signed_prekey=[spk.key_id, spk.public_key.raw, spk.signature],
            one_time_prekeys=[])
        await self._top_up(int(response.get("one_time_prekeys", 0)))

    async def _top_up(self, count: int) -> None:
        if count >= ONE_TIME_PREKEY_LOW:
            return
        ids = self.state.reserve_ids("one_time_prekey_id", ONE_TIME_PREKEY_TARGET - count)
        keys = [OneTimePreKey(i, X25519PrivateKey.generate(self.client.random)) for i in ids]
        self.state.protocol.store_one_time_prekeys(keys)  # kept before they are published
        await self.connection.request(
            "publish_prekeys", one_time_prekeys=[[k.key_id, k.public_key.raw] for k in keys])

    # -- device lists -------------------------------------------------------------------------

    async def device_list(self, account: str, refresh: bool = False) -> DeviceList:
        """The verified device list of ``account`` (from the relay when unknown or ``refresh``).

        The list must be signed by the account key; a list older than the one seen before is
        refused. A changed account key is accepted but remembered, and reported as a warning.
        """
        known = self.state.contact(account)
        if known is not None and not refresh:
            return known[1].device_list
        try:
            response = await self.connection.request("get_devices", account=account)
        except ServerError as exc:
            if exc.code == api.UNKNOWN_ACCOUNT:
                raise ClientError(f"unknown user {account!r}") from None
            raise
        try:
            key = Ed25519PublicKey(response["account_key"])
            signed = SignedDeviceList.verify(key, response["device_list"],
                                             response["device_list_signature"])
        except (KeyError, E2EProtoError) as exc:
            raise ClientError(f"the device list of {account!r} does not verify: {exc}") from None
        if signed.device_list.account != account:
            raise ClientError(f"the relay sent a device list of another account for {account!r}")
        highest = self.state.highest_version(account, key)
        if highest is not None and signed.device_list.version < highest:
            raise ClientError(f"refused the device list of {account!r}: version "
                              f"{signed.device_list.version} is older than version {highest} "
                              "seen under the same account key")
        key_changed = known is not None and known[0] != key
        if key_changed:
            self.notices.append(f"the account key of {account!r} changed: nothing is sent to "
                                f"it until you check the new safety number with 'e2e-chat "
                                f"verify {account}' and accept it with 'verify {account} "
                                "--accept'")
        if known is not None and not key_changed:
            try:
                signed.check_newer_than(known[1])
            except E2EProtoError as exc:
                raise ClientError(f"refused the device list of {account!r}: {exc}") from None
        self.state.save_contact(account, key, signed, key_changed)
        listed = signed.device_list.device_ids
        for device_id in self.state.protocol.session_devices(account):
            if device_id not in listed:
                self.state.protocol.delete_session(Address(account, device_id))
        return signed.device_list

    async def _targets(self, to: str, refresh: bool) -> list[Address]:
        """Every device to encrypt for: ``to``'s and this account's others.

        Refuses while an account key change is not accepted (nothing goes to an unchecked key).
        """
        assert self.address is not None
        me = self.address
        lists = {account: await self.device_list(account, refresh) for account in {to, me.account}}
        for account in lists:
            if self.state.key_changed(account):
                raise ClientError(f"the account key of {account!r} changed: check the safety "
                                  f"number with 'e2e-chat verify {account}', then accept it "
                                  f"with 'e2e-chat verify {account} --accept'")
        return [Address(account, d) for account, devices in lists.items()
                for d in devices.device_ids if Address(account, d) != me]

    async def _ensure_sessions(self, targets: list[Address]) -> None:
        missing: dict[str, list[int]] = {}
        for address in targets:
            if self.state.protocol.load_session(address) is None:
                missing.setdefault(address.account, []).append(address.device_id)
        for account, device_ids in missing.items():
            listed = (await self.device_list(account)).devices
            response = await self.connection.request("fetch_bundles", account=account,
                                                     device_ids=device_ids)
            for fields in response.get("bundles", []):
                device_id, bundle = api.bundle_from_wire(fields)
                if self.state.protocol.load_session(Address(account, device_id)) is not None:
                    continue  # a session arrived (their prekey message) while we fetched
                if dict(listed).get(device_id) != bundle.identity_key:
                    raise ClientError(f"the relay's prekeys for {account}.{device_id} are not "
                                      "signed by a listed device key")
                process_prekey_bundle(self.state.protocol, Address(account, device_id), bundle,
                                      self.client.random)

    # -- linking ------------------------------------------------------------------------------

    async def request_link(self, account: str, name: str) -> str:
        """On a new device: offer this device to ``account``; returns the code to approve.

        Keys and prekeys are made and stored first; the relay keeps the offer while this
        connection stays open. Then call :meth:`wait_for_link`.
        """
        if self.state.account is not None:
            raise ClientError(f"this home is already registered as {self.state.account!r}")
        try:
            response = await self.connection.request("get_devices", account=account)
        except ServerError as exc:
            raise ClientError(f"unknown user {account!r}" if exc.code == api.UNKNOWN_ACCOUNT
                              else f"the relay refused: {exc}") from None
        account_key = Ed25519PublicKey(response["account_key"])
        SignedDeviceList.verify(account_key, response["device_list"],
                                response["device_list_signature"])
        dik = self.state.device_identity()
        if dik is None:
            dik = IdentityKeyPair.generate(self.client.random)
            self.state.create_keys(None, dik)
        store = self.state.protocol
        spk_id = self.state.signed_prekey_id() or self.state.reserve_ids(
            "signed_prekey_counter", 1)[0]
        spk = store.load_signed_prekey(spk_id) or SignedPreKey.create(
            dik, spk_id, X25519PrivateKey.generate(self.client.random))
        store.store_signed_prekey(spk)
        self.state.set_signed_prekey(spk_id)
        ids = self.state.reserve_ids("one_time_prekey_id", ONE_TIME_PREKEY_TARGET)
        opks = [OneTimePreKey(i, X25519PrivateKey.generate(self.client.random)) for i in ids]
        store.store_one_time_prekeys(opks)
        secret = self.client.random(api.LINK_SECRET_SIZE)
        await self.connection.request(
            "link_request", account=account, identity_key=dik.public_key.raw, name=name,
            lookup=api.link_lookup(secret),
            tag=api.link_tag(secret, account, dik.public_key.raw),
            link_signature=dik.sign(link_message(account_key, account)),
            signed_prekey=[spk.key_id, spk.public_key.raw, spk.signature],
            one_time_prekeys=[[k.key_id, k.public_key.raw] for k in opks])
        self._pending_link = (account, account_key)
        self._link_secret = secret
        self.state.set_pending_link(account, account_key, secret, None)
        return format_link_code(secret)

    async def wait_for_link(self) -> int:
        """Wait for the primary's approval; then authenticate as the new device."""
        if self._pending_link is None:
            raise ClientError("no link was requested on this connection")
        account, account_key = self._pending_link
        async for frame in self.connection.pushes:
            if frame.get("type") == "link_approved" and type(frame.get("device_id")) is int:
                break
            if frame.get("type") == "error":
                raise ConnectionLost(str(frame.get("message", "the relay closed")))
        else:
            raise ConnectionLost("the relay closed the connection before the link was approved")
        device_id = frame["device_id"]
        # Kept before anything else: if the proof does not arrive on this connection, the next
        # 'link' resumes as this device and collects it from the mailbox.
        self.state.set_pending_link(account, account_key, self._link_secret, device_id)
        return await self._finish_link(account, account_key, device_id)

    async def resume_link(self) -> int | None:
        """Finish a link approved earlier whose proof did not arrive then; None if none is."""
        pending = self.state.pending_link()
        if pending is None or pending[3] is None:
            return None
        account, account_key, secret, device_id = pending
        self._pending_link = (account, account_key)
        self._link_secret = secret
        return await self._finish_link(account, account_key, device_id)

    async def _finish_link(self, account: str, account_key: Ed25519PublicKey,
                           device_id: int) -> int:
        """Authenticate as the approved device, then wait for the primary's proof."""
        await self.authenticate(Address(account, device_id))
        await self.device_list(account, refresh=True)
        own = self.state.contact(account)
        if own is None or own[0] != account_key:
            raise ClientError("the account key changed while linking")
        # The relay says "approved"; the primary proves it, with the link code's secret, in the
        # device sync it sends. Only then does this home become a device of the account.
        async for frame in self.connection.pushes:
            if frame.get("type") == "deliver":
                await self._process(frame.get("seq"), frame.get("envelope"))
                if self._link_proven:
                    break
        else:
            raise ConnectionLost("the relay closed the connection before the primary's proof")
        self.state.set_registered(account, device_id)
        self.state.set_pending_link(None)
        return device_id

    def _require_primary(self) -> IdentityKeyPair:
        aik = self.state.account_identity()
        if aik is None or self.state.device_id != 0:
            raise ClientError("only the primary device (the one that registered) can do this")
        return aik

    async def approve(self, code: str) -> int:
        """On the primary: link the device showing ``code``; returns its new device id."""
        assert self.address is not None
        aik = self._require_primary()
        account = self.address.account
        secret = parse_link_code(code)
        try:
            offer = await self.connection.request("get_link", lookup=api.link_lookup(secret))
        except ServerError as exc:
            raise ClientError(str(exc)) from None
        identity = Ed25519PublicKey(offer["identity_key"])
        if offer["tag"] != api.link_tag(secret, account, identity.raw):
            raise ClientError("the waiting device's key does not match the link code")
        identity.verify(link_message(aik.public_key, account), offer["link_signature"])
        current = await self.device_list(account, refresh=True)
        if len(current.devices) - 1 >= MAX_LINKED_DEVICES:
            raise ClientError(f"this account already has {MAX_LINKED_DEVICES} linked devices, "
                              "the most it may have; unlink one first")
        device_id = max(self.state.highest_device_id, *current.device_ids) + 1
        try:
            new_list = DeviceList(account, current.version + 1,
                                  (*current.devices, (device_id, identity)))
        except TooManyDevicesError as exc:
            raise ClientError(str(exc)) from None
        await self._publish_list(new_list.sign(aik), link=api.link_lookup(secret))
        self.state.set_highest_device_id(device_id)
        await self.send_payload(account, Payload.new(
            "device_sync", int(self.client.clock() * 1000), self.client.random,
            contacts=self._contacts_for_sync(),
            link_proof=[device_id, api.link_proof(secret, aik.public_key.raw, account,
                                                  device_id)]))
        return device_id

    async def unlink(self, device_id: int) -> None:
        """On the primary: remove a linked device; nobody encrypts to it again."""
        assert self.address is not None
        aik = self._require_primary()
        account = self.address.account
        current = await self.device_list(account, refresh=True)
        if device_id == 0:
            raise ClientError("the primary device cannot be unlinked")
        if device_id not in current.device_ids:
            raise ClientError(f"device {device_id} is not linked to {account!r}")
        remaining = tuple((i, key) for i, key in current.devices if i != device_id)
        await self._publish_list(DeviceList(account, current.version + 1, remaining).sign(aik))

    async def _publish_list(self, signed: SignedDeviceList, link: bytes | None = None) -> None:
        assert self.address is not None
        try:
            await self.connection.request("update_devices", device_list=signed.body,
                                          device_list_signature=signed.signature, link=link)
        except ServerError as exc:
            raise ClientError(f"the relay refused the device list: {exc}") from None
        account_key = self._require_primary().public_key
        self.state.save_contact(self.address.account, account_key, signed, key_changed=False)
        for device_id in self.state.protocol.session_devices(self.address.account):
            if device_id not in signed.device_list.device_ids:
                self.state.protocol.delete_session(Address(self.address.account, device_id))

    def _contacts_for_sync(self) -> list[list[Any]]:
        contacts = []
        for account in self.state.contacts():
            known = self.state.contact(account)
            if known is not None:
                contacts.append([account, known[0].raw, known[1].body, known[1].signature])
        return contacts

    def _proves_link(self, payload: Payload) -> bool:
        """Whether a device sync carries the primary's proof for the link this device waits on."""
        if self._pending_link is None or self.address is None:
            return False
        proof = payload.fields.get("link_proof")
        account, account_key = self._pending_link
        expected = [self.address.device_id, api.link_proof(
            self._link_secret, account_key.raw, account, self.address.device_id)]
        return (isinstance(proof, list) and len(proof) == 2 and proof[0] == expected[0]
                and isinstance(proof[1], bytes) and hmac.compare_digest(proof[1], expected[1]))

    def _apply_device_sync(self, payload: Payload) -> None:
        """Take the contacts the primary sent, each verified, never replacing a newer list."""
        contacts = payload.fields.get("contacts")
        for entry in contacts if isinstance(contacts, list) else []:
            try:
                account, key_raw, body, signature = entry
                key = Ed25519PublicKey(key_raw)
                signed = SignedDeviceList.verify(key, body, signature)
                known = self.state.contact(account)
                if known is None or (known[0] == key and
                                     signed.device_list.version > known[1].device_list.version):
                    self.state.save_contact(account, key, signed, key_changed=False)
            except (ValueError, TypeError, E2EProtoError):
                log.warning("ignored a malformed contact in a device sync")

    async def device_details(self) -> list[list[Any]]:
        """``[device_id, name, linked_at, last_seen]`` for each device of this account."""
        assert self.address is not None
        response = await self.connection.request("get_devices", account=self.address.account)
        return list(response.get("device_info", []))

    async def react(self, message_id: str, emoji: str | None) -> None:
        """A text reaction (an encrypted payload of kind ``reaction``); None removes it."""
        message = self.state.find_message(message_id)
        if message is None:
            raise ClientError(f"no stored message with id {message_id!r} (see recv --json)")
        if emoji is not None and not 0 < len(emoji) <= MAX_REACTION_LENGTH:
            raise ClientError(f"a reaction is 1 to {MAX_REACTION_LENGTH} characters")
        await self.send_payload(message.peer, Payload.new(
            "reaction", int(self.client.clock() * 1000), self.client.random,
            target=message.id, emoji=emoji or "", to=message.peer))

    # -- sending ------------------------------------------------------------------------------

    async def send_text(self, to: str, text: str) -> Received:
        """Send ``text`` to every device of ``to`` and to this account's other devices."""
        assert self.address is not None
        payload = Payload.new("text", int(self.client.clock() * 1000), self.client.random,
                              text=text, to=to)
        await self.send_payload(to, payload)
        message = StoredMessage(payload.id, self.address.account, self.address.device_id, to,
                                payload.ts, "text", text)
        self.state.add_message(message, self.client.clock(), seen=True)
        return _received(message, outgoing=True)

    async def send_payload(self, to: str, payload: Payload) -> None:
        """Encrypt ``payload`` for every current device and hand it to the relay.

        When the relay answers that the device lists changed, the lists are fetched and
        verified again, missing sessions are made, and the send is retried once.
        """
        plaintext = payload.encode()
        for attempt in range(2):
            targets = await self._targets(to, refresh=attempt > 0)
            await self._ensure_sessions(targets)
            cipher = self.cipher
            # Every advanced sending chain is on disk before anything leaves, in one commit
            # (one fsync) for all devices: a key is never handed out twice after a crash.
            with self.state.transaction():
                envelopes = [cipher.encrypt(address, plaintext).encode() for address in targets]
            try:
                await self.connection.request("send", to=to, envelopes=envelopes)
                return
            except ServerError as exc:
                if exc.code == api.DEVICE_MISMATCH and attempt == 0:
                    log.info("device lists changed (%s); refreshing", exc.details)
                    continue
                if exc.code == api.UNKNOWN_ACCOUNT:
                    raise ClientError(f"unknown user {to!r}") from None
                raise ClientError(f"the relay refused the message: {exc}") from None

    # -- receiving ----------------------------------------------------------------------------

    async def receive(self, handler: MessageHandler, wait: float | None = None) -> None:
        """Fetch queued messages, then (with ``wait``) keep receiving for ``wait`` seconds.

        Each new message is committed locally before it is acknowledged, and shown to
        ``handler`` once: messages stored but not shown in an earlier run (a lost connection or
        a crash after the commit) come first. ``wait=None`` returns once the queue is drained;
        ``wait=math.inf`` runs until cancelled.
        """
        assert self.address is not None
        for message in self.state.unseen():
            await self._show(handler, _received(message,
                                                message.sender == self.address.account))
        with trio.move_on_after(wait if wait is not None else float("inf")):
            async for frame in self.connection.pushes:
                kind = frame.get("type")
                if kind == "deliver":
                    received = await self._process(frame.get("seq"), frame.get("envelope"))
                    if received is not None:
                        await self._show(handler, received)
                    while self.notices:
                        await self._show(handler, _notice(self.notices.pop(0)))
                elif kind == "queue_empty" and wait is None:
                    return
                elif kind == "prekeys_low":
                    await self._top_up(int(frame.get("count", 0)))
                elif kind == "error":
                    raise ConnectionLost(f"the relay closed the connection: "
                                         f"{frame.get('message', 'error')}")
            raise ConnectionLost("the relay closed the connection")

    async def _show(self, handler: MessageHandler, received: Received) -> None:
        result = handler(received)
        if result is not None:
            await result
        if received.warning is None:
            self.state.mark_seen(received.id)

    async def _process(self, seq: Any, data: Any) -> Received | None:
        """Decrypt, store and acknowledge one delivery; a notice for what cannot be read."""
        assert self.address is not None
        notice: str | None = None
        received: Received | None = None
        try:
            envelope = Envelope.decode(data)
            if envelope.recipient != self.address:
                raise ClientError("a delivery addressed to another device")
            sender = envelope.sender
            if envelope.prekey is not None:
                await self._check_sender_key(sender, envelope.prekey.identity_key)
            proven = False
            with self.state.transaction():
                payload = Payload.decode(self.cipher.decrypt(envelope))
                if payload.kind == "device_sync" and sender.account == self.address.account:
                    self._apply_device_sync(payload)
                    proven = self._proves_link(payload)
                text = _display_text(payload)
                peer = payload.fields.get("to") if sender.account == self.address.account else None
                message = StoredMessage(payload.id, sender.account, sender.device_id,
                                        peer if isinstance(peer, str) else sender.account,
                                        payload.ts, payload.kind,
                                        text if isinstance(text, str) else None)
                is_sync = payload.kind == "device_sync"
                if self.state.add_message(message, self.client.clock(), seen=is_sync) and (
                        not is_sync):
                    received = _received(message, outgoing=sender.account == self.address.account)
            self._link_proven |= proven  # only once the sync is committed
        except DuplicateMessageError:
            pass  # decrypted and stored in an earlier run; only the ack was lost
        except (RemoteProtocolError, ClientError, ValueError, TypeError, OverflowError) as exc:
            # Nothing was committed (the transaction rolled back); acknowledging drops a
            # message that could never be read, instead of wedging the mailbox behind it.
            notice = f"dropped a message that cannot be read: {exc}"
            log.warning(notice)
        try:
            await self.connection.request("ack", seqs=[seq])
        except ServerError as exc:  # stored here already: a redelivery will be recognised
            log.warning("the relay did not take an acknowledgement: %s", exc)
        if notice is not None:
            return _notice(notice)
        return received

    async def _check_sender_key(self, sender: Address, identity: Ed25519PublicKey) -> None:
        """A new session's device key must be in the sender account's signed device list."""
        listed = (await self.device_list(sender.account)).identity_of(sender.device_id)
        if listed != identity:
            listed = (await self.device_list(sender.account, refresh=True)).identity_of(
                sender.device_id)
        if listed != identity:
            raise ClientError(f"{sender} is not a device of {sender.account!r}'s signed list")


def _display_text(payload: Payload) -> str | None:
    """The line shown for a payload: its text, or a description of a reaction."""
    fields = payload.fields
    if payload.kind == "text" and isinstance(fields.get("text"), str):
        return fields["text"]
    if payload.kind == "reaction" and isinstance(fields.get("target"), bytes):
        target = fields["target"].hex()[:12]
        emoji = fields.get("emoji")
        if isinstance(emoji, str) and emoji:
            return f"[reacted {emoji} to {target}]"
        return f"[removed a reaction to {target}]"
    if payload.kind == "device_sync":
        return "[device sync]"
    return None


def _notice(text: str) -> Received:
    return Received("", 0, "", b"", 0, "notice", None, warning=text)


def _received(message: StoredMessage, outgoing: bool) -> Received:
    return Received(message.sender, message.sender_device, message.peer, message.id, message.ts,
                    message.kind, message.text, outgoing)
