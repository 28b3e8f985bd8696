"""The Double Ratchet with the recommended KDFs and a random XChaCha20 nonce (DESIGN §4).

:class:`RatchetState` is one side of a conversation. :meth:`RatchetState.encrypt` and
:meth:`RatchetState.decrypt` are its whole surface. Decryption first computes everything it
needs in local variables and changes the state only after the AEAD tag verified, so a message
that fails (bad tag, replay, too many skipped keys, malformed header) leaves the state exactly
as it was.
"""

from __future__ import annotations

from typing import NamedTuple

import msgpack

from . import primitives
from .constants import (
    CHAIN_KEY_SEED,
    KEY_SIZE,
    MAX_SKIP,
    MAX_SKIPPED_KEYS,
    MESSAGE_KEY_SEED,
    NONCE_SIZE,
    RATCHET_INFO,
)
from .errors import (
    DecryptionError,
    DuplicateMessageError,
    LocalProtocolError,
    MalformedError,
    TooManySkippedError,
    UnsupportedVersionError,
    describe,
)
from .keys import X25519PrivateKey, X25519PublicKey, check_key_bytes
from .primitives import RandomSource, system_random

STATE_VERSION = 1
PREVIOUS_CHAINS_KEPT = 8
"""How many earlier receiving ratchet keys are remembered, to name late replays as replays."""

_U32_LIMIT = 2**32
_hmac_pair = primitives.hmac_sha256_pair
_seal = primitives.aead_seal
_open = primitives.aead_open
_packb = msgpack.packb
_new_message = tuple.__new__  # RatchetMessage(...) without the named tuple's Python __new__


class RatchetMessage(NamedTuple):
    """One encrypted message: the msgpack header ``[dh_pub, pn, n]``, the nonce, the ciphertext."""

    header: bytes
    nonce: bytes
    ciphertext: bytes


def kdf_rk(root_key: bytes, dh_out: bytes) -> tuple[bytes, bytes]:
    """KDF_RK: (new root key, chain key) = HKDF-SHA256(salt=rk, ikm=dh_out, RATCHET_INFO, 64)."""
    out = primitives.hkdf_sha256(root_key, dh_out, RATCHET_INFO, 2 * KEY_SIZE)
    return out[:KEY_SIZE], out[KEY_SIZE:]


def kdf_ck(chain_key: bytes) -> tuple[bytes, bytes]:
    """KDF_CK: (message key, next chain key) = (HMAC(ck, 0x01), HMAC(ck, 0x02))."""
    return _hmac_pair(chain_key, MESSAGE_KEY_SEED, CHAIN_KEY_SEED)


def encode_header(dh_pub: bytes, pn: int, n: int) -> bytes:
    """The header bytes: ``msgpack.packb([dh_pub, pn, n], use_bin_type=True)``."""
    return _packb([dh_pub, pn, n])


MAX_HEADER_SIZE = len(encode_header(bytes(KEY_SIZE), _U32_LIMIT - 1, _U32_LIMIT - 1))
"""The longest valid header (45 bytes): a 32-byte key and two u32 at their largest."""


def _header_prefix(dh_pub: bytes, pn: int) -> bytes:
    """The header bytes before ``n``: the same for every message of one sending chain."""
    return b"\x93" + _packb(dh_pub) + _packb(pn)  # 0x93: a msgpack array of three


def decode_header(header: bytes) -> tuple[bytes, int, int]:
    """Parse and validate a header: :class:`MalformedError` unless ``[bin32, u32, u32]``.

    A header longer than the longest valid one is refused before it is unpacked, so its
    shape cannot cost more than those few bytes.
    """
    if len(header) > MAX_HEADER_SIZE:
        raise MalformedError("malformed ratchet header")
    try:
        dh, pn, n = msgpack.unpackb(header)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise MalformedError("malformed ratchet header") from None
    if (type(dh) is not bytes or len(dh) != KEY_SIZE or type(pn) is not int
            or type(n) is not int or not 0 <= pn < _U32_LIMIT or not 0 <= n < _U32_LIMIT):
        raise MalformedError("malformed ratchet header")
    return dh, pn, n


def _skip_keys(chain_key: bytes, start: int, until: int, dh: bytes
               ) -> tuple[list[tuple[tuple[bytes, int], bytes]], bytes]:
    """Message keys ``start .. until-1`` of a chain, and the chain key at ``until``."""
    if until - start > MAX_SKIP:
        raise TooManySkippedError(f"message skips {until - start} keys (MAX_SKIP is {MAX_SKIP})")
    keys = []
    for index in range(start, until):
        message_key, chain_key = _hmac_pair(chain_key, MESSAGE_KEY_SEED, CHAIN_KEY_SEED)
        keys.append(((dh, index), message_key))
    return keys, chain_key


