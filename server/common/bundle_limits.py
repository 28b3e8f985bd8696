"""How many prekey bundles and one-time prekeys a server hands out, against draining a
device's one-time prekeys (the relay's and the social server's ``fetch_bundles``).

Invariant: a request is counted whole or refused whole (nothing counted); past a device's
one-time prekey budget its bundle carries no one-time prekey (X3DH without DH4, as when a
device has run out), so that a drainer gets no more and no one is refused a session.

:class:`BundleLimits` counts in one process's memory (the social server; a relay on SQLite);
relay nodes on one Redis count the same buckets there, for all nodes
(:mod:`server.relay.redis_limits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from e2e_proto.address import Address
from shared.rate_limits import Rate, TokenBuckets

from .requests import RequestError, retry_later

HOUR = 3600.0


class BundleLimitsConfig(Protocol):
    """The fields of a server's config that :class:`BundleLimits` reads."""

    @property
    def bundles_per_minute(self) -> float:
        """Bundles one account may fetch a minute, of all devices."""
        ...

    @property
    def bundle_burst(self) -> int:
        """... and at once."""
        ...

    @property
    def bundles_per_target_per_hour(self) -> float:
        """Bundles of one device one account may fetch an hour."""
        ...

    @property
    def bundle_burst_per_target(self) -> int:
        """... and at once."""
        ...

    @property
    def one_time_prekeys_per_hour(self) -> float:
        """One-time prekeys handed out per device an hour, whoever asks."""
        ...

    @property
    def one_time_prekey_burst(self) -> int:
        """... and at once."""
        ...


class BundleRates(NamedTuple):
    """The rates of :class:`BundleLimits`' three kinds of token bucket."""

    requester: Rate
    """Bundles per requesting account."""
    target: Rate
    """Bundles per requesting account and target device."""
    one_time: Rate
    """One-time prekeys per target device."""


def bundle_rates(config: BundleLimitsConfig) -> BundleRates:
    """What ``config`` allows, per kind of bucket."""
    return BundleRates(Rate(config.bundles_per_minute / 60, config.bundle_burst),
                       Rate(config.bundles_per_target_per_hour / HOUR,
                            config.bundle_burst_per_target),
                       Rate(config.one_time_prekeys_per_hour / HOUR,
                            config.one_time_prekey_burst))


def too_many_of(target: Address, code: str, wait: float) -> RequestError:
    """The refusal of a request for a bundle of ``target`` that the requester had too many
    of lately."""
    return retry_later(code, f"too many bundles of {target} fetched by this account", wait)


def too_many(code: str, wait: float) -> RequestError:
    """The refusal of a request for more bundles than the requester may have now."""
    return retry_later(code, "too many prekey bundles fetched by this account", wait)


class BundleLimits:
    """Token buckets per requesting account, per requesting account and target device, and
    of one-time prekeys per target device, in this process's memory."""

    def __init__(self, config: BundleLimitsConfig) -> None:
        rates = bundle_rates(config)
        self._requesters = TokenBuckets[str](*rates.requester)
        self._targets = TokenBuckets[tuple[str, Address]](*rates.target)
        self._one_time = TokenBuckets[Address](*rates.one_time)

    def admit(self, requester: str, targets: Sequence[Address], code: str) -> set[Address]:
        """Count ``requester``'s bundles of ``targets``: the targets whose bundle may carry a
        one-time prekey. :class:`~server.common.requests.RequestError` ``code`` (the API's
        ``rate_limited``, with ``retry_after``), nothing counted, when ``requester`` may not
        have them now."""
        for target in targets:
            wait = self._targets.retry_after((requester, target))
            if wait:
                raise too_many_of(target, code, wait)
        if not self._requesters.take(requester, len(targets)):
            raise too_many(code, self._requesters.retry_after(requester, len(targets)))
        for target in targets:
            self._targets.take((requester, target))
        return {target for target in targets if self._one_time.take(target)}
