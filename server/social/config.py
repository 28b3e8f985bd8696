"""The social server's limits and timings: one dataclass, units in the names or docstrings."""

from __future__ import annotations

from dataclasses import dataclass

import nacl.pwhash

from e2e_proto import social_api as api
from e2e_proto.capabilities import CAPABILITIES, SOCIAL
from e2e_proto.unpack import UnpackLimits

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
    max_unauthenticated_frame_size: int = api.MAX_UNAUTHENTICATED_REQUEST_SIZE
    """The largest frame before login, in bytes: the largest ``register``."""
    max_one_time_prekeys: int = api.MAX_ONE_TIME_PREKEYS_PER_REQUEST
    """The most one-time prekeys one publish_prekeys may carry."""
    bundles_per_minute: float = 120.0
    """Prekey bundles one account may fetch a minute, of all devices."""
    bundle_burst: int = 200
    max_call_participants: int = CAPABILITIES[SOCIAL].group_call_participants
    """Devices in one call (the capability table's 50)."""
    max_calls: int = 10_000
    """Calls running at once, in all."""
    calls_per_account: int = 4
    """Calls one account may have started and still running."""
    bundles_per_target_per_hour: float = 10.0
    """Bundles of one device one account may fetch an hour: each of its devices needs one per
    session with that device."""
    bundle_burst_per_target: int = 10
    one_time_prekeys_per_hour: float = 60.0
    """One-time prekeys handed out per device an hour, whoever asks; past it (and the burst) a
    bundle carries none, so draining a device takes hours and blocks no one's session."""
    one_time_prekey_burst: int = 20
    registrations_per_hour: float = 30.0
    """Accounts one source address may register an hour (an IPv6 /64)."""
    registration_burst: int = 30
    # Password guessing (docs/SOCIAL.md, "Logins"): a login spends a token of each of three
    # buckets before the password is checked and gives them back when it is right. The bucket
    # of one account at one address is smaller and slower than the account's, so one address
    # can never empty the account's: the owner, elsewhere, is never locked out by it.
    pair_login_failures_per_hour: float = 5.0
    """Failed logins to one account from one source address, an hour."""
    pair_login_failure_burst: int = 5
    account_login_failures_per_hour: float = 20.0
    """Failed logins to one account (or unknown name) from all addresses, an hour."""
    account_login_failure_burst: int = 20
    address_login_failures_per_hour: float = 30.0
    """Failed logins from one source address to all accounts, an hour."""
    address_login_failure_burst: int = 30
    blobs: BlobLimits = BlobLimits()
    """Size limit, quota per account and TTLs of the blob store."""

    @property
    def request_limits(self) -> UnpackLimits:
        """What one request frame may hold, from ``social_api.request_limits``."""
        return api.request_limits(self.max_one_time_prekeys)
