"""The blob requests both servers answer the same way: upload (begin, chunk, finish) and download.

Each server lists these handlers in its route table; its connection supplies the
:class:`BlobConnection` hooks: its :class:`~server.common.blobs.BlobService` and whether the
authenticated device may download a blob (the relay: a device the blob was sent to; the social
server: a member of a conversation it was sent in). docs/PROTOCOL.md §17 lists the frames.
"""

from __future__ import annotations

from typing import Any, Protocol

from e2e_proto import blob_api as api
from e2e_proto.address import Address

from .blobs import BlobService
from .requests import ErrorCodes, RequestError


class BlobConnection(Protocol):
    """What the blob handlers need of a server's connection."""

    address: Address | None
    codes: ErrorCodes

    @property
    def blobs(self) -> BlobService:
        """The server's blob store."""
        ...

    async def may_download(self, blob_id: bytes) -> bool:
        """Whether this connection's device may download ``blob_id``."""
        ...


NOT_UPLOADED = "a blob in this message was not uploaded by this account"
"""The refusal (``unknown_blob``) of a message announcing a blob its account has not
uploaded, or that is gone."""


def blob_id_field(conn: BlobConnection, frame: dict[str, Any], name: str = "blob_id") -> bytes:
    """``frame[name]`` as a blob id (32 bytes)."""
    value = frame.get(name)
    if not api.is_blob_id(value):
        raise RequestError(conn.codes.bad_request, f"field {name!r} must be a 32-byte blob id")
    return value  # type: ignore[return-value]


def _count_field(conn: BlobConnection, frame: dict[str, Any], name: str, low: int, high: int,
                 default: int | None = None) -> int:
    value = frame.get(name, default)
    if type(value) is not int or not low <= value <= high:
        raise RequestError(conn.codes.bad_request, f"field {name!r} must be an integer from "
                           f"{low} to {high}")
    return value


def blob_ids_field(conn: BlobConnection, frame: dict[str, Any], name: str = "blobs"
                   ) -> list[bytes]:
    """``frame[name]``: at most ``MAX_BLOBS_PER_MESSAGE`` distinct blob ids (absent: none)."""
    value = frame.get(name)
    if value is None:
        return []
    if (type(value) is not list or len(value) > api.MAX_BLOBS_PER_MESSAGE
            or not all(api.is_blob_id(b) for b in value) or len(set(value)) != len(value)):
        raise RequestError(conn.codes.bad_request, f"field {name!r} must be a list of at most "
                           f"{api.MAX_BLOBS_PER_MESSAGE} distinct 32-byte blob ids")
    return value


async def own_complete_blobs(conn: BlobConnection, blob_ids: list[bytes]) -> None:
    """Refuse unless every blob is complete and was uploaded by this account.

    So a device can only hand on (grant, announce) files its own account uploaded.
    """
    assert conn.address is not None
    for blob_id in blob_ids:
        record = await conn.blobs.index.blob(blob_id)
        if record is None or record.owner != conn.address.account:
            raise RequestError(api.UNKNOWN_BLOB, NOT_UPLOADED)
        if not record.complete:
            raise RequestError(api.BLOB_INCOMPLETE, "a blob in this message is not finished: "
                               "send upload_finish first")


async def upload_begin(conn: BlobConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Begin or resume an upload: how many bytes the server has, and whether it is complete."""
    assert conn.address is not None
    blob_id = blob_id_field(conn, frame)
    size = _count_field(conn, frame, "size", api.MIN_BLOB_SIZE, 2**63 - 1)
    offset, complete = await conn.blobs.begin(conn.address.account, blob_id, size)
    return {"offset": offset, "complete": complete}


async def upload_chunk(conn: BlobConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Store one chunk where the stored bytes end; the new offset."""
    assert conn.address is not None
    blob_id = blob_id_field(conn, frame)
    offset = _count_field(conn, frame, "offset", 0, 2**63 - 1)
    data = frame.get("data")
    if type(data) is not bytes or not 0 < len(data) <= api.BLOB_CHUNK_SIZE:
        raise RequestError(conn.codes.bad_request, f"field 'data' must be 1 to "
                           f"{api.BLOB_CHUNK_SIZE} bytes")
    return {"offset": await conn.blobs.write(conn.address.account, blob_id, offset, data)}


async def upload_finish(conn: BlobConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Check the whole upload against its id and keep it; its size."""
    assert conn.address is not None
    blob_id = blob_id_field(conn, frame)
    return {"size": await conn.blobs.finish(conn.address.account, blob_id)}


async def download(conn: BlobConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Up to ``length`` bytes of a blob this device may read, from ``offset``; and its size."""
    blob_id = blob_id_field(conn, frame)
    offset = _count_field(conn, frame, "offset", 0, 2**63 - 1)
    length = _count_field(conn, frame, "length", 1, api.BLOB_CHUNK_SIZE, api.BLOB_CHUNK_SIZE)
    if await conn.blobs.complete(blob_id) is None or not await conn.may_download(blob_id):
        raise RequestError(api.UNKNOWN_BLOB, "no such file was sent to this device (or it "
                           "expired, or every recipient fetched it)")
    data, size = await conn.blobs.read(blob_id, offset, length)
    return {"data": data, "size": size}
