"""The relay's Redis store: :class:`~server.relay.store.RelayStore` shared by several nodes.

All relay state lives in one Redis (layout: :mod:`server.relay.redis_keys`): accounts, device
lists, link signatures, prekeys, mailboxes with their usage, pending links, group routing copies,
blob metadata (:mod:`server.relay.redis_blobs`; the bytes are files under ``--blob-dir``,
which the nodes share) and what the relay keeps for the other transport (account links, sharing
logs, items for the social server: :mod:`server.relay.redis_federation`) and the limits that
protect users (:mod:`server.relay.redis_limits`), so that any node can serve any device and
N nodes allow what one does. Every change of more than one key is one Lua script
(:mod:`server.relay.redis_scripts`), atomic in Redis; a send is acknowledged only after Redis
answered, which with ``appendonly yes`` and ``appendfsync always`` is after its fsync. The
insert script also publishes "new mail" on each recipient's channel, so the nodes serving them
hear of it without another round trip (:mod:`server.relay.redis_hub`), except for a device
whose newest connection is on the calling node (``e2e:presence``), which that node wakes
itself.

Accounts are read on every request, so each node keeps decoded copies, but only while its hub
hears the channel on which the device-list script announces every change (``e2e:accounts``):
a change drops the copy on every node, and a node that stops hearing drops them all. A read
that overlapped any change is not kept.

Group routing copies are read from Redis on every use (no copy is kept: a group send costs
one read of its routing copy beside the accounts of its members, which are cached).

Mailbox reads and writes that arrive together go to Redis as one call of one script
(:class:`~server.relay.group_commit.GroupCommit`, ``MAILBOX_ROUND``): a command's client-side
bookkeeping, not Redis, is what a relay node spends most of its time on, so a round costs one
command however many calls it holds.

Any Redis failure (refused connection, timeout, a Redis loading its AOF, a full disk) becomes
:class:`~server.common.store_base.StoreUnavailableError`: the client is told ``unavailable``
and retries. Commands are not retried here, so an unclear failure is never applied twice by
this node; a client's retry of a send that was stored after all is recognised (the same
envelope) or, re-encrypted, removed by the receiver's payload-id check.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import coredis
import msgpack
from coredis.exceptions import RedisError

from e2e_proto import relay_api as api
from e2e_proto.address import Address

from ..common.store_base import Bundle, StoreUnavailableError
from . import redis_keys as keys
from . import redis_scripts as scripts
from .config import RelayConfig
from .group_commit import GroupCommit
from .hub import MAIL
from .redis_blobs import RedisRelayBlobs
from .redis_errors import unavailable
from .redis_federation import RedisRelayFederation
from .redis_limits import RedisRelayLimits
from .store import (
    ACCOUNT_CACHE_SIZE,
    AccountRecord,
    Acknowledge,
    BlobGoneError,
    Delivery,
    DeviceGoneError,
    DeviceInfo,
    Enqueue,
    Enqueued,
    GroupLimitError,
    GroupRoute,
    MailboxWrite,
    NameTakenError,
    NewDevice,
    PendingLink,
    PrekeyLimitError,
    QuotaExceededError,
    StaleGroupError,
    StaleListError,
)

GATHER_TICKS = 2
"""Scheduler passes a round of mailbox calls gathers at most (the SQLite store's four would
cost latency here: a Redis round does not block the node, and acknowledgements wait for rounds
anyway). Relay benchmark at 16 pairs, one node, 2 x 5 s alternating runs: 0.47-0.52x the bare
relay with four passes, 0.53-0.54x with two, 0.50-0.56x with one."""
ROUND_BYTES = 4 * 1024 * 1024
"""Bytes of arguments (envelopes, names) one round script takes at most; a larger round is run
as several (each call whole: one call is at most a request frame, 1 MiB)."""
EXPIRE_BATCH = 1000
"""Messages one expiry script deletes at most, so that Redis is never blocked for long."""
MAIL_EVENT = msgpack.packb([MAIL, None])
"""What the insert script publishes on a recipient's channel (a hub event, see redis_hub)."""
_PREKEY_ID = struct.Struct(">I")


class MailboxRead(NamedTuple):
    """A read of one device's mailbox (:meth:`RedisRelayStore.pending`)."""

    account: str
    device_id: int
    after_seq: int
    limit: int


MailboxCall = MailboxWrite | MailboxRead


