"""Displacement between relay nodes on one Redis, driven step by step: whatever the order in
which two nodes subscribe, claim a device and hear each other's claims, the connection that
claimed last is the one kept.

Two relays run in this process on one emptied ``redis-server``; stand-ins for connections
(:class:`Held`) join them as a device's connection does once authenticated
(:meth:`~server.relay.server.Relay.join`). A node's claim is held between its steps with
:class:`trio.Event`, never by waiting for time to pass.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

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
