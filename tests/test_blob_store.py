"""The relay's blob store at the request level: uploads in chunks checked against their id,
resumed after a dropped connection or a restart, grants through ``send``, downloads only by the
devices a blob was sent to, quotas, limits, TTL, deletion once fetched, and memory that does not
grow with the blob."""

from __future__ import annotations

import hashlib
import logging
import os
import tracemalloc
from pathlib import Path

import pytest
import trio

from client.core.connection import Connection, ServerError
from client.core.errors import ClientError
from e2e_proto import blob_api
from e2e_proto import relay_api as api
from e2e_proto.constants import MAX_FRAME_SIZE, MAX_MEDIA_SIZE
from e2e_proto.media import blob_size
from e2e_proto.wire import encode_frame
from server.common.blobs import BlobFolder, BlobLimits, BlobService, default_blob_dir
from server.common.store_base import StoreUnavailableError
from server.relay.backends import open_backend
from server.relay.config import RelayConfig
from server.relay.store import Enqueue, Enqueued
from storage.redis_server import LocalRedis
from tests.relay_harness import (
    drain,
    link,
    make_client,
    register,
    relay_with_alice_and_bob,
    session_of,
    start_relay,
    store_url,
)

CHUNK = blob_api.BLOB_CHUNK_SIZE


def _blob(size: int, seed: int = 1) -> tuple[bytes, bytes]:
    """Opaque ``size`` bytes (the server never decrypts) and their blob id."""
    data = hashlib.shake_256(seed.to_bytes(4, "big")).digest(size)
    return data, hashlib.sha256(data).digest()


async def _refused(code: str, call: object) -> ServerError:
    with pytest.raises(ServerError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code == code, caught.value
    return caught.value


async def _upload(connection: Connection, data: bytes, blob_id: bytes,
                  chunk: int = CHUNK) -> None:
    begun = await connection.request("upload_begin", blob_id=blob_id, size=len(data))
    offset = begun["offset"]
    while offset < len(data):
        answer = await connection.request("upload_chunk", blob_id=blob_id, offset=offset,
                                          data=data[offset:offset + chunk])
        offset = answer["offset"]
    assert (await connection.request("upload_finish", blob_id=blob_id))["size"] == len(data)


async def _download(connection: Connection, blob_id: bytes, length: int = CHUNK) -> bytes:
    parts, offset, size = [], 0, None
    while size is None or offset < size:
        answer = await connection.request("download", blob_id=blob_id, offset=offset,
                                          length=length)
        size = answer["size"]
        parts.append(answer["data"])
        offset += len(answer["data"])
    return b"".join(parts)


async def _grant(session: object, to: str, blob_ids: list[bytes]) -> None:
    """A real send (a text message) that announces ``blob_ids`` to every device of ``to``.

    A refused send raises the relay's :class:`ServerError` (the client would wrap it).
    """
    original = session.connection.request  # type: ignore[attr-defined]
    refusals: list[ServerError] = []

    async def with_blobs(kind: str, **fields: object) -> dict:
        if kind == "send":
            fields["blobs"] = blob_ids
        try:
            return await original(kind, **fields)
        except ServerError as exc:
            refusals.append(exc)
            raise

    session.connection.request = with_blobs  # type: ignore[attr-defined]
    try:
        await session.send_text(to, "a file")  # type: ignore[attr-defined]
    except ClientError:
        raise refusals[-1] from None
    finally:
        session.connection.request = original  # type: ignore[attr-defined]


async def test_upload_grant_download_and_delete_once_fetched(nursery, tmp_path: Path) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path)
    data, blob_id = _blob(2 * CHUNK + 12345)
    async with session_of(alice) as a:
        await _upload(a.connection, data, blob_id)
        await _grant(a, "bob", [blob_id])
    folder = default_blob_dir(tmp_path / "relay.db")
    stored = relay.server.blobs.folder.path(blob_id)
    assert stored.parent.parent == folder and stored.read_bytes() == data
    assert stored.stat().st_mode & 0o777 == 0o600
    for path in tmp_path.glob("relay.db*"):  # bytes in files, never in database rows
        assert data[:64] not in path.read_bytes()
    async with session_of(bob) as b:
        assert await _download(b.connection, blob_id) == data
        assert await _download(b.connection, blob_id, length=100_000) == data  # any piece size
        tail = await b.connection.request("download", blob_id=blob_id, offset=len(data))
        assert tail == {"id": tail["id"], "ok": True, "data": b"", "size": len(data)}
        await _refused(api.BAD_REQUEST, b.connection.request(
            "download", blob_id=blob_id, offset=len(data) + 1))
        for length in (0, CHUNK + 1):
            await _refused(api.BAD_REQUEST, b.connection.request(
                "download", blob_id=blob_id, offset=0, length=length))


