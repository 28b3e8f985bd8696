"""Events between relay nodes over Redis pub/sub: a :class:`~server.relay.hub.Hub` per node.

A node subscribes to the channel of every device it has a connection of, and of every link
offer waiting on one of its connections (:mod:`server.relay.redis_keys`), as Signal-Server's
nodes listen on a device's presence channel. A connection that authenticates records its node
as the device's presence with a new *claim* (a count of the device's claims) and publishes
"displaced" with that claim on the device's channel (one script, after subscribing): the other
nodes close their connections of that device of older claims. Two nodes that claim a device at
once each hear the other's claim, one of them perhaps before its own claim has answered; the
claims tell which connection is the newer, so exactly one stays. A send publishes
"new mail" on each recipient's channel from inside the insert script, unless the recipient's
presence is the sending node, which then wakes its own connections (:meth:`RedisHub.mail_stored`)
and hands them the message with its seq (pushed without a read when it follows their cursor):
a newer connection elsewhere has set its presence before its first read, so it either sees the
message then or hears of it. A push, an unlink or a link approval is published by the node
that made it.

The hub also hears ``e2e:accounts``, where every device-list change is announced, and tells
the store to drop its copy of that account (:class:`AccountCopies`); the store keeps copies
only while the hub hears that channel.

One subscriber connection per node runs in :meth:`RedisHub.run`. When it is lost (Redis
restarted), the node reconnects with backoff, subscribes again to everything it serves, reads
again the presence and claim of every device it serves (in batches) and displaces its
connections of those claimed since by another node, and wakes every connection, since mail
stored and claims made meanwhile were announced to nobody.

Beside it runs the node's *errands*: what the relay asks without waiting (call notices for
devices on other nodes, the node's record of the calls it runs), done in order, best effort.
A call notice for an account is published on the channel of each of its devices that this node
does not serve. Each call a node runs is recorded as ``e2e:call:ID`` = node, refreshed while it
runs and expiring soon after a node stops, so other nodes can refuse it clearly.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Set
from typing import Any, Protocol

import anyio
import coredis
import msgpack
import trio
from coredis.exceptions import RedisError
from coredis.patterns.pubsub import PubSub

from e2e_proto.address import Address

from ..common.store_base import StoreUnavailableError
from . import redis_keys as keys
from . import redis_scripts as scripts
from .hub import DISPLACED, MAIL, PUSH, BoundHub, DeviceEvent
from .store import AccountRecord, Delivery

log = logging.getLogger("e2e.relay")

LISTEN_TIMEOUT = 5.0
"""Seconds a new connection waits for the node's subscriber connection (at start, or while it
reconnects) before it is refused as ``unavailable``."""
RECONNECT_DELAY = (0.05, 2.0)
"""The first and the longest wait between attempts to reconnect the subscriber."""
SUBSCRIBE_CHUNK = 1000
"""Channels per SUBSCRIBE when a node (re)subscribes for every device it serves: coredis waits
about a second for all of one command's acknowledgements, which tens of thousands miss. Also
the devices per MGET when it reads their presence and claims again."""
_LOST = (RedisError, OSError, anyio.ClosedResourceError, anyio.BrokenResourceError)
"""What a command on a lost (or closing) Redis connection raises."""
ERRANDS = 10_000
"""Errands queued at most; past it a notice for other nodes is dropped (and logged)."""
CALL_RECORD_REFRESH = 30.0
"""Seconds between refreshes of the records of the calls a node runs."""
CALL_RECORD_TTL = 3 * CALL_RECORD_REFRESH
"""Seconds a call's record outlives its node's last refresh (a node that stopped)."""

Errand = Callable[[], Awaitable[None]]


class AccountCopies(Protocol):
    """A store's accounts and its copies of them
    (:class:`~server.relay.redis_store.RedisRelayStore`)."""

    async def account(self, account: str) -> AccountRecord | None:
        """The account's key and device list."""
        ...

    def cache_accounts(self, heard: bool) -> None:
        """Keep copies from now on (changes are heard), or drop them all and keep none."""
        ...

    def forget_account(self, account: str) -> None:
        """Drop the copy of ``account``: its device list changed."""
        ...


