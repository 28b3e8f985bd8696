"""Chats with the private transport's accounts (``name@private``), end to end encrypted.

**This account's identity.** The private side trusts an account through an identity key and a
device list it signs, never through a server's word; a social account has neither, so the
first device that opts in (``cross on``) makes a *cross identity key* (kept on that device,
sealed at rest) and signs a cross device list naming itself (:mod:`e2e_proto.cross_identity`),
which the social server publishes. Another device of the account asks to join (``cross on``
there: it signs the link message for the published key) and the device holding the key adds it
after the user compared the key the joining device printed (``cross approve ID KEY``). At most
five devices: what a private client addresses for one account.

**The other side.** A private account's key and signed device list come from the relay through
the social server and are checked here as a private client checks them
(:mod:`.cross_contacts`); a key change holds its messages and stops sends until the user checks
the safety number (``verify NAME@private --accept``). Bundles come the same way, each checked
against the verified device key. Sends go through the cross outbox
(:mod:`client.core.cross_outbox`): kept until the relay has them.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from e2e_proto import social_api as api
from e2e_proto.account_link import SharedRecord
from e2e_proto.address import Address, is_foreign, qualify, split_foreign
from e2e_proto.capabilities import PRIVATE, SOCIAL
from e2e_proto.cross_identity import CrossDeviceList, SignedCrossDeviceList, cross_link_message
from e2e_proto.devices import DeviceList, SignedDeviceList, TooManyDevicesError
from e2e_proto.errors import DuplicateMessageError, E2EProtoError
from e2e_proto.fingerprint import format_safety_number, safety_number
from e2e_proto.keys import Ed25519PublicKey, IdentityKeyPair
from e2e_proto.payload import Payload
from e2e_proto.relay_api import link_signatures_from_wire
from e2e_proto.session import SessionCipher
from e2e_proto.wire import Envelope

from ..core.bundles import start_sessions
from ..core.connection import ServerError
from ..core.cross_outbox import CrossPending
from ..core.errors import ClientError
from .base import SessionBase
from .errors import refused
from .state import SocialEvent

log = logging.getLogger("e2e.client")

MIN_KEY_PREFIX = 16
"""Hex digits of a joining device's key the user must type to approve it (64 bits)."""


@dataclasses.dataclass(frozen=True, slots=True)
class CrossStatus:
    """What ``cross on`` did: ``made`` the identity, ``joined`` (asked to), or was ``listed``
    already; this device's key (what to compare when approving) and the account's devices."""

    outcome: str
    device_key: bytes
    devices: list[int]