async def test_deleted_after_every_granted_device_fetched_it(nursery, tmp_path: Path,
                                                             relay_db) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    alice_laptop = make_client(tmp_path / "alice-laptop", relay.port)
    await link(alice, alice_laptop, "alice")
    data, blob_id = _blob(1000)
    async with session_of(alice) as a:
        await _upload(a.connection, data, blob_id)
        await _grant(a, "bob", [blob_id])
    granted = {(a, d) for a in ("alice", "bob") for d in (0, 1)
               if (await relay.store.blobs.may_download(blob_id, a, d))}
    assert granted == {("bob", 0), ("alice", 1)}  # the recipients, not the sending device
    stored = relay.server.blobs.folder.path(blob_id)
    async with session_of(bob) as b:
        assert await _download(b.connection, blob_id) == data
        await b.connection.request("download_done", blob_id=blob_id)
        await b.connection.request("download_done", blob_id=blob_id)  # repeated: harmless
    assert stored.exists()  # alice's laptop has not fetched it yet
    async with session_of(alice_laptop) as laptop:
        assert await _download(laptop.connection, blob_id) == data
        await laptop.connection.request("download_done", blob_id=blob_id)
        assert not stored.exists() and (await relay.store.blobs.blob(blob_id)) is None
        await _refused(blob_api.UNKNOWN_BLOB, laptop.connection.request(
            "download", blob_id=blob_id, offset=0))
        await _refused(blob_api.UNKNOWN_BLOB, laptop.connection.request(
            "download_done", blob_id=blob_id))


async def test_a_refused_send_grants_nothing(nursery, tmp_path: Path, relay_db) -> None:
    """The grant is stored with the message: a send refused for a full mailbox leaves no
    device able to fetch the blob it announced; the same send once there is room does."""
    relay, alice, bob = await relay_with_alice_and_bob(
        nursery, tmp_path, RelayConfig(mailbox_quota=1), db=relay_db)
    data, blob_id = _blob(1000)
    async with session_of(alice) as a:
        await a.send_text("bob", "fills bob's mailbox")
        await _upload(a.connection, data, blob_id)
        await _refused(api.QUOTA_EXCEEDED, _grant(a, "bob", [blob_id]))
        assert not await relay.store.blobs.may_download(blob_id, "bob", 0)
    async with session_of(bob) as b:
        await _refused(blob_api.UNKNOWN_BLOB, b.connection.request(
            "download", blob_id=blob_id, offset=0))
    await drain(bob)
    async with session_of(alice) as a:
        await _grant(a, "bob", [blob_id])
    assert await relay.store.blobs.may_download(blob_id, "bob", 0)


async def test_a_send_whose_blob_was_deleted_after_its_check_is_refused(
        nursery, tmp_path: Path, relay_db) -> None:
    """The last granted device's ``download_done`` deletes the blob between a send's check of
    the blobs it announces and the step that stores it: the send is refused as the relay
    refuses an unknown blob, and stores and grants nothing (a grant of a deleted blob would be
    kept for ever)."""
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    data, blob_id = _blob(1000)
    async with session_of(alice) as a:
        await _upload(a.connection, data, blob_id)
        await _grant(a, "bob", [blob_id])
    store = relay.store
    enqueue = store.enqueue
    async with session_of(bob) as b:
        assert await _download(b.connection, blob_id) == data

        async def after_the_last_fetch(write: Enqueue) -> Enqueued:
            if write.blobs:  # the send's check has passed: bob says he has the blob now
                await b.connection.request("download_done", blob_id=blob_id)
            return await enqueue(write)

        store.enqueue = after_the_last_fetch  # type: ignore[method-assign]
        async with session_of(alice) as a:
            refused = await _refused(blob_api.UNKNOWN_BLOB, _grant(a, "bob", [blob_id]))
            never = await _refused(blob_api.UNKNOWN_BLOB, _grant(a, "bob", [bytes(32)]))
    assert str(refused) == str(never)  # as the relay refuses a blob that was never uploaded
    assert (await store.blobs.blob(blob_id)) is None
    assert not await store.blobs.may_download(blob_id, "bob", 0)
    assert relay.server.blobs.folder.stored() == []
    assert len(await store.pending("bob", 0, 0, 10)) == 1  # the first message only


