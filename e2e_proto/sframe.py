"""SFrame (RFC 9605) for call media, cipher suite 0x0005 AES_256_GCM_SHA512_128 (DESIGN §15).

Invariant: a key and salt are derived once per KID, never per frame, and a receiver's keyring
changes only after a frame's tag has verified: a malformed, forged or unknown frame raises a
typed error and leaves every key as it was.

* Header (§4.3): a config byte ``X KKK Y CCC`` (bit 7 first), then the KID bytes (when X = 1),
  then the CTR bytes (when Y = 1). A value 0..7 sits in its 3-bit field with its flag 0; any
  other value follows in the fewest big-endian bytes, its field holding that length minus one.
  RFC 9605 requires exactly this form ("MUST be encoded with the minimum number of bytes"), so
  :func:`decode_header` refuses any other (a KID or CTR below 8 written out, a leading zero
  byte): every (KID, CTR) has one header, and the header bytes are the AAD.
* Keys (§4.4.2): ``secret = HKDF-Extract("", base_key)`` over SHA-512; ``key =
  HKDF-Expand(secret, "SFrame 1.0 Secret key " || KID || suite, 32)`` and ``salt =
  HKDF-Expand(secret, "SFrame 1.0 Secret salt " || KID || suite, 12)``, with the KID as 8 and
  the suite (0x0005) as 2 big-endian bytes.
* Frames (§4.4.3): ``nonce = salt XOR CTR`` (12 bytes, big-endian), ``aad = header ||
  metadata``, the SFrame ciphertext is ``header || AES-256-GCM(key, nonce, aad, frame)``: the
  frame plus the 16-byte tag (Nt = 16).
* Sender keys (§5.1): each sender owns a base key; ratcheting it gives ``base_key' =
  HKDF-Expand(HKDF-Extract("", base_key), "SFrame 1.0 Ratchet", 64)``. The RFC splits a KID
  into a key generation (high 64 - R bits) and the low R bits of the ratchet step,
  ``KID = (key_generation << R) + (ratchet_step % (1 << R))``, with R chosen by the
  application. We fix R = 8, which is DESIGN's ``KID = (key_generation << 8) | ratchet_step``
  with the step taken modulo 256: 2^56 generations, and a receiver tells a ratchet step from a
  new key within a window of 256 steps (it follows at most ``SFRAME_MAX_RATCHET_JUMP`` ahead
  and keeps ``SFRAME_KEPT_RATCHET_STEPS`` behind). KIDs are per sender, as in the RFC's
  scheme: every sender starts at generation 0, so a receiver keeps one keyring per sender and
  the transport says which sender a frame came from.

AES-256-GCM comes from libsodium, which runs it only with hardware AES; the first context made
checks that and raises :class:`HardwareAESUnavailableError` when it is absent.
"""

from __future__ import annotations

from . import primitives
from .constants import (
    SFRAME_BASE_KEY_SIZE,
    SFRAME_CIPHER_SUITE,
    SFRAME_HASH_SIZE,
    SFRAME_KEPT_RATCHET_STEPS,
    SFRAME_KEY_LABEL,
    SFRAME_KEY_SIZE,
    SFRAME_MAX_KEY_GENERATION,
    SFRAME_MAX_RATCHET_JUMP,
    SFRAME_MAX_VALUE,
    SFRAME_MIN_BASE_KEY_SIZE,
    SFRAME_NONCE_SIZE,
    SFRAME_RATCHET_BITS,
    SFRAME_RATCHET_LABEL,
    SFRAME_SALT_LABEL,
    SFRAME_TAG_SIZE,
)
from .errors import CounterExhaustedError, LocalProtocolError, MalformedError, UnknownKeyIdError
from .primitives import SHA512, RandomSource, hkdf_expand, hkdf_extract, system_random

_SUITE = SFRAME_CIPHER_SUITE.to_bytes(2, "big")
_STEP_MASK = (1 << SFRAME_RATCHET_BITS) - 1
# A held step whose distance behind a new step, (new - held) mod 256, is at least this is in
# fact ahead of it (within the jump window) and is kept.
_AHEAD = (1 << SFRAME_RATCHET_BITS) - SFRAME_MAX_RATCHET_JUMP


