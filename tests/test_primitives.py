import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

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
