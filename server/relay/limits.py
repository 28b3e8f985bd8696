"""The relay's limits that protect users, not a process: registrations per source address and
the prekey bundles and one-time prekeys handed out (:mod:`server.common.bundle_limits`).

Invariant: they are counted once for every relay process on one store, so that N nodes allow
what one does: each store gives its own (:meth:`~server.relay.store.RelayStore.limits`), in this
process's memory for an SQLite store (:class:`MemoryRelayLimits`, one process) and in Redis for
the nodes of a Redis store (:class:`~server.relay.redis_limits.RedisRelayLimits`). A refused
request has counted nothing. The limits that protect one process (request rates, connections,
pending links per address, calls) stay in each node's memory (:class:`~server.relay.server.
Relay`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from e2e_proto.address import Address
from shared.rate_limits import Rate, TokenBuckets

from ..common.bundle_limits import HOUR, BundleLimits
from .config import RelayConfig


def registration_rate(config: RelayConfig) -> Rate:
    """How many accounts one source address may register."""
    return Rate(config.registrations_per_hour / HOUR, config.registration_burst)


class RelayLimits(Protocol):
    """Token buckets counted for every relay on one store; a Redis failure is
    :class:`~server.common.store_base.StoreUnavailableError` (nothing counted)."""

    async def admit_bundles(self, requester: str, targets: Sequence[Address], code: str
                            ) -> set[Address]:
        """:meth:`BundleLimits.admit <server.common.bundle_limits.BundleLimits.admit>`: count
        ``requester``'s bundles of ``targets`` (all or, refused with ``code``, none) and answer
        the targets whose bundle may carry a one-time prekey."""
        ...

    async def take_registration(self, source: str) -> float:
        """Count a registration from ``source``: 0, or (nothing counted) the seconds until one
        may be counted."""
        ...

    async def give_back_registration(self, source: str) -> None:
        """Uncount a registration from ``source`` that did not happen after all."""
        ...


class MemoryRelayLimits:
    """:class:`RelayLimits` in this process's memory (a relay that is the only process on its
    store)."""

    def __init__(self, config: RelayConfig) -> None:
        self._bundles = BundleLimits(config)
        self._registrations = TokenBuckets[str](*registration_rate(config))

    async def admit_bundles(self, requester: str, targets: Sequence[Address], code: str
                            ) -> set[Address]:
        """See :meth:`RelayLimits.admit_bundles`."""
        return self._bundles.admit(requester, targets, code)

    async def take_registration(self, source: str) -> float:
        """See :meth:`RelayLimits.take_registration`."""
        if self._registrations.take(source):
            return 0.0
        return self._registrations.retry_after(source)

    async def give_back_registration(self, source: str) -> None:
        """See :meth:`RelayLimits.give_back_registration`."""
        self._registrations.give_back(source)
