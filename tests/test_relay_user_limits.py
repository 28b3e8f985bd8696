"""The relay's users' limits contract: MemoryRelayLimits and RedisRelayLimits answer the same.

Each test runs once per store (the ``relay_db`` fixture): the limits of an SQLite store are in
memory, a Redis store's in Redis (a real ``redis-server``, emptied for the test). Covered:
registrations per source address (refused with the wait until the next, given back), bundles per
requester and per requester and target (a refused request counts nothing, whichever bucket
refused it; ``retry_after`` as the rates say), the one-time prekey budget per target (never
refuses), refilling over time, and, for Redis, that idle buckets expire and that a Redis that
cannot be reached makes the request ``unavailable``. That nodes share them:
tests/test_relay_cluster.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from e2e_proto import relay_api as api
from e2e_proto.address import Address
from server.common.requests import RequestError
from server.common.store_base import StoreUnavailableError
from server.relay import redis_keys
from server.relay.backends import open_backend
from server.relay.config import RelayConfig
from server.relay.limits import RelayLimits
from server.relay.redis_store import RedisRelayStore
from server.relay.store import RelayStore
from storage.redis_server import LocalRedis
from tests.relay_harness import store_url

CONFIG = RelayConfig(registrations_per_hour=6, registration_burst=2,
                     bundles_per_minute=6, bundle_burst=4,
                     bundles_per_target_per_hour=10, bundle_burst_per_target=2,
                     one_time_prekeys_per_hour=60, one_time_prekey_burst=3)
BOB = [Address("bob", i) for i in range(4)]


@pytest.fixture
async def store(relay_db: Path | str) -> AsyncIterator[RelayStore]:
    async with open_backend(store_url(relay_db)) as (opened, _hub):
        yield opened


@pytest.fixture
def limits(store: RelayStore) -> RelayLimits:
    return store.limits(CONFIG)


async def refusal(limits: RelayLimits, requester: str, targets: list[Address]) -> RequestError:
    """What refuses ``requester``'s bundles of ``targets``."""
    with pytest.raises(RequestError) as caught:
        await limits.admit_bundles(requester, targets, api.RATE_LIMITED)
    assert caught.value.code == api.RATE_LIMITED
    return caught.value


async def test_registrations_stop_at_the_burst_and_say_when(limits: RelayLimits) -> None:
    per_token = 3600 / CONFIG.registrations_per_hour
    for _ in range(CONFIG.registration_burst):
        assert await limits.take_registration("203.0.113.1") == 0
    wait = await limits.take_registration("203.0.113.1")
    assert per_token - 1 < wait <= per_token  # the time since the first take, less
    again = await limits.take_registration("203.0.113.1")
    assert wait - 1 < again <= wait  # the refusal took nothing
    assert await limits.take_registration("2001:db8::/64") == 0  # another source
    await limits.give_back_registration("203.0.113.1")
    assert await limits.take_registration("203.0.113.1") == 0
    assert await limits.take_registration("203.0.113.1") > 0


async def test_a_bundle_request_is_counted_whole_or_refused_whole(limits: RelayLimits) -> None:
    for _ in range(CONFIG.bundle_burst_per_target):
        assert await limits.admit_bundles("alice", BOB[:1], api.RATE_LIMITED) == {BOB[0]}
    refused = await refusal(limits, "alice", [BOB[1], BOB[0]])  # bob.0: none left this hour
    assert "too many bundles of bob.0" in str(refused)
    assert refused.details["retry_after"] == 3600 / CONFIG.bundles_per_target_per_hour
    # bob.1 and alice's own count were not taken: alice's last two bundles fit
    assert await limits.admit_bundles("alice", BOB[1:3], api.RATE_LIMITED) == set(BOB[1:3])
    refused = await refusal(limits, "alice", BOB[3:])  # alice has fetched her burst
    assert "too many prekey bundles fetched by this account" in str(refused)
    assert refused.details["retry_after"] == 60 / CONFIG.bundles_per_minute
    # nor was bob.3's one-time prekey budget: others get all of it
    got = [await limits.admit_bundles(requester, BOB[3:], api.RATE_LIMITED)
           for requester in ("carol", "dave") for _ in range(2)]
    assert got == [{BOB[3]}] * CONFIG.one_time_prekey_burst + [set()]


