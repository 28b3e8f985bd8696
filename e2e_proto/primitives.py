"""The one module that calls the cryptographic libraries: thin, typed wrappers over libsodium.

Everything takes and returns ``bytes``; the typed key classes live in :mod:`e2e_proto.keys`.
libsodium (through PyNaCl's public ``nacl.bindings``) provides X25519, Ed25519, the Ed25519 to
X25519 conversion, XChaCha20-Poly1305-IETF, AES-256-GCM (hardware AES only), secretstream and
SHA-512. PyNaCl exposes no HMAC, so HMAC (and the RFC 5869 HKDF built on it) is RFC 2104 written
over the standard library's SHA-256 and SHA-512 (OpenSSL): each padded key block is hashed once
and copied for every MAC under that key, which costs fewer C calls than ``hmac.digest`` per MAC
(it sets up a new HMAC context each time).
"""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nacl.bindings as sodium
import nacl.exceptions
import nacl.utils

from .constants import KEY_SIZE, SIGNATURE_SIZE
from .errors import (
    DecryptionError,
    HardwareAESUnavailableError,
    InvalidKeyError,
    InvalidSignatureError,
    LocalProtocolError,
)

RandomSource = Callable[[int], bytes]
"""Returns that many random bytes; injected wherever the protocol needs randomness."""

system_random: RandomSource = nacl.utils.random


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


# -- AES-256-GCM (SFrame) ---------------------------------------------------------------------


@functools.cache
def require_hardware_aes() -> None:
    """Raise :class:`HardwareAESUnavailableError` unless AES-256-GCM can run on this machine.

    libsodium implements AES-256-GCM only with hardware AES (AES-NI with CLMUL, or the ARMv8
    Crypto extensions); PyNaCl (>= 1.6) then refuses every call with ``UnavailableError``. One
    probe call on an empty message finds out; a success is cached, a failure is re-probed.
    """
    try:
        sodium.crypto_aead_aes256gcm_encrypt(b"", None, bytes(12), bytes(32))
    except AttributeError:
        raise HardwareAESUnavailableError(
            "AES-256-GCM needs PyNaCl >= 1.6 (nacl.bindings.crypto_aead_aes256gcm_*)") from None
    except nacl.exceptions.UnavailableError:
        raise HardwareAESUnavailableError(
            "AES-256-GCM is unavailable: libsodium needs hardware AES (AES-NI and CLMUL on "
            "x86-64, the Crypto extensions on ARMv8), which this CPU does not offer") from None


def aes256gcm_seal(plaintext: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes:
    """AES-256-GCM: ciphertext || 16-byte tag. Call :func:`require_hardware_aes` once first."""
    return sodium.crypto_aead_aes256gcm_encrypt(plaintext, aad, nonce, key)


def aes256gcm_open(ciphertext: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes:
    """Open an AES-256-GCM ciphertext; :class:`DecryptionError` on a bad tag."""
    try:
        return sodium.crypto_aead_aes256gcm_decrypt(ciphertext, aad, nonce, key)
    except nacl.exceptions.CryptoError:
        raise DecryptionError("frame authentication failed") from None


# -- Secretstream (media) ---------------------------------------------------------------------

SecretStream = sodium.crypto_secretstream_xchacha20poly1305_state
"""The state of one crypto_secretstream_xchacha20poly1305 stream (push or pull side)."""

STREAM_TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
STREAM_TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL


def secretstream_init_push(key: bytes) -> tuple[SecretStream, bytes]:
    """A new push stream under a 32-byte key, and its 24-byte header (random, from libsodium)."""
    _require_len(key, KEY_SIZE, "secretstream key")
    state = SecretStream()
    return state, sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key)


secretstream_push = sodium.crypto_secretstream_xchacha20poly1305_push
"""secretstream_push(state, chunk: bytes, None, tag) -> the chunk's ciphertext (+17 bytes)."""


def secretstream_init_pull(header: bytes, key: bytes) -> SecretStream:
    """A pull stream for the 24-byte ``header`` under a 32-byte ``key``."""
    _require_len(key, KEY_SIZE, "secretstream key")
    _require_len(header, sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES,
                 "secretstream header")
    state = SecretStream()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header, key)
    return state


def secretstream_pull(state: SecretStream, chunk: bytes) -> tuple[bytes, int]:
    """(plaintext, tag) of the next chunk; :class:`DecryptionError` unless it verifies.

    A chunk that fails leaves the stream state as it was (libsodium updates it on success only).
    """
    try:
        return sodium.crypto_secretstream_xchacha20poly1305_pull(state, chunk)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError):
        raise DecryptionError("media chunk authentication failed") from None


