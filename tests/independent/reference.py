"""A small reference implementation of e2e-proto, written from DESIGN.md (§2–§4, §7, §13) alone.

It shares no code with :mod:`e2e_proto` and does not use libsodium/PyNaCl. Primitives come from
pyca ``cryptography`` (X25519, Ed25519, HKDF), ``pycryptodome`` (XChaCha20-Poly1305, which is its
ChaCha20-Poly1305 with a 24-byte nonce), the standard library (SHA-512, HMAC-SHA256) and
``msgpack``. The Ed25519 to X25519 key conversion is written out with integer arithmetic.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import msgpack
from Crypto.Cipher import ChaCha20_Poly1305
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# -- Constants (DESIGN.md) --------------------------------------------------------------------

X3DH_INFO = b"E2EProto X3DH v1"  # §3
X3DH_SALT = bytes(32)  # §3: 32 zero bytes
X3DH_IKM_PREFIX = b"\xff" * 32  # §3: 32 bytes of 0xFF
RATCHET_INFO = b"E2EProto Ratchet v1"  # §4
SPK_SIGNATURE_PREFIX = b"e2e-proto/spk/v1"  # §2
MAX_SKIP = 2000  # §4: message keys skipped in one chain
MAX_SKIPPED_KEYS = 2000  # §4: skipped keys kept per session, oldest evicted first
FINGERPRINT_VERSION = b"\x00\x00"  # §7: version 0, two bytes
FINGERPRINT_ITERATIONS = 5200  # §7: one initial hash, then 5199 more
FINGERPRINT_CHUNKS = 6  # §7: six 5-byte chunks of the first 30 bytes
XCHACHA_NONCE_SIZE = 24
GROUP_SIGNATURE_PREFIX = b"e2e-proto/group/v1"  # §13
SENDER_KEY_MAX_AHEAD = 25000  # §13: at most 25,000 iterations ahead
SENDER_KEY_MAX_SKIPPED = 2000  # §13: kept skipped keys per chain

P25519 = 2**255 - 19  # field prime shared by Curve25519 and edwards25519


class SpecError(Exception):
    """Any protocol failure in the reference implementation."""


# -- Ed25519 / X25519 ------------------------------------------------------------------------


def ed25519_public_from_seed(seed: bytes) -> bytes:
    """The 32-byte Ed25519 public key for a 32-byte seed."""
    key = Ed25519PrivateKey.from_private_bytes(seed)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def ed25519_sign(seed: bytes, message: bytes) -> bytes:
    """The (deterministic) 64-byte Ed25519 signature of ``message`` by the key of ``seed``."""
    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


def ed25519_verify(public: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message`` under ``public``."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def ed25519_public_to_x25519(public: bytes) -> bytes:
    """Birational map of an Ed25519 public key to its X25519 form: u = (1 + y) / (1 - y) mod p."""
    if len(public) != 32:
        raise SpecError("an Ed25519 public key is 32 bytes")
    y = int.from_bytes(public, "little") & ((1 << 255) - 1)  # clear the sign bit of x
    if y >= P25519:
        raise SpecError("non-canonical y coordinate")
    denominator = (1 - y) % P25519
    if denominator == 0:
        raise SpecError("y = 1 (the identity point) has no X25519 form")
    u = (1 + y) * pow(denominator, P25519 - 2, P25519) % P25519
    return u.to_bytes(32, "little")


def clamp_x25519_scalar(scalar: bytes) -> bytes:
    """RFC 7748 clamping: clear the low 3 bits, clear bit 255, set bit 254."""
    clamped = bytearray(scalar)
    clamped[0] &= 248
    clamped[31] &= 127
    clamped[31] |= 64
    return bytes(clamped)


def ed25519_seed_to_x25519(seed: bytes) -> bytes:
    """X25519 private key of an Ed25519 seed: first 32 bytes of SHA-512(seed), clamped."""
    if len(seed) != 32:
        raise SpecError("an Ed25519 seed is 32 bytes")
    return clamp_x25519_scalar(hashlib.sha512(seed).digest()[:32])


def x25519_public(private: bytes) -> bytes:
    """The X25519 public key of a 32-byte private key (clamping happens inside X25519)."""
    key = X25519PrivateKey.from_private_bytes(private)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def x25519(private: bytes, public: bytes) -> bytes:
    """X25519(private, public); an all-zero output is rejected (§3)."""
    try:
        shared = X25519PrivateKey.from_private_bytes(private).exchange(
            X25519PublicKey.from_public_bytes(public)
        )
    except ValueError as exc:  # pyca raises on an all-zero (small-order) result
        raise SpecError("all-zero X25519 output") from exc
    if shared == bytes(32):
        raise SpecError("all-zero X25519 output")
    return shared


def hkdf_sha256(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF with SHA-256."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


# -- X3DH (§2, §3) ----------------------------------------------------------------------------


def spk_signed_bytes(spk_id: int, spk_public: bytes) -> bytes:
    """The bytes the DIK signs for a signed prekey: prefix || spk_id (u32 BE) || spk_pub."""
    return SPK_SIGNATURE_PREFIX + spk_id.to_bytes(4, "big") + spk_public


def sign_spk(dik_seed: bytes, spk_id: int, spk_public: bytes) -> bytes:
    """Ed25519(DIK, b"e2e-proto/spk/v1" || spk_id || spk_pub)."""
    return ed25519_sign(dik_seed, spk_signed_bytes(spk_id, spk_public))


@dataclass(frozen=True)
class X3DHResult:
    """The DH outputs, shared secret and associated data of one X3DH run."""

    dh1: bytes
    dh2: bytes
    dh3: bytes
    dh4: bytes | None
    shared_secret: bytes
    associated_data: bytes


def _x3dh_finish(
    dh1: bytes, dh2: bytes, dh3: bytes, dh4: bytes | None, dik_a: bytes, dik_b: bytes
) -> X3DHResult:
    ikm = X3DH_IKM_PREFIX + dh1 + dh2 + dh3 + (dh4 if dh4 is not None else b"")
    sk = hkdf_sha256(X3DH_SALT, ikm, X3DH_INFO, 32)
    return X3DHResult(dh1, dh2, dh3, dh4, sk, dik_a + dik_b)


def x3dh_initiator(
    alice_identity_seed: bytes,
    alice_ephemeral_private: bytes,
    bob_identity_public: bytes,
    bob_spk_id: int,
    bob_spk_public: bytes,
    bob_spk_signature: bytes,
    bob_opk_public: bytes | None,
) -> X3DHResult:
    """Alice's side of X3DH (§3): verify Bob's SPK signature, then DH1..DH4, SK and AD."""
    if not ed25519_verify(
        bob_identity_public, bob_spk_signature, spk_signed_bytes(bob_spk_id, bob_spk_public)
    ):
        raise SpecError("bad signed-prekey signature")
    ik_a_x = ed25519_seed_to_x25519(alice_identity_seed)
    ik_b_x = ed25519_public_to_x25519(bob_identity_public)
    dh1 = x25519(ik_a_x, bob_spk_public)
    dh2 = x25519(alice_ephemeral_private, ik_b_x)
    dh3 = x25519(alice_ephemeral_private, bob_spk_public)
    dh4 = x25519(alice_ephemeral_private, bob_opk_public) if bob_opk_public is not None else None
    alice_identity_public = ed25519_public_from_seed(alice_identity_seed)
    return _x3dh_finish(dh1, dh2, dh3, dh4, alice_identity_public, bob_identity_public)


def x3dh_responder(
    bob_identity_seed: bytes,
    bob_spk_private: bytes,
    bob_opk_private: bytes | None,
    alice_identity_public: bytes,
    alice_ephemeral_public: bytes,
) -> X3DHResult:
    """Bob's side of X3DH (§3): the same DH outputs computed from his private keys."""
    ik_b_x = ed25519_seed_to_x25519(bob_identity_seed)
    ik_a_x = ed25519_public_to_x25519(alice_identity_public)
    dh1 = x25519(bob_spk_private, ik_a_x)
    dh2 = x25519(ik_b_x, alice_ephemeral_public)
    dh3 = x25519(bob_spk_private, alice_ephemeral_public)
    dh4 = x25519(bob_opk_private, alice_ephemeral_public) if bob_opk_private is not None else None
    bob_identity_public = ed25519_public_from_seed(bob_identity_seed)
    return _x3dh_finish(dh1, dh2, dh3, dh4, alice_identity_public, bob_identity_public)