class Cross(SessionBase):
    """This account's cross identity, and chats with private accounts."""

    # -- this account's cross identity ---------------------------------------------------

    async def cross_on(self) -> CrossStatus:
        """Opt in: make the cross identity on the first device, ask to join on another."""
        assert self.address is not None
        me = self.address
        device_key = self.state.identity().public_key
        info = await self.request("cross_get")
        holder = self.state.cross_identity()
        server_key = info.get("identity_key")
        if server_key is None:
            if holder is None:
                holder = IdentityKeyPair.generate(self.client.random)
                with self.state.protocol.transaction():
                    self.state.keep_cross_identity(holder)
            listed = CrossDeviceList(me.account, 1, ((me.device_id, device_key),))
            await self._publish(holder, listed, {})
            await self.request("cross_set", enabled=True)
            return CrossStatus("made", device_key.raw, [me.device_id])
        if holder is not None and holder.public_key.raw != server_key:
            raise ClientError("the social server lists another cross identity key for this "
                              "account than the one this device made; check your devices")
        devices = await self.own_cross_devices(info)
        if me.device_id in devices or holder is not None:
            if me.device_id not in devices:  # the holder took itself off: back on the list
                assert holder is not None
                current = await self._own_list(info)
                listed = CrossDeviceList(me.account, current.device_list.version + 1, tuple(
                    sorted({**devices, me.device_id: device_key}.items())))
                await self._publish(holder, listed, self._signatures(info))
            await self.request("cross_set", enabled=True)
            return CrossStatus("listed", device_key.raw, sorted({*devices, me.device_id}))
        key = Ed25519PublicKey(server_key)
        with self.state.protocol.transaction():
            self.state.set("cross_identity_key", key.raw)
        await self.request("cross_join", identity_key=key.raw, signature=self.state.identity(
        ).sign(cross_link_message(key, me.account)))
        return CrossStatus("joined", device_key.raw, sorted(devices))

    async def cross_report(self) -> tuple[bool, list[int], list[tuple[int, bytes]]]:
        """Whether this account takes cross-transport chats, its verified cross devices, and
        the devices asking to join (id, key)."""
        info = await self.request("cross_get")
        devices = sorted(await self.own_cross_devices(info))
        joins = [(j[0], j[1]) for j in info.get("joins") or []
                 if isinstance(j, list) and len(j) == 3 and type(j[0]) is int
                 and type(j[1]) is bytes]
        return bool(info.get("enabled")), devices, joins

    async def linked_account(self) -> tuple[str, float, SharedRecord | None] | None:
        """The private account linked to this one (its name, when linked) and the record it
        last shared; None when not linked."""
        answer = await self.request("linked")
        linked, raw = answer.get("linked"), answer.get("record")
        if linked is None:
            return None
        try:
            account, _, linked_at = linked
            return (str(account), float(linked_at),
                    None if raw is None else SharedRecord.decode(raw))
        except (ValueError, TypeError, E2EProtoError):
            raise ClientError("the social server sent a malformed account link") from None

    async def cross_off(self) -> None:
        """Opt out: nobody of the private transport can reach this account any more."""
        await self.request("cross_set", enabled=False)

    async def cross_approve(self, device_id: int, key_prefix: str) -> list[int]:
        """On the device holding the cross identity key: add the device ``device_id`` that
        asked to join, once its key starts with ``key_prefix`` (what it printed); the listed
        devices."""
        holder = self._holder()
        prefix = key_prefix.strip().lower()
        if len(prefix) < MIN_KEY_PREFIX:
            raise ClientError(f"give at least {MIN_KEY_PREFIX} hex digits of the device's key "
                              "(as 'cross on' printed it there)")
        info = await self.request("cross_get")
        current = await self._own_list(info)
        joins = info.get("joins")
        join = next((j for j in joins if isinstance(j, list) and j and j[0] == device_id),
                    None) if isinstance(joins, list) else None
        if join is None:
            raise ClientError(f"device {device_id} has not asked to join (run 'cross on' there)")
        if len(join) != 3 or not all(type(v) is bytes for v in join[1:]):
            raise ClientError("the social server sent a malformed request to join")
        _, key, signature = join
        if not key.hex().startswith(prefix):
            raise ClientError(f"device {device_id}'s key does not start with {prefix}: do not "
                              "approve it")
        try:
            Ed25519PublicKey(key).verify(cross_link_message(holder.public_key,
                                                            current.device_list.account),
                                         signature)
            devices = dict(current.device_list.devices)
            devices[device_id] = Ed25519PublicKey(key)
            listed = CrossDeviceList(current.device_list.account,
                                     current.device_list.version + 1,
                                     tuple(sorted(devices.items())))
        except TooManyDevicesError:
            raise ClientError("at most five devices take part in cross-transport chats (what a "
                              "private client addresses): remove one first") from None
        except E2EProtoError as exc:
            raise ClientError(f"device {device_id}'s request to join does not hold: {exc}"
                              ) from None
        signatures = {**self._signatures(info), device_id: signature}
        await self._publish(holder, listed, signatures)
        return listed.device_ids

    async def cross_remove(self, device_id: int) -> list[int]:
        """On the device holding the key: take ``device_id`` off the cross device list."""
        holder = self._holder()
        info = await self.request("cross_get")
        current = await self._own_list(info)
        devices = tuple((i, k) for i, k in current.device_list.devices if i != device_id)
        if len(devices) == len(current.device_list.devices) or not devices:
            raise ClientError(f"device {device_id} is not listed (or is the last one)")
        listed = CrossDeviceList(current.device_list.account, current.device_list.version + 1,
                                 devices)
        await self._publish(holder, listed, self._signatures(info))
        return listed.device_ids

    def _holder(self) -> IdentityKeyPair:
        holder = self.state.cross_identity()
        if holder is None:
            raise ClientError("only the device that made this account's cross identity (the "
                              "first to run 'cross on') can change its devices")
        return holder

    async def _publish(self, holder: IdentityKeyPair, listed: CrossDeviceList,
                       signatures: dict[int, Any]) -> None:
        """Sign and publish ``listed``; this device signs its own link message."""
        me = self.address
        assert me is not None
        signed = listed.sign(holder)
        if me.device_id in listed.device_ids:
            signatures = {**signatures, me.device_id: self.state.identity().sign(
                listed.link_message(holder.public_key))}
        await self.request("cross_publish", identity_key=holder.public_key.raw,
                           device_list=signed.body, device_list_signature=signed.signature,
                           link_signatures=[[d, signatures[d]] for d in listed.device_ids])

    @staticmethod
    def _signatures(info: dict[str, Any]) -> dict[int, bytes]:
        try:
            return link_signatures_from_wire(info.get("link_signatures") or [])
        except E2EProtoError:
            raise ClientError("the social server sent malformed link signatures") from None

    async def _own_list(self, info: dict[str, Any] | None = None) -> SignedCrossDeviceList:
        """This account's cross device list, verified with the key this device made or
        joined (never the server's word alone)."""
        if info is None:
            info = await self.request("cross_get")
        trusted = self.state.trusted_cross_key
        if trusted is None or info.get("identity_key") != trusted:
            raise ClientError("this account's cross identity is not the one this device made "
                              "or joined (run 'cross on')")
        key = Ed25519PublicKey(trusted)
        try:
            signed = SignedCrossDeviceList.verify(key, info["device_list"],
                                                  info["device_list_signature"])
            signed.check_links(key, self._signatures(info))
        except (KeyError, E2EProtoError) as exc:
            raise ClientError(f"this account's cross device list does not verify: {exc}"
                              ) from None
        assert self.address is not None
        if signed.device_list.account != self.address.account:
            raise ClientError("the social server sent another account's cross device list")
        return signed

    async def own_cross_devices(self, info: dict[str, Any] | None = None
                                ) -> dict[int, Ed25519PublicKey]:
        """This account's cross devices (verified; empty before this device made or joined
        the identity). ``info``: a ``cross_get`` answer already at hand."""
        if info is None:
            info = await self.request("cross_get")
        if self.state.trusted_cross_key is None or info.get("identity_key") is None:
            return {}
        return dict((await self._own_list(info)).device_list.devices)

    def cross_safety_number(self, account: str) -> str:
        """The safety number with the private account ``account`` (``name@private``)."""
        assert self.address is not None
        known = self.state.cross_contacts.get(account)
        trusted = self.state.trusted_cross_key
        if known is None or trusted is None:
            raise ClientError(f"no verified keys for {account!r} (send or receive first)")
        return format_safety_number(safety_number(
            qualify(self.address.account, SOCIAL), Ed25519PublicKey(trusted), account,
            known[0]))

    # -- private accounts ---------------------------------------------------------------

    async def cross_device_list(self, account: str, refresh: bool = False) -> DeviceList:
        """The verified device list of the private account ``account`` (``name@private``),
        fetched through the social server when unknown or ``refresh``."""
        foreign = split_foreign(account)
        if foreign is None or foreign[1] != PRIVATE:
            raise ClientError(f"{account!r} is not a private account (name@private)")
        contacts = self.state.cross_contacts
        known = contacts.get(account)
        if known is not None and not refresh:
            return known[1].device_list
        response = await self._cross_request("cross_devices", account=account)
        try:
            key = Ed25519PublicKey(response["account_key"])
            signed = SignedDeviceList.verify(key, response["device_list"],
                                             response["device_list_signature"])
            signed.check_links(key, link_signatures_from_wire(
                response.get("link_signatures") or []))
        except (KeyError, E2EProtoError) as exc:
            raise ClientError(f"the device list of {account!r} does not verify: {exc}"
                              ) from None
        if signed.device_list.account != foreign[0]:
            raise ClientError(f"the server sent another account's device list for {account!r}")
        highest = contacts.highest_version(account, key)
        if highest is not None and signed.device_list.version < highest:
            raise ClientError(f"refused the device list of {account!r}: an older version")
        key_changed = known is not None and known[0] != key
        with self.state.protocol.transaction():
            contacts.save(account, key, signed, key_changed)
            for device_id in self.state.protocol.session_devices(account):
                if device_id not in signed.device_list.device_ids:
                    self.state.protocol.delete_session(Address(account, device_id))
        return signed.device_list

    async def accept_cross_key(self, account: str) -> int:
        """The user checked the safety number with ``account``: trust its key; how many held
        messages the next receive shows."""
        await self.cross_device_list(account, refresh=True)
        with self.state.protocol.transaction():
            self.state.cross_contacts.accept(account)
            return self.state.release_held(account)

    async def send_cross_text(self, to: str, text: str) -> int:
        """Send ``text`` to ``to`` (``name@private``) through the cross outbox; the server's id
        of this account's own copy (0 without other cross devices). :class:`CrossPending` when
        the relay cannot be reached now (the message is kept, sent by a later command)."""
        assert self.address is not None
        me = self.address
        payload = self.queue_cross_text(to, text)
        ts = payload.ts
        sent = await self.flush_cross()
        if payload.id not in sent:
            raise ClientError(f"the message to {to} was refused")
        message_id = sent[payload.id]
        if message_id:  # the own copy: its text is known here, as a secret message's
            with self.state.protocol.transaction():
                self.state.save_secret(SocialEvent(0, "message", to, me.account, me.device_id,
                                                   ts, message_id, text, secret=True))
                self.state.remember_message(message_id, to)
        return message_id

    def queue_cross_text(self, to: str, text: str) -> Payload:
        """Keep ``text`` for ``to`` in the cross outbox, to go with the next
        :meth:`flush_cross`; its payload."""
        payload = Payload.new("text", int(self.client.clock() * 1000), self.client.random,
                              text=text, to=to)
        with self.state.protocol.transaction():
            self.state.cross_outbox.add(payload.id, to, payload.encode())
        return payload

    async def flush_cross(self) -> dict[bytes, int]:
        """Send the kept messages in order; the ids sent (with the server's message id of the
        own copy). Stops at the first that cannot reach the relay (:class:`CrossPending`); one
        refused for good is dropped (a notice, and a :class:`ClientError` for the newest)."""
        sent: dict[bytes, int] = {}
        pending = self.state.cross_outbox.pending()
        for index, item in enumerate(pending):
            try:
                sent[item.id] = await self._cross_send(item.recipient,
                                                       Payload.decode(item.payload))
            except CrossPending as exc:
                raise CrossPending(f"{exc}; the message is kept and sent by your next "
                                   "command") from None
            except ClientError:
                with self.state.protocol.transaction():
                    self.state.cross_outbox.remove(item.id)
                if index == len(pending) - 1:
                    raise
                log.warning("dropped a message to %s the server refused", item.recipient)
                continue
            with self.state.protocol.transaction():
                self.state.cross_outbox.remove(item.id)
        return sent

    async def flush_cross_quietly(self) -> None:
        """:meth:`flush_cross` when something waits, logging instead of raising."""
        if not self.state.cross_outbox.pending():
            return
        try:
            await self.flush_cross()
        except ClientError as exc:
            log.warning("%s", exc)

    async def _cross_send(self, to: str, payload: Payload) -> int:
        """Encrypt ``payload`` for ``to``'s devices and this account's other cross devices and
        hand it to the server (once more after a device change); the own copy's id or 0."""
        assert self.address is not None
        me = self.address
        data = payload.encode()
        for attempt in range(2):
            if self.state.cross_contacts.key_changed(to):
                raise ClientError(f"the account key of {to!r} changed: check the safety number "
                                  f"with 'verify {to}', then accept it with 'verify {to} "
                                  "--accept'")
            theirs = await self.cross_device_list(to, refresh=attempt > 0)
            own = (await self._own_list()).device_list
            if me.device_id not in own.device_ids:
                raise ClientError("this device is not one of this account's cross-transport "
                                  "devices (run 'cross on' here and approve it)")
            targets = [Address(to, d) for d in theirs.device_ids]
            targets += [Address(me.account, d) for d in own.device_ids if d != me.device_id]
            await self._cross_sessions(to, theirs, own)
            cipher = SessionCipher(self.state.protocol, me, self.client.random)
            with self.state.protocol.transaction():
                envelopes = [cipher.encrypt(t, data).encode() for t in targets]
            try:
                response = await self.connection.request("cross_send", to=to,
                                                         envelopes=envelopes,
                                                         client_id=payload.id)
            except ServerError as exc:
                if exc.code == api.DEVICE_MISMATCH and attempt == 0:
                    continue
                raise _cross_refusal(exc) from None
            return int(response.get("message") or 0)
        raise AssertionError("unreachable")

    async def _cross_sessions(self, to: str, theirs: DeviceList, own: DeviceList) -> None:
        """Sessions with every device of ``to`` and this account's other cross devices."""
        assert self.address is not None
        for account, listed, kind in ((to, theirs, "cross_bundles"),
                                      (self.address.account, own, "fetch_bundles")):
            missing = [d for d in listed.device_ids if Address(account, d) != self.address
                       and self.state.protocol.load_session(Address(account, d)) is None]
            if missing:
                bundles = await self._cross_request(kind, account=account, device_ids=missing)
                start_sessions(self.state.protocol, account, missing, bundles.get("bundles"),
                               dict(listed.devices), self.client.random)

    async def _cross_request(self, kind: str, **fields: Any) -> dict[str, Any]:
        try:
            return await self.connection.request(kind, **fields)
        except ServerError as exc:
            raise _cross_refusal(exc) from None

    # -- receiving ----------------------------------------------------------------------

    async def _decrypt_cross(self, event: SocialEvent, data: object) -> SocialEvent:
        """Decrypt a message of a conversation with a private account; commit it with the
        ratchet step, the event and its seq. Held when its sender's key is not the verified
        one (or cannot be checked now)."""
        assert self.address is not None
        account = event.conversation
        try:
            if type(data) is not bytes:
                raise ClientError("it was not encrypted for this device (this device is not "
                                  "one of the account's cross-transport devices)")
            envelope = Envelope.decode(data)
            if envelope.recipient != self.address or envelope.sender != Address(
                    event.sender, event.device):
                raise ClientError("its envelope is addressed wrongly")
            expected = await self._expected_key(envelope.sender)
            with self.state.protocol.transaction():
                payload = Payload.decode(SessionCipher(
                    self.state.protocol, self.address, self.client.random).decrypt(envelope))
                identity = self.state.protocol.get_identity(envelope.sender)
                held = (expected is None or identity != expected
                        or self.state.cross_contacts.key_changed(account))
                text = payload.fields.get("text") if payload.kind == "text" else None
                event = dataclasses.replace(event, text=text if isinstance(text, str)
                                            else f"[unsupported {payload.kind!r}]", secret=True)
                self.state.save_secret(event)
                self._record(event, held=held)
            if held:
                return dataclasses.replace(event, kind="notice", text=None, warning=(
                    f"a message from {event.sender}'s device {event.device}, whose key is not "
                    f"the verified one, is held; check it with 'verify {account}', then "
                    f"'verify {account} --accept'"))
            return event
        except DuplicateMessageError:
            warning = "a message was delivered twice"
        except (ClientError, E2EProtoError) as exc:
            warning = f"a message from {account} cannot be read: {exc}"
        notice = dataclasses.replace(event, kind="notice", warning=warning)
        with self.state.protocol.transaction():
            self._record(notice)
        return notice

    async def _expected_key(self, sender: Address) -> Ed25519PublicKey | None:
        """The verified key of ``sender`` (a private device, or one of this account's cross
        devices); None when it cannot be checked now."""
        try:
            if is_foreign(sender.account):
                listed = await self.cross_device_list(sender.account)
                if sender.device_id not in listed.device_ids:
                    listed = await self.cross_device_list(sender.account, refresh=True)
            else:
                listed = (await self._own_list()).device_list
        except ClientError as exc:
            log.info("cannot check %s now: %s", sender, exc)
            return None
        return listed.identity_of(sender.device_id)


def _cross_refusal(error: ServerError) -> ClientError:
    """A refused cross-transport request as the user's error (:class:`CrossPending` when the
    relay, or the link to it, is down: the send is kept)."""
    if error.code in (api.PEER_UNAVAILABLE, api.UNAVAILABLE):
        return CrossPending(f"the relay cannot be reached now ({error})")
    return refused(error)