class RatchetState:
    """One party's Double Ratchet state (Signal's spec, with DESIGN §4's constants)."""

    __slots__ = ("root_key", "dhs_private", "dhs_public", "dhr", "cks", "ckr", "ns", "nr", "pn",
                 "skipped", "previous_dhr", "_header_prefix")

    def __init__(self, root_key: bytes, dhs_private: bytes, dhs_public: bytes, dhr: bytes | None,
                 cks: bytes | None, ckr: bytes | None, ns: int = 0, nr: int = 0, pn: int = 0,
                 skipped: dict[tuple[bytes, int], bytes] | None = None,
                 previous_dhr: list[bytes] | None = None) -> None:
        self.root_key = root_key
        self.dhs_private = dhs_private
        self.dhs_public = dhs_public
        self.dhr = dhr
        self.cks = cks
        self.ckr = ckr
        self.ns = ns
        self.nr = nr
        self.pn = pn
        self.skipped: dict[tuple[bytes, int], bytes] = skipped if skipped is not None else {}
        self.previous_dhr: list[bytes] = previous_dhr if previous_dhr is not None else []
        self._header_prefix = _header_prefix(dhs_public, pn)

    @classmethod
    def initialize_alice(cls, shared_secret: bytes, bob_ratchet_key: X25519PublicKey,
                         ratchet_key: X25519PrivateKey) -> RatchetState:
        """The initiator's state: her first ratchet key and Bob's SPK give her sending chain."""
        root_key, cks = kdf_rk(shared_secret, ratchet_key.exchange(bob_ratchet_key))
        return cls(root_key, ratchet_key.raw, ratchet_key.public_key.raw, bob_ratchet_key.raw,
                   cks, None)

    @classmethod
    def initialize_bob(cls, shared_secret: bytes, signed_prekey: X25519PrivateKey) -> RatchetState:
        """The responder's state: his SPK is his first ratchet key; the root key is SK."""
        return cls(shared_secret, signed_prekey.raw, signed_prekey.public_key.raw,
                   None, None, None)

    # -- sending ------------------------------------------------------------------------------

    def next_sending_key(self) -> tuple[bytes, bytes]:
        """Advance the sending chain: (header of the next message, its message key)."""
        ck = self.cks
        if ck is None:
            raise LocalProtocolError("this side cannot send before it has received a message")
        ns = self.ns
        header = self._header_prefix + _packb(ns)
        message_key, self.cks = _hmac_pair(ck, MESSAGE_KEY_SEED, CHAIN_KEY_SEED)
        self.ns = ns + 1
        return header, message_key

    def encrypt(self, plaintext: bytes, associated_data: bytes,
                random: RandomSource = system_random) -> RatchetMessage:
        """Encrypt one message; aad = associated data || header, nonce = 24 random bytes."""
        header, message_key = self.next_sending_key()
        nonce = random(NONCE_SIZE)
        return _new_message(RatchetMessage, (
            header, nonce, _seal(plaintext, associated_data + header, nonce, message_key)))

    # -- receiving ----------------------------------------------------------------------------

    def decrypt(self, message: RatchetMessage, associated_data: bytes,
                random: RandomSource = system_random) -> bytes:
        """Decrypt one message, in any order. On any error the state is unchanged.

        ``random`` supplies the new ratchet key pair when the message starts a new DH-ratchet turn.
        """
        header, nonce, ciphertext = message
        dh, pn, n = decode_header(header)
        aad = associated_data + header
        if type(nonce) is not bytes or len(nonce) != NONCE_SIZE:
            raise MalformedError("nonce must be 24 bytes")

        skipped = self.skipped
        if skipped:  # most sessions keep no skipped keys: no lookup then
            skipped_key = skipped.get((dh, n))
            if skipped_key is not None:
                plaintext = _open(ciphertext, aad, nonce, skipped_key)
                del skipped[(dh, n)]
                return plaintext

        if dh == self.dhr:
            ckr = self.ckr
            if ckr is None:  # the initiator's dhr is Bob's SPK, which never sends
                raise DecryptionError("message names a ratchet key with no receiving chain")
            nr = self.nr
            if n == nr:  # the common case: in order, nothing to skip
                message_key, next_ckr = _hmac_pair(ckr, MESSAGE_KEY_SEED, CHAIN_KEY_SEED)
                plaintext = _open(ciphertext, aad, nonce, message_key)
                self.ckr = next_ckr
                self.nr = n + 1
                return plaintext
            if n < nr:
                raise DuplicateMessageError("message already received (or its key was evicted)")
            keys, ckr = _skip_keys(ckr, nr, n, dh)
            message_key, next_ckr = _hmac_pair(ckr, MESSAGE_KEY_SEED, CHAIN_KEY_SEED)
            plaintext = _open(ciphertext, aad, nonce, message_key)
            self.ckr = next_ckr
            self.nr = n + 1
            self._remember(keys)
            return plaintext

        if dh in self.previous_dhr:
            raise DuplicateMessageError("message of an earlier chain already received")
        return self._decrypt_new_chain(dh, pn, n, aad, nonce, ciphertext, random)

    def _decrypt_new_chain(self, dh: bytes, pn: int, n: int, aad: bytes, nonce: bytes,
                           ciphertext: bytes, random: RandomSource) -> bytes:
        """A DH-ratchet step: worked out in locals, committed once the tag verifies."""
        old_keys: list[tuple[tuple[bytes, int], bytes]] = []
        if self.ckr is not None and self.dhr is not None and pn > self.nr:
            old_keys, _ = _skip_keys(self.ckr, self.nr, pn, self.dhr)
        root_key, ckr = kdf_rk(self.root_key, primitives.x25519(self.dhs_private, dh))
        new_keys: list[tuple[tuple[bytes, int], bytes]] = []
        if n:
            new_keys, ckr = _skip_keys(ckr, 0, n, dh)
        message_key, next_ckr = _hmac_pair(ckr, MESSAGE_KEY_SEED, CHAIN_KEY_SEED)
        plaintext = _open(ciphertext, aad, nonce, message_key)

        dhs_private = check_key_bytes(random(KEY_SIZE), KEY_SIZE, "X25519 private key")
        dhs_public = primitives.x25519_public(dhs_private)
        root_key, cks = kdf_rk(root_key, primitives.x25519(dhs_private, dh))
        if self.dhr is not None:
            self.previous_dhr = [self.dhr, *self.previous_dhr[: PREVIOUS_CHAINS_KEPT - 1]]
        self.pn = self.ns
        self.ns = 0
        self.nr = n + 1
        self.dhr = dh
        self.root_key = root_key
        self.ckr = next_ckr
        self.cks = cks
        self.dhs_private = dhs_private
        self.dhs_public = dhs_public
        self._header_prefix = _header_prefix(dhs_public, self.pn)
        self._remember(old_keys + new_keys)
        return plaintext

    def _remember(self, keys: list[tuple[tuple[bytes, int], bytes]]) -> None:
        """Store skipped message keys, evicting the oldest beyond MAX_SKIPPED_KEYS."""
        skipped = self.skipped
        skipped.update(keys)
        excess = len(skipped) - MAX_SKIPPED_KEYS
        if excess > 0:
            for key in list(skipped)[:excess]:
                del skipped[key]

    # -- serialisation ------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Versioned msgpack: ``[1, rk, dhs_priv, dhs_pub, dhr, cks, ckr, ns, nr, pn, skipped,
        previous_dhr]``, skipped as ``[[dh, n, key], ...]`` oldest first."""
        return _packb([
            STATE_VERSION, self.root_key, self.dhs_private, self.dhs_public, self.dhr,
            self.cks, self.ckr, self.ns, self.nr, self.pn,
            [[dh, index, key] for (dh, index), key in self.skipped.items()],
            self.previous_dhr,
        ])

    @classmethod
    def from_bytes(cls, data: bytes) -> RatchetState:
        """Inverse of :meth:`to_bytes`; :class:`MalformedError` on anything inconsistent."""
        try:
            fields = msgpack.unpackb(data)
        except (ValueError, TypeError, msgpack.UnpackException):
            raise MalformedError("ratchet state is not valid msgpack") from None
        if type(fields) is not list or not fields or type(fields[0]) is not int:
            raise MalformedError("ratchet state must be a list that starts with its version")
        if fields[0] != STATE_VERSION:
            raise UnsupportedVersionError(
                f"ratchet state version {describe(fields[0])} is unknown")
        try:
            _, rk, dhs, dhs_pub, dhr, cks, ckr, ns, nr, pn, skipped, previous = fields
            state = cls(_key(rk), _key(dhs), _key(dhs_pub), _opt_key(dhr), _opt_key(cks),
                        _opt_key(ckr), _u32(ns), _u32(nr), _u32(pn),
                        {(_key(d), _u32(i)): _key(k) for d, i, k in skipped},
                        [_key(d) for d in previous])
        except (ValueError, TypeError):
            raise MalformedError("ratchet state has wrong fields") from None
        return state


def _key(value: object) -> bytes:
    if type(value) is not bytes or len(value) != KEY_SIZE:
        raise ValueError("key must be 32 bytes")
    return value


def _opt_key(value: object) -> bytes | None:
    return None if value is None else _key(value)


def _u32(value: object) -> int:
    if type(value) is not int or not 0 <= value < _U32_LIMIT:
        raise ValueError("counter out of range")
    return value