async def test_upload_resumes_where_the_server_file_ends(nursery, tmp_path: Path) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path)
    data, blob_id = _blob(3 * CHUNK + 7)
    async with session_of(alice) as a:  # two chunks, then the connection drops
        begun = await a.connection.request("upload_begin", blob_id=blob_id, size=len(data))
        assert (begun["offset"], begun["complete"]) == (0, False)
        for offset in (0, CHUNK):
            await a.connection.request("upload_chunk", blob_id=blob_id, offset=offset,
                                       data=data[offset:offset + CHUNK])
    async with session_of(alice) as a:  # the same relay: its hash state is in memory
        begun = await a.connection.request("upload_begin", blob_id=blob_id, size=len(data))
        assert (begun["offset"], begun["complete"]) == (2 * CHUNK, False)
        await a.connection.request("upload_chunk", blob_id=blob_id, offset=2 * CHUNK,
                                   data=data[2 * CHUNK:3 * CHUNK])
    await relay.stop()  # a restart: the hash state is gone and is rebuilt from the file
    relay = await start_relay(nursery, tmp_path / "relay.db", port=relay.port)
    async with session_of(alice) as a:
        begun = await a.connection.request("upload_begin", blob_id=blob_id, size=len(data))
        assert begun["offset"] == 3 * CHUNK
        await a.connection.request("upload_chunk", blob_id=blob_id, offset=3 * CHUNK,
                                   data=data[3 * CHUNK:])
        await a.connection.request("upload_finish", blob_id=blob_id)
        again = await a.connection.request("upload_begin", blob_id=blob_id, size=len(data))
        assert (again["offset"], again["complete"]) == (len(data), True)
        await a.connection.request("upload_finish", blob_id=blob_id)  # idempotent
        await _grant(a, "bob", [blob_id])
    async with session_of(bob) as b:
        assert await _download(b.connection, blob_id) == data


async def test_reordered_replayed_and_skipped_chunks_are_refused(nursery,
                                                                 tmp_path: Path) -> None:
    relay, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path)
    data, blob_id = _blob(3000)
    part = relay.server.blobs.folder.path(blob_id, part=True)
    async with session_of(alice) as a:
        request = a.connection.request
        await request("upload_begin", blob_id=blob_id, size=3000)
        skipped = await _refused(blob_api.BLOB_OFFSET, request(
            "upload_chunk", blob_id=blob_id, offset=1000, data=data[1000:2000]))
        assert skipped.details["offset"] == 0 and not part.exists()
        await request("upload_chunk", blob_id=blob_id, offset=0, data=data[:1000])
        replayed = await _refused(blob_api.BLOB_OFFSET, request(
            "upload_chunk", blob_id=blob_id, offset=0, data=data[:1000]))
        assert replayed.details["offset"] == 1000
        await _refused(blob_api.BLOB_OFFSET, request(  # a later chunk first: reordered
            "upload_chunk", blob_id=blob_id, offset=2000, data=data[2000:]))
        assert part.read_bytes() == data[:1000]  # nothing refused was stored
        await _refused(api.BAD_REQUEST, request(  # past the declared size
            "upload_chunk", blob_id=blob_id, offset=1000, data=data[1000:] + b"x"))
        for bad in (b"", bytes(CHUNK + 1), "text"):
            await _refused(api.BAD_REQUEST, request(
                "upload_chunk", blob_id=blob_id, offset=1000, data=bad))
        await request("upload_chunk", blob_id=blob_id, offset=1000, data=data[1000:])
        await request("upload_finish", blob_id=blob_id)
        await _refused(blob_api.BLOB_OFFSET, request(  # after the finish: replayed again
            "upload_chunk", blob_id=blob_id, offset=2000, data=data[2000:]))
    assert relay.server.blobs.folder.path(blob_id).read_bytes() == data