def _check_u64(value: int, what: str) -> None:
    if type(value) is not int or not 0 <= value <= SFRAME_MAX_VALUE:
        raise LocalProtocolError(f"SFrame {what} must be an integer in 0 .. 2**64-1")


# -- Header (RFC 9605 §4.3) -------------------------------------------------------------------


def _field(value: int) -> tuple[int, bytes]:
    """(4-bit config field: flag and 3 bits, bytes after the config byte) for a KID or CTR."""
    if value < 8:
        return value, b""
    size = (value.bit_length() + 7) >> 3
    return 0x8 | (size - 1), value.to_bytes(size, "big")


def encode_header(kid: int, ctr: int) -> bytes:
    """The SFrame header for ``kid`` and ``ctr`` (each 0 .. 2**64-1), minimally encoded."""
    _check_u64(kid, "KID")
    _check_u64(ctr, "CTR")
    kid_field, kid_bytes = _field(kid)
    ctr_field, ctr_bytes = _field(ctr)
    return bytes(((kid_field << 4) | ctr_field,)) + kid_bytes + ctr_bytes


def _read_field(data: bytes, field: int, pos: int, what: str) -> tuple[int, int]:
    """(value, position after it) of a KID or CTR whose config field is ``field``."""
    if not field & 0x8:
        return field, pos
    end = pos + (field & 0x7) + 1
    if len(data) < end:
        raise MalformedError(f"SFrame header ends inside its {what}")
    value = int.from_bytes(data[pos:end], "big")
    if value < 8 or data[pos] == 0:
        raise MalformedError(f"SFrame {what} is not minimally encoded")
    return value, end


def decode_header(data: bytes) -> tuple[int, int, int]:
    """(KID, CTR, header length) of the header that starts ``data``.

    :class:`MalformedError` when ``data`` ends inside the header or the header is not the
    minimal encoding RFC 9605 requires. Reads at most 17 bytes, whatever ``data`` holds.
    """
    if not data:
        raise MalformedError("SFrame ciphertext is empty")
    config = data[0]
    kid, pos = _read_field(data, config >> 4, 1, "KID")
    ctr, pos = _read_field(data, config & 0xF, pos, "CTR")
    return kid, ctr, pos


# -- Key derivation (§4.4.2) and the sender-key ratchet (§5.1) --------------------------------


def _check_base_key(base_key: bytes) -> None:
    if type(base_key) is not bytes or not (
            SFRAME_MIN_BASE_KEY_SIZE <= len(base_key) <= SFRAME_HASH_SIZE):
        raise LocalProtocolError(
            f"SFrame base key must be {SFRAME_MIN_BASE_KEY_SIZE}..{SFRAME_HASH_SIZE} bytes")


def derive_key_salt(base_key: bytes, kid: int) -> tuple[bytes, bytes]:
    """(sframe_key, sframe_salt): 32 and 12 bytes for ``kid`` under ``base_key`` (§4.4.2)."""
    _check_base_key(base_key)
    _check_u64(kid, "KID")
    secret = hkdf_extract(b"", base_key, SHA512)
    suffix = kid.to_bytes(8, "big") + _SUITE
    return (hkdf_expand(secret, SFRAME_KEY_LABEL + suffix, SFRAME_KEY_SIZE, SHA512),
            hkdf_expand(secret, SFRAME_SALT_LABEL + suffix, SFRAME_NONCE_SIZE, SHA512))


def ratchet_base_key(base_key: bytes) -> bytes:
    """The next base key, 64 bytes: HKDF-Expand(HKDF-Extract("", key), "SFrame 1.0 Ratchet")."""
    _check_base_key(base_key)
    secret = hkdf_extract(b"", base_key, SHA512)
    return hkdf_expand(secret, SFRAME_RATCHET_LABEL, SFRAME_HASH_SIZE, SHA512)


def sender_key_kid(key_generation: int, ratchet_step: int) -> int:
    """``(key_generation << 8) | (ratchet_step % 256)``: the KID of RFC 9605 §5.1 with R = 8."""
    if type(key_generation) is not int or not 0 <= key_generation <= SFRAME_MAX_KEY_GENERATION:
        raise LocalProtocolError("SFrame key generation must be in 0 .. 2**56-1")
    if type(ratchet_step) is not int or ratchet_step < 0:
        raise LocalProtocolError("SFrame ratchet step must be a non-negative integer")
    return (key_generation << SFRAME_RATCHET_BITS) | (ratchet_step & _STEP_MASK)


