"""Reactions and pins: one emoji per account on a message (never in a conversation this device
knows is secret, where the server could read it), and pinned messages."""

from __future__ import annotations

from e2e_proto import social_api as api
from e2e_proto.capabilities import CAPABILITIES, SOCIAL, require

from ..core.errors import ClientError
from .base import SessionBase
from .checks import check_name
from .state import StoredMessage


class Reactions(SessionBase):
    """Reacting to, and pinning, messages."""

    async def react(self, message_id: int, emoji: str) -> bool:
        """Set this account's one reaction to a message; False when it was that already."""
        if CAPABILITIES[SOCIAL].reactions != "emoji" or not api.is_single_emoji(emoji):
            raise ClientError(f"invalid reaction {emoji[:16]!r}: a reaction must be exactly "
                              "one emoji")
        if self.state.message_in_secret(message_id):
            raise ClientError(f"message {message_id} is in a secret conversation: a reaction "
                              "there would be readable by the server, so it is not offered")
        return bool((await self.request("react", message=message_id, emoji=emoji))["changed"])

    async def unreact(self, message_id: int) -> bool:
        """Remove this account's reaction; False when there was none."""
        return bool((await self.request("unreact", message=message_id))["changed"])

    async def pin(self, message_id: int) -> bool:
        """Pin a message for everyone in its conversation; False when it was pinned."""
        require(SOCIAL, "pinning")
        return bool((await self.request("pin", message=message_id))["changed"])

    async def unpin(self, message_id: int) -> bool:
        """Unpin a message; False when it was not pinned."""
        require(SOCIAL, "pinning")
        return bool((await self.request("unpin", message=message_id))["changed"])

    async def pins(self, name: str) -> list[StoredMessage]:
        """The pinned messages of the conversation ``name``."""
        require(SOCIAL, "pinning")
        check_name(name)
        return self._stored((await self.request("pins", conversation=name))["messages"])
