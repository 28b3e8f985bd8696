"""The relay's limits and timings: one dataclass, units in the names or docstrings."""

from __future__ import annotations

from dataclasses import dataclass

from e2e_proto import relay_api as api
from e2e_proto.capabilities import CAPABILITIES, PRIVATE
from e2e_proto.unpack import UnpackLimits

from ..common.blobs import BlobLimits
from ..common.connection import ConnectionLimits

DAY = 24 * 3600.0
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RelayConfig(ConnectionLimits):
    """Limits and timings of a relay (and the connection limits every server has)."""

    mailbox_ttl: float = 30 * DAY
    mailbox_quota: int = 10_000
    """Messages kept per device mailbox."""
    mailbox_quota_bytes: int = 100 * MIB
    """Bytes of envelopes kept per device mailbox (the sum of their sizes)."""
    max_envelope_size: int = api.MAX_ENVELOPE_SIZE
    """The largest envelope stored, in bytes (at most ``relay_api.MAX_ENVELOPE_SIZE``)."""
    prekeys_low_watermark: int = 10
    max_one_time_prekeys: int = 1000
    account_requests_per_second: float = 400.0
    account_request_burst: int = 800
    bundles_per_minute: float = 120.0
    """Prekey bundles one account may fetch a minute, of all devices."""
    bundle_burst: int = 200
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
    connections_per_account: int = 20
    link_timeout: float = 600.0
    max_unauthenticated_frame_size: int = api.MAX_UNAUTHENTICATED_REQUEST_SIZE
    """The largest frame before authentication, in bytes: the largest ``link_request``."""
    max_pending_links: int = 256
    """New devices waiting, connected, for their primary's approval (``link_request``), overall."""
    max_pending_links_per_account: int = 16
    """Waiting new devices per account (an account links at most four)."""
    max_pending_links_per_address: int = 4
    """Waiting new devices per source address: a single address cannot fill an account's."""
    max_group_members: int = CAPABILITIES[PRIVATE].max_group_members
    """Members of a group's routing copy (the capability table's 1024)."""
    max_groups_per_account: int = 1000
    """Group routing copies one account may have created that are still stored (a copy goes
    away when its last member leaves); counted in the store, for every node."""
    max_call_participants: int = CAPABILITIES[PRIVATE].group_call_participants
    """Devices in one call (the capability table's 8)."""
    max_calls: int = 10_000
    """Calls running at once, in all."""
    calls_per_account: int = 4
    """Calls one account may have started and still running."""
    blobs: BlobLimits = BlobLimits()
    """Size limit, quota per account and TTLs of the blob store."""

    @property
    def request_limits(self) -> UnpackLimits:
        """What one request frame may hold: ``relay_api.REQUEST_LIMITS``."""
        return api.REQUEST_LIMITS