async def test_wrong_hash_discards_the_upload(nursery, tmp_path: Path,
                                              relay_db) -> None:
    relay, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    data, blob_id = _blob(5000)
    tampered = data[:4999] + bytes([data[4999] ^ 1])
    async with session_of(alice) as a:
        await a.connection.request("upload_begin", blob_id=blob_id, size=5000)
        await a.connection.request("upload_chunk", blob_id=blob_id, offset=0, data=tampered)
        await _refused(blob_api.BLOB_HASH_MISMATCH, a.connection.request(
            "upload_finish", blob_id=blob_id))
        assert (await relay.store.blobs.blob(blob_id)) is None
        assert relay.server.blobs.folder.stored() == []
        await _upload(a.connection, data, blob_id)  # from the start, and right this time
    assert relay.server.blobs.folder.path(blob_id).read_bytes() == data


async def test_truncated_upload_cannot_finish_or_be_sent(nursery, tmp_path: Path,
                                                         relay_db) -> None:
    relay, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    data, blob_id = _blob(5000)
    async with session_of(alice) as a:
        await a.connection.request("upload_begin", blob_id=blob_id, size=5000)
        await a.connection.request("upload_chunk", blob_id=blob_id, offset=0, data=data[:4000])
        short = await _refused(blob_api.BLOB_INCOMPLETE, a.connection.request(
            "upload_finish", blob_id=blob_id))
        assert short.details["offset"] == 4000
        await _refused(blob_api.BLOB_INCOMPLETE, _grant(a, "bob", [blob_id]))
    assert (await relay.store.pending("bob", 0, 0, 10)) == []  # the refused send stored nothing


async def test_oversized_blobs_and_full_frames(nursery, tmp_path: Path) -> None:
    _, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path)
    limit = blob_size(MAX_MEDIA_SIZE)
    assert limit == 104_884_800  # PROTOCOL.md §14.1: the largest file's ciphertext fits
    data, blob_id = _blob(CHUNK + 1)
    async with session_of(alice) as a:
        too_large = await _refused(blob_api.BLOB_TOO_LARGE, a.connection.request(
            "upload_begin", blob_id=blob_id, size=limit + 1))
        assert too_large.details["limit"] == limit
        for size in (16, -1, 2**63, True, "17"):
            await _refused(api.BAD_REQUEST, a.connection.request(
                "upload_begin", blob_id=blob_id, size=size))
        await _refused(api.BAD_REQUEST, a.connection.request(
            "upload_begin", blob_id=blob_id[:31], size=100))
        await a.connection.request("upload_begin", blob_id=blob_id, size=len(data))
        await _refused(api.BAD_REQUEST, a.connection.request(  # the same id, another size
            "upload_begin", blob_id=blob_id, size=len(data) + 1))
        # A full chunk's frame stays inside the 1 MiB frame limit.
        assert len(encode_frame({"id": 2**31, "type": "upload_chunk", "blob_id": blob_id,
                                 "offset": 2**62, "data": data[:CHUNK]})) - 4 <= MAX_FRAME_SIZE
        await a.connection.request("upload_chunk", blob_id=blob_id, offset=0, data=data[:CHUNK])
        await a.connection.request("upload_chunk", blob_id=blob_id, offset=CHUNK,
                                   data=data[CHUNK:])
        await a.connection.request("upload_finish", blob_id=blob_id)


async def test_quota_and_unfinished_uploads_per_account(nursery, tmp_path: Path,
                                                        relay_db) -> None:
    config = RelayConfig(blobs=BlobLimits(quota=10_000, max_pending_uploads=2))
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, config, db=relay_db)
    blobs = [_blob(4000, seed) for seed in range(4)]
    async with session_of(alice) as a:
        for data, blob_id in blobs[:2]:
            await a.connection.request("upload_begin", blob_id=blob_id, size=len(data))
        pending = await _refused(blob_api.QUOTA_EXCEEDED, a.connection.request(
            "upload_begin", blob_id=blobs[2][1], size=100))
        assert "unfinished" in str(pending)
        for data, blob_id in blobs[:2]:
            await _upload(a.connection, data, blob_id)
        full = await _refused(blob_api.QUOTA_EXCEEDED, a.connection.request(
            "upload_begin", blob_id=blobs[2][1], size=4000))
        assert (full.details["used"], full.details["limit"]) == (8000, 10_000)
        assert (await relay.store.blobs.blob(blobs[2][1])) is None
    async with session_of(bob) as b:  # the quota is per account
        await _upload(b.connection, *blobs[3])


