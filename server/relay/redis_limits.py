"""The users' limits of the relay nodes on one Redis: :class:`~server.relay.limits.RelayLimits`
counted in Redis, once for all nodes.

Invariant: the token buckets of :mod:`shared.rate_limits`, with the same rates, bursts and
answers, kept in Redis and changed only by one script a request (``_BUCKETS`` in
:mod:`server.relay.redis_scripts`) at Redis's clock, so nodes whose clocks disagree count the
same; a bundle request's buckets are all checked before any is taken, in one script, so it is
counted whole or refused whole. A bucket expires once it is full again, so buckets of idle keys
(made-up addresses, names) vanish. Layout: :mod:`server.relay.redis_keys`.
"""

from __future__ import annotations

from collections.abc import Sequence

import coredis

from e2e_proto.address import Address

from ..common.bundle_limits import bundle_rates, too_many, too_many_of
from . import redis_keys as keys
from . import redis_scripts as scripts
from .config import RelayConfig
from .limits import registration_rate
from .redis_errors import unavailable


class RedisRelayLimits:
    """:class:`~server.relay.limits.RelayLimits` on a connected ``coredis`` client."""

    def __init__(self, client: coredis.Redis[bytes], config: RelayConfig) -> None:
        rates = bundle_rates(config)
        self._bundle_rates = [repr(float(n)) for rate in rates for n in rate]
        self._registration_rate = [repr(float(n)) for n in registration_rate(config)]
        self._admit = client.register_script(scripts.ADMIT_BUNDLES)
        self._take = client.register_script(scripts.TAKE_TOKENS)
        self._give_back = client.register_script(scripts.GIVE_BACK_TOKENS)

    @unavailable
    async def admit_bundles(self, requester: str, targets: Sequence[Address], code: str
                            ) -> set[Address]:
        """See :meth:`~server.relay.limits.RelayLimits.admit_bundles`."""
        outcome = await self._admit(
            [keys.bundles_limit_key(requester),
             *(keys.target_limit_key(requester, target) for target in targets),
             *(keys.one_time_limit_key(target) for target in targets)],
            [len(targets), *self._bundle_rates])
        if outcome[0] == b"target":
            raise too_many_of(targets[int(outcome[1]) - 1], code, float(outcome[2]))
        if outcome[0] == b"requester":
            raise too_many(code, float(outcome[1]))
        return {target for target, flag in zip(targets, outcome[1:], strict=True)
                if flag == b"1"}

    @unavailable
    async def take_registration(self, source: str) -> float:
        """See :meth:`~server.relay.limits.RelayLimits.take_registration`."""
        return float(await self._take([keys.registrations_limit_key(source)],
                                      [*self._registration_rate, 1]))

    @unavailable
    async def give_back_registration(self, source: str) -> None:
        """See :meth:`~server.relay.limits.RelayLimits.give_back_registration`."""
        await self._give_back([keys.registrations_limit_key(source)],
                              [*self._registration_rate, 1])