def split_sender_key_kid(kid: int) -> tuple[int, int]:
    """(key generation, ratchet step modulo 256) of a sender-key KID."""
    _check_u64(kid, "KID")
    return kid >> SFRAME_RATCHET_BITS, kid & _STEP_MASK


class _KidKeys:
    """What one KID needs per frame, derived once: the AES key and the salt as an integer."""

    __slots__ = ("base_key", "key", "salt")

    def __init__(self, base_key: bytes, kid: int) -> None:
        key, salt = derive_key_salt(base_key, kid)
        self.base_key = base_key
        self.key = key
        self.salt = int.from_bytes(salt, "big")


# -- Sender -----------------------------------------------------------------------------------


class SenderContext:
    """One sender's encryption state: a base key, its KID and the next CTR (RFC 9605 §4.4.1).

    ``encrypt`` costs one AES-256-GCM call and a few header bytes: the key and salt are derived
    when the base key or KID changes. A context only encrypts; the RFC forbids using one base
    key for both directions, and :class:`ReceiverKeyring` is the decrypting side.
    """

    __slots__ = ("_base_key", "_counter", "_keys", "_kid", "_kid_bytes", "_kid_field")

    def __init__(self, base_key: bytes, kid: int, counter: int = 0) -> None:
        primitives.require_hardware_aes()
        if type(counter) is not int or not 0 <= counter <= SFRAME_MAX_VALUE + 1:
            raise LocalProtocolError("SFrame counter must be in 0 .. 2**64")
        self._install(base_key, kid, counter)

    def _install(self, base_key: bytes, kid: int, counter: int) -> None:
        keys = _KidKeys(base_key, kid)
        self._base_key = base_key
        self._kid = kid
        self._kid_field, self._kid_bytes = _field(kid)
        self._keys = keys
        self._counter = counter

    @classmethod
    def generate(cls, key_generation: int = 0,
                 random: RandomSource = system_random) -> SenderContext:
        """A fresh random 32-byte base key, at ``key_generation`` and ratchet step 0."""
        return cls(random(SFRAME_BASE_KEY_SIZE), sender_key_kid(key_generation, 0))

    @property
    def base_key(self) -> bytes:
        """The current base key, to give to receivers over the pairwise sessions."""
        return self._base_key

    @property
    def kid(self) -> int:
        """The KID that goes with :attr:`base_key`."""
        return self._kid

    @property
    def counter(self) -> int:
        """The CTR the next frame will use (2**64 once every value is used up)."""
        return self._counter

    def encrypt(self, frame: bytes, metadata: bytes = b"") -> bytes:
        """``header || ciphertext || tag`` of ``frame``; ``metadata`` is authenticated, not sent.

        Raises :class:`CounterExhaustedError` (changing nothing) once all 2**64 CTR values of
        this key are used: ratchet or switch to a new base key.
        """
        header, sealed = self.encrypt_parts(frame, metadata)
        return header + sealed

    def encrypt_parts(self, frame: bytes, metadata: bytes = b"") -> tuple[bytes, bytes]:
        """:meth:`encrypt`'s result in two pieces, ``(header, ciphertext || tag)``, for a caller
        that copies them into a datagram anyway: the frame is then copied once, not twice."""
        ctr = self._counter
        if ctr > SFRAME_MAX_VALUE:
            raise CounterExhaustedError("every SFrame counter value of this key is used")
        ctr_field, ctr_bytes = _field(ctr)
        header = bytes(((self._kid_field << 4) | ctr_field,)) + self._kid_bytes + ctr_bytes
        keys = self._keys
        nonce = (keys.salt ^ ctr).to_bytes(SFRAME_NONCE_SIZE, "big")
        sealed = primitives.aes256gcm_seal(frame, header + metadata, nonce, keys.key)
        self._counter = ctr + 1
        return header, sealed

    def ratchet(self) -> None:
        """Step the base key forward (§5.1): same generation, ratchet step + 1 (mod 256).

        The new (key, salt) pair is unrelated to the old one, so the counter restarts at 0.
        Receivers holding the previous step follow on their own when the new KID arrives.
        """
        generation, step = split_sender_key_kid(self._kid)
        self._install(ratchet_base_key(self._base_key), sender_key_kid(generation, step + 1), 0)


