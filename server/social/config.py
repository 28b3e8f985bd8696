"""The social server's limits and timings: one dataclass, units in the names or docstrings."""

from __future__ import annotations

from dataclasses import dataclass

import nacl.pwhash

from e2e_proto import social_api as api
from e2e_proto.unpack import UnpackLimits

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
    max_unauthenticated_frame_size: int = api.MAX_UNAUTHENTICATED_REQUEST_SIZE
    """The largest frame before login, in bytes: the largest ``register``."""
    max_one_time_prekeys: int = api.MAX_ONE_TIME_PREKEYS_PER_REQUEST
    """The most one-time prekeys one publish_prekeys may carry."""
    bundles_per_minute: float = 120.0
    bundle_burst: int = 200

    @property
    def request_limits(self) -> UnpackLimits:
        """What one request frame may hold, from ``social_api.request_limits``."""
        return api.request_limits(self.max_one_time_prekeys)
