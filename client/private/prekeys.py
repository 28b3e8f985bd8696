"""Keeping this device's prekeys on the relay: the signed prekey (rotated on the client's
schedule, replaced ones deleted after their grace period), and one-time prekeys topped up.

Prekeys are stored locally before they are published, so a key the relay hands out is never
missing here after a crash.
"""

from __future__ import annotations

from e2e_proto.constants import PRIMARY_DEVICE_ID
from e2e_proto.devices import link_message
from e2e_proto.keys import OneTimePreKey, SignedPreKey, X25519PrivateKey

from ..core.pushes import prekeys_to_add
from ..core.signed_prekeys import signed_prekey_to_publish
from .base import SessionBase

ONE_TIME_PREKEY_TARGET = 100
ONE_TIME_PREKEY_LOW = 20


class Prekeys(SessionBase):
    """Publishing the signed prekey and topping one-time prekeys up."""

    def _signed_prekey(self) -> SignedPreKey:
        """The signed prekey to publish: made on first use, replaced when due (the client's
        ``prekey_policy`` and clock); replaced ones past their grace period are deleted."""
        spk = signed_prekey_to_publish(
            self.state.protocol, self.state.protocol.identity_key_pair(),
            self.state.signed_prekey_id(),
            lambda: self.state.reserve_ids("signed_prekey_counter", 1)[0],
            self.client.prekey_policy, self.client.clock(), self.client.random)
        self.state.set_signed_prekey(spk.key_id)
        return spk

    async def ensure_prekeys(self) -> None:
        """Publish the signed prekey (made or rotated first when due) and top one-time prekeys
        up.

        The signed prekey (and a linked device's link signature) is sent every time: cheap,
        and it heals a publish lost to a crash.
        """
        spk = self._signed_prekey()
        response = await self.connection.request(
            "publish_prekeys", signed_prekey=[spk.key_id, spk.public_key.raw, spk.signature],
            one_time_prekeys=[], link_signature=self._link_signature())
        await self._top_up(response.get("one_time_prekeys"))

    def _link_signature(self) -> bytes | None:
        """A linked device's link signature, sent with its prekeys so that a relay made before
        it kept link signatures learns it. None on the primary, and while the account's key
        changed unaccepted: this device vouches only for the key it was linked under."""
        account = self.state.account
        own = None if account is None else self.state.contact(account)
        if (own is None or account is None or self.state.device_id == PRIMARY_DEVICE_ID
                or self.state.key_changed(account)):
            return None
        return self.state.protocol.identity_key_pair().sign(link_message(own[0], account))

    async def _top_up(self, count: object) -> None:
        """Publish more one-time prekeys when the relay says it holds fewer than the low mark
        (``count`` comes from the relay: anything but a small non-negative int is ignored)."""
        wanted = prekeys_to_add(count, ONE_TIME_PREKEY_LOW, ONE_TIME_PREKEY_TARGET)
        if not wanted:
            return
        ids = self.state.reserve_ids("one_time_prekey_id", wanted)
        keys = [OneTimePreKey(i, X25519PrivateKey.generate(self.client.random)) for i in ids]
        self.state.protocol.store_one_time_prekeys(keys)  # kept before they are published
        await self.connection.request(
            "publish_prekeys", one_time_prekeys=[[k.key_id, k.public_key.raw] for k in keys])
