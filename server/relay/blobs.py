"""Relay requests on blobs beyond the shared upload and download (:mod:`server.common.
blob_requests`): granting a blob to the recipients of a ``send``, and ``download_done``.

The relay cannot read a ``media`` payload, so it learns who may fetch a blob from the sender:
a ``send`` lists the blob ids its message announces (``blobs``), and every recipient device of
that send (the recipient's devices and the sender's other devices) may then download them.
Only blobs the sending account uploaded and finished can be granted. Once every granted device
has sent ``download_done`` the blob is deleted; otherwise its TTL removes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from e2e_proto import relay_api as api
from e2e_proto.address import Address

from ..common.blob_requests import blob_id_field, blob_ids_field, own_complete_blobs
from ..common.requests import RequestError

if TYPE_CHECKING:
    from .connection import RelayConnection


async def announced_blobs(conn: RelayConnection, frame: dict[str, Any]) -> list[bytes]:
    """The ``blobs`` a send announces: complete blobs this account uploaded (checked here)."""
    blob_ids = blob_ids_field(conn, frame)
    await own_complete_blobs(conn, blob_ids)
    return blob_ids


async def grant(conn: RelayConnection, blob_ids: list[bytes], recipients: Iterable[Address]
                ) -> None:
    """Let every recipient device of a send download its announced blobs.

    Granted before the envelopes are stored: a message is never delivered with a blob its
    recipient cannot fetch (a send refused afterwards leaves grants that the TTL removes).
    """
    if blob_ids:
        await conn.relay.store.blobs.grant_blobs(blob_ids, [tuple(a) for a in recipients])


async def download_done(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Record that this device has the blob; delete it once every device it was sent to has."""
    assert conn.address is not None
    blob_id = blob_id_field(conn, frame)
    everyone = await conn.relay.store.blobs.mark_fetched(blob_id, *conn.address)
    if everyone is None:
        raise RequestError(api.UNKNOWN_BLOB, "no such file was sent to this device")
    if everyone:
        await conn.relay.blobs.delete(blob_id)
    return {}
