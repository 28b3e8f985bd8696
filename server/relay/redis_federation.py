"""What the relay keeps for the other transport, in Redis: :class:`~server.federation.relay_store.
RelayFederationStore` for the nodes that share one Redis.

Invariant, as :class:`~server.federation.relay_store.SqliteRelayFederation` keeps it: account
links (a link id is never accepted twice, an account has one live link at most), each account's
sharing log (a record only while its link lives), the items waiting for the social server in the
order queued (a link's newer share replaces its queued one), the accounts that take
cross-transport chats, and one hand-over claim, so that the nodes hand the items over one at a
time, in order and once. Every change of more than one key is one script
(:mod:`server.relay.redis_scripts`). Layout: :mod:`server.relay.redis_keys`.

The records of a link that ends are deleted from Redis at once; so that no old copy stays in
its append-only file either, the revocation asks Redis to rewrite that file
(``BGREWRITEAOF``), as the SQLite store overwrites them in its file.
"""

from __future__ import annotations

import logging

import coredis
import msgpack
from coredis.exceptions import RedisError

from ..federation.relay_store import SHARE, LinkTakenError, PeerItem, SharingEntry, StoredLink
from . import redis_keys as keys
from . import redis_scripts as scripts
from .redis_errors import unavailable

log = logging.getLogger("e2e.relay")


def _entry(entry: SharingEntry) -> list[bytes | str]:
    """A log entry as the scripts take it: link id (hex), the entry without its link and
    record (msgpack), and its record ('' for none)."""
    return [entry.link_id.hex(), msgpack.packb([entry.at, entry.kind, entry.summary]),
            entry.record or ""]


class RedisRelayFederation:
    """:class:`~server.federation.relay_store.RelayFederationStore` on a connected ``coredis``
    client."""

    def __init__(self, client: coredis.Redis[bytes]) -> None:
        self.client = client
        self._add_link = client.register_script(scripts.ADD_FEDERATION_LINK)
        self._revoke_link = client.register_script(scripts.REVOKE_FEDERATION_LINK)
        self._queue = client.register_script(scripts.QUEUE_FEDERATION_ITEM)
        self._items = client.register_script(scripts.FEDERATION_ITEMS)
        self._item_done = client.register_script(scripts.FEDERATION_ITEM_DONE)
        self._sharing_log = client.register_script(scripts.SHARING_LOG)
        self._claim = client.register_script(scripts.CLAIM_HAND_OVER)
        self._release = client.register_script(scripts.RELEASE_HAND_OVER)

    @unavailable
    async def live_link(self, account: str) -> StoredLink | None:
        """The account's live link, if any."""
        link_id = await self.client.get(keys.fed_live_key(account))
        if link_id is None:
            return None
        fields = await self.client.hgetall(keys.fed_link_key(link_id))
        if not fields or b"revoked" in fields:  # it ended between the two reads
            return None
        return StoredLink(link_id, account, fields[b"body"], fields[b"private_signature"],
                          fields[b"social_signature"], float(fields[b"linked"]))

    @unavailable
    async def add_link(self, link: StoredLink, entry: SharingEntry) -> None:
        """Store a new live link and log ``entry``."""
        if not await self._add_link(
                [keys.fed_link_key(link.link_id), keys.fed_live_key(link.account), keys.FED_SEQ,
                 keys.fed_log_key(link.account), keys.fed_record_key(link.link_id)],
                [link.account, link.body, link.private_signature, link.social_signature,
                 repr(link.linked_at), link.link_id, *_entry(entry)]):
            raise LinkTakenError(link.account)

    @unavailable
    async def revoke_link(self, account: str, link_id: bytes, now: float, entry: SharingEntry,
                          item: tuple[str, bytes]) -> bool:
        """End the live link; queue ``item``, log ``entry``, forget shared contents (in Redis
        now, in its append-only file once the rewrite asked for here is done)."""
        hex_link, packed, _ = _entry(entry)
        if not await self._revoke_link(
                [keys.fed_live_key(account), keys.fed_link_key(link_id),
                 keys.fed_record_key(link_id), keys.FED_SHARES, keys.FED_OUTBOX, keys.FED_SEQ,
                 keys.fed_log_key(account)],
                [link_id, repr(now), hex_link, keys.FED_ITEM, account, *item, packed]):
            return False
        try:
            await self.client.bgrewriteaof()
        except RedisError as exc:  # one is running: Redis's next rewrite drops the copies
            log.warning("could not ask Redis to rewrite its append-only file: %s", exc)
        return True

    @unavailable
    async def queue_for_peer(self, account: str, kind: str, link_id: bytes, body: bytes
                             ) -> None:
        """Queue an item; a share replaces a queued share of the same link."""
        await self._queue([keys.FED_SHARES, keys.FED_OUTBOX, keys.FED_SEQ],
                          [keys.FED_ITEM, account, kind, link_id, body,
                           "1" if kind == SHARE else "0"])

    @unavailable
    async def peer_items(self, limit: int) -> list[PeerItem]:
        """The oldest ``limit`` queued items."""
        return [PeerItem(int(seq), account.decode(), kind.decode(), link_id, body)
                for seq, account, kind, link_id, body in await self._items(
                    [keys.FED_OUTBOX], [limit, keys.FED_ITEM])]

    @unavailable
    async def peer_item_done(self, seq: int, entry: SharingEntry | None) -> None:
        """Remove a delivered item and log ``entry`` (if any), in one script."""
        if entry is None:
            records, logged = keys.FED_RECORD, ["0", "", "", ""]
        else:
            records, logged = keys.fed_record_key(entry.link_id), ["1", *_entry(entry)]
        await self._item_done([keys.FED_OUTBOX, keys.FED_SHARES, keys.FED_SEQ, records],
                              [seq, keys.FED_ITEM, keys.FED_LOG, *logged])

    @unavailable
    async def sharing_log(self, account: str, limit: int) -> list[SharingEntry]:
        """The account's newest ``limit`` log entries, oldest first."""
        pairs = await self._sharing_log([keys.fed_log_key(account)], [limit, keys.FED_RECORD])
        entries = []
        for stored, record in zip(pairs[::2], pairs[1::2], strict=True):
            _, hex_link, packed = stored.split(b":", 2)
            at, kind, summary = msgpack.unpackb(packed)
            entries.append(SharingEntry(at, kind, bytes.fromhex(hex_link.decode()), summary,
                                        record))
        return entries

    @unavailable
    async def set_cross_enabled(self, account: str, enabled: bool) -> None:
        """Whether ``account`` takes cross-transport chats."""
        if enabled:
            await self.client.sadd(keys.FED_CROSS, [account])
        else:
            await self.client.srem(keys.FED_CROSS, [account])

    @unavailable
    async def cross_enabled(self, account: str) -> bool:
        """Whether ``account`` opted in."""
        return await self.client.sismember(keys.FED_CROSS, account)

    @unavailable
    async def claim_hand_over(self, holder: bytes, ttl: float) -> bool:
        """Whether ``holder`` may hand queued items over for the next ``ttl`` seconds (Redis's
        clock; no other node's claim lives)."""
        return bool(await self._claim([keys.FED_HAND_OVER], [holder, max(1, int(ttl * 1000))]))

    @unavailable
    async def release_hand_over(self, holder: bytes) -> None:
        """End ``holder``'s claim."""
        await self._release([keys.FED_HAND_OVER], [holder])