async def test_someone_elses_blob_is_refused(nursery, tmp_path: Path,
                                             relay_db) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    mallory = make_client(tmp_path / "mallory", relay.port)
    await register(mallory, "mallory")
    data, blob_id = _blob(3000)
    async with session_of(alice) as a:
        await _upload(a.connection, data, blob_id)
        await _grant(a, "bob", [blob_id])
    async with session_of(mallory) as m:
        for kind, fields in (("download", {"offset": 0}), ("download_done", {}),
                             ("upload_chunk", {"offset": 0, "data": b"x"}),
                             ("upload_finish", {})):
            await _refused(blob_api.UNKNOWN_BLOB, m.connection.request(
                kind, blob_id=blob_id, **fields))
        await _refused(blob_api.BLOB_TAKEN, m.connection.request(
            "upload_begin", blob_id=blob_id, size=3000))
        await _refused(blob_api.UNKNOWN_BLOB, _grant(m, "bob", [blob_id]))  # not mallory's
        await _refused(api.BAD_REQUEST, _grant(m, "bob", [blob_id, blob_id]))
    async with session_of(alice) as a:  # the sending device was not sent it either
        await _refused(blob_api.UNKNOWN_BLOB, a.connection.request(
            "download", blob_id=blob_id, offset=0))
    assert (await relay.store.pending("bob", 0, 0, 10))[0].seq > 0  # only alice's message arrived
    assert len(await relay.store.pending("bob", 0, 0, 10)) == 1


async def test_ttl_removes_blobs_and_unfinished_uploads(nursery, tmp_path: Path,
                                                        relay_db) -> None:
    now = [1_000_000.0]
    config = RelayConfig(blobs=BlobLimits(ttl=100, upload_ttl=10))
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, config, db=relay_db)
    relay.server.clock = lambda: now[0]
    (done, done_id), (half, half_id) = _blob(2000, 1), _blob(2000, 2)
    async with session_of(alice) as a:
        await _upload(a.connection, done, done_id)
        await _grant(a, "bob", [done_id])
        await a.connection.request("upload_begin", blob_id=half_id, size=2000)
        await a.connection.request("upload_chunk", blob_id=half_id, offset=0, data=half[:10])
    blobs = relay.server.blobs
    now[0] += 11
    assert await blobs.expire() == 1  # the unfinished upload only
    assert blobs.folder.stored() == [done_id]
    now[0] += 90
    assert await blobs.expire() == 1
    assert blobs.folder.stored() == [] and (await relay.store.blobs.blob(done_id)) is None
    assert not (await relay.store.blobs.may_download(done_id, "bob", 0))  # grants go too
    async with session_of(bob) as b:
        await _refused(blob_api.UNKNOWN_BLOB, b.connection.request(
            "download", blob_id=done_id, offset=0))


async def test_files_without_a_record_are_swept(nursery, tmp_path: Path,
                                                relay_db) -> None:
    relay, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    kept, kept_id = _blob(100, 1)
    async with session_of(alice) as a:
        await _upload(a.connection, kept, kept_id)
    folder = relay.server.blobs.folder
    orphan = folder.path(bytes(32))
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"left by a crash between the row and the file")
    (folder.root / "not-a-blob").mkdir()
    assert await relay.server.blobs.sweep() == 1
    assert folder.stored() == [kept_id]


class _LogCounter(logging.Handler):
    """Sets ``reached`` once ``count`` records containing ``text`` were logged."""

    def __init__(self, text: str, count: int) -> None:
        super().__init__()
        self.text, self.count, self.seen = text, count, 0
        self.reached = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen += 1
            if self.seen >= self.count:
                self.reached.set()


async def _expire_until_logged(service: BlobService, text: str, count: int) -> int:
    """Run the background expiry (every millisecond) until ``text`` was logged ``count``
    times; how many times it was."""
    counter = _LogCounter(text, count)
    logger = logging.getLogger("e2e.blobs")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(counter)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service.expire_forever, 0.001)
            with trio.fail_after(30):
                await counter.reached.wait()
            nursery.cancel_scope.cancel()
    finally:
        logger.removeHandler(counter)
        logger.setLevel(level)
    return counter.seen


