"""Safety numbers: Signal's numeric fingerprint, version 0, over account identity keys.

See DESIGN §7; the inputs are account names and account identity keys (AIKs).
"""

from __future__ import annotations

from .constants import FINGERPRINT_ITERATIONS, FINGERPRINT_VERSION
from .keys import Ed25519PublicKey
from .primitives import sha512

_CHUNKS = 6
_CHUNK_BYTES = 5


def displayable_fingerprint(account: str, identity_key: Ed25519PublicKey) -> str:
    """One party's 30 digits: iterated SHA-512, then six 5-byte chunks, each mod 100000."""
    key = identity_key.raw
    digest = sha512(FINGERPRINT_VERSION.to_bytes(2, "big") + key + account.encode())
    for _ in range(FINGERPRINT_ITERATIONS - 1):
        digest = sha512(digest + key)
    return "".join(
        f"{int.from_bytes(digest[i:i + _CHUNK_BYTES], 'big') % 100000:05d}"
        for i in range(0, _CHUNKS * _CHUNK_BYTES, _CHUNK_BYTES)
    )


def safety_number(local_account: str, local_key: Ed25519PublicKey,
                  remote_account: str, remote_key: Ed25519PublicKey) -> str:
    """The 60-digit number both parties see: the two 30-digit halves, the smaller first."""
    halves = sorted((displayable_fingerprint(local_account, local_key),
                     displayable_fingerprint(remote_account, remote_key)))
    return "".join(halves)


def format_safety_number(number: str) -> str:
    """Groups of five digits separated by spaces, as shown to users."""
    return " ".join(number[i:i + 5] for i in range(0, len(number), 5))