# -- Receiver ---------------------------------------------------------------------------------


class ReceiverKeyring:
    """The decryption keys of one remote sender, by KID, with §5.1's ratchet followed.

    Keys come from :meth:`add` (a base key received over a pairwise session). A frame whose
    KID has the generation of a held key and a ratchet step up to ``SFRAME_MAX_RATCHET_JUMP``
    ahead of it is decrypted with a key ratcheted forward from the nearest held step; once its
    tag verifies the new KID is kept, and steps more than ``SFRAME_KEPT_RATCHET_STEPS`` behind
    it in that generation are dropped. A forged frame therefore costs at most that many
    ratchet steps and changes nothing.
    """

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        primitives.require_hardware_aes()
        self._keys: dict[int, _KidKeys] = {}

    @property
    def kids(self) -> tuple[int, ...]:
        """The KIDs held, in increasing order."""
        return tuple(sorted(self._keys))

    def add(self, kid: int, base_key: bytes) -> None:
        """Hold ``base_key`` for ``kid`` (replacing any key held for it)."""
        self._keys[kid] = _KidKeys(base_key, kid)

    def remove(self, kid: int) -> None:
        """Forget the key of ``kid``, if held."""
        self._keys.pop(kid, None)

    def decrypt(self, sframe: bytes, metadata: bytes = b"") -> bytes:
        """The frame inside an SFrame ciphertext (``bytes``), checked against ``metadata``.

        :class:`MalformedError` for a bad header or a ciphertext shorter than the tag,
        :class:`UnknownKeyIdError` for a KID neither held nor reachable by ratcheting,
        :class:`DecryptionError` for a tag that does not verify.
        """
        kid, ctr, end = decode_header(sframe)
        if len(sframe) - end < SFRAME_TAG_SIZE:
            raise MalformedError("SFrame ciphertext is shorter than its tag")
        keys = self._keys.get(kid)
        chain = None
        if keys is None:
            chain = self._ratchet_chain(kid)
            keys = _KidKeys(chain[-1], kid)
        nonce = (keys.salt ^ ctr).to_bytes(SFRAME_NONCE_SIZE, "big")
        frame = primitives.aes256gcm_open(sframe[end:], sframe[:end] + metadata, nonce, keys.key)
        if chain is not None:
            self._keep(kid, keys, chain)
        return frame

    def _ratchet_chain(self, kid: int) -> list[bytes]:
        """Base keys of the steps after the nearest held one of ``kid``'s generation, to ``kid``."""
        generation, step = kid >> SFRAME_RATCHET_BITS, kid & _STEP_MASK
        nearest: tuple[int, _KidKeys] | None = None
        for held_kid, held in self._keys.items():
            if held_kid >> SFRAME_RATCHET_BITS != generation:
                continue
            distance = (step - held_kid) & _STEP_MASK
            if 0 < distance <= SFRAME_MAX_RATCHET_JUMP and (
                    nearest is None or distance < nearest[0]):
                nearest = (distance, held)
        if nearest is None:
            raise UnknownKeyIdError(f"no SFrame key for KID {kid}")
        distance, held = nearest
        chain = [ratchet_base_key(held.base_key)]
        for _ in range(distance - 1):
            chain.append(ratchet_base_key(chain[-1]))
        return chain

    def _keep(self, kid: int, keys: _KidKeys, chain: list[bytes]) -> None:
        """Hold a verified ratcheted KID and drop its generation's steps now too far behind.

        The steps skipped on the way (none of them was held) are kept too when they are close
        enough behind: their frames may still arrive late.
        """
        generation = kid >> SFRAME_RATCHET_BITS
        skipped = chain[-1 - SFRAME_KEPT_RATCHET_STEPS:-1]
        for behind, base_key in enumerate(reversed(skipped), start=1):
            skipped_kid = (generation << SFRAME_RATCHET_BITS) | ((kid - behind) & _STEP_MASK)
            self._keys[skipped_kid] = _KidKeys(base_key, skipped_kid)
        self._keys[kid] = keys
        for held_kid in [k for k in self._keys if k >> SFRAME_RATCHET_BITS == generation]:
            behind = (kid - held_kid) & _STEP_MASK
            if SFRAME_KEPT_RATCHET_STEPS < behind < _AHEAD:
                del self._keys[held_kid]
