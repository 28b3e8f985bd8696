import hmac

import nacl.bindings
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from e2e_proto import primitives
from e2e_proto.errors import InvalidKeyError
from e2e_proto.primitives import (
    SHA512,
    hkdf_expand,
    hkdf_extract,
    hkdf_sha256,
    hmac_digest,
    hmac_sha256,
    hmac_sha256_pair,
)


@given(key=st.binary(max_size=100), first=st.binary(max_size=200),
       second=st.binary(max_size=200))
def test_hmac_pair_is_two_hmacs(key: bytes, first: bytes, second: bytes) -> None:
    """The hand-written shared-pad HMAC agrees with the standard library's (RFC 2104)."""
    assert hmac_sha256_pair(key, first, second) == (
        hmac.digest(key, first, "sha256"), hmac.digest(key, second, "sha256"))
    assert hmac_sha256(key, first) == hmac.digest(key, first, "sha256")


@given(salt=st.binary(max_size=100), ikm=st.binary(max_size=100), info=st.binary(max_size=100),
       length=st.integers(min_value=1, max_value=255 * 32))
def test_hkdf_agrees_with_pyca(salt: bytes, ikm: bytes, info: bytes, length: int) -> None:
    """HKDF over the shared-pad HMAC agrees with pyca/cryptography's RFC 5869 HKDF."""
    expected = HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)
    assert hkdf_sha256(salt, ikm, info, length) == expected


SMALL_ORDER_ED25519 = [bytes.fromhex(h) for h in (
    "0100000000000000000000000000000000000000000000000000000000000000",  # identity
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
)]
"""The Ed25519 points of small order (the list libsodium refuses), as docs/PROTOCOL.md §2 names."""


@pytest.mark.parametrize("point", SMALL_ORDER_ED25519)
def test_ed25519_to_x25519_refuses_small_order_points(point: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        primitives.ed25519_pk_to_x25519(point)


def test_ed25519_to_x25519_refuses_points_outside_the_prime_order_subgroup() -> None:
    public, _ = primitives.ed25519_keypair(bytes(range(32)))
    primitives.ed25519_pk_to_x25519(public)  # a point of the prime-order subgroup converts
    mixed = nacl.bindings.crypto_core_ed25519_add(public, SMALL_ORDER_ED25519[4])
    with pytest.raises(InvalidKeyError):
        primitives.ed25519_pk_to_x25519(mixed)


def test_ed25519_to_x25519_refuses_non_points_and_wrong_lengths() -> None:
    not_a_point = (2).to_bytes(32, "little")  # y = 2 gives no x on the curve
    for bad in (not_a_point, bytes(31), bytes(33)):
        with pytest.raises(InvalidKeyError):
            primitives.ed25519_pk_to_x25519(bad)
@given(key=st.binary(max_size=200), data=st.binary(max_size=300))
def test_hmac_sha512_agrees_with_stdlib(key: bytes, data: bytes) -> None:
    """The generic shared-pad HMAC over SHA-512 (128-byte block) agrees with ``hmac.digest``."""
    assert hmac_digest(key, data, SHA512) == hmac.digest(key, data, "sha512")


@given(salt=st.binary(max_size=200), ikm=st.binary(max_size=100), info=st.binary(max_size=100),
       length=st.integers(min_value=1, max_value=255 * 64))
def test_hkdf_sha512_agrees_with_pyca(salt: bytes, ikm: bytes, info: bytes, length: int) -> None:
    """HKDF-SHA512 extract + expand agrees with pyca/cryptography's RFC 5869 HKDF."""
    expected = HKDF(algorithm=hashes.SHA512(), length=length, salt=salt, info=info).derive(ikm)
    assert hkdf_expand(hkdf_extract(salt, ikm, SHA512), info, length, SHA512) == expected