async def test_the_one_time_prekey_budget_is_per_target_and_never_refuses(
        limits: RelayLimits) -> None:
    with_opk = [BOB[0] in await limits.admit_bundles(f"user{i}", BOB[:1], api.RATE_LIMITED)
                for i in range(5)]
    assert with_opk == [True] * CONFIG.one_time_prekey_burst + [False] * 2
    assert await limits.admit_bundles("user9", BOB[:2], api.RATE_LIMITED) == {BOB[1]}


async def test_buckets_refill_at_their_rate(store: RelayStore) -> None:
    """Four registrations a second, two at once: a quarter of a second after the burst was
    spent there is room for one registration, and only one."""
    fast = store.limits(replace(CONFIG, registrations_per_hour=3600 * 4, registration_burst=2))
    for _ in range(2):
        assert await fast.take_registration("203.0.113.1") == 0
    wait = await fast.take_registration("203.0.113.1")
    assert 0 < wait <= 1 / 4
    await trio.sleep(wait)  # not synchronisation: the bucket counts real time (Redis's clock)
    assert await fast.take_registration("203.0.113.1") == 0
    assert await fast.take_registration("203.0.113.1") > 0


async def test_redis_buckets_expire_once_full_again(store: RelayStore) -> None:
    if not isinstance(store, RedisRelayStore):
        pytest.skip("the memory buckets are forgotten when full (tests/test_rate_limits.py)")
    limits = store.limits(CONFIG)
    await limits.take_registration("203.0.113.1")
    key = redis_keys.registrations_limit_key("203.0.113.1")
    assert 0 < await store.client.pttl(key) <= 3600_000 / CONFIG.registrations_per_hour
    await limits.give_back_registration("203.0.113.1")
    assert await store.client.exists([key]) == 0  # full: the same as no bucket
    await limits.admit_bundles("alice", BOB[:1], api.RATE_LIMITED)
    for key, full_in in ((redis_keys.bundles_limit_key("alice"), 60 / CONFIG.bundles_per_minute),
                         (redis_keys.target_limit_key("alice", BOB[0]),
                          3600 / CONFIG.bundles_per_target_per_hour),
                         (redis_keys.one_time_limit_key(BOB[0]),
                          3600 / CONFIG.one_time_prekeys_per_hour)):
        assert 0 < await store.client.pttl(key) <= full_in * 1000, key


async def test_an_unreachable_redis_makes_the_limits_unavailable(tmp_path: Path) -> None:
    redis = LocalRedis(tmp_path / "redis")
    try:
        async with open_backend(redis.url()) as (store, _hub):
            limits = store.limits(CONFIG)
            assert await limits.take_registration("203.0.113.1") == 0
            redis.kill()
            with pytest.raises(StoreUnavailableError):
                await limits.take_registration("203.0.113.1")
            with pytest.raises(StoreUnavailableError):
                await limits.give_back_registration("203.0.113.1")
            with pytest.raises(StoreUnavailableError):
                await limits.admit_bundles("alice", BOB[:1], api.RATE_LIMITED)
    finally:
        redis.kill()


async def test_more_bundles_at_once_than_the_burst_are_refused_without_a_wait(
        limits: RelayLimits) -> None:
    """More targets in one request than the requester's burst can never be had whole: the
    refusal says to ask for fewer, names no wait, and counts nothing."""
    targets = [Address("bob", i) for i in range(CONFIG.bundle_burst + 1)]
    refused = await refusal(limits, "alice", targets)
    assert "ask for fewer" in str(refused) and "retry_after" not in refused.details
    assert await limits.admit_bundles("alice", targets[:2], api.RATE_LIMITED) == set(targets[:2])
