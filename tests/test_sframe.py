"""SFrame (RFC 9605, suite 0x0005): the RFC's own vectors, an independent pyca computation of
keys, ratchet and frames, hypothesis round trips, tampering, unknown KIDs and exhausted counters.

The independent side (``_pyca_*``) is written from RFC 9605's text with pyca/cryptography's HKDF
and AES-GCM and its own copies of the labels; it shares no code with :mod:`e2e_proto`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.exceptions
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from e2e_proto import primitives
from e2e_proto.constants import (
    SFRAME_CIPHER_SUITE,
    SFRAME_KEPT_RATCHET_STEPS,
    SFRAME_KEY_LABEL,
    SFRAME_MAX_RATCHET_JUMP,
    SFRAME_SALT_LABEL,
)
from e2e_proto.errors import (
    CounterExhaustedError,
    DecryptionError,
    HardwareAESUnavailableError,
    LocalProtocolError,
    MalformedError,
    RemoteProtocolError,
    UnknownKeyIdError,
)
from e2e_proto.sframe import (
    ReceiverKeyring,
    SenderContext,
    decode_header,
    derive_key_salt,
    encode_header,
    ratchet_base_key,
    sender_key_kid,
    split_sender_key_kid,
)

# RFC 9605 Appendix C, from the working group's repository (sframe-wg/sframe), copied unchanged.
VECTORS = json.loads((Path(__file__).parent / "vectors" / "sframe-rfc9605.json").read_text())
U64 = st.integers(min_value=0, max_value=2**64 - 1)


# -- The independent side: RFC 9605 §4.4 and §5.1 with pyca/cryptography ----------------------

_PYCA_SUITE = (5).to_bytes(2, "big")  # AES_256_GCM_SHA512_128


def _pyca_hkdf(base_key: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand(HKDF-Extract("", base_key), info, length) over SHA-512."""
    return HKDF(algorithm=hashes.SHA512(), length=length, salt=None, info=info).derive(base_key)


def _pyca_key_salt(base_key: bytes, kid: int) -> tuple[bytes, bytes]:
    suffix = kid.to_bytes(8, "big") + _PYCA_SUITE
    return (_pyca_hkdf(base_key, b"SFrame 1.0 Secret key " + suffix, 32),
            _pyca_hkdf(base_key, b"SFrame 1.0 Secret salt " + suffix, 12))


def _pyca_ratchet(base_key: bytes) -> bytes:
    return _pyca_hkdf(base_key, b"SFrame 1.0 Ratchet", 64)


def _pyca_open(base_key: bytes, sframe: bytes, metadata: bytes) -> tuple[int, int, bytes]:
    """(KID, CTR, frame), the header parsed by hand from the RFC's figure 4."""
    config = sframe[0]
    pos = 1
    values = []
    for field in (config >> 4, config & 0xF):
        if field & 0x8:
            size = (field & 0x7) + 1
            values.append(int.from_bytes(sframe[pos:pos + size], "big"))
            pos += size
        else:
            values.append(field)
    kid, ctr = values
    key, salt = _pyca_key_salt(base_key, kid)
    nonce = bytes(a ^ b for a, b in zip(salt, ctr.to_bytes(12, "big"), strict=True))
    return kid, ctr, AESGCM(key).decrypt(nonce, sframe[pos:], sframe[:pos] + metadata)


# -- RFC 9605 Appendix C vectors --------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["header"],
                         ids=lambda case: f"kid{case['kid']:x}-ctr{case['ctr']:x}")
def test_header_vectors(case: dict[str, Any]) -> None:
    encoded = bytes.fromhex(case["encoded"])
    assert encode_header(case["kid"], case["ctr"]) == encoded
    assert decode_header(encoded + b"payload") == (case["kid"], case["ctr"], len(encoded))


def test_header_vectors_cover_every_form() -> None:
    """The file's headers include all four forms of figure 4 and both 8-byte extremes."""
    configs = {bytes.fromhex(case["encoded"])[0] & 0x88 for case in VECTORS["header"]}
    assert configs == {0x00, 0x08, 0x80, 0x88}
    assert len(VECTORS["header"]) == 289


@pytest.mark.parametrize("case", VECTORS["sframe"],
                         ids=lambda case: f"suite{case['cipher_suite']}")