# -- Double Ratchet (§4) ----------------------------------------------------------------------


def kdf_rk(rk: bytes, dh_out: bytes) -> tuple[bytes, bytes]:
    """KDF_RK: HKDF-SHA256(salt=rk, ikm=dh_out, info, 64) -> (new root key, chain key)."""
    out = hkdf_sha256(rk, dh_out, RATCHET_INFO, 64)
    return out[:32], out[32:]


def kdf_ck(ck: bytes) -> tuple[bytes, bytes]:
    """KDF_CK: (next chain key = HMAC(ck, 0x02), message key = HMAC(ck, 0x01))."""
    message_key = hmac.new(ck, b"\x01", hashlib.sha256).digest()
    next_ck = hmac.new(ck, b"\x02", hashlib.sha256).digest()
    return next_ck, message_key


def encode_header(dh_public: bytes, pn: int, n: int) -> bytes:
    """header = msgpack.packb([dh_pub, pn, n], use_bin_type=True)."""
    return msgpack.packb([dh_public, pn, n], use_bin_type=True)


def decode_header(header: bytes) -> tuple[bytes, int, int]:
    """Parse a header back into (dh_pub, pn, n), checking its shape."""
    try:
        fields = msgpack.unpackb(header, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise SpecError("malformed header") from exc
    if not (
        isinstance(fields, list)
        and len(fields) == 3
        and isinstance(fields[0], bytes)
        and len(fields[0]) == 32
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in fields[1:])
    ):
        raise SpecError("malformed header")
    if encode_header(fields[0], fields[1], fields[2]) != header:
        raise SpecError("non-canonical header encoding")
    return fields[0], fields[1], fields[2]


