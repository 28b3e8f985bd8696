"""X3DH key agreement with Ed25519-form identity keys, both sides (DESIGN §3).

The initiator (Alice) calls :func:`initiate` with her identity, Bob's verified bundle and a fresh
ephemeral key; Bob calls :func:`respond` with the header fields Alice sent and the prekeys they
name. Both get the same :class:`X3DHResult`.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import primitives
from .constants import KEY_SIZE, X3DH_INFO, X3DH_PAD, X3DH_SALT
from .keys import (
    Ed25519PublicKey,
    IdentityKeyPair,
    OneTimePreKey,
    PreKeyBundle,
    SignedPreKey,
    X25519PrivateKey,
    X25519PublicKey,
)


@dataclass(frozen=True, slots=True)
class X3DHResult:
    """The outcome of X3DH: the shared secret, the associated data and the DH outputs."""

    shared_secret: bytes
    associated_data: bytes
    dh1: bytes
    dh2: bytes
    dh3: bytes
    dh4: bytes | None


def _derive(dh1: bytes, dh2: bytes, dh3: bytes, dh4: bytes | None,
            initiator: Ed25519PublicKey, responder: Ed25519PublicKey) -> X3DHResult:
    ikm = X3DH_PAD + dh1 + dh2 + dh3 + (dh4 or b"")
    secret = primitives.hkdf_sha256(X3DH_SALT, ikm, X3DH_INFO, KEY_SIZE)
    return X3DHResult(secret, initiator.raw + responder.raw, dh1, dh2, dh3, dh4)


def initiate(identity: IdentityKeyPair, bundle: PreKeyBundle,
             ephemeral: X25519PrivateKey) -> X3DHResult:
    """Alice's side. Verifies the bundle's signature first; refuses all-zero DH outputs."""
    bundle.verify()
    dh1 = identity.to_x25519().exchange(bundle.signed_prekey)
    dh2 = ephemeral.exchange(bundle.identity_key.to_x25519())
    dh3 = ephemeral.exchange(bundle.signed_prekey)
    dh4 = ephemeral.exchange(bundle.one_time_prekey) if bundle.one_time_prekey else None
    return _derive(dh1, dh2, dh3, dh4, identity.public_key, bundle.identity_key)


def respond(identity: IdentityKeyPair, initiator_identity: Ed25519PublicKey,
            ephemeral: X25519PublicKey, signed_prekey: SignedPreKey,
            one_time_prekey: OneTimePreKey | None) -> X3DHResult:
    """Bob's side, from Alice's identity and ephemeral keys and the prekeys her message names."""
    spk = signed_prekey.private_key
    dh1 = spk.exchange(initiator_identity.to_x25519())
    dh2 = identity.to_x25519().exchange(ephemeral)
    dh3 = spk.exchange(ephemeral)
    dh4 = one_time_prekey.private_key.exchange(ephemeral) if one_time_prekey else None
    return _derive(dh1, dh2, dh3, dh4, initiator_identity, identity.public_key)