async def test_expiry_outlives_storage_that_fails(tmp_path: Path) -> None:
    """The background expiry logs a storage failure (a redis-server that is down) and tries
    again an interval later, instead of ending the server (a task that raised would take its
    node down); once Redis is back, the expired blob goes."""
    redis = LocalRedis(tmp_path / "redis")
    try:
        async with open_backend(redis.url()) as (store, _hub):
            now = [1e9]
            service = BlobService(store.blobs, BlobFolder(tmp_path / "blobs"),
                                  BlobLimits(ttl=10), lambda: now[0])
            await store.blobs.begin_blob(bytes(32), "alice", 10, now[0], 10**6, 5)
            await store.blobs.complete_blob(bytes(32))
            now[0] += 11
            redis.kill()
            assert await _expire_until_logged(service, "could not expire blobs", 3) >= 3
            redis.start()
            await _expire_until_logged(service, "expired 1 blobs", 1)
            assert await store.blobs.blob(bytes(32)) is None
    finally:
        redis.kill()


class _Unlistable(BlobFolder):
    """A blob folder whose listing fails (a disk that cannot be read)."""

    def stored(self) -> list[bytes]:
        raise StoreUnavailableError("cannot list the blobs: [Errno 5] Input/output error")


async def test_expiry_runs_while_the_folder_cannot_be_listed(tmp_path: Path, relay_db) -> None:
    """A sweep that keeps failing does not stop the expiry, which needs no listing."""
    async with open_backend(store_url(relay_db)) as (store, _hub):
        now = [1e9]
        service = BlobService(store.blobs, _Unlistable(tmp_path / "blobs"), BlobLimits(ttl=10),
                              lambda: now[0])
        await store.blobs.begin_blob(bytes(32), "alice", 10, now[0], 10**6, 5)
        await store.blobs.complete_blob(bytes(32))
        now[0] += 100
        await _expire_until_logged(service, "expired 1 blobs", 1)
        assert await store.blobs.blob(bytes(32)) is None


async def test_storage_failure_answers_unavailable(nursery, tmp_path: Path) -> None:
    relay, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path)
    data, blob_id = _blob(100)
    folder = relay.server.blobs.folder
    blocked = folder.path(blob_id).parent
    async with session_of(alice) as a:
        await a.connection.request("upload_begin", blob_id=blob_id, size=100)
        blocked.parent.mkdir()
        blocked.write_bytes(b"")  # a file where the blob's folder goes: writing fails, as on
        await _refused(api.UNAVAILABLE, a.connection.request(
            "upload_chunk", blob_id=blob_id, offset=0, data=data))  # a full disk, even as root
        blocked.unlink()
        await _upload(a.connection, data, blob_id)  # resumes at 0: nothing was counted
    assert folder.path(blob_id).read_bytes() == data


async def _transfer_peak(nursery, tmp_path: Path, size: int) -> int:
    """Peak traced memory of uploading and downloading a ``size``-byte blob (server and the
    requests; the blob itself is made and checked chunk by chunk, never held whole)."""
    (tmp_path / str(size)).mkdir()
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path / str(size))
    block = os.urandom(CHUNK)
    hasher = hashlib.sha256()
    for offset in range(0, size, CHUNK):
        hasher.update(block[:min(CHUNK, size - offset)])
    blob_id = hasher.digest()
    tracemalloc.start()
    try:
        async with session_of(alice) as a:
            await a.connection.request("upload_begin", blob_id=blob_id, size=size)
            for offset in range(0, size, CHUNK):
                await a.connection.request("upload_chunk", blob_id=blob_id, offset=offset,
                                           data=block[:min(CHUNK, size - offset)])
            await a.connection.request("upload_finish", blob_id=blob_id)
            await _grant(a, "bob", [blob_id])
        async with session_of(bob) as b:
            check = hashlib.sha256()
            for offset in range(0, size, CHUNK):
                check.update((await b.connection.request(
                    "download", blob_id=blob_id, offset=offset))["data"])
        assert check.digest() == blob_id
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        await relay.stop()


async def test_server_memory_does_not_grow_with_the_blob(nursery, tmp_path: Path) -> None:
    small = await _transfer_peak(nursery, tmp_path, 4 * 2**20)
    large = await _transfer_peak(nursery, tmp_path, 32 * 2**20)
    assert large < small + 2 * 2**20, (small, large)  # 28 MiB more data, not 28 MiB more memory
    assert large < 8 * 2**20, large  # a few 1 MiB frames in flight
