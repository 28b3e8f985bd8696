"""The signed prekey a device publishes: made on first use, rotated on schedule, old ones deleted.

Both transports' clients call :func:`signed_prekey_to_publish` before they publish prekeys; the
schedule is :class:`~e2e_proto.prekey_rotation.SignedPreKeyPolicy` (sans-IO), the time is the
client's clock. A new signed prekey is stored, with its creation time, before the caller
publishes it, so a key the server hands out is never missing here after a crash.
"""

from __future__ import annotations

from collections.abc import Callable

from e2e_proto.keys import IdentityKeyPair, SignedPreKey, X25519PrivateKey
from e2e_proto.prekey_rotation import SignedPreKeyPolicy
from e2e_proto.primitives import RandomSource

from .protocol_store import SqliteProtocolStore


def signed_prekey_to_publish(store: SqliteProtocolStore, identity: IdentityKeyPair,
                             current_id: int | None, new_id: Callable[[], int],
                             policy: SignedPreKeyPolicy, now: float,
                             random: RandomSource) -> SignedPreKey:
    """The current signed prekey, or a new one (id from ``new_id``) when none is kept or it is
    due for rotation at ``now``; replaced ones whose grace period is over are deleted.

    The caller records the returned key's id as its current one.
    """
    times = store.signed_prekey_times()
    spk = None if current_id is None else store.load_signed_prekey(current_id)
    if spk is None or policy.rotation_due(times.get(spk.key_id), now):
        spk = SignedPreKey.create(identity, new_id(), X25519PrivateKey.generate(random))
        store.store_signed_prekey(spk, created_at=now)
        times[spk.key_id] = now
    for key_id in policy.expired(times, spk.key_id, now):
        store.remove_signed_prekey(key_id)
    return spk
