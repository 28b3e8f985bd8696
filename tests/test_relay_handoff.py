"""Direct hand-off on a Redis relay: a message stored by a node for a device it serves is pushed
to that device's connection without reading the mailbox, and never at the cost of one skipped
or repeated.

Messages are stored as the ``send`` handler stores them (:func:`server.relay.messages.store_mail`
on the node), with envelopes of plain bytes; bob's side reads the raw push frames of an
authenticated session (nothing is acknowledged). Every test ends with one more message, handed
off: the next frame being that one shows that nothing was pushed twice before it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import trio

from client.private.session import PrivateSession
from e2e_proto.address import Address
from server.common.connection import HANDED_DELIVERIES
from server.relay.hub import MAIL, DeviceEvent
from server.relay.messages import store_mail
from server.relay.server import Relay
from server.relay.store import Delivery, Enqueue, Outgoing
from storage.redis_server import LocalRedis
from tests.relay_harness import RunningRelay, make_client, register, session_of, start_relay

BOB = Address("bob", 0)


def to_bob(envelope: bytes) -> Enqueue:
    """One message from alice to bob, as ``send`` stores it."""
    return Enqueue([Outgoing("bob", 0, envelope)], ("alice", 0), 0.0, 10_000, 10**9)


def count_reads(relay: RunningRelay) -> list[int]:
    """Count the relay's mailbox reads for bob: the list grows by one per read."""
    reads: list[int] = []
    pending = relay.store.pending

    async def counting(account: str, device_id: int, after_seq: int, limit: int
                       ) -> list[Delivery]:
        if (account, device_id) == BOB:
            reads.append(after_seq)
        return await pending(account, device_id, after_seq, limit)

    relay.store.pending = counting  # type: ignore[method-assign]
    return reads


async def until_queue_empty(session: PrivateSession) -> None:
    """Wait until the relay says bob's backlog is drained (no delivery expected before)."""
    with trio.fail_after(10):
        async for frame in session.connection.pushes:
            assert frame.get("type") != "deliver", frame
            if frame.get("type") == "queue_empty":
                return


async def deliveries(session: PrivateSession, count: int) -> list[tuple[int, bytes]]:
    """The next ``count`` deliveries pushed to ``session``, as (seq, envelope)."""
    got: list[tuple[int, bytes]] = []
    with trio.fail_after(10):
        async for frame in session.connection.pushes:
            if frame.get("type") == "deliver":
                got.append((frame["seq"], frame["envelope"]))
                if len(got) == count:
                    return got
            assert frame.get("type") != "queue_empty", "announced twice"
    raise AssertionError("the connection ended")


async def relays_with_bob(nursery: trio.Nursery, tmp_path: Path, redis_server: LocalRedis,
                          nodes: int = 1) -> list[RunningRelay]:
    """``nodes`` relays on one emptied Redis, with alice and bob registered on the first."""
    redis_server.flush()
    relays = [await start_relay(nursery, redis_server.url(), blob_dir=tmp_path / "blobs")
              for _ in range(nodes)]
    for name in ("alice", "bob"):
        await register(make_client(tmp_path / name, relays[0].port), name)
    return relays


def in_order_once(got: list[tuple[int, bytes]], envelopes: list[bytes]) -> None:
    """``got`` is exactly ``envelopes``, in order, with seqs one by one."""
    assert [envelope for _, envelope in got] == envelopes
    first = got[0][0]
    assert [seq for seq, _ in got] == list(range(first, first + len(got)))


async def the_next_is_a_new_one(relay: Relay, session: PrivateSession) -> None:
    """A message stored now is the next one pushed: nothing was left to push twice."""
    await store_mail(relay, to_bob(b"last"))
    ((_, envelope),) = await deliveries(session, 1)
    assert envelope == b"last"


