"""Files on the private transport: send one (encrypt, upload, announce), fetch a received one.

Sending: the file is encrypted into ``HOME/outgoing/`` (once: a retry resumes the upload), the
blob goes to the relay's blob store, and a ``media`` payload announces it through the normal
message path, end to end encrypted to every device of the recipient and of this account; the
``send`` names the blob id so that the relay lets exactly those devices download it
(docs/PROTOCOL.md §17). A file to a group goes the same way as one group message: the
``media`` payload encrypted once under this device's sender key, its ``group_send`` naming the
blob, which the relay grants to every member device it stores the message for.

Receiving: the payload is stored with its message (the key sealed at rest), the message is
acknowledged, and then, when the message is shown, the blob is downloaded, checked and
decrypted into ``HOME/files/`` (a message held after an unaccepted key change is neither shown
nor downloaded, and ``fetch_file`` refuses it, until the user accepts the key);
once saved the device tells the relay (``download_done``), which deletes the blob after every
device it was sent to has it. A download that fails is recorded; ``fetch_file`` retries it.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from e2e_proto import blob_api
from e2e_proto.errors import LocalProtocolError
from e2e_proto.media import MEDIA_KIND, MediaPayload
from e2e_proto.payload import Payload

from ..core.connection import ServerError
from ..core.errors import ClientError
from ..core.files import FileRecord, Outgoing
from ..core.transfer import fetch, guess_mime, prepare, send_blob
from .base import SessionBase
from .group_state import group_peer
from .received import Received, from_stored
from .state import StoredMessage

log = logging.getLogger("e2e.client")


class Media(SessionBase):
    """Sending files, and saving the files that messages announce."""

    async def send_file(self, to: str, path: str | Path, caption: str | None = None,
                        mime: str | None = None) -> Received:
        """Send the file at ``path`` to every device of ``to`` (and this account's others)."""
        assert self.address is not None
        source = Path(path)
        outgoing, media = await self._upload(source, to, caption, mime)
        payload = Payload.new(MEDIA_KIND, int(self.client.clock() * 1000), self.client.random,
                              **media.fields(), to=to)
        await self.send_payload(to, payload, blobs=[outgoing.blob_id])
        return self._sent(payload, to, source, outgoing, media)

    async def group_send_file(self, name: str, path: str | Path, caption: str | None = None,
                              mime: str | None = None) -> Received:
        """Send the file at ``path`` to the group ``name``: the ``media`` payload is one group
        message (sender keys), and its ``group_send`` grants the blob to every member device."""
        group = self.find_group(name).state
        peer = group_peer(group.group_id)
        source = Path(path)
        outgoing, media = await self._upload(source, peer, caption, mime)
        payload = Payload.new(MEDIA_KIND, int(self.client.clock() * 1000), self.client.random,
                              **media.fields())
        await self._send_group_payload(group, payload, blobs=[outgoing.blob_id])
        return dataclasses.replace(self._sent(payload, peer, source, outgoing, media),
                                   group=group.name)

    async def _upload(self, source: Path, peer: str, caption: str | None,
                      mime: str | None) -> tuple[Outgoing, MediaPayload]:
        """Encrypt ``source`` for ``peer`` (once; a retry resumes) and upload its blob; the
        blob and its media fields."""
        outgoing = await prepare(self.state.files, source, peer, self.client.random)
        await send_blob(self.connection, outgoing, "relay")
        try:
            return outgoing, MediaPayload(outgoing.blob_id, outgoing.key, outgoing.header,
                                          outgoing.size, mime or guess_mime(source.name),
                                          source.name[:255], caption, outgoing.sha256)
        except LocalProtocolError as exc:
            raise ClientError(f"cannot send this file: {exc}") from None

    def _sent(self, payload: Payload, peer: str, source: Path, outgoing: Outgoing,
              media: MediaPayload) -> Received:
        """Store a file message this device sent (its file: the sender's own), forget the
        staged blob; the message as shown."""
        assert self.address is not None
        message = StoredMessage(payload.id, self.address.account, self.address.device_id, peer,
                                payload.ts, MEDIA_KIND, media.caption)
        with self.state.transaction():
            self.state.add_message(message, self.client.clock(), seen=True)
            self.state.files.add(payload.id.hex(), media)
            record = self.state.files.saved(payload.id.hex(), source.resolve(), outgoing.sha256)
            self.state.files.forget_outgoing(outgoing)
        return dataclasses.replace(from_stored(message, outgoing=True), file=record)

    def _keep_media(self, payload: Payload) -> str | None:
        """Record the file a received ``media`` payload announces (in the caller's
        transaction); its caption, the message's text. :class:`MalformedError` if invalid."""
        media = MediaPayload.from_payload(payload)
        self.state.files.add(payload.id.hex(), media)
        return media.caption

    async def _with_file(self, received: Received) -> Received:
        """A received ``media`` message with its file, downloaded now if it was not yet."""
        record = self.state.files.get(received.id.hex())
        if record is not None and record.path is None:
            record = await self._fetch(record)
        return dataclasses.replace(received, file=record)

    async def fetch_file(self, message_id: str) -> FileRecord:
        """Download (again) the file of the message whose id starts with ``message_id``.

        Not the file of a held message (its sender's key change is not accepted): like its
        text, it is fetched only once the user accepts the key and it is shown.
        """
        record = self.state.files.find(message_id)
        sender = self.state.held_sender(bytes.fromhex(record.message))
        if sender is not None:
            raise ClientError(f"the message is held: the account key of {sender!r} changed; "
                              f"check it with 'e2e-chat verify {sender}', then 'verify "
                              f"{sender} --accept' shows the message and fetches its file")
        if record.path is not None and Path(record.path).exists():
            return record
        return await self._fetch(record)

    async def _fetch(self, record: FileRecord) -> FileRecord:
        """Download, check and save one file, then tell the relay this device has it."""
        saved = await fetch(self.connection, self.state.files, record, "relay")
        if saved.path is not None:
            try:
                await self.connection.request(blob_api.DOWNLOAD_DONE,
                                              blob_id=record.media.blob_id)
            except ServerError as exc:  # saved here; the relay's TTL removes the blob instead
                log.warning("the relay did not take download_done: %s", exc)
        return saved