def test_sframe_vectors(case: dict[str, Any]) -> None:
    if case["cipher_suite"] != SFRAME_CIPHER_SUITE:
        pytest.skip(f"cipher suite {case['cipher_suite']}: we implement only 0x0005 "
                    "(AES_256_GCM_SHA512_128, DESIGN §15)")
    base_key, kid, ctr = bytes.fromhex(case["base_key"]), case["kid"], case["ctr"]
    metadata, frame = bytes.fromhex(case["metadata"]), bytes.fromhex(case["pt"])
    suffix = kid.to_bytes(8, "big") + SFRAME_CIPHER_SUITE.to_bytes(2, "big")
    assert SFRAME_KEY_LABEL + suffix == bytes.fromhex(case["sframe_key_label"])
    assert SFRAME_SALT_LABEL + suffix == bytes.fromhex(case["sframe_salt_label"])
    secret = primitives.hkdf_extract(b"", base_key, primitives.SHA512)
    assert secret == bytes.fromhex(case["sframe_secret"])
    assert derive_key_salt(base_key, kid) == (bytes.fromhex(case["sframe_key"]),
                                              bytes.fromhex(case["sframe_salt"]))

    sealed = SenderContext(base_key, kid, counter=ctr).encrypt(frame, metadata)
    assert sealed == bytes.fromhex(case["ct"])
    header, ciphertext = SenderContext(base_key, kid, counter=ctr).encrypt_parts(frame, metadata)
    assert header + ciphertext == sealed and header == encode_header(kid, ctr)
    header_length = decode_header(sealed)[2]
    assert sealed[:header_length] + metadata == bytes.fromhex(case["aad"])

    keyring = ReceiverKeyring()
    keyring.add(kid, base_key)
    assert keyring.decrypt(sealed, metadata) == frame


# -- Header codec -----------------------------------------------------------------------------


@given(kid=U64, ctr=U64, tail=st.binary(max_size=8))
def test_header_round_trip(kid: int, ctr: int, tail: bytes) -> None:
    header = encode_header(kid, ctr)
    assert decode_header(header + tail) == (kid, ctr, len(header))
    assert len(header) == 1 + (kid >= 8) * -(-kid.bit_length() // 8) + (
        ctr >= 8) * -(-ctr.bit_length() // 8)


@given(data=st.binary(min_size=1, max_size=20))
def test_header_decoding_is_canonical(data: bytes) -> None:
    """Whatever decodes is the one minimal header of its (KID, CTR); the rest is refused."""
    try:
        kid, ctr, length = decode_header(data)
    except MalformedError:
        return
    assert encode_header(kid, ctr) == data[:length]


@pytest.mark.parametrize("data", [
    b"",                                # nothing
    bytes([0x80]),                      # KID of 1 byte announced, absent
    bytes([0xF0]) + bytes(7),           # KID of 8 bytes announced, 7 present
    bytes([0x0F]) + b"\xff" * 7,        # CTR of 8 bytes announced, 7 present
    bytes([0x80, 0x05]),                # KID 5 written out: it belongs in the config byte
    bytes([0x08, 0x00]),                # CTR 0 written out
    bytes([0x90, 0x00, 0x08]),          # KID 8 in two bytes, with a leading zero
    bytes([0x09, 0x00, 0xFF]),          # CTR 255 in two bytes
], ids=["empty", "kid-absent", "kid-short", "ctr-short", "kid-small", "ctr-small",
        "kid-leading-zero", "ctr-leading-zero"])
def test_malformed_headers(data: bytes) -> None:
    with pytest.raises(MalformedError):
        decode_header(data)


@pytest.mark.parametrize("kid, ctr", [(-1, 0), (0, -1), (2**64, 0), (0, 2**64), (True, 0)])
def test_header_values_out_of_range(kid: int, ctr: int) -> None:
    with pytest.raises(LocalProtocolError):
        encode_header(kid, ctr)


# -- Frames -----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(base_key=st.binary(min_size=16, max_size=64), kid=U64,
       ctr=st.integers(min_value=0, max_value=2**64 - 2),
       frames=st.lists(st.binary(max_size=300), min_size=1, max_size=3),
       metadata=st.binary(max_size=40))
def test_frames_round_trip_and_match_pyca(base_key: bytes, kid: int, ctr: int,
                                          frames: list[bytes], metadata: bytes) -> None:
    """Our frames open with the independent pyca computation, and with our keyring."""
    sender = SenderContext(base_key, kid, counter=min(ctr, 2**64 - len(frames)))
    keyring = ReceiverKeyring()
    keyring.add(kid, base_key)
    for frame in frames:
        expected_ctr = sender.counter
        sealed = sender.encrypt(frame, metadata)
        assert len(sealed) == len(encode_header(kid, expected_ctr)) + len(frame) + 16
        assert _pyca_open(base_key, sealed, metadata) == (kid, expected_ctr, frame)
        assert keyring.decrypt(sealed, metadata) == frame


