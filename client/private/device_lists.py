"""Verified device lists: fetching a contact's, publishing this account's (on the primary).

A list must be signed by the account key, carry each linked device's own link signature for
that account, and may not roll back to an older version under the same key; a device key this
client already knows as another account's is refused. An account of the social transport
(``name@social``) is trusted the same way, through its cross identity key and signed cross
device list (:mod:`e2e_proto.cross_identity`), fetched by the relay from the social server: the
relay and the social server are trusted alike, that is not at all. A changed account key is
remembered until the user accepts it, and nothing is sent to the account until then. Sessions
with devices no longer listed are deleted.
"""

from __future__ import annotations

from typing import Any

from e2e_proto import relay_api as api
from e2e_proto.address import Address, split_foreign
from e2e_proto.cross_identity import SignedCrossDeviceList
from e2e_proto.devices import DeviceList, SignedDeviceList
from e2e_proto.errors import E2EProtoError
from e2e_proto.keys import Ed25519PublicKey, IdentityKeyPair

from ..core.connection import ServerError
from ..core.cross_outbox import CrossPending
from ..core.errors import ClientError
from .base import SessionBase


class DeviceLists(SessionBase):
    """The verified device lists of contacts and of this account."""

    async def device_list(self, account: str, refresh: bool = False) -> DeviceList:
        """The verified device list of ``account`` (from the relay when unknown or ``refresh``).

        The list must be signed by the account key and each linked device must have signed
        that it joined this account (its link signature); a list older than the one seen
        before, or naming a device key bound to another account here, is refused. A changed
        account key is accepted but remembered, and reported as a warning.
        """
        known = self.state.contact(account)
        if known is not None and not refresh:
            return known[1].device_list
        foreign = split_foreign(account)
        try:
            response = await self.connection.request(
                "get_devices" if foreign is None else "cross_devices", account=account)
        except ServerError as exc:
            if exc.code == api.UNKNOWN_ACCOUNT:
                raise ClientError(f"unknown user {account!r}") from None
            if foreign is not None:
                raise cross_refusal(exc) from None
            raise
        kind = SignedDeviceList if foreign is None else SignedCrossDeviceList
        try:
            key = Ed25519PublicKey(response["account_key"])
            signed = kind.verify(key, response["device_list"], response["device_list_signature"])
            signed.check_links(key, api.link_signatures_from_wire(
                response.get("link_signatures", [])))
        except (KeyError, E2EProtoError) as exc:
            raise ClientError(f"the device list of {account!r} does not verify: {exc}") from None
        if signed.device_list.account != (account if foreign is None else foreign[0]):
            raise ClientError(f"the relay sent a device list of another account for {account!r}")
        self._check_bindings(account, signed)
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

    def _check_bindings(self, account: str, signed: SignedDeviceList) -> None:
        """Refuse a list of ``account`` naming a device key this client knows as another
        account's device."""
        for device_id, key in signed.device_list.devices:
            owner = self.state.device_key_owner(key)
            if owner is not None and owner != account:
                raise ClientError(f"refused the device list of {account!r}: its device "
                                  f"{device_id} is a device of {owner!r}")

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

    def _require_primary(self) -> IdentityKeyPair:
        aik = self.state.account_identity()
        if aik is None or self.state.device_id != 0:
            raise ClientError("only the primary device (the one that registered) can do this")
        return aik

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

    async def device_details(self) -> list[list[Any]]:
        """``[device_id, name, linked_at, last_seen]`` for each device of this account."""
        assert self.address is not None
        response = await self.connection.request("get_devices", account=self.address.account)
        return list(response.get("device_info", []))


def cross_refusal(error: ServerError) -> ClientError:
    """A refused cross-transport request as the user's error: :class:`CrossPending` when the
    other server (or the relay's link to it) is down, so the send is kept and retried."""
    if error.code in (api.PEER_UNAVAILABLE, api.UNAVAILABLE):
        return CrossPending(f"the social server cannot be reached now ({error})")
    return ClientError(str(error))