async def test_a_burst_from_the_same_node_arrives_whole_in_order_once_without_reads(
        nursery: trio.Nursery, tmp_path: Path, redis_server: LocalRedis) -> None:
    (relay,) = await relays_with_bob(nursery, tmp_path, redis_server)
    reads = count_reads(relay)
    envelopes = [b"m%d" % i for i in range(3 * HANDED_DELIVERIES)]
    async with session_of(make_client(tmp_path / "bob", relay.port)) as bob:
        await until_queue_empty(bob)
        assert len(reads) == 1  # the backlog, read once
        for envelope in envelopes:
            await store_mail(relay.server, to_bob(envelope))
        in_order_once(await deliveries(bob, len(envelopes)), envelopes)
        assert len(reads) == 1  # every one handed off: no read since the backlog's
        await the_next_is_a_new_one(relay.server, bob)


async def test_hand_offs_beyond_the_bound_fall_back_to_one_read_and_lose_nothing(
        nursery: trio.Nursery, tmp_path: Path, redis_server: LocalRedis) -> None:
    (relay,) = await relays_with_bob(nursery, tmp_path, redis_server)
    reads = count_reads(relay)
    envelopes = [b"m%d" % i for i in range(HANDED_DELIVERIES + 10)]
    async with session_of(make_client(tmp_path / "bob", relay.port)) as bob:
        await until_queue_empty(bob)
        handed = []
        for envelope in envelopes:  # stored without a wake, then all handed at once
            stored = await relay.store.enqueue(to_bob(envelope))
            ((_, seq),) = stored.seqs
            handed.append((BOB, Delivery(seq, envelope)))
        relay.server.mail_stored(handed)  # more than a connection keeps, before it looks
        in_order_once(await deliveries(bob, len(envelopes)), envelopes)
        assert len(reads) == 2  # the backlog's, then one for all that overflowed
        await the_next_is_a_new_one(relay.server, bob)


async def test_a_hand_off_of_mail_the_loop_has_just_read_is_not_pushed_again(
        nursery: trio.Nursery, tmp_path: Path, redis_server: LocalRedis) -> None:
    """A message stored while bob's backlog is being read is in that read, and handed off too:
    it is pushed once."""
    (relay,) = await relays_with_bob(nursery, tmp_path, redis_server)
    pending = relay.store.pending
    reading, go_on = trio.Event(), trio.Event()

    async def held_read(account: str, device_id: int, after_seq: int, limit: int
                        ) -> list[Delivery]:
        if (account, device_id) == BOB and not go_on.is_set():
            reading.set()
            await go_on.wait()
        return await pending(account, device_id, after_seq, limit)

    relay.store.pending = held_read  # type: ignore[method-assign]
    async with session_of(make_client(tmp_path / "bob", relay.port)) as bob:
        with trio.fail_after(10):
            await reading.wait()  # bob's loop reads its backlog (after renewing its hand-offs)
        await store_mail(relay.server, to_bob(b"during the read"))  # handed off, and stored
        go_on.set()
        in_order_once(await deliveries(bob, 1), [b"during the read"])
        await until_queue_empty(bob)
        await the_next_is_a_new_one(relay.server, bob)


class HeldMail:
    """Holds the "new mail" events a node hears for its connections (those ``picked``) until
    :meth:`release` lets it hear them, in order."""

    def __init__(self, relay: Relay, picked: Callable[[DeviceEvent], bool]) -> None:
        self.relay, self.picked = relay, picked
        self.hear: Callable[[Address, DeviceEvent], None] = relay.hear
        self.held: list[tuple[Address, DeviceEvent]] = []
        self._arrived = trio.Event()
        relay.hear = self._holding  # type: ignore[method-assign]

    def _holding(self, address: Address, event: DeviceEvent) -> None:
        if event.kind == MAIL and self.picked(event):
            self.held.append((address, event))
            self._arrived.set()
        else:
            self.hear(address, event)

    async def wait_for(self, count: int) -> None:
        """Until ``count`` events are held (some come from another node, through Redis)."""
        with trio.fail_after(10):
            while len(self.held) < count:
                self._arrived = trio.Event()
                await self._arrived.wait()

    def release(self) -> None:
        """Hear what was held, all at once (before any connection's loop runs), and from now
        on hear every event."""
        self.relay.hear = self.hear  # type: ignore[method-assign]
        for address, event in self.held:
            self.hear(address, event)