# -- Hashes and KDFs --------------------------------------------------------------------------


def sha512(data: bytes) -> bytes:
    """SHA-512 of ``data``."""
    return sodium.crypto_hash_sha512(data)


@dataclass(frozen=True, slots=True)
class HashFunction:
    """A hash for HMAC and HKDF: its hashlib constructor, block and output sizes."""

    new: Callable[[bytes], Any]
    block_size: int
    digest_size: int
    # (inner, outer) padding that completes a key of n bytes to a block, for n = 0..block_size.
    fills: tuple[tuple[bytes, bytes], ...]

    @classmethod
    def of(cls, new: Callable[[bytes], Any], block_size: int, digest_size: int) -> HashFunction:
        """The hash with its padding table computed once."""
        fills = tuple((b"\x36" * (block_size - n), b"\x5c" * (block_size - n))
                      for n in range(block_size + 1))
        return cls(new, block_size, digest_size, fills)


SHA256 = HashFunction.of(hashlib.sha256, 64, 32)
SHA512 = HashFunction.of(hashlib.sha512, 128, 64)

_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


def _padded_key_states(key: bytes, hash: HashFunction = SHA256) -> tuple[Any, Any]:
    """Hash states after HMAC's inner and outer padded key blocks (RFC 2104).

    A key longer than a block is hashed first, as RFC 2104 says. Hashing each padded block once
    and continuing from copies of the states is what makes several MACs under one key cheap:
    the chain step's pair and HKDF's expansion blocks.
    """
    new = hash.new
    if len(key) > hash.block_size:
        key = new(key).digest()
    elif type(key) is not bytes:
        key = bytes(key)
    inner_fill, outer_fill = hash.fills[len(key)]
    return new(key.translate(_IPAD) + inner_fill), new(key.translate(_OPAD) + outer_fill)


def hmac_digest(key: bytes, data: bytes, hash: HashFunction) -> bytes:
    """HMAC(key, data) over ``hash``; ``key`` and ``data`` may be any bytes-like objects."""
    inner, outer = _padded_key_states(key, hash)
    inner.update(data)
    outer.update(inner.digest())
    return outer.digest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256(key, data); ``key`` and ``data`` may be any bytes-like objects."""
    return hmac_digest(key, data, SHA256)


def hmac_sha256_pair(key: bytes, data1: bytes, data2: bytes) -> tuple[bytes, bytes]:
    """(HMAC-SHA256(key, data1), HMAC-SHA256(key, data2)).

    Each padded key block is hashed once for both MACs (the first MAC continues from copies
    of the states): about twice as fast as two ``hmac.digest`` calls, which is what a chain
    step of the Double Ratchet needs.
    """
    inner, outer = _padded_key_states(key)
    inner_first = inner.copy()
    inner_first.update(data1)
    inner.update(data2)
    outer_first = outer.copy()
    outer_first.update(inner_first.digest())
    outer.update(inner.digest())
    return outer_first.digest(), outer.digest()


class HmacKey:
    """HMAC-SHA256 under one key for many messages: the padded key blocks are hashed once.

    ``digest(data)`` equals ``hmac_sha256(key, data)`` at about half the cost for short data
    (a call's per-datagram tag).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        self._inner, self._outer = _padded_key_states(key)

    def digest(self, data: bytes) -> bytes:
        """HMAC-SHA256(key, data); ``data`` may be any bytes-like object."""
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def hkdf_extract(salt: bytes, ikm: bytes, hash: HashFunction) -> bytes:
    """HKDF-Extract (RFC 5869): PRK = HMAC(salt, IKM); an empty salt is HashLen zero bytes."""
    return hmac_digest(salt or bytes(hash.digest_size), ikm, hash)


def hkdf_expand(prk: bytes, info: bytes, length: int, hash: HashFunction) -> bytes:
    """HKDF-Expand (RFC 5869): the first ``length`` bytes of T(1) || T(2) || ..."""
    if not 0 < length <= 255 * hash.digest_size:
        raise LocalProtocolError("HKDF length out of range")
    inner, outer = _padded_key_states(prk, hash)
    blocks = []
    block = b""
    for counter in range(1, -(-length // hash.digest_size) + 1):
        inner_block = inner.copy()
        inner_block.update(block + info + bytes((counter,)))
        outer_block = outer.copy()
        outer_block.update(inner_block.digest())
        block = outer_block.digest()
        blocks.append(block)
    return b"".join(blocks)[:length]


def hkdf_sha256(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract with ``salt``, expand with ``info`` to ``length`` bytes."""
    return hkdf_expand(hkdf_extract(salt, ikm, SHA256), info, length, SHA256)
