"""Receiving: each delivery is decrypted, stored and committed with its ratchet step before it
is acknowledged, then shown once.

Messages are deduplicated by payload id, so a crash at any point neither loses nor repeats one;
a delivery that cannot be read becomes a notice and is acknowledged, so it cannot wedge the
mailbox.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from e2e_proto.address import Address
from e2e_proto.errors import DuplicateMessageError, RemoteProtocolError
from e2e_proto.keys import Ed25519PublicKey
from e2e_proto.media import MEDIA_KIND
from e2e_proto.payload import Payload
from e2e_proto.wire import Envelope

from ..core.connection import ConnectionLost, ServerError
from ..core.errors import ClientError
from .base import SessionBase
from .received import Received, from_stored
from .state import StoredMessage

log = logging.getLogger("e2e.client")

MessageHandler = Callable[[Received], Awaitable[None] | None]


class Receiving(SessionBase):
    """Fetching, decrypting, storing and acknowledging deliveries."""

    async def receive(self, handler: MessageHandler, wait: float | None = None) -> None:
        """Fetch queued messages, then (with ``wait``) keep receiving for ``wait`` seconds.

        Each new message is committed locally before it is acknowledged, and shown to
        ``handler`` once: messages stored but not shown in an earlier run (a lost connection or
        a crash after the commit) come first. ``wait=None`` returns once the queue is drained;
        ``wait=math.inf`` runs until cancelled.
        """
        assert self.address is not None
        for message in self.state.unseen():
            await self._show(handler, await self._with_any_file(
                from_stored(message, message.sender == self.address.account)))
        with trio.move_on_after(wait if wait is not None else float("inf")):
            async for frame in self.connection.pushes:
                kind = frame.get("type")
                if kind == "deliver":
                    received = await self._process(frame.get("seq"), frame.get("envelope"))
                    if received is not None:
                        await self._show(handler, await self._with_any_file(received))
                    while self.notices:
                        await self._show(handler, _notice(self.notices.pop(0)))
                elif kind == "queue_empty" and wait is None:
                    return
                elif kind == "prekeys_low":
                    await self._top_up(int(frame.get("count", 0)))
                elif kind == "error":
                    raise ConnectionLost(f"the relay closed the connection: "
                                         f"{frame.get('message', 'error')}")
            raise ConnectionLost("the relay closed the connection")

    async def _with_any_file(self, received: Received) -> Received:
        """``received`` with its file when it announces one (downloaded if not yet)."""
        return await self._with_file(received) if received.kind == MEDIA_KIND else received

    async def _show(self, handler: MessageHandler, received: Received) -> None:
        result = handler(received)
        if result is not None:
            await result
        if received.warning is None:
            self.state.mark_seen(received.id)

    async def _process(self, seq: Any, data: Any) -> Received | None:
        """Decrypt, store and acknowledge one delivery; a notice for what cannot be read."""
        assert self.address is not None
        notice: str | None = None
        received: Received | None = None
        try:
            envelope = Envelope.decode(data)
            if envelope.recipient != self.address:
                raise ClientError("a delivery addressed to another device")
            sender = envelope.sender
            if envelope.prekey is not None:
                await self._check_sender_key(sender, envelope.prekey.identity_key)
            proven = False
            with self.state.transaction():
                payload = Payload.decode(self.cipher.decrypt(envelope))
                if payload.kind == "device_sync" and sender.account == self.address.account:
                    self._apply_device_sync(payload)
                    proven = self._proves_link(payload)
                text = (self._keep_media(payload) if payload.kind == MEDIA_KIND
                        else _display_text(payload))
                peer = payload.fields.get("to") if sender.account == self.address.account else None
                message = StoredMessage(payload.id, sender.account, sender.device_id,
                                        peer if isinstance(peer, str) else sender.account,
                                        payload.ts, payload.kind,
                                        text if isinstance(text, str) else None)
                is_sync = payload.kind == "device_sync"
                if self.state.add_message(message, self.client.clock(), seen=is_sync) and (
                        not is_sync):
                    received = from_stored(message, outgoing=sender.account == self.address.account)
            self._link_proven |= proven  # only once the sync is committed
        except DuplicateMessageError:
            pass  # decrypted and stored in an earlier run; only the ack was lost
        except (RemoteProtocolError, ClientError, ValueError, TypeError, OverflowError) as exc:
            # Nothing was committed (the transaction rolled back); acknowledging drops a
            # message that could never be read, instead of wedging the mailbox behind it.
            notice = f"dropped a message that cannot be read: {exc}"
            log.warning(notice)
        try:
            await self.connection.request("ack", seqs=[seq])
        except ServerError as exc:  # stored here already: a redelivery will be recognised
            log.warning("the relay did not take an acknowledgement: %s", exc)
        if notice is not None:
            return _notice(notice)
        return received

    async def _check_sender_key(self, sender: Address, identity: Ed25519PublicKey) -> None:
        """A new session's device key must be in the sender account's signed device list."""
        listed = (await self.device_list(sender.account)).identity_of(sender.device_id)
        if listed != identity:
            listed = (await self.device_list(sender.account, refresh=True)).identity_of(
                sender.device_id)
        if listed != identity:
            raise ClientError(f"{sender} is not a device of {sender.account!r}'s signed list")


def _display_text(payload: Payload) -> str | None:
    """The line shown for a payload: its text, or a description of a reaction."""
    fields = payload.fields
    if payload.kind == "text" and isinstance(fields.get("text"), str):
        return fields["text"]
    if payload.kind == "reaction" and isinstance(fields.get("target"), bytes):
        target = fields["target"].hex()[:12]
        emoji = fields.get("emoji")
        if isinstance(emoji, str) and emoji:
            return f"[reacted {emoji} to {target}]"
        return f"[removed a reaction to {target}]"
    if payload.kind == "device_sync":
        return "[device sync]"
    return None


def _notice(text: str) -> Received:
    return Received("", 0, "", b"", 0, "notice", None, warning=text)
