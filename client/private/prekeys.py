"""Keeping this device's prekeys on the relay: the signed prekey (rotated on the client's
schedule, replaced ones deleted after their grace period), and one-time prekeys topped up.

Prekeys are stored locally before they are published, so a key the relay hands out is never
missing here after a crash.
"""

from __future__ import annotations

from e2e_proto.keys import OneTimePreKey, SignedPreKey, X25519PrivateKey

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

        The signed prekey is sent every time: cheap, and it heals a publish lost to a crash.
        """
        spk = self._signed_prekey()
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