async def test_mail_from_another_node_woken_with_a_hand_off_is_read_not_skipped(
        nursery: trio.Nursery, tmp_path: Path, redis_server: LocalRedis) -> None:
    """bob's node hands off its own message, and hears of the next one, stored by another node,
    in the same moment (both wakes before bob's loop looks): the loop reads and pushes both."""
    here, there = await relays_with_bob(nursery, tmp_path, redis_server, nodes=2)
    reads = count_reads(here)
    async with session_of(make_client(tmp_path / "bob", here.port)) as bob:
        await until_queue_empty(bob)
        mail = HeldMail(here.server, lambda event: True)
        await store_mail(here.server, to_bob(b"from here"))
        await store_mail(there.server, to_bob(b"from there"))
        await mail.wait_for(2)
        assert [event.detail is None for _, event in mail.held] == [False, True]
        mail.release()
        in_order_once(await deliveries(bob, 2), [b"from here", b"from there"])
        assert len(reads) == 2  # the backlog's, then the other node's message
        await store_mail(here.server, to_bob(b"here again"))  # handed off again
        in_order_once(await deliveries(bob, 1), [b"here again"])
        assert len(reads) == 2
        await the_next_is_a_new_one(here.server, bob)


async def test_a_hand_off_past_mail_from_another_node_not_heard_of_yet_reads_instead(
        nursery: trio.Nursery, tmp_path: Path, redis_server: LocalRedis) -> None:
    """The other node's "new mail" is late: bob's node hands off its own next message, which
    does not follow bob's cursor; the loop reads, and pushes both in order."""
    here, there = await relays_with_bob(nursery, tmp_path, redis_server, nodes=2)
    reads = count_reads(here)
    async with session_of(make_client(tmp_path / "bob", here.port)) as bob:
        await until_queue_empty(bob)
        news = HeldMail(here.server, lambda event: event.detail is None)
        await store_mail(there.server, to_bob(b"from there"))
        await news.wait_for(1)
        await store_mail(here.server, to_bob(b"from here"))
        in_order_once(await deliveries(bob, 2), [b"from there", b"from here"])
        assert len(reads) == 2
        news.release()  # heard at last: one more read, which finds nothing
        await the_next_is_a_new_one(here.server, bob)


async def test_a_reconnect_gets_the_whole_backlog_of_handed_off_mail(
        nursery: trio.Nursery, tmp_path: Path, redis_server: LocalRedis) -> None:
    """Mail pushed by hand-off but not acknowledged is in the mailbox: the next connection
    reads it all, and what was stored meanwhile."""
    (relay,) = await relays_with_bob(nursery, tmp_path, redis_server)
    bob_client = make_client(tmp_path / "bob", relay.port)
    envelopes = [b"m%d" % i for i in range(20)]
    async with session_of(bob_client) as bob:
        await until_queue_empty(bob)
        for envelope in envelopes[:10]:
            await store_mail(relay.server, to_bob(envelope))
        before = await deliveries(bob, 10)
        in_order_once(before, envelopes[:10])
    for envelope in envelopes[10:]:
        await store_mail(relay.server, to_bob(envelope))
    reads = count_reads(relay)
    async with session_of(bob_client) as bob:
        again = await deliveries(bob, len(envelopes))
        in_order_once(again, envelopes)
        assert again[:10] == before
        await until_queue_empty(bob)
        assert len(reads) == 1
        await the_next_is_a_new_one(relay.server, bob)