def _prekey_member(prekey_id: int, key: bytes) -> bytes:
    return _PREKEY_ID.pack(prekey_id) + key


def _prekey_args(one_time: Sequence[tuple[int, bytes]]) -> list[Any]:
    args: list[Any] = []
    for prekey_id, key in one_time:
        args += [prekey_id, _prekey_member(prekey_id, key)]
    return args


class RedisRelayStore:
    """:class:`RelayStore` in Redis, on a connected ``coredis`` client (see
    :func:`server.relay.backends.open_backend`)."""

    def __init__(self, client: coredis.Redis[bytes], node: bytes) -> None:
        self.client = client
        self.node = node
        self._accounts: dict[str, AccountRecord] = {}
        self._caching = False
        self._changes = 0  # counts forgotten copies: a read across a change is not kept
        self._create_account = client.register_script(scripts.CREATE_ACCOUNT)
        self._replace_device_list = client.register_script(scripts.REPLACE_DEVICE_LIST)
        self._device_info = client.register_script(scripts.DEVICE_INFO)
        self._set_device_field = client.register_script(scripts.SET_DEVICE_FIELD)
        self._link_signatures = client.register_script(scripts.LINK_SIGNATURES)
        self._store_prekeys = client.register_script(scripts.STORE_PREKEYS)
        self._take_bundle = client.register_script(scripts.TAKE_BUNDLE)
        self._expire = client.register_script(scripts.EXPIRE)
        self._put_group = client.register_script(scripts.PUT_GROUP)
        self._offer_link = client.register_script(scripts.OFFER_LINK)
        self._take_link = client.register_script(scripts.TAKE_LINK)
        self._withdraw_link = client.register_script(scripts.WITHDRAW_LINK)
        self._mailbox_script = client.register_script(scripts.MAILBOX_ROUND)
        self._mailboxes: GroupCommit[MailboxCall, list[Delivery] | Enqueued | None] = (
            GroupCommit(self._mailbox_round, GATHER_TICKS))
        self.blobs = RedisRelayBlobs(client)
        self.federation = RedisRelayFederation(client)

    def limits(self, config: RelayConfig) -> RedisRelayLimits:
        """The users' limits, in Redis: counted once for all nodes."""
        return RedisRelayLimits(self.client, config)

    async def load_scripts(self) -> None:
        """Load the scripts into Redis now (a restarted Redis gets them again on first use)."""
        for script in scripts.ALL:
            await self.client.script_load(script)

    @unavailable
    async def create_account(self, account: str, account_key: bytes, list_version: int,
                             list_body: bytes, list_signature: bytes,
                             devices: dict[int, bytes], now: float) -> None:
        """Register a new account; :class:`NameTakenError` if the name exists."""
        args: list[Any] = [account_key, list_version, list_body, list_signature, max(devices),
                           repr(now), keys.account_prefixes(account)[0]]
        for device_id, key in devices.items():
            args += [device_id, key]
        if not await self._create_account([keys.account_key(account)], args):
            raise NameTakenError(account)

    def cache_accounts(self, heard: bool) -> None:
        """Keep account copies from now on (``heard``: changes are heard), or no longer."""
        self._accounts.clear()
        self._changes += 1
        self._caching = heard

    def forget_account(self, account: str) -> None:
        """``account``'s device list changed (on some node): drop its copy."""
        self._accounts.pop(account, None)
        self._changes += 1

    @unavailable
    async def account(self, account: str) -> AccountRecord | None:
        """The account's key and device list (a copy while changes are heard)."""
        cached = self._accounts.get(account)
        if cached is not None:
            return cached
        changes = self._changes
        fields = await self.client.hgetall(keys.account_key(account))
        if not fields:
            return None
        devices = sorted((int(name[1:]), key) for name, key in fields.items()
                         if name.startswith(b"d"))
        record = AccountRecord(account, fields[b"key"], int(fields[b"version"]),
                               fields[b"body"], fields[b"signature"], dict(devices),
                               int(fields[b"max"]))
        if self._caching and changes == self._changes:
            if len(self._accounts) >= ACCOUNT_CACHE_SIZE:
                self._accounts.clear()
            self._accounts[account] = record
        return record

    @unavailable
    async def replace_device_list(self, account: str, list_version: int, list_body: bytes,
                                  list_signature: bytes, devices: dict[int, bytes],
                                  added: Sequence[NewDevice], now: float) -> list[int]:
        """Store a newer device list (and its new devices); returns removed device ids."""
        args: list[Any] = [list_version, list_body, list_signature, max(devices), repr(now),
                           *keys.account_prefixes(account), keys.ACCOUNTS_CHANNEL, account,
                           len(devices)]
        for device_id, key in devices.items():
            args += [device_id, key]
        for new in added:
            args += [new.device_id, new.identity_key, new.name, *new.signed_prekey,
                     new.link_signature, len(new.one_time_prekeys),
                     *_prekey_args(new.one_time_prekeys)]
        self.forget_account(account)  # (every node, this one too, also hears of the change)
        result = await self._replace_device_list([keys.account_key(account), keys.EXPIRY], args)
        self.forget_account(account)
        if result[0] == b"stale":
            raise StaleListError(account)
        return sorted(int(device_id) for device_id in result[1:])

    @unavailable
    async def device_info(self, account: str) -> list[DeviceInfo]:
        """Name, link time and last authentication of each device of ``account``."""
        rows = await self._device_info([keys.account_key(account)],
                                       [keys.account_prefixes(account)[0]])
        return [DeviceInfo(device_id, name.decode(), float(linked),
                           None if seen is None else float(seen))
                for device_id, name, linked, seen in rows]

    @unavailable
    async def link_signatures(self, account: str) -> dict[int, bytes]:
        """The link signature of each linked device of ``account`` that has one stored."""
        pairs = await self._link_signatures([keys.account_key(account)],
                                            [keys.account_prefixes(account)[0]])
        return dict(zip(pairs[::2], pairs[1::2], strict=True))

    @unavailable
    async def set_link_signature(self, account: str, device_id: int, signature: bytes
                                 ) -> None:
        """Store a linked device's (checked) link signature."""
        await self._set_device_field([keys.device_key(account, device_id)],
                                     ["link_signature", signature])

    @unavailable
    async def touch(self, account: str, device_id: int, now: float) -> None:
        """Record that a device authenticated at ``now``."""
        await self._set_device_field([keys.device_key(account, device_id)], ["seen", repr(now)])

    @unavailable
    async def store_prekeys(self, account: str, device_id: int,
                            signed: tuple[int, bytes, bytes] | None,
                            one_time: Sequence[tuple[int, bytes]], *, limit: int) -> int:
        """Set the signed prekey (if given) and add one-time prekeys, unless that would pass
        ``limit`` (:class:`PrekeyLimitError`, counted by the script that writes); returns the
        OPK count."""
        args: list[Any] = ["0", "", "", ""] if signed is None else ["1", *signed]
        outcome, count = await self._store_prekeys(
            [keys.device_key(account, device_id), keys.prekeys_key(account, device_id)],
            [*args, limit, *_prekey_args(one_time)])
        if outcome == b"limit":
            raise PrekeyLimitError(count, limit)
        return count

    @unavailable
    async def one_time_prekey_count(self, account: str, device_id: int) -> int:
        """How many one-time prekeys the relay holds for the device."""
        return await self.client.zcard(keys.prekeys_key(account, device_id))

    @unavailable
    async def take_bundle(self, account: str, device_id: int, one_time: bool = True
                          ) -> tuple[Bundle, int] | None:
        """The device's bundle with its lowest-id OPK (none when not ``one_time``; deleted by
        the same script) and how many OPKs it has left."""
        taken = await self._take_bundle(
            [keys.device_key(account, device_id), keys.prekeys_key(account, device_id)],
            ["1" if one_time else "0"])
        if taken is None:
            return None
        identity, spk_id, spk, signature, prekey, left = taken
        opk_id = opk = None
        if prekey is not None:
            opk_id, opk = _PREKEY_ID.unpack_from(prekey)[0], prekey[_PREKEY_ID.size:]
        return Bundle(device_id, identity, int(spk_id), spk, signature, opk_id, opk), left

    @unavailable
    async def enqueue(self, write: Enqueue) -> Enqueued:
        """Store one send, all or nothing (with ``skip_full``: all that fit), grant its blobs
        and publish "new mail" to its recipients, in one script; the messages left out, and the
        seq of each message stored anew."""
        return await self._mailboxes.run(write)  # type: ignore[return-value]

    @unavailable
    async def acknowledge(self, write: Acknowledge) -> None:
        """Delete a device's messages by seq (deferrable: under load it joins a round of
        sends instead of costing one of its own)."""
        await self._mailboxes.run(write, deferrable=True)

    @unavailable
    async def pending(self, account: str, device_id: int, after_seq: int, limit: int
                      ) -> list[Delivery]:
        """Stored messages for the device with seq > ``after_seq``, oldest first."""
        return await self._mailboxes.run(  # type: ignore[return-value]
            MailboxRead(account, device_id, after_seq, limit))

    async def _mailbox_round(self, calls: Sequence[MailboxCall]
                             ) -> list[list[Delivery] | Enqueued | Exception | None]:
        """The round's mailbox reads and writes, in order, as one script call (a Redis that
        restarted gets the script again): one command however many calls the round holds, up
        to ``ROUND_BYTES`` of arguments (past that, one command per part, so that no script
        holds Redis for long). A call that fails in Redis fails alone."""
        outcomes: list[list[Delivery] | Enqueued | Exception | None] = []
        part: list[MailboxCall] = []
        part_keys: list[str] = []
        documents: list[list[Any]] = []
        size = 0
        for call in calls:
            kind, call_keys, call_args = self._script_call(call)
            weight = sum(len(a) for a in call_args if isinstance(a, bytes | str))
            if part and size + weight > ROUND_BYTES:
                outcomes += await self._run_part(part, part_keys, documents)
                part, part_keys, documents, size = [], [], [], 0
            part.append(call)
            part_keys += call_keys
            documents.append([kind, len(call_keys), *call_args])
            size += weight
        return outcomes + await self._run_part(part, part_keys, documents)

    async def _run_part(self, calls: Sequence[MailboxCall], round_keys: list[str],
                        documents: list[list[Any]]
                        ) -> list[list[Delivery] | Enqueued | Exception | None]:
        """One script call for ``calls``; each call's outcome (a Redis that cannot be reached
        fails them all with :class:`StoreUnavailableError`)."""
        try:
            replies = msgpack.unpackb(await self._mailbox_script(
                round_keys, [msgpack.packb(documents, use_bin_type=False)]), raw=True)
        except (RedisError, OSError) as exc:
            return [StoreUnavailableError(f"redis: {exc}")] * len(calls)
        outcomes: list[list[Delivery] | Enqueued | Exception | None] = []
        for call, (ok, reply) in zip(calls, replies, strict=True):
            if not ok:
                outcomes.append(StoreUnavailableError(f"redis: {reply.decode(errors='replace')}"))
            elif isinstance(call, MailboxRead):
                outcomes.append([Delivery(int(seq), envelope)
                                 for envelope, seq in zip(reply[::2], reply[1::2], strict=True)])
            else:
                outcomes.append(self._outcome(call, reply) if isinstance(call, Enqueue)
                                else None)
        return outcomes

    def _script_call(self, call: MailboxCall) -> tuple[str, list[str], list[Any]]:
        """The kind, keys and arguments of ``call`` in the round script."""
        if isinstance(call, MailboxRead):
            return "r", [keys.mailbox_key(call.account, call.device_id)], [
                f"({call.after_seq}", call.limit]
        if isinstance(call, Acknowledge):
            account, device_id = call.account, call.device_id
            return "a", [
                keys.device_key(account, device_id), keys.mailbox_key(account, device_id),
                keys.EXPIRY], [keys.device_part(account, device_id) + ":", *call.seqs]
        script_keys = [keys.EXPIRY]
        args: list[Any] = [call.quota, call.quota_bytes, repr(call.now), MAIL_EVENT,
                           self.node, "1" if call.skip_full else "0", len(call.blobs)]
        for message in call.messages:
            address = Address(message.account, message.device_id)
            script_keys += [keys.device_key(*address), keys.mailbox_key(*address),
                            keys.presence_key(address)]
            args += [message.envelope, keys.device_part(*address) + ":",
                     keys.device_channel(address)]
        script_keys += [keys.grants_key(blob_id) for blob_id in call.blobs]
        script_keys += [keys.blob_key(blob_id) for blob_id in call.blobs]
        return "e", script_keys, args

    @staticmethod
    def _outcome(write: Enqueue, result: Any) -> Enqueued | Exception:
        """The positions of the messages the insert script left out and the seqs of those it
        stored anew, or the error that refused the whole send."""
        if result[0] == b"ok":
            stored = result[2]
            return Enqueued(tuple(j - 1 for j in result[1]),
                            tuple(zip([j - 1 for j in stored[::2]], stored[1::2], strict=True)))
        if result[0] == b"blob":
            return BlobGoneError(write.blobs[result[1] - 1])
        refused = write.messages[result[1] - 1]
        if result[0] == b"gone":
            return DeviceGoneError(refused.account, refused.device_id)
        limit = (f"{write.quota} messages" if result[0] == b"count"
                 else f"{write.quota_bytes} bytes")
        return QuotaExceededError(refused.account, refused.device_id, limit)

    @unavailable
    async def expire(self, older_than: float) -> int:
        """Delete messages stored before ``older_than`` (in batches); returns how many."""
        removed = 0
        while True:
            count = await self._expire([keys.EXPIRY], [repr(older_than), EXPIRE_BATCH,
                                                       keys.DEVICE, keys.MAILBOX])
            removed += count
            if count < EXPIRE_BATCH:
                return removed

    @unavailable
    async def group(self, group_id: bytes) -> GroupRoute | None:
        """The routing copy of a group."""
        fields = await self.client.hgetall(keys.group_key(group_id))
        if not fields:
            return None
        return GroupRoute(group_id, int(fields[b"version"]),
                          tuple(msgpack.unpackb(fields[b"members"])),
                          tuple(msgpack.unpackb(fields[b"admins"])), fields[b"body"],
                          fields[b"signature"])

    @unavailable
    async def put_group(self, route: GroupRoute, account: str, limit: int) -> None:
        """Store a routing copy (:class:`StaleGroupError` unless its version is newer); a new
        one counts for ``account`` (:class:`GroupLimitError` past ``limit``), one with no
        members deletes the stored copy. One script compares, counts and writes, for every
        node."""
        outcome = await self._put_group(
            [keys.group_key(route.group_id), keys.groups_of_key(account)],
            [route.version, msgpack.packb(list(route.members)), msgpack.packb(list(route.admins)),
             route.body, route.signature, len(route.members), account, limit,
             route.group_id.hex(), keys.GROUPS_OF])
        if outcome == 0:
            raise StaleGroupError(route.group_id.hex())
        if outcome == -1:
            raise GroupLimitError(account, limit)

    @unavailable
    async def offer_link(self, lookup: bytes, link: PendingLink, ttl: float,
                         per_account: int) -> str | None:
        """File a pending link for at most ``ttl`` seconds (it outlives no dead node); the
        account's offers are counted for every node."""
        assert len(link.waiter) == api.NONCE_SIZE
        offer = msgpack.packb([link.identity_key, link.name, link.tag, link.link_signature,
                               list(link.signed_prekey),
                               [list(p) for p in link.one_time_prekeys]])
        outcome = await self._offer_link(
            [keys.link_key(lookup), keys.links_of_key(link.account)],
            [link.waiter, link.account, offer, max(1, int(ttl * 1000)), per_account,
             lookup.hex()])
        return None if outcome == b"ok" else outcome.decode()

    @unavailable
    async def pending_link(self, lookup: bytes) -> PendingLink | None:
        """The pending link filed under ``lookup``."""
        return self._link(await self.client.hmget(keys.link_key(lookup),
                                                  ["waiter", "account", "offer"]))

    @unavailable
    async def take_link(self, lookup: bytes) -> PendingLink | None:
        """Remove and return the pending link filed under ``lookup``."""
        return self._link(await self._take_link([keys.link_key(lookup)],
                                                [keys.LINKS_OF, lookup.hex()]))

    @unavailable
    async def withdraw_link(self, lookup: bytes, waiter: bytes) -> None:
        """Remove the pending link under ``lookup`` if ``waiter`` made it."""
        await self._withdraw_link([keys.link_key(lookup)], [waiter, keys.LINKS_OF, lookup.hex()])

    @staticmethod
    def _link(stored: Sequence[bytes | None] | None) -> PendingLink | None:
        if not stored or stored[0] is None:
            return None
        waiter, account, offer = stored
        assert account is not None and offer is not None
        identity, name, tag, signature, spk, opks = msgpack.unpackb(offer)
        return PendingLink(account.decode(), identity, name, tag, signature, tuple(spk),
                           [tuple(p) for p in opks], waiter)