def test_counter_counts_up_and_every_nonce_differs() -> None:
    sender = SenderContext(bytes(range(32)), kid=3)
    headers = [decode_header(sender.encrypt(b"frame"))[:2] for _ in range(20)]
    assert headers == [(3, ctr) for ctr in range(20)]
    assert sender.counter == 20


def _sealed_pair() -> tuple[ReceiverKeyring, bytes, bytes]:
    base_key = bytes(range(32))
    keyring = ReceiverKeyring()
    keyring.add(0x1234, base_key)
    return keyring, SenderContext(base_key, 0x1234, 77).encrypt(b"a video frame", b"meta"), b"meta"


def test_every_bit_flip_is_refused() -> None:
    """Header, ciphertext or tag: any flipped bit is refused, and the keyring stays as it was."""
    keyring, sealed, metadata = _sealed_pair()
    for bit in range(8 * len(sealed)):
        tampered = bytearray(sealed)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(RemoteProtocolError):
            keyring.decrypt(bytes(tampered), metadata)
        assert keyring.kids == (0x1234,)
    assert keyring.decrypt(sealed, metadata) == b"a video frame"


def test_other_metadata_truncation_and_extension_are_refused() -> None:
    keyring, sealed, metadata = _sealed_pair()
    with pytest.raises(DecryptionError):
        keyring.decrypt(sealed, b"other")
    with pytest.raises(DecryptionError):
        keyring.decrypt(sealed[:-1], metadata)
    with pytest.raises(DecryptionError):
        keyring.decrypt(sealed + b"\x00", metadata)
    header_length = decode_header(sealed)[2]
    with pytest.raises(MalformedError):
        keyring.decrypt(sealed[:header_length + 15], metadata)


def test_unknown_and_removed_kids() -> None:
    keyring, sealed, metadata = _sealed_pair()
    with pytest.raises(UnknownKeyIdError):
        ReceiverKeyring().decrypt(sealed, metadata)
    keyring.remove(0x1234)
    keyring.remove(0x1234)  # absent: nothing to do
    assert keyring.kids == ()
    with pytest.raises(UnknownKeyIdError):
        keyring.decrypt(sealed, metadata)


def test_bad_base_keys_and_counters_are_refused() -> None:
    for base_key in (b"", bytes(15), bytes(65), bytearray(32)):
        with pytest.raises(LocalProtocolError):
            SenderContext(base_key, 0)  # type: ignore[arg-type]
        with pytest.raises(LocalProtocolError):
            ReceiverKeyring().add(0, base_key)  # type: ignore[arg-type]
    for counter in (-1, 2**64 + 1):
        with pytest.raises(LocalProtocolError):
            SenderContext(bytes(32), 0, counter)


def test_counter_exhaustion() -> None:
    """CTR 2**64-1 is the last one; then encrypt refuses and changes nothing."""
    base_key = bytes(range(32))
    sender = SenderContext(base_key, kid=9, counter=2**64 - 1)
    last = sender.encrypt(b"last frame")
    assert decode_header(last)[:2] == (9, 2**64 - 1)
    assert _pyca_open(base_key, last, b"")[2] == b"last frame"
    for _ in range(2):
        with pytest.raises(CounterExhaustedError):
            sender.encrypt(b"one too many")
        assert sender.counter == 2**64
    sender.ratchet()  # a new key has all its counters again
    assert sender.counter == 0
    assert decode_header(sender.encrypt(b"fresh"))[:2] == (sender.kid, 0)


