"""Relay requests on blobs beyond the shared upload and download (:mod:`server.common.
blob_requests`): the blobs a ``send`` announces, and ``download_done``.

The relay cannot read a ``media`` payload, so it learns who may fetch a blob from the sender:
a ``send`` lists the blob ids its message announces (``blobs``), and every recipient device of
that send (the recipient's devices and the sender's other devices) may then download them.
Only blobs the sending account uploaded and finished can be granted. The store grants them in
the step that stores the message, to the devices it stores it for
(:attr:`~server.relay.store.Enqueue.blobs`): a refused send grants nothing, and neither does
a group message to a device it leaves out. Once every granted device has sent
``download_done`` the blob is deleted; otherwise its TTL removes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e2e_proto import relay_api as api

from ..common.blob_requests import blob_id_field, blob_ids_field, own_complete_blobs
from ..common.requests import RequestError

if TYPE_CHECKING:
    from .connection import RelayConnection


async def announced_blobs(conn: RelayConnection, frame: dict[str, Any]) -> list[bytes]:
    """The ``blobs`` a send announces: complete blobs this account uploaded (checked here)."""
    blob_ids = blob_ids_field(conn, frame)
    await own_complete_blobs(conn, blob_ids)
    return blob_ids


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
