"""Emoji reactions and pins on a message of a conversation the caller belongs to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e2e_proto import social_api as api

from ..common.requests import RequestError
from .fields import message_id_field
from .store import Conversation, Message

if TYPE_CHECKING:
    from .connection import SocialConnection


def member_message(conn: SocialConnection, frame: dict[str, Any]) -> tuple[Message, Conversation]:
    """The message named by ``message`` and its conversation, if the caller is a member."""
    assert conn.address is not None
    message = conn.store.message(message_id_field(frame))
    if message is None:
        raise RequestError(api.UNKNOWN_MESSAGE, "no such message")
    conversation = conn.store.conversation(message.conversation)
    assert conversation is not None
    if conn.address.account not in conversation.members:
        raise RequestError(api.NOT_MEMBER, "you are not a member of that message's "
                           "conversation")
    return message, conversation


async def react(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Set the caller's emoji reaction on a message."""
    assert conn.address is not None
    emoji = frame.get("emoji")
    if not api.is_single_emoji(emoji):
        raise RequestError(api.INVALID_REACTION, "a reaction must be exactly one emoji")
    message, conversation = member_message(conn, frame)
    if conversation.secret:
        raise RequestError(api.SECRET_CONVERSATION, "reactions in a secret conversation "
                           "would be readable by the server; they are not offered")
    changed = conn.store.set_reaction(message, *conn.address, emoji, conn.server.now_ms())
    if changed:
        conn.server.wake(conversation.members)
    return {"message": message.id, "changed": changed}


async def unreact(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Remove the caller's reaction."""
    assert conn.address is not None
    message, conversation = member_message(conn, frame)
    changed = conn.store.set_reaction(message, *conn.address, None, conn.server.now_ms())
    if changed:
        conn.server.wake(conversation.members)
    return {"message": message.id, "changed": changed}


async def set_pin(conn: SocialConnection, frame: dict[str, Any], pinned: bool) -> dict[str, Any]:
    """Pin or unpin a message."""
    assert conn.address is not None
    message, conversation = member_message(conn, frame)
    changed = conn.store.set_pinned(message, *conn.address, pinned, conn.server.now_ms())
    if changed:
        conn.server.wake(conversation.members)
    return {"message": message.id, "changed": changed}


async def pin(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Pin a message for everyone in its conversation."""
    return await set_pin(conn, frame, True)


async def unpin(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Unpin a message."""
    return await set_pin(conn, frame, False)
