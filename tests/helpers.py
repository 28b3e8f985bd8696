"""Shared test helpers: devices with published prekeys and established sessions."""

from __future__ import annotations

from dataclasses import dataclass

from e2e_proto.address import Address
from e2e_proto.keys import (
    IdentityKeyPair,
    OneTimePreKey,
    PreKeyBundle,
    SignedPreKey,
    X25519PrivateKey,
)
from e2e_proto.session import SessionCipher, process_prekey_bundle
from e2e_proto.stores import MemoryProtocolStore, ProtocolStore


@dataclass
class Device:
    """A device with its store and session cipher."""

    address: Address
    identity: IdentityKeyPair
    store: ProtocolStore
    cipher: SessionCipher
    signed_prekey: SignedPreKey
    one_time_prekeys: list[OneTimePreKey]

    def bundle(self, with_opk: bool = True) -> PreKeyBundle:
        """A bundle as the relay would hand it out (first unused OPK, if asked)."""
        spk = self.signed_prekey
        opk = self.one_time_prekeys.pop(0) if with_opk and self.one_time_prekeys else None
        return PreKeyBundle(self.identity.public_key, spk.key_id, spk.public_key, spk.signature,
                            opk.key_id if opk else None, opk.public_key if opk else None)


def make_device(account: str, device_id: int = 0, store: ProtocolStore | None = None,
                opk_count: int = 5) -> Device:
    """A device with a fresh identity, SPK #1 and ``opk_count`` OPKs, all stored."""
    identity = IdentityKeyPair.generate()
    if store is None:
        store = MemoryProtocolStore(identity)
    else:
        store.set_identity_key_pair(identity)  # type: ignore[attr-defined]
    spk = SignedPreKey.create(identity, 1, X25519PrivateKey.generate())
    store.store_signed_prekey(spk)
    opks = [OneTimePreKey(100 + i, X25519PrivateKey.generate()) for i in range(opk_count)]
    store.store_one_time_prekeys(opks)
    address = Address(account, device_id)
    return Device(address, identity, store, SessionCipher(store, address), spk, list(opks))


def connect(alice: Device, bob: Device, with_opk: bool = True) -> None:
    """Alice builds a session with Bob from his bundle."""
    process_prekey_bundle(alice.store, bob.address, bob.bundle(with_opk))
