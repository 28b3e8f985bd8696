"""Typed keys: one class per key kind, so that bare bytes never cross the API (DESIGN §2).

* :class:`Ed25519PublicKey` / :class:`IdentityKeyPair`: account (AIK) and device (DIK) identity
  keys, made from 32-byte seeds; their X25519 forms are derived once and cached.
* :class:`X25519PublicKey` / :class:`X25519PrivateKey`: ratchet, ephemeral and prekeys.
* :class:`SignedPreKey`, :class:`OneTimePreKey`, :class:`PreKeyBundle`: what a device publishes
  and what an initiator fetches. A bundle's signature is verified before it is used.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from . import primitives
from .constants import KEY_SIZE, SIGNATURE_SIZE, SPK_SIGNATURE_PREFIX
from .errors import InvalidKeyError, LocalProtocolError
from .primitives import RandomSource, system_random

_U32 = struct.Struct(">I")


def check_key_bytes(value: object, size: int, what: str) -> bytes:
    """``value`` if it is ``bytes`` of ``size``; :class:`InvalidKeyError` naming ``what`` if not."""
    if type(value) is not bytes or len(value) != size:
        raise InvalidKeyError(f"{what} must be {size} bytes")
    return value


def _check_u32(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value < 2**32:
        raise LocalProtocolError(f"{what} must be an unsigned 32-bit integer")
    return value


@dataclass(frozen=True, slots=True)
class X25519PublicKey:
    """A 32-byte X25519 public key."""

    raw: bytes

    def __post_init__(self) -> None:
        check_key_bytes(self.raw, KEY_SIZE, "X25519 public key")


@dataclass(frozen=True, slots=True)
class X25519PrivateKey:
    """A 32-byte X25519 private key with its public key."""

    raw: bytes = field(repr=False)
    public_key: X25519PublicKey = field(init=False)

    def __post_init__(self) -> None:
        check_key_bytes(self.raw, KEY_SIZE, "X25519 private key")
        object.__setattr__(self, "public_key", X25519PublicKey(primitives.x25519_public(self.raw)))

    @classmethod
    def generate(cls, random: RandomSource = system_random) -> X25519PrivateKey:
        """A fresh key from ``random``."""
        return cls(random(KEY_SIZE))

    def exchange(self, public: X25519PublicKey) -> bytes:
        """X25519 with ``public``; :class:`InvalidKeyError` on an all-zero output."""
        return primitives.x25519(self.raw, public.raw)


@dataclass(frozen=True, slots=True)
class Ed25519PublicKey:
    """A 32-byte Ed25519 public key (an account or device identity key)."""

    raw: bytes

    def __post_init__(self) -> None:
        check_key_bytes(self.raw, KEY_SIZE, "Ed25519 public key")

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise :class:`~e2e_proto.errors.InvalidSignatureError` unless the signature is valid."""
        primitives.ed25519_verify(self.raw, message, signature)

    def to_x25519(self) -> X25519PublicKey:
        """The X25519 form of this key (cached per key)."""
        return X25519PublicKey(primitives.ed25519_pk_to_x25519(self.raw))


@dataclass(frozen=True, slots=True)
class IdentityKeyPair:
    """An Ed25519 identity key pair made from a 32-byte seed; signs and, as X25519, agrees keys."""

    seed: bytes = field(repr=False)
    public_key: Ed25519PublicKey = field(init=False)
    _secret: bytes = field(init=False, repr=False)
    _x25519: X25519PrivateKey = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_key_bytes(self.seed, KEY_SIZE, "Ed25519 seed")
        public, secret = primitives.ed25519_keypair(self.seed)
        object.__setattr__(self, "public_key", Ed25519PublicKey(public))
        object.__setattr__(self, "_secret", secret)
        object.__setattr__(
            self, "_x25519", X25519PrivateKey(primitives.ed25519_sk_to_x25519(secret))
        )

    @classmethod
    def generate(cls, random: RandomSource = system_random) -> IdentityKeyPair:
        """A fresh identity from ``random``."""
        return cls(random(KEY_SIZE))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return primitives.ed25519_sign(self._secret, message)

    def to_x25519(self) -> X25519PrivateKey:
        """The X25519 private key converted from this identity (computed once)."""
        return self._x25519


def signed_prekey_message(spk_id: int, public: X25519PublicKey) -> bytes:
    """The bytes a signed prekey's signature covers (DESIGN §2)."""
    return SPK_SIGNATURE_PREFIX + _U32.pack(spk_id) + public.raw


@dataclass(frozen=True, slots=True)
class SignedPreKey:
    """A signed prekey: X25519 key pair, its u32 id and the DIK's signature over it."""

    key_id: int
    private_key: X25519PrivateKey
    signature: bytes

    def __post_init__(self) -> None:
        _check_u32(self.key_id, "signed prekey id")
        check_key_bytes(self.signature, SIGNATURE_SIZE, "signature")

    @classmethod
    def create(cls, identity: IdentityKeyPair, key_id: int, private_key: X25519PrivateKey
               ) -> SignedPreKey:
        """Sign ``private_key``'s public half with ``identity``."""
        _check_u32(key_id, "signed prekey id")
        signature = identity.sign(signed_prekey_message(key_id, private_key.public_key))
        return cls(key_id, private_key, signature)

    @property
    def public_key(self) -> X25519PublicKey:
        """The public half."""
        return self.private_key.public_key


@dataclass(frozen=True, slots=True)
class OneTimePreKey:
    """A one-time prekey: an X25519 key pair and its u32 id; handed out and used once."""

    key_id: int
    private_key: X25519PrivateKey

    def __post_init__(self) -> None:
        _check_u32(self.key_id, "one-time prekey id")

    @property
    def public_key(self) -> X25519PublicKey:
        """The public half."""
        return self.private_key.public_key


@dataclass(frozen=True, slots=True)
class PreKeyBundle:
    """What an initiator fetches for one remote device: its DIK, SPK (+ signature), maybe an OPK."""

    identity_key: Ed25519PublicKey
    signed_prekey_id: int
    signed_prekey: X25519PublicKey
    signed_prekey_signature: bytes
    one_time_prekey_id: int | None = None
    one_time_prekey: X25519PublicKey | None = None

    def __post_init__(self) -> None:
        _check_u32(self.signed_prekey_id, "signed prekey id")
        if (self.one_time_prekey_id is None) != (self.one_time_prekey is None):
            raise LocalProtocolError("a one-time prekey needs both its id and its key")
        if self.one_time_prekey_id is not None:
            _check_u32(self.one_time_prekey_id, "one-time prekey id")

    def verify(self) -> None:
        """Raise :class:`~e2e_proto.errors.InvalidSignatureError` unless the DIK signed the SPK."""
        self.identity_key.verify(
            signed_prekey_message(self.signed_prekey_id, self.signed_prekey),
            self.signed_prekey_signature,
        )
