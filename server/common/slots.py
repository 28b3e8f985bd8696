"""Counted places with caps, overall and per key (unauthenticated connections, pending links),
and the source address that per-address caps and rate limits count.

Invariant: :meth:`Slots.take` never lets a count pass its cap; every place taken is given back
exactly once by its holder.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Hashable


def source_of(peer: str) -> str:
    """What per-address limits count for ``peer`` (``"host:port"``): the host, or for IPv6 its
    /64 network (one subscriber's usual allocation). A peer that is not an address counts as
    itself."""
    host = peer.rpartition(":")[0] or peer
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return host


class Slots:
    """At most ``total`` places overall and ``caps[kind]`` for any one key of each kind."""

    def __init__(self, total: int, **caps: int) -> None:
        self.total = total
        self.caps = caps
        self.held = 0
        self._counts: dict[str, Counter[Hashable]] = {kind: Counter() for kind in caps}

    def take(self, **keys: Hashable) -> str | None:
        """Take a place for these keys (one per kind); the first cap that is full ("total" or
        a kind) and nothing taken, or None when the place is taken."""
        if self.held >= self.total:
            return "total"
        for kind, key in keys.items():
            if self._counts[kind][key] >= self.caps[kind]:
                return kind
        self.held += 1
        for kind, key in keys.items():
            self._counts[kind][key] += 1
        return None

    def give_back(self, **keys: Hashable) -> None:
        """Give back a place taken with the same keys."""
        self.held -= 1
        for kind, key in keys.items():
            counts = self._counts[kind]
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]  # no key is kept once its count is back to zero
