"""What a store keeps of a session token (a social device's, an inbox agent's cookie).

Invariant: only the token's SHA-256 is stored, so a copy of the database opens no session;
the token itself is random and long enough that its hash needs no salt or slow hashing.
"""

from __future__ import annotations

import hashlib


def token_hash(token: bytes) -> bytes:
    """What is stored of ``token``: its SHA-256."""
    return hashlib.sha256(token).digest()
