"""The one module that calls the cryptographic libraries: thin, typed wrappers over libsodium.

Everything takes and returns ``bytes``; the typed key classes live in :mod:`e2e_proto.keys`.
libsodium (through PyNaCl's public ``nacl.bindings``) provides X25519, Ed25519, the Ed25519 to
X25519 conversion, XChaCha20-Poly1305-IETF and SHA-512. PyNaCl exposes no HMAC-SHA256, so HMAC
(and the RFC 5869 HKDF built on it) is RFC 2104 written over the standard library's SHA-256
(OpenSSL): each padded key block is hashed once and copied for every MAC under that key, which
costs fewer C calls than ``hmac.digest`` per MAC (it sets up a new HMAC context each time).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable

import nacl.bindings as sodium
import nacl.exceptions
import nacl.utils

from .constants import KEY_SIZE, SIGNATURE_SIZE
from .errors import DecryptionError, InvalidKeyError, InvalidSignatureError, LocalProtocolError

RandomSource = Callable[[int], bytes]
"""Returns that many random bytes; injected wherever the protocol needs randomness."""

system_random: RandomSource = nacl.utils.random

_HASH = "sha256"
_HASH_LEN = 32


def _require_len(value: bytes, size: int, what: str) -> None:
    if type(value) is not bytes or len(value) != size:
        raise LocalProtocolError(f"{what} must be {size} bytes")


# -- X25519 -----------------------------------------------------------------------------------


def x25519_public(private: bytes) -> bytes:
    """The X25519 public key of a 32-byte private key (clamped by libsodium)."""
    _require_len(private, KEY_SIZE, "X25519 private key")
    return sodium.crypto_scalarmult_base(private)


def x25519(private: bytes, public: bytes) -> bytes:
    """X25519(private, public); raises :class:`InvalidKeyError` on an all-zero output."""
    try:
        return sodium.crypto_scalarmult(private, public)
    except nacl.exceptions.RuntimeError:
        # libsodium refuses (returns -1) exactly when the output is all zeros.
        raise InvalidKeyError("X25519 produced an all-zero output (low-order public key)") from None
    except (nacl.exceptions.TypeError, nacl.exceptions.ValueError) as exc:
        raise InvalidKeyError(f"bad X25519 key: {exc}") from None


# -- Ed25519 ----------------------------------------------------------------------------------


def ed25519_keypair(seed: bytes) -> tuple[bytes, bytes]:
    """(public key, 64-byte libsodium secret key) from a 32-byte seed."""
    _require_len(seed, KEY_SIZE, "Ed25519 seed")
    return sodium.crypto_sign_seed_keypair(seed)


def ed25519_sign(secret_key: bytes, message: bytes) -> bytes:
    """The 64-byte detached Ed25519 signature of ``message``."""
    return sodium.crypto_sign(message, secret_key)[:SIGNATURE_SIZE]


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise :class:`InvalidSignatureError` unless ``signature`` is valid for ``message``."""
    if type(signature) is not bytes or len(signature) != SIGNATURE_SIZE:
        raise InvalidSignatureError("signature must be 64 bytes")
    try:
        sodium.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError,
            nacl.exceptions.TypeError):
        raise InvalidSignatureError("Ed25519 signature does not verify") from None


@functools.lru_cache(maxsize=4096)
def ed25519_pk_to_x25519(public_key: bytes) -> bytes:
    """The X25519 form of an Ed25519 public key (cached: it costs more than a DH)."""
    try:
        return sodium.crypto_sign_ed25519_pk_to_curve25519(public_key)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.TypeError,
            nacl.exceptions.ValueError):
        raise InvalidKeyError("not a valid Ed25519 public key") from None


def ed25519_sk_to_x25519(secret_key: bytes) -> bytes:
    """The X25519 private key of a 64-byte libsodium Ed25519 secret key."""
    return sodium.crypto_sign_ed25519_sk_to_curve25519(secret_key)


# -- AEAD -------------------------------------------------------------------------------------

aead_seal = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt
"""aead_seal(plaintext, aad, nonce, key) -> ciphertext || 16-byte tag (XChaCha20-Poly1305-IETF)."""


def aead_open(ciphertext: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes:
    """Open an XChaCha20-Poly1305-IETF ciphertext; :class:`DecryptionError` on a bad tag."""
    try:
        return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, aad, nonce, key)
    except nacl.exceptions.CryptoError:
        raise DecryptionError("message authentication failed") from None


# -- Hashes and KDFs --------------------------------------------------------------------------


def sha512(data: bytes) -> bytes:
    """SHA-512 of ``data``."""
    return sodium.crypto_hash_sha512(data)


_BLOCK = 64  # SHA-256 block size
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_FILL = [(b"\x36" * (_BLOCK - n), b"\x5c" * (_BLOCK - n)) for n in range(_BLOCK + 1)]
_sha256 = hashlib.sha256


def _padded_key_states(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 states after HMAC's inner and outer padded key blocks (RFC 2104; key <= 64 B).

    Hashing each padded block once and continuing from copies of the states is what makes
    several MACs under one key cheap: the chain step's pair and HKDF's expansion blocks.
    """
    inner_fill, outer_fill = _FILL[len(key)]
    return (_sha256(key.translate(_IPAD) + inner_fill),
            _sha256(key.translate(_OPAD) + outer_fill))


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256(key, data); ``key`` and ``data`` may be any bytes-like objects."""
    if len(key) > _BLOCK:
        return hmac.digest(key, data, _HASH)
    inner, outer = _padded_key_states(bytes(key))
    inner.update(data)
    outer.update(inner.digest())
    return outer.digest()


def hmac_sha256_pair(key: bytes, data1: bytes, data2: bytes) -> tuple[bytes, bytes]:
    """(HMAC-SHA256(key, data1), HMAC-SHA256(key, data2)).

    Each padded key block is hashed once for both MACs (the first MAC continues from copies
    of the states): about twice as fast as two ``hmac.digest`` calls, which is what a chain
    step of the Double Ratchet needs.
    """
    if len(key) > _BLOCK:
        return hmac.digest(key, data1, _HASH), hmac.digest(key, data2, _HASH)
    inner, outer = _padded_key_states(key)
    inner_first = inner.copy()
    inner_first.update(data1)
    inner.update(data2)
    outer_first = outer.copy()
    outer_first.update(inner_first.digest())
    outer.update(inner.digest())
    return outer_first.digest(), outer.digest()


def hkdf_sha256(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract with ``salt``, expand with ``info`` to ``length`` bytes."""
    if not 0 < length <= 255 * _HASH_LEN:
        raise LocalProtocolError("HKDF length out of range")
    prk = hmac_sha256(salt or bytes(_HASH_LEN), ikm)
    inner, outer = _padded_key_states(prk)
    blocks = []
    block = b""
    for counter in range(1, -(-length // _HASH_LEN) + 1):
        inner_block = inner.copy()
        inner_block.update(block + info + bytes((counter,)))
        outer_block = outer.copy()
        outer_block.update(inner_block.digest())
        block = outer_block.digest()
        blocks.append(block)
    return b"".join(blocks)[:length]
