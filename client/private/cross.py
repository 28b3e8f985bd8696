"""Chats with the social transport's accounts (``name@social``), end to end encrypted.

An account takes part once it opted in (:meth:`Cross.cross_set`, ``e2e-chat cross on``); the
other side must have opted in too, or the relay answers ``cross_disabled`` and the user is told.
A message to ``bob@social`` is a payload like any other, encrypted for every device of bob's
signed cross device list and this account's other devices (:mod:`.sending`), kept first in the
cross outbox (:mod:`client.core.cross_outbox`) and sent from there in order: when the social
server (or the relay's link to it) is down it stays there, and the next command sends it, with
the same payload id, so a resend is never a second message.
"""

from __future__ import annotations

import logging

from e2e_proto.payload import Payload

from ..core.cross_outbox import CrossPending
from ..core.errors import ClientError
from .base import SessionBase
from .received import Received, from_stored
from .state import StoredMessage

log = logging.getLogger("e2e.client")


class Cross(SessionBase):
    """Opting in, and sending to the other transport through the cross outbox."""

    async def cross_set(self, enabled: bool) -> None:
        """Take (or stop taking) chats with the social transport's accounts."""
        await self.connection.request("cross_set", enabled=enabled)

    async def send_cross_text(self, to: str, text: str) -> Received:
        """Send ``text`` to ``to`` (``name@social``); kept and retried by a later command
        (:class:`CrossPending`) when the social server cannot be reached now."""
        message = self.queue_cross_text(to, text)
        refused = await self.flush_cross()
        if message.id in refused:
            raise ClientError(refused[message.id])
        return from_stored(message, outgoing=True)

    def queue_cross_text(self, to: str, text: str) -> StoredMessage:
        """Keep ``text`` for ``to`` in the cross outbox (and as sent, here), to go with the
        next :meth:`flush_cross`."""
        assert self.address is not None
        payload = Payload.new("text", int(self.client.clock() * 1000), self.client.random,
                              text=text, to=to)
        message = StoredMessage(payload.id, self.address.account, self.address.device_id, to,
                                payload.ts, "text", text)
        with self.state.transaction():
            self.state.cross_outbox.add(payload.id, to, payload.encode())
            self.state.add_message(message, self.client.clock(), seen=True)
        return message

    async def flush_cross(self) -> dict[bytes, str]:
        """Send the kept messages, oldest first, until one cannot reach the social server
        (:class:`CrossPending`, the rest wait); those refused for good (the recipient does not
        take cross chats, is unknown, ...) are dropped: their ids and why."""
        refused: dict[bytes, str] = {}
        for item in self.state.cross_outbox.pending():
            try:
                await self.send_payload(item.recipient, Payload.decode(item.payload))
            except CrossPending as exc:
                raise CrossPending(f"{exc}; the message is kept and sent by your next "
                                   "command") from None
            except ClientError as exc:
                refused[item.id] = f"not sent to {item.recipient}: {exc}"
                self.notices.append(refused[item.id])
            with self.state.transaction():
                self.state.cross_outbox.remove(item.id)
        return refused

    async def flush_cross_quietly(self) -> None:
        """:meth:`flush_cross` when something waits, logging instead of raising."""
        if not self.state.cross_outbox.pending():
            return
        try:
            await self.flush_cross()
        except ClientError as exc:
            log.warning("%s", exc)
