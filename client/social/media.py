"""Files on the social transport: the private transport's scheme, over the social server.

The file is encrypted on this device (a fresh media key; ``HOME/outgoing/`` keeps the blob
until it is sent), uploaded to the social server's blob store, which only ever holds
ciphertext, and announced by a message carrying the ``media`` fields (blob id, key, header,
size, mime, name, caption). In a **secret** conversation those fields travel end to end
encrypted, as a ``media`` payload in the envelopes, and the ``send`` only names the blob id; in
a **plaintext** conversation they travel as the message's ``media`` field, which the server can
read, key included: the file is then not end-to-end encrypted, and the command line says so.
The server lets the members of a conversation a file was sent in download it (history keeps
it for their devices, until its TTL).

Received files are downloaded, checked and decrypted into ``HOME/files/`` before the event is
shown; a download that fails is recorded and ``fetch_file`` retries it. A secret message held
because its sending device is not accepted is neither shown nor downloaded until it is.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from e2e_proto import social_api as api
from e2e_proto.errors import LocalProtocolError
from e2e_proto.media import MediaPayload

from ..core.errors import ClientError
from ..core.files import FileRecord
from ..core.transfer import fetch, guess_mime, prepare, send_blob
from .base import SessionBase
from .checks import check_name
from .state import SocialEvent


def media_text(media: MediaPayload) -> str:
    """A file message's text where only text is shown (history): its caption, or
    ``[file NAME]``."""
    return media.caption or f"[file {media.name or 'attachment'}]"


@dataclasses.dataclass(frozen=True, slots=True)
class SentFile:
    """A file sent: its message id, its record, and whether it went end to end encrypted."""

    message: int
    file: FileRecord
    end_to_end: bool


class Media(SessionBase):
    """Sending files, and saving the files that messages announce."""

    async def send_file(self, name: str, path: str | Path, caption: str | None = None,
                        mime: str | None = None, client_id: bytes | None = None) -> SentFile:
        """Send the file at ``path`` to the account or group ``name``.

        End to end encrypted in a conversation this device knows (or the server says) is
        secret; otherwise the server can read the file's key (``end_to_end`` is False).
        """
        assert self.address is not None
        check_name(name)
        source = Path(path)
        client_id = client_id or self.client.random(api.CLIENT_ID_SIZE)
        info = await self.conversation(name)
        secret = self.state.is_secret(name) or bool(info.get("secret"))
        outgoing = await prepare(self.state.files, source, name, self.client.random)
        await send_blob(self.connection, outgoing, "social server")
        try:
            media = MediaPayload(outgoing.blob_id, outgoing.key, outgoing.header, outgoing.size,
                                 mime or guess_mime(source.name), source.name[:255], caption,
                                 outgoing.sha256)
        except LocalProtocolError as exc:
            raise ClientError(f"cannot send this file: {exc}") from None
        if secret:
            members = (sorted({self.address.account, name}) if self.state.is_secret(name)
                       else info["members"])
            message_id = await self._send_secret(name, members, None, client_id, media)
        else:
            response = await self.request("send", conversation=name, media=media.fields(),
                                          client_id=client_id)
            message_id = int(response["message"])
            self.state.remember_message(message_id, name)
        with self.state.protocol.transaction():
            self.state.files.add(str(message_id), media)
            record = self.state.files.saved(str(message_id), source.resolve(), outgoing.sha256)
            self.state.files.forget_outgoing(outgoing)
        return SentFile(message_id, record, secret)

    def _keep_media(self, message_id: int, media: MediaPayload) -> str:
        """Record the file a message announces (in the caller's transaction); the message's
        text as history shows it (:func:`media_text`)."""
        self.state.files.add(str(message_id), media)
        return media_text(media)

    async def _with_file(self, event: SocialEvent) -> SocialEvent:
        """A message event with its file, downloaded now if it was not yet (others: as is)."""
        if event.kind != "message" or event.message is None:
            return event
        record = self.state.files.get(str(event.message))
        if record is None:
            return event
        if record.path is None:
            record = await fetch(self.connection, self.state.files, record, "social server")
        return dataclasses.replace(event, file=record)

    async def fetch_file(self, message_id: str) -> FileRecord:
        """Download (again) the file of the message with this id; not while the message is
        held (from a device not accepted): it is fetched once the device is accepted."""
        record = self.state.files.find(message_id)
        if self.state.is_held(int(record.message)):
            raise ClientError("the message is held: it came from a device you have not "
                              "accepted; check its sender's devices with 'verify NAME', then "
                              "'verify NAME --accept' shows the message and fetches its file")
        if record.path is not None and Path(record.path).exists():
            return record
        return await fetch(self.connection, self.state.files, record, "social server")