def aead_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """XChaCha20-Poly1305-IETF: ciphertext || 16-byte tag."""
    if len(nonce) != XCHACHA_NONCE_SIZE:
        raise SpecError("XChaCha20-Poly1305 takes a 24-byte nonce")
    cipher = ChaCha20_Poly1305.new(key=key, nonce=nonce)
    cipher.update(aad)
    body, tag = cipher.encrypt_and_digest(plaintext)
    return body + tag


def aead_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """Inverse of :func:`aead_encrypt`; a bad tag raises :class:`SpecError`."""
    if len(nonce) != XCHACHA_NONCE_SIZE or len(ciphertext) < 16:
        raise SpecError("bad nonce or ciphertext length")
    cipher = ChaCha20_Poly1305.new(key=key, nonce=nonce)
    cipher.update(aad)
    try:
        return cipher.decrypt_and_verify(ciphertext[:-16], ciphertext[-16:])
    except ValueError as exc:
        raise SpecError("bad authentication tag") from exc


KeySource = Callable[[], bytes]
"""Returns the next X25519 private key the party generates (GENERATE_DH in the spec)."""


@dataclass
class RatchetState:
    """The Signal spec's state variables (DHs, DHr, RK, CKs, CKr, Ns, Nr, PN, MKSKIPPED)."""

    dhs_private: bytes
    dhr: bytes | None
    rk: bytes
    cks: bytes | None
    ckr: bytes | None
    ns: int = 0
    nr: int = 0
    pn: int = 0
    skipped: dict[tuple[bytes, int], bytes] = field(default_factory=dict)

    @property
    def dhs_public(self) -> bytes:
        """Our current ratchet public key."""
        return x25519_public(self.dhs_private)


@dataclass(frozen=True)
class EncryptedMessage:
    """One ratchet message and the message key it used (exposed for test vectors)."""

    header: bytes
    nonce: bytes
    ciphertext: bytes
    message_key: bytes


