"""Keeping this device's prekeys on the relay: the signed prekey, and one-time prekeys topped up.

Prekeys are stored locally before they are published, so a key the relay hands out is never
missing here after a crash.
"""

from __future__ import annotations

from e2e_proto.keys import OneTimePreKey, SignedPreKey, X25519PrivateKey

from ..core.pushes import prekeys_to_add
from .base import SessionBase

ONE_TIME_PREKEY_TARGET = 100
ONE_TIME_PREKEY_LOW = 20


class Prekeys(SessionBase):
    """Publishing the signed prekey and topping one-time prekeys up."""

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
        await self._top_up(response.get("one_time_prekeys"))

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
