"""Linking a new device to an account: link codes, the new device's request and wait, the
primary's approval (a new signed device list and a device sync with the link proof), unlinking.

A new device becomes a device of the account only once the primary's proof, made with the link
code's secret, arrives in a committed device sync; an approval seen but not yet proven is kept,
so the next ``link`` resumes it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from typing import Any

from e2e_proto import relay_api as api
from e2e_proto.address import Address, split_foreign
from e2e_proto.constants import MAX_DEVICE_ID, MAX_LINKED_DEVICES
from e2e_proto.cross_identity import SignedCrossDeviceList
from e2e_proto.devices import DeviceList, SignedDeviceList, TooManyDevicesError, link_message
from e2e_proto.errors import E2EProtoError
from e2e_proto.keys import (
    Ed25519PublicKey,
    IdentityKeyPair,
    OneTimePreKey,
    X25519PrivateKey,
)
from e2e_proto.payload import Payload

from ..core.connection import ConnectionLost, ServerError
from ..core.errors import ClientError
from ..core.pushes import bounded_int, bounded_str
from .base import SessionBase
from .prekeys import ONE_TIME_PREKEY_TARGET

log = logging.getLogger("e2e.client")


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


class Linking(SessionBase):
    """Linking and unlinking devices, and the device sync that proves a link."""

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
        spk = self._signed_prekey()
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
            if frame.get("type") == "link_approved":
                break
            if frame.get("type") == "error":
                raise ConnectionLost(bounded_str(frame.get("message"), 200)
                                     or "the relay closed the connection")
        else:
            raise ConnectionLost("the relay closed the connection before the link was approved")
        device_id = bounded_int(frame.get("device_id"), 1, MAX_DEVICE_ID)
        if device_id is None:
            raise ClientError("the relay sent a link approval with an invalid device id; "
                              "run link again")
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
            elif frame.get("type") == "queue_empty":
                self.backlog_drained = True
        else:
            raise ConnectionLost("the relay closed the connection before the primary's proof")
        self.state.set_registered(account, device_id)
        self.state.set_pending_link(None)
        return device_id

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
            contacts=self._contacts_for_sync(), groups=self._groups_for_sync(),
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
                foreign = split_foreign(account)
                kind = SignedDeviceList if foreign is None else SignedCrossDeviceList
                signed = kind.verify(key, body, signature)
                if signed.device_list.account != (account if foreign is None else foreign[0]):
                    raise ValueError
                self._check_bindings(account, signed)
                known = self.state.contact(account)
                if known is None or (known[0] == key and
                                     signed.device_list.version > known[1].device_list.version):
                    self.state.save_contact(account, key, signed, key_changed=False)
            except (ValueError, TypeError, E2EProtoError, ClientError):
                log.warning("ignored a malformed contact in a device sync")
        self._take_synced_groups(payload)