class DoubleRatchet:
    """One party's Double Ratchet session, following the Signal specification's pseudocode."""

    def __init__(self, state: RatchetState, associated_data: bytes, generate_dh: KeySource):
        self.state = state
        self.ad = associated_data
        self.generate_dh = generate_dh

    @classmethod
    def init_alice(
        cls, sk: bytes, ad: bytes, bob_ratchet_public: bytes, generate_dh: KeySource
    ) -> DoubleRatchet:
        """RatchetInitAlice: new key pair; rk, cks = KDF_RK(SK, DH(alice_ratchet, SPK_B))."""
        dhs = generate_dh()
        rk, cks = kdf_rk(sk, x25519(dhs, bob_ratchet_public))
        return cls(RatchetState(dhs, bob_ratchet_public, rk, cks, None), ad, generate_dh)

    @classmethod
    def init_bob(
        cls, sk: bytes, ad: bytes, spk_private: bytes, generate_dh: KeySource
    ) -> DoubleRatchet:
        """RatchetInitBob: the SPK is the first ratchet key pair; rk = SK."""
        return cls(RatchetState(spk_private, None, sk, None, None), ad, generate_dh)

    def encrypt(self, plaintext: bytes, nonce: bytes) -> EncryptedMessage:
        """RatchetEncrypt, with the (normally random) 24-byte nonce supplied by the caller."""
        st = self.state
        if st.cks is None:
            raise SpecError("no sending chain yet")
        st.cks, mk = kdf_ck(st.cks)
        header = encode_header(st.dhs_public, st.pn, st.ns)
        st.ns += 1
        ciphertext = aead_encrypt(mk, nonce, plaintext, self.ad + header)
        return EncryptedMessage(header, nonce, ciphertext, mk)

    def decrypt(self, header: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
        """RatchetDecrypt on a copy of the state, committed only on success."""
        work = replace(self.state, skipped=dict(self.state.skipped))
        plaintext = self._decrypt(work, header, nonce, ciphertext)
        self.state = work
        return plaintext

    def _decrypt(self, st: RatchetState, header: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
        dh, pn, n = decode_header(header)
        aad = self.ad + header
        mk = st.skipped.pop((dh, n), None)
        if mk is not None:  # TrySkippedMessageKeys
            return aead_decrypt(mk, nonce, ciphertext, aad)
        if dh != st.dhr:
            self._skip_message_keys(st, pn)
            self._dh_ratchet(st, dh)
        self._skip_message_keys(st, n)
        assert st.ckr is not None
        st.ckr, mk = kdf_ck(st.ckr)
        st.nr += 1
        return aead_decrypt(mk, nonce, ciphertext, aad)

    @staticmethod
    def _skip_message_keys(st: RatchetState, until: int) -> None:
        if st.nr + MAX_SKIP < until:
            raise SpecError("too many skipped messages")
        if st.ckr is None:
            return
        while st.nr < until:
            assert st.dhr is not None
            st.ckr, mk = kdf_ck(st.ckr)
            st.skipped[(st.dhr, st.nr)] = mk
            st.nr += 1
            while len(st.skipped) > MAX_SKIPPED_KEYS:  # evict the oldest (insertion order)
                del st.skipped[next(iter(st.skipped))]

    def _dh_ratchet(self, st: RatchetState, dh: bytes) -> None:
        st.pn = st.ns
        st.ns = 0
        st.nr = 0
        st.dhr = dh
        st.rk, st.ckr = kdf_rk(st.rk, x25519(st.dhs_private, dh))
        st.dhs_private = self.generate_dh()
        st.rk, st.cks = kdf_rk(st.rk, x25519(st.dhs_private, dh))


# -- Safety numbers (§7) ----------------------------------------------------------------------


def fingerprint_digits(
    aik_public: bytes, account: str, iterations: int = FINGERPRINT_ITERATIONS
) -> str:
    """One party's 30 digits: iterated SHA-512, then six 5-byte BE chunks mod 100000."""
    d = hashlib.sha512(FINGERPRINT_VERSION + aik_public + account.encode()).digest()
    for _ in range(iterations - 1):
        d = hashlib.sha512(d + aik_public).digest()
    chunks = (int.from_bytes(d[i * 5 : i * 5 + 5], "big") for i in range(FINGERPRINT_CHUNKS))
    return "".join(f"{chunk % 100000:05d}" for chunk in chunks)


def safety_number(
    local_aik_public: bytes,
    local_account: str,
    remote_aik_public: bytes,
    remote_account: str,
    iterations: int = FINGERPRINT_ITERATIONS,
) -> str:
    """The 60-digit safety number: both 30-digit strings, the smaller first."""
    local = fingerprint_digits(local_aik_public, local_account, iterations)
    remote = fingerprint_digits(remote_aik_public, remote_account, iterations)
    return min(local, remote) + max(local, remote)


# -- Sender keys (§13) ------------------------------------------------------------------------


def sender_key_header(group_id: bytes, chain_id: int, iteration: int) -> bytes:
    """header = msgpack.packb([group_id, chain_id, iteration], use_bin_type=True)."""
    return msgpack.packb([group_id, chain_id, iteration], use_bin_type=True)


def sender_key_signed_bytes(header: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    """What the signing key signs: b"e2e-proto/group/v1" || header || nonce || ciphertext."""
    return GROUP_SIGNATURE_PREFIX + header + nonce + ciphertext


def sender_key_message_key(chain_key: bytes, iteration: int) -> bytes:
    """The message key of ``iteration``, stepping KDF_CK forward from the chain key at 0."""
    for _ in range(iteration):
        chain_key, _ = kdf_ck(chain_key)
    return kdf_ck(chain_key)[1]


@dataclass(frozen=True)
class GroupMessage:
    """One sender-key message and the message key it used (exposed for test vectors)."""

    header: bytes
    nonce: bytes
    ciphertext: bytes
    signature: bytes
    message_key: bytes


def sender_key_encrypt(
    group_id: bytes,
    chain_id: int,
    chain_key: bytes,
    signing_seed: bytes,
    iteration: int,
    plaintext: bytes,
    nonce: bytes,
) -> GroupMessage:
    """The message at ``iteration`` of the chain whose chain key at iteration 0 is given."""
    message_key = sender_key_message_key(chain_key, iteration)
    header = sender_key_header(group_id, chain_id, iteration)
    ciphertext = aead_encrypt(message_key, nonce, plaintext, header)
    signature = ed25519_sign(signing_seed, sender_key_signed_bytes(header, nonce, ciphertext))
    return GroupMessage(header, nonce, ciphertext, signature, message_key)


@dataclass
class SenderKeyReceiver:
    """A receiver's copy of one chain: chain key at ``iteration`` and skipped message keys."""

    group_id: bytes
    chain_id: int
    chain_key: bytes
    signing_public: bytes
    iteration: int = 0
    skipped: dict[int, bytes] = field(default_factory=dict)

    def decrypt(self, header: bytes, nonce: bytes, ciphertext: bytes, signature: bytes) -> bytes:
        """Verify the signature first, then derive the key; state changes only on success."""
        fields = msgpack.unpackb(header, raw=False)
        if fields[:2] != [self.group_id, self.chain_id]:
            raise SpecError("not this chain")
        iteration = fields[2]
        if not ed25519_verify(
            self.signing_public, signature, sender_key_signed_bytes(header, nonce, ciphertext)
        ):
            raise SpecError("bad signature")
        if iteration < self.iteration:
            if iteration not in self.skipped:
                raise SpecError("replay")
            plaintext = aead_decrypt(self.skipped[iteration], nonce, ciphertext, header)
            del self.skipped[iteration]
            return plaintext
        if iteration - self.iteration > SENDER_KEY_MAX_AHEAD:
            raise SpecError("too far ahead")
        chain_key = self.chain_key
        skipped = dict(self.skipped)
        for index in range(self.iteration, iteration):
            chain_key, skipped[index] = kdf_ck(chain_key)
        for oldest in sorted(skipped)[: max(0, len(skipped) - SENDER_KEY_MAX_SKIPPED)]:
            del skipped[oldest]
        chain_key, message_key = kdf_ck(chain_key)
        plaintext = aead_decrypt(message_key, nonce, ciphertext, header)
        self.chain_key, self.iteration, self.skipped = chain_key, iteration + 1, skipped
        return plaintext
