"""The relay's blob metadata in Redis: :class:`~server.relay.store.RelayBlobIndex` for the nodes
that share one Redis.

Invariant, as :class:`~server.common.blob_index.SqliteBlobIndex` keeps it: a record per blob
(owner, declared size, begin time, complete or not), never its bytes (a file under
``--blob-dir``, which the nodes share); an owner's usage (bytes of its blobs, unfinished uploads)
counted by the scripts that add and forget blobs, so a quota check costs no scan; who may fetch
each blob and whether it did (granted by the script that stores the message announcing it:
:meth:`~server.relay.redis_store.RedisRelayStore.enqueue`). Every change of more than one
key is one script (:mod:`server.relay.redis_scripts`), so two nodes never race a quota or a
last fetch. Layout: :mod:`server.relay.redis_keys`.
"""

from __future__ import annotations

import coredis

from ..common.blob_index import BlobQuotaError, BlobRecord, BlobTakenError
from . import redis_keys as keys
from . import redis_scripts as scripts
from .redis_errors import unavailable

EXPIRE_BATCH = 1000
"""Blobs of each kind one expiry script forgets at most, so that Redis is never blocked long."""
_BLOB_PREFIXES = [keys.BLOB, keys.BLOB_USAGE, keys.GRANTS]
"""What the forgetting scripts append a hex blob id (or an owner) to."""


class RedisRelayBlobs:
    """:class:`~server.relay.store.RelayBlobIndex` on a connected ``coredis`` client."""

    def __init__(self, client: coredis.Redis[bytes]) -> None:
        self.client = client
        self._begin = client.register_script(scripts.BEGIN_BLOB)
        self._complete = client.register_script(scripts.COMPLETE_BLOB)
        self._delete = client.register_script(scripts.DELETE_BLOB)
        self._expire = client.register_script(scripts.EXPIRE_BLOBS)
        self._mark_fetched = client.register_script(scripts.MARK_FETCHED)

    @unavailable
    async def begin_blob(self, blob_id: bytes, owner: str, size: int, now: float,
                         quota: int, max_pending: int) -> BlobRecord:
        """Record an upload ``owner`` begins; the existing record when it began it before."""
        outcome = await self._begin(
            [keys.blob_key(blob_id), keys.blob_usage_key(owner), keys.BLOBS_PENDING],
            [owner, size, repr(now), quota, max_pending, blob_id.hex()])
        kind = outcome[0]
        if kind == b"taken":
            raise BlobTakenError("another account holds this blob id")
        if kind == b"pending":
            raise BlobQuotaError(f"at most {max_pending} unfinished uploads at a time",
                                 int(outcome[1]), quota)
        if kind == b"quota":
            used = int(outcome[1])
            raise BlobQuotaError(f"the account's files would take {used + size} bytes, "
                                 f"more than its quota of {quota}", used, quota)
        if kind == b"found":
            return BlobRecord(blob_id, owner, int(outcome[1]), float(outcome[2]),
                              outcome[3] == b"1")
        return BlobRecord(blob_id, owner, size, now, False)

    @unavailable
    async def blob(self, blob_id: bytes) -> BlobRecord | None:
        """The record of ``blob_id``."""
        owner, size, created, complete = await self.client.hmget(
            keys.blob_key(blob_id), ["owner", "size", "created", "complete"])
        if owner is None:
            return None
        assert size is not None and created is not None
        return BlobRecord(blob_id, owner.decode(), int(size), float(created), complete == b"1")

    @unavailable
    async def complete_blob(self, blob_id: bytes) -> None:
        """Mark a blob complete."""
        await self._complete([keys.blob_key(blob_id), keys.BLOBS_PENDING, keys.BLOBS_COMPLETE],
                             [keys.BLOB_USAGE, blob_id.hex()])

    @unavailable
    async def delete_blob(self, blob_id: bytes) -> None:
        """Forget a blob and its grants."""
        await self._delete([keys.BLOBS_PENDING, keys.BLOBS_COMPLETE],
                           [*_BLOB_PREFIXES, blob_id.hex()])

    @unavailable
    async def expire_blobs(self, complete_before: float, incomplete_before: float
                           ) -> list[bytes]:
        """Forget blobs past their TTL (in batches); their ids."""
        forgotten: list[bytes] = []
        while True:
            due = await self._expire([keys.BLOBS_PENDING, keys.BLOBS_COMPLETE], [
                *_BLOB_PREFIXES, repr(incomplete_before), repr(complete_before), EXPIRE_BATCH])
            forgotten += [bytes.fromhex(blob_id.decode()) for blob_id in due]
            if len(due) < EXPIRE_BATCH:
                return forgotten

    @unavailable
    async def may_download(self, blob_id: bytes, account: str, device_id: int) -> bool:
        """Whether the blob was granted to that device."""
        return await self.client.hexists(keys.grants_key(blob_id),
                                         keys.device_part(account, device_id))

    @unavailable
    async def mark_fetched(self, blob_id: bytes, account: str, device_id: int) -> bool | None:
        """Record that the device has the blob; whether every granted device has it now."""
        everyone = await self._mark_fetched([keys.grants_key(blob_id)],
                                            [keys.device_part(account, device_id)])
        return None if everyone < 0 else everyone == 1
