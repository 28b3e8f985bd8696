"""Sending messages (plaintext, or envelopes in a secret conversation) and acknowledging
events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

from e2e_proto import social_api as api
from e2e_proto.address import Address
from e2e_proto.blob_api import MAX_BLOBS_PER_MESSAGE
from e2e_proto.errors import E2EProtoError
from e2e_proto.media import MediaPayload

from ..common.blob_requests import blob_ids_field, own_complete_blobs
from ..common.fields import sent_envelopes
from ..common.requests import RequestError
from .conversations import conversation_field, resolve
from .fields import name_field, positive_field
from .store import ClientIdReusedError, Conversation

if TYPE_CHECKING:
    from .connection import SocialConnection


async def send(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Store a message (text and/or media, or envelopes in a secret conversation) and wake its
    members; the blobs it announces become theirs to download."""
    assert conn.address is not None
    me = conn.address
    conversation = conversation_field(conn, frame, create=False)
    text = frame.get("text")
    raw = frame.get("envelopes")
    blob_ids = blob_ids_field(conn, frame)
    envelopes: list[tuple[str, int, bytes]] = []
    media: MediaPayload | None = None
    if conversation.secret:
        if text is not None or frame.get("media") is not None or type(raw) is not list:
            raise RequestError(api.SECRET_CONVERSATION, "this conversation is end-to-end "
                               "encrypted: send envelopes, not plaintext")
        envelopes = check_envelopes(conn, conversation, raw)
    else:
        if raw is not None:
            raise RequestError(api.NOT_SECRET, "this conversation is not secret: send "
                               "text (run 'secret' first to encrypt it)")
        media = media_field(frame)
        if media is not None and media.blob_id not in blob_ids:
            if len(blob_ids) >= MAX_BLOBS_PER_MESSAGE:
                raise RequestError(api.BAD_REQUEST, "a message announces at most "
                                   f"{MAX_BLOBS_PER_MESSAGE} blobs, its media's included")
            blob_ids = [*blob_ids, media.blob_id]  # the request's own list is left as it came
        if text is not None or media is None:
            check_text(conn, text)
    await own_complete_blobs(conn, blob_ids)
    client_id = frame.get("client_id")
    if client_id is not None and (type(client_id) is not bytes
                                  or len(client_id) != api.CLIENT_ID_SIZE):
        raise RequestError(api.BAD_REQUEST, f"client_id must be {api.CLIENT_ID_SIZE} bytes")
    if conversation.id is None:
        conversation = resolve(conn, name_field(frame, "conversation"), create=True)
    assert conversation.id is not None
    ts = conn.server.now_ms()
    try:
        message_id = conn.store.add_message(
            conversation.id, me.account, me.device_id, ts,
            None if conversation.secret else text, envelopes, client_id,
            media=None if media is None else msgpack.packb(media.fields()), blobs=blob_ids)
    except ClientIdReusedError:
        raise RequestError(api.BAD_REQUEST, "that client_id was used for a message to "
                           "another conversation") from None
    stored = conn.store.message(message_id)
    if stored is not None:
        ts = stored.ts  # a resend (same client_id) answers with the first send's message
    conn.server.wake(conversation.members)
    return {"message": message_id, "ts": ts,
            "conversation": conversation.title_for(me.account)}


def check_text(conn: SocialConnection, text: object) -> None:
    """A plaintext message's text: a non-empty string within the size limit, without NUL."""
    if type(text) is not str or not text:
        raise RequestError(api.BAD_REQUEST, "field 'text' must be a non-empty string")
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > conn.server.config.max_text_bytes:
        raise RequestError(api.MESSAGE_TOO_LARGE, f"a message has at most "
                           f"{conn.server.config.max_text_bytes} bytes (got {size})",
                           limit=conn.server.config.max_text_bytes)
    if "\x00" in text:
        raise RequestError(api.BAD_REQUEST, "text may not contain NUL characters")


def media_field(frame: dict[str, Any]) -> MediaPayload | None:
    """A plaintext message's ``media`` (the ``media`` payload's fields, PROTOCOL.md §14.3).

    The server can read them, key included: the file is not end-to-end encrypted.
    """
    fields = frame.get("media")
    if fields is None:
        return None
    try:
        return MediaPayload.from_fields(fields)
    except E2EProtoError as exc:
        raise RequestError(api.BAD_REQUEST, f"field 'media' is invalid: {exc}") from None


def stored_media(conn: SocialConnection, message_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The media fields of those messages that carry a plaintext file."""
    return {m: msgpack.unpackb(raw) for m, raw in conn.store.media(message_ids).items()}


def check_envelopes(conn: SocialConnection, conversation: Conversation,
                     raw: list[Any]) -> list[tuple[str, int, bytes]]:
    """Each envelope from this device, each keyed device of the members exactly once."""
    assert conn.address is not None
    me = conn.address
    expected = {Address(member, d.device_id) for member in conversation.members
                for d in conn.store.devices(member) if d.identity_key is not None}
    expected.discard(me)
    found = [(*envelope.recipient, data) for envelope, data in sent_envelopes(
        raw, me, api.MAX_SECRET_ENVELOPES, api.MAX_ENVELOPE_BYTES, code=api.BAD_REQUEST,
        too_large=api.MESSAGE_TOO_LARGE)]
    addressed = {Address(a, d) for a, d, _ in found}
    if len(addressed) != len(found) or addressed != expected:
        raise RequestError(api.DEVICE_MISMATCH,
                           "the send must cover exactly the members' current devices",
                           missing=[list(a) for a in sorted(expected - addressed)],
                           stale=[list(a) for a in sorted(addressed - expected)])
    return found


async def ack(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Mark events up to ``seq`` as delivered to this device."""
    assert conn.address is not None
    seq = positive_field(frame, "seq", "an event's seq")
    conn.store.acknowledge(*conn.address, seq)
    return {}


async def ping(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Answer, doing nothing (keep-alive and round-trip check)."""
    return {}
