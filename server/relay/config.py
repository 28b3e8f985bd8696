"""The relay's limits and timings: one dataclass, units in the names or docstrings."""

from __future__ import annotations

from dataclasses import dataclass

from e2e_proto.capabilities import CAPABILITIES, PRIVATE

from ..common.blobs import BlobLimits
from ..common.connection import ConnectionLimits

DAY = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class RelayConfig(ConnectionLimits):
    """Limits and timings of a relay (and the connection limits every server has)."""

    mailbox_ttl: float = 30 * DAY
    mailbox_quota: int = 10_000
    prekeys_low_watermark: int = 10
    max_one_time_prekeys: int = 1000
    account_requests_per_second: float = 400.0
    account_request_burst: int = 800
    bundles_per_minute: float = 120.0
    bundle_burst: int = 200
    connections_per_account: int = 20
    link_timeout: float = 600.0
    max_group_members: int = CAPABILITIES[PRIVATE].max_group_members
    """Members of a group's routing copy (the capability table's 1024)."""
    max_call_participants: int = CAPABILITIES[PRIVATE].group_call_participants
    """Devices in one call (the capability table's 8)."""
    max_calls: int = 10_000
    """Calls running at once, in all."""
    calls_per_account: int = 4
    """Calls one account may have started and still running."""
    blobs: BlobLimits = BlobLimits()
    """Size limit, quota per account and TTLs of the blob store."""
