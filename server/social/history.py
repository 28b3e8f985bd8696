"""Reading messages back: pinned messages, history pages and full-text search."""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING, Any

from e2e_proto import social_api as api

from ..common.requests import RequestError
from .conversations import conversation_field
from .fields import message_id_field, require_field
from .messages import stored_media
from .store import Message

if TYPE_CHECKING:
    from .connection import SocialConnection
log = logging.getLogger("e2e.social")


def render_messages(conn: SocialConnection, messages: list[Message]) -> list[dict[str, Any]]:
    """Messages as the caller sees them, with reactions and pins."""
    assert conn.address is not None
    ids = [m.id for m in messages]
    reactions = conn.store.reactions(ids)
    pinned = conn.store.pinned(ids)
    media = stored_media(conn, ids)
    titles: dict[int, str] = {}
    result = []
    for m in messages:
        if m.conversation not in titles:
            conversation = conn.store.conversation(m.conversation)
            assert conversation is not None
            titles[m.conversation] = conversation.title_for(conn.address.account)
        result.append({"id": m.id, "conversation": titles[m.conversation], "from": m.sender,
                       "device": m.device_id, "ts": m.ts, "text": m.text,
                       "secret": m.secret, "reactions": [list(r) for r in reactions[m.id]],
                       "pinned": m.id in pinned, "media": media.get(m.id)})
    return result


async def pins(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """The pinned messages of a conversation."""
    conversation = conversation_field(conn, frame)
    found = [] if conversation.id is None else conn.store.pins(conversation.id)
    return {"messages": render_messages(conn, found)}


async def history(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """A page of a conversation's messages, oldest first, before a message id."""
    conversation = conversation_field(conn, frame)
    before = frame.get("before")
    if before is not None:
        before = message_id_field(frame, "before")
    limit = frame.get("limit", 50)
    if type(limit) is not int or not 0 < limit <= api.MAX_HISTORY_PAGE:
        raise RequestError(api.BAD_REQUEST, f"limit must be 1 to {api.MAX_HISTORY_PAGE}")
    if conversation.id is None:
        return {"messages": [], "more": False}
    found = conn.store.history(conversation.id, before, limit + 1)
    more = len(found) > limit
    return {"messages": render_messages(conn, found[-limit:]), "more": more}


async def search(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Full-text search over the caller's conversations."""
    assert conn.address is not None
    text = require_field(frame, "text", str)
    if not text.strip() or len(text) > 1000:
        raise RequestError(api.BAD_REQUEST, "search text must be 1 to 1000 characters")
    if "\x00" in text:
        raise RequestError(api.BAD_REQUEST, "search text may not contain NUL characters")
    limit = frame.get("limit", 50)
    if type(limit) is not int or not 0 < limit <= api.MAX_SEARCH_RESULTS:
        raise RequestError(api.BAD_REQUEST,
                           f"limit must be 1 to {api.MAX_SEARCH_RESULTS}")
    try:
        found = conn.store.search(conn.address.account, text, limit)
    except sqlite3.Error:  # FTS5 refused the query: the caller's text, not our state
        log.info("search from %s: the full-text index refused the query", conn.address)
        raise RequestError(api.BAD_REQUEST, "the search text cannot be searched for; "
                           "try other words") from None
    return {"messages": render_messages(conn, found)}
