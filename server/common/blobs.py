"""A server's blob store: ciphertext files in a folder, uploads checked against their id.

Both servers run one :class:`BlobService` over their own :class:`BlobFolder` and
:class:`~server.common.blob_index.BlobIndex`, with their own :class:`BlobLimits`.

Invariants:

* Bytes live in files, never in database rows: ``FOLDER/ab/abcd….part`` while uploading,
  ``FOLDER/ab/abcd…`` once complete (file mode 0600, folders 0700).
* Memory stays constant whatever the size: a chunk (at most ``BLOB_CHUNK_SIZE``) is written to
  the part file and hashed as it arrives, in a worker thread, and a download reads one chunk
  from disk at a time.
* A chunk is accepted only at the offset where the stored bytes end, so a reordered, replayed
  or skipped chunk is refused and an upload resumes exactly where the server's file ends.
* A blob is complete only when its declared size arrived and its SHA-256 equals its id; a
  mismatch discards the upload.

The SHA-256 state of an unfinished upload is kept in memory between chunks (hashlib objects
cannot be saved); when it is missing (a server restart) the stored prefix is hashed again from
disk before the upload continues. Hashing as chunks arrive costs the finish nothing; hashing
at the finish would stall it for the whole file (about 0.1 s per 100 MiB here).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from e2e_proto import blob_api as api
from e2e_proto.constants import MAX_MEDIA_SIZE
from e2e_proto.media import blob_size

from .blob_index import BlobIndex, BlobQuotaError, BlobRecord, BlobTakenError
from .requests import RequestError
from .store_base import StoreUnavailableError

log = logging.getLogger("e2e.blobs")

DAY = 24 * 3600.0
_READ_BLOCK = 1024 * 1024


def default_blob_dir(database: str | os.PathLike[str]) -> Path:
    """Where a server keeps its blobs when not told: ``NAME-blobs`` beside ``NAME.db``."""
    path = Path(database)
    return path.with_name(path.stem + "-blobs")


@dataclass(frozen=True, slots=True)
class BlobLimits:
    """One server's limits on blobs."""

    max_blob_size: int = blob_size(MAX_MEDIA_SIZE)
    """The largest blob in bytes: a ``MAX_MEDIA_SIZE`` file's ciphertext (PROTOCOL.md
    Differences 5)."""
    quota: int = 1024 ** 3
    """Bytes of blobs one account may hold at once, finished or not."""
    ttl: float = 30 * DAY
    """Seconds a complete blob is kept after its upload began."""
    upload_ttl: float = DAY
    """Seconds an unfinished upload is kept after it began."""
    max_pending_uploads: int = 8
    """Unfinished uploads one account may have at once."""


