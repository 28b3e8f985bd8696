"""The social server's limits and timings: one dataclass, units in the names or docstrings."""

from __future__ import annotations

from dataclasses import dataclass

import nacl.pwhash

from e2e_proto import social_api as api
from e2e_proto.capabilities import CAPABILITIES, SOCIAL

from ..common.blobs import BlobLimits
from ..common.connection import ConnectionLimits

DAY = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class SocialConfig(ConnectionLimits):
    """Limits and timings of a social server (and the connection limits every server has).

    Passwords are hashed with Argon2id at ``password_opslimit``/``password_memlimit``
    (libsodium's INTERACTIVE limits by default; tests use the MIN limits to stay fast).
    """

    token_ttl: float = 30 * DAY
    max_text_bytes: int = api.MAX_TEXT_BYTES
    password_opslimit: int = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
    password_memlimit: int = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
    hashing_threads: int = 2
    max_one_time_prekeys: int = 200
    bundles_per_minute: float = 120.0
    bundle_burst: int = 200
    max_call_participants: int = CAPABILITIES[SOCIAL].group_call_participants
    """Devices in one call (the capability table's 50)."""
    max_calls: int = 10_000
    """Calls running at once, in all."""
    calls_per_account: int = 4
    """Calls one account may have started and still running."""
    blobs: BlobLimits = BlobLimits()
    """Size limit, quota per account and TTLs of the blob store."""