def test_missing_hardware_aes_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyNaCl refuses AES-256-GCM with UnavailableError on a CPU without AES: we name it."""

    def unavailable(*args: object) -> bytes:
        raise nacl.exceptions.UnavailableError("Construction requires hardware acceleration")

    monkeypatch.setattr(nacl.bindings, "crypto_aead_aes256gcm_encrypt", unavailable)
    primitives.require_hardware_aes.cache_clear()
    try:
        with pytest.raises(HardwareAESUnavailableError, match="hardware AES"):
            SenderContext(bytes(32), 0)
        with pytest.raises(HardwareAESUnavailableError, match="hardware AES"):
            ReceiverKeyring()
    finally:
        monkeypatch.undo()
        primitives.require_hardware_aes.cache_clear()
    SenderContext(bytes(32), 0)


# -- Sender keys and the ratchet (RFC 9605 §5.1, R = 8) ---------------------------------------


@given(generation=st.integers(min_value=0, max_value=2**56 - 1),
       step=st.integers(min_value=0, max_value=10**6))
def test_sender_key_kid_layout(generation: int, step: int) -> None:
    """KID = (key_generation << R) + (ratchet_step % (1 << R)) with R = 8 (RFC 9605 figure 7)."""
    kid = sender_key_kid(generation, step)
    assert kid == generation * 256 + step % 256
    assert split_sender_key_kid(kid) == (generation, step % 256)


@pytest.mark.parametrize("generation, step", [(-1, 0), (2**56, 0), (0, -1), (True, 0)])
def test_sender_key_kid_bounds(generation: int, step: int) -> None:
    with pytest.raises(LocalProtocolError):
        sender_key_kid(generation, step)


@settings(max_examples=30, deadline=None)
@given(base_key=st.binary(min_size=16, max_size=64))
def test_ratchet_matches_pyca(base_key: bytes) -> None:
    once = ratchet_base_key(base_key)
    assert once == _pyca_ratchet(base_key)
    assert ratchet_base_key(once) == _pyca_ratchet(_pyca_ratchet(base_key))
    assert derive_key_salt(once, 0x0501) == _pyca_key_salt(once, 0x0501)


def test_sender_ratchet_is_the_rfc_ratchet() -> None:
    """After n ratchets: base key = ratchet^n (pyca), KID = gen << 8 | n, frames open in pyca."""
    sender = SenderContext(bytes(range(32)), sender_key_kid(7, 0))
    expected = bytes(range(32))
    for step in range(1, 4):
        sender.ratchet()
        expected = _pyca_ratchet(expected)
        assert sender.base_key == expected
        assert sender.kid == (7 << 8) | step
        sealed = sender.encrypt(b"after ratchet", b"m")
        assert _pyca_open(expected, sealed, b"m") == ((7 << 8) | step, 0, b"after ratchet")


def test_ratchet_step_wraps_within_the_generation() -> None:
    sender = SenderContext(bytes(32), sender_key_kid(2, 255))
    keyring = ReceiverKeyring()
    keyring.add(sender.kid, sender.base_key)
    sender.ratchet()
    assert split_sender_key_kid(sender.kid) == (2, 0)
    assert keyring.decrypt(sender.encrypt(b"wrapped")) == b"wrapped"


def test_generate_uses_the_random_source() -> None:
    sender = SenderContext.generate(key_generation=3, random=lambda n: b"\x42" * n)
    assert sender.base_key == b"\x42" * 32
    assert sender.kid == 3 << 8


def test_receiver_follows_the_sender_ratchet() -> None:
    """A receiver holding step 0 follows a jump past the kept window, keeps the skipped steps
    just behind the new one for late frames, and drops what falls further behind."""
    sender = SenderContext(bytes(range(32)), sender_key_kid(1, 0))
    keyring = ReceiverKeyring()
    keyring.add(sender.kid, sender.base_key)
    sealed = {0: sender.encrypt(b"step 0")}
    jump = SFRAME_KEPT_RATCHET_STEPS + 1
    for step in range(1, jump + 1):
        sender.ratchet()
        sealed[step] = sender.encrypt(f"step {step}".encode())
    assert keyring.decrypt(sealed[jump]) == f"step {jump}".encode()
    assert keyring.kids == tuple(sender_key_kid(1, step) for step in range(1, jump + 1))
    for step in range(1, jump):
        assert keyring.decrypt(sealed[step]) == f"step {step}".encode()
    with pytest.raises(UnknownKeyIdError):
        keyring.decrypt(sealed[0])


def test_receiver_ratchet_window_and_forgeries() -> None:
    """Beyond the jump window the KID is unknown; a forged frame ahead changes nothing."""
    base_key = bytes(range(32))
    keyring = ReceiverKeyring()
    keyring.add(sender_key_kid(0, 0), base_key)
    far = SenderContext(base_key, sender_key_kid(0, 0))
    for _ in range(SFRAME_MAX_RATCHET_JUMP + 1):
        far.ratchet()
    with pytest.raises(UnknownKeyIdError):
        keyring.decrypt(far.encrypt(b"too far"))
    forged = SenderContext(bytes(32), sender_key_kid(0, 1)).encrypt(b"forged")
    with pytest.raises(DecryptionError):
        keyring.decrypt(forged)
    assert keyring.kids == (0,)
    other_generation = SenderContext(base_key, sender_key_kid(1, 1)).encrypt(b"new key?")
    with pytest.raises(UnknownKeyIdError):
        keyring.decrypt(other_generation)