class BlobFolder:
    """The files of one server's blobs, fanned out by the first byte of their id.

    Every method is blocking file I/O, for a worker thread; an ``OSError`` becomes
    :class:`StoreUnavailableError` (the server answers ``unavailable``).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, blob_id: bytes, part: bool = False) -> Path:
        """The file of a blob (its part file while unfinished)."""
        name = blob_id.hex()
        return self.root / name[:2] / (name + ".part" if part else name)

    def hash_prefix(self, blob_id: bytes) -> tuple[int, hashlib._Hash]:
        """The length of the part file and the SHA-256 state of its bytes (0 if none)."""
        hasher = hashlib.sha256()
        try:
            with open(self.path(blob_id, part=True), "rb") as file:
                while block := file.read(_READ_BLOCK):
                    hasher.update(block)
                return file.tell(), hasher
        except FileNotFoundError:
            return 0, hasher
        except OSError as exc:
            raise StoreUnavailableError(f"cannot read a blob: {exc}") from exc

    def write(self, blob_id: bytes, offset: int, data: bytes, hasher: hashlib._Hash) -> None:
        """Write ``data`` at ``offset`` of the part file (cut there), then hash it.

        On a failure (a full disk) the file is cut back to ``offset`` and the hash is untouched.
        """
        path = self.path(blob_id, part=True)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot write a blob: {exc}") from exc
        try:
            written = 0
            view = memoryview(data)
            while written < len(view):
                written += os.pwrite(fd, view[written:], offset + written)
            os.ftruncate(fd, offset + len(view))
        except OSError as exc:
            try:
                os.ftruncate(fd, offset)
            except OSError:
                pass
            raise StoreUnavailableError(f"cannot write a blob: {exc}") from exc
        finally:
            os.close(fd)
        hasher.update(data)

    def seal(self, blob_id: bytes) -> None:
        """Make the part file the blob's file, durably (fsync, rename, fsync the folder)."""
        part, final = self.path(blob_id, part=True), self.path(blob_id)
        try:
            fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(part, final)
            directory = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot store a blob: {exc}") from exc

    def read(self, blob_id: bytes, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of a complete blob from ``offset``."""
        try:
            with open(self.path(blob_id), "rb") as file:
                file.seek(offset)
                return file.read(length)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot read a blob: {exc}") from exc

    def delete(self, blob_id: bytes) -> None:
        """Remove a blob's files, if there are any."""
        for part in (True, False):
            try:
                self.path(blob_id, part).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not delete a blob file: %s", exc)

    def stored(self) -> list[bytes]:
        """The ids of every blob that has a file here, finished or not."""
        ids = set()
        try:
            if not self.root.is_dir():
                return []
            for folder in self.root.iterdir():
                if not folder.is_dir():
                    continue
                for file in folder.iterdir():
                    try:
                        ids.add(bytes.fromhex(file.name.removesuffix(".part")))
                    except ValueError:
                        continue
        except OSError as exc:
            raise StoreUnavailableError(f"cannot list the blobs: {exc}") from exc
        return sorted(ids)


@dataclass(eq=False)
class _Upload:
    """An unfinished upload's state between chunks: where its file ends and its hash so far."""

    offset: int = 0
    hasher: hashlib._Hash | None = None  # None until the stored prefix is hashed
    lock: trio.Lock = field(default_factory=trio.Lock)


class BlobService:
    """Uploads, downloads and expiry over one folder and one index.

    Refusals are :class:`~server.common.requests.RequestError` with the codes of
    :mod:`e2e_proto.blob_api` (``bad_request`` is given as ``bad_request``, the server's own).
    """

    def __init__(self, index: BlobIndex, folder: BlobFolder, limits: BlobLimits,
                 clock: Callable[[], float], bad_request: str = "bad_request") -> None:
        self.index = index
        self.folder = folder
        self.limits = limits
        self.clock = clock
        self.bad_request = bad_request
        self._uploads: dict[bytes, _Upload] = {}
        self._io = trio.CapacityLimiter(2)  # file I/O threads (writes, reads, hashing)

    async def _run(self, function: Callable[..., object], *args: object) -> object:
        return await trio.to_thread.run_sync(function, *args, limiter=self._io)

    # -- uploads ------------------------------------------------------------------------------

    async def begin(self, owner: str, blob_id: bytes, size: int) -> tuple[int, bool]:
        """Begin (or resume) ``owner``'s upload of a ``size``-byte blob.

        Returns how many bytes the server has and whether the blob is complete already.
        """
        limits = self.limits
        if size > limits.max_blob_size:
            raise RequestError(api.BLOB_TOO_LARGE, f"a file may have at most "
                               f"{limits.max_blob_size} encrypted bytes (declared {size})",
                               limit=limits.max_blob_size)
        try:
            record = await self.index.begin_blob(blob_id, owner, size, self.clock(),
                                                 limits.quota, limits.max_pending_uploads)
        except BlobTakenError:
            raise RequestError(api.BLOB_TAKEN, "another account uses this blob id; encrypt "
                               "the file again") from None
        except BlobQuotaError as exc:
            raise RequestError(api.QUOTA_EXCEEDED, str(exc), used=exc.used,
                               limit=exc.limit) from None
        if record.size != size:
            raise RequestError(self.bad_request, f"this upload was begun with size "
                               f"{record.size}, not {size}")
        if record.complete:
            return size, True
        upload = await self._resumed(record)
        return upload.offset, False

    async def _resumed(self, record: BlobRecord) -> _Upload:
        """The in-memory state of an unfinished upload, rebuilt from its file if need be."""
        upload = self._uploads.get(record.blob_id)
        if upload is None:
            upload = self._uploads[record.blob_id] = _Upload()
        async with upload.lock:
            if upload.hasher is None:
                offset, hasher = await self._run(self.folder.hash_prefix, record.blob_id)
                upload.offset, upload.hasher = offset, hasher  # type: ignore[assignment]
        return upload

    async def _owned(self, owner: str, blob_id: bytes) -> BlobRecord:
        record = await self.index.blob(blob_id)
        if record is None or record.owner != owner:
            raise RequestError(api.UNKNOWN_BLOB, "no upload of this blob id by this account: "
                               "send upload_begin first")
        return record

    async def write(self, owner: str, blob_id: bytes, offset: int, data: bytes) -> int:
        """Store one chunk at ``offset``; how many bytes the server has now."""
        record = await self._owned(owner, blob_id)
        if record.complete:
            raise RequestError(api.BLOB_OFFSET, "the blob is complete already",
                               offset=record.size)
        upload = await self._resumed(record)
        async with upload.lock:
            if offset != upload.offset:
                raise RequestError(api.BLOB_OFFSET, f"the next chunk starts at {upload.offset}, "
                                   f"not {offset}", offset=upload.offset)
            if offset + len(data) > record.size:
                raise RequestError(self.bad_request, f"the chunk ends past the declared size "
                                   f"{record.size}")
            if self._uploads.get(blob_id) is not upload:  # expired while this one waited
                raise RequestError(api.UNKNOWN_BLOB, "the upload expired")
            await self._run(self.folder.write, blob_id, offset, data, upload.hasher)
            upload.offset += len(data)
            return upload.offset

    async def finish(self, owner: str, blob_id: bytes) -> int:
        """Check the uploaded bytes against the blob id and keep the blob; its size."""
        record = await self._owned(owner, blob_id)
        if record.complete:
            return record.size
        upload = await self._resumed(record)
        async with upload.lock:
            if upload.offset < record.size:
                raise RequestError(api.BLOB_INCOMPLETE, f"the server has {upload.offset} of "
                                   f"{record.size} bytes", offset=upload.offset)
            assert upload.hasher is not None
            if upload.hasher.digest() != blob_id:
                await self.delete(blob_id)
                raise RequestError(api.BLOB_HASH_MISMATCH, "the uploaded bytes do not hash to "
                                   "the blob id; the upload was discarded")
            await self._run(self.folder.seal, blob_id)
            await self.index.complete_blob(blob_id)
            self._uploads.pop(blob_id, None)
        return record.size

    # -- downloads, deletion and expiry -------------------------------------------------------

    async def complete(self, blob_id: bytes) -> BlobRecord | None:
        """The record of a complete blob, None for an unknown or unfinished one."""
        record = await self.index.blob(blob_id)
        return record if record is not None and record.complete else None

    async def read(self, blob_id: bytes, offset: int, length: int) -> tuple[bytes, int]:
        """Up to ``length`` bytes of a complete blob from ``offset``, and its size.

        The caller has checked that the device may read it.
        """
        record = await self.complete(blob_id)
        if record is None:
            raise RequestError(api.UNKNOWN_BLOB, "no such file on this server (expired?)")
        if offset > record.size:
            raise RequestError(self.bad_request, f"offset past the end of the blob "
                               f"({record.size} bytes)")
        length = min(length, record.size - offset)
        data = b"" if length == 0 else await self._run(self.folder.read, blob_id, offset, length)
        return data, record.size  # type: ignore[return-value]

    async def delete(self, blob_id: bytes) -> None:
        """Forget a blob and remove its files."""
        self._uploads.pop(blob_id, None)
        await self.index.delete_blob(blob_id)
        await self._run(self.folder.delete, blob_id)

    async def expire(self) -> int:
        """Delete blobs past their TTL (and unfinished uploads past theirs); how many."""
        now = self.clock()
        ids = await self.index.expire_blobs(now - self.limits.ttl, now - self.limits.upload_ttl)
        for blob_id in ids:
            self._uploads.pop(blob_id, None)
            await self._run(self.folder.delete, blob_id)
        return len(ids)

    async def sweep(self) -> int:
        """Remove files no record names (left by a crash between the two); how many."""
        orphans = [b for b in await self._run(self.folder.stored)  # type: ignore[union-attr]
                   if await self.index.blob(b) is None]
        for blob_id in orphans:
            await self._run(self.folder.delete, blob_id)
        return len(orphans)

    async def expire_forever(self, interval: float = 3600.0) -> None:
        """Sweep orphan files (until a sweep succeeds), and expire blobs, now and every
        ``interval`` seconds. Storage that fails (a disk that cannot be read, a Redis that is
        down) is logged and tried again an interval later: it never ends the server, and a
        sweep that keeps failing does not stop the expiry."""
        swept = False
        while True:
            if not swept:
                try:
                    removed = await self.sweep()
                except StoreUnavailableError as exc:
                    log.warning("could not sweep blobs: %s", exc)
                else:
                    swept = True
                    if removed:
                        log.info("removed %d blob files without a record", removed)
            try:
                removed = await self.expire()
            except StoreUnavailableError as exc:
                log.warning("could not expire blobs: %s", exc)
            else:
                if removed:
                    log.info("expired %d blobs past their TTL", removed)
            await trio.sleep(interval)


def scratch_blob_dir() -> Path:
    """A fresh private folder for a server whose store has no file to put blobs beside."""
    return Path(tempfile.mkdtemp(prefix="e2e-blobs-"))