class RedisHub(BoundHub):
    """:class:`~server.relay.hub.Hub` over Redis pub/sub; ``node`` names this process."""

    def __init__(self, client: coredis.Redis[bytes], accounts: AccountCopies, node: bytes
                 ) -> None:
        self.client = client
        self.accounts = accounts
        self.node = node
        self._claim = client.register_script(scripts.CLAIM)
        self._displaced_by_me = _displaced_prefix(node)
        self._pubsub: PubSub[bytes] | None = None
        self._listening = trio.Event()
        self._errands, self._errands_due = trio.open_memory_channel[Errand](ERRANDS)
        self._calls: set[bytes] = set()
        """The calls this node runs."""

    async def run(self) -> None:
        """Listen and run errands until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_errands)
            nursery.start_soon(self._refresh_calls)
            await self._listen()

    async def _listen(self) -> None:
        """Listen until cancelled, reconnecting with backoff whenever Redis is lost."""
        delay = RECONNECT_DELAY[0]
        while True:
            try:
                async with self.client.pubsub(retry_policy=None,
                                              ignore_subscribe_messages=True) as pubsub:
                    wanted = [keys.ACCOUNTS_CHANNEL]
                    wanted += [keys.device_channel(a) for a in self.listener.served()]
                    wanted += [keys.link_channel(lookup)
                               for lookup in self.listener.links_waiting()]
                    for start in range(0, len(wanted), SUBSCRIBE_CHUNK):
                        await pubsub.subscribe(*wanted[start:start + SUBSCRIBE_CHUNK])
                    await self._displace_claimed_elsewhere()
                    self.accounts.cache_accounts(True)
                    self._pubsub = pubsub
                    self._listening.set()
                    delay = RECONNECT_DELAY[0]
                    self.listener.hear_all_mail()  # what was stored while nobody listened
                    while True:
                        message = await pubsub.get_message()
                        if message is not None and message["type"] == "message":
                            self._dispatch(message["channel"], message["data"])
            except* (RedisError, OSError, anyio.BrokenResourceError) as group:
                log.warning("lost the Redis subscription (%s); reconnecting",
                            group.exceptions[0])
            except* anyio.ClosedResourceError:
                # coredis unsubscribes on the way out; when the node stops, the connection is
                # closing as well (trio.Cancelled still ends this task).
                log.debug("the Redis subscriber closed while unsubscribing")
            finally:
                self.accounts.cache_accounts(False)
                self._pubsub = None
                if self._listening.is_set():
                    self._listening = trio.Event()
            await trio.sleep(delay)  # reconnection backoff
            delay = min(delay * 2, RECONNECT_DELAY[1])

    async def _subscriber(self) -> PubSub[bytes]:
        """The subscriber connection, once there is one (:class:`StoreUnavailableError` if
        there is none within :data:`LISTEN_TIMEOUT`)."""
        with trio.move_on_after(LISTEN_TIMEOUT):
            await self._listening.wait()
        if self._pubsub is None:
            raise StoreUnavailableError("redis: not subscribed (Redis cannot be reached)")
        return self._pubsub

    async def serve(self, address: Address) -> int:
        """Subscribe to the device's channel, then claim its presence and displace its
        connections on other nodes; the claim."""
        pubsub = await self._subscriber()
        channel = keys.device_channel(address)
        try:
            await pubsub.subscribe(channel)
            return int(await self._claim([keys.presence_key(address), keys.claim_key(address)],
                                         [self.node, channel, self._displaced_by_me]))
        except _LOST as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc

    async def _displace_claimed_elsewhere(self) -> None:
        """Tell the relay of each device it serves whose newest claim is another node's (made
        while this node was not subscribed: its event reached nobody here), in batches."""
        served = list(self.listener.served())
        for start in range(0, len(served), SUBSCRIBE_CHUNK):
            batch = served[start:start + SUBSCRIBE_CHUNK]
            found = await self.client.mget([key for address in batch for key in (
                keys.presence_key(address), keys.claim_key(address))])
            for address, node, claim in zip(batch, found[::2], found[1::2], strict=True):
                if node is not None and node != self.node and claim is not None:
                    self._hear(address, DeviceEvent(DISPLACED, int(claim)))

    async def release(self, address: Address) -> None:
        """Unsubscribe from the device's channel, unless a connection of it came back."""
        if not self.listener.serves(address):
            await self._unsubscribe(keys.device_channel(address))

    async def watch_link(self, lookup: bytes) -> None:
        """Subscribe to the link offer's approval channel."""
        pubsub = await self._subscriber()
        try:
            await pubsub.subscribe(keys.link_channel(lookup))
        except _LOST as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc

    async def release_link(self, lookup: bytes) -> None:
        """Unsubscribe from the link offer's approval channel."""
        await self._unsubscribe(keys.link_channel(lookup))

    async def _unsubscribe(self, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return  # not subscribed to anything now; a new subscriber will not take it up
        try:
            await pubsub.unsubscribe(channel)
        except _LOST as exc:  # the subscriber is being lost anyway
            log.debug("could not unsubscribe from %s: %s", channel, exc)

    def mail_stored(self, mail: Iterable[tuple[Address, Delivery | None]]) -> None:
        """Wake this node's connections of each address, handing them its message (the insert
        script published "new mail" for the others)."""
        listener = self.listener
        for address, handed in mail:
            if listener.serves(address):
                listener.hear(address, DeviceEvent(MAIL, handed))

    async def tell(self, address: Address, event: DeviceEvent) -> None:
        """Publish ``event`` on the device's channel."""
        try:
            await self.client.publish(keys.device_channel(address), _encode(event))
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc

    async def tell_link(self, lookup: bytes, device_id: int) -> None:
        """Publish the approval on the link offer's channel."""
        try:
            await self.client.publish(keys.link_channel(lookup), msgpack.packb(device_id))
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc

    # -- errands: what the relay asks without waiting --------------------------------------------

    def _post(self, errand: Errand) -> None:
        try:
            self._errands.send_nowait(errand)
        except trio.WouldBlock:
            log.warning("dropped a notice for other relay nodes: too many are waiting")

    async def _run_errands(self) -> None:
        async for errand in self._errands_due:
            try:
                await errand()
            except (*_LOST, StoreUnavailableError) as exc:
                log.warning("a notice for other relay nodes was lost: %s", exc)

    def push_elsewhere(self, accounts: Set[str], frame: dict[str, Any]) -> None:
        """Publish ``frame`` to the devices of ``accounts`` that other nodes serve (an errand)."""
        self._post(functools.partial(self._publish_push, sorted(accounts), frame))

    async def _publish_push(self, accounts: list[str], frame: dict[str, Any]) -> None:
        elsewhere = []
        for account in accounts:
            record = await self.accounts.account(account)
            if record is not None:
                elsewhere += [address for device_id in record.devices
                              if not self.listener.serves(address := Address(account, device_id))]
        if elsewhere:
            event = _encode(DeviceEvent(PUSH, frame))
            async with self.client.pipeline(transaction=False) as pipe:
                for address in elsewhere:
                    pipe.publish(keys.device_channel(address), event)

    def call_started(self, call_id: bytes) -> None:
        """Record that this node runs the call (an errand; refreshed while it runs)."""
        self._calls.add(call_id)
        self._post(functools.partial(self._record_calls, [call_id]))

    def call_ended(self, call_id: bytes) -> None:
        """Remove the record of the call (an errand)."""
        self._calls.discard(call_id)
        self._post(functools.partial(self.client.delete, [keys.call_key(call_id)]))

    async def call_elsewhere(self, call_id: bytes) -> bool:
        """Whether another node records that it runs the call."""
        try:
            node = await self.client.get(keys.call_key(call_id))
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc
        return node is not None and node != self.node

    async def _record_calls(self, call_ids: Iterable[bytes]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for call_id in call_ids:
                pipe.set(keys.call_key(call_id), self.node, ex=int(CALL_RECORD_TTL))

    async def _refresh_calls(self) -> None:
        """Refresh the records of this node's calls, so they outlive it only briefly."""
        while True:
            await trio.sleep(CALL_RECORD_REFRESH)
            if self._calls:
                self._post(functools.partial(self._record_calls, list(self._calls)))

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        """Hand one published message to the relay."""
        name = channel.decode()
        if name == keys.ACCOUNTS_CHANNEL:
            self.accounts.forget_account(data.decode())
            return
        try:
            if name.startswith(keys.LINK_CHANNEL):
                device_id = msgpack.unpackb(data)
                self.listener.hear_link(bytes.fromhex(name[len(keys.LINK_CHANNEL):]), device_id)
                return
            address = keys.address_of_channel(name)
            event = DeviceEvent(*msgpack.unpackb(data))
            if event.kind == DISPLACED:
                node, claim = event.detail
                if node == self.node:
                    return  # this node's own newer connection
                event = DeviceEvent(DISPLACED, claim)
        except (ValueError, TypeError) as exc:  # only nodes publish here; log, never crash
            log.error("unreadable message on %s: %s", name, exc)
            return
        self._hear(address, event)

    def _hear(self, address: Address, event: DeviceEvent) -> None:
        """Hand ``event`` to the relay."""
        try:
            self.listener.hear(address, event)
        except Exception:  # a bug of ours for one device must not stop this node's listening
            log.exception("could not act on %s for %s", event.kind, address)


def _encode(event: DeviceEvent) -> Any:
    return msgpack.packb(list(event))


def _displaced_prefix(node: bytes) -> bytes:
    """The "displaced" event of a claim by ``node``, ``[DISPLACED, [node, claim]]``, up to the
    claim: the claim script appends it, msgpack-encoded."""
    packer = msgpack.Packer()
    return (packer.pack_array_header(2) + packer.pack(DISPLACED) + packer.pack_array_header(2)
            + packer.pack(node))
