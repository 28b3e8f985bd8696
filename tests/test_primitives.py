import hmac

from hypothesis import given
from hypothesis import strategies as st

from e2e_proto.primitives import hmac_sha256, hmac_sha256_pair


@given(key=st.binary(max_size=100), first=st.binary(max_size=200),
       second=st.binary(max_size=200))
def test_hmac_pair_is_two_hmacs(key: bytes, first: bytes, second: bytes) -> None:
    """The hand-written shared-pad HMAC agrees with the standard library's (RFC 2104)."""
    assert hmac_sha256_pair(key, first, second) == (
        hmac.digest(key, first, "sha256"), hmac.digest(key, second, "sha256"))
    assert hmac_sha256(key, first) == hmac.digest(key, first, "sha256")
