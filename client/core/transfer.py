"""Moving an attachment: encrypt a file into a blob, upload it, download and decrypt one.

The same on both transports (docs/PROTOCOL.md §17). Memory stays constant whatever the size:
the file is read, encrypted and written 64 KiB at a time, a transfer keeps at most
:data:`WINDOW` chunks of 1 MiB in flight, and a download is decrypted and written chunk by chunk.

A received file is written to a hidden ``.incoming-ID`` file in the files folder and only gets
its name there once the whole stream verified (and its SHA-256 matched the one its message
announced, if any): a failed download leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import trio

from e2e_proto import blob_api
from e2e_proto.constants import MAX_MEDIA_SIZE, MEDIA_CHUNK_SIZE
from e2e_proto.errors import E2EProtoError, MediaError
from e2e_proto.media import MediaDecryptor, MediaEncryptor, SealedMedia, blob_size
from e2e_proto.primitives import RandomSource

from .connection import Connection, PendingRequest, ServerError
from .errors import ClientError
from .files import FileRecord, FileStore, Outgoing, reserve_name

WINDOW = 4
"""Requests of one transfer in flight at once (each carries up to ``BLOB_CHUNK_SIZE`` bytes)."""
_READ_SIZE = MEDIA_CHUNK_SIZE  # whole chunks: the encryptor seals them without a copy
_RESYNCS = 3


def encrypt_file(source: Path, target: Path, random: RandomSource,
                 max_size: int = MAX_MEDIA_SIZE) -> SealedMedia:
    """Encrypt ``source`` into a new file ``target`` (mode 0600), a chunk at a time.

    Blocking file I/O and CPU: run it in a worker thread. The result's ``tail`` is already
    written; ``sha256`` is the plaintext's.
    """
    encryptor = MediaEncryptor(random, hash_plaintext=True, max_size=max_size)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with open(source, "rb") as plain, os.fdopen(fd, "wb") as out:
            while piece := plain.read(_READ_SIZE):
                out.write(encryptor.feed(piece))
            sealed = encryptor.finish()
            out.write(sealed.tail)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return sealed


class BlobSecrets(Protocol):
    """What fetching and decrypting a blob takes: a
    :class:`~e2e_proto.media.MediaPayload` has it all."""

    blob_id: bytes
    key: bytes
    header: bytes
    size: int
    name: str | None
    sha256: bytes | None


def guess_mime(name: str) -> str:
    """The MIME type of a file name's extension; ``application/octet-stream`` when unknown."""
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


async def prepare(files: FileStore, source: Path, peer: str, random: RandomSource,
                  max_size: int = MAX_MEDIA_SIZE) -> Outgoing:
    """The encrypted blob of ``source`` for sending to ``peer``: made once (in a worker thread)
    and kept in ``HOME/outgoing/`` until it is sent, so that a new attempt (after a lost
    connection, or in a new run) resumes the same upload."""
    try:
        info = source.stat()
    except OSError as exc:
        raise ClientError(f"cannot read {source}: {exc.strerror or exc}") from None
    if not source.is_file():
        raise ClientError(f"{source} is not a file")
    if info.st_size > max_size:
        raise ClientError(f"{source} has {info.st_size} bytes; a file may have at most "
                          f"{max_size} ({max_size // 2**20} MiB)")
    key = "\n".join((peer, str(source.resolve()), str(info.st_size), str(info.st_mtime_ns)))
    found = files.outgoing(key)
    if found is not None:
        return found
    folder = files.outgoing_folder
    staging = folder / f".staging-{random(8).hex()}"
    try:
        sealed = await trio.to_thread.run_sync(encrypt_file, source, staging, random, max_size)
    except OSError as exc:
        raise ClientError(f"cannot read {source}: {exc.strerror or exc}") from None
    assert sealed.sha256 is not None
    outgoing = Outgoing(key, sealed.blob_id, sealed.key, sealed.header, sealed.size,
                        sealed.sha256, folder / sealed.blob_id.hex())
    os.replace(staging, outgoing.blob)
    files.add_outgoing(outgoing)
    return outgoing


async def send_blob(connection: Connection, outgoing: Outgoing, server: str) -> None:
    """Upload a prepared blob; a refusal becomes a :class:`ClientError` that says why."""
    try:
        await upload(connection, outgoing.blob, outgoing.blob_id)
    except ServerError as exc:
        reasons = {blob_api.BLOB_TOO_LARGE: "the file is larger than the server takes",
                   blob_api.QUOTA_EXCEEDED: "your files on the server use up your quota"}
        reason = reasons.get(exc.code, "the upload was refused")
        raise ClientError(f"{reason}: the {server} said: {exc} ({exc.code})") from None


