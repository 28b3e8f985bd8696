"""History and search: the server's stored messages, with a secret message's text filled in from
local state (the server has only its envelope), unless it is held (from a device not accepted)."""

from __future__ import annotations

from typing import Any

from e2e_proto.capabilities import SOCIAL, require
from e2e_proto.errors import E2EProtoError
from e2e_proto.media import MediaPayload

from ..core.errors import ClientError
from .base import SessionBase
from .checks import check_name, is_id
from .media import media_text
from .state import StoredMessage

HELD_TEXT = "[held: from a device not accepted yet]"


class History(SessionBase):
    """Pages of a conversation's history, and full-text search."""

    async def history(self, name: str, before: int | None = None,
                      limit: int = 50) -> tuple[list[StoredMessage], bool]:
        """A page of the conversation's history, oldest first, and whether older ones exist."""
        require(SOCIAL, "server_history")
        check_name(name)
        fields: dict[str, Any] = {"conversation": name, "limit": limit}
        if before is not None:
            fields["before"] = before
        response = await self.request("history", **fields)
        return self._stored(response["messages"]), bool(response["more"])

    async def search(self, text: str, limit: int = 50) -> list[StoredMessage]:
        """Plaintext messages of this account's conversations holding every word of ``text``."""
        require(SOCIAL, "server_history")
        if not text.strip():
            raise ClientError("search needs some words")
        return self._stored((await self.request("search", text=text, limit=limit))["messages"])

    def _stored(self, messages: list[dict[str, Any]]) -> list[StoredMessage]:
        result = []
        for m in messages:
            if is_id(m["id"]) and isinstance(m["conversation"], str):
                self.state.remember_message(m["id"], m["conversation"])
            text = m["text"]
            if m["secret"]:
                text = (HELD_TEXT if self.state.is_held(m["id"])
                        else self.state.secret_text(m["id"]))
            elif isinstance(m.get("media"), dict):
                try:
                    text = text or media_text(MediaPayload.from_fields(m["media"]))
                except E2EProtoError:
                    text = text or "[a file message that cannot be read]"
            result.append(StoredMessage(m["id"], m["conversation"], m["from"], m["device"],
                                        m["ts"], text, m["secret"],
                                        [(a, e) for a, e in m["reactions"]], m["pinned"]))
        return result
