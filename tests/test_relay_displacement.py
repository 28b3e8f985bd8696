"""Displacement between relay nodes on one Redis, driven step by step: whatever the order in
which two nodes subscribe, claim a device and hear each other's claims, and whatever a node
missed while its subscriber was lost, the connection that claimed last is the one kept.

Two relays run in this process on one emptied ``redis-server``; stand-ins for connections
(:class:`Held`) join them as a device's connection does once authenticated
(:meth:`~server.relay.server.Relay.join`). A node's claim is held between its steps with
:class:`trio.Event`, never by waiting for time to pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import coredis
import pytest
import trio
from coredis.tokens import PureToken

from e2e_proto.address import Address
from server.relay.hub import DISPLACED, DeviceEvent
from server.relay.redis_hub import RedisHub
from server.relay.server import Relay
from storage.redis_server import LocalRedis
from tests.relay_harness import start_relay

BOB = Address("bob", 0)


class Held:
    """A stand-in for one authenticated connection: it records being closed."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.claim: int | None = None  # set by the relay it joins
        self.closed = trio.Event()

    def close_after_pushes(self) -> None:
        self.closed.set()

    def wake(self, handed: object = None) -> None:
        """New mail: nothing to read here."""

    def push(self, frame: dict[str, Any]) -> None:
        """A notice: nothing to show here."""


async def two_nodes(nursery: trio.Nursery, redis_server: LocalRedis) -> tuple[Relay, Relay]:
    redis_server.flush()
    first = await start_relay(nursery, redis_server.url())
    second = await start_relay(nursery, redis_server.url())
    return first.server, second.server


def displacements(relay: Relay) -> trio.MemoryReceiveChannel[Any]:
    """What ``relay`` hears of newer connections on other nodes, in order."""
    heard_send, heard = trio.open_memory_channel[Any](100)
    hear = relay.hear

    def recording(address: Address, event: DeviceEvent) -> None:
        hear(address, event)
        if event.kind == DISPLACED:
            heard_send.send_nowait((address, event.detail))

    relay.hear = recording  # type: ignore[method-assign]
    return heard


def hold_claim(relay: Relay, *, before_it_runs: bool) -> tuple[trio.Event, trio.Event]:
    """Hold ``relay``'s next claim of a device, before Redis runs it or after (its answer not
    yet back): returns (held, release)."""
    hub = relay.hub
    assert isinstance(hub, RedisHub)
    claim = hub._claim
    held, release = trio.Event(), trio.Event()

    async def holding(*args: Any, **kwargs: Any) -> Any:
        hub._claim = claim  # type: ignore[method-assign]
        if before_it_runs:
            held.set()
            await release.wait()
            return await claim(*args, **kwargs)
        answer = await claim(*args, **kwargs)
        held.set()
        await release.wait()
        return answer

    hub._claim = holding  # type: ignore[method-assign]
    return held, release


@pytest.mark.parametrize("second_claims", ["last", "first"])
async def test_two_nodes_claiming_a_device_at_once_keep_the_last_claim(
        nursery: trio.Nursery, redis_server: LocalRedis, second_claims: str) -> None:
    """Both nodes subscribe to bob's channel before either claims him; each hears the other's
    claim, one of them before its own claim has answered. Only the connection whose claim Redis
    ran first is closed: the other one stays (before claim generations, a node that heard a
    claim while its own was on its way closed its new connection, and both were lost)."""
    first, second = await two_nodes(nursery, redis_server)
    heard_first, heard_second = displacements(first), displacements(second)
    on_first, on_second = Held("on the first node"), Held("on the second node")
    held, release = hold_claim(second, before_it_runs=second_claims == "last")
    with trio.fail_after(10):
        async with trio.open_nursery() as joining:
            joining.start_soon(second.join, BOB, on_second)
            await held.wait()  # the second node subscribed (and, claiming first, claimed)
            await first.join(BOB, on_first)  # subscribes and claims, heard by the second node
            assert (await heard_second.receive())[0] == BOB  # while its own claim is on its way
            release.set()
        if second_claims == "last":
            assert (await heard_first.receive())[0] == BOB
            assert on_first.closed.is_set() and not on_second.closed.is_set()
        else:
            assert on_second.closed.is_set() and not on_first.closed.is_set()


class HeldSubscriber:
    """A node's Redis client whose next subscriber connection waits for :attr:`release`."""

    def __init__(self, client: coredis.Redis[bytes]) -> None:
        self._client = client
        self.waiting = trio.Event()
        """Set once the node tries to subscribe again."""
        self.release = trio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    @contextlib.asynccontextmanager
    async def pubsub(self, **options: Any) -> AsyncIterator[Any]:
        self.waiting.set()
        await self.release.wait()
        async with self._client.pubsub(**options) as pubsub:
            yield pubsub


async def join_many(relay: Relay, addresses: list[Address]) -> list[Held]:
    connections = [Held(f"{address} on the first node") for address in addresses]
    for address, connection in zip(addresses, connections, strict=True):
        await relay.join(address, connection)
    return connections


async def test_a_claim_missed_while_resubscribing_closes_the_older_connection_after(
        nursery: trio.Nursery, redis_server: LocalRedis) -> None:
    """The first node serves more devices than one batch of its re-reads; its subscriber is
    lost, and while it is away the second node claims two of them (their events reach nobody
    on the first node). Once the first node listens again it has closed those two connections,
    and only those: it read every served device's claim after subscribing again."""
    first, second = await two_nodes(nursery, redis_server)
    served = [Address(f"user{i}", 0) for i in range(1001)]  # two batches of 1000
    connections = await join_many(first, served)
    hub = first.hub
    assert isinstance(hub, RedisHub)
    subscriber = hub.client = HeldSubscriber(hub.client)  # type: ignore[assignment]
    killer = coredis.Redis.from_url(redis_server.url())
    async with killer:
        assert await killer.client_kill(type_=PureToken.PUBSUB) >= 2  # both nodes' subscribers
    with trio.fail_after(10):
        await subscriber.waiting.wait()  # the first node lost its subscriber
    newer = [Held("newer, on the second node") for _ in range(2)]
    for address, connection in zip((served[0], served[-1]), newer, strict=True):
        await second.join(address, connection)  # claimed while nobody on the first node hears
    subscriber.release.set()
    await first.join(Address("carol", 0), Held("carol"))  # once the first node listens again
    closed = [connection.closed.is_set() for connection in connections]
    assert closed == [True] + [False] * 999 + [True]
    assert not any(connection.closed.is_set() for connection in newer)