async def upload(connection: Connection, blob: Path, blob_id: bytes) -> None:
    """Upload the blob file (resuming where the server's copy ends) and have it checked.

    A ``blob_offset`` refusal (a chunk of an earlier connection landed after this one asked
    where to go on) moves the upload to the offset the server gives, a few times at most.
    Raises :class:`~client.core.connection.ServerError` when the server refuses.
    """
    size = blob.stat().st_size
    begun = await connection.request(blob_api.UPLOAD_BEGIN, blob_id=blob_id, size=size)
    if begun.get("complete") is True:
        return
    offset = _offset(begun.get("offset"), size)
    for attempt in range(_RESYNCS + 1):
        try:
            await _send_chunks(connection, blob, blob_id, offset, size)
            break
        except ServerError as exc:
            if exc.code != blob_api.BLOB_OFFSET or attempt == _RESYNCS:
                raise
            offset = _offset(exc.details.get("offset"), size)  # where the server's copy ends
    await connection.request(blob_api.UPLOAD_FINISH, blob_id=blob_id)


def _offset(value: object, size: int) -> int:
    if type(value) is not int or not 0 <= value <= size:
        raise ClientError("the server gave a bad upload offset")
    return value


async def _send_chunks(connection: Connection, blob: Path, blob_id: bytes, offset: int,
                       size: int) -> None:
    """Send ``blob[offset:size]`` in chunks, :data:`WINDOW` in flight."""
    pending: deque[PendingRequest] = deque()
    try:
        with open(blob, "rb") as file:
            file.seek(offset)
            while offset < size:
                data = file.read(blob_api.BLOB_CHUNK_SIZE)
                if not data:
                    raise ClientError(f"{blob} is shorter than when it was encrypted")
                pending.append(await connection.submit(
                    blob_api.UPLOAD_CHUNK, blob_id=blob_id, offset=offset, data=data))
                offset += len(data)
                if len(pending) >= WINDOW:
                    await pending.popleft().response()
        while pending:
            await pending.popleft().response()
    finally:
        for request in pending:
            request.discard()


def _offsets(size: int) -> Iterator[int]:
    return iter(range(0, size, blob_api.BLOB_CHUNK_SIZE))


async def download(connection: Connection, media: BlobSecrets, folder: Path, temp_name: str,
                   max_size: int = MAX_MEDIA_SIZE) -> tuple[Path, bytes]:
    """Download, check and decrypt the blob of ``media`` into a new file in ``folder``.

    Returns the file (named from ``media.name``, made safe and unique) and the SHA-256 of its
    plaintext. On any failure nothing is left in ``folder`` and the error is raised:
    :class:`~e2e_proto.errors.MediaError` and its kin for a blob that does not verify,
    :class:`ServerError` for a refusal, :class:`ConnectionLost`, ``OSError``.
    """
    expected = blob_size(media.size)
    decryptor = MediaDecryptor(media.key, media.header, media.size, media.blob_id,
                               max_size=max_size)
    hasher = hashlib.sha256()
    temp = folder / temp_name
    pending: deque[tuple[int, PendingRequest]] = deque()
    offsets = _offsets(expected)

    async def ask_next() -> None:
        offset = next(offsets, None)
        if offset is not None:
            pending.append((offset, await connection.submit(
                blob_api.DOWNLOAD, blob_id=media.blob_id, offset=offset)))

    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            for _ in range(WINDOW):
                await ask_next()
            while pending:
                offset, request = pending.popleft()
                answer = await request.response()
                data = answer.get("data")
                if answer.get("size") != expected or type(data) is not bytes or len(data) != min(
                        blob_api.BLOB_CHUNK_SIZE, expected - offset):
                    raise MediaError("the server's blob is not as long as its message says")
                await ask_next()
                plain = await trio.to_thread.run_sync(decryptor.feed, data)
                hasher.update(plain)
                out.write(plain)
            plain = decryptor.finish()
            hasher.update(plain)
            out.write(plain)
            out.flush()
            os.fsync(out.fileno())
        digest = hasher.digest()
        if media.sha256 is not None and digest != media.sha256:
            raise MediaError("the file's SHA-256 is not the one its message announced")
        final = reserve_name(folder, media.name)
        os.replace(temp, final)
        return final, digest
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        for _, request in pending:
            request.discard()


async def fetch(connection: Connection, files: FileStore, record: FileRecord,
                server: str) -> FileRecord:
    """Download, check and save the file of ``record`` into the files folder; the updated
    record says where, or (``error``) why not. A lost connection is raised, not recorded."""
    try:
        path, digest = await download(connection, record.media, files.folder,
                                      f".incoming-{record.message}")
    except ServerError as exc:
        return files.failed(record.message, f"the {server} refused the download: {exc} "
                            f"({exc.code})")
    except E2EProtoError as exc:
        return files.failed(record.message, f"the file does not verify: {exc}")
    except OSError as exc:
        return files.failed(record.message, f"cannot save the file: {exc}")
    return files.saved(record.message, path, digest)
